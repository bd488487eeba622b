"""Speed over a whole CPU pretraining run with denormals flushed (the toolkit's default, docs/cpu.md) and without
(``ERNIE_NO_FLUSH_DENORMALS=1``), and which tensors go subnormal.

    python benchmarks/bench_denormals.py                      # tiny 70 steps + ERNIE-base 10 steps, both sides
    python benchmarks/bench_denormals.py --runs tiny --repeats 2
    python benchmarks/bench_denormals.py --census --runs ''   # only the census of subnormal tensors

Results go to docs/results/bench_denormals.md (machine + commit; --results '' skips).

Each run is run_pretrain's ``main`` as ``scripts/run_pretrain.py`` runs it (its set-up first; a fresh process, no
thread variable set) on token files of the built-in People's Daily text (tests/fixtures.py: every paragraph, gold
words), one process, fp32, the CPU recipe (configs/pretrain/ernie-tiny-cpu.yaml: max_lr 1e-3, warmup 5%, cosine);
the only addition is a timer around each ``train_step`` (forward, backward, update: wall and process CPU seconds).
The two sides alternate (flush, no flush, flush ...) and each side's best run counts. Per run: the speed at step 2,
around step 10 (steps 8-12), over the last steps and over the run, in steps per wall second and per process CPU
second (all threads: steadier when other work shares the machine); whether the losses of the two sides
(train_log.jsonl) are bit-identical step for step.

The check (``--check``, on by default): with the flush on, the tiny run's speed over its last 20 steps is at least
80% of its speed around step 10, and ERNIE-base's last 5 of 10 steps at least 80% of its steps 2-3, in steps per
CPU second (a load that changes under the run moves the wall-clock figures; both are printed).

The census (``--census``): the tiny model trained in-process with the flush off (the same token files and
micro batch, AdamW at the tiny config's max_lr 1e-3, no schedule), and at some steps the share of subnormal values
(0 < |x| < 1.18e-38) in each kind of tensor: forward outputs of every sublayer and their gradients (by layer, the
layer index folded), the attention probabilities (``softmax``'s output) and their gradient, the weight gradients,
the weights and AdamW's moments. ``--census_loss_scale S`` adds a census whose backward runs on the loss times S
(whether a model-level change, gradients kept S times larger, removes the source; the toolkit does not do it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # tests.fixtures (the pretraining data made from the built-in corpus)

TINY_NORMAL = 1.1754943508222875e-38  # float32's smallest normal
# name -> (model config, micro batch, steps, reference steps, last steps): the check compares the last to the reference
RUNS = {
    "tiny": ("ernie-tiny-cpu", 16, 70, (8, 12), 20),
    "base": ("ernie-1.0-base-zh", 8, 10, (2, 3), 5),
}


def build_corpus(out_dir: str) -> tuple[str, str]:
    """vocab dir + npy token files of every People's Daily paragraph (whole words as char + ##chars)."""
    from data_tools.corpus import peoples_daily_paragraphs
    from tests.fixtures import write_peoples_daily_pretraining_data

    return write_peoples_daily_pretraining_data(out_dir, len(peoples_daily_paragraphs()))


# run_pretrain as its entry point runs it (ernie.cli.run: the set-up, then main), each train_step timed
DRIVER = r"""
import json, sys, time
from ernie.cli import BY_NAME, resolve
ep = BY_NAME["run_pretrain"]
resolve(ep.before)()
from ernie.training import trainer
real, times = trainer.train_step, []
def timed(*args, **kwargs):
    t0, c0 = time.perf_counter(), time.process_time()
    out = real(*args, **kwargs)
    times.append((time.perf_counter() - t0, time.process_time() - c0))
    return out
trainer.train_step = timed
try:
    resolve(ep.target)(sys.argv[2:])
finally:
    with open(sys.argv[1], "w") as f:
        json.dump(times, f)
"""


