"""Token files: both formats round-trip, merge, validate, stay atomic, and agree with paddlenlp 2.8.1 byte for byte."""

import os
import pickle
import zipfile

import numpy as np
import pytest

from data_tools.indexed_dataset import (
    IndexedDataset,
    best_fitting_dtype,
    detect_impl,
    make_builder,
    merge,
    output_paths,
)
from ernie.utils import UserError

IMPLS = ["npy", "mmap"]


def random_corpus(seed=0, n_docs=40, vocab=30000):
    """Documents of 0..5 sentences of 1..30 ids (empty documents included)."""
    rng = np.random.default_rng(seed)
    return [[rng.integers(0, vocab, rng.integers(1, 30)) for _ in range(rng.integers(0, 6))] for _ in range(n_docs)]


def write(prefix, docs, impl, dtype=np.uint16, **kw):
    builder = make_builder(str(prefix), impl, dtype, **kw)
    for doc in docs:
        for sent in doc:
            builder.add_item(sent)
        builder.end_document()
    builder.finalize()
    return builder


def sentences(docs):
    return [s for doc in docs for s in doc]


def assert_same(ds, docs):
    flat = sentences(docs)
    assert len(ds) == len(flat)
    assert ds.num_documents == len(docs)
    for i, sent in enumerate(flat):
        np.testing.assert_array_equal(ds[i], sent)
    for d, doc in enumerate(docs):
        got = ds.get_document(d)
        assert len(got) == len(doc)
        for a, b in zip(got, doc):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("impl", IMPLS)
def test_round_trip(tmp_path, impl):
    docs = random_corpus()
    write(tmp_path / "c", docs, impl)
    assert detect_impl(str(tmp_path / "c")) == impl
    ds = IndexedDataset(str(tmp_path / "c"))
    assert ds.impl == impl and ds.dtype == np.uint16
    assert ds.sizes.dtype == np.int32 and ds.doc_idx.dtype == np.int64
    assert ds.doc_idx[0] == 0 and ds.doc_idx[-1] == len(ds)
    assert_same(ds, docs)
    # views, not copies, of the memory-mapped token file
    assert np.shares_memory(ds[3], ds.tokens)
    assert np.shares_memory(ds.document_tokens(1), ds.tokens)
    s = sentences(docs)[5]
    np.testing.assert_array_equal(ds.get(5, offset=2, length=3), s[2:5])
    np.testing.assert_array_equal(ds.get(5, offset=1), s[1:])
    parts = ds[2:6]
    assert len(parts) == 4 and all(np.array_equal(a, b) for a, b in zip(parts, sentences(docs)[2:6]))
    np.testing.assert_array_equal(ds[-1], sentences(docs)[-1])
    with pytest.raises(IndexError):
        ds[len(ds)]
    clone = pickle.loads(pickle.dumps(ds))  # DataLoader workers re-open by prefix
    assert_same(clone, docs)


@pytest.mark.parametrize("impl", IMPLS)
def test_add_doc_equals_add_item_and_int32(tmp_path, impl):
    docs = random_corpus(seed=1, vocab=100000)
    write(tmp_path / "a", docs, impl, dtype=np.int32)
    builder = make_builder(str(tmp_path / "b"), impl, np.int32)
    for doc in docs:
        builder.add_doc(np.concatenate(doc) if doc else np.zeros(0, np.int32), [len(s) for s in doc])
    builder.finalize()
    for a, b in zip(output_paths(str(tmp_path / "a"), impl), output_paths(str(tmp_path / "b"), impl)):
        assert open(a, "rb").read() == open(b, "rb").read()
    ds = IndexedDataset(str(tmp_path / "b"))
    assert ds.dtype == np.int32
    assert_same(ds, docs)


def test_best_fitting_dtype():
    assert best_fitting_dtype(40000) == np.uint16
    assert best_fitting_dtype(65536) == np.uint16
    assert best_fitting_dtype(65537) == np.int32


def test_npy_layout_is_plain_numpy(tmp_path):
    """The ernie-1.0 layout: a 1-D .npy of ids and an .npz with exactly lens (int32) and docs (int64)."""
    docs = random_corpus(seed=2)
    write(tmp_path / "c", docs, "npy")
    ids = np.load(tmp_path / "c_ids.npy")
    np.testing.assert_array_equal(ids, np.concatenate(sentences(docs)))
    with np.load(tmp_path / "c_idx.npz") as idx:
        assert sorted(idx.files) == ["docs", "lens"]
        assert idx["lens"].dtype == np.int32 and idx["docs"].dtype == np.int64
        np.testing.assert_array_equal(idx["lens"], [len(s) for s in sentences(docs)])
        np.testing.assert_array_equal(idx["docs"], np.cumsum([0] + [len(d) for d in docs]))


