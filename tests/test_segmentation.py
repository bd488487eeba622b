"""Segmenters (lac, jieba, char) and the words_segmentation CLI."""

import os
import subprocess
import sys

import pytest

from data_tools import corpus
from data_tools.lac import LAC_MODEL_ENV, LacSegModel, find_lac_model_dir
from data_tools.segmentation import get_segmenter, main, word_f1
from ernie.utils import UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRICKY = [
    "",
    "   ",
    "我爱北京天安门",
    "Ｐａｄｄｌｅ　３．０发布了！  hello world\t2024年",  # full-width chars, ideographic space, tabs
    "他说：“今天天气很好。”然后走了……",
    "臺灣的東西",  # traditional chars (q2b maps them for the model only; the output keeps them)
    "中华人民共和国成立了。" * 40,  # longer than LAC's chunk size
]


@pytest.fixture(scope="module")
def segmenters():
    return {name: get_segmenter(name) for name in ("lac", "jieba", "char")}


def f1(pred, gold):
    return word_f1(pred, gold)[2]


@pytest.mark.parametrize(
    "name, expected",
    [
        (
            "lac",
            {
                "我爱北京天安门": ["我", "爱", "北京", "天安门"],
                "今天天气很好，我们去公园散步。": ["今天", "天气", "很好", "，", "我们", "去", "公园", "散步", "。"],
            },
        ),
        (
            "jieba",
            {
                "我爱北京天安门": ["我", "爱", "北京", "天安门"],
                "今天天气很好，我们去公园散步。": ["今天天气", "很", "好", "，", "我们", "去", "公园", "散步", "。"],
            },
        ),
        (
            "char",
            {
                "我爱北京 天安门": ["我", "爱", "北", "京", "天", "安", "门"],
                "BERT模型于2018年发布！": ["BERT", "模", "型", "于", "2018", "年", "发", "布", "！"],
            },
        ),
    ],
)
def test_known_sentences(segmenters, name, expected):
    seg = segmenters[name]
    assert seg.name == name
    assert seg.segment(list(expected)) == list(expected.values())
    assert seg(next(iter(expected))) == next(iter(expected.values()))


@pytest.mark.parametrize("name", ["lac", "jieba", "char"])
def test_join_invariant(segmenters, name):
    out = segmenters[name].segment(TRICKY)
    assert len(out) == len(TRICKY)
    for text, words in zip(TRICKY, out):
        assert "".join(words) == "".join(text.split())
        assert all(w and not any(c.isspace() for c in w) for w in words)
    assert out[0] == [] and out[1] == []
    assert "hello" in out[3] and "world" in out[3]


def test_lac_batch_equals_one_by_one(segmenters):
    texts = corpus.peoples_daily_text()[:20] + TRICKY
    batched = segmenters["lac"].segment(texts)
    assert batched == [segmenters["lac"].segment([t])[0] for t in texts]
    # small batches and short chunks change the packing, not the contract
    small = get_segmenter("lac", batch_chars=64, max_chunk=16).segment(texts)
    assert all("".join(w) == "".join(t.split()) for w, t in zip(small, texts))


def test_f1_on_peoples_daily_sample(segmenters):
    paras = corpus.peoples_daily_paragraphs()[:1000]
    gold = [[w for w, _ in p] for p in paras]
    texts = ["".join(g) for g in gold]
    scores = {name: f1(seg.segment(texts), gold) for name, seg in segmenters.items()}
    assert scores["lac"] >= 0.82, scores
    assert scores["jieba"] >= 0.80, scores
    assert scores["char"] < 0.5, scores


