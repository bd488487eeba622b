"""Data preparation CLIs: trans_to_json, create_pretraining_data (npy + mmap, ordered workers, whole-word ##
boundaries), merge, bad input (skip-and-count, one-line errors) and atomicity of interrupted runs."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from data_tools import create_pretraining_data as cpd
from data_tools import merge as merge_cli
from data_tools import trans_to_json as t2j
from data_tools.indexed_dataset import IndexedDataset, output_paths
from ernie.tokenizer import ErnieTokenizer, write_tokenizer_files

DOCS = [
    "哈尔滨是黑龙江的省会，国际冰雪文化名城。它位于东北亚中心地带！",
    "北京是中国的首都。上海是经济中心。",
    "我爱自然语言处理。Paddle是深度学习框架。",
    "只有一句话的文档。",
]
SPECIAL = {
    "unk_token": "[UNK]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
}


def make_vocab(directory, specials=("[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]")):
    chars = sorted(set("".join(DOCS)) | set("，。！？：“”"))
    cjk = [c for c in chars if "\u4e00" <= c <= "\u9fff"]
    ascii_ = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789")
    rest = [c.lower() for c in chars] + ascii_ + ["##" + c for c in cjk + ascii_]
    tokens = list(specials) + list(dict.fromkeys(rest))
    os.makedirs(directory, exist_ok=True)
    if set(specials) == {"[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]"}:
        write_tokenizer_files(str(directory), tokens, True, SPECIAL)
    else:
        (directory / "vocab.txt").write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    return str(directory)


@pytest.fixture(scope="module")
def small_vocab(tmp_path_factory):
    return make_vocab(tmp_path_factory.mktemp("small_vocab"))


@pytest.fixture(scope="module")
def small_tok(small_vocab):
    return ErnieTokenizer.from_pretrained(small_vocab)


def write_jsonl(path, texts, key="text"):
    with open(path, "w", encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps({key: t}, ensure_ascii=False) + "\n")
    return str(path)


def run_cpd(capsys, *args):
    """Run create_pretraining_data's CLI in-process: (exit code, stdout, stderr)."""
    try:
        code = cpd.main([str(a) for a in args])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def cpd_args(vocab_dir, inp, prefix, *extra):
    return ["--model_name", vocab_dir, "--input_path", inp, "--output_prefix", prefix, *extra]


WWM = ["--split_sentences", "--chinese", "--cn_whole_word_segment"]


def decoded(tok, ds):
    return [tok.convert_ids_to_tokens(ds[i].tolist()) for i in range(len(ds))]


# --------------------------------------------------------------------------------------------------- trans_to_json


def test_trans_to_json(tmp_path, capsys):
    src = tmp_path / "txt"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text(
        "第一篇文档的第一段。\n第二段内容在这里。\n\n第二篇文档很长很长很长。\n\n短\n", encoding="utf-8"
    )
    (src / "sub" / "b.txt").write_bytes(
        "第三篇文档也够长了吧。\n".encode() + b"\xff\xfe bad line\n" + "第三篇的第二段。\n".encode()
    )
    out = tmp_path / "docs.jsonl"
    assert t2j.main(["--input_path", str(src), "--output_path", str(out), "--no-shuffle", "--workers", "2"]) == 0
    printed = capsys.readouterr().out
    docs = [json.loads(line)["text"] for line in out.read_text(encoding="utf-8").splitlines()]
    assert docs == [
        "第一篇文档的第一段。\n第二段内容在这里。",
        "第二篇文档很长很长很长。",
        "第三篇文档也够长了吧。\n第三篇的第二段。",
    ]
    assert "1 lines of invalid UTF-8 skipped (first at" in printed and "b.txt:2)" in printed
    assert "1 documents shorter than --min_doc_length 10 skipped" in printed and "a.txt:6)" in printed
    # shuffled by default, deterministically, same documents; and no silent overwrite
    with pytest.raises(SystemExit) as e:
        t2j.main(["--input_path", str(src), "--output_path", str(out)])
    assert e.value.code == 2 and "--overwrite" in capsys.readouterr().err
    t2j.main(["--input_path", str(src), "--output_path", str(tmp_path / "s1"), "--seed", "3"])
    t2j.main(["--input_path", str(src), "--output_path", str(tmp_path / "s2"), "--seed", "3"])
    s1 = (tmp_path / "s1.jsonl").read_text(encoding="utf-8")
    assert s1 == (tmp_path / "s2.jsonl").read_text(encoding="utf-8")
    assert sorted(json.loads(x)["text"] for x in s1.splitlines()) == sorted(docs)


