"""Cloze test (ernie.cloze, benchmarks/bench_cloze.py): items come from the NER test split (the right spans, windows,
one per sentence, reproducible); the figures are right for an oracle and for a model that is always wrong; a tiny
model runs end to end and the benchmark writes its table with the machine and commit."""

from __future__ import annotations

import importlib.util
import os
import shutil

import pytest

from ernie import cloze
from ernie.fill_mask import FillResult, SpanFilling
from ernie.tokenizer import is_cjk_char

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_items_are_held_out_spans_of_the_right_kind():
    sentences = {text: spans for text, spans in cloze.held_out_sentences()}
    chars = cloze.cloze_items("char", 40, seed=1, max_chars=30)
    entities = cloze.cloze_items("entity", 40, seed=1, max_chars=30)
    assert len(chars) == len(entities) == 40
    assert chars == cloze.cloze_items("char", 40, seed=1, max_chars=30)  # reproducible
    assert chars != cloze.cloze_items("char", 40, seed=2, max_chars=30)
    for item in chars:
        assert len(item.gold) == 1 and is_cjk_char(item.gold) and len(item.text) <= 30
    for item in entities:
        assert 2 <= len(item.gold) <= 4 and all(is_cjk_char(c) for c in item.gold) and len(item.text) <= 30
        full = next(t for t in sentences if item.text in t)  # the window is a piece of a test sentence
        offset = full.index(item.text)
        assert (item.start + offset, item.end + offset) in {
            (a, b) for a, b, k in sentences[full] if k in ("PER", "LOC", "ORG")
        }


class Oracle:
    """A FillMask stand-in that knows (or, with ``wrong``, always misses) the answer."""

    def __init__(self, wrong: bool = False):
        self.wrong = wrong

    def fill(self, text, top_k=5, beam_size=5, mask_spans=None):
        ((start, end),) = mask_spans
        gold = text[start:end]
        guess = "错" * len(gold) if self.wrong else gold
        positions = [[(g, 0.9)] + [("的", 0.01)] * (top_k - 1) for g in guess]
        return FillResult(text, text, positions, [SpanFilling(start, end, guess, gold, -1.0)])


def test_figures_of_an_oracle_and_of_a_model_always_wrong():
    items = cloze.cloze_items("entity", 25, seed=0)
    right = cloze.evaluate(Oracle(), items)
    assert right["items"] == 25 and right["chars"] == sum(len(i.gold) for i in items)
    assert right["char_top1"] == right["char_top5"] == right["exact_match"] == 1.0
    wrong = cloze.evaluate(Oracle(wrong=True), items)
    assert wrong["char_top1"] == wrong["exact_match"] == 0.0


def test_tiny_model_end_to_end_and_benchmark_table(vocab_dir, tmp_path):
    paddle = pytest.importorskip("paddle")
    from ernie import modeling
    from ernie.configuration import ErnieConfig

    paddle.seed(0)
    model = modeling.ErnieForPretraining(
        ErnieConfig(
            vocab_size=10000,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
        )
    )
    model_dir = str(tmp_path / "tiny")
    model.save_pretrained(model_dir)
    for name in ("vocab.txt", "tokenizer_config.json"):
        shutil.copy(os.path.join(vocab_dir, name), model_dir)
    spec = importlib.util.spec_from_file_location("bench_cloze", os.path.join(REPO, "benchmarks", "bench_cloze.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "cloze.md"
    results = bench.main(
        [
            "--model",
            f"tiny={model_dir}",
            "--kinds",
            "char",
            "entity",
            "--n",
            "8",
            "--beam_size",
            "2",
            "--output",
            str(out),
        ]
    )
    for kind in ("char", "entity"):
        f = results["tiny"][kind]
        assert f["items"] == 8 and 0 <= f["char_top1"] <= f["char_top5"] <= 1 and 0 <= f["exact_match"] <= 1
    text = out.read_text(encoding="utf-8")
    assert "| tiny |" in text and "machine:" in text and "commit" in text
    assert f"| {cloze.NO_CONTEXT} " in text  # the floor row comes first
    assert text.index(f"| {cloze.NO_CONTEXT} ") < text.index("| tiny |")


def test_no_context_floor_is_the_train_split_frequencies():
    """The floor answers every item alike, from counts of the NER train split made here independently."""
    from collections import Counter

    from data_tools.corpus import peoples_daily_ner_dataset

    texts = ["".join(ex["tokens"]) for ex in peoples_daily_ner_dataset().train]
    counts = Counter(ch for t in texts for ch in t if is_cjk_char(ch))
    top5 = [ch for ch, _ in counts.most_common(5)]
    floor = cloze.NoContextFill()
    assert [ch for ch, _ in floor.chars] == top5
    items = cloze.cloze_items("char", 200, seed=3)
    figures = cloze.evaluate(floor, items)
    assert figures["char_top1"] == sum(i.gold == top5[0] for i in items) / len(items)
    assert figures["char_top5"] == sum(i.gold in top5 for i in items) / len(items)
    bigrams = Counter(t[i : i + 2] for t in texts for i in range(len(t) - 1))
    best = next(g for g, _ in bigrams.most_common() if all(is_cjk_char(c) for c in g))
    entities = [i for i in cloze.cloze_items("entity", 200, seed=3) if len(i.gold) == 2]
    assert cloze.evaluate(floor, entities)["exact_match"] == sum(i.gold == best for i in entities) / len(entities)
    assert cloze.run_cloze(cloze.NO_CONTEXT, ("char",), n=200, seed=3)["char"] == figures


def test_lac_word_items_are_not_entities():
    if importlib.util.find_spec("LAC") is None:
        pytest.skip("LAC is not installed (its lac_model finds the words)")
    items = cloze.cloze_items("word", 10, seed=0)
    assert len(items) == 10
    entity_spans = {(t, a, b) for t, spans in cloze.held_out_sentences() for a, b, _ in spans}
    for item in items:
        assert 2 <= len(item.gold) <= 4 and all(is_cjk_char(c) for c in item.gold)
        assert (item.text, item.start, item.end) not in entity_spans
