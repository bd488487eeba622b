"""ErnieDataset on the built-in People's Daily corpus: statistics, determinism, splits, blending, index cache."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
from fixtures import write_peoples_daily_token_files

from data_tools import index_cache
from data_tools.blending import parse_input_dir
from data_tools.ernie_dataset import (
    ErnieDatasetConfig,
    build_train_valid_test_datasets,
    mapping_cache_path,
    split_documents,
    train_valid_test_num_samples,
    truncation_amounts,
)
from data_tools.indexed_dataset import IndexedDataset, make_builder
from ernie.utils import UserError


def peoples_daily_corpus(out_dir: str, num_paragraphs: int, tokenizer, start: int = 0, name: str = "pd") -> str:
    """Paragraphs [start, start+num) of People's Daily (gold words) as one npy corpus; returns the prefix."""
    return write_peoples_daily_token_files(os.path.join(out_dir, name), tokenizer, start, num_paragraphs)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tokenizer):
    return peoples_daily_corpus(str(tmp_path_factory.mktemp("pd")), 3000, tokenizer), tokenizer


def fresh_config(tmp_path, **kw) -> ErnieDatasetConfig:
    kw.setdefault("max_seq_len", 128)
    kw.setdefault("seed", 7)
    return ErnieDatasetConfig(cache_dir=str(tmp_path), **kw)


def train_set(corpus, tmp_path, n=10_000, **kw):
    prefix, tok = corpus
    train, _, _ = build_train_valid_test_datasets(prefix, tok, fresh_config(tmp_path, **kw), (n, 0, 0))
    return train


def test_sample_fields_and_layout(corpus, tmp_path):
    ds = train_set(corpus, tmp_path, n=200)
    prefix, tok = corpus
    for i in range(50):
        s = ds[i]
        assert {k: (v.dtype, v.shape) for k, v in s.items() if k.startswith("input") or k == "segment_ids"} == {
            "input_ids": (np.int64, (128,)),
            "segment_ids": (np.int64, (128,)),
            "input_mask": (np.int64, (128,)),
        }
        assert s["next_sentence_labels"].dtype == np.int64 and s["next_sentence_labels"].shape == ()
        n = int(s["input_mask"].sum())
        ids, seg = s["input_ids"], s["segment_ids"]
        assert (s["input_mask"][:n] == 1).all() and (ids[n:] == tok.pad_token_id).all()
        assert ids[0] == tok.cls_token_id and ids[n - 1] == tok.sep_token_id
        seps = np.flatnonzero(ids[:n] == tok.sep_token_id)
        assert len(seps) == 2  # [SEP] is never a masking target nor a random replacement
        assert (seg[: seps[0] + 1] == 0).all() and (seg[seps[0] + 1 : n] == 1).all() and (seg[n:] == 0).all()
        pos, lab = s["masked_lm_positions"], s["masked_lm_labels"]
        assert pos.dtype == lab.dtype == np.int64 and (np.diff(pos) > 0).all() and pos.size == lab.size
        assert ((pos > 0) & (pos < n) & (pos != seps[0])).all()
        restore = tok.wwm_restore_map()
        assert (restore[ids] == ids).all() and (restore[lab] == lab).all()  # ##char restored in inputs and labels


def test_masking_statistics_over_10k_samples(corpus, tmp_path):
    """Masked share 15% +- 1, 80/10/10 within 2 points, whole words all-or-nothing, SOP 50% +- 2."""
    prefix, tok = corpus
    ds = train_set(corpus, tmp_path, n=10_000)
    n_tokens = n_masked = n_mask = n_same = n_sop = broken = whole = 0
    for i in range(10_000):
        s = ds[i]
        n = int(s["input_mask"].sum())
        pos, lab, ids = s["masked_lm_positions"], s["masked_lm_labels"], s["input_ids"]
        n_tokens += n
        n_masked += pos.size
        n_mask += int((ids[pos] == tok.mask_token_id).sum())
        n_same += int((ids[pos] == lab).sum())
        n_sop += int(s["next_sentence_labels"])
        if i < 2000:  # whole-word check: rebuild the raw (##) tokens of the sample from the corpus span
            b, w = _broken_words(ds, tok, i, s)
            broken, whole = broken + b, whole + w
    share = n_masked / n_tokens
    assert 0.14 <= share <= 0.16, share
    assert abs(n_mask / n_masked - 0.8) <= 0.02
    assert abs(n_same / n_masked - 0.1) <= 0.02
    assert abs((n_masked - n_mask - n_same) / n_masked - 0.1) <= 0.02
    assert abs(n_sop / 10_000 - 0.5) <= 0.02
    assert broken == 0 and whole > 1000


