"""GPU self-check: the first command a GPU user runs (``scripts/gpu_selfcheck.py``, console script
``ernie-gpu-selfcheck``), a few minutes that prove the training paths of this toolkit on their machine.

For a small ERNIE and ERNIE-base (``--models``; the CPU dry run: the small one), on fixed synthetic padded batches
and from the same initial weights (dropout off, so runs are comparable), each case trains ``--steps`` optimizer steps
through the training engine's own loop (``ernie.training.engine.Engine.fit`` with pretraining's forward and
optimizer, ``Engine.save`` / ``checkpoint.read_checkpoint``):

    fp32, fp16 O1, fp16 O2, bf16 O2 (where the GPU has bf16)   each with and without --use_recompute
    --attention sdpa / flash (opt-in kernels)                   fp32 and fp16 O2 / bf16 O2
    resume: k steps, checkpoint, fresh process state, k steps   against 2k uninterrupted steps
    accumulation: 2 micro batches a step, each precision        against the fp32 run of the same micro batches
    dropout 0.1 with recompute                                  against dropout 0.1 without (the RNG replayed)
    fp16 O2 with a loss scale that overflows                    every update skipped and the LR schedule held

and, with 2+ GPUs, under ``python -m paddle.distributed.launch`` (started by this script) the data-parallel cases:
fp32 / O2 with and without recompute (with it: the ``no_sync`` + explicit all-reduce route) and resume. Every step's
loss is compared with the fp32 run of the same model (the same number of ranks): relative difference at most 1e-4
for fp32 variants (recompute, kernels), 2e-2 for float16 and 5e-2 for bfloat16 (8-bit mantissa); resume must
reproduce the uninterrupted losses exactly on CPU and to 1e-6 relative on GPU (deterministic embedding/cuDNN flags
are set). The table lists, per case, the kernels the run logged, the last loss and its largest relative difference,
tokens/s (non-pad tokens, steps after the first) and peak GPU memory.

Exit status: 0 when every case passed; 1 when any failed (its row says why); 0 with one line when no GPU is visible to
Paddle (nothing to check: a CPU-only CI stays green; ``--device cpu`` runs the fp32 cases on the CPU instead, a dry
run of everything but the GPU kernels); 2 for bad flags.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from ernie.configuration import ErnieConfig
from ernie.training.args import DataArgs, LoggingArgs, ModelArgs, OptimizerArgs, PretrainArgs, TrainingArgs
from ernie.training.distributed import (
    all_gather_object,
    configure_threads,
    die_with_launcher,
    init_distributed,
)
from ernie.utils import ArgumentParser, UserError, cli_main
from ernie.utils.cpu_tuning import tune_cpu_math

TOLERANCE = {"fp32": 1e-4, "fp16": 2e-2, "bf16": 5e-2}
RESUME_TOLERANCE = {"cpu": 0.0, "gpu": 1e-6}  # exact on CPU; on GPU, with deterministic embedding/cuDNN flags
PRECISIONS = {  # name -> (use_amp, amp_dtype, fp16_opt_level)
    "fp32": (False, "float16", "O2"),
    "fp16-O1": (True, "float16", "O1"),
    "fp16-O2": (True, "float16", "O2"),
    "bf16-O2": (True, "bfloat16", "O2"),
}
MODELS: dict[str, dict[str, Any]] = {
    "small": dict(
        vocab_size=4096,
        hidden_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=1024,
        max_position_embeddings=512,
    ),
    "base": dict(
        vocab_size=18000,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        max_position_embeddings=513,
        hidden_act="relu",
    ),  # ernie-1.0-base-zh
}


@dataclass(frozen=True)
class Case:
    model: str
    precision: str = "fp32"
    recompute: bool = False
    attention: str = "eager"
    resume: bool = False
    accumulate: int = 1  # micro batches per optimizer step (each micro_batch / accumulate sequences)
    dropout: float = 0.0  # hidden and attention dropout (> 0: recompute must replay the RNG)
    overflow: bool = False  # float16 with a loss scale that overflows: every update skipped, the LR held

    @property
    def name(self) -> str:
        parts = [self.precision] + (["recompute"] if self.recompute else [])
        parts += [f"attn={self.attention}"] if self.attention != "eager" else []
        parts += [f"acc={self.accumulate}"] if self.accumulate > 1 else []
        parts += [f"dropout={self.dropout:g}"] if self.dropout else []
        parts += ["forced overflow"] if self.overflow else []
        return " ".join(parts + (["resume"] if self.resume else []))

    @property
    def reference_key(self) -> tuple:
        """The runs whose losses are compared: same model, accumulation and dropout."""
        return (self.model, self.accumulate, self.dropout)

    @property
    def is_reference(self) -> bool:
        return (
            self.precision == "fp32"
            and not self.recompute
            and self.attention == "eager"
            and not self.resume
            and not self.overflow
        )

    @property
    def family(self) -> str:
        return self.precision.split("-")[0]


@dataclass
class Result:
    case: Case
    ranks: int
    losses: list = field(default_factory=list)
    kernels: list = field(default_factory=list)
    tokens_per_s: float = float("nan")
    peak_mb: float = float("nan")
    diff: float = float("nan")  # max relative loss difference against the reference
    tolerance: float = float("nan")
    error: str = ""
    skipped: int = 0  # float16 steps the loss scaler skipped (overflow)

    @property
    def ok(self) -> bool:
        return not self.error and (not np.isfinite(self.tolerance) or self.diff <= self.tolerance)


# ------------------------------------------------------------------------------------------------ the runs


def synthetic_args(case: Case, device: str, micro_batch: int, seq_len: int, steps: int, output_dir: str):
    """PretrainArgs of the trainer for one case (nothing read from disk; the data section is not used)."""
    use_amp, amp_dtype, level = PRECISIONS[case.precision]
    return PretrainArgs(
        model=ModelArgs(
            model_name_or_path="selfcheck",
            use_recompute=case.recompute,
            attention=case.attention,
            hidden_dropout_prob=case.dropout,
            attention_probs_dropout_prob=case.dropout,
        ),
        data=DataArgs(input_dir="selfcheck", max_seq_len=seq_len),
        optimizer=OptimizerArgs(max_lr=5e-4, min_lr=5e-5, warmup_rate=0.0, decay_steps=steps * 10),
        training=TrainingArgs(
            output_dir=output_dir,
            device=device,
            micro_batch_size=micro_batch,
            max_steps=steps,
            use_amp=use_amp,
            amp_dtype=amp_dtype,
            fp16_opt_level=level,
            scale_loss=2.0**40 if case.overflow else 32768.0,  # 2^40: every float16 gradient overflows
        ),
        logging=LoggingArgs(),
    )


def synthetic_batches(vocab_size: int, batch: int, seq_len: int, count: int, seed: int = 0) -> list[dict]:
    """``count`` padded pretraining batches (the layout of data_tools.batching.collate) as numpy arrays: lengths
    from S/4 to S, 15 % of the real tokens masked, padded masked positions (label -1)."""
    rs = np.random.RandomState(seed)
    out = []
    for _ in range(count):
        lengths = rs.randint(seq_len // 4, seq_len + 1, batch)
        lengths[0] = seq_len
        ids = rs.randint(5, vocab_size, (batch, seq_len)).astype(np.int64)
        keep = np.arange(seq_len)[None] < lengths[:, None]
        ids[~keep] = 0
        segs = ((np.arange(seq_len)[None] >= (lengths // 2)[:, None]) & keep).astype(np.int64)
        flat: list[int] = []
        labels: list[int] = []
        for row, n in enumerate(lengths):
            pos = np.sort(rs.choice(np.arange(1, n), max(1, int(0.15 * n)), replace=False))
            flat.extend(row * seq_len + pos)
            labels.extend(ids[row, pos])
            ids[row, pos] = 3  # [MASK]-like id
        total = -(-len(flat) // 8) * 8
        positions = np.zeros(total, np.int64)
        positions[: len(flat)] = flat
        mlm = np.full(total, -1, np.int64)
        mlm[: len(labels)] = labels
        out.append(
            {
                "input_ids": ids,
                "segment_ids": segs,
                "input_mask": keep.astype(np.int64),
                "masked_lm_positions": positions,
                "masked_lm_labels": mlm,
                "next_sentence_labels": rs.randint(0, 2, batch).astype(np.int64),
            }
        )
    return out


def shard(batch: dict, rank: int, world_size: int) -> dict:
    """This rank's rows of a global batch (masked positions re-based to the shard)."""
    B, S = batch["input_ids"].shape
    rows = B // world_size
    lo, hi = rank * rows, (rank + 1) * rows
    out = {k: batch[k][lo:hi] for k in ("input_ids", "segment_ids", "input_mask", "next_sentence_labels")}
    pos, lab = batch["masked_lm_positions"], batch["masked_lm_labels"]
    mine = (lab != -1) & (pos // S >= lo) & (pos // S < hi)
    flat, labels = pos[mine] - lo * S, lab[mine]
    total = -(-max(len(flat), 1) // 8) * 8
    out["masked_lm_positions"] = np.zeros(total, np.int64)
    out["masked_lm_positions"][: len(flat)] = flat
    out["masked_lm_labels"] = np.full(total, -1, np.int64)
    out["masked_lm_labels"][: len(labels)] = labels
    return out


class Runner:
    """Runs cases on this process's device (one rank of ``world_size`` under a launch)."""

    def __init__(self, device: str, micro_batch: int, seq_len: int, steps: int, env):
        self.device, self.micro_batch, self.seq_len, self.steps, self.env = device, micro_batch, seq_len, steps, env
        self.init_states: dict[str, dict] = {}
        self.skipped, self.lr_steps = 0, -1
        # one path for every rank (rank 0's); the first rank of each machine writes the resume checkpoint there
        self.tmp = all_gather_object(
            tempfile.mkdtemp(prefix="ernie_selfcheck_") if env.rank == 0 else None, env.world_size
        )[0]
        os.makedirs(self.tmp, exist_ok=True)

    def config(self, case: Case):
        return ErnieConfig(
            **MODELS[case.model],
            hidden_dropout_prob=case.dropout,
            attention_probs_dropout_prob=case.dropout,
            use_recompute=case.recompute,
            attention=case.attention,
        )

    def new_model(self, case: Case):
        import paddle

        from ernie.modeling import ErnieForPretraining  # delays Paddle: configure_threads (main) must run first

        paddle.seed(1234)
        model = ErnieForPretraining(self.config(case))
        if case.model not in self.init_states:  # every case of a model starts from the same weights
            self.init_states[case.model] = {k: v.numpy() for k, v in model.state_dict().items()}
        else:
            model.load_weights(self.init_states[case.model], source="selfcheck initial weights")
        model.train()
        return model

    def batches(self, case: Case, count: int) -> list[list[dict]]:
        """``count`` steps, each ``case.accumulate`` micro batches of ``micro_batch / accumulate`` sequences (this
        rank's share)."""
        import paddle

        world, acc = self.env.world_size, case.accumulate
        micro = max(1, self.micro_batch // acc)
        data = synthetic_batches(MODELS[case.model]["vocab_size"], micro * world, self.seq_len, count * acc)
        tensors = [{k: paddle.to_tensor(v) for k, v in shard(b, self.env.rank, world).items()} for b in data]
        return [tensors[i * acc : (i + 1) * acc] for i in range(count)]

    def train(self, case: Case, batches: list[list[dict]], resume_at: int | None = None) -> tuple[list, float, float]:
        """Losses (mean over ranks) of len(batches) steps through the training engine's own loop
        (``Engine.fit`` over a recipe of these batches); with ``resume_at``, the engine saves a checkpoint after that
        many steps and a fresh engine (new model, optimizer and scaler) resumes from it (``read_checkpoint``)."""
        import paddle

        # delays Paddle (these import it): configure_threads (main) must set the math threads first
        from ernie.modeling import ErniePretrainingCriterion
        from ernie.training import checkpoint as ckpt
        from ernie.training import trainer
        from ernie.training.engine import Engine, Recipe

        args = synthetic_args(case, self.device, self.micro_batch, self.seq_len, len(batches), self.tmp)
        env, runner = self.env, self
        criterion = ErniePretrainingCriterion()
        on_gpu = self.device == "gpu"
        real_tokens = [sum(int(b["input_mask"].numpy().sum()) for b in step) for step in batches]

        class Fixed(Recipe):
            """The case's batches, one optimizer step each; every step's loss (mean over ranks) is recorded."""

            value_names = ("loss", "lm_loss", "sop_loss")

            def __init__(self):
                self.losses: list[float] = []
                self.skipped = 0
                self.start: float | None = None
                self.tokens = 0
                self.engine: Engine | None = None

            def next_step(self, state):
                i = state.global_step
                if i == 1:
                    if on_gpu:
                        paddle.device.synchronize()
                    self.start = time.time()
                if i >= 1:
                    self.tokens += real_tokens[i] * env.world_size
                return [(b, Fraction(1, len(batches[i]))) for b in batches[i]]

            def loss(self, model, batch):
                return trainer.forward(model, criterion, batch)

            def log_train(self, state, values, lr, steps_done, elapsed):
                self.losses.append(values["loss"])
                assert self.engine is not None and self.engine.last_step is not None
                self.skipped += int(not self.engine.last_step.ran)

            def resume_checkpoint(self, state):
                return os.path.join(runner.tmp, f"resume_{case.model}_{case.precision}")

            def args_dict(self):
                return args.to_dict()

        names = contextlib.ExitStack()

        def build(load_from: str | None, max_steps: int) -> Engine:
            # parameter and optimizer-accumulator names (the keys of the optimizer state) restart as in a new
            # process: each segment of training runs in a fresh unique-name scope
            names.close()
            names.enter_context(paddle.utils.unique_name.guard())
            config = dataclasses.replace(trainer.engine_config(args), max_steps=max_steps, logging_steps=1)
            resume = ckpt.read_checkpoint(load_from) if load_from else None
            return Engine(
                config, env, self.new_model(case), lambda m, mp: trainer.build_optimizer(args, m, mp), resume=resume
            )

        paddle.seed(99)
        recipe = Fixed()
        state = ckpt.TrainerState(world_size=env.world_size)
        if on_gpu:
            paddle.device.synchronize()
            paddle.device.cuda.reset_max_memory_allocated()
        first = resume_at if resume_at is not None else len(batches)
        recipe.engine = build(None, first)
        state = recipe.engine.fit(recipe, state)
        if resume_at is not None:
            path = recipe.resume_checkpoint(state)
            recipe.engine.save(path, recipe, state)
            recipe.engine = None
            paddle.seed(12345)  # a different state: everything must come from the checkpoint
            recipe.engine = build(path, len(batches))
            state = recipe.engine.fit(recipe, ckpt.read_trainer_state(path))
        names.close()
        if on_gpu:
            paddle.device.synchronize()
        elapsed = time.time() - recipe.start if recipe.start is not None else float("nan")
        peak = paddle.device.cuda.max_memory_allocated() / 2**20 if on_gpu else float("nan")
        self.skipped = recipe.skipped
        self.lr_steps = recipe.engine.scheduler.last_epoch if recipe.engine is not None else -1
        return recipe.losses, recipe.tokens / elapsed if elapsed and elapsed > 0 else float("nan"), peak

    def run(self, case: Case, reference: list | None) -> Result:
        from ernie import ops  # delays Paddle: configure_threads (main) must run first

        result = Result(case, self.env.world_size)
        ops._LOGGED.clear()  # log (and record) this case's kernel choices afresh
        ops._ATTN_CACHE.clear()
        first = len(ops.KERNEL_LOG)
        try:
            batches = self.batches(case, self.steps if not case.resume else 2 * (self.steps // 2))
            if case.resume:
                reference, _, _ = self.train(case, batches)
                result.losses, result.tokens_per_s, result.peak_mb = self.train(case, batches, len(batches) // 2)
                result.tolerance = RESUME_TOLERANCE[self.device]
            else:
                result.losses, result.tokens_per_s, result.peak_mb = self.train(case, batches)
                result.skipped = self.skipped
                result.tolerance = TOLERANCE[case.family] if reference is not None else float("nan")
            if case.overflow:  # every update skipped by the scaler, and the LR schedule held on each of them
                reference, result.tolerance = None, float("nan")
                if result.skipped != len(batches) or self.lr_steps != 0:
                    result.error = (
                        f"{result.skipped} of {len(batches)} steps skipped, LR schedule at step {self.lr_steps}"
                    )
            if result.error:  # the overflow check failed: its reason is the row's error
                pass
            elif not all(np.isfinite(result.losses)):
                result.error = "non-finite loss"
            elif reference is not None:
                got, ref = np.array(result.losses), np.array(reference)
                result.diff = float(np.max(np.abs(got - ref) / np.abs(ref)))
        except Exception as e:  # noqa: BLE001 - a failing case is a row of the table, the others still run
            message = str(e).strip().splitlines()
            result.error = f"{type(e).__name__}: {message[-1][:160] if message else ''}"
        result.kernels = [short_kernel(line) for line in ops.KERNEL_LOG[first:]]
        return result


def short_kernel(line: str) -> str:
    """A kernel log line of ernie.ops for the table: "attn flash_attn", "LN plain ops", or the refusal."""
    what = line.split(": ", 1)[-1]
    if "not possible" in what:
        return what
    return ("attn " if "attention" in line else "LN ") + what.split(" (")[0]


def plan(models: list[str], device: str, world_size: int) -> list[Case]:
    """The cases, each model's fp32 run first (the reference of the others)."""
    import paddle

    if device == "cpu":  # dry run: fp32 only (Paddle has no AMP on CPU)
        precisions = ["fp32"]
    else:
        bf16 = paddle.amp.is_bfloat16_supported() if hasattr(paddle.amp, "is_bfloat16_supported") else True
        precisions = ["fp32", "fp16-O1", "fp16-O2"] + (["bf16-O2"] if bf16 else [])
    low = [p for p in precisions if p.endswith("O2")]
    cases = []
    for model in models:
        if world_size > 1:  # data parallel: the reducer route and the no_sync + all-reduce route (recompute)
            cases += [Case(model, p, rc) for p in ["fp32"] + low for rc in (False, True)]
            cases += [Case(model, "fp32", resume=True)] if model == models[0] else []
            continue
        cases += [Case(model, p, rc) for p in precisions for rc in (False, True)]
        cases += [Case(model, "fp32", attention="sdpa")] + [
            Case(model, p, attention=a) for p in low for a in ("sdpa", "flash")
        ]
        if model == models[0]:
            cases += [Case(model, p, resume=True) for p in precisions]
            # accumulation (each precision against the fp32 run of the same micro batches), dropout with recompute
            # (the RNG replayed in backward: the same losses), and a forced float16 overflow (LR held)
            cases += [Case(model, p, accumulate=2) for p in precisions]
            cases += [Case(model, "fp32", dropout=0.1), Case(model, "fp32", recompute=True, dropout=0.1)]
            cases += [Case(model, "fp16-O2", overflow=True)] if "fp16-O2" in precisions else []
    return cases


def run_cases(cases: list[Case], runner: Runner) -> list[Result]:
    results: list[Result] = []
    references: dict[tuple, list | None] = {}
    for case in cases:
        ref = None if case.is_reference else references.get(case.reference_key)
        result = runner.run(case, ref)
        if case.is_reference:
            references[case.reference_key] = result.losses if not result.error else None
        results.append(result)
    return results


# ------------------------------------------------------------------------------------------------ the report


def table(results: list[Result]) -> str:
    head = ["model", "ranks", "case", "kernels", "last loss", "max rel diff", "tol", "tokens/s", "peak MB", "status"]
    rows = []
    for r in results:
        kernels = "; ".join(r.kernels) or "-"
        name = r.case.name + (f" ({r.skipped} steps skipped by the scaler)" if r.skipped else "")
        rows.append(
            [
                r.case.model,
                str(r.ranks),
                name,
                kernels,
                f"{r.losses[-1]:.5f}" if r.losses else "-",
                "ref"
                if not np.isfinite(r.tolerance) and not r.error
                else ("-" if not np.isfinite(r.diff) else f"{r.diff:.2e}"),
                "-" if not np.isfinite(r.tolerance) else f"{r.tolerance:.0e}",
                "-" if not np.isfinite(r.tokens_per_s) else f"{r.tokens_per_s:,.0f}",
                "-" if not np.isfinite(r.peak_mb) else f"{r.peak_mb:,.0f}",
                "ok" if r.ok else ("FAIL: " + (r.error or "loss differs beyond tolerance")),
            ]
        )
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(head)]
    line = lambda cells: " | ".join(c.ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(head), "-+-".join("-" * w for w in widths)] + [line(row) for row in rows])


def to_json(results: list[Result]) -> list[dict]:
    return [{**dataclasses.asdict(r), "case": dataclasses.asdict(r.case)} for r in results]


def from_json(rows: list[dict]) -> list[Result]:
    return [Result(**{**row, "case": Case(**row["case"])}) for row in rows]


def gpu_count() -> int:
    import paddle

    if not paddle.is_compiled_with_cuda():
        return 0
    try:
        return paddle.device.cuda.device_count()
    except Exception:  # noqa: BLE001 - a CUDA build without a driver
        return 0


def launch_data_parallel(args, gpus: int) -> list[Result]:
    """Run this module under ``python -m paddle.distributed.launch`` on ``gpus`` GPUs; its rows (rank 0 writes
    them to a JSON file)."""
    out = tempfile.mkdtemp(prefix="ernie_selfcheck_dp_")
    rows = os.path.join(out, "rows.json")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    cmd = [
        sys.executable,
        "-m",
        "paddle.distributed.launch",
        "--devices",
        ",".join(map(str, range(gpus))),
        "--log_dir",
        os.path.join(out, "log"),
        os.path.abspath(__file__),
        "--models",
        args.models,
        "--steps",
        str(args.steps),
        "--micro_batch",
        str(args.micro_batch),
        "--seq_len",
        str(args.seq_len),
        "--rows_json",
        rows,
    ]
    try:  # a rank that fails leaves the others waiting in a collective: bounded here
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return [Result(Case(args.models.split(",")[0]), gpus, error=f"launch timed out after 300 s (logs: {out}/log)")]
    if proc.returncode != 0 or not os.path.isfile(rows):
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        failed = Result(
            Case(args.models.split(",")[0]),
            gpus,
            error=f"launch failed ({proc.returncode}): {tail[0]} (logs: {out}/log)",
        )
        return [failed]
    with open(rows, encoding="utf-8") as f:
        return from_json(json.load(f))


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(allow_abbrev=False, prog="gpu_selfcheck.py", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--device",
        default="gpu",
        choices=["gpu", "cpu"],
        help="gpu (default); cpu: the fp32 cases on the CPU, a dry run of everything but the GPU kernels",
    )
    p.add_argument("--models", help="comma-separated: small, base (default: both on GPU, small on CPU)")
    p.add_argument("--steps", type=int, default=6, help="optimizer steps per case (default 6)")
    p.add_argument("--micro_batch", type=int, default=8, help="sequences per GPU per step (default 8)")
    p.add_argument("--seq_len", type=int, default=128, help="padded sequence length (default 128)")
    p.add_argument("--rows_json", help=argparse.SUPPRESS)  # set by the data-parallel launch
    return p


def check_flags(args) -> list[str]:
    if args.models is None:
        args.models = "small,base" if args.device == "gpu" else "small"
    models = [m for m in args.models.split(",") if m]
    unknown = [m for m in models if m not in MODELS]
    if not models or unknown:
        raise UserError(f"--models: {','.join(unknown) or 'empty'}: choose from {', '.join(MODELS)}")
    if args.steps < 2:
        raise UserError("--steps: must be >= 2 (resume splits the steps, tokens/s skips the first)")
    if args.micro_batch < 1 or args.seq_len < 16:
        raise UserError("--micro_batch must be >= 1 and --seq_len >= 16")
    return models


@cli_main
def main(argv: list[str] | None = None) -> int:
    """The self-check; returns the exit status (bad flags: one error line and exit 2, via cli_main)."""
    args = build_parser().parse_args(argv)
    models = check_flags(args)
    configure_threads()
    die_with_launcher()  # a rank of the data-parallel launch ends with its launcher (timeout, Ctrl-C)
    logging.getLogger("ernie.ops").setLevel(logging.WARNING)  # the kernel lines go into the table instead
    gpus = gpu_count() if args.device == "gpu" else 0
    if args.device == "gpu" and gpus == 0:
        print(
            "gpu_selfcheck: no GPU visible to Paddle (CPU build or no CUDA device): nothing to check "
            "(exit 0; --device cpu runs the fp32 dry run on the CPU)"
        )
        return 0
    import paddle

    tune_cpu_math(args.device)
    if args.device == "gpu":
        with contextlib.suppress(Exception):  # deterministic embedding/cuDNN backward: resume is compared exactly
            paddle.set_flags({"FLAGS_embedding_deterministic": 1, "FLAGS_cudnn_deterministic": True})
    env = init_distributed(args.device)
    runner = Runner(args.device, args.micro_batch, args.seq_len, args.steps, env)
    started = time.time()
    results = run_cases(plan(models, args.device, env.world_size), runner)
    if args.rows_json:  # a rank of the data-parallel launch: rank 0 hands the rows back
        if env.rank == 0:
            with open(args.rows_json, "w", encoding="utf-8") as f:
                json.dump(to_json(results), f)
        return 0 if all(r.ok for r in results) else 1
    if args.device == "gpu" and gpus >= 2:
        results += launch_data_parallel(args, gpus)
    gpu = paddle.device.cuda.get_device_name() if args.device == "gpu" else "cpu"
    print(
        f"ERNIE GPU self-check: paddle {paddle.__version__}, {gpu}, {gpus or 1} device(s), {args.steps} steps of "
        f"{args.micro_batch} x {args.seq_len} per device, {time.time() - started:.0f} s"
    )
    print(table(results))
    failed = [r for r in results if not r.ok]
    print(
        f"{len(results) - len(failed)} of {len(results)} cases passed"
        + (f"; FAILED: {', '.join(r.case.model + ' ' + r.case.name for r in failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":  # run as a file by the data-parallel launch
    sys.exit(main())
