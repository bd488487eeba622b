"""A reader of PaddleNLP's checkpoints, for resuming them here: :func:`detect_layout` and :func:`read_checkpoint`.

Contract (docs/design.md, "Pretraining"; docs/migrating.md, "Checkpoints"):

- ``detect_layout(path) -> "ernie-toolkit" | "paddlenlp-pretrain" | "paddlenlp-trainer" | None``:
  ``"ernie-toolkit"``: ours (``rng_state.pkl``, ``args.yaml`` or ``training_args.json`` beside the weights);
  ``"paddlenlp-pretrain"``: a ``model_last`` / ``model_<step>`` of PaddleNLP's model_zoo/ernie-1.0 ``run_pretrain.py``
  (``config.yml`` {model_name, global_step, global_batch_size, consumed_samples}, ``model_state.pdparams``,
  ``model_state.pdopt``, ``scaler.pdparams`` under fp16, the tokenizer and ``model_config.json``);
  ``"paddlenlp-trainer"``: a ``checkpoint-<step>`` of PaddleNLP's ``Trainer`` (``model_state.pdparams``,
  ``optimizer.pdopt``, ``scheduler.pdparams``, ``scaler.pdparams``, ``trainer_state.json``, ``rng_state.pth`` or
  ``rng_state_<world>.pth``, ``training_args.bin``); ``None``: none of these.
- ``read_checkpoint(path) -> PaddleNLPCheckpoint`` (the two PaddleNLP layouts): plain data, nothing applied.
  The optimizer moments are keyed by the *structured* parameter name (``ernie.encoder.layers.0...``): Paddle keys an
  optimizer state by the internal parameter names of the process that saved it (``linear_12.w_0``), which differ in
  the process that resumes; :meth:`PaddleNLPCheckpoint.adamw_state_dict` re-keys them for a live model, in the form
  ``paddle.optimizer.AdamW.set_state_dict`` takes. The structured <-> internal names come from the saved weights
  (``paddle.load`` keeps each tensor's name); weights saved through a cast (fp16 runs of run_pretrain.py cast every
  weight before saving) lose them, and the moments are then matched by position (parameter order), as recorded
  in ``notes``.
- Every unreadable file is one :class:`~ernie.utils.UserError` naming it. ``training_args.bin`` is read without
  PaddleNLP (its classes are replaced by plain records; nothing of it is executed).
"""

from __future__ import annotations

import json
import os
import pickle
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import paddle
import yaml

from ernie.utils import UserError

PRETRAIN_STEP_FILE = "config.yml"
PRETRAIN_OPTIMIZER = "model_state.pdopt"
TRAINER_OPTIMIZER = "optimizer.pdopt"
TRAINER_SCHEDULER = "scheduler.pdparams"
TRAINER_STATE = "trainer_state.json"
TRAINER_ARGS = "training_args.bin"
SCALER_FILE = "scaler.pdparams"
WEIGHTS_FILE = "model_state.pdparams"
OURS_MARKERS = ("rng_state.pkl", "args.yaml", "training_args.json")
ACCUMULATORS = ("moment1", "moment2", "beta1_pow_acc", "beta2_pow_acc")
_ACC_KEY = re.compile(r"^(?P<param>.+?)(?:_fp32_master_\d+)?_(?P<acc>moment1|moment2|beta1_pow_acc|beta2_pow_acc)_\d+$")
_RNG_WORLD = re.compile(r"^rng_state_(\d+)\.pth$")