def _broken_words(ds, tok, i, s) -> tuple[int, int]:
    """(words of sample i only partly masked, multi-token words fully masked). The raw tokens (## pieces intact)
    are recovered by replaying the sample; words are read from the token strings, independently of the masking."""
    n = int(s["input_mask"].sum())
    raw = _raw_tokens(ds, i)
    assert raw.size == n
    chosen = np.zeros(n, dtype=bool)
    chosen[s["masked_lm_positions"]] = True
    restore = tok.wwm_restore_map()
    assert (s["input_ids"][:n][~chosen] == restore[raw][~chosen]).all()
    assert (s["masked_lm_labels"] == restore[raw][chosen]).all()
    words, broken, whole = [], 0, 0
    for k, t in enumerate(tok.convert_ids_to_tokens(raw.tolist())):
        if t in ("[CLS]", "[SEP]"):
            continue
        if t.startswith("##") and words and words[-1][-1] == k - 1:
            words[-1].append(k)
        else:
            words.append([k])
    for w in words:
        broken += 0 < chosen[w].sum() < len(w)
        whole += len(w) > 1 and chosen[w].all()
    return broken, whole


def _raw_tokens(ds, i) -> np.ndarray:
    """Replay ErnieDataset.__getitem__ up to masking and return the unmasked raw token sequence."""
    captured = {}
    import data_tools.ernie_dataset as mod

    original = mod.mask_tokens

    def spy(tokens, rng, tables, config, *rest):
        captured["tokens"] = tokens.copy()
        return original(tokens, rng, tables, config, *rest)

    mod.mask_tokens = spy
    try:
        ds[i]
    finally:
        mod.mask_tokens = original
    return captured["tokens"]


def test_samples_are_deterministic_and_picklable(corpus, tmp_path):
    ds = train_set(corpus, tmp_path, n=300)
    again = pickle.loads(pickle.dumps(ds))
    for i in (0, 17, 299):
        a, b = ds[i], again[i]
        assert all(np.array_equal(a[k], b[k]) for k in a)
    other_seed = train_set(corpus, tmp_path, n=300, seed=8)
    assert not np.array_equal(ds[0]["input_ids"], other_seed[0]["input_ids"])


def test_no_binary_head_single_segment(corpus, tmp_path):
    ds = train_set(corpus, tmp_path, n=100, binary_head=False)
    for i in range(20):
        s = ds[i]
        n = int(s["input_mask"].sum())
        assert s["next_sentence_labels"] == 0 and (s["segment_ids"] == 0).all()
        assert s["input_ids"][n - 1] == corpus[1].sep_token_id


def test_max_predictions_cap(corpus, tmp_path):
    ds = train_set(corpus, tmp_path, n=100, max_predictions_per_seq=5)
    assert max(ds[i]["masked_lm_positions"].size for i in range(100)) <= 5


def test_truncation_amounts_match_the_pairwise_loop():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        la, lb, m = (int(x) for x in rng.integers(0, 60, size=3))
        a, b = la, lb
        while a + b > m:
            if a > b:
                a -= 1
            else:
                b -= 1
        assert truncation_amounts(la, lb, m) == (la - a, lb - b)


def test_splits_by_documents_and_sample_counts():
    assert split_documents("949,50,1", 1000).tolist() == [0, 949, 999, 1000]
    assert split_documents("8/1/1", 10).tolist() == [0, 8, 9, 10]
    assert split_documents("1", 5).tolist() == [0, 5, 5, 5]
    assert train_valid_test_num_samples(1000, 32, 10, 5) == (32000, 10 * 32, 5 * 32)
    with pytest.raises(UserError, match="--split"):
        split_documents("a,b", 10)


def test_train_valid_test_datasets(corpus, tmp_path, caplog):
    prefix, tok = corpus
    caplog.set_level("INFO")
    train, valid, test = build_train_valid_test_datasets(
        prefix, tok, fresh_config(tmp_path, split="90,8,2"), (500, 100, 20)
    )
    assert len(train) >= 500 and len(valid) >= 100 and len(test) >= 20
    docs = split_documents("90,8,2", 3000)
    doc_idx = IndexedDataset(prefix).doc_idx
    for ds, s in ((train, 0), (valid, 1), (test, 2)):
        m = np.asarray(ds.mapping)
        assert m[:, 0].min() >= doc_idx[docs[s]] and m[:, 1].max() <= doc_idx[docs[s + 1]]
    assert "epochs" in caplog.text
    _, valid0, test0 = build_train_valid_test_datasets(prefix, tok, fresh_config(tmp_path, split="1,0,0"), (10, 10, 10))
    assert valid0 is None and test0 is None


