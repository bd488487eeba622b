"""Training-step throughput of our ErnieForPretraining vs HF transformers (torch) and PaddleNLP, in one run.

    python benchmarks/bench_model.py                                          # tiny (4L/256H, B16) and base (B8)
    python benchmarks/bench_model.py --configs ernie-tiny-cpu --rounds 4 --threads 2
    python benchmarks/bench_model.py --profile                               # + top ops of one step per impl

Results go to docs/results/bench_model.md (machine + commit; --results '' skips).

The steady state, as a pretraining run gets it: every side trains on real token files (People's Daily, the built-in
text, made by tests/fixtures.py; word masking, SOP pairs, 15% masked, padding masked out) at the CPU pretraining
recipe's learning rate (configs/pretrain/ernie-tiny-cpu.yaml: 1e-3, constant here), first ``--warmup_steps`` steps
(default 100 tiny, 10 base) that are not timed as the throughput, then the timed rounds on the following batches.
A randomly initialised model's first steps can be faster than what a run gets after them (values go subnormal as it
trains: docs/cpu.md), so the first steps (2-4) of the warm-up are reported beside the steady state.

One step = forward + backward + AdamW update, fp32, dropout 0.1, at seq 128, a real micro batch (its masked
positions, about 15% of its tokens), SOP head on; after the update every side releases its gradients (torch
``zero_grad(set_to_none=True)``, its default, and its Paddle form ``clear_grad(set_to_zero=False)``, as Paddle's
PyTorch conversion guide maps it), so no side keeps a zero-filled copy of every gradient through the next forward.
Each implementation lives in its own worker process (so that per-process CPU settings stay apart) and the workers
take turns (A, B, C, C, B, A ...), because the machine is shared and the load changes under us; each side's best
round is reported, with the ratios of the bests and per round.

Each implementation runs as its user gets it: ours is built through the Python API with nothing called by hand (the
library applies its CPU settings itself, ernie.utils.cpu_tuning), and with the default --threads 0 no thread variable
is set for any worker (each framework picks its own thread count: a plain script with no environment variables).

Memory: each worker reports its process's peak resident set (ru_maxrss) after the timed training steps, and the part
of it above the resident set of the built model + optimizer before the first step (activations, gradients, optimizer
state, allocator caches: what a training step adds). Paddle's workers also report the peak of the memory their tensors
held (Paddle's own host statistic): the rest of the resident set is the libraries and the heap that malloc keeps
(docs/cpu.md, "Memory of a training step").

Implementations:
  ours             ernie.ErnieForPretraining (denormals flushed: the library's default, docs/cpu.md)
  hf               transformers.BertForPreTraining on torch CPU (the `bench` extra: torch==2.13.0+cpu,
                   transformers==4.41.2) as a user gets it (denormals not flushed, torch's default); MLM loss over all
                   positions with labels -100 off the masked ones (that is how HF computes it: its LM head runs on
                   every position)
  hf+flush         the same with torch.set_flush_denormal(True) at the worker's start
  ours+noflush     (not by default) ours with ERNIE_NO_FLUSH_DENORMALS=1
  paddlenlp        paddlenlp.transformers.ErnieForPretraining, process as Paddle sets it up
  paddlenlp+tuned  (not by default) PaddleNLP's model with ernie.utils.cpu_tuning.tune_cpu_math applied, to separate
                   those process settings from the model-level changes
  hf+tuned         (not by default) HF's model with the same process settings (glibc malloc thresholds)

FLOPs/token count the matmuls of forward+backward (3x forward): encoder, attention scores/context, and the LM head
on 15% of the positions (HF's extra LM-head work on the unmasked positions is not counted for it). The GEMM peak is
each framework's own fp32 GEMM on the encoder's FFN shape, measured in the same worker between its turns.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

# --seq_len / --amp reach the workers through the environment (set by main before they start).
SEQ_LEN = int(os.environ.get("ERNIE_BENCH_SEQ_LEN", "128"))
MASKED_PER_SEQ = math.ceil(0.15 * SEQ_LEN)  # 20 at seq 128
AMP = os.environ.get("ERNIE_BENCH_AMP", "float32")
DEFAULT_RUNS = {"ernie-tiny-cpu": 16, "ernie-1.0-base-zh": 8}
DEFAULT_WARMUP = {"ernie-tiny-cpu": 100, "ernie-1.0-base-zh": 10}  # untimed training steps before the rounds
DEFAULT_LR = 1e-3  # configs/pretrain/ernie-tiny-cpu.yaml's max_lr (the CPU recipe)
IMPLS = ("ours", "hf", "hf+flush", "paddlenlp")  # also: paddlenlp+tuned, hf+tuned, ours+noflush
# the token-file batches of a run (an .npz written by main) and the learning rate reach the workers this way
BATCHES = os.environ.get("ERNIE_BENCH_BATCHES", "")
LR = float(os.environ.get("ERNIE_BENCH_LR", "1e-4"))


def write_batches(path: str, tmp: str, count: int, batch: int) -> None:
    """``count`` micro batches of ``batch`` x SEQ_LEN from People's Daily token files (the toolkit's own dataset and
    collate, as pretraining reads them), stacked into ``path`` (.npz); masked positions padded to the longest."""
    import numpy as np

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests.fixtures
    from data_tools.batching import collate
    from data_tools.corpus import peoples_daily_paragraphs
    from data_tools.ernie_dataset import ErnieDatasetConfig, build_train_valid_test_datasets
    from ernie import ErnieTokenizer
    from tests.fixtures import write_peoples_daily_pretraining_data

    vocab_dir, data_dir = write_peoples_daily_pretraining_data(tmp, len(peoples_daily_paragraphs()))
    config = ErnieDatasetConfig(max_seq_len=SEQ_LEN, seed=1234, cache_dir=tmp)
    train = build_train_valid_test_datasets(
        data_dir, ErnieTokenizer.from_pretrained(vocab_dir), config, (count * batch, 0, 0)
    )[0]
    batches = [collate([train[i] for i in range(b * batch, (b + 1) * batch)]) for b in range(count)]
    most = max(len(b["masked_lm_positions"]) for b in batches)
    out = {}
    for key in batches[0]:
        if key in ("masked_lm_positions", "masked_lm_labels"):
            fill = 0 if key == "masked_lm_positions" else -1  # padding: position 0, label ignored
            out[key] = np.stack([np.pad(b[key], (0, most - len(b[key])), constant_values=fill) for b in batches])
        else:
            out[key] = np.stack([b[key] for b in batches])
    np.savez(path, **out)


def load_batches() -> dict:
    """The run's batches (write_batches), as numpy arrays [count, ...]."""
    import numpy as np

    with np.load(BATCHES) as f:
        return {k: f[k] for k in f.files}


