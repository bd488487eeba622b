"""The one training engine of pretraining and of every fine-tuning task (docs/design.md, "Training engine").

    engine = Engine(EngineConfig(...), env, model, make_optimizer, resume=read_checkpoint(path) or None)
    state = engine.fit(recipe, state)

What the engine owns, for every run alike:

* **the step** (:meth:`Engine.step`): the micro batches of one optimizer step (gradient accumulation, each micro
  batch's loss weighted by its share of the step), under autocast when AMP is on (float16 with a dynamic loss scaler
  on accelerators, bfloat16; O1, or O2 with the model decorated and fp32 master weights), the gradient average over
  ranks (:func:`grad_sync_mode`), the non-finite check, the update, and the LR schedule advanced only when the
  update ran;
* **the loop** (:meth:`Engine.fit`): steps until ``max_steps``, the loss window averaged over ranks at log steps only,
  evaluation and best-metric tracking / early stopping, checkpoints, the non-finite streak (stop after
  ``max_nonfinite_steps``) and the final-loss rule (a run whose last step is not finite never reports success and
  never saves it), and stop requests;
* **stop requests** (:class:`StopSignals`): SIGINT or SIGTERM to any rank (what Ctrl-C, ``timeout``, SLURM,
  Kubernetes and ``paddle.distributed.launch`` send) finishes the current step on every rank (the ranks agree at each
  step boundary), saves the recipe's resume checkpoint, and exits with one line: SIGINT as ``KeyboardInterrupt``
  (``error: interrupted``, status 130), SIGTERM with status 143. A second SIGINT stops at once; repeated SIGTERMs
  (the launcher sends up to three within a second) change nothing;
* **one checkpoint layout and reader** (:func:`save_checkpoint` / :func:`read_checkpoint`, the files below). A
  pretraining checkpoint and a fine-tuning one differ only in what the recipe adds (``save_extra``: tokenizer,
  label.txt) and in the fields of :class:`TrainerState` it uses. The reader also takes the layout fine-tuning wrote
  before the engine (``optimizer.pdopt``, ``training_args.json``, one RNG state).

The recipe (:class:`Recipe`) plugs in what is the task's: the micro batches of each step, the loss, evaluation,
logging lines, which checkpoints are due, and what happens at the end.

A checkpoint directory holds::

    model_state.pdparams, model_config.json (+ config.json)   the weights in float32 (under O2: the master copies)
    what the recipe adds                                     vocab.txt, tokenizer_config.json (+ label.txt)
    model_state.pdopt                                        optimizer state (keys: structured parameter names)
    scaler.pdparams                                          float16 loss-scaler state (only with a scaler)
    rng_state.pkl                                            python / numpy / paddle RNG states of every rank
    trainer_state.json                                       TrainerState
    args.yaml                                                the run's settings (the recipe's dict)
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal, cast

import numpy as np
import paddle

from ernie.utils import Stopped, UserError, resolve_dir
from ernie.weights import WEIGHTS_NAME

from . import amp, optim
from .checkpoint import (
    Checkpoint,
    TrainerState,
    read_trainer_state,
    renamed_optimizer_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .distributed import (
    DistEnv,
    all_gather_object,
    all_reduce_gradients,
    all_reduce_mean,
    barrier,
)
from .log import warn

# --------------------------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class EngineConfig:
    """What the engine needs of a run's settings, resolved once (the recipe's parser fills it; frozen)."""

    output_dir: str
    device: str
    max_steps: int
    use_amp: bool = False
    amp_dtype: str = "float16"  # "float16" | "bfloat16"
    amp_level: str = "O2"  # "O1" | "O2"
    scale_loss: float = 32768.0  # initial dynamic loss scale (float16 on accelerators)
    amp_master_grad: bool | None = None  # float32 gradients under bf16 O2 (None: on for bf16 O2 on a GPU)
    deterministic: bool = False  # Paddle's deterministic-kernel flags on GPU (amp.deterministic_flags)
    use_recompute: bool = False  # decides how gradients are averaged over ranks (grad_sync_mode)
    max_nonfinite_steps: int = 10
    logging_steps: int = 1
    share_folder: bool = True  # one output folder for every machine (rank 0 writes) or one per machine
    # best-model tracking (fine-tuning): the metric evaluate() returns that picks the best step
    metric_for_best_model: str | None = None
    greater_is_better: bool = True
    early_stopping_patience: int | None = None


# ---------------------------------------------------------------------------------------------- stop requests


class StopSignals:
    """SIGINT and SIGTERM as requests to stop at the next step boundary (installed by :meth:`Engine.fit` in the main
    thread of every rank, the previous handlers restored on exit).

    The first signal sets :attr:`signum` (and says so on stderr); a second SIGINT raises KeyboardInterrupt at once
    (stop now); further SIGTERMs are ignored (``paddle.distributed.launch`` sends up to three, then waits 30 s
    before SIGKILL). Python's handler replaces Paddle's C++ one, which prints a "FatalError" banner and saves nothing.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    def _handle(self, signum, frame):
        if self.signum is not None:
            if signum == signal.SIGINT and self.signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        self.signum = signum
        name = signal.Signals(signum).name
        print(f"{name}: stopping after this step and saving a checkpoint", file=sys.stderr, flush=True)
        if signum == signal.SIGINT:
            print("(Ctrl-C again to stop now)", file=sys.stderr, flush=True)

    def agreed(self, world_size: int) -> int | None:
        """The signal every rank stops for, once any rank received one (one small all-reduce per step with several
        ranks, so that every rank stops at the same step)."""
        if world_size == 1:
            return self.signum
        import paddle.distributed as dist

        flag = paddle.to_tensor([self.signum or 0], dtype="int32")
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        value = int(flag.numpy()[0])
        return value or None