def test_trans_to_json_one_doc_per_line(tmp_path, capsys):
    """A file of one review a line: read the default way it is one document, with a warning naming the flag;
    with --one_doc_per_line every non-blank line is a document (short ones still skipped and counted)."""
    reviews = [f"第{i}条评论，这本书写得非常好。" for i in range(t2j.MANY_LINES + 20)]
    src = tmp_path / "reviews.txt"
    src.write_text("\n".join(reviews[:50]) + "\n\n" + "\n".join(reviews[50:]) + "\n短\n", encoding="utf-8")
    out = tmp_path / "one.jsonl"
    assert t2j.main(["--input_path", str(src), "--output_path", str(out), "--no-shuffle"]) == 0
    captured = capsys.readouterr()
    assert "Wrote 2 documents" in captured.out and "--one_doc_per_line" not in captured.err  # 2 docs: no warning

    src.write_text("\n".join(reviews) + "\n短\n", encoding="utf-8")
    assert t2j.main(["--input_path", str(src), "--output_path", str(out), "--no-shuffle", "--overwrite"]) == 0
    captured = capsys.readouterr()
    assert "Wrote 1 documents" in captured.out
    warning = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and str(src) in warning[0] and f"{len(reviews) + 1} lines made 1 document" in warning[0]
    assert "--one_doc_per_line" in warning[0]

    stats = t2j.trans_to_json(
        t2j.TransConfig(str(src), str(tmp_path / "per_line"), one_doc_per_line=True, no_shuffle=True)
    )
    docs = [json.loads(x)["text"] for x in (tmp_path / "per_line.jsonl").read_text(encoding="utf-8").splitlines()]
    assert docs == reviews and stats["warnings"] == []
    assert "1 documents shorter than --min_doc_length 10 skipped" in stats["skipped"].lines()[0]
    assert f"reviews.txt:{len(reviews) + 1})" in stats["skipped"].lines()[0]
    assert "warning" not in capsys.readouterr().err