def model_kwargs(config_name: str) -> dict:
    from ernie.configuration import ErnieConfig, resolve_config_file

    cfg = ErnieConfig.from_file(resolve_config_file(config_name))
    keys = (
        "vocab_size hidden_size num_hidden_layers num_attention_heads intermediate_size hidden_act "
        "hidden_dropout_prob attention_probs_dropout_prob max_position_embeddings type_vocab_size pad_token_id"
    ).split()
    return {k: getattr(cfg, k) for k in keys}


def flops_per_token(kw: dict, seq_len: int, masked_frac: float = 0.15) -> float:
    H, intermediate, L, V = kw["hidden_size"], kw["intermediate_size"], kw["num_hidden_layers"], kw["vocab_size"]
    per_layer = 2 * (4 * H * H + 2 * H * intermediate) + 2 * 2 * seq_len * H
    lm_head = masked_frac * 2 * (H * H + H * V)
    return 3.0 * (L * per_layer + lm_head)


# ---- worker ---------------------------------------------------------------------------------------------------------
def worker(impl: str, config_name: str, batch: int) -> None:
    """Build one model + AdamW, then serve 'warmup' / 'run <steps>' / 'profile' / 'quit' commands on stdin."""
    kw = model_kwargs(config_name)
    if impl in ("ours", "ours+noflush"):  # as a plain Python-API user gets it: nothing tuned by hand
        import paddle

        from ernie import ErnieConfig, ErnieForPretraining, ErniePretrainingCriterion

        model = ErnieForPretraining(ErnieConfig(**kw))
        criterion = ErniePretrainingCriterion()

        def loss_fn(scores, sop, labels, nsp):
            return criterion(scores, sop, labels, nsp)[0]

    elif impl in ("hf", "hf+tuned", "hf+flush"):
        if impl == "hf+tuned":
            from ernie.utils.cpu_tuning import tune_cpu_math

            tune_cpu_math()  # the malloc thresholds apply to torch's CPU allocations too
        hf_worker(kw, batch, flush=impl == "hf+flush")
        return
    else:
        if impl == "paddlenlp+tuned":
            from ernie.utils.cpu_tuning import tune_cpu_math

            tune_cpu_math()
        import paddle
        from paddlenlp.transformers import ErnieConfig, ErnieForPretraining, ErniePretrainingCriterion

        model = ErnieForPretraining(ErnieConfig(**kw))
        criterion = ErniePretrainingCriterion()

        def loss_fn(scores, sop, labels, nsp):
            lm, so = criterion(scores, sop, labels.reshape([-1, 1]), nsp.reshape([-1, 1]))
            return lm + so

    model.train()
    opt = paddle.optimizer.AdamW(LR, parameters=model.parameters(), weight_decay=0.01)
    data = load_batches()
    count = len(data["input_ids"])
    at = [0]

    scaler = paddle.amp.GradScaler() if AMP == "float16" else None

    def step():
        b = {k: paddle.to_tensor(v[at[0] % count]) for k, v in data.items()}
        at[0] += 1
        with paddle.amp.auto_cast(enable=AMP != "float32", level="O1", dtype=AMP if AMP != "float32" else "float16"):
            scores, sop = model(
                b["input_ids"],
                b["segment_ids"],
                attention_mask=b["input_mask"],
                masked_positions=b["masked_lm_positions"],
            )
            loss = loss_fn(scores, sop, b["masked_lm_labels"], b["next_sentence_labels"])
        if scaler is None:
            loss.backward()
            opt.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        opt.clear_grad(set_to_zero=False)  # release the gradients, as HF's zero_grad(set_to_none=True)
        return float(loss)

    def gemm():
        a = paddle.rand([batch * SEQ_LEN, kw["hidden_size"]])
        b = paddle.rand([kw["hidden_size"], kw["intermediate_size"]])
        return lambda: float(paddle.matmul(a, b)[0, 0])

    serve(step, gemm(), profile_step, paddle_tensor_peak_mb)