def test_empty_split_is_a_clear_error(tmp_path, tokenizer):
    tok = tokenizer
    prefix = peoples_daily_corpus(str(tmp_path), 40, tok)
    with pytest.raises(UserError, match=r"--split 999,1,0: the valid split of .* is empty \(40 documents"):
        build_train_valid_test_datasets(prefix, tok, fresh_config(tmp_path, split="999,1,0"), (10, 10, 0))


def test_blending_shares_follow_weights(tmp_path, tokenizer, caplog):
    caplog.set_level("INFO")
    tok = tokenizer
    pa = peoples_daily_corpus(str(tmp_path), 600, tok, 0, "a")
    pb = peoples_daily_corpus(str(tmp_path), 300, tok, 600, "b")
    train, _, _ = build_train_valid_test_datasets(
        f"3 {pa} 1 {pb}", tok, fresh_config(tmp_path, split="1"), (4000, 0, 0)
    )
    assert len(train) == 4000
    assert abs(train.shares[0] - 0.75) < 0.002 and abs(train.shares[1] - 0.25) < 0.002
    assert "share 0.7500" in caplog.text
    # a folder: every prefix in it with equal weights
    prefixes, weights = parse_input_dir(str(tmp_path))
    assert prefixes == [pa, pb] and weights.tolist() == [0.5, 0.5]
    with pytest.raises(UserError, match="--input_dir"):
        parse_input_dir(f"3 {pa} x")
    with pytest.raises(UserError, match="--input_dir"):
        parse_input_dir(str(tmp_path / "missing"))


def test_index_cache_is_reused_and_rebuilt_when_truncated_or_stale(corpus, tmp_path):
    prefix, tok = corpus
    cfg = fresh_config(tmp_path)
    ds = train_set(corpus, tmp_path, n=1000)
    path = mapping_cache_path(prefix, "train", (0, 2847), 1000, cfg)
    assert os.path.exists(path) and os.path.exists(path[:-4] + ".json")
    reference = np.array(ds.mapping)
    mtime = os.stat(path).st_mtime_ns
    train_set(corpus, tmp_path, n=1000)
    assert os.stat(path).st_mtime_ns == mtime  # reused
    with open(path, "r+b") as f:  # truncated
        f.truncate(os.path.getsize(path) - 10)
    assert np.array_equal(train_set(corpus, tmp_path, n=1000).mapping, reference)
    meta_path = path[:-4] + ".json"
    meta = json.load(open(meta_path))
    meta["fingerprint"]["num_sentences"] += 1  # stale: built from other data
    json.dump(meta, open(meta_path, "w"))
    assert index_cache.load_valid(path, meta["fingerprint"]) is not None
    rebuilt = train_set(corpus, tmp_path, n=1000)
    assert np.array_equal(rebuilt.mapping, reference)
    assert json.load(open(meta_path))["fingerprint"]["num_sentences"] == meta["fingerprint"]["num_sentences"] - 1


def test_index_cache_waiters_time_out_with_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("PADDLE_LOCAL_RANK", "1")
    monkeypatch.setattr(index_cache, "POLL_SECONDS", 0.01)
    path = str(tmp_path / "x_indexmap.npy")
    with pytest.raises(UserError, match="timed out after 0s waiting for local rank 0 of this node.*--share_folder"):
        index_cache.cached_array(path, lambda: np.zeros(3), {"v": 1}, share_folder=False, timeout=0.05)
    # once the builder has written it, a waiter picks it up
    monkeypatch.setenv("PADDLE_LOCAL_RANK", "0")
    index_cache.cached_array(path, lambda: np.arange(3), {"v": 1})
    monkeypatch.setenv("PADDLE_LOCAL_RANK", "1")
    assert index_cache.cached_array(path, lambda: None, {"v": 1}, timeout=1).tolist() == [0, 1, 2]
    monkeypatch.setenv("PADDLE_TRAINER_ID", "3")
    assert not index_cache.is_builder(share_folder=True)


