"""A small fine-tuning loop shared by every fine-tuning task.

AdamW with linear warmup + linear decay and global-norm clipping; evaluation every ``eval_steps``; checkpoints
``output_dir/checkpoint-<step>/`` written atomically (model + tokenizer + label.txt + optimizer with its LR scheduler
+ rng_state.pkl + trainer_state.json + training_args.json); best-model tracking on ``metric_for_best_model``, rotation
with ``save_total_limit`` (never deleting the best), early stopping, and reloading the best weights at the end.

Resuming (:func:`read_checkpoint`, then ``train(resume=...)``) restores weights, optimizer, scheduler, RNG states,
the trainer state and the data position (epoch ``step // steps_per_epoch``, whose batch order comes from
``seed + epoch``, and the batches of it already done), so a resumed run is bit-identical to an uninterrupted one.

A :class:`LoopTask` (what :class:`ernie.finetune.tasks.Task` implements) tells the loop how to batch features, compute
the loss and score predictions.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import math
import os
import pickle
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import paddle
import paddle.nn.functional as F

from ernie.training.checkpoint import rng_state, set_rng_state  # the RNG states pretraining checkpoints save
from ernie.training.lr import finetune_schedule
from ernie.training.optim import build_optimizer, clear_grads
from ernie.utils import UserError, atomic_dir, atomic_write, fault_point
from ernie.weights import WEIGHTS_NAME

IGNORE_INDEX = -100
CHECKPOINT_PREFIX = "checkpoint-"
STATE_FILE = "trainer_state.json"
MODEL_FILE = WEIGHTS_NAME  # the model's weights file (named by ernie.weights, like every model directory's)
OPTIMIZER_FILE = "optimizer.pdopt"
RNG_FILE = "rng_state.pkl"
ARGS_FILE = "training_args.json"
CHECKPOINT_FILES = (MODEL_FILE, OPTIMIZER_FILE, RNG_FILE, STATE_FILE, ARGS_FILE)  # what makes one resumable
# settings that shape the training trajectory: a resumed run reports those that differ from the checkpoint's
TRAJECTORY_ARGS = (
    "seed",
    "batch_size",
    "learning_rate",
    "weight_decay",
    "warmup_ratio",
    "max_grad_norm",
    "num_train_epochs",
    "max_steps",
    "eval_steps",
    "save_steps",
    "max_seq_length",
    "dataset",
    "train_file",
    "dev_file",
    "max_train_samples",
    "max_eval_samples",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "metric_for_best_model",
    "load_best_model_at_end",
    "early_stopping_patience",
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


def pad_stack(arrays: list[np.ndarray], value: int, length: int | None = None) -> np.ndarray:
    """Right-pad 1-D int arrays to ``length`` (default: the longest) -> [B, length] int64."""
    length = length or max(len(a) for a in arrays)
    out = np.full((len(arrays), length), value, dtype=np.int64)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
    return out


@dataclass
class TrainState:
    """What survives in ``trainer_state.json``."""

    global_step: int = 0
    best_metric: float | None = None
    best_step: int | None = None
    best_checkpoint: str | None = None
    evals_without_improvement: int = 0
    log_history: list[dict] = field(default_factory=list)
    running_losses: list[float] = field(default_factory=list)  # losses since the last logged step


@dataclass
class Resume:
    """A checkpoint read in full by :func:`read_checkpoint`, before anything is written."""

    path: str
    model_state: dict
    optimizer_state: dict
    rng_state: dict
    state: TrainState
    args: dict


def missing_checkpoint_files(path: str) -> list[str]:
    """The files of :data:`CHECKPOINT_FILES` that ``path`` lacks (all of them when it is not a directory)."""
    return [f for f in CHECKPOINT_FILES if not os.path.isfile(os.path.join(path, f))]


def _read_file(path: str, what: str, reader):
    if not os.path.isfile(path):
        raise UserError(f"cannot resume: {path}: missing ({what})")
    try:
        return reader(path)
    except Exception as e:  # noqa: BLE001  # paddle.load / pickle / json raise many types on truncated or garbage files
        reason = str(e).strip().splitlines()[-1][:160] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot resume: {path}: unreadable {what} ({reason})") from None


def _read_json(path: str):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _read_pickle(path: str):
    with open(path, "rb") as f:
        return pickle.load(f)


def read_checkpoint(path: str) -> Resume:
    """Read every file of the checkpoint at ``path`` (``UserError`` naming the first missing or unreadable one)."""
    if not os.path.isdir(path):
        raise UserError(f"cannot resume: {path}: no such checkpoint directory")
    state = _read_file(
        os.path.join(path, STATE_FILE),
        "trainer state",
        lambda p: TrainState(
            **{k: v for k, v in _read_json(p).items() if k in {f.name for f in dataclasses.fields(TrainState)}}
        ),
    )
    return Resume(
        path=path,
        model_state=_read_file(os.path.join(path, MODEL_FILE), "model weights", paddle.load),
        optimizer_state=_read_file(os.path.join(path, OPTIMIZER_FILE), "optimizer state", paddle.load),
        rng_state=_read_file(os.path.join(path, RNG_FILE), "random-number states", _read_pickle),
        state=state,
        args=_read_file(os.path.join(path, ARGS_FILE), "training settings", _read_json),
    )


class Trainer:
    """Fine-tunes ``model`` on ``train_features`` with the hyper-parameters of a ``FinetuneArgs``.

    ``save_extra(dir)`` writes what a model directory needs besides the weights (tokenizer files, label map);
    ``log`` receives progress lines.
    """

    def __init__(
        self,
        model: paddle.nn.Layer,
        args,
        task: LoopTask,
        train_features: list[dict],
        eval_features: list[dict] | None = None,
        save_extra: Callable[[str], None] = lambda d: None,
        log: Callable[[str], None] = print,
    ):
        self.model, self.args, self.task = model, args, task
        self.train_features, self.eval_features = train_features, eval_features or []
        self.save_extra, self.log = save_extra, log
        self.metric = args.metric_for_best_model
        self.greater_is_better = self.metric != "loss"
        self.state = TrainState()

    # ------------------------------------------------------------------------------------------------- schedule
    def _plan(self) -> tuple[int, int, int, int]:
        """(steps_per_epoch, max_steps, eval_steps, save_steps)."""
        a = self.args
        steps_per_epoch = max(1, math.ceil(len(self.train_features) / a.batch_size))
        max_steps = a.max_steps if a.max_steps > 0 else max(1, math.ceil(a.num_train_epochs * steps_per_epoch))
        eval_steps = a.eval_steps or min(steps_per_epoch, max_steps)
        save_steps = a.save_steps or eval_steps
        return steps_per_epoch, max_steps, eval_steps, save_steps

    def _optimizer(self, max_steps: int):
        """(optimizer, LR scheduler): the shared AdamW (``ernie.training.optim``) with fine-tuning's warmup + decay."""
        a = self.args
        scheduler = finetune_schedule(a.learning_rate, a.warmup_ratio, max_steps)
        optimizer = build_optimizer(self.model, scheduler, weight_decay=a.weight_decay, max_grad_norm=a.max_grad_norm)
        return optimizer, scheduler

    def _batches(self, features: list[dict], shuffle_seed: int | None, skip: int = 0):
        """Batches in order (shuffled by ``shuffle_seed``), the first ``skip`` of them left out."""
        order = np.arange(len(features))
        if shuffle_seed is not None:
            np.random.default_rng(shuffle_seed).shuffle(order)
        for i in range(skip * self.args.batch_size, len(order), self.args.batch_size):
            yield self.task.collate([features[j] for j in order[i : i + self.args.batch_size]])

    # ---------------------------------------------------------------------------------------------------- train
    def train(self, resume: Resume | None = None) -> TrainState:
        """Run the loop (from ``resume`` when given); returns the final :class:`TrainState` (the model holds the
        final or best weights)."""
        a = self.args
        steps_per_epoch, max_steps, eval_steps, save_steps = self._plan()
        optimizer, scheduler = self._optimizer(max_steps)
        self.log(
            f"training: {len(self.train_features)} examples, {steps_per_epoch} steps/epoch, {max_steps} steps, "
            f"batch {a.batch_size}, eval every {eval_steps} and checkpoint every {save_steps} steps"
        )
        step = 0
        if resume is not None:
            self.model.set_state_dict(resume.model_state)
            # moments + the LR scheduler's position
            optimizer.set_state_dict(self._renamed_optimizer_state(resume.optimizer_state, to_structured=False))
            self.state = resume.state
            set_rng_state(resume.rng_state)
            step = self.state.global_step
            changed = [
                f"{k}: {resume.args.get(k)!r} -> {getattr(a, k)!r}"
                for k in TRAJECTORY_ARGS
                if k in resume.args and resume.args[k] != getattr(a, k)
            ]
            self.log(
                f"resuming from {resume.path} at step {step}"
                + (f"; settings changed since: {'; '.join(changed)}" if changed else "")
            )
            self._rotate()  # a run killed between a save and its rotation
        self.model.train()
        start, t0, running = step, time.time(), self.state.running_losses
        epoch, skip = divmod(step, steps_per_epoch)
        patience = a.early_stopping_patience
        stop = step >= max_steps or bool(patience and self.state.evals_without_improvement >= patience)
        while not stop:
            for batch in self._batches(self.train_features, shuffle_seed=a.seed + epoch, skip=skip):
                loss = self.task.loss(self.task.forward(self.model, batch), batch)
                loss.backward()
                optimizer.step()
                clear_grads(optimizer)
                scheduler.step()
                step += 1
                self.state.global_step = step
                running.append(float(loss))
                if step % a.logging_steps == 0 or step == max_steps:
                    rate = (step - start) / (time.time() - t0)
                    entry = {
                        "step": step,
                        "epoch": round(step / steps_per_epoch, 3),
                        "loss": float(np.mean(running)),
                        "learning_rate": scheduler.last_lr,
                    }
                    self.state.log_history.append(entry)
                    self.log(
                        f"step {step}/{max_steps} epoch {entry['epoch']:.2f} loss {entry['loss']:.4f} "
                        f"lr {entry['learning_rate']:.3g} ({rate:.2f} steps/s)"
                    )
                    running.clear()
                stop = step >= max_steps
                improved = False
                if (step % eval_steps == 0 or stop) and self.eval_features:
                    improved, early_stop = self._evaluate_and_track(step)
                    stop = stop or early_stop
                    self.model.train()
                if step % save_steps == 0 or stop or (improved and a.load_best_model_at_end):
                    self.save_checkpoint(optimizer)
                if stop:
                    break
            epoch, skip = epoch + 1, 0
        if a.load_best_model_at_end and self.state.best_checkpoint:
            self.log(
                f"loading the best model (step {self.state.best_step}, {self.metric} "
                f"{self.state.best_metric:.4f}) from {self.state.best_checkpoint}"
            )
            self.model.set_state_dict(paddle.load(os.path.join(self.state.best_checkpoint, MODEL_FILE)))
        self.model.eval()
        return self.state

    def _evaluate_and_track(self, step: int) -> tuple[bool, bool]:
        """Evaluate and update the best metric -> (improved, early stopping says stop)."""
        metrics = self.evaluate(self.eval_features)
        self.state.log_history.append({"step": step, **{f"eval_{k}": v for k, v in metrics.items()}})
        self.log(f"eval at step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        value = metrics[self.metric]
        best = self.state.best_metric
        improved = best is None or (value > best if self.greater_is_better else value < best)
        if improved:
            self.state.best_metric, self.state.best_step = value, step
            self.state.evals_without_improvement = 0
        else:
            self.state.evals_without_improvement += 1
        patience = self.args.early_stopping_patience
        if patience and self.state.evals_without_improvement >= patience:
            self.log(f"early stopping: no {self.metric} improvement in {patience} evaluations")
            return improved, True
        return improved, False

    # ----------------------------------------------------------------------------------------- eval and predict
    @paddle.no_grad()
    def predict(self, features: list[dict]) -> tuple[list[np.ndarray], float]:
        """Per-example task outputs and the mean loss (NaN when the features carry no labels)."""
        self.model.eval()
        outputs, losses, weights = [], [], []
        for batch in self._batches(features, shuffle_seed=None):
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

    # ---------------------------------------------------------------------------------------------- checkpoints
    def _renamed_optimizer_state(self, state: dict, to_structured: bool) -> dict:
        """Optimizer state keys ``<param.name>_<slot>`` <-> ``<structured name>/<slot>``: Paddle's parameter names
        (``linear_12.w_0``) depend on how many layers the process built before, the model's own names do not."""
        pairs = [(p.name, n) for n, p in self.model.named_parameters()]
        src = sorted(pairs if to_structured else [(n, p) for p, n in pairs], key=lambda t: -len(t[0]))
        sep_in, sep_out = ("_", "/") if to_structured else ("/", "_")

        def rename(key: str) -> str:
            for old, new in src:
                if key == old:
                    return new
                if key.startswith(old + sep_in):
                    return new + sep_out + key[len(old) + 1 :]
            return key

        out = {}
        for key, value in state.items():
            if key == "master_weights" and isinstance(value, dict):  # AMP master copies, keyed by parameter
                out[key] = {rename(k): v for k, v in value.items()}
            else:
                out[key if key == "LR_Scheduler" else rename(key)] = value
        return out

    def save_checkpoint(self, optimizer) -> str:
        """Write ``checkpoint-<step>`` atomically, then apply ``save_total_limit``."""
        step = self.state.global_step
        path = os.path.join(self.args.output_dir, f"{CHECKPOINT_PREFIX}{step}")
        if self.state.best_step == step:
            self.state.best_checkpoint = path
        with atomic_dir(path) as tmp:
            self.model.save_pretrained(tmp)
            self.save_extra(tmp)
            fault_point(f"checkpoint {path}: model written")
            paddle.save(
                self._renamed_optimizer_state(optimizer.state_dict(), to_structured=True),
                os.path.join(tmp, OPTIMIZER_FILE),
            )
            with open(os.path.join(tmp, RNG_FILE), "wb") as f:
                pickle.dump(rng_state(), f)
            with open(os.path.join(tmp, ARGS_FILE), "w", encoding="utf-8") as f:
                json.dump(dataclasses.asdict(self.args), f, indent=2, ensure_ascii=False)
            fault_point(f"checkpoint {path}: optimizer and rng written")
            with open(os.path.join(tmp, STATE_FILE), "w", encoding="utf-8") as f:
                json.dump(dataclasses.asdict(self.state), f, indent=2)
        self._rotate()
        return path

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
    paths = [
        p
        for p in glob.glob(os.path.join(output_dir, f"{CHECKPOINT_PREFIX}*"))
        if re.fullmatch(rf"{CHECKPOINT_PREFIX}\d+", os.path.basename(p)) and os.path.isdir(p)
    ]
    return sorted(paths, key=lambda p: int(p.rsplit("-", 1)[1]))


def remove_dir(path: str) -> None:
    """Delete a directory so that no half-deleted copy is ever left under its name: renamed to
    ``.<name>.deleting`` first (a leftover one is removed by the next run)."""
    parent, name = os.path.split(os.path.abspath(path))
    doomed = os.path.join(parent, f".{name}.deleting")
    shutil.rmtree(doomed, ignore_errors=True)
    os.replace(path, doomed)
    fault_point(f"remove {path}: renamed")
    shutil.rmtree(doomed, ignore_errors=True)


def write_json(path: str, obj) -> None:
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


def cross_entropy(logits: paddle.Tensor, labels: paddle.Tensor) -> paddle.Tensor:
    """Mean cross-entropy over the last axis, ignoring label ``IGNORE_INDEX``."""
    num_classes = logits.shape[-1]
    return F.cross_entropy(logits.reshape([-1, num_classes]), labels.reshape([-1]), ignore_index=IGNORE_INDEX)