# --------------------------------------------------------------------------------------------------- the step


SYNC_MODES = {
    "none": "none (one rank)",
    "reducer": "DataParallel reducer in the last micro step's backward (no_sync before)",
    "manual": "no_sync on every micro step, then one explicit all-reduce",
}


def grad_sync_mode(world_size: int, device: str, use_recompute: bool, master_grad: bool = False) -> str:
    """How gradients are averaged over ranks.

    "none": one rank. "reducer": DataParallel's reducer all-reduces during the last micro step's backward
    (``no_sync`` on the others). "manual": every micro step under ``no_sync``, then one explicit all-reduce
    (:func:`reduce_gradients`): on CPU (a dead gloo peer is then a Python error naming it, not an abort) and with
    recompute, whose reentrant recompute runs a second backward inside backward, which the reducer does not
    support ("... has been ready before ..."): Paddle's recompute docs ask for ``no_sync`` with data parallelism, and
    PaddleNLP's Trainer wraps every micro step in ``no_sync`` when recompute is on and then calls
    ``fused_allreduce_gradients``, as here.
    """
    if world_size == 1:
        return "none"
    explicit = device == "cpu" or use_recompute or amp.needs_explicit_all_reduce(master_grad)
    return "manual" if explicit else "reducer"


def reduce_gradients(model, env: DistEnv, device: str) -> None:
    """Average the gradients over ranks after backward ("manual" mode): Paddle's fused_allreduce_gradients on
    accelerators (as PaddleNLP's Trainer), the Python bucketed all-reduce on CPU (distributed.all_reduce_gradients)."""
    if device == "cpu":
        all_reduce_gradients(model.parameters(), env.world_size)
    else:
        from paddle.distributed.fleet.utils.hybrid_parallel_util import fused_allreduce_gradients

        fused_allreduce_gradients(list(model.parameters()), None)


