"""data_tools.helpers (csrc/helpers.cpp) against PaddleNLP's compiled helpers (tool_helpers 0.1.2), bit for bit.

Every parity check compares dtype, shape and values (or that both raise ValueError), and for verbose calls the
printed log too. Inputs are randomised (documents, sentence lengths, seeds, limits) plus hand-made edge cases.
"""

from __future__ import annotations

import importlib
import sys
import types

import numpy as np
import pytest

from data_tools import sample_index as ours
from ernie.utils import UserError

tool_helpers = pytest.importorskip("tool_helpers")
from tool_helpers import helpers as ref  # noqa: E402

INT32_MAX = 2**31 - 1
LONG = 512  # sentences longer than this disqualify a multi-sentence document


def make_corpus(
    rng: np.random.Generator, num_docs: int, max_sents: int = 12, max_len: int = 80, long_share: float = 0.01
) -> tuple[np.ndarray, np.ndarray]:
    """docs int64 [num_docs + 1] sentence offsets (empty and one-sentence documents included), sizes int32."""
    per_doc = rng.integers(0, max_sents + 1, num_docs)
    docs = np.concatenate([[0], np.cumsum(per_doc)]).astype(np.int64)
    sizes = rng.integers(1, max_len, int(docs[-1])).astype(np.int32)
    sizes[rng.random(len(sizes)) < long_share] = LONG + 1 + rng.integers(0, 200)
    return docs, sizes


def run(fn, *args):
    """The array a builder returns, or the exception type it raised."""
    try:
        return fn(*args)
    except (ValueError, TypeError, OverflowError) as e:
        return type(e)


def assert_same(expected, actual):
    if isinstance(expected, type) or isinstance(actual, type):
        assert expected is actual
        return
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(actual, expected)


def assert_mapping_parity(*args):
    expected = run(ref.build_mapping, *args)
    assert_same(expected, run(ours.build_mapping, *args))
    return expected


def assert_blocks_parity(*args):
    expected = run(ref.build_blocks_mapping, *args)
    assert_same(expected, run(ours.build_blocks_mapping, *args))
    return expected


# ---------------------------------------------------------------------------------------------------------------
# build_mapping


@pytest.mark.parametrize("case", range(60))
def test_build_mapping_random_parity(case):
    rng = np.random.default_rng(case)
    docs, sizes = make_corpus(rng, int(rng.integers(1, 400)), max_len=int(rng.choice([20, 80, 300, 700])))
    num_epochs = int(rng.integers(1, 5))
    max_num_samples = int(rng.choice([0, 1, 7, 100, 10**12]))
    max_seq_length = int(rng.choice([2, 3, 16, 128, 512, 600]))
    short_seq_prob = float(rng.choice([0.0, 0.01, 0.1, 1 / 3, 0.5, 1.0]))
    seed = int(rng.integers(-(2**31), 2**31))
    min_num_sent = int(rng.choice([0, 1, 2, 3]))
    out = assert_mapping_parity(
        docs, sizes, num_epochs, max_num_samples, max_seq_length, short_seq_prob, seed, False, min_num_sent
    )
    if not isinstance(out, type) and len(out):
        assert out.dtype == np.uint32 and out.shape[1] == 3
        assert np.all(out[:, 0] < out[:, 1])


@pytest.mark.parametrize("case", range(8))
def test_build_mapping_larger_corpora_parity(case):
    rng = np.random.default_rng(500 + case)
    docs, sizes = make_corpus(rng, 30_000, max_sents=40, max_len=120, long_share=0.002)
    assert_mapping_parity(
        docs,
        sizes,
        int(rng.integers(1, 4)),
        10**12,
        int(rng.choice([64, 128, 512])),
        float(rng.choice([0.0, 0.1])),
        int(rng.integers(0, 2**31)),
        False,
        int(rng.choice([1, 2])),
    )


def test_build_mapping_concurrent_calls_release_the_gil_safely():
    # the GIL is released while building: calls from several threads run at once and must not interfere
    from concurrent.futures import ThreadPoolExecutor

    docs, sizes = make_corpus(np.random.default_rng(7), 20_000)
    args = [(docs, sizes, 2, 10**12, 128, 0.1, seed, False, 2) for seed in range(8)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda a: ours.build_mapping(*a), args))
    for a, out in zip(args, results):
        assert_same(ref.build_mapping(*a), out)


