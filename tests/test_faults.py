"""Faults of issue #34: on the data side a dead pool worker, concurrent writers, full disks, mixed vocabularies,
unstripped labels, leftovers; in the training engine non-finite and negative flags, a diverging run, PaddleNLP
Trainer flags, a full disk at a fine-tuning checkpoint (signals, lost ranks and resumes: the matrix only). The
subprocess cases are the fast subset of benchmarks/bench_faults.py (the fault matrix, docs/results/faults.md); the
rest are checked in-process."""

from __future__ import annotations

import errno
import importlib.util
import json
import multiprocessing
import os
import sys
import time

import numpy as np
import pytest

from data_tools import indexed_dataset as idx
from data_tools.pool import ordered_map
from ernie.utils import UserError, atomic_write
from ernie.utils.lock import lock_output, output_lock_path

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_faults", os.path.join(REPO, "benchmarks", "bench_faults.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_faults"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


bench = _load_bench()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return bench.Env(REPO, str(tmp_path_factory.mktemp("faults")))


FAST_CASES = [
    "cpd_injected",
    "trans_to_json",
    "words_segmentation",
    "disk_full:cpd",
    "disk_full:trans_to_json",
    "disk_full:merge",
    "disk_full:build_vocab",
    "concurrent:trans_to_json",
    "merge_other_vocab",
    "old_corpus_merges",
    "stale_temp_cleaned",
    "trans_killed_rerun",
    "seq_cls_infer_max_length_2",
    "build_vocab_bad_utf8",
    "build_vocab_size_unreached",
]
_BY_ID = {}
for _kind, _name, _fn in bench.CASES:
    short = {"disk full": "disk_full:", "concurrent writers": "concurrent:"}.get(_kind, "")
    _BY_ID[short + _name if short else _name] = _fn
_BY_ID["trans_to_json"] = bench.dead_worker_trans


@pytest.mark.parametrize("case", FAST_CASES)
def test_fault_case_holds(env, case):
    outcome = _BY_ID[case](env)
    assert outcome.held, outcome.detail


ENGINE_CASES = {  # the fastest training-engine cases of the matrix (each a few seconds)
    "pretrain:max_lr_inf": bench.pretrain_max_lr_inf,
    "pretrain:warmup_rate_nan": bench.pretrain_warmup_nan,
    "pretrain:max_lr_negative": bench.pretrain_max_lr_negative,
    "pretrain:max_lr_1e30_last_step": bench.pretrain_diverges,
    "pretrain:fp16_trainer_flag_and_prefix": bench.pretrain_trainer_flags,
    "finetune:learning_rate_nan": bench.finetune_lr_nan,
    "finetune:max_seq_length_2": bench.finetune_max_seq_length_2,
    "finetune:disk_full_checkpoint": bench.finetune_disk_full,
}


@pytest.mark.parametrize("case", list(ENGINE_CASES))
def test_engine_fault_case_holds(env, case):
    outcome = ENGINE_CASES[case](env)
    assert outcome.held, outcome.detail


@pytest.mark.slow
@pytest.mark.parametrize("case", ["cpd_kill9", "cpd_sigterm", "concurrent:cpd", "cpd_overwrite_keeps_old"])
def test_slow_fault_case_holds(env, case):
    fn = {
        "cpd_kill9": bench.dead_worker_cpd_kill9,
        "cpd_sigterm": bench.sigterm_cpd,
        "concurrent:cpd": bench.concurrent_cpd,
        "cpd_overwrite_keeps_old": bench.disk_full_cpd_overwrite,
    }[case]
    outcome = fn(env)
    assert outcome.held, outcome.detail


# ---------------------------------------------------------------------------------------------------- the pool


def _square(x: int) -> int:
    return x * x


def _bad_init() -> None:
    raise UserError("--model_name: no vocabulary")


def test_ordered_map_keeps_order_and_reads_lazily():
    read = []

    def items():
        for i in range(40):
            read.append(i)
            yield i

    results = ordered_map(_square, items(), 2, in_flight=4)
    first = next(results)
    assert first == 0 and len(read) <= 5  # bounded look-ahead, not the whole input
    assert [first, *results] == [i * i for i in range(40)]


