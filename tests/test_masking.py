"""Whole-word + n-gram masking on hand-made sequences (data_tools.masking)."""

from __future__ import annotations

import numpy as np
import pytest

from data_tools.masking import MaskingConfig, VocabTables, choose_spans, draw_ngram_lengths, mask_tokens, word_ids

# ids: 0 [PAD] 1 [CLS] 2 [SEP] 3 [MASK] 4 [UNK] 5 [unused1] 6.. chars, then their ## pieces, then an English piece
CHARS = list("哈尔滨是黑龙江的省会北京中国人民")
TOKENS = ["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]", "[unused1]"] + CHARS + ["##" + c for c in CHARS] + ["##ing"]
VOCAB = {t: i for i, t in enumerate(TOKENS)}


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> VocabTables:
    from ernie.tokenizer import ErnieTokenizer

    vocab_file = tmp_path_factory.mktemp("masking_vocab") / "vocab.txt"
    vocab_file.write_text("".join(t + "\n" for t in TOKENS), encoding="utf-8")
    tok = ErnieTokenizer(str(vocab_file))
    assert tok.vocab == VOCAB
    return VocabTables.from_tokenizer(tok)


def encode(words: list[str]) -> list[int]:
    return [VOCAB[c if k == 0 else "##" + c] for w in words for k, c in enumerate(w)]


def sequence(words_a, words_b) -> np.ndarray:
    return np.array([1] + encode(words_a) + [2] + encode(words_b) + [2], dtype=np.int64)


def test_tables(tables):
    assert tables.restore[VOCAB["##尔"]] == VOCAB["尔"] and tables.restore[VOCAB["##ing"]] == VOCAB["##ing"]
    assert not tables.is_word_start[VOCAB["##尔"]] and tables.is_word_start[VOCAB["尔"]]
    assert not tables.maskable[[0, 1, 2]].any() and tables.maskable[[3, 4, 6]].all()
    random_tokens = {TOKENS[i] for i in tables.random_ids}
    assert random_tokens == set(CHARS)  # no specials, no [unused], no ## pieces


def test_word_ids_follow_double_hash_and_stop_at_specials(tables):
    tokens = sequence(["哈尔滨", "是", "黑龙江", "的", "省会"], ["北京"])
    ids, num_words = word_ids(tokens, tables)
    assert num_words == 6
    assert ids.tolist() == [0, 1, 1, 1, 2, 3, 3, 3, 4, 5, 5, 0, 6, 6, 0]
    # a ## piece right after [SEP] starts a word of its own
    ids, num_words = word_ids(np.array([1, VOCAB["##尔"], 2], dtype=np.int64), tables)
    assert ids.tolist() == [0, 1, 0] and num_words == 1


def test_ngram_length_law():
    rng = np.random.default_rng(0)
    room = np.full(200_000, 10)
    n = draw_ngram_lengths(rng, MaskingConfig(max_ngrams=3), room)
    expected = np.array([1, 1 / 2, 1 / 3]) / (11 / 6)
    assert np.allclose(np.bincount(n, minlength=4)[1:] / n.size, expected, atol=0.005)
    longer = draw_ngram_lengths(rng, MaskingConfig(max_ngrams=3, favor_longer_ngram=True), room)
    assert np.allclose(np.bincount(longer, minlength=4)[1:] / n.size, expected[::-1], atol=0.005)
    # truncated to the words left, renormalised: room 2 → P(1) = 2/3, P(2) = 1/3
    short = draw_ngram_lengths(rng, MaskingConfig(max_ngrams=3), np.full(200_000, 2))
    assert short.max() == 2 and abs((short == 1).mean() - 2 / 3) < 0.005
    geo = draw_ngram_lengths(rng, MaskingConfig(max_ngrams=4, geometric_dist=True), room)
    p = 0.2 * 0.8 ** np.arange(3)
    assert np.allclose(np.bincount(geo, minlength=5)[1:4] / geo.size, p, atol=0.005)
    assert abs((geo == 4).mean() - (1 - p.sum())) < 0.005


def choose(order, ngram, cum, budget):
    covered = bytearray(len(cum))
    left = choose_spans(order, ngram, cum, budget, covered)
    assert left == budget - sum(cum[w] - cum[w - 1] for w in range(1, len(cum)) if covered[w])
    return [w - 1 for w in range(1, len(cum)) if covered[w]]


def test_choose_spans_is_greedy_whole_word_and_within_budget():
    cum = [0, 3, 4, 7, 8, 10]  # words of 3, 1, 3, 1, 2 tokens
    assert choose([0, 2], [2, 1], cum, budget=7) == [0, 1, 2]
    # spans shortened to fit the budget (1→[1], 0 does not fit at all, 3→[3])
    assert choose([1, 0, 3], [3, 1, 2], cum, budget=3) == [1, 3]
    # spans overlapping an earlier choice are skipped
    assert choose([1, 0, 2], [2, 2, 1], cum, budget=10) == [1, 2]