@pytest.mark.parametrize("seed", [0, 1, -1, 1234, INT32_MAX, -(2**31), INT32_MAX - 1])
def test_build_mapping_extreme_seeds(seed):
    docs, sizes = make_corpus(np.random.default_rng(5), 3000)
    out = assert_mapping_parity(docs, sizes, 2, 10**12, 64, 0.1, seed, False, 2)
    assert len(out) > 1000  # enough rows for the shuffle to expose a different stream


@pytest.mark.parametrize("min_num_sent", [0, 1, 2, 3])
@pytest.mark.parametrize("num_epochs", [1, 3])
def test_build_mapping_edge_documents(min_num_sent, num_epochs):
    # empty, one-sentence, a sentence longer than max_seq_length, a long (> 512) sentence alone and among others
    per_doc = [0, 1, 1, 2, 0, 5, 1, 3, 0, 4]
    docs = np.concatenate([[0], np.cumsum(per_doc)]).astype(np.int64)
    sizes = np.array([7, 900, 30, 200, 5, 6, 7, 8, 9, 2000, 3, 4, 5, 1, 1, 1, 1], np.int32)
    for max_seq_length in (2, 10, 100, 1000):
        for prob in (0.0, 0.5, 1.0):
            assert_mapping_parity(docs, sizes, num_epochs, 10**9, max_seq_length, prob, 3, False, min_num_sent)


def test_build_mapping_no_usable_document():
    docs = np.array([0, 1, 1, 2], np.int64)  # one-sentence and empty documents only
    sizes = np.array([10, 20], np.int32)
    one_epoch = assert_mapping_parity(docs, sizes, 1, 10**9, 128, 0.1, 1, False, 2)
    assert one_epoch.shape == (0, 3)
    assert assert_mapping_parity(docs, sizes, 2, 10**9, 128, 0.1, 1, False, 2) is ValueError
    assert assert_mapping_parity(docs, sizes, 2, 0, 128, 0.1, 1, False, 2).shape == (0, 3)
    assert assert_mapping_parity(docs, sizes, 3, 10**9, 128, 0.1, 1, False, 1).shape == (6, 3)


def test_build_mapping_sample_limit_stops_at_epoch_boundaries():
    docs, sizes = make_corpus(np.random.default_rng(1), 200)
    per_epoch = len(assert_mapping_parity(docs, sizes, 1, 10**12, 128, 0.1, 9, False, 2))
    for limit in (0, 1, per_epoch - 1, per_epoch, per_epoch + 1, 3 * per_epoch):
        out = assert_mapping_parity(docs, sizes, 5, limit, 128, 0.1, 9, False, 2)
        assert len(out) >= min(limit, 5 * per_epoch)


def test_build_mapping_document_subrange_and_empty_docs_array():
    docs, sizes = make_corpus(np.random.default_rng(2), 300)
    assert_mapping_parity(docs[40:170], sizes, 2, 10**9, 256, 0.2, 11, False, 2)  # split: docs[0] != 0
    assert_mapping_parity(docs[:1], sizes, 1, 10**9, 256, 0.2, 11, False, 2)  # no documents at all
    assert_mapping_parity(docs[:1], sizes, 2, 10**9, 256, 0.2, 11, False, 2)


def test_build_mapping_converts_input_dtypes_and_layouts():
    docs, sizes = make_corpus(np.random.default_rng(3), 300)
    sizes_strided = np.repeat(sizes, 2)[::2]  # non-contiguous view
    assert not sizes_strided.flags.c_contiguous
    for d, s in (
        (docs.astype(np.int32), sizes),
        (docs, sizes.astype(np.int64)),
        (docs, sizes_strided),
        (docs.astype(np.uint64), sizes.astype(np.int16)),
    ):
        assert_mapping_parity(d, s, 2, 10**9, 128, 0.1, 5, False, 2)