@pytest.mark.parametrize("impl", IMPLS)
def test_empty_corpus(tmp_path, impl):
    write(tmp_path / "e", [], impl)
    ds = IndexedDataset(str(tmp_path / "e"))
    assert len(ds) == 0 and ds.num_documents == 0 and ds.num_tokens == 0


@pytest.mark.parametrize("out_impl", IMPLS)
def test_merge_mixed_formats(tmp_path, out_impl):
    a, b = random_corpus(seed=3), random_corpus(seed=4)
    write(tmp_path / "a", a, "npy")
    write(tmp_path / "b", b, "mmap")
    merge([str(tmp_path / "a"), str(tmp_path / "b")], str(tmp_path / "m"), impl=out_impl)
    ds = IndexedDataset(str(tmp_path / "m"))
    assert ds.impl == out_impl
    assert_same(ds, a + b)


def test_merge_widens_dtype(tmp_path):
    a, b = random_corpus(seed=5), random_corpus(seed=6, vocab=90000)
    write(tmp_path / "a", a, "npy", np.uint16)
    write(tmp_path / "b", b, "npy", np.int32)
    merge([str(tmp_path / "a"), str(tmp_path / "b")], str(tmp_path / "m"))
    ds = IndexedDataset(str(tmp_path / "m"))
    assert ds.dtype == np.int32
    assert_same(ds, a + b)


@pytest.mark.parametrize("impl", IMPLS)
def test_refuses_overwrite(tmp_path, impl):
    write(tmp_path / "c", random_corpus(), impl)
    with pytest.raises(UserError, match="--overwrite"):
        make_builder(str(tmp_path / "c"), impl, np.uint16)
    docs = random_corpus(seed=9)
    write(tmp_path / "c", docs, impl, overwrite=True)
    assert_same(IndexedDataset(str(tmp_path / "c")), docs)


@pytest.mark.parametrize("impl", IMPLS)
def test_failure_leaves_no_final_files(tmp_path, impl):
    prefix = str(tmp_path / "c")
    with pytest.raises(RuntimeError):
        with make_builder(prefix, impl, np.uint16) as builder:
            builder.add_item([1, 2, 3])
            builder.end_document()
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []
    # an unfinished builder's files are hidden temporaries, never the final names
    builder = make_builder(prefix, impl, np.uint16)
    builder.add_item([1, 2])
    assert not any(os.path.exists(p) for p in output_paths(prefix, impl))
    assert all(name.startswith(".") for name in os.listdir(tmp_path))
    builder.abort()
    assert os.listdir(tmp_path) == []


def test_missing_and_incomplete(tmp_path):
    with pytest.raises(UserError, match="no token files"):
        IndexedDataset(str(tmp_path / "nothing"))
    write(tmp_path / "c", random_corpus(), "mmap")
    os.unlink(tmp_path / "c.idx")
    with pytest.raises(UserError, match=r"c\.idx: missing"):
        IndexedDataset(str(tmp_path / "c"))


def test_npy_inconsistent_index(tmp_path):
    docs = random_corpus(seed=7)
    write(tmp_path / "c", docs, "npy")
    lens = np.array([len(s) for s in sentences(docs)], np.int32)
    good_docs = np.cumsum([0] + [len(d) for d in docs]).astype(np.int64)
    cases = {
        "sum to": dict(lens=lens + 1, docs=good_docs),
        "start at 0": dict(lens=lens, docs=good_docs + 1),
        "ends at": dict(lens=lens, docs=good_docs[:-1]),
        "decreases": dict(lens=lens, docs=np.concatenate([[0, 5, 3], good_docs[-1:]]).astype(np.int64)),
        "negative": dict(lens=np.concatenate([[-1, lens[0] + lens[1] + 1], lens[2:]]).astype(np.int32), docs=good_docs),
    }
    for message, arrays in cases.items():
        np.savez(tmp_path / "c_idx.npz", **arrays)
        with pytest.raises(UserError, match=rf"c_idx\.npz: .*{message}"):
            IndexedDataset(str(tmp_path / "c"))
    np.savez(tmp_path / "c_idx.npz", sizes=lens, docs=good_docs)
    with pytest.raises(UserError, match=r"c_idx\.npz: missing array 'lens' \(it holds sizes, docs"):
        IndexedDataset(str(tmp_path / "c"))
    (tmp_path / "c_idx.npz").write_bytes(b"garbage")
    with pytest.raises(UserError, match=r"c_idx\.npz: not a readable"):
        IndexedDataset(str(tmp_path / "c"))