def pretrain_cmd(config: str, micro: int, steps: int, vocab_dir: str, data_dir: str, out: str) -> list[str]:
    return [
        sys.executable,
        "-c",
        DRIVER,
        out + ".times.json",
        "--config",
        os.path.join(REPO, "configs", "pretrain", "ernie-tiny-cpu.yaml"),  # the CPU recipe: lr 1e-3, dropout 0.1
        "--model_name_or_path",
        config,
        "--tokenizer_name_or_path",
        vocab_dir,
        "--input_dir",
        data_dir,
        "--output_dir",
        out,
        "--micro_batch_size",
        str(micro),
        "--global_batch_size",
        str(micro),
        "--max_steps",
        str(steps),
        "--logging_freq",
        "1",
        "--eval_freq",
        str(10 * steps),
        "--eval_iters",
        "0",
        "--test_iters",
        "0",
        "--checkpoint_steps",
        str(10 * steps),
        "--save_steps",
        str(10 * steps),
    ]


def run_once(cmd: list[str], out: str, flush: bool) -> tuple[dict[int, dict], list]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env.pop("ERNIE_NO_FLUSH_DENORMALS", None)
    if not flush:
        env["ERNIE_NO_FLUSH_DENORMALS"] = "1"
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"run_pretrain failed:\n{proc.stderr[-3000:]}")
    with open(os.path.join(out, "train_log.jsonl"), encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    with open(out + ".times.json", encoding="utf-8") as f:
        times = json.load(f)
    return {r["step"]: r for r in records if r["event"] == "train"}, times


def speed(times: list, first: int, last: int, cpu: bool = False) -> float:
    """Steps per (wall or process CPU) second over steps first..last (1-based)."""
    chosen = times[first - 1 : last]
    return len(chosen) / sum(t[1 if cpu else 0] for t in chosen)


def bench_run(name: str, args, vocab_dir: str, data_dir: str, tmp: str) -> bool:
    config, micro, steps, (r0, r1), last = RUNS[name]
    steps = args.steps or steps
    best: dict[bool, tuple[float, dict, list]] = {}
    for r in range(args.repeats):
        for flush in (True, False) if r % 2 == 0 else (False, True):
            out = os.path.join(tmp, f"{name}-{int(flush)}-{r}")
            log, times = run_once(pretrain_cmd(config, micro, steps, vocab_dir, data_dir, out), out, flush)
            total = speed(times, 2, steps)
            if flush not in best or total > best[flush][0]:
                best[flush] = (total, log, times)
            print(
                f"  run {r + 1} {'flush' if flush else 'no flush':9s} {total:5.2f} steps/s, "
                f"{speed(times, 2, steps, cpu=True):5.2f} steps per CPU second over steps 2-{steps} "
                f"(load average {os.getloadavg()[0]:.1f})",
                flush=True,
            )
    print(
        f"\n== {name}: {config}, micro batch {micro} x seq 128, {steps} steps, 1 process; "
        f"best of {args.repeats} runs per side"
    )
    print(f"  {'':34}{'step 2':>8}{f'steps {r0}-{r1}':>12}{f'last {last}':>9}{'last/ref':>10}{'whole run':>11}")
    rows = {}
    for flush in (True, False):
        times = best[flush][2]
        for cpu in (False, True):
            row = tuple(speed(times, a, b, cpu) for a, b in ((2, 2), (r0, r1), (steps - last + 1, steps), (2, steps)))
            rows[flush, cpu] = row
            label = ("flush (default)" if flush else "no flush") + (", per CPU s" if cpu else ", steps/s")
            print(f"  {label:34}{row[0]:8.2f}{row[1]:12.2f}{row[2]:9.2f}{row[2] / row[1]:10.2f}{row[3]:11.2f}")
    on, off = best[True][1], best[False][1]
    same = all(on[s]["loss"] == off[s]["loss"] for s in on)
    diff = max(abs(on[s]["loss"] - off[s]["loss"]) for s in on)
    print(
        f"  flush / no flush: {rows[True, False][2] / rows[False, False][2]:.2f}x over the last {last} steps, "
        f"{rows[True, False][3] / rows[False, False][3]:.2f}x over the run (wall); losses "
        + ("bit-identical at every step" if same else f"differ (max |diff| {diff:.3g})")
        + f"; final loss {on[steps]['loss']:.4f}"
    )
    ratio = rows[True, True][2] / rows[True, True][1]
    ok = ratio >= 0.8
    if args.check:
        print(
            f"  check: with the flush, the last {last} steps run at {ratio:.0%} of steps {r0}-{r1}'s speed per CPU "
            f"second (>= 80%): {'ok' if ok else 'FAIL'}; without it {rows[False, True][2] / rows[False, True][1]:.0%}"
        )
    return ok or not args.check


# ---- census -------------------------------------------------------------------------------------------------------
CENSUS_WORKER = r"""
import json, os, re, sys
import numpy as np
import paddle
import paddle.nn.functional as F
from data_tools.batching import collate
from data_tools.ernie_dataset import ErnieDatasetConfig, build_train_valid_test_datasets
from ernie import ErnieConfig, ErnieForPretraining, ErniePretrainingCriterion, ErnieTokenizer
from ernie.utils import cpu_tuning

TINY = 1.1754943508222875e-38
vocab_dir, data_dir, steps, at = sys.argv[1], sys.argv[2], int(sys.argv[3]), set(map(int, sys.argv[4].split(",")))
scale = float(sys.argv[5])  # the backward runs on loss * scale (a model-level change that is tried, not made)
micro = 16
tok = ErnieTokenizer.from_pretrained(vocab_dir)
train = build_train_valid_test_datasets(data_dir, tok, ErnieDatasetConfig(max_seq_len=128, seed=1234),
                                        (steps * micro, 0, 0))[0]
config = ErnieConfig.from_pretrained("ernie-tiny-cpu", vocab_size=tok.vocab_size)
paddle.seed(1234)
model = ErnieForPretraining(config)
assert cpu_tuning.mxcsr() & 0x8040 == 0, "the census needs the flush off"
criterion = ErniePretrainingCriterion()
opt = paddle.optimizer.AdamW(1e-3, parameters=model.parameters(), weight_decay=0.01,
                             grad_clip=paddle.nn.ClipGradByGlobalNorm(1.0))
counts = {}
active = [False]

def count(kind, name, t):
    if t is None or not active[0] or t.dtype != paddle.float32:
        return
    a = np.abs(t.numpy())
    c = counts.setdefault(kind, {}).setdefault(name, [0, 0])
    c[0] += int(((a > 0) & (a < TINY)).sum())
    c[1] += a.size

def watch(kind, name, out):
    if isinstance(out, (tuple, list)):
        for i, o in enumerate(out):
            watch(kind, f"{name}[{i}]", o)
        return
    if not isinstance(out, paddle.Tensor):
        return
    count(kind, name, out)
    if not out.stop_gradient:
        out.register_hook(lambda g: count(kind + " grad", name, g))

for name, layer in model.named_sublayers():
    folded = re.sub(r"\.\d+\.", ".*.", name)
    layer.register_forward_post_hook(lambda l, i, o, n=folded: watch("output", n, o))
softmax = F.softmax
def counted_softmax(x, *a, **k):
    out = softmax(x, *a, **k)
    watch("attention probabilities", "softmax", out)
    return out
F.softmax = counted_softmax
t = lambda v: paddle.to_tensor(v)
for step in range(1, steps + 1):
    b = collate([train[i] for i in range((step - 1) * micro, step * micro)])
    active[0] = step in at
    counts = {}
    scores, sop = model(t(b["input_ids"]), t(b["segment_ids"]), attention_mask=t(b["input_mask"]),
                        masked_positions=t(b["masked_lm_positions"]))
    loss = criterion(scores, sop, t(b["masked_lm_labels"]), t(b["next_sentence_labels"]))[0]
    (loss * scale if scale != 1 else loss).backward()
    if active[0]:
        for n, p in model.named_parameters():
            count("weight grad", re.sub(r"\.\d+\.", ".*.", n), p.grad)
    opt.step()
    opt.clear_grad(set_to_zero=False)
    if active[0]:
        for n, p in dict(model.named_parameters()).items():
            count("weight", re.sub(r"\.\d+\.", ".*.", n), p)
        by_param = {p.name: re.sub(r"\.\d+\.", ".*.", n) for n, p in model.named_parameters()}
        for acc, per in opt._accumulators.items():
            for pname, tensor in per.items():
                if "moment" in acc:
                    count("AdamW " + acc.split("_")[0], by_param.get(pname, pname), tensor)
        print("CENSUS " + json.dumps({"step": step, "loss": float(loss), "counts": counts}), flush=True)
"""


def census(args, vocab_dir: str, data_dir: str, scale: float = 1.0) -> None:
    at = args.census_steps
    steps = max(int(s) for s in at.split(","))
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["ERNIE_NO_FLUSH_DENORMALS"] = "1"
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-c", CENSUS_WORKER, vocab_dir, data_dir, str(steps), at, str(scale)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        sys.exit(f"census failed:\n{proc.stderr[-3000:]}")
    reports = [json.loads(line[len("CENSUS ") :]) for line in proc.stdout.splitlines() if line.startswith("CENSUS ")]
    print(
        "\n== census: tiny (ernie-tiny-cpu), micro batch 16 x seq 128, flush off, AdamW lr 1e-3"
        + (f", backward of loss x {scale:g} (AdamW with clipping: nearly the same updates)" if scale != 1 else "")
        + "; share of subnormal values (0 < |x| < 1.18e-38) per tensor kind, then the tensors holding most of them"
    )
    kinds = sorted({k for r in reports for k in r["counts"]})
    print(f"  {'kind':34}" + "".join(f"{'step ' + str(r['step']):>14}" for r in reports))
    for kind in kinds:
        cells = []
        for r in reports:
            sub, total = (sum(v[i] for v in r["counts"].get(kind, {}).values()) for i in (0, 1))
            cells.append(f"{sub:>7d} {100 * sub / max(total, 1):5.2f}%")
        print(f"  {kind:34}" + "".join(f"{c:>14}" for c in cells))
    last = reports[-1]
    rows = [(v[0], kind, name, v[0] / max(v[1], 1)) for kind, per in last["counts"].items() for name, v in per.items()]
    rows.sort(reverse=True)
    print(f"  at step {last['step']} (loss {last['loss']:.3f}), the tensors with the most subnormal values:")
    for sub, kind, name, share in rows[: args.census_rows]:
        if sub:
            print(f"    {sub:9d} ({100 * share:6.3f}%)  {kind:26} {name}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", default="tiny,base", help="comma-separated: tiny (70 steps), base (10 steps); '' none")
    p.add_argument("--steps", type=int, default=None, help="steps of every run (default 70 tiny / 10 base)")
    p.add_argument("--repeats", type=int, default=1, help="runs per side, alternating; the best one counts")
    p.add_argument("--check", action=argparse.BooleanOptionalAction, default=True, help="exit 1 when a check fails")
    p.add_argument("--census", action="store_true", help="also count subnormal values per tensor (flush off)")
    p.add_argument("--census_steps", default="1,10,30,60")
    p.add_argument("--census_rows", type=int, default=15)
    p.add_argument(
        "--census_loss_scale",
        type=float,
        default=None,
        help="a second census whose backward runs on the loss times this (does scaling remove the source?)",
    )
    p.add_argument(
        "--results", default=None, help="where to record the output (default docs/results/bench_denormals.md)"
    )
    args = p.parse_args(argv)
    from bench_report import default_path, recorded  # benchmarks/ is on sys.path

    ok = True
    with recorded("bench_denormals", default_path("bench_denormals") if args.results is None else args.results):
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs at start")
        with tempfile.TemporaryDirectory() as tmp:
            vocab_dir, data_dir = build_corpus(tmp)
            for name in [r for r in args.runs.split(",") if r]:
                ok = bench_run(name, args, vocab_dir, data_dir, tmp) and ok
            if args.census:
                census(args, vocab_dir, data_dir)
                if args.census_loss_scale:
                    census(args, vocab_dir, data_dir, args.census_loss_scale)
        print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
