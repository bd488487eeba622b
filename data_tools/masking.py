"""Masking of ERNIE pretraining samples at four unit levels (vectorised with numpy).

Levels (:data:`LEVELS`); a unit is masked entirely or not at all:

* ``basic``: every token is a unit (BERT's char masking; ERNIE's basic level);
* ``word``: whole words (``##`` pieces continue a word) with n-grams of up to ``max_ngrams`` words (below);
* ``phrase``: the phrases of the unit markers (``PHRASE_START``, :mod:`data_tools.lexical_units`);
* ``entity``: named entities (``ENTITY_START`` / ``IN_ENTITY``) are units and are chosen first (in random order);
  the budget left is spent on the other words (``WORD_START``).

Strategies (``--masking``, :data:`STRATEGIES`): ``basic`` and ``word`` use that level for every sample;
``knowledge`` (ERNIE 1.0) draws the level of each sample from ``basic`` / ``phrase`` / ``entity`` with the weights of
``--knowledge_mix`` (default equal), from the sample's own random stream (a per-sample mixture: sample ``i`` still
depends only on ``(seed, i)``).

Schedules (``--masking_schedule "basic:5000,phrase:2500,entity:2500"``, :class:`MaskingSchedule`): ERNIE 1.0's
staged training, a sequence of stages, each a strategy or a single level (:data:`STAGE_NAMES`) run for a number of
optimizer steps; the last stage goes on to the end of the run (its length may be left out: ``basic:5000,entity``).
Lengths are steps, not shares of ``--max_steps``, so that a changed ``--max_steps`` (a run extended or cut) moves no
boundary and a resumed run sees the stages it saw. Sample ``i`` of the training stream belongs to step
``i // global_batch_size`` and so to one stage: its masking depends only on ``(seed, i)`` and that stage. A plain
``--masking X`` is the one-stage schedule ``X``. ``phrase`` and ``entity`` need the markers; ``basic``, ``phrase``
and ``entity`` use no n-grams (n = 1 unit). Every level has the same budget (step 2) and the same 80/10/10 rule
(step 4).

The word level is PaddleNLP's; the steps below describe it and, with its units, every level.

The algorithm is PaddleNLP ernie-1.0's ``create_masked_lm_predictions`` (itself Google BERT's whole-word masking
with SpanBERT-style n-grams), restated on arrays:

1. Words: every maskable token (anything but [CLS]/[SEP]/[PAD]) starts a new word unless it is a ``##`` piece
   directly continuing the previous token. A word never crosses a special token.
2. Budget: ``min(max_predictions_per_seq, max(1, round(len(tokens) * masked_lm_prob)))`` tokens.
3. Spans: the words are visited in a random order; at word ``s`` an n-gram length ``n`` (in words) is drawn with
   ``P(n) ∝ 1/n`` over ``1..max_ngrams`` (reversed with ``favor_longer_ngram``; ``Geometric(0.2)`` clipped to
   ``max_ngrams`` with ``geometric_dist``), limited to the words left in the sequence. ``n`` is shortened while
   the span would exceed the budget; a span that overlaps an already chosen one, or whose first word alone does
   not fit, is skipped. Whole words are therefore masked entirely or not at all.
   Other levels visit their units in a random order (entities first at the entity level) with n = 1.
4. Each chosen token: 80% ``[MASK]``, 10% a random ordinary token, 10% unchanged.
5. Chinese ``##X`` pieces are restored to their plain char ``X`` in the inputs and in the labels: the model never
   sees them (they exist only to mark word boundaries in the token files). English ``##`` word pieces stay.

Only step 3's greedy walk is a Python loop (over the words visited until the budget is spent, a few dozen); all
per-token work is numpy.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ernie.utils import UserError

from .lexical_units import ENTITY_START, IN_ENTITY, PHRASE_START, WORD_START

MASK_PROB = 0.8  # share of chosen tokens replaced by [MASK]
RANDOM_PROB = 0.1  # share replaced by a random token (the rest, 10%, stay unchanged)
GEOMETRIC_P = 0.2  # SpanBERT's span-length parameter
VISIT_CHUNK = 64  # start words whose n-gram lengths are drawn at once
LEVELS = ("basic", "word", "phrase", "entity")
STRATEGIES = ("basic", "word", "knowledge")
STAGE_NAMES = ("basic", "word", "phrase", "entity", "knowledge")  # what a schedule stage may be
KNOWLEDGE_LEVELS = ("basic", "phrase", "entity")  # drawn per sample with the --knowledge_mix weights
MARKER_LEVELS = ("phrase", "entity")  # levels that need the unit markers
MARKER_STAGES = ("phrase", "entity", "knowledge")  # stages that need them


def parse_knowledge_mix(text: str) -> tuple[float, float, float]:
    """``"0.8,0.1,0.1"`` → the (basic, phrase, entity) weights of ``knowledge``, normalised; errors name the flag."""
    try:
        weights = [float(x) for x in str(text).split(",")]
    except ValueError:
        weights = []
    if len(weights) != 3 or not all(np.isfinite(w) and w >= 0 for w in weights) or sum(weights) <= 0:
        raise UserError(
            f"--knowledge_mix: {text!r} is not three non-negative weights of basic,phrase,entity "
            "with a positive sum (e.g. 0.8,0.1,0.1)"
        )
    total = sum(weights)
    basic, phrase, entity = (w / total for w in weights)
    return basic, phrase, entity


def sample_level(strategy: str, rng: np.random.Generator, mix: tuple[float, float, float] | None = None) -> str:
    """The masking level of one sample (one draw from ``rng`` for ``knowledge``, none otherwise).

    ``mix``: the (basic, phrase, entity) weights; None or equal weights draw exactly as before ``--knowledge_mix``
    existed (``int(u * 3)``), so the samples of earlier versions are unchanged.
    """
    if strategy != "knowledge":
        return strategy
    u = rng.random()
    if mix is None or max(mix) - min(mix) < 1e-12:
        return KNOWLEDGE_LEVELS[int(u * len(KNOWLEDGE_LEVELS))]
    cdf = np.cumsum(mix)
    return KNOWLEDGE_LEVELS[min(int(np.searchsorted(cdf, u * cdf[-1], side="right")), len(KNOWLEDGE_LEVELS) - 1)]


@dataclass(frozen=True)
class Stage:
    """One stage of a schedule: ``name`` (a :data:`STAGE_NAMES` entry) from step ``start`` (0-based, the first step
    of the stage) to ``end`` (exclusive; None: to the end of the run); ``index`` its place in the schedule."""

    index: int
    name: str
    start: int
    end: int | None

    def describe(self) -> str:
        span = f"steps {self.start + 1}-{self.end}" if self.end is not None else f"steps {self.start + 1}-end"
        return f"stage {self.index + 1} {self.name} ({span})"


class MaskingSchedule:
    """Stages over optimizer steps; :meth:`stage_at_step` / :meth:`stage_at_sample` say which one applies.

    ``spec``: ``"name:steps,name:steps,...,name[:steps]"``; the last stage runs on to the end of the run whatever
    its length says. ``samples_per_step``: the global batch size (0: unknown, only step queries work).
    """

    def __init__(self, spec: str, samples_per_step: int = 0):
        self.spec = spec
        self.samples_per_step = int(samples_per_step)
        stages, start = [], 0
        parts = [p.strip() for p in str(spec).split(",")]
        for k, part in enumerate(parts):
            name, _, length = part.partition(":")
            name = name.strip()
            if name not in STAGE_NAMES:
                raise UserError(f"--masking_schedule: {spec!r}: stage {name!r} is not one of {', '.join(STAGE_NAMES)}")
            last = k == len(parts) - 1
            if length.strip() == "":
                if not last:
                    raise UserError(
                        f"--masking_schedule: {spec!r}: stage {k + 1} ({name}) needs a length in steps "
                        "(only the last stage may leave it out)"
                    )
                steps = None
            else:
                try:
                    steps = int(length)
                except ValueError:
                    steps = 0
                if steps < 1:
                    raise UserError(
                        f"--masking_schedule: {spec!r}: the length of stage {k + 1} ({name}) must be a "
                        "whole number of steps >= 1"
                    )
            end = None if last or steps is None else start + steps
            stages.append(Stage(k, name, start, end))
            if end is not None:
                start = end
        self.stages = tuple(stages)

    @classmethod
    def single(cls, strategy: str, samples_per_step: int = 0) -> MaskingSchedule:
        return cls(strategy, samples_per_step)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages)

    @property
    def boundaries(self) -> tuple[int, ...]:
        """The first step of every stage after the first."""
        return tuple(s.start for s in self.stages[1:])

    def stage_at_step(self, step: int) -> Stage:
        """The stage of 0-based optimizer step ``step`` (the step that reads samples ``step * gbs ...``)."""
        for stage in self.stages:
            if stage.end is None or step < stage.end:
                return stage
        return self.stages[-1]

    def stage_at_sample(self, index: int) -> Stage:
        """The stage of training sample ``index`` (step ``index // samples_per_step``)."""
        if len(self.stages) == 1:
            return self.stages[0]
        if self.samples_per_step <= 0:
            raise ValueError("a multi-stage schedule needs samples_per_step (the global batch size)")
        return self.stage_at_step(int(index) // self.samples_per_step)

    def history(self, step: int) -> list[tuple[str, int, int]]:
        """(name, first step, end step) of the stages of the first ``step`` steps, clipped to them: the part of the
        schedule a run resumed after ``step`` steps must agree on (later stages may change)."""
        return [(s.name, s.start, step if s.end is None else min(s.end, step)) for s in self.stages if s.start < step]


@dataclass
class VocabTables:
    """Per-id lookup tables derived once from the tokenizer.

    Attributes:
        is_word_start: bool [V], False for ``##`` pieces.
        restore:       int64 [V], ``##X`` id → ``X`` id for a Chinese char ``X`` (the tokenizer's
                       ``wwm_restore_map``), identity elsewhere (English ``##`` pieces stay).
        maskable:      bool [V], False for [CLS], [SEP] and [PAD].
        random_ids:    int64 [K], the ids a "random token" replacement draws from: no ``##`` pieces, no
                       ``[...]`` specials/unused slots.
    """

    is_word_start: np.ndarray
    restore: np.ndarray
    maskable: np.ndarray
    random_ids: np.ndarray
    cls_id: int
    sep_id: int
    pad_id: int
    mask_id: int

    @classmethod
    def from_tokenizer(cls, tokenizer) -> VocabTables:
        """Tables of an :class:`ernie.ErnieTokenizer` (its ``is_word_start`` and ``wwm_restore_map``)."""
        size = tokenizer.vocab_size
        is_word_start = np.asarray(tokenizer.is_word_start(np.arange(size)), dtype=bool)
        restore = np.asarray(tokenizer.wwm_restore_map(), dtype=np.int64)
        special = [tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id]
        maskable = np.ones(size, dtype=bool)
        maskable[special] = False
        tokens = tokenizer.convert_ids_to_tokens(list(range(size)))
        plain = [i for i, t in enumerate(tokens) if is_word_start[i] and not (t.startswith("[") and t.endswith("]"))]
        return cls(
            is_word_start,
            restore,
            maskable,
            np.array(plain, dtype=np.int64),
            tokenizer.cls_token_id,
            tokenizer.sep_token_id,
            tokenizer.pad_token_id,
            tokenizer.mask_token_id,
        )


@dataclass(frozen=True)
class MaskingConfig:
    """Masking parameters (see the module docstring); ``ErnieDatasetConfig.masking_config()`` makes one."""

    masked_lm_prob: float = 0.15
    max_predictions_per_seq: int = 20
    max_ngrams: int = 3
    favor_longer_ngram: bool = False
    geometric_dist: bool = False

    @functools.cached_property
    def ngram_cdf(self) -> np.ndarray:
        """Cumulative P(n) for n = 1..max_ngrams (the 1/n law, reversed when favouring longer n-grams)."""
        p = 1.0 / np.arange(1, self.max_ngrams + 1)
        if self.favor_longer_ngram:
            p = p[::-1]
        return np.cumsum(p / p.sum())


def word_ids(tokens: np.ndarray, tables: VocabTables) -> tuple[np.ndarray, int]:
    """Whole words of a token sequence.

    Args:
        tokens: int64 [T] raw ids (``##`` pieces still present), specials included.
    Returns:
        (ids, W): int64 [T] 1-based word number of every token (0 for [CLS]/[SEP]/[PAD]), number of words.
    """
    maskable = tables.maskable[tokens]
    start = maskable & tables.is_word_start[tokens]
    start[1:] |= maskable[1:] & ~maskable[:-1]  # a ## piece right after a special token begins a word
    start[0] = maskable[0]
    ids = np.cumsum(start)
    num_words = int(ids[-1]) if ids.size else 0
    ids[~maskable] = 0
    return ids, num_words


def unit_ids(
    tokens: np.ndarray, tables: VocabTables, level: str, units: np.ndarray | None = None
) -> tuple[np.ndarray, int, np.ndarray | None]:
    """Units of a token sequence at ``level`` (see the module docstring).

    Args:
        tokens: int64 [T] raw ids, specials included. units: uint8 [T] markers (0 at specials), for
        ``phrase`` / ``entity``.
    Returns:
        (ids, U, first): int64 [T] 1-based unit number of every token (0 for specials), the number of units, and
        for ``entity`` a bool [U] that is True for the entity units (None for other levels).
    """
    if level == "word":
        ids, num = word_ids(tokens, tables)
        return ids, num, None
    maskable = tables.maskable[tokens]
    if level == "basic":
        start = maskable.copy()
    elif level == "phrase":
        assert units is not None, "the phrase level needs unit markers"
        start = maskable & ((units & PHRASE_START) != 0)
    elif level == "entity":
        assert units is not None, "the entity level needs unit markers"
        inside = (units & IN_ENTITY) != 0
        start = maskable & np.where(inside, (units & ENTITY_START) != 0, (units & WORD_START) != 0)
        start[1:] |= maskable[1:] & (inside[1:] != inside[:-1])
    else:
        raise ValueError(f"unknown masking level {level!r}")
    start[1:] |= maskable[1:] & ~maskable[:-1]  # a unit cut by truncation begins again after a special token
    start[0] = maskable[0]
    ids = np.cumsum(start)
    num = int(ids[-1]) if ids.size else 0
    ids[~maskable] = 0
    entity = None
    if level == "entity":
        entity = inside[np.flatnonzero(start)]
    return ids, num, entity


def draw_ngram_lengths(rng: np.random.Generator, config: MaskingConfig, room: np.ndarray) -> np.ndarray:
    """One n-gram length (in words) per start word, each limited to ``room`` words left: int64 like ``room``."""
    if config.geometric_dist:
        n = rng.geometric(GEOMETRIC_P, size=room.size)
        return np.minimum(np.minimum(n, config.max_ngrams), room)
    cdf = config.ngram_cdf
    # inverse-CDF draw from the law truncated to 1..room: scale u into the first `room` steps of the CDF
    u = rng.random(room.size) * cdf[np.minimum(room, config.max_ngrams) - 1]
    return np.searchsorted(cdf, u, side="right") + 1


def choose_spans(order: list[int], ngram: list[int], cum: list[int], left: int, covered: bytearray) -> int:
    """Greedy n-gram selection over words visited in ``order``; marks the chosen words in ``covered``.

    Args:
        order:   0-based start words in visiting order. ngram: the drawn length (words) at each visit.
        cum:     [W+1] cumulative token counts of the words (``cum[0] == 0``).
        left:    tokens still to choose.
        covered: [W+1] by 1-based word number (entry 0 stays 0), updated in place: 1 for every chosen word.
    Returns:
        the tokens still to choose after these visits.
    """
    for s, n in zip(order, ngram):
        if left <= 0:
            break
        while n and cum[s + n] - cum[s] > left:
            n -= 1
        if n == 0 or any(covered[s + 1 : s + n + 1]):
            continue
        covered[s + 1 : s + n + 1] = b"\x01" * n
        left -= cum[s + n] - cum[s]
    return left


def mask_tokens(
    tokens: np.ndarray,
    rng: np.random.Generator,
    tables: VocabTables,
    config: MaskingConfig,
    level: str = "word",
    units: np.ndarray | None = None,
):
    """Masking of one sequence at ``level`` (whole-word n-grams for ``word``).

    Args:
        tokens: int64 [T] ids with [CLS]/[SEP] in place, ``##`` pieces not yet restored.
        units:  uint8 [T] unit markers aligned with ``tokens`` (0 at specials), for ``phrase`` / ``entity``.
    Returns:
        inputs:    int64 [T] restored ids with the chosen tokens replaced (80/10/10).
        positions: int64 [P] sorted positions of the chosen tokens.
        labels:    int64 [P] their restored original ids.
    """
    inputs = tables.restore[tokens]
    ids, num_words, entity = unit_ids(tokens, tables, level, units)
    budget = min(config.max_predictions_per_seq, max(1, int(round(tokens.size * config.masked_lm_prob))))
    if num_words == 0 or budget <= 0:
        empty = np.zeros(0, dtype=np.int64)
        return inputs, empty, empty
    sizes = np.bincount(ids, minlength=num_words + 1)
    cum = (np.cumsum(sizes) - sizes[0]).tolist()  # tokens in words 1..k; specials (word 0) excluded
    order = rng.permutation(num_words)
    covered = bytearray(num_words + 1)
    left, visited = budget, 0
    if level != "word":  # one unit at a time; entities first at the entity level
        if entity is not None:
            order = order[np.argsort(~entity[order], kind="stable")]
        choose_spans(order.tolist(), [1] * num_words, cum, left, covered)
        visited = num_words
    while left > 0 and visited < num_words:  # n-gram lengths drawn a chunk of visits at a time: most are never used
        starts = order[visited : visited + VISIT_CHUNK]
        ngram = draw_ngram_lengths(rng, config, num_words - starts)
        left = choose_spans(starts.tolist(), ngram.tolist(), cum, left, covered)
        visited += VISIT_CHUNK
    positions = np.flatnonzero(np.frombuffer(covered, dtype=np.uint8)[ids])
    labels = inputs[positions]
    u, pick = rng.random((2, positions.size))
    inputs[positions[u < MASK_PROB]] = tables.mask_id
    swap = u >= MASK_PROB + RANDOM_PROB
    inputs[positions[swap]] = tables.random_ids[(pick[swap] * tables.random_ids.size).astype(np.int64)]
    return inputs, positions, labels