def hf_worker(kw: dict, batch: int, flush: bool = False) -> None:
    """HF transformers' BertForPreTraining on torch CPU: same batches, dropout, MLM labels (-100 elsewhere) and SOP;
    ``flush``: torch.set_flush_denormal(True) first (torch's own switch; off by default)."""
    import numpy as np
    import torch
    from transformers import BertConfig, BertForPreTraining

    if flush:
        torch.set_flush_denormal(True)
    if "OMP_NUM_THREADS" in os.environ:
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=kw["vocab_size"],
        hidden_size=kw["hidden_size"],
        num_hidden_layers=kw["num_hidden_layers"],
        num_attention_heads=kw["num_attention_heads"],
        intermediate_size=kw["intermediate_size"],
        hidden_act=kw["hidden_act"],
        hidden_dropout_prob=kw["hidden_dropout_prob"],
        attention_probs_dropout_prob=kw["attention_probs_dropout_prob"],
        max_position_embeddings=kw["max_position_embeddings"],
        type_vocab_size=kw["type_vocab_size"],
        pad_token_id=kw["pad_token_id"],
    )
    model = BertForPreTraining(cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.01)
    data = load_batches()
    batches = []
    for i in range(len(data["input_ids"])):  # HF's labels: [B, S], -100 off the masked positions
        labels = np.full((batch * SEQ_LEN,), -100, dtype="int64")
        keep = data["masked_lm_labels"][i] != -1
        labels[data["masked_lm_positions"][i][keep]] = data["masked_lm_labels"][i][keep]
        batches.append(
            {
                "input_ids": torch.from_numpy(data["input_ids"][i]),
                "token_type_ids": torch.from_numpy(data["segment_ids"][i]),
                "attention_mask": torch.from_numpy(data["input_mask"][i].astype("int64")),
                "labels": torch.from_numpy(labels.reshape(batch, SEQ_LEN)),
                "next_sentence_label": torch.from_numpy(data["next_sentence_labels"][i]),
            }
        )
    at = [0]

    def step():
        b = batches[at[0] % len(batches)]
        at[0] += 1
        loss = model(**b).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss)

    a, b = torch.rand(batch * SEQ_LEN, kw["hidden_size"]), torch.rand(kw["hidden_size"], kw["intermediate_size"])
    serve(step, lambda: float(torch.matmul(a, b)[0, 0]), None)


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident set of this process in MB (Linux: /proc/self/statm and ru_maxrss in KB)."""
    import resource

    with open("/proc/self/statm") as f:
        current = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    return current, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10


def paddle_tensor_peak_mb() -> float:
    """The peak of the memory Paddle's CPU tensors held in this process (its own host statistic), in MB."""
    from paddle.base import core

    return core.host_memory_stat_peak_value("Allocated", 0) / 2**20


