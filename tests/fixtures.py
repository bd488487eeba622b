"""Test and benchmark data made from the built-in corpus (not part of the library): token files of People's Daily
paragraphs from the *gold* words, and a small self-contained pretraining set (vocabulary + token files).

Tests import it as ``fixtures`` (pytest puts tests/ on ``sys.path``); benchmarks as ``tests.fixtures`` (the repo
root on ``sys.path``).
"""

from __future__ import annotations

import os

import numpy as np

from data_tools.corpus import PKU_ENTITY_TAGS, peoples_daily_paragraphs
from data_tools.indexed_dataset import best_fitting_dtype, make_builder
from data_tools.lexical_units import token_markers, word_markers
from data_tools.sentence_split import CJK_TERMINATORS
from ernie.tokenizer import ErnieTokenizer

# People's Daily gold tags -> LAC's labels, for unit markers made from the gold words (other tags are alike)
GOLD_TO_LAC = {**PKU_ENTITY_TAGS, "t": "TIME"}
_SENTENCE_END_WORDS = tuple(CJK_TERMINATORS)  # a gold word that is one of 。！？ ends a sentence


def write_peoples_daily_token_files(
    prefix: str,
    tokenizer,
    start: int = 0,
    num_paragraphs: int | None = None,
    impl: str = "npy",
    overwrite: bool = False,
    units: bool = False,
    indices=None,
) -> str:
    """Token files of People's Daily paragraphs ``[start, start + num_paragraphs)`` (or of the paragraph numbers
    ``indices``) from the *gold* words: a document per paragraph, a sentence per 。！？, words through
    ``tokenizer.encode_words`` (char + ##chars). The segmentation-free way to make realistic pretraining data for
    tests and benchmarks. With ``units``, also ``{prefix}_units.npy`` from the gold words and tags
    (:data:`GOLD_TO_LAC`, :mod:`data_tools.lexical_units`). Returns ``prefix``."""

    def add(sentence: list[tuple[str, str]]) -> None:
        per_word = [tokenizer.encode_words([w]) for w, _ in sentence]
        marks = token_markers([len(x) for x in per_word], word_markers([GOLD_TO_LAC.get(t, t) for _, t in sentence]))
        builder.add_item(np.asarray([i for x in per_word for i in x]), marks if units else None)

    end = None if num_paragraphs is None else start + num_paragraphs
    builder = make_builder(prefix, impl, best_fitting_dtype(tokenizer.vocab_size), overwrite=overwrite, units=units)
    paragraphs = peoples_daily_paragraphs()
    for paragraph in [paragraphs[i] for i in indices] if indices is not None else paragraphs[start:end]:
        sentence: list[tuple[str, str]] = []
        for word, tag in paragraph:
            sentence.append((word, tag))
            if word in _SENTENCE_END_WORDS:
                add(sentence)
                sentence = []
        if sentence:
            add(sentence)
        builder.end_document()
    builder.finalize()
    return prefix


def write_peoples_daily_pretraining_data(out_dir: str, num_paragraphs: int, units: bool = False) -> tuple[str, str]:
    """A small self-contained pretraining set for tests and benchmarks: ``out_dir/vocab`` (special tokens, every
    character of the first ``num_paragraphs`` paragraphs and its ## form) and ``out_dir/data/pd`` token files of
    those paragraphs' gold words (with their unit markers when ``units``). Returns ``(vocab_dir, data_dir)``."""
    vocab_dir, data_dir = os.path.join(out_dir, "vocab"), os.path.join(out_dir, "data")
    os.makedirs(vocab_dir)
    os.makedirs(data_dir)
    chars = sorted({c for p in peoples_daily_paragraphs()[:num_paragraphs] for w, _ in p for c in w})
    specials = ["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]"]
    with open(os.path.join(vocab_dir, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(specials + chars + ["##" + c for c in chars]) + "\n")
    tokenizer = ErnieTokenizer.from_pretrained(vocab_dir)
    write_peoples_daily_token_files(os.path.join(data_dir, "pd"), tokenizer, num_paragraphs=num_paragraphs, units=units)
    return vocab_dir, data_dir