def gradients_finite(parameters) -> bool:
    """Whether every gradient is finite (:func:`ernie.training.amp.all_finite`: one fused check per dtype on the
    device, then this one host read). After the average over ranks the gradients are the same everywhere, so every
    rank takes the same decision."""
    return bool(amp.all_finite(parameters))


def apply_update(optimizer, scaler, scheduler, finite: bool) -> bool:
    """The optimizer step for one global batch; returns whether it ran. With the float16 loss scaler, the scaler
    decides (it skips steps whose gradients overflowed and adjusts the scale); otherwise non-finite gradients skip the
    step. The LR schedule advances only when the optimizer ran (as PaddleNLP's Trainer), so overflow steps early in
    float16 training do not eat the warmup."""
    if scaler is not None and scaler.is_enable():
        scaler.step(optimizer)
        scaler.update()
        ran = not bool(scaler._cache_found_inf)  # a Python bool after step() in dynamic mode
    else:
        ran = finite
        if ran:
            optimizer.step()
    optim.clear_grads(optimizer)
    if ran:
        scheduler.step()
    return ran


@dataclass
class StepResult:
    """One optimizer step: this rank's weighted mean of the recipe's loss values (a device tensor), whether the
    update ran, and whether the step counts as finite for the non-finite streak."""

    values: paddle.Tensor
    ran: bool
    finite: bool


# ------------------------------------------------------------------------------------------------- the recipe


MicroBatches = Sequence[tuple[Any, Fraction]]  # (batch, weight) of each micro batch of a step; weights sum to 1


def _weighted(x: paddle.Tensor, weight: Fraction) -> paddle.Tensor:
    """``x * weight``, as ``x / n`` for a weight 1/n (the accumulation of n equal micro batches: the same float
    operation as one loss divided by the accumulation steps)."""
    if weight == 1:
        return x
    if weight.numerator == 1:
        return x / weight.denominator
    return x * float(weight)


class Recipe:
    """What a task plugs into :meth:`Engine.fit` (every method has a default but :meth:`next_step` and :meth:`loss`).

    ``value_names``: what :meth:`loss` returns, the optimized loss first (pretraining: loss, lm_loss, sop_loss)."""

    value_names: tuple[str, ...] = ("loss",)

    def next_step(self, state: TrainerState) -> MicroBatches:
        """The micro batches of the next optimizer step (this rank's), with their weights."""
        raise NotImplementedError

    def loss(self, model, batch) -> Sequence[paddle.Tensor]:
        """Scalar tensors ``value_names`` of one micro batch (called under the engine's autocast)."""
        raise NotImplementedError

    def before_step(self, state: TrainerState) -> None:
        """Called before each step (pretraining: announces a masking stage)."""

    def after_step(self, state: TrainerState) -> None:
        """Called after ``state.global_step`` advanced (pretraining: consumed samples, masking stage)."""

    def log_train(self, state: TrainerState, values: dict[str, float], lr: float, steps_done: int, elapsed: float):
        """A log step: ``values`` are the window's means over ranks."""

    def scheduled_evaluation(self, state: TrainerState, final: bool) -> dict[str, float] | None:
        """The evaluation due after this step (metrics), or None when none is due."""
        return None

    def checkpoints_due(self, state: TrainerState, final: bool, improved: bool) -> list[str]:
        """The checkpoint directories to write after this step."""
        return []

    def resume_checkpoint(self, state: TrainerState) -> str:
        """Where a stop request saves (pretraining: model_last; fine-tuning: checkpoint-<step>)."""
        raise NotImplementedError

    def last_checkpoint(self, state: TrainerState) -> str | None:
        """The newest complete checkpoint (named in the non-finite errors); default: the resume checkpoint's."""
        return resolve_dir(self.resume_checkpoint(state))

    def after_save(self, path: str, state: TrainerState) -> None:
        """Called after a checkpoint was written (fine-tuning: rotation)."""

    def save_extra(self, directory: str) -> None:
        """What a checkpoint holds besides weights and training state (tokenizer, label.txt)."""

    def args_dict(self) -> dict[str, Any]:
        """The settings saved as ``args.yaml``."""
        return {}