@dataclass
class PaddleNLPCheckpoint:
    """What a PaddleNLP checkpoint holds, in plain form.

    model_state: structured name -> tensor (``paddle.load`` of model_state.pdparams; float32 as saved).
    optimizer_state: structured parameter name -> {"moment1", "moment2", "beta1_pow_acc", "beta2_pow_acc"}
        (+ "master_weight" when the run kept fp32 master weights).
    lr_scheduler: the LR scheduler's state ({"last_epoch", "last_lr"}: PaddleNLP's schedulers), or None.
    lr_step: the scheduler's step (``last_epoch``), or None.
    global_step: optimizer steps done. consumed_samples: training samples consumed (run_pretrain's config.yml; for
        the Trainer ``global_step x per_device_train_batch_size x gradient_accumulation_steps x world size``, None
        when training_args.bin is unreadable). global_batch_size: likewise.
    loss_scale: the fp16 loss scale (scaler.pdparams), or None; scaler_state: the whole GradScaler state.
    rng_states: per rank {"python", "numpy", "cpu", "cuda"} as saved (Trainer), or None (run_pretrain saves none).
    trainer_state: trainer_state.json (best_metric, best_model_checkpoint, log_history ...), or None.
    training_args: training_args.bin's fields (plain values), or None.
    model_name: run_pretrain's ``model_name`` (its --model_name_or_path), or None.
    notes: what the reader had to assume.
    """

    layout: str
    path: str
    model_state: dict[str, Any]
    optimizer_state: dict[str, dict[str, Any]]
    lr_scheduler: dict[str, Any] | None
    lr_step: int | None
    global_step: int
    consumed_samples: int | None
    global_batch_size: int | None = None
    loss_scale: float | None = None
    scaler_state: dict[str, Any] | None = None
    rng_states: list[dict[str, Any]] | None = None
    trainer_state: dict[str, Any] | None = None
    training_args: dict[str, Any] | None = None
    model_name: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def best_metric(self) -> float | None:
        return (self.trainer_state or {}).get("best_metric")

    def adamw_state_dict(self, model, master_weights: bool = False) -> dict[str, Any]:
        """The optimizer state for ``model`` (a live ``paddle.nn.Layer`` with PaddleNLP's structured names), keyed
        as ``paddle.optimizer.AdamW.set_state_dict`` wants: ``{param.name}_{accumulator}_0`` (with
        ``master_weights``: the ``{param.name}_fp32_master_0_...`` keys and ``"master_weights"`` of AMP O2's
        multi_precision), plus ``"LR_Scheduler"``. A parameter of ``model`` without saved moments is an error."""
        out: dict[str, Any] = {}
        masters: dict[str, Any] = {}
        missing = []
        for structured, p in model.named_parameters():
            moments = self.optimizer_state.get(structured)
            if moments is None:
                if p.stop_gradient:
                    continue
                missing.append(structured)
                continue
            prefix = f"{p.name}_fp32_master_0" if master_weights else p.name
            for acc in ACCUMULATORS:
                if acc in moments:
                    out[f"{prefix}_{acc}_0"] = moments[acc]
            if master_weights:
                masters[p.name] = moments.get("master_weight", self.model_state.get(structured))
        if missing:
            raise UserError(f"{self.path}: no optimizer state for {', '.join(missing[:3])} (of {len(missing)})")
        if master_weights:
            out["master_weights"] = masters
        if self.lr_scheduler is not None:
            out["LR_Scheduler"] = dict(self.lr_scheduler)
        return out


# ------------------------------------------------------------------------------------------------- detection
def detect_layout(path: str) -> str | None:
    """Which checkpoint layout the directory ``path`` holds (see the module docstring), or None."""
    if not os.path.isdir(path):
        return None
    names = set(os.listdir(path))
    if names & set(OURS_MARKERS):
        return "ernie-toolkit"
    if PRETRAIN_STEP_FILE in names and WEIGHTS_FILE in names:
        return "paddlenlp-pretrain"
    trainer_markers = {TRAINER_ARGS, TRAINER_SCHEDULER, "rng_state.pth"} | {n for n in names if _RNG_WORLD.match(n)}
    if TRAINER_STATE in names and names & trainer_markers:
        return "paddlenlp-trainer"
    return None


# --------------------------------------------------------------------------------------------------- reading
def read_checkpoint(path: str) -> PaddleNLPCheckpoint:
    """Read a PaddleNLP run_pretrain.py or Trainer checkpoint directory (:func:`detect_layout`)."""
    layout = detect_layout(path)
    if layout == "paddlenlp-pretrain":
        return _read_pretrain(path)
    if layout == "paddlenlp-trainer":
        return _read_trainer(path)
    what = "one of this toolkit (read it with ernie.training.checkpoint)" if layout else "no known checkpoint layout"
    raise UserError(f"{path}: not a PaddleNLP checkpoint ({what})")


def _load(path: str, what: str, **kwargs) -> Any:
    if not os.path.isfile(path):
        raise UserError(f"{path}: {what} not found")
    try:
        return paddle.load(path, **kwargs)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's input problem
        raise UserError(f"{path}: cannot read {what} ({type(e).__name__}: {e})") from None