def test_mask_tokens_properties(tables):
    words = ["哈尔滨", "是", "黑龙江", "的", "省会", "北京", "是", "中国", "的", "人民"] * 6
    tokens = sequence(words[:30], words[30:])
    cfg = MaskingConfig(masked_lm_prob=0.15, max_predictions_per_seq=100)
    budget = round(tokens.size * 0.15)
    restored = tables.restore[tokens]
    word_of, _ = word_ids(tokens, tables)
    length = np.bincount(word_of)
    total = 0
    for seed in range(300):
        inputs, pos, labels = mask_tokens(tokens, np.random.default_rng(seed), tables, cfg)
        total += pos.size
        assert pos.size <= budget and np.array_equal(labels, restored[pos])
        assert (word_of[pos] > 0).all()  # never [CLS]/[SEP]
        words_hit = np.unique(word_of[pos])
        assert pos.size == length[words_hit].sum()  # whole words only
        keep = np.setdiff1d(np.arange(tokens.size), pos)
        assert np.array_equal(inputs[keep], restored[keep])
        assert not np.isin(inputs, np.flatnonzero(~tables.is_word_start)).any()
    assert total / 300 > budget - 1.5  # the budget is (nearly) filled
    capped = mask_tokens(tokens, np.random.default_rng(0), tables, MaskingConfig(max_predictions_per_seq=4))[1]
    assert capped.size <= 4


def test_same_rng_same_result(tables):
    tokens = sequence(["哈尔滨", "是", "黑龙江", "的", "省会"], ["北京", "是", "中国", "的"])
    a = mask_tokens(tokens, np.random.default_rng([3, 5]), tables, MaskingConfig())
    b = mask_tokens(tokens, np.random.default_rng([3, 5]), tables, MaskingConfig())
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


# ------------------------------------------------------------------------------- unit levels (basic/phrase/entity)


def labelled_sequence(sentence: list[tuple[str, str]], repeat: int):
    """[CLS] words [SEP] words [SEP] with their unit markers (0 at specials), from (word, LAC label) pairs."""
    from data_tools.lexical_units import token_markers, word_markers

    words = [w for w, _ in sentence] * repeat
    labels = [t for _, t in sentence] * repeat
    half = len(words) // 2
    parts_ids, parts_marks = [[1]], [[0]]
    for lo, hi in ((0, half), (half, len(words))):
        parts_ids.append(encode(words[lo:hi]) + [2])
        marks = token_markers([len(w) for w in words[lo:hi]], word_markers(labels[lo:hi]))
        parts_marks.append(list(marks) + [0])
    return (
        np.array([i for p in parts_ids for i in p], dtype=np.int64),
        np.array([m for p in parts_marks for m in p], dtype=np.uint8),
    )


SENTENCE = [
    ("哈尔滨", "LOC"),
    ("是", "v"),
    ("黑龙江", "LOC"),
    ("的", "u"),
    ("省会", "n"),
    ("北京", "LOC"),
    ("是", "v"),
    ("中国", "LOC"),
    ("人民", "n"),
    ("的", "u"),
    ("省会", "n"),
]


@pytest.mark.parametrize("level", ["basic", "word", "phrase", "entity"])
def test_every_level_masks_whole_units_within_the_budget(tables, level):
    from data_tools.masking import unit_ids

    tokens, marks = labelled_sequence(SENTENCE, 4)
    cfg = MaskingConfig(masked_lm_prob=0.15, max_predictions_per_seq=100)
    budget = round(tokens.size * 0.15)
    restored = tables.restore[tokens]
    unit_of, num_units, entity = unit_ids(tokens, tables, level, marks)
    length = np.bincount(unit_of)
    counts = np.zeros(3)  # [MASK], random, kept
    total, entity_tokens = 0, 0
    for seed in range(400):
        inputs, pos, labels = mask_tokens(tokens, np.random.default_rng(seed), tables, cfg, level, marks)
        total += pos.size
        assert 0 < pos.size <= budget and np.array_equal(labels, restored[pos])
        assert (unit_of[pos] > 0).all()  # never [CLS]/[SEP]
        hit = np.unique(unit_of[pos])
        assert pos.size == length[hit].sum()  # whole units only
        keep = np.setdiff1d(np.arange(tokens.size), pos)
        assert np.array_equal(inputs[keep], restored[keep])
        counts += [
            (inputs[pos] == 3).sum(),
            ((inputs[pos] != 3) & (inputs[pos] != labels)).sum(),
            (inputs[pos] == labels).sum(),
        ]
        if level == "entity":
            entity_tokens += (marks[pos] & 8 != 0).sum()
    share = counts / counts.sum()
    # 80/10/10 (a random replacement may draw the original char: ~1/16 of the 10% in this vocabulary)
    assert abs(share[0] - 0.8) < 0.03 and abs(share[1] + share[2] - 0.2) < 0.03 and share[1] > 0.07
    assert total / 400 > budget - (3.5 if level in ("phrase", "entity") else 1.5)  # (nearly) filled
    if level == "basic":
        assert num_units == tokens.size - 3 and length[1:].max() == 1
    if level == "phrase":  # 中国/LOC 人民/n is one base noun phrase; 哈尔滨 one of its own
        assert num_units == 10 * 4 and length.max() == 4
    if level == "entity":  # 4 one-word LOC entities per repeat, and they are masked first
        assert int(entity.sum()) == 16 and entity_tokens / total > 0.9


def test_unit_levels_need_markers_word_level_does_not_change(tables):
    from data_tools.masking import sample_level

    tokens, marks = labelled_sequence(SENTENCE, 2)
    rng_a, rng_b = np.random.default_rng(9), np.random.default_rng(9)
    assert sample_level("word", rng_a) == "word"  # draws nothing: word masking is what it always was
    a = mask_tokens(tokens, rng_a, tables, MaskingConfig())
    b = mask_tokens(tokens, rng_b, tables, MaskingConfig(), "word", marks)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    levels = [sample_level("knowledge", np.random.default_rng([1, i])) for i in range(3000)]
    shares = [levels.count(x) / 3000 for x in ("basic", "phrase", "entity")]
    assert np.allclose(shares, 1 / 3, atol=0.03)