def test_split_without_samples_is_a_clear_error(tmp_path, tokenizer):
    prefix = str(tmp_path / "one_sentence_docs")
    builder = make_builder(prefix, "npy", np.uint16)
    for _ in range(20):
        builder.add_item(tokenizer.encode_words(["中国", "人民"]))
        builder.end_document()
    builder.finalize()
    with pytest.raises(UserError, match=r"the train split \(documents 0..19\) yields no samples.*at least 2 "):
        build_train_valid_test_datasets(prefix, tokenizer, fresh_config(tmp_path, split="1"), (10, 0, 0))


RANK_SCRIPT = """
import os, sys, time
import numpy as np
from data_tools import index_cache

def build():
    open(sys.argv[2] + os.environ["PADDLE_LOCAL_RANK"], "w").close()
    time.sleep(1.0)
    return np.arange(5)

print(index_cache.cached_array(sys.argv[1], build, {"v": 1}, timeout=60).tolist())
"""


def test_index_cache_is_built_once_while_other_ranks_wait(tmp_path):
    path, marker = str(tmp_path / "m_indexmap.npy"), str(tmp_path / "built_by_")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RANK_SCRIPT, path, marker],
            stdout=subprocess.PIPE,
            env={**os.environ, "PADDLE_LOCAL_RANK": str(rank)},
        )
        for rank in (1, 2, 0)
    ]
    outputs = [p.communicate(timeout=120)[0].decode().strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0] and outputs == ["[0, 1, 2, 3, 4]"] * 3
    assert sorted(os.listdir(tmp_path)) == ["built_by_0", "m_indexmap.json", "m_indexmap.npy"]


def test_masking_strategies_on_a_corpus_with_markers(corpus, tmp_path):
    """knowledge masking needs {P}_units.npy (one clear error without); with markers every strategy builds samples
    whose masked tokens stay within the budget; word masking gives the same samples with or without markers."""
    prefix, tok = corpus
    with pytest.raises(UserError, match=r"--masking knowledge: .*pd has no unit markers .*pd_units.npy"):
        train_set(corpus, tmp_path, n=50, masking="knowledge")
    marked = write_peoples_daily_token_files(str(tmp_path / "marked"), tok, 0, 400, units=True)
    np.testing.assert_array_equal(
        IndexedDataset(marked).tokens, IndexedDataset(prefix).tokens[: IndexedDataset(marked).tokens.size]
    )
    sets = {}
    for masking in ("basic", "word", "knowledge"):
        sets[masking], _, _ = build_train_valid_test_datasets(
            marked, tok, fresh_config(tmp_path, masking=masking, split="1"), (300, 0, 0)
        )
        for i in range(0, 300, 7):
            s = sets[masking][i]
            n = int(s["input_mask"].sum())
            assert 0 < s["masked_lm_positions"].size <= max(1, round(n * 0.15))
    plain, _, _ = build_train_valid_test_datasets(
        write_peoples_daily_token_files(str(tmp_path / "plain"), tok, 0, 400),
        tok,
        fresh_config(tmp_path, split="1"),
        (300, 0, 0),
    )
    for i in range(0, 300, 13):
        assert all(np.array_equal(plain[i][k], sets["word"][i][k]) for k in plain[i])
    with pytest.raises(UserError, match="--masking: 'entity' is not one of basic, word, knowledge"):
        fresh_config(tmp_path, masking="entity").validate()


# ------------------------------------------------------------------------------------ masking schedule (issue 22)


def test_masking_schedule_parsing_and_stage_boundaries():
    from data_tools.masking import MaskingSchedule

    s = MaskingSchedule("basic:5000,phrase:2500,entity:2500", samples_per_step=32)
    assert s.names == ("basic", "phrase", "entity") and s.boundaries == (5000, 7500)
    assert [s.stage_at_step(k).name for k in (0, 4999, 5000, 7499, 7500, 10_000, 50_000)] == [
        "basic",
        "basic",
        "phrase",
        "phrase",
        "entity",
        "entity",
        "entity",
    ]  # the last stage runs to the end
    assert s.stage_at_sample(5000 * 32 - 1).name == "basic" and s.stage_at_sample(5000 * 32).name == "phrase"
    assert s.history(5000) == [("basic", 0, 5000)] and s.history(4999) == [("basic", 0, 4999)]
    assert s.history(5001) == [("basic", 0, 5000), ("phrase", 5000, 5001)] and s.history(0) == []
    assert MaskingSchedule("basic:5000,entity:3").history(5001) == MaskingSchedule("basic:5000,entity").history(5001)
    assert MaskingSchedule("basic:10,entity").names == ("basic", "entity")
    assert MaskingSchedule("word").stage_at_sample(10**9).name == "word"  # a plain --masking: one stage
    for bad, msg in [
        ("basic:10,foo:5", "stage 'foo' is not one of"),
        ("basic,entity:5", "needs a length"),
        ("basic:0,entity", "must be a whole number"),
        ("basic:x,entity", "must be a whole number"),
    ]:
        with pytest.raises(UserError, match="--masking_schedule: .*" + msg):
            MaskingSchedule(bad)
    with pytest.raises(UserError, match="--knowledge_mix"):
        ErnieDatasetConfig(knowledge_mix="1,2").validate()
    with pytest.raises(UserError, match="--knowledge_mix"):
        ErnieDatasetConfig(knowledge_mix="1,-1,1").validate()


