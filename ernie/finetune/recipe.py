"""Fine-tuning on the one training engine (:mod:`ernie.training.engine`): the recipe every task shares.

:class:`FinetuneRecipe` fine-tunes a task model with the hyper-parameters of a ``FinetuneArgs``: AdamW with linear
warmup + linear decay and global-norm clipping (``ernie.training.optim``), ``--gradient_accumulation_steps`` micro
batches of ``--batch_size`` (``--per_device_train_batch_size``) per optimizer step, AMP (``--fp16`` / ``--bf16``,
``--fp16_opt_level``; a no-op on the CPU), evaluation every ``eval_steps``, checkpoints
``output_dir/checkpoint-<step>/`` in the engine's one layout (+ tokenizer and label.txt), best-model tracking on
``metric_for_best_model``, rotation with ``save_total_limit`` (never deleting the best), early stopping, and
reloading the best weights at the end. The engine owns the step, the non-finite rule (a run whose last step is not
finite fails, and no such weights are saved), SIGINT / SIGTERM (a checkpoint at the last complete step) and the
checkpoint files.

The data position of a step is ``divmod(step, steps_per_epoch)``: epoch ``e`` shuffles the examples with
``seed + e``, so a resumed run (:func:`ernie.training.checkpoint.read_checkpoint`, then ``train(resume=...)``) is
bit-identical to an uninterrupted one. With accumulation, each micro batch's loss is weighted by its share of the
step's examples (the large batch's mean for per-example losses; for token-level losses such as NER's, the mean of
the micro batches' token means weighted by examples, as HF's and PaddleNLP's Trainers do).

A :class:`LoopTask` (what :class:`ernie.finetune.tasks.Task` implements) tells the loop how to batch features, compute
the loss and score predictions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from collections.abc import Callable
from fractions import Fraction
from typing import Protocol

import numpy as np
import paddle

from ernie.training.checkpoint import Checkpoint, TrainerState, fp32_state_dict, step_dirs
from ernie.training.distributed import DistEnv
from ernie.training.engine import Engine, EngineConfig, Recipe
from ernie.training.lr import finetune_schedule
from ernie.training.optim import build_optimizer
from ernie.utils import UserError, remove_dir
from ernie.weights import WEIGHTS_NAME

CHECKPOINT_PREFIX = "checkpoint-"
MODEL_FILE = WEIGHTS_NAME  # the model's weights file (named by ernie.weights, like every model directory's)
# the settings a resumed run must keep (its data order, batches and optimizer trajectory depend on them): another
# value is refused
FIXED_ON_RESUME = (
    "seed",
    "batch_size",
    "gradient_accumulation_steps",
    "learning_rate",
    "weight_decay",
    "warmup_ratio",
    "max_seq_length",
    "dataset",
    "train_file",
    "max_train_samples",
)
# the other settings that shape the run: a resumed run may change them (e.g. --max_steps to train longer) and reports
# those that differ from the checkpoint's
REPORTED_ON_RESUME = (
    "max_grad_norm",
    "num_train_epochs",
    "max_steps",
    "eval_steps",
    "save_steps",
    "dev_file",
    "max_eval_samples",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "metric_for_best_model",
    "load_best_model_at_end",
    "early_stopping_patience",
    "fp16",
    "bf16",
    "fp16_opt_level",
)


class LoopTask(Protocol):
    """What the loop needs of a task; :class:`ernie.finetune.tasks.Task` (the task contract) implements it."""

    def collate(self, features: list[dict]) -> dict[str, np.ndarray]: ...

    def forward(self, model: paddle.nn.Layer, batch: dict[str, np.ndarray]): ...

    def has_labels(self, batch: dict[str, np.ndarray]) -> bool: ...

    def loss(self, raw, batch: dict[str, np.ndarray]) -> paddle.Tensor: ...

    def outputs(self, raw, batch: dict[str, np.ndarray]) -> list:
        """Per-feature outputs kept after a forward (e.g. logits [C] or tag ids [n_tokens])."""
        ...

    def metrics(self, outputs: list, features: list[dict]) -> dict[str, float]: ...


def amp_dtype(args) -> str | None:
    """The AMP dtype ``--fp16`` / ``--bf16`` ask for (None: float32)."""
    if getattr(args, "bf16", False):
        return "bfloat16"
    return "float16" if getattr(args, "fp16", False) else None


class FinetuneRecipe(Recipe):
    """Fine-tunes ``model`` on ``train_features`` (see the module docstring). ``save_extra(dir)`` writes what a model
    directory needs besides the weights (tokenizer files, label map); ``log`` receives progress lines."""

    value_names = ("loss",)

    def __init__(
        self,
        model: paddle.nn.Layer,
        args,
        task: LoopTask,
        train_features: list[dict],
        eval_features: list[dict] | None = None,
        save_extra: Callable[[str], None] = lambda d: None,
        log: Callable[[str], None] = print,
        env: DistEnv | None = None,
    ):
        self.model, self.args, self.task = model, args, task
        self.train_features, self.eval_features = train_features, eval_features or []
        self._save_extra, self.log = save_extra, log
        self.env = env or DistEnv(rank=0, world_size=1, local_rank=0, host="")
        self.metric = args.metric_for_best_model
        self.greater_is_better = self.metric != "loss"
        self.state = TrainerState()
        self.engine: Engine | None = None
        self._steps = None  # the iterator over the steps' micro batches (train())
        self._best_state: dict | None = None  # the best checkpoint's weights, once loaded at the end

    # ------------------------------------------------------------------------------------------------- schedule
    @property
    def accumulation(self) -> int:
        return max(1, getattr(self.args, "gradient_accumulation_steps", 1) or 1)

    @property
    def step_batch(self) -> int:
        """Examples per optimizer step: batch_size (per device) x accumulation x ranks."""
        return self.args.batch_size * self.accumulation * self.env.world_size

    def _plan(self) -> tuple[int, int, int, int]:
        """(steps_per_epoch, max_steps, eval_steps, save_steps)."""
        a = self.args
        steps_per_epoch = max(1, math.ceil(len(self.train_features) / self.step_batch))
        max_steps = a.max_steps if a.max_steps > 0 else max(1, math.ceil(a.num_train_epochs * steps_per_epoch))
        eval_steps = a.eval_steps or min(steps_per_epoch, max_steps)
        save_steps = a.save_steps or eval_steps
        return steps_per_epoch, max_steps, eval_steps, save_steps

    def _optimizer(self, max_steps: int, model=None, multi_precision: bool = False):
        """(optimizer, LR scheduler): the shared AdamW (``ernie.training.optim``) with fine-tuning's warmup + decay."""
        a = self.args
        scheduler = finetune_schedule(a.learning_rate, a.warmup_ratio, max_steps)
        optimizer = build_optimizer(
            model if model is not None else self.model,
            scheduler,
            weight_decay=a.weight_decay,
            max_grad_norm=a.max_grad_norm,
            multi_precision=multi_precision,
        )
        return optimizer, scheduler

    def _batches(self, features: list[dict], shuffle_seed: int | None, skip: int = 0):
        """Batches of ``batch_size`` in order (shuffled by ``shuffle_seed``), the first ``skip`` left out."""
        order = np.arange(len(features))
        if shuffle_seed is not None:
            np.random.default_rng(shuffle_seed).shuffle(order)
        for i in range(skip * self.args.batch_size, len(order), self.args.batch_size):
            yield self.task.collate([features[j] for j in order[i : i + self.args.batch_size]])

    def _step_batches(self, step: int, steps_per_epoch: int):
        """The micro batches of every step from ``step`` on, with their weights: epoch ``e`` shuffled by
        ``seed + e``; a step takes ``step_batch`` examples (the last of an epoch fewer), this rank its share."""
        a, env = self.args, self.env
        epoch, skip = divmod(step, steps_per_epoch)
        while True:
            order = np.arange(len(self.train_features))
            np.random.default_rng(a.seed + epoch).shuffle(order)
            for s in range(skip, steps_per_epoch):
                chunk = order[s * self.step_batch : (s + 1) * self.step_batch]
                if not len(chunk):
                    break
                per_rank = np.array_split(chunk, env.world_size)
                mine = per_rank[env.rank]
                micro = [mine[i : i + a.batch_size] for i in range(0, len(mine), a.batch_size)] or [mine[:0]]
                total = len(chunk)
                yield [
                    (
                        self.task.collate([self.train_features[j] for j in m]),
                        Fraction(len(m) * env.world_size, total),
                    )
                    for m in micro
                    if len(m)
                ]
            epoch, skip = epoch + 1, 0

    # ---------------------------------------------------------------------------------------- recipe methods
    def next_step(self, state: TrainerState):
        assert self._steps is not None, "train() first"
        return next(self._steps)

    def loss(self, model, batch):
        return [self.task.loss(self.task.forward(model, batch), batch)]

    def log_train(self, state, values, lr, steps_done, elapsed) -> None:
        steps_per_epoch, max_steps, _, _ = self._plan()
        step = state.global_step
        entry = {
            "step": step,
            "epoch": round(step / steps_per_epoch, 3),
            "loss": values["loss"],
            "learning_rate": lr,
        }
        state.log_history.append(entry)
        rate = steps_done / max(elapsed, 1e-9)
        self.log(
            f"step {step}/{max_steps} epoch {entry['epoch']:.2f} loss {entry['loss']:.4f} "
            f"lr {entry['learning_rate']:.3g} ({rate:.2f} steps/s)"
        )

    def scheduled_evaluation(self, state: TrainerState, final: bool) -> dict[str, float] | None:
        _, _, eval_steps, _ = self._plan()
        if not self.eval_features or not (state.global_step % eval_steps == 0 or final):
            return None
        metrics = self.evaluate(self.eval_features)
        state.log_history.append({"step": state.global_step, **{f"eval_{k}": v for k, v in metrics.items()}})
        self.log(f"eval at step {state.global_step}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        self.model.train()
        return metrics

    def checkpoints_due(self, state: TrainerState, final: bool, improved: bool) -> list[str]:
        _, _, _, save_steps = self._plan()
        if state.global_step % save_steps == 0 or final or (improved and self.args.load_best_model_at_end):
            return [self.resume_checkpoint(state)]
        return []

    def resume_checkpoint(self, state: TrainerState) -> str:
        return os.path.join(self.args.output_dir, f"{CHECKPOINT_PREFIX}{state.global_step}")

    def last_checkpoint(self, state: TrainerState) -> str | None:
        found = list_checkpoints(self.args.output_dir)
        return found[-1] if found else None

    def after_save(self, path: str, state: TrainerState) -> None:
        self._rotate()

    def save_extra(self, directory: str) -> None:
        self._save_extra(directory)

    def args_dict(self) -> dict:
        return dataclasses.asdict(self.args)

    # ---------------------------------------------------------------------------------------------------- train
    def engine_config(self, max_steps: int) -> EngineConfig:
        a = self.args
        dtype = amp_dtype(a)
        return EngineConfig(
            output_dir=a.output_dir,
            device=paddle.device.get_device().split(":")[0],
            max_steps=max_steps,
            use_amp=dtype is not None,
            amp_dtype=dtype or "float16",
            amp_level=getattr(a, "fp16_opt_level", "O1"),
            scale_loss=getattr(a, "scale_loss", 2.0**15),
            amp_master_grad=getattr(a, "amp_master_grad", None),
            logging_steps=a.logging_steps,
            share_folder=True,
            metric_for_best_model=self.metric if self.eval_features else None,
            greater_is_better=self.greater_is_better,
            early_stopping_patience=a.early_stopping_patience,
        )

    def check_resume(self, resume: Checkpoint) -> None:
        """``UserError`` when this run's settings differ from the checkpoint's in one of :data:`FIXED_ON_RESUME`
        (checked before anything is written: the runner calls it before the run's first write)."""
        a = self.args
        refused = [
            f"--{k} {resume.args.get(k)!r} -> {getattr(a, k)!r}"
            for k in FIXED_ON_RESUME
            if k in resume.args and hasattr(a, k) and resume.args[k] != getattr(a, k)
        ]
        if refused:
            raise UserError(
                f"cannot resume {resume.path} with other settings than it was trained with ({'; '.join(refused)}): "
                "rerun with the checkpoint's values, or pass --overwrite_output_dir to start over"
            )

    def train(self, resume: Checkpoint | None = None) -> TrainerState:
        """Run the loop (from ``resume`` when given); returns the final :class:`TrainerState` (the model holds the
        final or best weights)."""
        a = self.args
        steps_per_epoch, max_steps, eval_steps, save_steps = self._plan()
        accumulation = f" ({a.batch_size} x {self.accumulation} accumulation)" if self.accumulation > 1 else ""
        self.log(
            f"training: {len(self.train_features)} examples, {steps_per_epoch} steps/epoch, {max_steps} steps, "
            f"batch {self.step_batch}{accumulation}, eval every {eval_steps} and checkpoint every {save_steps} steps"
        )
        if resume is not None:
            self.check_resume(resume)
            self.state = resume.state
            changed = [
                f"{k}: {resume.args.get(k)!r} -> {getattr(a, k)!r}"
                for k in REPORTED_ON_RESUME
                if k in resume.args and hasattr(a, k) and resume.args[k] != getattr(a, k)
            ]
            self.log(
                f"resuming from {resume.path} at step {self.state.global_step}"
                + (f"; settings changed since: {'; '.join(changed)}" if changed else "")
            )
        self.state.global_batch_size, self.state.world_size = self.step_batch, self.env.world_size
        engine = Engine(
            self.engine_config(max_steps),
            self.env,
            self.model,
            lambda model, mp: self._optimizer(max_steps, model, mp),
            resume=resume,
            log=self.log,
        )
        self.engine, self.model = engine, engine.model
        if resume is not None:
            self._rotate()  # a run killed between a save and its rotation
        self.model.train()
        self._steps = self._step_batches(self.state.global_step, steps_per_epoch)
        self.state = engine.fit(self, self.state)
        if a.load_best_model_at_end and self.state.best_checkpoint:
            self.log(
                f"loading the best model (step {self.state.best_step}, {self.metric} "
                f"{self.state.best_metric:.4f}) from {self.state.best_checkpoint}"
            )
            self._best_state = paddle.load(os.path.join(self.state.best_checkpoint, MODEL_FILE))  # float32
            self.model.load_weights(self._best_state, source=self.state.best_checkpoint)
        self.model.eval()
        return self.state

    def final_state_dict(self) -> dict:
        """The final model's weights in float32: the best checkpoint's (``--load_best_model_at_end``), else the
        trained ones (under O2 the optimizer's float32 master copies, not the low-precision parameters)."""
        if self._best_state is not None:
            return self._best_state
        if self.engine is None:
            return self.model.state_dict()
        return fp32_state_dict(self.engine.model, self.engine.optimizer)

    # ----------------------------------------------------------------------------------------- eval and predict
    @paddle.no_grad()
    def predict(self, features: list[dict]) -> tuple[list[np.ndarray], float]:
        """Per-example task outputs and the mean loss (NaN when the features carry no labels)."""
        self.model.eval()
        outputs, losses, weights = [], [], []
        autocast = self.engine.autocast if self.engine is not None else contextlib.nullcontext
        for batch in self._batches(features, shuffle_seed=None):
            with autocast():
                raw = self.task.forward(self.model, batch)
            if self.task.has_labels(batch):
                losses.append(float(self.task.loss(raw, batch)))
                weights.append(len(batch["input_ids"]))
            outputs.extend(self.task.outputs(raw, batch))
        return outputs, float(np.average(losses, weights=weights)) if losses else float("nan")

    def evaluate(self, features: list[dict]) -> dict[str, float]:
        """Task metrics plus ``loss`` on labelled ``features``."""
        outputs, loss = self.predict(features)
        return {**self.task.metrics(outputs, features), "loss": loss}

    def _rotate(self) -> None:
        limit = self.args.save_total_limit
        if not limit:
            return
        keep = {os.path.abspath(p) for p in list_checkpoints(self.args.output_dir)[-limit:]}
        if self.state.best_checkpoint:
            keep.add(os.path.abspath(self.state.best_checkpoint))
        for path in list_checkpoints(self.args.output_dir):
            if os.path.abspath(path) not in keep:
                remove_dir(path)


def list_checkpoints(output_dir: str) -> list[str]:
    """``checkpoint-<step>`` directories in ``output_dir``, oldest step first."""
    return step_dirs(output_dir, CHECKPOINT_PREFIX)