def _read_pretrain(path: str) -> PaddleNLPCheckpoint:
    step_file = os.path.join(path, PRETRAIN_STEP_FILE)
    try:
        with open(step_file, encoding="utf-8") as f:
            step = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as e:
        raise UserError(f"{step_file}: cannot read ({e})") from None
    if not isinstance(step, dict) or not isinstance(step.get("global_step"), int):
        raise UserError(f"{step_file}: no integer global_step")
    model_state = _load(os.path.join(path, WEIGHTS_FILE), "model weights")
    notes: list[str] = []
    opt_file = os.path.join(path, PRETRAIN_OPTIMIZER)
    opt: dict[str, Any] = {}
    if os.path.isfile(opt_file):
        opt = _load(opt_file, "optimizer state")
    else:
        notes.append(f"no {PRETRAIN_OPTIMIZER}: a fresh optimizer (run_pretrain.py does the same)")
    moments, lr = _split_optimizer(opt, model_state, notes)
    scaler = _read_scaler(path)
    gbs = step.get("global_batch_size")
    consumed = step.get("consumed_samples")
    if consumed is None and isinstance(gbs, int):
        consumed = step["global_step"] * gbs
    return PaddleNLPCheckpoint(
        layout="paddlenlp-pretrain",
        path=path,
        model_state=model_state,
        optimizer_state=moments,
        lr_scheduler=lr,
        lr_step=_lr_step(lr),
        global_step=step["global_step"],
        consumed_samples=consumed,
        global_batch_size=gbs if isinstance(gbs, int) else None,
        loss_scale=_loss_scale(scaler),
        scaler_state=scaler,
        model_name=step.get("model_name"),
        notes=notes,
    )


def _read_trainer(path: str) -> PaddleNLPCheckpoint:
    state_file = os.path.join(path, TRAINER_STATE)
    try:
        with open(state_file, encoding="utf-8") as f:
            state = json.load(f)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{state_file}: cannot read ({e})") from None
    if not isinstance(state, dict) or not isinstance(state.get("global_step"), int):
        raise UserError(f"{state_file}: no integer global_step")
    notes: list[str] = []
    model_state = _load(os.path.join(path, WEIGHTS_FILE), "model weights")
    opt = _load(os.path.join(path, TRAINER_OPTIMIZER), "optimizer state")
    moments, lr = _split_optimizer(opt, model_state, notes)
    sched_file = os.path.join(path, TRAINER_SCHEDULER)
    if os.path.isfile(sched_file):
        lr = _load(sched_file, "LR scheduler state")  # what the Trainer restores (it wins over the optimizer's copy)
    rng = _read_trainer_rng(path, notes)
    args = _read_training_args(os.path.join(path, TRAINER_ARGS), notes)
    world = len(rng) if rng else 1
    gbs = consumed = None
    if args is not None:
        try:
            gbs = int(args["per_device_train_batch_size"]) * int(args.get("gradient_accumulation_steps", 1)) * world
            consumed = state["global_step"] * gbs
        except (KeyError, TypeError, ValueError):
            notes.append(f"{TRAINER_ARGS}: no per_device_train_batch_size; consumed_samples unknown")
    scaler = _read_scaler(path)
    return PaddleNLPCheckpoint(
        layout="paddlenlp-trainer",
        path=path,
        model_state=model_state,
        optimizer_state=moments,
        lr_scheduler=lr,
        lr_step=_lr_step(lr),
        global_step=state["global_step"],
        consumed_samples=consumed,
        global_batch_size=gbs,
        loss_scale=_loss_scale(scaler),
        scaler_state=scaler,
        rng_states=rng,
        trainer_state=state,
        training_args=args,
        notes=notes,
    )


def _split_optimizer(
    opt: dict[str, Any], model_state: dict[str, Any], notes: list[str]
) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None]:
    """(structured name -> moments, LR scheduler state) of a Paddle optimizer state dict."""
    lr = opt.get("LR_Scheduler")
    masters = opt.get("master_weights") or {}
    by_param: dict[str, dict[str, Any]] = {}
    for key, value in opt.items():
        m = _ACC_KEY.match(key) if isinstance(key, str) else None
        if m is not None:
            by_param.setdefault(m["param"], {})[m["acc"]] = value
    for name, value in masters.items():
        by_param.setdefault(name, {})["master_weight"] = value
    # internal parameter name -> structured name, from the saved tensors (the first of tied names)
    internal: dict[str, str] = {}
    for structured, tensor in model_state.items():
        name = getattr(tensor, "name", None)
        if isinstance(name, str):
            internal.setdefault(name, structured)
    moments: dict[str, dict[str, Any]] = {}
    unmatched = [p for p in by_param if p not in internal]
    for p, acc in by_param.items():
        if p in internal:
            moments[internal[p]] = acc
    if unmatched:  # weights saved through a cast: match by parameter order
        free = [s for s in _unique_params(model_state) if s not in moments]
        if len(free) != len(unmatched):
            raise UserError(
                f"optimizer state for {len(unmatched)} parameters whose weights cannot be found by name, and "
                f"{len(free)} weights without optimizer state: the optimizer file is not of these weights"
            )
        for p, structured in zip(unmatched, free):
            moments[structured] = by_param[p]
        notes.append(f"{len(unmatched)} optimizer states matched to weights by position (the weights were cast)")
    return moments, lr if isinstance(lr, dict) else None