def test_ordered_map_initializer_error_reaches_the_caller():
    with pytest.raises(UserError, match="no vocabulary"):
        list(ordered_map(_square, range(4), 2, initializer=_bad_init))


def test_dead_worker_is_one_user_error(monkeypatch):
    monkeypatch.setenv("ERNIE_FAULT_WORKER_KILL_AT", "2")
    start = time.time()
    with pytest.raises(UserError, match=r"killed by SIGKILL.*fewer --workers \(now 2\)"):
        list(ordered_map(_square, range(50), 2))
    assert time.time() - start < 30


# ------------------------------------------------------------------------------------------- locks, disk errors


def _hold(path: str, seconds: float, ready) -> None:
    with lock_output(path, "--output_path", log=None):
        ready.set()
        time.sleep(seconds)


def test_output_lock_says_what_it_waits_for(tmp_path):
    out = str(tmp_path / "docs.jsonl")
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold, args=(out, 1.5, ready))
    holder.start()
    assert ready.wait(10)
    with pytest.raises(UserError, match=r"--output_path .*docs.jsonl: another run \(pid \d+ on .*\) is writing it"):
        with lock_output(out, "--output_path", wait=0.2, log=None):
            pass
    said = []
    with lock_output(out, "--output_path", wait=20, log=said.append):
        pass
    holder.join()
    assert len(said) == 1 and "waiting up to 20 s" in said[0] and out in said[0]
    assert not os.path.exists(output_lock_path(out))  # removed on release


def test_permission_error_at_rename_is_one_line(tmp_path, monkeypatch):
    target = tmp_path / "out.txt"
    target.write_text("mine\n")

    def refuse(src, dst):
        raise PermissionError(errno.EACCES, "Permission denied", dst)

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(UserError, match=r"cannot write .*out.txt: permission denied"):
        with atomic_write(str(target), "w") as f:
            f.write("new\n")
    monkeypatch.undo()
    assert target.read_text() == "mine\n"
    assert os.listdir(tmp_path) == ["out.txt"]  # the temporary file is gone


