"""Cloze test of pretrained checkpoints on held-out People's Daily sentences (issue 22, item 3; ``ernie.cloze``).

    python benchmarks/bench_cloze.py --model NAME=DIR [--model NAME2=DIR2 ...] [--kinds char entity word]
        [--n 300] [--seed 0] [--beam_size 5] [--max_chars 62] [--output docs/results/bench_cloze.md]

Sentences: the ``peoples_daily_ner`` test split, which the toolkit's pretraining corpora leave out. Kinds: (a)
``char`` one masked Chinese character, (b) ``entity`` a whole PER/LOC/ORG entity of 2-4 characters, (c) ``word`` a
whole LAC word of 2-4 characters that is not an entity (needs LAC's lac_model). Figures: top-1 and top-5 character
accuracy of the one-pass prediction with the whole span masked, and the exact match of the best joint filling (beam
search, ``--beam_size``). Every checkpoint sees the same items. The first row is the floor: a guess that ignores the
sentence (``ernie.cloze.NoContextFill``: the commonest characters and strings of the NER train split). The table (with
the machine and the commit) goes to ``--output`` and to stdout; ``--json`` also writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from ernie import cloze  # noqa: E402
from ernie.utils import atomic_write  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_report import one_line as machine_and_commit  # noqa: E402

LABELS = {"char": "(a) one char", "entity": "(b) entity 2-4 chars", "word": "(c) LAC word 2-4 chars"}


def cell(figures: dict) -> str:
    if "skipped" in figures:
        return "skipped"
    return (
        f"{100 * figures['char_top1']:.1f} / {100 * figures['char_top5']:.1f} / "
        f"{100 * figures['exact_match']:.1f} (n={figures['items']})"
    )


def table(results: dict[str, dict[str, dict]], kinds: list[str], header: str) -> str:
    lines = [
        header,
        "",
        "| checkpoint | " + " | ".join(LABELS[k] + ": top-1 / top-5 char / exact span (%)" for k in kinds) + " |",
        "|---" * (len(kinds) + 1) + "|",
    ]
    for name, figures in results.items():
        lines.append(f"| {name} | " + " | ".join(cell(figures[k]) for k in kinds) + " |")
    notes = {f["skipped"] for figs in results.values() for f in figs.values() if "skipped" in f}
    return "\n".join(lines + [""] + [f"skipped: {n}" for n in sorted(notes)]) + "\n"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="NAME=DIR",
        help="a checkpoint with an MLM head (ours, PaddleNLP's or HF's); repeat to compare",
    )
    p.add_argument("--kinds", nargs="+", default=list(cloze.KINDS), choices=cloze.KINDS)
    p.add_argument("--n", type=int, default=300, help="items per kind (one per sentence)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--beam_size", type=int, default=5)
    p.add_argument(
        "--max_chars",
        type=int,
        default=cloze.DEFAULT_MAX_CHARS,
        help="sentence window around the span (the checkpoint's pretraining length - 2)",
    )
    p.add_argument("--lac_model_dir", default=None, help="LAC's lac_model (default: the installed LAC package's)")
    p.add_argument("--output", default=os.path.join(REPO, "docs", "results", "bench_cloze.md"))
    p.add_argument("--no_floor", action="store_true", help="leave out the no-context row (ernie.cloze.NoContextFill)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    a = p.parse_args(argv)
    from ernie.utils.cpu_tuning import tune_cpu_math

    tune_cpu_math("cpu")
    models = dict(m.split("=", 1) if "=" in m else (os.path.basename(m.rstrip("/")), m) for m in a.model)
    results = {}
    if not a.no_floor:  # what a guess that ignores the sentence scores: a model below it does not read context
        results[f"{cloze.NO_CONTEXT} (commonest train-split chars / strings)"] = cloze.run_cloze(
            cloze.NO_CONTEXT, a.kinds, a.n, a.seed, a.beam_size, a.max_chars, a.lac_model_dir
        )
    for name, model_dir in models.items():
        t0 = time.time()
        results[name] = cloze.run_cloze(model_dir, a.kinds, a.n, a.seed, a.beam_size, a.max_chars, a.lac_model_dir)
        print(f"  {name}: {time.time() - t0:.0f} s", flush=True)
    header = (
        f"Cloze on the peoples_daily_ner test split (never pretrained on): {a.n} items per kind, seed {a.seed}, "
        f"beam {a.beam_size}, window {a.max_chars} chars. {machine_and_commit()}"
    )
    text = table(results, a.kinds, header)
    os.makedirs(os.path.dirname(os.path.abspath(a.output)), exist_ok=True)
    with atomic_write(a.output, "w") as f:
        f.write(text)
    if a.json:
        with atomic_write(a.json, "w") as f:
            json.dump(results, f, indent=1)
    print(text)
    return results


if __name__ == "__main__":
    main()
