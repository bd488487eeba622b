"""Sentence splitting: the one owner of the toolkit's sentence rules, two of them.

* :func:`split_sentences` (the sentence-order task, user text): see the rules below.
* :func:`cjk_sentence_spans` (the built-in People's Daily data, :mod:`data_tools.corpus`): a sentence ends after
  every run of ``。！？`` (:data:`CJK_TERMINATORS`) and nothing else; offsets, not strings, so that entity spans
  and headline rules can be laid over them. Its output fixes the built-in datasets, so it never changes.

Both are compiled regexes, no per-char Python loop. With :func:`split_sentences` a sentence ends
* after a run of ``。！？!?；`` and ellipses (``…``, ``……``, ``...``), anywhere;
* after an English full stop followed by whitespace or the end of the text, unless it ends a known abbreviation
  (``Mr.``, ``etc.``, a single capital initial as in ``J. Smith``, a dotted one as in ``U.S.``, ``e.g.``,
  ``p.m.``); a decimal point (``3.14``) is
  never followed by whitespace and so never splits;
* at every line break.
Closing quotes and brackets right after the terminator stay with their sentence. Sentences are stripped of
surrounding whitespace and empty ones are dropped.
"""

from __future__ import annotations

import re

_CLOSERS = "”’\"'）)\\]】」』》〉"
_ABBREVIATIONS = (
    "Mr",
    "Mrs",
    "Ms",
    "Dr",
    "Prof",
    "Sr",
    "Jr",
    "St",
    "vs",
    "No",
    "Fig",
    "Inc",
    "Ltd",
    "Co",
    "Corp",
    "etc",
    "approx",
    "Dept",
    "Gen",
    "Gov",
    "Rev",
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Sept",
    "Oct",
    "Nov",
    "Dec",
)
# Fixed-width lookbehinds, one per abbreviation, plus single capital initials (``J.``) and dotted abbreviations
# (``U.S.``, ``e.g.``, ``p.m.``).
_NOT_ABBREVIATION = "".join(rf"(?<!\b{re.escape(a)})" for a in _ABBREVIATIONS) + r"(?<!\b[A-Z])(?<!\.[A-Za-z])"

_BOUNDARY = re.compile(
    rf"(?:[。！？!?；…]+|\.{{3,}}|{_NOT_ABBREVIATION}\.(?=[{_CLOSERS}]*(?:\s|$)))"  # terminator run
    rf"(?:[。！？!?；…]|\.(?=[{_CLOSERS}]*(?:\s|$)))*"  # mixed runs such as '?!' or '.”'
    rf"[{_CLOSERS}]*"  # closing quotes / brackets stay with the sentence
)
_LINE_BREAK = re.compile(r"[\r\n\u2028\u2029]+")


def split_sentences(text: str) -> list[str]:
    """Split ``text`` into non-empty, stripped sentences (see the module docstring for the rules)."""
    marked = _BOUNDARY.sub("\\g<0>\n", text)
    return [s for s in (part.strip() for part in _LINE_BREAK.split(marked)) if s]


CJK_TERMINATORS = "。！？"
_CJK_SENTENCE = re.compile(f"[^{CJK_TERMINATORS}]*[{CJK_TERMINATORS}]+|[^{CJK_TERMINATORS}]+$")


def cjk_sentence_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each sentence of ``text``, cut after every run of ``。！？`` (the run stays with its
    sentence; the text after the last run is a sentence too). The spans tile ``text``; nothing is stripped."""
    return [m.span() for m in _CJK_SENTENCE.finditer(text)]


def terminator_start(text: str, start: int, end: int) -> int:
    """Where the closing ``。！？`` run of the sentence ``text[start:end]`` begins (``end`` when it has none)."""
    return start + len(text[start:end].rstrip(CJK_TERMINATORS))
