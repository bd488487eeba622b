"""Vocabulary builder: layout and properties of the built vocab, determinism, CLI flags and bad input."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from data_tools.vocab import VocabConfig, build_vocab, main
from ernie import ErnieTokenizer
from ernie.tokenizer import is_cjk_char

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIXED_TEXT = (
    "哈尔滨是一个美丽的城市。The hotel was clean, the staff were friendly!\n"
    "价格 ２９９ 元，性价比很高；playing games on Windows XP 2008 works fine.\n"
    "北京欢迎你 hello world hello again https://example.com/path?q=1\n"
)


def read_vocab(directory) -> list[str]:
    with open(os.path.join(directory, "vocab.txt"), encoding="utf-8") as f:
        return f.read().split("\n")[:-1]


@pytest.fixture
def mixed_corpus(tmp_path, peoples_daily_txt) -> str:
    """A small folder corpus: 1,500 People's Daily paragraphs + English-heavy lines, in two files."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    with open(peoples_daily_txt, encoding="utf-8") as f:
        (folder / "a.txt").write_text("".join(next(f) for _ in range(1500)), encoding="utf-8")
    (folder / "b.txt").write_text(MIXED_TEXT * 20, encoding="utf-8")
    return str(folder)


def test_built_vocab_layout_and_properties(vocab_dir):
    tokens = read_vocab(vocab_dir)
    assert len(tokens) == 10000 <= 65535
    assert tokens[:5] == ["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]"]
    assert len(set(tokens)) == len(tokens)
    assert all(t and not any(c.isspace() for c in t) for t in tokens)
    token_set = set(tokens)
    cjk = [t for t in tokens if len(t) == 1 and is_cjk_char(t)]
    assert len(cjk) > 4000
    assert all("##" + c in token_set for c in cjk)  # every CJK char has its continuation form
    assert {"哈", "##尔", "##滨", "，", "。", "、", "《", "０", "%", "a", "##z"} <= token_set
    assert set("0123456789abcdefghijklmnopqrstuvwxyz") <= token_set
    # CJK chars are ordered by frequency: the most frequent chars of People's Daily come first
    assert cjk.index("的") < 3 and cjk.index("的") < cjk.index("哈")
    config = json.loads(open(os.path.join(vocab_dir, "tokenizer_config.json"), encoding="utf-8").read())
    assert config["do_lower_case"] is True and config["tokenizer_class"] == "ErnieTokenizer"


def test_built_vocab_covers_its_corpus(tokenizer, peoples_daily_txt):
    with open(peoples_daily_txt, encoding="utf-8") as f:
        text = "".join(next(f) for _ in range(2000))
    ids = tokenizer(text)["input_ids"]
    assert len(ids) > 100000
    assert ids.count(tokenizer.unk_token_id) == 0


def test_build_is_deterministic_and_learns_wordpieces(mixed_corpus, tmp_path):
    config = VocabConfig(vocab_size=3000)
    summary = build_vocab(mixed_corpus, str(tmp_path / "v1"), config)
    build_vocab(mixed_corpus, str(tmp_path / "v2"), config)
    tokens = read_vocab(tmp_path / "v1")
    assert tokens == read_vocab(tmp_path / "v2")
    assert summary["total"] == len(tokens) <= 3000 and summary["corpus_files"] == 2
    assert summary["wordpiece"] > 0
    tok = ErnieTokenizer.from_pretrained(str(tmp_path / "v1"))
    for word in ("hello", "the", "hotel", "windows"):
        assert tok.tokenize(word) == [word]  # frequent words are whole pieces
    assert tok.unk_token_id not in tok(MIXED_TEXT)["input_ids"]


def test_small_budget_keeps_frequent_cjk_and_some_wordpieces(mixed_corpus, tmp_path):
    summary = build_vocab(mixed_corpus, str(tmp_path / "v"), VocabConfig(vocab_size=1000))
    tokens = read_vocab(tmp_path / "v")
    assert len(tokens) == 1000
    assert summary["cjk"] < 400 and summary["wordpiece"] >= 50
    assert "的" in tokens and "##的" in tokens