def test_trans_to_json_missing_input(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        t2j.main(["--input_path", str(tmp_path / "nope"), "--output_path", str(tmp_path / "o.jsonl")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --input_path:") and "Traceback" not in err
    assert not os.path.exists(tmp_path / "o.jsonl")


# ------------------------------------------------------------------------------------------ create_pretraining_data


def test_whole_word_boundaries_jieba(tmp_path, capsys, small_vocab, small_tok):
    inp = write_jsonl(tmp_path / "d.jsonl", DOCS)
    code, out, err = run_cpd(capsys, *cpd_args(small_vocab, inp, tmp_path / "o" / "p", *WWM, "--cn_seg_func", "jieba"))
    assert code == 0, err
    ds = IndexedDataset(str(tmp_path / "o" / "p"))
    assert ds.impl == "npy" and ds.dtype == np.uint16
    sents = decoded(small_tok, ds)
    assert sents[0][:3] == ["哈", "##尔", "##滨"]
    assert " ".join(sents[0]).startswith("哈 ##尔 ##滨 是 黑 ##龙 ##江 的 省 ##会")
    assert ds.num_documents == 4 and list(np.diff(ds.doc_idx)) == [2, 2, 2, 1]
    # ids decode back to the text (## pieces restored), no special tokens inside
    restore = small_tok.wwm_restore_map()
    assert "".join(small_tok.convert_ids_to_tokens(restore[ds[2]].tolist())) == "北京是中国的首都。"
    assert "1 one-sentence documents kept (SOP needs two sentences)" in out and "d.jsonl:4" in out
    assert "4 documents, 7 sentences" in out


def test_char_segmenter_and_plain_have_no_boundaries(tmp_path, capsys, small_vocab, small_tok):
    inp = write_jsonl(tmp_path / "d.jsonl", DOCS[:1])
    for name, extra in {"char": [*WWM, "--cn_seg_func", "char"], "plain": ["--split_sentences"]}.items():
        code, _, err = run_cpd(capsys, *cpd_args(small_vocab, inp, tmp_path / name, *extra))
        assert code == 0, err
        tokens = [t for s in decoded(small_tok, IndexedDataset(str(tmp_path / name))) for t in s]
        assert not any(t.startswith("##") for t in tokens) and tokens[:3] == ["哈", "尔", "滨"]


def test_cn_splited_uses_given_words(tmp_path, capsys, small_vocab, small_tok):
    text = "哈尔滨 是 黑龙江 的 省会 。 ” 它 位于 东北亚 ！\n北京 是 首都 。"
    inp = write_jsonl(tmp_path / "d.jsonl", [text])
    code, _, err = run_cpd(capsys, *cpd_args(small_vocab, inp, tmp_path / "p", *WWM, "--cn_splited"))
    assert code == 0, err
    ds = IndexedDataset(str(tmp_path / "p"))
    expected = [
        ["哈尔滨", "是", "黑龙江", "的", "省会", "。", "”"],
        ["它", "位于", "东北亚", "！"],
        ["北京", "是", "首都", "。"],
    ]
    assert len(ds) == 3
    for i, words in enumerate(expected):
        assert ds[i].tolist() == small_tok.encode_words(words)


def test_formats_workers_and_merge(tmp_path, capsys, small_vocab, small_tok):
    def segmented(text, n):  # words of n chars, space-separated
        return " ".join(text[j : j + n] for j in range(0, len(text), n))

    words = [segmented(DOCS[i % 4], 1 + i % 3) for i in range(8)]
    texts = [words[i % 8] + "\n" + words[(i + 1) % 8] * (i % 3) for i in range(700)]  # > 2 chunks of 256 lines
    inp = write_jsonl(tmp_path / "d.jsonl", texts)
    for impl in ("npy", "mmap"):
        for workers in (1, 2):
            prefix = tmp_path / f"{impl}{workers}"
            code, _, err = run_cpd(
                capsys,
                *cpd_args(small_vocab, inp, prefix, *WWM, "--cn_splited", "--data_impl", impl, "--workers", workers),
            )
            assert code == 0, err
    for impl in ("npy", "mmap"):  # ordered output: byte-identical whatever the number of workers
        one, two = output_paths(str(tmp_path / f"{impl}1"), impl), output_paths(str(tmp_path / f"{impl}2"), impl)
        for a, b in zip(one, two):
            assert open(a, "rb").read() == open(b, "rb").read()
    npy, mm = IndexedDataset(str(tmp_path / "npy1")), IndexedDataset(str(tmp_path / "mmap1"))
    assert npy.impl == "npy" and mm.impl == "mmap" and npy.num_documents == 700
    np.testing.assert_array_equal(npy.tokens, mm.tokens)
    np.testing.assert_array_equal(npy.sizes, mm.sizes)
    np.testing.assert_array_equal(npy.doc_idx, mm.doc_idx)
    # merge: documents of both, in order
    try:
        code = merge_cli.main(
            [
                "--input",
                str(tmp_path / "npy1"),
                str(tmp_path / "mmap2"),
                "--output_prefix",
                str(tmp_path / "m"),
                "--data_impl",
                "mmap",
            ]
        )
    except SystemExit as e:
        code = e.code
    assert code == 0, capsys.readouterr().err
    merged = IndexedDataset(str(tmp_path / "m"))
    assert merged.impl == "mmap" and merged.num_documents == 1400 and len(merged) == 2 * len(npy)
    np.testing.assert_array_equal(merged.tokens, np.concatenate([npy.tokens, npy.tokens]))
    assert merged.get_document(700)[0].tolist() == npy[0].tolist()


def test_merge_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        merge_cli.main(["--input", str(tmp_path / "nope"), "--output_prefix", str(tmp_path / "m")])
    assert e.value.code == 2 and "--input:" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------------ bad input


def test_bad_lines_skipped_and_counted(tmp_path, capsys, small_vocab):
    good = json.dumps({"text": DOCS[0]}, ensure_ascii=False).encode()
    lines = [
        good,
        b'{"text": "\xff\xfe broken utf-8"}',
        b'{"text": "unterminated',
        json.dumps({"content": DOCS[1]}, ensure_ascii=False).encode(),
        json.dumps({"text": 42}).encode(),
        json.dumps({"text": "   \n  "}).encode(),
        b"",
        json.dumps(["not", "an", "object"]).encode(),
        good,
    ]
    inp = tmp_path / "d.jsonl"
    inp.write_bytes(b"\n".join(lines) + b"\n")
    code, out, err = run_cpd(capsys, *cpd_args(small_vocab, inp, tmp_path / "p", *WWM, "--cn_seg_func", "char"))
    assert code == 0, err
    assert "Traceback" not in out + err
    expected = {
        "1 lines of invalid UTF-8 skipped": "d.jsonl:2)",
        "1 lines of invalid JSON skipped": "d.jsonl:3)",
        "2 lines without the key 'text' skipped": "d.jsonl:4)",
        "1 lines whose 'text' is not a string skipped": "d.jsonl:5)",
        "1 empty documents skipped": "d.jsonl:6)",
        "1 blank lines skipped": "d.jsonl:7)",
    }
    for what, where in expected.items():
        line = next((x for x in out.splitlines() if what in x), None)
        assert line is not None and line.endswith(where), (what, out)
    assert IndexedDataset(str(tmp_path / "p")).num_documents == 2


def test_nothing_valid_is_an_error_and_writes_nothing(tmp_path, capsys, small_vocab):
    inp = tmp_path / "d.jsonl"
    inp.write_bytes(b'not json\n{"text": ""}\n')
    code, _, err = run_cpd(capsys, *cpd_args(small_vocab, inp, tmp_path / "p"))
    assert code == 2 and err.startswith("error: --input_path: no documents") and "d.jsonl:1" in err
    assert os.listdir(tmp_path) == ["d.jsonl"]


def test_overlong_sentences_cut_at_word_starts(tmp_path, capsys, small_vocab, small_tok):
    text = "哈尔滨 黑龙江 " * 30  # one sentence of 180 tokens, words of 3 chars
    inp = write_jsonl(tmp_path / "d.jsonl", [text])
    code, out, err = run_cpd(
        capsys, *cpd_args(small_vocab, inp, tmp_path / "p", *WWM, "--cn_splited", "--max_sentence_length", "50")
    )
    assert code == 0, err
    ds = IndexedDataset(str(tmp_path / "p"))
    assert len(ds) == 4 and ds.sizes.max() <= 50 and ds.sizes.sum() == 180
    assert all(small_tok.is_word_start(ds[i][:1])[0] for i in range(len(ds)))
    assert "1 sentences longer than 50 tokens cut at word starts (first at" in out


def test_overlong_line_skipped(tmp_path, small_vocab):
    inp = write_jsonl(tmp_path / "d.jsonl", [DOCS[0] * 50, DOCS[1]])
    config = cpd.PretrainDataConfig(
        model_name=small_vocab, input_path=inp, output_prefix=str(tmp_path / "p"), max_line_bytes=1000
    )
    stats = cpd.create_pretraining_data(config)
    assert stats["documents"] == 1
    assert stats["skipped"].counts["lines longer than 1000 bytes skipped"] == 1
    assert stats["skipped"].first["lines longer than 1000 bytes skipped"].endswith("d.jsonl:1")


def test_vocab_without_special_tokens(tmp_path, capsys):
    bad = make_vocab(tmp_path / "badvocab", specials=("[PAD]", "[UNK]"))
    inp = write_jsonl(tmp_path / "d.jsonl", DOCS)
    code, _, err = run_cpd(capsys, *cpd_args(bad, inp, tmp_path / "p", *WWM))
    assert code == 2 and "vocab.txt" in err and "[MASK]" in err and "Traceback" not in err
    assert not any(n.startswith("p") for n in os.listdir(tmp_path))


@pytest.mark.parametrize("flag, value", [("--input_path", "missing.jsonl"), ("--model_name", "no_vocab_dir")])
def test_missing_paths(tmp_path, capsys, small_vocab, flag, value):
    args = dict(zip(["--model_name", "--input_path"], [small_vocab, write_jsonl(tmp_path / "d.jsonl", DOCS)]))
    args[flag] = str(tmp_path / value)
    code, _, err = run_cpd(capsys, *[x for kv in args.items() for x in kv], "--output_prefix", tmp_path / "p")
    assert code == 2 and err.startswith(f"error: {flag}: ") and value in err


def test_refuses_to_overwrite(tmp_path, capsys, small_vocab):
    inp = write_jsonl(tmp_path / "d.jsonl", DOCS)
    assert run_cpd(capsys, *cpd_args(small_vocab, inp, tmp_path / "p"))[0] == 0
    before = (tmp_path / "p_ids.npy").read_bytes()
    code, _, err = run_cpd(capsys, *cpd_args(small_vocab, inp, tmp_path / "p", *WWM, "--cn_seg_func", "char"))
    assert code == 2 and "--overwrite" in err
    assert (tmp_path / "p_ids.npy").read_bytes() == before
    assert (
        run_cpd(capsys, *cpd_args(small_vocab, inp, tmp_path / "p", "--max_sentence_length", "5", "--overwrite"))[0]
        == 0
    )
    assert IndexedDataset(str(tmp_path / "p")).sizes.max() == 5


# ------------------------------------------------------------------------------------------------------ atomicity


def test_failure_mid_run_leaves_nothing(tmp_path, capsys, small_vocab, monkeypatch):
    inp = write_jsonl(tmp_path / "d.jsonl", DOCS * 200)
    real = cpd.DocumentEncoder.encode_chunk
    calls = []

    def failing(self, path, lines):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk on fire")
        return real(self, path, lines)

    monkeypatch.setattr(cpd.DocumentEncoder, "encode_chunk", failing)
    with pytest.raises(RuntimeError):
        cpd.main(cpd_args(small_vocab, inp, str(tmp_path / "p")))
    assert sorted(os.listdir(tmp_path)) == ["d.jsonl"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_run_leaves_no_final_files(tmp_path, small_vocab, sig):
    words = "哈尔滨 是 黑龙江 的 省会 ， 国际 冰雪 文化 名城 。 "
    inp = write_jsonl(tmp_path / "d.jsonl", [words * 40] * 20000)  # ~30 MB: runs for many seconds
    prefix = tmp_path / "out" / "p"
    script = os.path.join(os.path.dirname(__file__), "..", "scripts", "create_pretraining_data.py")
    proc = subprocess.Popen(
        [sys.executable, script, *cpd_args(small_vocab, inp, str(prefix), *WWM, "--cn_splited")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if os.path.isdir(prefix.parent) and any(n.endswith(".tmp") for n in os.listdir(prefix.parent)):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    time.sleep(0.3)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    left = os.listdir(prefix.parent)
    assert not any(os.path.exists(p) for p in output_paths(str(prefix), "npy"))
    assert all(n.startswith(".") for n in left)
    if sig == signal.SIGTERM:  # a clean stop: one line, temporary files removed
        assert proc.returncode == 130 and err.strip().endswith("error: interrupted") and left == []


# ----------------------------------------------------------------------------------------------- paddlenlp 2.8.1


@pytest.mark.compat
def test_paddlenlp_reads_our_outputs(tmp_path, capsys, small_vocab):
    pytest.importorskip("paddlenlp")
    from paddlenlp.data import indexed_dataset as theirs

    inp = write_jsonl(tmp_path / "d.jsonl", DOCS * 3)
    for impl in ("npy", "mmap"):
        prefix = str(tmp_path / impl)
        assert run_cpd(capsys, *cpd_args(small_vocab, inp, prefix, *WWM, "--data_impl", impl))[0] == 0
        ours = IndexedDataset(prefix)
        ref = theirs.CompatibleIndexedDataset(prefix) if impl == "npy" else theirs.make_dataset(prefix, "mmap", True)
        assert len(ref) == len(ours)
        for i in range(len(ours)):
            np.testing.assert_array_equal(ref[i], ours[i])
        np.testing.assert_array_equal(ref.doc_idx, ours.doc_idx)


# ------------------------------------------------------------------------------------ unit markers (lac_lexical)


def test_lexical_markers_round_trip_both_formats_and_merge(tmp_path, capsys, small_vocab, small_tok):
    from data_tools.indexed_dataset import make_builder, units_path
    from data_tools.lac import LacLexicalModel
    from data_tools.lexical_units import token_markers, word_markers

    inp = write_jsonl(tmp_path / "d.jsonl", DOCS)
    for impl in ("npy", "mmap"):
        code, out, err = run_cpd(
            capsys,
            *cpd_args(small_vocab, inp, tmp_path / impl, *WWM, "--cn_seg_func", "lac_lexical", "--data_impl", impl),
        )
        assert code == 0, err
        assert units_path(str(tmp_path / impl)) in out
    npy, mm = IndexedDataset(str(tmp_path / "npy")), IndexedDataset(str(tmp_path / "mmap"))
    np.testing.assert_array_equal(npy.tokens, mm.tokens)
    np.testing.assert_array_equal(npy.units, mm.units)
    assert npy.units.dtype == np.uint8 and npy.units.size == npy.tokens.size
    # the markers are those of LAC's words: sentence 0 of document 1 is 北京是中国的首都。
    words, labels = LacLexicalModel().analyse(["北京是中国的首都。"])[0]
    counts = [len(small_tok.encode_words([w])) for w in words]
    sentence = int(npy.doc_idx[1])
    assert npy[sentence].tolist() == small_tok.encode_words(words)
    assert (
        npy.units[npy.pointers[sentence] : npy.pointers[sentence + 1]].tolist()
        == token_markers(counts, word_markers(labels)).tolist()
    )
    # the main files are exactly those of a builder without markers (PaddleNLP's files)
    for impl in ("npy", "mmap"):
        with make_builder(str(tmp_path / f"plain_{impl}"), impl, npy.dtype) as builder:
            for d in range(npy.num_documents):
                builder.add_documents(
                    npy.document_tokens(d),
                    npy.sizes[npy.doc_idx[d] : npy.doc_idx[d + 1]],
                    [int(npy.doc_idx[d + 1] - npy.doc_idx[d])],
                )
            builder.finalize()
        for ours, plain in zip(
            output_paths(str(tmp_path / impl), impl), output_paths(str(tmp_path / f"plain_{impl}"), impl)
        ):
            assert open(ours, "rb").read() == open(plain, "rb").read()
    # merge keeps the markers (both formats in, either out); with an input lacking them, none are written
    code = merge_cli.main(
        [
            "--input",
            str(tmp_path / "npy"),
            str(tmp_path / "mmap"),
            "--output_prefix",
            str(tmp_path / "m"),
            "--data_impl",
            "mmap",
        ]
    )
    assert code == 0
    merged = IndexedDataset(str(tmp_path / "m"))
    np.testing.assert_array_equal(merged.units, np.concatenate([npy.units, mm.units]))
    code = merge_cli.main(
        ["--input", str(tmp_path / "npy"), str(tmp_path / "plain_npy"), "--output_prefix", str(tmp_path / "m2")]
    )
    assert code == 0 and "without unit markers" in capsys.readouterr().out
    assert IndexedDataset(str(tmp_path / "m2")).units is None
    # overwriting a corpus with one without markers removes the stale markers
    code, _, err = run_cpd(capsys, *cpd_args(small_vocab, inp, tmp_path / "npy", *WWM, "--overwrite"))
    assert code == 0, err
    assert not os.path.exists(units_path(str(tmp_path / "npy"))) and IndexedDataset(str(tmp_path / "npy")).units is None


def test_bad_marker_file_is_one_clear_error(tmp_path, capsys, small_vocab):
    from data_tools.indexed_dataset import units_path
    from ernie.utils import UserError

    inp = write_jsonl(tmp_path / "d.jsonl", DOCS)
    assert run_cpd(capsys, *cpd_args(small_vocab, inp, tmp_path / "c", *WWM))[0] == 0
    np.save(units_path(str(tmp_path / "c")), np.zeros(3, dtype=np.uint8))
    with pytest.raises(UserError, match=r"c_units.npy: expected uint8 \[\d+\] markers"):
        IndexedDataset(str(tmp_path / "c"))