def test_build_mapping_int32_limits():
    # 5M sentences of 500 tokens in one document: the running length passes 2**31 and wraps like the reference's.
    docs = np.array([0, 5_000_000], np.int64)
    sizes = np.full(5_000_000, 500, np.int32)
    for max_seq_length, prob in ((INT32_MAX, 0.0), (INT32_MAX, 1.0), (INT32_MAX - 1, 0.5)):
        assert_mapping_parity(docs, sizes, 1, 10**12, max_seq_length, prob, 77, False, 2)
    # a sentence of INT32_MAX tokens alone in its document is kept (the long check needs two sentences)
    big = np.array([INT32_MAX, 3, 4, INT32_MAX - 7], np.int32)
    out = assert_mapping_parity(np.array([0, 1, 3, 4], np.int64), big, 2, 10**9, INT32_MAX, 0.3, 1, False, 1)
    assert len(out) == 6


def test_build_mapping_verbose_log_matches(capfd):
    docs, sizes = make_corpus(np.random.default_rng(4), 200)
    logs = []
    for module in (ref, ours):
        module.build_mapping(docs, sizes, 3, 50, 128, 0.1, 7, True, 2)
        module.build_mapping(docs[5:50], sizes, 2, 10**9, 128, 1 / 3, 7, True, 1)
        module.build_mapping(docs, sizes, 2, 10**9, 128, 0.1, 7, False, 2)  # silent
        logs.append(capfd.readouterr().out)
    assert "will create mapping for" in logs[0]
    assert logs[1] == logs[0]


def test_build_mapping_rejects_inputs_the_reference_would_crash_on():
    docs, sizes = make_corpus(np.random.default_rng(6), 10)
    bad_docs = [docs[::-1].copy(), docs + len(sizes), np.array([-1, 3], np.int64)]
    for d in bad_docs:
        with pytest.raises(ValueError, match="docs"):
            ours.build_mapping(d, sizes, 1, 100, 128, 0.1, 1, False, 2)
    with pytest.raises(ValueError, match="max_seq_length"):
        ours.build_mapping(docs, sizes, 1, 100, 1, 0.1, 1, False, 2)
    with pytest.raises(ValueError, match="short_seq_prob"):
        ours.build_mapping(docs, sizes, 1, 100, 128, 1.5, 1, False, 2)


# ---------------------------------------------------------------------------------------------------------------
# build_blocks_mapping


@pytest.mark.parametrize("case", range(30))
def test_build_blocks_mapping_random_parity(case):
    rng = np.random.default_rng(1000 + case)
    docs, sizes = make_corpus(rng, int(rng.integers(1, 400)), max_len=int(rng.choice([20, 80, 600])))
    titles = rng.integers(0, 64, len(docs) - 1).astype(np.int32)
    out = assert_blocks_parity(
        docs,
        sizes,
        titles,
        int(rng.integers(1, 4)),
        int(rng.choice([0, 5, 10**12])),
        int(rng.choice([8, 64, 288, 600])),
        int(rng.integers(-(2**31), 2**31)),
        False,
        bool(case % 2),
    )
    if len(out):
        assert out.dtype == np.uint32 and out.shape[1] == 4


def test_build_blocks_mapping_verbose_log_matches(capfd):
    docs, sizes = make_corpus(np.random.default_rng(8), 100)
    titles = np.full(len(docs) - 1, 5, np.int32)
    logs = []
    for module in (ref, ours):
        module.build_blocks_mapping(docs, sizes, titles, 3, 40, 128, 7, True, False)
        logs.append(capfd.readouterr().out)
    assert logs[1] == logs[0]


def test_build_blocks_mapping_rejects_short_titles():
    docs, sizes = make_corpus(np.random.default_rng(9), 10)
    with pytest.raises(ValueError, match="titles_sizes"):
        ours.build_blocks_mapping(docs, sizes, np.zeros(3, np.int32), 1, 100, 128, 1, False, False)


# ---------------------------------------------------------------------------------------------------------------
# build_sample_idx


@pytest.mark.parametrize("case", range(20))
def test_build_sample_idx_random_parity(case, capfd):
    rng = np.random.default_rng(2000 + case)
    num_docs = int(rng.integers(1, 500))
    sizes = rng.integers(0, 300, num_docs).astype(np.int32)
    sizes[0] = max(int(sizes[0]), 1)
    num_epochs = int(rng.integers(1, 4))
    doc_idx = np.concatenate([rng.permutation(num_docs) for _ in range(num_epochs)]).astype(np.int32)
    args = (sizes, doc_idx, int(rng.choice([1, 7, 128, 1024])), num_epochs, int(sizes.sum()))
    expected = ref.build_sample_idx(*args)
    ref_log = capfd.readouterr().out
    assert_same(expected, ours.build_sample_idx(*args))
    assert capfd.readouterr().out == ref_log
    assert expected.dtype == np.int32 and expected.shape[1] == 2