def serve(step, gemm, profiler, tensor_peak=None) -> None:
    """Answer 'warmup <steps>' / 'run <steps>' / 'gemm' / 'profile' / 'quit' on stdin with one JSON line each."""
    built_rss = rss_mb()[0]  # model + optimizer built, no step yet
    gemm()
    print(json.dumps({"ready": True, "built_rss_mb": built_rss}), flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            break
        if cmd[0] == "warmup":  # untimed training towards the steady state; the seconds of each step
            times = []
            for _ in range(int(cmd[1])):
                t0 = time.perf_counter()
                step()
                times.append(time.perf_counter() - t0)
            print(json.dumps({"step_secs": times}), flush=True)
        elif cmd[0] == "run":
            n = int(cmd[1])
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(n):
                step()
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            reply = {"sec_per_step": wall / n, "cpu_per_step": cpu / n, "peak_rss_mb": rss_mb()[1]}
            if tensor_peak is not None:
                reply["tensor_peak_mb"] = tensor_peak()
            print(json.dumps(reply), flush=True)
        elif cmd[0] == "gemm":  # this framework's fp32 GEMM on the FFN shape: best of 5, wall and CPU s per call
            best, best_cpu = float("inf"), float("inf")
            for _ in range(5):
                t0, c0 = time.perf_counter(), time.process_time()
                gemm()
                best, best_cpu = min(best, time.perf_counter() - t0), min(best_cpu, time.process_time() - c0)
            print(json.dumps({"gemm_sec": best, "gemm_cpu_sec": best_cpu}), flush=True)
        elif cmd[0] == "profile":
            print(json.dumps({"profile": profiler(step) if profiler else []}), flush=True)


def profile_step(step) -> list:
    """The operator rows (sorted by total CPU time) of Paddle's profiler summary over two steps."""
    import contextlib
    import io

    import paddle.profiler as profiler

    prof = profiler.Profiler(targets=[profiler.ProfilerTarget.CPU], on_trace_ready=lambda _: None)  # no trace files
    prof.start()
    for _ in range(2):
        step()
        prof.step()
    prof.stop()
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        prof.summary(sorted_by=profiler.SortedKeys.CPUTotal, op_detail=False, thread_sep=False, time_unit="ms")
    rows = [line.strip()[:100] for line in buf.getvalue().splitlines() if "dygraph" in line or "GradNode" in line]
    return rows[: int(os.environ.get("ERNIE_BENCH_PROFILE_ROWS", "15"))]


# ---- orchestration --------------------------------------------------------------------------------------------------
class Worker:
    def __init__(self, impl: str, config_name: str, batch: int, threads: int):
        env = dict(os.environ)
        for key in ("MKL_DEBUG_CPU_TYPE", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "FLAGS_use_stride_kernel"):
            env.pop(key, None)  # each worker starts as a plain process; threads only when --threads N asks
        if threads:
            env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        if impl == "paddlenlp":
            env["ERNIE_NO_CPU_TUNING"] = "1"
        else:
            env.pop("ERNIE_NO_CPU_TUNING", None)
        env.pop("ERNIE_NO_FLUSH_DENORMALS", None)
        if impl == "ours+noflush":
            env["ERNIE_NO_FLUSH_DENORMALS"] = "1"
        self.impl = impl
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker", impl, config_name, str(batch)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )

    def _reply(self) -> dict:
        for line in self.proc.stdout:
            line = line.strip()
            if line.startswith("{"):
                return json.loads(line)
        raise RuntimeError(f"worker {self.impl} exited (code {self.proc.wait()})")

    def wait_ready(self):
        self.built_rss_mb = self._reply()["built_rss_mb"]

    def warmup(self, steps: int) -> list:
        self.proc.stdin.write(f"warmup {steps}\n")
        self.proc.stdin.flush()
        return self._reply()["step_secs"]

    def run(self, steps: int) -> dict:
        self.proc.stdin.write(f"run {steps}\n")
        self.proc.stdin.flush()
        return self._reply()

    def gemm(self) -> dict:
        self.proc.stdin.write("gemm\n")
        self.proc.stdin.flush()
        return self._reply()

    def profile(self) -> list:
        self.proc.stdin.write("profile\n")
        self.proc.stdin.flush()
        return self._reply()["profile"]

    def close(self):
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass
        self.proc.wait(timeout=60)


def bench_config(config_name: str, batch: int, args) -> None:
    kw = model_kwargs(config_name)
    tokens = batch * SEQ_LEN
    fpt = flops_per_token(kw, SEQ_LEN, MASKED_PER_SEQ / SEQ_LEN)
    gemm_flop = 2.0 * tokens * kw["hidden_size"] * kw["intermediate_size"]
    warmup = DEFAULT_WARMUP.get(config_name, 100) if args.warmup_steps is None else args.warmup_steps
    steps = args.steps or (2 if kw["hidden_size"] <= 256 else 1)
    print(
        f"\n== {config_name}: {kw['num_hidden_layers']} layers, hidden {kw['hidden_size']}, "
        f"batch {batch} x seq {SEQ_LEN}, ~{MASKED_PER_SEQ} masked/seq; {fpt / 1e6:.1f} MFLOP/token (fwd+bwd); "
        f"People's Daily token files, AdamW lr {os.environ['ERNIE_BENCH_LR']}, {warmup} training steps per side "
        f"before the timed rounds"
    )
    workers = [Worker(impl, config_name, batch, args.threads) for impl in args.impls]
    for w in workers:  # start all, then wait: builds overlap with nothing timed
        w.wait_ready()
    first = {}
    for w in workers:  # one side at a time: the first steps are timed alone
        secs = w.warmup(warmup)
        first[w.impl] = secs
        if secs:
            print(
                f"  warm-up {w.impl:16s} steps 2-4 {sum(secs[1:4]) / len(secs[1:4] or [1]):6.2f} s/step, "
                f"last 10 {sum(secs[-10:]) / len(secs[-10:]):6.2f} s/step ({len(secs)} steps)",
                flush=True,
            )
    results = {w.impl: [] for w in workers}
    gemm = {w.impl: [] for w in workers}
    gemm_cpu = {w.impl: [] for w in workers}
    for r in range(args.rounds):
        order = workers if r % 2 == 0 else workers[::-1]
        for w in order:
            res = w.run(steps)
            results[w.impl].append(res)
            g = w.gemm()
            gemm[w.impl].append(gemm_flop / g["gemm_sec"] / 1e9)
            gemm_cpu[w.impl].append(gemm_flop / g["gemm_cpu_sec"] / 1e9)
            print(
                f"  round {r + 1} {w.impl:16s} {res['sec_per_step']:7.2f} s/step  "
                f"{tokens / res['sec_per_step']:8.0f} tokens/s  (cpu {res['cpu_per_step']:.2f} s/step; "
                f"GEMM {gemm[w.impl][-1]:.0f} GFLOP/s)",
                flush=True,
            )
    if args.profile:
        for w in workers:
            print(f"  -- top ops, {w.impl} (2 steps, ms) --")
            for row in w.profile():
                print("   ", row)
    for w in workers:
        w.close()

    best = {impl: min(x["sec_per_step"] for x in rs) for impl, rs in results.items()}
    peak = {impl: max(g) for impl, g in gemm.items()}
    print(
        f"  best of {args.rounds} rounds; GEMM peak = the framework's own fp32 GEMM "
        f"[{tokens}x{kw['hidden_size']}]x[{kw['hidden_size']}x{kw['intermediate_size']}], best in this run"
    )
    if warmup >= 4:
        print(f"  first steps (2-4 of a random init) vs the steady state (best round after {warmup} steps), s/step:")
        for impl in results:
            early = sum(first[impl][1:4]) / 3
            print(f"  {impl:16s} {early:7.2f} first  {best[impl]:7.2f} steady  ({best[impl] / early:.2f}x)")
    for impl in results:
        gf = fpt * tokens / best[impl] / 1e9
        print(
            f"  {impl:16s} {tokens / best[impl]:8.0f} tokens/s  {gf:6.1f} GFLOP/s  "
            f"{100 * gf / peak[impl]:4.1f}% of GEMM peak ({peak[impl]:.0f} GFLOP/s)"
        )
        best_cpu = min(x["cpu_per_step"] for x in results[impl])
        gf_cpu, peak_cpu = fpt * tokens / best_cpu / 1e9, max(gemm_cpu[impl])
        print(
            f"  {impl:16s} {gf_cpu:6.1f} GFLOP per CPU second, {100 * gf_cpu / peak_cpu:4.1f}% of the GEMM's "
            f"{peak_cpu:.0f} (steadier under load; exact with --threads 1)"
        )
        if args.peak_tflops:
            print(f"  {impl:16s} MFU {100 * gf / (1000 * args.peak_tflops):4.1f}% of {args.peak_tflops:g} TFLOP/s")
    print(
        f"  peak memory of the process (ru_maxrss after {warmup + args.rounds * steps} training steps), and above the "
        "built model + optimizer:"
    )
    peak_mem = {}
    for w in workers:
        peak_mem[w.impl] = max(x["peak_rss_mb"] for x in results[w.impl])
        tensors = max((x["tensor_peak_mb"] for x in results[w.impl] if "tensor_peak_mb" in x), default=None)
        print(
            f"  {w.impl:16s} {peak_mem[w.impl]:7.0f} MB peak  {peak_mem[w.impl] - w.built_rss_mb:7.0f} MB above the "
            f"built model ({w.built_rss_mb:.0f} MB)"
            + ("" if tensors is None else f"; Paddle's own tensors peaked at {tensors:.0f} MB")
        )
    if "ours" in peak_mem:
        for base in [i for i in peak_mem if i != "ours"]:
            print(f"  ours vs {base:16s} peak memory {peak_mem['ours'] / peak_mem[base]:.2f}x")
    if "ours" in results:
        for base in [i for i in results if i != "ours"]:
            per_round = [b["sec_per_step"] / o["sec_per_step"] for o, b in zip(results["ours"], results[base])]
            print(
                f"  ours vs {base:16s} {best[base] / best['ours']:.2f}x (best vs best; per round "
                f"{', '.join(f'{x:.2f}' for x in per_round)})"
            )
            cpu = min(x["cpu_per_step"] for x in results[base]) / min(x["cpu_per_step"] for x in results["ours"])
            print(
                f"  ours vs {base:16s} {cpu:.2f}x in process CPU seconds per step (best vs best; steadier under "
                f"load, exact with --threads 1)"
            )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--configs",
        default="ernie-tiny-cpu,ernie-1.0-base-zh",
        help="comma-separated configs/models names; batch from --batch_size or 16 (tiny) / 8 (base)",
    )
    p.add_argument("--batch_size", type=int, default=None)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=None, help="timed steps per worker turn (default 2 tiny / 1 base)")
    p.add_argument(
        "--warmup_steps",
        type=int,
        default=None,
        help="training steps on the token files before the timed rounds (default 100 tiny / 10 base)",
    )
    p.add_argument("--lr", type=float, default=DEFAULT_LR, help="AdamW learning rate (default 1e-3)")
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="OMP_NUM_THREADS / MKL_NUM_THREADS of every worker (default 0: none set, each framework's "
        "own default, as a plain script gets it)",
    )
    p.add_argument("--impls", default=",".join(IMPLS))
    p.add_argument("--seq_len", type=int, default=128, help="sequence length (15%% of it masked)")
    p.add_argument(
        "--amp",
        choices=("float32", "bfloat16", "float16"),
        default="float32",
        help="Paddle AMP O1 dtype for ours/paddlenlp (GPU; HF runs fp32 on the CPU torch build)",
    )
    p.add_argument(
        "--peak_tflops",
        type=float,
        default=None,
        help="the accelerator's dense peak for --amp's dtype (A100 bf16 312, H100 SXM bf16 989): prints MFU",
    )
    p.add_argument("--profile", action="store_true")
    p.add_argument(
        "--results", default=None, help="where to record the output (default docs/results/bench_model.md; '' = nowhere)"
    )
    p.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args.worker[0], args.worker[1], int(args.worker[2]))
        return 0
    args.impls = [i for i in args.impls.split(",") if i]
    os.environ["ERNIE_BENCH_SEQ_LEN"], os.environ["ERNIE_BENCH_AMP"] = str(args.seq_len), args.amp
    global SEQ_LEN, MASKED_PER_SEQ
    SEQ_LEN, MASKED_PER_SEQ = args.seq_len, math.ceil(0.15 * args.seq_len)
    from bench_report import default_path, recorded

    with recorded("bench_model", default_path("bench_model") if args.results is None else args.results):
        print(
            f"threads {args.threads or 'not set (each framework default)'}, rounds {args.rounds}, "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs at start"
        )
        for name in args.configs.split(","):
            batch = args.batch_size or DEFAULT_RUNS.get(name, 8)
            warmup = DEFAULT_WARMUP.get(name, 100) if args.warmup_steps is None else args.warmup_steps
            steps = args.steps or (2 if model_kwargs(name)["hidden_size"] <= 256 else 1)
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "batches.npz")
                write_batches(path, tmp, warmup + args.rounds * steps, batch)
                os.environ["ERNIE_BENCH_BATCHES"] = path
                os.environ["ERNIE_BENCH_LR"] = str(args.lr)
                bench_config(name, batch, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
