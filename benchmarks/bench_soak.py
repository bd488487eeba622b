"""Soak test of a long pretraining run: memory and process counts of every rank stay flat under frequent evaluation
and checkpoints.

    python benchmarks/bench_soak.py [--steps 3000] [--nproc 2] [--eval_freq 25] [--checkpoint_steps 100]
                                    [--num_workers 1] [--work DIR]

Runs ``scripts/run_pretrain.py`` under ``paddle.distributed.launch`` (ernie-mini-cpu narrowed to hidden 64, seq 64,
micro batch 8, one thread per rank) on the first 1,500 People's Daily paragraphs, samples every rank's process tree
every few seconds (psutil: child processes, the rank's RSS, the PSS of the rank + its DataLoader workers) and prints
the figures after the first evaluation ("start"), at quarters of the run and at the last sample before the final
test evaluation ("end"), plus how many distinct worker processes the samples caught. The run itself is the
baseline: what matters is end against start. Needs psutil (test extra).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import psutil

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # tests.fixtures (the pretraining data made from the built-in corpus)
MB = 1 << 20


def last_step(log_path: str) -> int:
    """The step of the last record of train_log.jsonl (0 before the first)."""
    try:
        with open(log_path, "rb") as f:
            f.seek(max(0, os.path.getsize(log_path) - 4096))
            lines = [line for line in f.read().splitlines() if line.strip()]
        return int(json.loads(lines[-1])["step"]) if lines else 0
    except (OSError, ValueError, IndexError, KeyError):
        return 0


def sample(launcher: psutil.Process, seen: dict[int, set[int]]) -> dict[int, dict] | None:
    """Per rank: child processes, RSS of the rank, PSS of the rank + its children; records every child pid seen."""
    out = {}
    try:
        ranks = launcher.children()
    except psutil.Error:
        return None
    for proc in ranks:
        try:
            rank = int(proc.environ().get("PADDLE_TRAINER_ID", "-1"))
            children = proc.children(recursive=True)
            tree = [proc] + children
            pss = sum(p.memory_full_info().pss for p in tree)
            out[rank] = {"children": len(children), "rss": proc.memory_info().rss, "pss": pss}
            seen.setdefault(rank, set()).update(c.pid for c in children)
        except psutil.Error:  # a worker ended between the listing and the reading
            continue
    return out or None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--eval_freq", type=int, default=25)
    p.add_argument("--eval_iters", type=int, default=2)
    p.add_argument("--checkpoint_steps", type=int, default=100)
    p.add_argument("--save_steps", type=int, default=500)
    p.add_argument("--num_workers", type=int, default=1)
    p.add_argument("--every", type=float, default=3.0, help="seconds between samples")
    p.add_argument("--work", default=None, help="work dir (default: a temporary one)")
    p.add_argument(
        "--results", default=None, help="where to record the output (default docs/results/bench_soak.md; '' = nowhere)"
    )
    a = p.parse_args()
    from bench_report import default_path, recorded  # benchmarks/ is on sys.path

    with recorded("bench_soak", default_path("bench_soak") if a.results is None else a.results):
        from tests.fixtures import write_peoples_daily_pretraining_data

        work = a.work or tempfile.mkdtemp(prefix="bench_soak_")
        vocab, data = write_peoples_daily_pretraining_data(os.path.join(work, "corpus"), 1500)
        # a tiny model: ernie-mini-cpu narrowed to hidden 64 over this corpus's vocabulary, so CPU stays modest
        with open(os.path.join(REPO, "configs", "models", "ernie-mini-cpu.json"), encoding="utf-8") as f:
            config = json.load(f)
        with open(os.path.join(vocab, "vocab.txt"), encoding="utf-8") as f:
            config.update(
                vocab_size=sum(1 for _ in f), hidden_size=64, intermediate_size=256, max_position_embeddings=128
            )
        model = os.path.join(work, "tiny.json")
        with open(model, "w", encoding="utf-8") as f:
            json.dump(config, f)
        out = os.path.join(work, "out")
        cmd = [
            sys.executable,
            "-m",
            "paddle.distributed.launch",
            "--nproc_per_node",
            str(a.nproc),
            "--log_dir",
            os.path.join(work, "log"),
            os.path.join(REPO, "scripts", "run_pretrain.py"),
            "--model_name_or_path",
            model,
            "--tokenizer_name_or_path",
            vocab,
            "--input_dir",
            data,
            "--output_dir",
            out,
            "--device",
            "cpu",
            "--max_seq_len",
            "64",
            "--micro_batch_size",
            "8",
            "--max_steps",
            str(a.steps),
            "--eval_freq",
            str(a.eval_freq),
            "--eval_iters",
            str(a.eval_iters),
            "--test_iters",
            "1",
            "--checkpoint_steps",
            str(a.checkpoint_steps),
            "--save_steps",
            str(a.save_steps),
            "--num_workers",
            str(a.num_workers),
            "--logging_freq",
            "50",
            "--max_lr",
            "5e-4",
            "--min_lr",
            "5e-5",
        ]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        print(
            f"work dir {work}; {a.nproc} ranks, {a.steps} steps, evaluation every {a.eval_freq} steps, "
            f"model_last every {a.checkpoint_steps}, model_<step> every {a.save_steps}, num_workers {a.num_workers}"
        )
        t0 = time.time()
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        launcher = psutil.Process(proc.pid)
        log = os.path.join(out, "train_log.jsonl")
        samples: list[tuple[int, float, dict]] = []
        seen: dict[int, set[int]] = {}
        try:
            while proc.poll() is None:
                step = last_step(log)
                s = sample(launcher, seen)
                if s and len(s) == a.nproc and a.eval_freq < step < a.steps:  # first evaluation .. test evaluation
                    samples.append((step, time.time() - t0, s))
                time.sleep(a.every)
        finally:
            if proc.poll() is None:
                proc.kill()
        if proc.returncode != 0 or not samples:
            sys.exit(f"the run failed (rc {proc.returncode}); see {work}/log/workerlog.*")

        n = len(samples)
        picks = {"start": 0, "25%": n // 4, "50%": n // 2, "75%": 3 * n // 4, "end": n - 1}
        print(
            f"\n{n} samples over {samples[-1][1] / 60:.1f} min; per rank: child processes / rank RSS / PSS of "
            "rank + workers"
        )
        header = f"{'when':>6} {'step':>6}  " + "  ".join(
            f"rank {r}: {'procs':>5} {'RSS MB':>7} {'PSS MB':>7}" for r in range(a.nproc)
        )
        print(header)
        for name, i in picks.items():
            step, _, s = samples[i]
            print(
                f"{name:>6} {step:>6}  "
                + "  ".join(
                    f"        {s[r]['children']:>5} {s[r]['rss'] / MB:>7.0f} {s[r]['pss'] / MB:>7.0f}"
                    for r in range(a.nproc)
                )
            )
        for r in range(a.nproc):
            first, last = samples[0][2][r], samples[-1][2][r]
            most = max(x[2][r]["children"] for x in samples)
            print(
                f"rank {r}: child processes {first['children']} -> {last['children']} (max {most}); PSS "
                f"{first['pss'] / MB:.0f} -> {last['pss'] / MB:.0f} MB "
                f"({(last['pss'] / first['pss'] - 1) * 100:+.1f} %); RSS {first['rss'] / MB:.0f} -> "
                f"{last['rss'] / MB:.0f} MB; distinct worker processes caught by the "
                f"samples: {len(seen.get(r, ()))} (evaluations: {a.steps // a.eval_freq + 1})"
            )


if __name__ == "__main__":
    main()
