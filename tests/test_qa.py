"""Extractive QA: CMRC 2018 metrics, offsets and windows, the built-in cloze set, run_qa.py on the built-in set and
on a cmrc2018-format fixture, export and Paddle Inference / ONNX Runtime prediction."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from data_tools.corpus import BLANK, peoples_daily_qa_dataset
from ernie.finetune.metrics import cmrc_em, cmrc_f1, cmrc_scores, mixed_segmentation
from ernie.finetune.qa import OffsetTokenizer, QaOptions, QaTask

TINY = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 128,
    "hidden_act": "gelu",
    "max_position_embeddings": 130,
    "vocab_size": 10000,
}


def test_cmrc_metrics_on_known_cases():
    assert mixed_segmentation("1963年被任为Bishop of Hanoi。", rm_punc=True) == [
        "1963",
        "年",
        "被",
        "任",
        "为",
        "bishop",
        "of",
        "hanoi",
    ]
    assert cmrc_em(["1963年"], "1963年。") == 1.0  # punctuation is removed before comparing
    assert cmrc_em(["1963年"], "1963") == 0.0
    # LCS of [1963, 年] and [1963] is 1: P = 1, R = 1/2 -> F1 = 2/3
    assert cmrc_f1(["1963年"], "1963") == pytest.approx(2 / 3)
    assert cmrc_f1(["越南", "越南罗马"], "越南罗马天主教") == pytest.approx(
        max(2 * (2 / 7) * 1 / (2 / 7 + 1), 2 * (4 / 7) * 1 / (4 / 7 + 1))
    )
    scores = cmrc_scores({"a": ["北京"], "b": ["上海"], "c": ["广州"]}, {"a": "北京", "b": "上海市"})
    assert scores["exact_match"] == pytest.approx(100 / 3)  # c has no prediction -> 0
    assert scores["f1"] == pytest.approx(100 * (1 + 0.8) / 3)


def test_offsets_map_tokens_back_to_characters(tokenizer):
    text = "农行 Hello2分行，在1998年 ok"
    ids, offsets = OffsetTokenizer(tokenizer)(text)
    assert len(ids) == len(offsets)
    pieces = tokenizer.convert_ids_to_tokens(ids)
    for piece, (s, e) in zip(pieces, offsets):
        if piece != "[UNK]":
            assert text[s:e].lower() == piece.replace("##", ""), (piece, text[s:e])
    assert "".join(text[s:e] for s, e in offsets) == text.replace(" ", "")


def _example(context, answer, qid="q"):
    return {
        "id": qid,
        "question": "问题是什么",
        "context": context,
        "answers": [answer],
        "answer_starts": [context.index(answer)],
    }


def test_long_context_windows_overlap_and_hold_the_answer(tokenizer):
    context = "".join(f"第{i}段落内容没有答案。" for i in range(40)) + "答案是厦门大学。" + "后文" * 30
    task = QaTask(tokenizer, [], 64, QaOptions(doc_stride=24, max_query_length=16))
    features = task.encode([_example(context, "厦门大学")])
    assert len(features) > 10
    spans = [(f["offsets"][0][0], f["offsets"][-1][1]) for f in features]
    assert spans[0][0] == 0 and spans[-1][1] == len(context)  # the windows cover the whole context ...
    assert all(b[0] < a[1] for a, b in zip(spans, spans[1:]))  # ... and overlap
    assert all(len(f["input_ids"]) <= 64 for f in features)
    holding = [f for f in features if f["start_positions"] > 0]
    assert holding, "some window holds the answer"
    for f in holding:
        first = f["context_start"]
        s, e = f["offsets"][f["start_positions"] - first][0], f["offsets"][f["end_positions"] - first][1]
        assert context[s:e] == "厦门大学"
    # the answer search maps logits back to characters of the context
    f = holding[0]
    start, end = np.zeros(len(f["input_ids"])), np.zeros(len(f["input_ids"]))
    start[f["start_positions"]] = end[f["end_positions"]] = 10.0
    outputs = [
        (np.zeros(len(g["input_ids"])), np.zeros(len(g["input_ids"]))) if g is not f else (start, end) for g in features
    ]
    assert task.predictions(outputs, features) == {"q": "厦门大学"}
    assert task.metrics(outputs, features) == {"exact_match": 100.0, "f1": 100.0}


def test_builtin_cloze_set_properties():
    ds = peoples_daily_qa_dataset()
    assert (len(ds.train), len(ds.dev), len(ds.test)) == (6084, 705, 819)
    assert peoples_daily_qa_dataset().dev == ds.dev  # fixed
    contexts = {name: {ex["context"] for ex in getattr(ds, name)} for name in ("train", "dev", "test")}
    assert not contexts["train"] & contexts["test"] and not contexts["train"] & contexts["dev"]
    for ex in ds.train[:500] + ds.test:
        (answer,), (start,) = ex["answers"], ex["answer_starts"]
        assert ex["context"][start : start + len(answer)] == answer
        assert ex["question"].count(BLANK) == 1
        sentence = ex["question"].replace(BLANK, answer)
        assert sentence not in ex["context"]  # the question cannot be located in its context


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "tiny.json"
    path.write_text(json.dumps(TINY), encoding="utf-8")
    return str(path)


CMRC = {
    "version": "v1.0",
    "data": [
        {
            "title": "厦门",
            "paragraphs": [
                {
                    "id": "P1",
                    "context": "厦门大学创办于1921年，由陈嘉庚先生创办。学校位于福建省厦门市，校园临海。",
                    "qas": [
                        {
                            "question": "厦门大学是谁创办的？",
                            "id": "Q1",
                            "answers": [{"text": "陈嘉庚", "answer_start": 14}],
                        },
                        {
                            "question": "厦门大学创办于哪一年？",
                            "id": "Q2",
                            "answers": [{"text": "1921年", "answer_start": 7}],
                        },
                        {
                            "question": "学校位于哪个省？",
                            "id": "Q3",
                            "answers": [{"text": "福建省", "answer_start": 26}],
                        },
                    ],
                }
            ],
        }
    ],
}


@pytest.fixture(scope="module")
def cmrc_run(tmp_path_factory, tiny_config, vocab_dir):
    """run_qa.py on a hand-written cmrc2018 fixture: train, eval, export."""
    from ernie.finetune_cli import run_qa as main

    data = tmp_path_factory.mktemp("cmrc")
    for name in ("cmrc2018_train.json", "cmrc2018_dev.json"):
        (data / name).write_text(json.dumps(CMRC, ensure_ascii=False), encoding="utf-8")
    out = str(tmp_path_factory.mktemp("qa") / "out")
    results = main(
        [
            "--model_name_or_path",
            tiny_config,
            "--tokenizer_name_or_path",
            vocab_dir,
            "--dataset",
            "cmrc2018",
            "--data_dir",
            str(data),
            "--max_seq_length",
            "48",
            "--doc_stride",
            "16",
            "--max_query_length",
            "16",
            "--batch_size",
            "8",
            "--max_steps",
            "60",
            "--learning_rate",
            "5e-3",
            "--warmup_ratio",
            "0",
            "--logging_steps",
            "20",
            "--eval_steps",
            "60",
            "--device",
            "cpu",
            "--output_dir",
            out,
            "--do_train",
            "--do_eval",
            "--do_export",
        ]
    )
    return out, results


def test_run_qa_on_a_cmrc2018_fixture_learns_and_writes_predictions(cmrc_run):
    out, results = cmrc_run
    assert results["task"] == "qa" and set(results["eval"]) == {"exact_match", "f1", "loss"}
    assert results["eval"]["f1"] > 50  # memorises three questions (windows of 48 tokens: several per question)
    with open(os.path.join(out, "eval_predictions.json"), encoding="utf-8") as f:
        predictions = json.load(f)
    assert set(predictions) == {"Q1", "Q2", "Q3"}
    context = CMRC["data"][0]["paragraphs"][0]["context"]
    assert all(p in context for p in predictions.values())
    assert not os.path.exists(os.path.join(out, "label.txt"))


def test_qa_export_runs_on_paddle_inference_and_onnxruntime(cmrc_run):
    from ernie.deploy.qa_infer import QaPredictor

    out, results = cmrc_run
    with open(os.path.join(results["export_dir"], "deploy_config.json"), encoding="utf-8") as f:
        config = json.load(f)
    assert config["task"] == "qa" and config["output_names"] == ["start_logits", "end_logits"]
    with open(os.path.join(out, "eval_predictions.json"), encoding="utf-8") as f:
        dygraph = json.load(f)
    paragraph = CMRC["data"][0]["paragraphs"][0]
    examples = [
        {"id": qa["id"], "question": qa["question"], "context": paragraph["context"]} for qa in paragraph["qas"]
    ]
    for backend in ("paddle", "onnxruntime"):
        got = QaPredictor(
            results["export_dir"], backend=backend, max_length=48, doc_stride=16, max_query_length=16
        ).predict(examples)
        assert got == dygraph, backend


def test_export_model_cli_finds_the_qa_task(cmrc_run, tmp_path):
    from ernie.deploy.export import main

    out, _ = cmrc_run
    exported = main(["--model_path", out, "--output_path", str(tmp_path / "export")])
    with open(os.path.join(exported, "deploy_config.json"), encoding="utf-8") as f:
        config = json.load(f)
    assert config["task"] == "qa" and config["labels"] == []


def test_qa_infer_cli(cmrc_run, tmp_path, capsys):
    from ernie.deploy.qa_infer import main

    out, results = cmrc_run
    data = tmp_path / "dev.json"
    data.write_text(json.dumps(CMRC, ensure_ascii=False), encoding="utf-8")
    argv = [
        "--model_dir",
        results["export_dir"],
        "--input_file",
        str(data),
        "--output",
        str(tmp_path / "p.json"),
        "--max_seq_length",
        "48",
        "--doc_stride",
        "16",
        "--max_query_length",
        "16",
    ]
    got = main(argv)
    with open(os.path.join(out, "eval_predictions.json"), encoding="utf-8") as f:
        assert got["predictions"] == json.load(f)
    assert got["scores"]["f1"] == pytest.approx(results["eval"]["f1"])
    assert "EM " in capsys.readouterr().out
    with pytest.raises(SystemExit):  # never over an existing output
        main(argv)
    assert "already exists" in capsys.readouterr().err


@pytest.mark.slow
def test_run_qa_on_the_builtin_set(tmp_path, tiny_config, vocab_dir):
    from ernie.finetune_cli import run_qa as main

    results = main(
        [
            "--model_name_or_path",
            tiny_config,
            "--tokenizer_name_or_path",
            vocab_dir,
            "--dataset",
            "peoples_daily_qa",
            "--max_train_samples",
            "64",
            "--max_eval_samples",
            "16",
            "--max_predict_samples",
            "16",
            "--max_seq_length",
            "128",
            "--doc_stride",
            "96",
            "--batch_size",
            "16",
            "--max_steps",
            "20",
            "--learning_rate",
            "1e-3",
            "--device",
            "cpu",
            "--output_dir",
            str(tmp_path / "qa"),
            "--do_train",
            "--do_eval",
            "--do_predict",
        ]
    )
    assert 0 <= results["eval"]["f1"] <= 100 and 0 <= results["test"]["exact_match"] <= 100
    with open(results["predictions_file"], encoding="utf-8") as f:
        assert len(json.load(f)) == 16