def test_build_sample_idx_rejects_too_few_tokens():
    sizes = np.array([5, 5], np.int32)
    with pytest.raises(ValueError, match="fewer tokens"):
        ours.build_sample_idx(sizes, np.array([0, 1], np.int32), 4, 1, 100)
    with pytest.raises(ValueError, match="not a document"):
        ours.build_sample_idx(sizes, np.array([0, 2], np.int32), 4, 1, 10)


# ---------------------------------------------------------------------------------------------------------------
# build_blending_indices


@pytest.mark.parametrize("dtype", [np.uint8, np.int16])
@pytest.mark.parametrize("case", range(10))
def test_build_blending_indices_parity(dtype, case, capfd):
    rng = np.random.default_rng(3000 + case)
    num = int(rng.integers(1, 12))
    weights = np.full(num, 1 / num) if case == 0 else rng.random(num) / num  # equal weights: ties
    size = int(rng.choice([0, 1, 17, 5000, 100_000]))
    outs, logs = [], []
    for module in (ref, ours):
        index, sample = np.full(size, 99, dtype), np.full(size, -5, np.int64)
        module.build_blending_indices(index, sample, weights, num, size, case % 2 == 1)
        outs.append((index, sample))
        logs.append(capfd.readouterr().out)
    for expected, actual in zip(*outs):
        assert_same(expected, actual)
    assert logs[1] == logs[0]


def test_build_blending_indices_follows_weights():
    index, sample = np.empty(10_000, np.int16), np.empty(10_000, np.int64)
    ours.build_blending_indices(index, sample, np.array([0.6, 0.3, 0.1]), 3, 10_000, False)
    np.testing.assert_allclose(np.bincount(index) / 10_000, [0.6, 0.3, 0.1], atol=1e-3)
    for d in range(3):  # each dataset's samples are taken in order 0, 1, 2, ...
        np.testing.assert_array_equal(sample[index == d], np.arange(np.sum(index == d)))


def test_build_blending_indices_rejects_outputs_it_cannot_write():
    weights = np.array([0.5, 0.5])
    with pytest.raises(TypeError, match="uint8 or int16"):  # the reference silently fills a converted copy
        ours.build_blending_indices(np.zeros(10, np.int64), np.zeros(10, np.int64), weights, 2, 10, False)
    with pytest.raises(TypeError, match="int64"):
        ours.build_blending_indices(np.zeros(10, np.uint8), np.zeros(10, np.int32), weights, 2, 10, False)
    with pytest.raises(ValueError):
        ours.build_blending_indices(np.zeros(5, np.uint8), np.zeros(5, np.int64), weights, 2, 10, False)
    with pytest.raises(ValueError):
        ours.build_blending_indices(np.zeros(10, np.uint8), np.zeros(10, np.int64), weights, 3, 10, False)


# ---------------------------------------------------------------------------------------------------------------
# the Python wrapper


def test_wrapper_reexports_the_extension():
    from data_tools import helpers

    for name in ("build_mapping", "build_blocks_mapping", "build_sample_idx", "build_blending_indices"):
        assert getattr(ours, name) is getattr(helpers, name)


def _reimport_sample_index(monkeypatch, helpers_module):
    import data_tools

    monkeypatch.delitem(sys.modules, "data_tools.sample_index")
    monkeypatch.delattr(data_tools, "sample_index")
    monkeypatch.delattr(data_tools, "helpers")
    monkeypatch.setitem(sys.modules, "data_tools.helpers", helpers_module)
    return importlib.import_module("data_tools.sample_index")


def test_wrapper_missing_extension_is_a_user_error(monkeypatch):
    with pytest.raises(UserError, match="pip install -e ."):
        _reimport_sample_index(monkeypatch, None)  # None in sys.modules: the import fails


def test_wrapper_stale_extension_is_a_user_error(monkeypatch):
    with pytest.raises(UserError, match="stale.*pip install -e ."):
        _reimport_sample_index(monkeypatch, types.ModuleType("data_tools.helpers"))