def test_knowledge_mix_draws_levels_with_its_weights():
    from data_tools.masking import sample_level

    for mix in [(0.8, 0.1, 0.1), (0.0, 0.0, 1.0), (0.5, 0.5, 0.0)]:
        levels = [sample_level("knowledge", np.random.default_rng([3, i]), mix) for i in range(6000)]
        share = [levels.count(x) / len(levels) for x in ("basic", "phrase", "entity")]
        np.testing.assert_allclose(share, mix, atol=0.02)
    # equal weights draw exactly as before --knowledge_mix existed
    for i in range(200):
        assert sample_level("knowledge", np.random.default_rng([5, i]), (1 / 3,) * 3) == sample_level(
            "knowledge", np.random.default_rng([5, i])
        )


def _same(a, b) -> bool:
    return all(np.array_equal(a[k], b[k]) for k in a)


def test_staged_schedule_masks_each_sample_with_its_stage(corpus, tmp_path):
    """Sample i of a schedule == sample i of the one-stage run of its stage (i // samples_per_step -> step);
    held-out sets use the last stage, and with_masking() re-masks the same samples; blends follow the blended index."""
    _, tok = corpus
    marked = write_peoples_daily_token_files(str(tmp_path / "marked"), tok, 0, 400, units=True)
    single = {
        m: build_train_valid_test_datasets(marked, tok, fresh_config(tmp_path, masking_schedule=m), (120, 16, 0))
        for m in ("basic", "entity", "knowledge")
    }
    config = fresh_config(
        tmp_path, masking_schedule="basic:2,entity:1,knowledge", samples_per_step=8, knowledge_mix="1,1,1"
    )
    train, valid, _ = build_train_valid_test_datasets(marked, tok, config, (120, 16, 0))
    for i in range(0, 120, 3):
        stage = "basic" if i < 16 else "entity" if i < 24 else "knowledge"
        assert _same(train[i], single[stage][0][i]), i
    differs = sum(not _same(single["basic"][0][i], single["entity"][0][i]) for i in range(16, 24))
    assert differs >= 6  # the stages really mask differently
    for i in range(16):  # held-out: the last stage; with_masking: the same rows re-masked
        assert _same(valid[i], single["knowledge"][1][i])
        assert _same(valid.with_masking("basic")[i], single["basic"][1][i])
    # a plain --masking is the one-stage schedule
    plain, _, _ = build_train_valid_test_datasets(
        marked, tok, fresh_config(tmp_path, masking="knowledge"), (120, 16, 0)
    )
    assert all(_same(plain[i], single["knowledge"][0][i]) for i in range(0, 120, 11))
    # workers receive a pickled copy: same samples
    clone = pickle.loads(pickle.dumps(train))
    assert all(_same(clone[i], train[i]) for i in (0, 17, 30))
    # blended: the stage follows the blended stream's index (its step), not each corpus's own index
    other = write_peoples_daily_token_files(str(tmp_path / "other"), tok, 400, 300, units=True)
    blend, _, _ = build_train_valid_test_datasets(f"1 {marked} 1 {other}", tok, config, (120, 16, 0))
    for i in range(0, 120, 5):
        d, j = blend.dataset_index[i], int(blend.sample_index[i])
        stage = "basic" if i < 16 else "entity" if i < 24 else "knowledge"
        assert _same(blend[i], blend.datasets[d].sample(j, stage)), i
    with pytest.raises(UserError, match=r"--masking_schedule basic:2,entity: .*pd has no unit markers"):
        build_train_valid_test_datasets(
            corpus[0], tok, fresh_config(tmp_path, masking_schedule="basic:2,entity", samples_per_step=8), (50, 0, 0)
        )