def test_disk_full_in_builder_is_one_line(tmp_path, monkeypatch):
    builder = idx.make_builder(str(tmp_path / "c"), "npy", np.uint16)
    real_write = builder._data.file.write

    def full(data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(builder._data.file, "write", full)
    with pytest.raises(UserError, match=r"cannot write .*c_ids.npy: the disk is full"):
        with builder:
            builder.add_item([1, 2, 3])
    del real_write
    assert [n for n in os.listdir(tmp_path)] == []  # no temporary file, no lock file


# ------------------------------------------------------------------------------------------------ vocabularies


def _vocab(tmp_path, name: str, tokens: list[str]) -> str:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return str(folder)


def _corpus(prefix: str, fingerprint: str | None, size: int | None = None) -> str:
    with idx.make_builder(prefix, "npy", np.uint16, vocab_fingerprint=fingerprint, vocab_size=size) as b:
        b.add_item([5, 6])
        b.add_item([7])
        b.end_document()
        b.finalize()
    return prefix


SPECIALS = ["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]"]


def test_vocab_fingerprint_of_tokenizer_file_and_folder(tmp_path):
    from ernie.tokenizer import ErnieTokenizer

    folder = _vocab(tmp_path, "v", [*SPECIALS, "今", "天"])
    tok = ErnieTokenizer.from_pretrained(folder)
    fp = idx.vocab_fingerprint(tok)
    assert fp.startswith("sha256:") and fp == idx.vocab_fingerprint(folder)
    assert fp == idx.vocab_fingerprint(os.path.join(folder, "vocab.txt"))
    swapped = _vocab(tmp_path, "w", [*SPECIALS, "天", "今"])
    assert idx.vocab_fingerprint(swapped) != fp


def test_fingerprint_is_a_sidecar_and_old_corpora_load(tmp_path):
    fp = idx.vocab_fingerprint(_vocab(tmp_path, "v", [*SPECIALS, "a", "b"]))
    new = _corpus(str(tmp_path / "new"), fp, 7)
    with np.load(new + "_idx.npz") as z:
        assert sorted(z.files) == ["docs", "lens"]  # PaddleNLP's layout is unchanged
    assert idx.read_vocab_fingerprint(new) == fp and idx.IndexedDataset(new).vocab_fingerprint == fp
    old = _corpus(str(tmp_path / "old"), None)
    assert idx.read_vocab_fingerprint(old) is None and len(idx.IndexedDataset(old)) == 2
    merged = idx.merge([new, old], str(tmp_path / "m"))
    assert merged.vocab_fingerprint is None  # one input records none: the output cannot claim one


def test_merge_and_blend_refuse_mixed_vocabularies(tmp_path):
    from data_tools.ernie_dataset import ErnieDatasetConfig, build_train_valid_test_datasets
    from ernie.tokenizer import ErnieTokenizer

    a = _vocab(tmp_path, "a", [*SPECIALS, "x", "y", "z"])
    b = _vocab(tmp_path, "b", [*SPECIALS, "z", "y", "x"])
    pa = _corpus(str(tmp_path / "pa"), idx.vocab_fingerprint(a), 8)
    pb = _corpus(str(tmp_path / "pb"), idx.vocab_fingerprint(b), 8)
    with pytest.raises(UserError, match="different vocabularies"):
        idx.merge([pa, pb], str(tmp_path / "m"))
    assert not any(n.startswith("m") for n in os.listdir(tmp_path))
    with pytest.raises(UserError, match="--input_dir: .*different vocabularies"):
        build_train_valid_test_datasets(
            f"1 {pa} 1 {pb}", ErnieTokenizer.from_pretrained(a), ErnieDatasetConfig(max_seq_len=16), (8, 0, 0)
        )
    with pytest.raises(UserError, match="another vocabulary"):
        idx.check_vocab(pb, ErnieTokenizer.from_pretrained(a))
    extended = _vocab(tmp_path, "ext", [*SPECIALS, "x", "y", "z", "w"])
    idx.check_vocab(pa, extended)  # the same ids first, more appended: the corpus's ids keep their meaning


# -------------------------------------------------------------------------------------- fine-tuning readers


def test_seq_cls_labels_are_stripped_and_extra_tabs_skipped(tmp_path, capsys):
    from ernie.finetune.readers import read_seq_cls_file

    path = tmp_path / "train.tsv"
    path.write_text("好吃\tpositive\n难吃\tnegative\n不错\tpositive \n一般\t还行\tnegative\n", encoding="utf-8")
    rows = read_seq_cls_file(str(path))
    assert [r["label"] for r in rows] == ["positive", "negative", "positive"]
    assert all(r["text_pair"] is None for r in rows)
    err = capsys.readouterr().err
    assert "skipped 1 of 4" in err and "train.tsv:4" in err and "a tab inside the text" in err


def test_ner_reader_refuses_a_sentence_classification_file(tmp_path):
    from ernie.finetune.readers import read_ner_file

    path = tmp_path / "train.tsv"
    path.write_text("今天天气很好\tpositive\n太难吃了\tnegative\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"train.tsv:1: one token of several characters.*run_seq_cls.py"):
        read_ner_file(str(path))
    good = tmp_path / "ner.tsv"
    good.write_text("北\002京\tB-LOC\002I-LOC \n", encoding="utf-8")
    assert read_ner_file(str(good))[0]["labels"] == ["B-LOC", "I-LOC"]


def test_export_without_label_file_says_so(tmp_path, capsys):
    from ernie.deploy.infer import read_labels

    assert read_labels(str(tmp_path), 2) == ["0", "1"]
    assert "has no label.txt" in capsys.readouterr().err
    (tmp_path / "deploy_config.json").write_text(json.dumps({"labels": ["neg", "pos"]}))
    assert read_labels(str(tmp_path), 2) == ["neg", "pos"]
    assert capsys.readouterr().err == ""
