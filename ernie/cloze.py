"""Cloze test of a pretrained ERNIE on held-out sentences (benchmarks/bench_cloze.py, the demo's results.md).

Contract:

* Sentences: the built-in ``peoples_daily_ner`` *test* split (``data_tools.corpus``), which pretraining corpora made
  by the toolkit leave out (``data_tools.corpus.peoples_daily_text_without_eval``). A sentence longer than
  ``max_chars`` is cut to a window of ``max_chars`` characters around the masked span (the demo pretrains at 64 tokens).
* Kinds (:data:`KINDS`), at most one item per sentence, drawn with ``numpy.random.default_rng(seed)``:
  ``char`` — one Chinese character; ``entity`` — a whole gold PER/LOC/ORG entity of 2-4 Chinese characters (ERNIE's
  Table 6 cloze); ``word`` — a whole LAC word of 2-4 Chinese characters that is not an entity (LAC's ``lac_model``,
  :class:`data_tools.lac.LacLexicalModel`; the kind is skipped with a note when LAC is not installed). Sentences
  under ``MIN_CHARS`` characters (headlines, bylines) give no item.
* Each item masks its span's characters (one ``[MASK]`` each) and runs :class:`ernie.fill_mask.FillMask`:
  ``char_top1`` / ``char_top5`` — share of masked characters whose gold char is the top-1 / in the top-5 of the
  one-pass prediction (all of the span masked); ``exact_match`` — share of items whose best joint filling (beam search,
  ``beam_size``) equals the gold span. Figures are shares in [0, 1] with the number of items and characters.
* ``cloze_items(kind, n, seed, max_chars)`` → items; ``evaluate(fill_mask, items, beam_size)`` → figures;
  ``run_cloze(model_dir, kinds, n, seed, ...)`` → ``{kind: figures}``.
* The floor a model must beat to show it reads context: :class:`NoContextFill` ignores the sentence and answers every
  masked character with the commonest Chinese characters of the ``peoples_daily_ner`` *train* split, and every span of
  ``L`` characters with its commonest ``L``-character string (``run_cloze(NO_CONTEXT, ...)``).
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass

import numpy as np

from data_tools.corpus import NER_TYPES, peoples_daily_ner_dataset
from data_tools.lac import LacLexicalModel
from ernie.fill_mask import FillMask, FillResult, SpanFilling
from ernie.tokenizer import is_cjk_char
from ernie.utils import UserError

KINDS = ("char", "entity", "word")
ENTITY_TYPES = NER_TYPES  # the gold entity types an ``entity`` item may blank
LAC_ENTITY_LABELS = ("PER", "LOC", "ORG", "TIME")
MIN_SPAN, MAX_SPAN = 2, 4  # characters of an entity / word item
DEFAULT_MAX_CHARS = 62  # a [CLS] ... [SEP] window of 64 tokens, the demo's pretraining length
NO_CONTEXT = "no-context"  # run_cloze's name for the NoContextFill floor
MIN_CHARS = 8  # sentences shorter than this (headlines, bylines) give no item: too little context


@dataclass(frozen=True)
class ClozeItem:
    text: str
    start: int
    end: int
    kind: str

    @property
    def gold(self) -> str:
        return self.text[self.start : self.end]


@functools.lru_cache(maxsize=1)
def held_out_sentences() -> tuple[tuple[str, tuple[tuple[int, int, str], ...]], ...]:
    """(text, entity spans (start, end, type)) of every peoples_daily_ner test sentence."""
    out = []
    for ex in peoples_daily_ner_dataset().test:
        text = "".join(ex["tokens"])
        spans: list[tuple[int, int, str]] = []
        start: int | None = None
        kind = ""  # the entity type of the span that starts at ``start``
        for i, tag in enumerate(list(ex["labels"]) + ["O"]):
            if start is not None and not tag.startswith("I-"):
                spans.append((start, i, kind))
                start = None
            if tag.startswith("B-"):
                start, kind = i, tag[2:]
        out.append((text, tuple(spans)))
    return tuple(out)


def _all_cjk(s: str) -> bool:
    return bool(s) and all(is_cjk_char(ch) for ch in s)


def _window(text: str, start: int, end: int, max_chars: int, rng: np.random.Generator) -> tuple[str, int, int]:
    """``text`` cut to at most ``max_chars`` characters around ``[start, end)`` (the span's place in it drawn)."""
    if len(text) <= max_chars:
        return text, start, end
    lo = max(0, end - max_chars)
    hi = min(start, len(text) - max_chars)
    first = int(rng.integers(lo, hi + 1))
    return text[first : first + max_chars], start - first, end - first


def _lac_words(texts: list[str], lac_model_dir: str | None) -> list[list[tuple[int, int, str]]]:
    lac = LacLexicalModel(lac_model_dir)
    out = []
    for words, labels in lac.analyse(texts):
        spans, pos = [], 0
        for word, label in zip(words, labels):
            spans.append((pos, pos + len(word), label))
            pos += len(word)
        out.append(spans)
    return out


def cloze_items(
    kind: str, n: int, seed: int = 0, max_chars: int = DEFAULT_MAX_CHARS, lac_model_dir: str | None = None
) -> list[ClozeItem]:
    """Up to ``n`` items of ``kind`` from the NER test sentences (one per sentence, sentences in a seeded order)."""
    if kind not in KINDS:
        raise ValueError(f"unknown cloze kind {kind!r}")
    rng = np.random.default_rng([seed, KINDS.index(kind)])
    sentences = held_out_sentences()
    order = rng.permutation(len(sentences))
    if kind == "word":
        order = order[: max(3 * n, 50)]  # LAC runs only on the sentences that may be used
        lac = dict(zip(order.tolist(), _lac_words([sentences[i][0] for i in order], lac_model_dir)))
    items = []
    for i in order.tolist():
        text, entities = sentences[i]
        if len(text) < MIN_CHARS:
            continue
        if kind == "char":
            candidates = [(p, p + 1) for p, ch in enumerate(text) if is_cjk_char(ch)]
        elif kind == "entity":
            candidates = [
                (a, b)
                for a, b, t in entities
                if t in ENTITY_TYPES and MIN_SPAN <= b - a <= MAX_SPAN and _all_cjk(text[a:b])
            ]
        else:
            candidates = [
                (a, b)
                for a, b, label in lac[i]
                if label not in LAC_ENTITY_LABELS and MIN_SPAN <= b - a <= MAX_SPAN and _all_cjk(text[a:b])
            ]
        if not candidates:
            continue
        a, b = candidates[int(rng.integers(len(candidates)))]
        items.append(ClozeItem(*_window(text, a, b, max_chars, rng), kind))
        if len(items) == n:
            break
    return items


def evaluate(fill_mask, items: list[ClozeItem], beam_size: int = 5) -> dict:
    """Character top-1 / top-5 accuracy and whole-span exact match of ``fill_mask`` on ``items``."""
    top1 = top5 = exact = chars = 0
    for item in items:
        result = fill_mask.fill(item.text, top_k=5, beam_size=beam_size, mask_spans=[(item.start, item.end)])
        for gold, candidates in zip(item.gold, result.positions):
            tokens = [t for t, _ in candidates]
            top1 += tokens[0] == gold
            top5 += gold in tokens
            chars += 1
        exact += result.spans[0].filling == item.gold
    n = max(len(items), 1)
    return {
        "items": len(items),
        "chars": chars,
        "char_top1": top1 / max(chars, 1),
        "char_top5": top5 / max(chars, 1),
        "exact_match": exact / n,
    }


class NoContextFill:
    """A FillMask stand-in that ignores the sentence: character and span frequencies of the NER train split."""

    def __init__(self) -> None:
        texts = ["".join(ex["tokens"]) for ex in peoples_daily_ner_dataset().train]
        chars = Counter(ch for t in texts for ch in t if is_cjk_char(ch))
        total = sum(chars.values())
        self.chars = [(ch, c / total) for ch, c in chars.most_common(5)]
        self.spans: dict[int, str] = {}
        for length in range(MIN_SPAN, MAX_SPAN + 1):
            grams = Counter(t[i : i + length] for t in texts for i in range(len(t) - length + 1))
            self.spans[length] = next(g for g, _ in grams.most_common() if _all_cjk(g))

    def fill(self, text: str, top_k: int = 5, beam_size: int = 5, mask_spans=None) -> FillResult:
        spans, positions = [], []
        for start, end in mask_spans or []:
            length = end - start
            filling = self.chars[0][0] if length == 1 else self.spans.get(length, self.chars[0][0] * length)
            spans.append(SpanFilling(start, end, filling, text[start:end], 0.0, list(filling)))
            positions += [self.chars[:top_k]] * length
        return FillResult(text, text, positions, spans)


def run_cloze(
    model_dir: str,
    kinds=("char", "entity"),
    n: int = 300,
    seed: int = 0,
    beam_size: int = 5,
    max_chars: int = DEFAULT_MAX_CHARS,
    lac_model_dir: str | None = None,
    fill_mask=None,
) -> dict:
    """``{kind: figures}`` of the checkpoint in ``model_dir``; ``word`` needs LAC (``{"skipped": reason}``).
    ``model_dir`` :data:`NO_CONTEXT`: :class:`NoContextFill`, the floor."""
    if fill_mask is None:
        fill_mask = NoContextFill() if model_dir == NO_CONTEXT else FillMask(model_dir)
    out = {}
    for kind in kinds:
        try:
            items = cloze_items(kind, n, seed, max_chars, lac_model_dir)
        except UserError as e:
            if kind != "word":
                raise
            out[kind] = {"skipped": str(e)}
            continue
        out[kind] = evaluate(fill_mask, items, beam_size)
    return out


__all__ = [
    "KINDS",
    "NO_CONTEXT",
    "ClozeItem",
    "NoContextFill",
    "cloze_items",
    "evaluate",
    "run_cloze",
    "held_out_sentences",
]
