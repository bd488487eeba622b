"""Bad inputs answered in one line, and caches that heal (issue 14): token ids beyond the vocabulary, bad blend
weights, garbled sample-index caches, unwritable outputs (the shared helpers; every writer end to end is in
test_pretrain.py), empty input to words_segmentation, --max_length beyond an exported model's positions."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ernie.utils import UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --------------------------------------------------------------------------------- token ids beyond the vocabulary


def _corpus(prefix: str, docs: list[list[int]]) -> None:
    from data_tools.indexed_dataset import make_builder

    with make_builder(prefix) as b:
        for doc in docs:
            b.add_item(doc[: len(doc) // 2])
            b.add_item(doc[len(doc) // 2 :])
            b.end_document()
        b.finalize()


@pytest.mark.parametrize("dense", [False, True])
def test_token_ids_beyond_the_vocabulary_are_refused_when_the_corpus_opens(tmp_path, tokenizer, dense):
    from data_tools.ernie_dataset import ErnieDatasetConfig, build_train_valid_test_datasets

    vocab = tokenizer.vocab_size
    docs = [[10 + (d * 7 + i) % 500 for i in range(40)] for d in range(50)]
    if dense:
        docs = [[t + vocab for t in doc] for doc in docs]
    else:
        docs[31][5:105] = [vocab + 3] * 100
    prefix = str(tmp_path / "c")
    _corpus(prefix, docs)
    with pytest.raises(
        UserError,
        match=rf"c_ids.npy: token id {vocab + (10 if dense else 3)} \(document "
        rf"{0 if dense else 31}, .* outside the vocabulary of {vocab} tokens",
    ):
        build_train_valid_test_datasets(prefix, tokenizer, ErnieDatasetConfig(max_seq_len=32), (10, 0, 0))
    _corpus(str(tmp_path / "ok"), [[10 + i for i in range(40)]] * 5)
    from data_tools.indexed_dataset import IndexedDataset

    IndexedDataset(str(tmp_path / "ok")).check_token_ids(vocab)  # in range: no error


# ------------------------------------------------------------------------------------------------ blend weights


@pytest.mark.parametrize("weight", ["nan", "inf", "-inf", "0", "-1"])
def test_bad_blend_weight_is_one_line(tmp_path, weight):
    from data_tools.blending import parse_input_dir

    _corpus(str(tmp_path / "news"), [[10 + i for i in range(40)]] * 5)
    _corpus(str(tmp_path / "reviews"), [[10 + i for i in range(40)]] * 5)
    with pytest.raises(UserError, match=rf"--input_dir: the weight of {tmp_path}/news is .*positive finite"):
        parse_input_dir(f"{weight} {tmp_path}/news 1 {tmp_path}/reviews")
    prefixes, weights = parse_input_dir(f"3 {tmp_path}/news 1 {tmp_path}/reviews")
    assert weights.tolist() == [0.75, 0.25]


# -------------------------------------------------------------------------------------- garbled sample-index cache


def test_garbled_sample_index_cache_of_the_right_size_is_rebuilt(tmp_path, tokenizer, caplog):
    import glob

    import numpy as np

    from data_tools.ernie_dataset import ErnieDatasetConfig, build_train_valid_test_datasets

    prefix = str(tmp_path / "c")
    _corpus(prefix, [[10 + (d * 7 + i) % 500 for i in range(40)] for d in range(50)])
    config = ErnieDatasetConfig(max_seq_len=32, split="1,0,0")
    train, _, _ = build_train_valid_test_datasets(prefix, tokenizer, config, (100, 0, 0))
    expected = [train[i]["input_ids"] for i in range(len(train))]
    (cache,) = glob.glob(str(tmp_path / "*indexmap*.npy"))
    size = os.path.getsize(cache)
    header = size - np.load(cache).nbytes
    with open(cache, "r+b") as f:  # same size, same header, garbage rows
        f.seek(header)
        f.write(np.random.default_rng(0).integers(0, 2**32, (size - header) // 4, dtype=np.uint32).tobytes())
    with caplog.at_level("WARNING"):
        train, _, _ = build_train_valid_test_datasets(prefix, tokenizer, config, (100, 0, 0))
    assert f"{cache}: garbled sample-index cache" in caplog.text
    assert all((train[i]["input_ids"] == x).all() for i, x in enumerate(expected))


def test_unwritable_output_helpers(tmp_path, monkeypatch):
    """The shared helpers every writer goes through (including export_model's atomic_dir): read-only file systems
    and directories this user may not write are named as such."""
    from ernie.utils import atomic_dir, atomic_write, check_output_path

    blocker = tmp_path / "f"
    blocker.write_text("")
    for helper in (atomic_dir, atomic_write):
        with pytest.raises(UserError, match=f"cannot write {blocker}/x/y"):
            with helper(str(blocker / "x" / "y")):
                pass
    ro = tmp_path / "ro"
    ro.mkdir()

    class ReadOnly:
        f_flag = os.ST_RDONLY

    monkeypatch.setattr(os, "access", lambda p, mode: not str(p).startswith(str(ro)))
    monkeypatch.setattr(os, "statvfs", lambda p: ReadOnly())
    with pytest.raises(UserError, match=f"cannot write {ro}/sub/out.txt: {ro} is on a read-only file system"):
        check_output_path(str(ro / "sub" / "out.txt"))


def test_words_segmentation_refuses_empty_input_like_the_other_entry_points(tmp_path):
    for name, content in (("empty.txt", ""), ("blank.txt", "\n \n\n")):
        (tmp_path / name).write_text(content)
        for script, args in (
            ("words_segmentation.py", ["--output_path", str(tmp_path / f"{name}.seg"), "--cn_seg_func", "char"]),
            ("trans_to_json.py", ["--output_path", str(tmp_path / f"{name}.jsonl")]),
        ):
            proc = subprocess.run(
                [sys.executable, os.path.join(REPO, "scripts", script), "--input_path", str(tmp_path / name)] + args,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith("error: --input_path"), (
                script,
                proc.stderr,
            )
        assert not os.path.exists(tmp_path / f"{name}.seg")


def test_seq_cls_infer_max_length_beyond_the_model_positions_is_one_line(tmp_path, tokenizer):
    import paddle

    from ernie.configuration import ErnieConfig
    from ernie.deploy import export, infer
    from ernie.modeling import ErnieForSequenceClassification

    paddle.seed(1)
    config = ErnieConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=2,
    )
    out = export.export_model(ErnieForSequenceClassification(config), tokenizer, ["neg", "pos"], str(tmp_path / "e"))
    with pytest.raises(UserError, match=r"--max_length 65 exceeds the model's 64 positions"):
        infer.main.__wrapped__(["--model_dir", out, "--max_length", "65"])
    assert len(infer.main.__wrapped__(["--model_dir", out, "--max_length", "64"])) == 3