def test_lac_model_dir_errors(tmp_path, monkeypatch):
    monkeypatch.delenv(LAC_MODEL_ENV, raising=False)
    assert os.path.isdir(os.path.join(find_lac_model_dir(), "model"))
    with pytest.raises(UserError, match="pip install --no-build-isolation --no-deps lac==2.1.2"):
        LacSegModel(lac_model_dir=str(tmp_path))
    monkeypatch.setenv(LAC_MODEL_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(UserError, match="lacks model"):
        get_segmenter("lac")
    with pytest.raises(UserError, match="--cn_seg_func"):
        get_segmenter("thulac")


def run_cli(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    return exc.value.code, capsys.readouterr().err


def test_cli_file_round_trip(tmp_path, capsys):
    lines = corpus.peoples_daily_text()[:50] + ["", "  hello  world ", "最后一行"]
    src = tmp_path / "in.txt"
    src.write_text("\r\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out.txt"
    assert main(["--input_path", str(src), "--output_path", str(out), "--cn_seg_func", "lac"]) == 0
    got = out.read_text(encoding="utf-8").split("\n")
    assert got[-1] == "" and len(got) - 1 == len(lines)
    assert all(g.replace(" ", "") == "".join(t.split()) for g, t in zip(got, lines))
    assert got[:2] == [" ".join(w) for w in get_segmenter("lac").segment(lines[:2])]
    assert got[-4:-1] == ["", "hello world", "最后 一行"]
    code, err = run_cli(["--input_path", str(src), "--output_path", str(out)], capsys)
    assert code == 2 and "already exists" in err and "--overwrite" in err
    assert main(["--input_path", str(src), "--output_path", str(out), "--cn_seg_func", "char", "--overwrite"]) == 0
    assert out.read_text(encoding="utf-8").split("\n")[-2] == "最 后 一 行"


def test_cli_folder_round_trip_with_workers(tmp_path):
    src = tmp_path / "corpus"
    (src / "sub").mkdir(parents=True)
    texts = corpus.peoples_daily_text()[:300]
    (src / "a.txt").write_text("\n".join(texts[:200]) + "\n", encoding="utf-8")
    (src / "sub" / "b.txt").write_text("\n".join(texts[200:]) + "\n", encoding="utf-8")
    (src / "notes.md").write_text("not a text file to segment", encoding="utf-8")
    out = tmp_path / "seg"
    proc = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "scripts", "words_segmentation.py"),
            "--input_path",
            str(src),
            "--output_path",
            str(out),
            "--cn_seg_func",
            "jieba",
            "--workers",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.path.relpath(os.path.join(r, f), out) for r, _, fs in os.walk(out) for f in fs) == [
        "a.txt",
        os.path.join("sub", "b.txt"),
    ]
    got = (out / "a.txt").read_text(encoding="utf-8").splitlines() + (out / "sub" / "b.txt").read_text(
        encoding="utf-8"
    ).splitlines()
    assert got == [" ".join(w) for w in get_segmenter("jieba").segment(texts)]  # ordered across workers


def test_cli_bad_inputs(tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_bytes("第一行\n第二行\n".encode() + b"\xff\xfe broken\n")
    out = tmp_path / "bad_out.txt"
    code, err = run_cli(["--input_path", str(bad), "--output_path", str(out), "--cn_seg_func", "char"], capsys)
    assert code == 2 and f"{bad}:3: invalid UTF-8" in err and "Traceback" not in err
    assert os.listdir(tmp_path) == ["bad.txt"]  # nothing half-written
    code, err = run_cli(["--input_path", str(tmp_path / "missing"), "--output_path", str(out)], capsys)
    assert code == 2 and "--input_path" in err and "does not exist" in err
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    code, err = run_cli(["--input_path", str(empty), "--output_path", str(out)], capsys)
    assert code == 2 and "no .txt files" in err
    code, err = run_cli(["--input_path", str(bad), "--output_path", str(out), "--workers", "0"], capsys)
    assert code == 2 and "--workers" in err
    code, err = run_cli(["--input_path", str(tmp_path), "--output_path", str(tmp_path / "seg")], capsys)
    assert code == 2 and "--output_path" in err
    assert not out.exists()