def test_npy_compressed_index_still_reads(tmp_path):
    docs = random_corpus(seed=8)
    write(tmp_path / "c", docs, "npy")
    with np.load(tmp_path / "c_idx.npz") as idx:
        lens, d = idx["lens"], idx["docs"]
    np.savez_compressed(tmp_path / "c_idx.npz", lens=lens, docs=d)
    with zipfile.ZipFile(tmp_path / "c_idx.npz") as zf:
        assert zf.getinfo("lens.npy").compress_type != zipfile.ZIP_STORED
    assert_same(IndexedDataset(str(tmp_path / "c")), docs)


def test_mmap_corrupt_files(tmp_path):
    docs = random_corpus(seed=10)
    write(tmp_path / "c", docs, "mmap")
    idx = (tmp_path / "c.idx").read_bytes()
    (tmp_path / "c.idx").write_bytes(idx[:-8])
    with pytest.raises(UserError, match=r"c\.idx: not a valid mmap index"):
        IndexedDataset(str(tmp_path / "c"))
    (tmp_path / "c.idx").write_bytes(b"XXXXXXXXX" + idx[9:])
    with pytest.raises(UserError, match="magic"):
        IndexedDataset(str(tmp_path / "c"))
    (tmp_path / "c.idx").write_bytes(idx)
    data = (tmp_path / "c.bin").read_bytes()
    (tmp_path / "c.bin").write_bytes(data[:-2])
    with pytest.raises(UserError, match=r"c\.idx: sentence lengths sum to"):
        IndexedDataset(str(tmp_path / "c"))
    (tmp_path / "c.bin").write_bytes(data[:-1])
    with pytest.raises(UserError, match=r"c\.bin: .* not a whole number"):
        IndexedDataset(str(tmp_path / "c"))


# ------------------------------------------------------------------------------------------ paddlenlp 2.8.1


@pytest.fixture
def pnlp_indexed():
    pytest.importorskip("paddlenlp")
    from paddlenlp.data import indexed_dataset

    return indexed_dataset


@pytest.mark.compat
def test_paddlenlp_reads_our_npy(tmp_path, pnlp_indexed):
    docs = random_corpus(seed=11)
    write(tmp_path / "c", docs, "npy")
    theirs = pnlp_indexed.CompatibleIndexedDataset(str(tmp_path / "c"))
    flat = sentences(docs)
    assert len(theirs) == len(flat)
    for i, sent in enumerate(flat):
        np.testing.assert_array_equal(theirs[i], sent)
    np.testing.assert_array_equal(theirs.doc_idx, np.cumsum([0] + [len(d) for d in docs]))


@pytest.mark.compat
def test_paddlenlp_reads_our_mmap_and_bytes_match(tmp_path, pnlp_indexed):
    docs = random_corpus(seed=12)
    write(tmp_path / "ours", docs, "mmap")
    theirs = pnlp_indexed.make_dataset(str(tmp_path / "ours"), "mmap", skip_warmup=True)
    flat = sentences(docs)
    assert len(theirs) == len(flat)
    for i, sent in enumerate(flat):
        np.testing.assert_array_equal(theirs[i], sent)
    np.testing.assert_array_equal(theirs.doc_idx, np.cumsum([0] + [len(d) for d in docs]))
    builder = pnlp_indexed.make_builder(str(tmp_path / "ref.bin"), "mmap", np.uint16)
    for doc in docs:
        for sent in doc:
            builder.add_item(sent)
        builder.end_document()
    builder.finalize(str(tmp_path / "ref.idx"))
    for ext in (".bin", ".idx"):
        assert (tmp_path / f"ours{ext}").read_bytes() == (tmp_path / f"ref{ext}").read_bytes()


@pytest.mark.compat
@pytest.mark.parametrize("dtype", [np.uint16, np.int32])
def test_we_read_paddlenlp_mmap(tmp_path, pnlp_indexed, dtype):
    docs = random_corpus(seed=13)
    builder = pnlp_indexed.make_builder(str(tmp_path / "ref.bin"), "mmap", dtype)
    for doc in docs:
        for sent in doc:
            builder.add_item(sent)
        builder.end_document()
    builder.finalize(str(tmp_path / "ref.idx"))
    ds = IndexedDataset(str(tmp_path / "ref"))
    assert ds.impl == "mmap" and ds.dtype == dtype
    assert_same(ds, docs)