def _unique_params(model_state: dict[str, Any]) -> list[str]:
    """Structured names in save order, each tied weight once: the same internal name, or (names lost to a cast)
    PaddleNLP's tied-head aliases, ``cls.predictions.decoder.weight`` / ``.bias`` (the word embeddings and
    ``decoder_bias`` under a second name), recognised by name and equal values. (Untied weights may be equal too,
    e.g. LayerNorm scales no gradient reached yet: values alone do not tell aliases.)"""
    seen: set[str] = set()
    kept: list[tuple[str, Any]] = []
    for structured, tensor in model_state.items():
        name = getattr(tensor, "name", structured)
        if name in seen:
            continue
        seen.add(name)
        value = np.asarray(tensor.numpy() if hasattr(tensor, "numpy") else tensor)
        alias = ".decoder." in structured
        if alias and any(v.shape == value.shape and np.array_equal(v, value) for _, v in kept):
            continue
        kept.append((structured, value))
    return [k for k, _ in kept]


def _lr_step(lr: dict[str, Any] | None) -> int | None:
    value = (lr or {}).get("last_epoch")
    return int(value) if isinstance(value, (int, float)) else None


def _read_scaler(path: str) -> dict[str, Any] | None:
    file = os.path.join(path, SCALER_FILE)
    return _load(file, "loss-scaler state", return_numpy=True) if os.path.isfile(file) else None


def _loss_scale(scaler: dict[str, Any] | None) -> float | None:
    if not scaler or "scale" not in scaler:
        return None
    try:
        return float(scaler["scale"].reshape(-1)[0]) if hasattr(scaler["scale"], "reshape") else float(scaler["scale"])
    except (TypeError, ValueError, IndexError):
        return None


def _read_trainer_rng(path: str, notes: list[str]) -> list[dict[str, Any]] | None:
    single = os.path.join(path, "rng_state.pth")
    multi = sorted(n for n in os.listdir(path) if _RNG_WORLD.match(n))
    try:
        if os.path.isfile(single):
            return [_load(single, "random-number states", return_numpy=True)]
        if multi:
            states = _load(os.path.join(path, multi[-1]), "random-number states", return_numpy=True)
            return list(states)
    except UserError as e:
        notes.append(f"random-number states not restored: {e}")
        return None
    notes.append("no rng_state.pth: random-number states not restored")
    return None


class _Record:
    """Stands in for any class inside training_args.bin: keeps its constructor arguments and its state."""

    def __init__(self, *args: Any, **kwargs: Any):
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __call__(self, *args: Any, **kwargs: Any) -> _Record:
        return _Record(*args, **kwargs)

    def plain(self) -> Any:
        """An enum member's value, a dataclass's field dict."""
        state = getattr(self, "state", None)
        if isinstance(state, dict):
            return {k: _plain(v) for k, v in state.items()}
        return _plain(self.args[0]) if len(self.args) == 1 else [_plain(a) for a in self.args]


def _plain(value: Any) -> Any:
    if isinstance(value, _Record):
        return value.plain()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class _RecordUnpickler(pickle.Unpickler):
    SAFE = {("builtins", n) for n in ("set", "frozenset", "dict", "list", "tuple", "complex", "slice")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.SAFE:
            return super().find_class(module, name)
        return _Record


def _read_training_args(file: str, notes: list[str]) -> dict[str, Any] | None:
    if not os.path.isfile(file):
        notes.append(f"no {TRAINER_ARGS}: consumed_samples unknown")
        return None
    try:
        with open(file, "rb") as f:
            obj = _RecordUnpickler(f).load()
    except Exception as e:  # noqa: BLE001 - a damaged or foreign file: noted, not fatal
        notes.append(f"{file}: unreadable ({type(e).__name__}: {e}); consumed_samples unknown")
        return None
    plain = _plain(obj)
    if not isinstance(plain, dict):
        notes.append(f"{file}: not a TrainingArguments record; consumed_samples unknown")
        return None
    return plain
