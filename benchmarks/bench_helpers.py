"""Benchmark: data_tools.helpers (this repo's C++) against tool_helpers 0.1.2 (PaddleNLP's), same inputs, same run.

    OMP_NUM_THREADS=1 python benchmarks/bench_helpers.py [--sentences 3000000] [--repeats 5]

Prints the best-of-N wall time of each builder and the speed ratios (tool_helpers time / ours, > 1 means ours is
faster) by wall time and by CPU time of the calling thread (steadier on a shared machine), checks that both outputs
are identical, and shows that the GIL is released while ours builds. GPT sample_idx and blending are timed too.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")

from data_tools import sample_index as ours

try:
    from tool_helpers import helpers as reference
except ImportError:
    raise SystemExit("tool_helpers is not installed: pip install tool_helpers==0.1.2") from None


def make_corpus(num_sentences: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic corpus shaped like a Chinese news corpus: docs int64 [D + 1] offsets, sizes int32 [num_sentences].

    Documents hold 1..40 sentences (geometric, mean ~10), sentences 3..120 tokens (mean ~35), 0.2% are > 512.
    """
    rng = np.random.default_rng(seed)
    per_doc = np.minimum(rng.geometric(0.1, size=num_sentences // 4), 40)
    ends = np.cumsum(per_doc)
    ends = ends[ends < num_sentences]
    docs = np.concatenate([[0], ends, [num_sentences]]).astype(np.int64)
    sizes = np.clip(rng.gamma(3.0, 12.0, size=num_sentences), 3, 120).astype(np.int32)
    sizes[rng.random(num_sentences) < 0.002] = 700
    return docs, sizes


def timed(fn) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds of this thread, result): the C++ runs on the calling thread, GIL released."""
    wall, cpu = time.perf_counter(), time.thread_time()
    out = fn()
    return time.perf_counter() - wall, time.thread_time() - cpu, out


def compare(name: str, ref_fn, our_fn, repeats: int) -> None:
    """Best of `repeats`, the two interleaved so that load from other processes hits both alike."""
    best = {"ref": [float("inf")] * 2, "ours": [float("inf")] * 2}
    outs = {}
    for _ in range(repeats):
        for key, fn in (("ref", ref_fn), ("ours", our_fn)):
            wall, cpu, outs[key] = timed(fn)
            best[key] = [min(best[key][0], wall), min(best[key][1], cpu)]
    same = all(a.dtype == b.dtype and np.array_equal(a, b) for a, b in zip(_arrays(outs["ref"]), _arrays(outs["ours"])))
    (ref_wall, ref_cpu), (our_wall, our_cpu) = best["ref"], best["ours"]
    print(
        f"{name:<46} tool_helpers {ref_wall * 1e3:7.1f} ms  ours {our_wall * 1e3:7.1f} ms  "
        f"ratio wall {ref_wall / our_wall:4.2f}x  cpu {ref_cpu / our_cpu:4.2f}x  identical={same}",
        flush=True,
    )


def _arrays(out):
    return out if isinstance(out, tuple) else (out,)


def quiet(fn, *args):
    """Runs fn with the process's stdout (fd 1) sent to /dev/null: build_sample_idx always prints its summary."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 1)
        try:
            return fn(*args)
        finally:
            os.dup2(saved, 1)
            os.close(saved)


def gil_check(docs: np.ndarray, sizes: np.ndarray) -> None:
    """Counts how often a Python thread runs while each builder works: ~0 means the GIL was held."""
    for name, fn in (("tool_helpers", reference.build_mapping), ("ours", ours.build_mapping)):
        ticks, done = [0], threading.Event()

        def spin(done: threading.Event = done, ticks: list[int] = ticks) -> None:
            while not done.is_set():
                ticks[0] += 1

        thread = threading.Thread(target=spin)
        thread.start()
        time.sleep(0.05)
        before = ticks[0]
        fn(docs, sizes, 3, 10**12, 128, 0.1, 1234, False, 2)
        during = ticks[0] - before
        done.set()
        thread.join()
        print(f"GIL check: a Python thread ran {during:>9,} loop iterations during {name}'s build_mapping")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=3_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--results",
        default=None,
        help="where to record the output (default docs/results/bench_helpers.md; '' = nowhere)",
    )
    args = parser.parse_args()
    from bench_report import default_path, recorded  # benchmarks/ is on sys.path

    with recorded("bench_helpers", default_path("bench_helpers") if args.results is None else args.results):
        docs, sizes = make_corpus(args.sentences)
        print(f"corpus: {len(docs) - 1:,} documents, {len(sizes):,} sentences, {int(sizes.sum()):,} tokens")
        for label, epochs, max_len, prob, min_sent in (
            ("ERNIE 512, short 0.1, 1 epoch", 1, 512, 0.1, 2),
            ("ERNIE 128, short 0.1, 3 epochs", 3, 128, 0.1, 2),
            ("512, no short, min_sent 1, 1 epoch", 1, 512, 0.0, 1),
        ):
            call = (docs, sizes, epochs, 10**12, max_len, prob, 1234, False, min_sent)
            compare(
                f"build_mapping {label}",
                lambda call=call: reference.build_mapping(*call),
                lambda call=call: ours.build_mapping(*call),
                args.repeats,
            )

        titles = np.full(len(docs) - 1, 16, np.int32)
        blocks = (docs, sizes, titles, 1, 10**12, 288, 1234, False, False)
        compare(
            "build_blocks_mapping 288, 1 epoch",
            lambda: reference.build_blocks_mapping(*blocks),
            lambda: ours.build_blocks_mapping(*blocks),
            args.repeats,
        )

        # GPT: every sentence of the corpus taken as a document, 2 epochs of shuffled documents.
        doc_idx = np.concatenate([np.random.default_rng(e).permutation(len(sizes)) for e in range(2)]).astype(np.int32)
        gpt = (sizes, doc_idx, 1024, 2, int(sizes.sum()))
        compare(
            "build_sample_idx 1024, 2 epochs",
            lambda: quiet(reference.build_sample_idx, *gpt),
            lambda: quiet(ours.build_sample_idx, *gpt),
            args.repeats,
        )

        weights = np.array([0.5, 0.3, 0.2])

        def blend(module):
            index, sample = np.empty(10_000_000, np.uint8), np.empty(10_000_000, np.int64)
            module.build_blending_indices(index, sample, weights, 3, 10_000_000, False)
            return index, sample

        compare("build_blending_indices 3 datasets, 10M", lambda: blend(reference), lambda: blend(ours), args.repeats)
        gil_check(docs, sizes)


if __name__ == "__main__":
    main()
