"""Data-parallel scaling of pretraining on the CPU: 1 process x 2 threads against 2 processes x 1 thread.

    python benchmarks/bench_scaling.py [--steps 40] [--repeats 2]

Both sides run scripts/run_pretrain.py with the demo config (configs/pretrain/ernie-mini-cpu-demo.yaml: global batch
32, seq 64) on the same small People's Daily set; the single process accumulates 2 micro batches of 16, the two
processes (paddle.distributed.launch, gloo) take 16 each. tokens/s comes from the runs' train_log.jsonl (logging
windows after the first). The all-reduce share is estimated apart, in the same run: two gloo processes time the
trainer's own gradient all-reduce (ernie.training.distributed.all_reduce_gradients) on the model's gradients;
share = that time x the two-process steps/s. Sides alternate, the best run of each counts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # tests.fixtures (the pretraining data made from the built-in corpus)
CONFIG = os.path.join(REPO, "configs", "pretrain", "ernie-mini-cpu-demo.yaml")


def allreduce_worker(model_json: str, reps: int, out: str) -> None:
    """Under paddle.distributed.launch: time all_reduce_gradients on the model's (random) gradients."""
    import paddle
    import paddle.distributed as dist

    from ernie import ErnieConfig, ErnieForPretraining
    from ernie.training.distributed import all_reduce_gradients

    dist.init_parallel_env()
    model = ErnieForPretraining(ErnieConfig.from_file(model_json))
    params = [p for p in model.parameters() if not p.stop_gradient]
    paddle.add_n([p.sum() for p in params]).backward()  # gradient buffers as a backward leaves them
    all_reduce_gradients(params, 2)  # warm-up (connections)
    times = []
    for _ in range(reps):
        dist.barrier()
        t0 = time.perf_counter()
        all_reduce_gradients(params, 2)
        times.append(time.perf_counter() - t0)
    if dist.get_rank() == 0:
        with open(out, "w") as f:
            json.dump({"seconds": min(times), "numel": sum(int(p.size) for p in params)}, f)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    p.add_argument(
        "--results",
        default=None,
        help="where to record the output (default docs/results/bench_scaling.md; '' = nowhere)",
    )
    a = p.parse_args()
    from bench_report import default_path, recorded  # benchmarks/ is on sys.path

    with recorded("bench_scaling", default_path("bench_scaling") if a.results is None else a.results):
        if a.worker:
            allreduce_worker(a.worker[0], int(a.worker[1]), a.worker[2])
            return
        from bench_pretrain import run as run_and_read_log  # same directory: runs a command, reads train_log.jsonl

        from ernie.configuration import ErnieConfig
        from tests.fixtures import write_peoples_daily_pretraining_data

        log_every, seq, global_batch = 5, 64, 32
        with tempfile.TemporaryDirectory() as tmp:
            vocab_dir, data_dir = write_peoples_daily_pretraining_data(tmp, 3000)
            vocab_size = sum(1 for _ in open(os.path.join(vocab_dir, "vocab.txt"), encoding="utf-8"))
            model_json = os.path.join(tmp, "model.json")
            with open(model_json, "w") as f:
                json.dump(ErnieConfig.from_pretrained("ernie-mini-cpu", vocab_size=vocab_size).to_dict(), f)
            launch = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2"]

            def flags(out: str) -> list[str]:
                return [
                    os.path.join(REPO, "scripts", "run_pretrain.py"),
                    "--config",
                    CONFIG,
                    "--model_name_or_path",
                    model_json,
                    "--tokenizer_name_or_path",
                    vocab_dir,
                    "--input_dir",
                    data_dir,
                    "--output_dir",
                    out,
                    "--max_steps",
                    str(a.steps),
                    "--checkpoint_steps",
                    str(10 * a.steps),
                    "--save_steps",
                    str(10 * a.steps),
                    "--eval_freq",
                    str(10 * a.steps),
                    "--eval_iters",
                    "0",
                    "--test_iters",
                    "0",
                    "--logging_freq",
                    str(log_every),
                    "--global_batch_size",
                    str(global_batch),
                ]

            sides = {"1 process x 2 threads": ([sys.executable], "2"), "2 processes x 1 thread": (launch, "1")}
            results: dict[str, list[float]] = {k: [] for k in sides}
            shares = []
            for r in range(a.repeats):
                for key, (prefix, threads) in sides.items():
                    out = os.path.join(tmp, f"run{r}{threads}")
                    extra = ["--log_dir", os.path.join(out, "launch_log")] if prefix is launch else []
                    measured = run_and_read_log(
                        key,
                        prefix + extra + flags(out),
                        int(threads),
                        out,
                        log_every,
                        global_batch * seq,
                        global_batch,
                        {},
                    )
                    results[key].append(measured["tokens_per_s"])
                    print(f"  round {r + 1} {key:24s} {results[key][-1]:8.0f} tokens/s", flush=True)
                ar_out = os.path.join(tmp, f"allreduce{r}.json")
                subprocess.run(
                    launch
                    + [
                        "--log_dir",
                        os.path.join(tmp, f"ar_log{r}"),
                        os.path.abspath(__file__),
                        "--worker",
                        model_json,
                        "10",
                        ar_out,
                    ],
                    cwd=REPO,
                    env=dict(os.environ, OMP_NUM_THREADS="1"),
                    check=True,
                    capture_output=True,
                )
                with open(ar_out) as f:
                    ar = json.load(f)
                steps_per_s = results["2 processes x 1 thread"][-1] / (global_batch * seq)
                shares.append(ar["seconds"] * steps_per_s)
                print(
                    f"  round {r + 1} all-reduce of {ar['numel']:,} gradient values: {1000 * ar['seconds']:.1f} ms "
                    f"= {100 * shares[-1]:.1f}% of a two-process step",
                    flush=True,
                )
        best = {k: max(v) for k, v in results.items()}
        print(
            f"demo config (ernie-mini-cpu, seq {seq}, global batch {global_batch}), {a.steps} steps, "
            f"best of {a.repeats}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
        )
        for k, v in best.items():
            print(f"  {k:24s} {v:8.0f} tokens/s")
        one, two = best["1 process x 2 threads"], best["2 processes x 1 thread"]
        print(
            f"  2 processes / 1 process: {two / one:.2f}x; all-reduce share of a two-process step "
            f"{100 * min(shares):.1f}-{100 * max(shares):.1f}%"
        )


if __name__ == "__main__":
    main()
