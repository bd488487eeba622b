"""Knowledge units for ERNIE masking: words, phrases and named entities from LAC's words + labels, and the
per-token unit markers stored beside the token files (``{P}_units.npy``, see docs/design.md).

Marker byte of a token (bit flags, uint8):

* ``WORD_START`` (1): the token begins a word (LAC's word, or a whitespace-separated part of one);
* ``PHRASE_START`` (2): the token begins a phrase (:func:`chunk_phrases`; every word is in exactly one phrase);
* ``ENTITY_START`` (4): the token begins a named entity (:func:`find_entities`);
* ``IN_ENTITY`` (8): the token is part of a named entity (its first token included).

Phrase rules (:func:`chunk_phrases`), applied left to right over LAC's words, the first that matches wins:

1. Numeral + measure word: a run of ``m`` words followed by a ``q`` word is one phrase (``三/m 个/q``, ``两/m
   千/m 吨/q``); a run of two or more ``m`` words without a measure word is one phrase too.
2. Base noun phrase: an optional ``a`` / ``an`` modifier, then a run of nominal words (``n nz nw vn an PER LOC ORG
   f s``) cut after its last head noun (``n nz nw vn``); two or more words in all (``高科技/n 公司/n``, ``新华社/ORG
   记者/n``, ``大/a 城市/n``).
3. A run of words with the same entity label (``PER LOC ORG TIME``) is one phrase (``1998年/TIME 1月/TIME``).
4. Any other word is a phrase of its own.

Entities (:func:`find_entities`): a maximal run of words with the same label among ``PER LOC ORG nz nw`` (persons,
locations, organisations, other proper names and titles of works: the paper's "persons, locations, organizations,
products"); LAC's ``TIME`` is a phrase, not an entity.
"""

from __future__ import annotations

import numpy as np

WORD_START, PHRASE_START, ENTITY_START, IN_ENTITY = 1, 2, 4, 8
MARKER_DTYPE = np.uint8

ENTITY_LABELS = frozenset({"PER", "LOC", "ORG", "nz", "nw"})
_NOMINAL = frozenset({"n", "nz", "nw", "vn", "an", "PER", "LOC", "ORG", "f", "s"})
_HEAD = frozenset({"n", "nz", "nw", "vn"})
_RUN_LABELS = frozenset({"PER", "LOC", "ORG", "TIME"})


def chunk_phrases(labels: list[str]) -> list[int]:
    """Start word of every phrase of a sentence's words (their LAC ``labels``), ascending, ``[0, ...]``."""
    starts, i, n = [], 0, len(labels)
    while i < n:
        starts.append(i)
        i = _phrase_end(labels, i)
    return starts


def _phrase_end(labels: list[str], i: int) -> int:
    n = len(labels)
    if labels[i] == "m":
        j = i
        while j < n and labels[j] == "m":
            j += 1
        if j < n and labels[j] == "q":
            return j + 1
        return j
    j = i + 1 if labels[i] in ("a", "an") and i + 1 < n and labels[i + 1] in _NOMINAL else i
    k, last_head = j, -1
    while k < n and labels[k] in _NOMINAL:
        if labels[k] in _HEAD:
            last_head = k
        k += 1
    if last_head >= 0 and last_head > i:
        return last_head + 1
    if labels[i] in _RUN_LABELS:
        k = i + 1
        while k < n and labels[k] == labels[i]:
            k += 1
        return k
    return i + 1


def find_entities(labels: list[str]) -> list[tuple[int, int]]:
    """``(first word, end word)`` of every named entity: maximal runs of one label of :data:`ENTITY_LABELS`."""
    spans, i, n = [], 0, len(labels)
    while i < n:
        if labels[i] in ENTITY_LABELS:
            k = i + 1
            while k < n and labels[k] == labels[i]:
                k += 1
            spans.append((i, k))
            i = k
        else:
            i += 1
    return spans


def word_markers(labels: list[str]) -> list[int]:
    """Marker byte of each word's first token (later tokens of a word carry only its ``IN_ENTITY`` bit)."""
    flags = [WORD_START] * len(labels)
    for s in chunk_phrases(labels):
        flags[s] |= PHRASE_START
    for a, b in find_entities(labels):
        flags[a] |= ENTITY_START
        for k in range(a, b):
            flags[k] |= IN_ENTITY
    return flags


def split_whitespace(words: list[str], flags: list[int]) -> tuple[list[str], list[int]]:
    """Drop whitespace from LAC's words: a word holding whitespace becomes its parts; the first part keeps the
    word's flags, later parts begin words only (and stay in its entity)."""
    out_words, out_flags = [], []
    for word, flag in zip(words, flags):
        parts = word.split()
        for k, part in enumerate(parts):
            out_words.append(part)
            out_flags.append(flag if k == 0 else WORD_START | (flag & IN_ENTITY))
    return out_words, out_flags


def token_markers(token_counts: list[int], flags: list[int]) -> np.ndarray:
    """Per-token markers ``uint8 [sum(token_counts)]`` from the tokens per word and each word's flags (a word that
    has no tokens hands its phrase start, and entity start, to the next word that has some)."""
    counts = np.asarray(token_counts, dtype=np.int64)
    marks = np.array(flags, dtype=MARKER_DTYPE)
    if (counts == 0).any():  # a word without tokens passes its phrase / entity start on to the next word
        carry = 0
        for k in range(len(marks)):
            if counts[k] == 0:
                carry |= int(marks[k]) & (PHRASE_START | ENTITY_START)
            elif carry:
                marks[k] |= carry & (PHRASE_START | (ENTITY_START if marks[k] & IN_ENTITY else 0))
                carry = 0
    out = np.repeat(marks & IN_ENTITY, counts).astype(MARKER_DTYPE)
    firsts = (np.cumsum(counts) - counts)[counts > 0]
    out[firsts] = marks[counts > 0]
    return out