def test_cjk_range_all(tmp_path):
    (tmp_path / "t.txt").write_text("哈尔滨 hello\n", encoding="utf-8")
    summary = build_vocab(str(tmp_path / "t.txt"), str(tmp_path / "v"), VocabConfig(45000, cjk_range="all"))
    tokens = read_vocab(tmp_path / "v")
    assert summary["cjk"] == 0x9FA5 - 0x4E00 + 1 and len(tokens) <= 45000
    cjk = [t for t in tokens if len(t) == 1 and is_cjk_char(t)]
    assert cjk[:3] == ["哈", "尔", "滨"] and "龘" in cjk and "##龘" in tokens


def test_cli_writes_refuses_overwrite_and_replaces(mixed_corpus, tmp_path, capsys):
    out = str(tmp_path / "out")
    args = ["--input_path", mixed_corpus, "--output_dir", out, "--vocab_size", "2000"]
    assert main(args) == 0
    assert "vocab: 2000 tokens" in capsys.readouterr().out
    assert sorted(os.listdir(out)) == ["special_tokens_map.json", "tokenizer_config.json", "vocab.txt"]
    before = read_vocab(out)
    with pytest.raises(SystemExit) as e:
        main(args[:-1] + ["1500"])
    assert e.value.code == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert read_vocab(out) == before
    assert main(args[:-1] + ["1500", "--overwrite"]) == 0
    assert len(read_vocab(out)) == 1500


@pytest.mark.parametrize(
    "case, flags, message",
    [
        ("missing", ["--vocab_size", "1000"], "--input_path: .*does not exist"),
        ("empty", ["--vocab_size", "1000"], "holds no text"),
        ("empty_dir", ["--vocab_size", "1000"], "contains no files"),
        ("bad_utf8", ["--vocab_size", "1000"], r"holds no text; 1 lines of invalid UTF-8 skipped .*bad.txt:1"),
        ("ok", ["--vocab_size", "50"], "--vocab_size: 50 is too small"),
        ("ok", ["--vocab_size", "70000"], r"--vocab_size: must be in 1\.\.65535 .*got 70000"),
        ("ok", ["--vocab_size", "0"], "--vocab_size: must be in"),
        ("ok", ["--vocab_size", "5000", "--cjk_range", "all"], "too small for --cjk_range all"),
        ("ok", ["--vocab_size", "1000", "--min_freq", "0"], "--min_freq"),
    ],
)
def test_cli_bad_input_is_one_line_error(tmp_path, capsys, case, flags, message):
    corpus = tmp_path / "in"
    if case == "empty":
        corpus.write_text(" \n\n", encoding="utf-8")
    elif case == "empty_dir":
        corpus.mkdir()
    elif case == "bad_utf8":
        corpus.mkdir()
        (corpus / "bad.txt").write_bytes(b"\xe5\xa5\n")  # invalid lines are skipped and counted: no text left
    elif case == "ok":
        corpus.write_text(MIXED_TEXT, encoding="utf-8")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as e:
        main(["--input_path", str(corpus), "--output_dir", str(out), *flags])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert re.search(message, err), err
    assert not (out / "vocab.txt").exists()


def test_script_entry_point(tmp_path):
    (tmp_path / "t.txt").write_text(MIXED_TEXT, encoding="utf-8")
    cmd = [
        sys.executable,
        os.path.join(REPO, "scripts", "build_vocab.py"),
        "--input_path",
        str(tmp_path / "t.txt"),
        "--output_dir",
        str(tmp_path / "v"),
        "--vocab_size",
        "300",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert len(read_vocab(tmp_path / "v")) <= 300
    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode == 2 and "Traceback" not in again.stderr and "--overwrite" in again.stderr