# ------------------------------------------------------------------------------------------------- the engine


def _amp_dtype(name: str) -> Literal["float16", "bfloat16"]:
    return cast(Literal["float16", "bfloat16"], name)


class Engine:
    """Device model, optimizer, loss scaler and data-parallel wrapper of one run, and the loop over its steps.

    ``make_optimizer(model, multi_precision) -> (optimizer, LR scheduler)`` builds the AdamW of the recipe
    (``ernie.training.optim.build_optimizer`` with its schedule). With ``resume``, the weights, optimizer moments,
    LR-scheduler position, loss scale and this rank's RNG state come from it (weights before the O2 decoration,
    which then casts them)."""

    def __init__(
        self,
        config: EngineConfig,
        env: DistEnv,
        model,
        make_optimizer: Callable[[Any, bool], tuple[Any, Any]],
        resume: Checkpoint | None = None,
        log: Callable[[str], None] = print,
    ):
        self.config, self.env, self.log = config, env, log
        c = config
        if c.use_amp:
            amp.check_amp_supported(c.device, c.amp_dtype)  # never a silent float32 run
        if c.deterministic:
            paddle.set_flags(amp.deterministic_flags(c.device))
        if resume is not None:
            model.load_weights(resume.model_state, source=os.path.join(resume.path, WEIGHTS_NAME))
        optimizer, scheduler = make_optimizer(model, c.use_amp)
        # a loss scaler only where float16 AMP runs: on CPU Paddle's GradScaler is disabled (no scale, no counters)
        use_scaler = c.use_amp and c.amp_dtype == "float16" and c.device != "cpu"
        scaler = paddle.amp.GradScaler(init_loss_scaling=c.scale_loss) if use_scaler else None
        if c.use_amp and c.amp_level == "O2":
            model, optimizer = paddle.amp.decorate(
                models=model, optimizers=optimizer, **amp.decorate_kwargs(c.amp_level, c.amp_dtype)
            )
        auto_master = amp.use_master_grad(c.amp_level, c.amp_dtype, c.device)
        self.master_grad = c.use_amp and (auto_master if c.amp_master_grad is None else c.amp_master_grad)
        if self.master_grad:  # float32 main_grad accumulated, all-reduced and clipped (PaddleNLP's --amp_master_grad)
            optimizer = amp.enable_master_grad(model, optimizer, c.amp_dtype)
        self.model, self.optimizer, self.scheduler, self.scaler = model, optimizer, scheduler, scaler
        if resume is not None:
            optimizer.set_state_dict(renamed_optimizer_state(model, resume.optimizer_state, to_structured=False))
            if scaler is not None and resume.scaler_state is not None:
                scaler.load_state_dict(cast(Any, resume.scaler_state))
            if len(resume.rng_states) == env.world_size:
                set_rng_state(resume.rng_states[env.rank])
            elif not resume.rng_states:
                warn(f"{resume.path} holds no random states of this toolkit: dropout randomness restarts from the seed")
            else:
                warn(
                    f"{resume.path} was saved by {len(resume.rng_states)} ranks, this run has {env.world_size}: "
                    "dropout randomness restarts from the seed"
                )
        self.train_model = paddle.DataParallel(model) if env.world_size > 1 else model
        self.last_step: StepResult | None = None  # the latest step's result (a recipe may read it when logging)
        self.sync_mode = grad_sync_mode(env.world_size, c.device, c.use_recompute, self.master_grad)

    # ------------------------------------------------------------------------------------------------ one step
    def autocast(self):
        """The autocast context of every forward (a no-op without AMP)."""
        c = self.config
        white, black = amp.amp_lists(c.amp_level, c.amp_dtype)
        return paddle.amp.auto_cast(
            enable=c.use_amp,
            level=cast(Literal["O1", "O2"], c.amp_level),
            dtype=_amp_dtype(c.amp_dtype),
            custom_white_list=white,
            custom_black_list=black,
        )

    def step(self, micro_batches: MicroBatches, loss_fn: Callable) -> StepResult:
        """One optimizer step over ``micro_batches`` (``loss_fn(model, batch) -> [loss, *values]``)."""
        scaler = self.scaler
        sums: paddle.Tensor | None = None
        last = len(micro_batches) - 1
        for i, (batch, weight) in enumerate(micro_batches):
            in_backward = self.sync_mode == "none" or (self.sync_mode == "reducer" and i == last)
            with contextlib.nullcontext() if in_backward else self.train_model.no_sync():
                with self.autocast():
                    values = loss_fn(self.train_model, batch)
                weighted = _weighted(values[0], weight)
                (scaler.scale(weighted) if scaler else weighted).backward()
            stacked = _weighted(paddle.stack([x.detach().astype("float32") for x in values]), weight)
            sums = stacked if sums is None else sums + stacked
        assert sums is not None, "a step needs at least one micro batch"
        if self.sync_mode == "manual":
            reduce_gradients(self.model, self.env, self.config.device)
        use_scaler = scaler is not None and scaler.is_enable()
        finite = True if use_scaler else gradients_finite(self.model.parameters())
        ran = apply_update(self.optimizer, scaler, self.scheduler, finite)
        return StepResult(sums, ran, ran if not use_scaler else True)

    # ------------------------------------------------------------------------------------------- checkpoints
    def save(self, path: str, recipe: Recipe, state: TrainerState) -> None:
        """Write the checkpoint ``path`` (every rank takes part: RNG states are gathered; the writing ranks write)."""
        all_rng = all_gather_object(rng_state(), self.env.world_size)
        if self.env.writes_checkpoints(self.config.share_folder):
            try:
                save_checkpoint(
                    path,
                    model=self.model,
                    optimizer=self.optimizer,
                    scaler=self.scaler,
                    state=state,
                    rng_states=all_rng,
                    args_dict=recipe.args_dict(),
                    save_extra=recipe.save_extra,
                )
            except (OSError, UserError) as e:  # a full disk, a file-size limit, a read-only folder ...
                kept = resolve_dir(path) or resolve_dir(recipe.resume_checkpoint(state))
                reason = (e.strerror or e) if isinstance(e, OSError) else str(e)
                raise UserError(
                    f"saving checkpoint {path} failed ({reason}); "
                    f"{'the previous checkpoint ' + kept + ' is intact' if kept else 'no checkpoint kept'}"
                ) from None
        barrier(self.env.world_size)
        recipe.after_save(path, state)

    # -------------------------------------------------------------------------------------------------- loop
    def _track_best(self, state: TrainerState, metrics: dict[str, float]) -> tuple[bool, bool]:
        """(improved, early stopping says stop) after an evaluation."""
        c = self.config
        if c.metric_for_best_model is None or c.metric_for_best_model not in metrics:
            return False, False
        value, best = metrics[c.metric_for_best_model], state.best_metric
        improved = best is None or (value > best if c.greater_is_better else value < best)
        if improved:
            state.best_metric, state.best_step = value, state.global_step
            state.evals_without_improvement = 0
        else:
            state.evals_without_improvement += 1
        patience = c.early_stopping_patience
        if patience and state.evals_without_improvement >= patience:
            self.log(f"early stopping: no {c.metric_for_best_model} improvement in {patience} evaluations")
            return improved, True
        return improved, False

    def fit(self, recipe: Recipe, state: TrainerState) -> TrainerState:
        """Train from ``state`` to ``max_steps`` (or early stopping); returns the final state. A stop request raises
        :class:`Stopped` once the resume checkpoint is saved."""
        c, env = self.config, self.env
        n = len(recipe.value_names)
        window = paddle.zeros([n + 1], dtype="float32")  # summed finite values + their count, this rank
        window_start, nonfinite_streak, last_finite = state.global_step, 0, True
        tic, paused = time.time(), 0.0  # paused: time spent in evaluation and checkpoints, not counted as training
        patience = c.early_stopping_patience
        stop = bool(patience and state.evals_without_improvement >= patience)
        with StopSignals() as signals:
            while state.global_step < c.max_steps and not stop:
                recipe.before_step(state)
                lr = self.optimizer.get_lr()
                result = self.last_step = self.step(recipe.next_step(state), recipe.loss)
                state.global_step += 1
                recipe.after_step(state)
                step = state.global_step
                ok = paddle.isfinite(result.values).all()
                window += paddle.concat(
                    [
                        paddle.where(ok, result.values, paddle.zeros_like(result.values)),
                        ok.astype("float32").reshape([1]),
                    ]
                )
                nonfinite_streak = 0 if result.finite else nonfinite_streak + 1
                last_finite = result.finite
                if nonfinite_streak >= c.max_nonfinite_steps:
                    raise UserError(
                        f"the loss or its gradients were not finite for {nonfinite_streak} consecutive steps (up to "
                        f"step {step}); stopping. Last good checkpoint: {self._last_good(recipe, state)}. Lower the "
                        "learning rate, raise the warmup or enable gradient clipping, then rerun the same command to "
                        "resume from it"
                    )
                final = step >= c.max_steps
                if step % c.logging_steps == 0 or final:
                    totals = all_reduce_mean(window, env.world_size).numpy()  # the one host read of the losses
                    mean = totals[:n] / totals[n] if totals[n] else np.full(n, np.nan)
                    recipe.log_train(
                        state,
                        dict(zip(recipe.value_names, map(float, mean))),
                        lr,
                        steps_done=step - window_start,
                        elapsed=time.time() - tic - paused,
                    )
                    window, window_start = paddle.zeros([n + 1], dtype="float32"), step
                    tic, paused = time.time(), 0.0
                pause_start = time.time()
                improved = False
                metrics = recipe.scheduled_evaluation(state, final)
                if metrics is not None:
                    improved, early = self._track_best(state, metrics)
                    stop = stop or early
                signum = signals.agreed(env.world_size)
                saved: set[str] = set()
                if nonfinite_streak == 0:  # never checkpoint weights that may be broken
                    for path in recipe.checkpoints_due(state, final or stop, improved):
                        if state.best_step == step and c.metric_for_best_model:
                            state.best_checkpoint = path
                        self.save(path, recipe, state)
                        saved.add(path)
                paused += time.time() - pause_start
                if signum is not None:
                    self._honour_stop(signum, recipe, state, saved, nonfinite_streak)
        if not last_finite:
            raise UserError(
                f"the last training step ({state.global_step}) had a non-finite loss or gradients: the run did not "
                f"succeed and its weights were not saved. Last good checkpoint: {self._last_good(recipe, state)}"
            )
        return state

    def _last_good(self, recipe: Recipe, state: TrainerState) -> str:
        return recipe.last_checkpoint(state) or "none"

    def _honour_stop(self, signum: int, recipe: Recipe, state: TrainerState, saved: set[str], streak: int) -> None:
        step, path = state.global_step, recipe.resume_checkpoint(state)
        if streak:
            warn(f"stopped at step {step} with a non-finite loss: {path} is not updated")
        elif path not in saved:
            self.save(path, recipe, state)
        held = resolve_dir(path)
        at = read_trainer_state(held).global_step if held else 0
        raise Stopped(  # ernie.utils.cli_main prints the message and exits 130 (SIGINT) / 143 (SIGTERM)
            signum,
            f"{'interrupted' if signum == signal.SIGINT else 'terminated'} at step {step}; {held or 'no checkpoint'} "
            f"holds step {at}: rerun the same command to resume",
        )
