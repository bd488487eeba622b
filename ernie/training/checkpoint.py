"""Training checkpoints: one layout for pretraining and fine-tuning, written atomically, read in full before a resume.

A checkpoint directory (pretraining: ``output_dir/model_last`` or ``output_dir/model_<step>``; fine-tuning:
``output_dir/checkpoint-<step>``) holds::

    model_state.pdparams, model_config.json   weights + config (save_pretrained, float32; under AMP O2 the
                                              optimizer's fp32 master weights: fp32_state_dict)
    what the recipe adds                      vocab.txt, tokenizer_config.json (+ label.txt for fine-tuning)
    model_state.pdopt                         optimizer state (moments, master weights, LR scheduler), keyed by the
                                              model's structured parameter names (renamed_optimizer_state)
    scaler.pdparams                           float16 dynamic loss-scaling state (only where a scaler runs)
    rng_state.pkl                             python / numpy / paddle RNG states of every rank (a list)
    trainer_state.json                        TrainerState: global_step, consumed_samples, global_batch_size,
                                              world_size; pretraining's masking stage; fine-tuning's best metric
    args.yaml                                 the run's settings

A pretraining and a fine-tuning checkpoint differ only in what the recipe adds and the TrainerState fields it uses.
The readers also take the layouts written before the one engine existed: pretraining's (optimizer keys by Paddle's
parameter names) and fine-tuning's (``optimizer.pdopt``, ``training_args.json``, one RNG state).

It is built in a temporary sibling directory and renamed into place only when complete
(:func:`ernie.utils.atomic_dir`), so a kill or a full disk at any moment leaves the previous checkpoint intact.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pickle
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import paddle
import yaml

from ernie.modeling import read_state_dict
from ernie.utils import UserError, atomic_dir, fault_point
from ernie.weights import WEIGHTS_NAME

from . import paddlenlp_checkpoint

TRAINER_STATE = "trainer_state.json"
OPTIMIZER_STATE = "model_state.pdopt"
SCALER_STATE = "scaler.pdparams"
RNG_STATE = "rng_state.pkl"
ARGS_FILE = "args.yaml"
# the names fine-tuning checkpoints had before the engine (read, never written)
OLD_OPTIMIZER_STATE = "optimizer.pdopt"
OLD_ARGS_FILE = "training_args.json"


@dataclass
class TrainerState:
    """``trainer_state.json``: the step counters every run has, and the fields one recipe uses (pretraining: the
    masking stage; fine-tuning: the best metric and the log history). Unknown keys of a file are ignored when read."""

    global_step: int = 0
    consumed_samples: int = 0
    global_batch_size: int = 0
    world_size: int = 1
    # pretraining: the masking schedule the run follows + the stage of the last step done
    masking_schedule: str = ""
    masking_stage: str = ""
    masking_stage_index: int = 0
    masking_stage_start: int = 0
    # best-model tracking
    best_metric: float | None = None
    best_step: int | None = None
    best_checkpoint: str | None = None
    evals_without_improvement: int = 0
    log_history: list[dict] = field(default_factory=list)

    @classmethod
    def from_dict(cls, values: dict) -> TrainerState:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


# ------------------------------------------------------------------------------------------------ checkpoints


class UnreadableCheckpoint(UserError):
    """A checkpoint file that is missing, truncated or not what it should be; the message names the file."""


@dataclass
class Checkpoint:
    """A checkpoint read in full (:func:`read_checkpoint`) before anything is written."""

    path: str
    model_state: dict
    optimizer_state: dict
    scaler_state: dict | None
    rng_states: list[dict]
    state: TrainerState
    args: dict


def _read(file: str, what: str, reader):
    """``reader(file)``, any failure turned into :class:`UnreadableCheckpoint` naming ``file``."""
    if not os.path.isfile(file):
        raise UnreadableCheckpoint(f"{file}: missing ({what})")
    try:
        return reader(file)
    except Exception as e:  # noqa: BLE001  # paddle.load / pickle / yaml raise a zoo of types on truncated or garbage files
        reason = str(e).strip().splitlines()[-1][:160] if str(e).strip() else type(e).__name__
        size = os.path.getsize(file)
        raise UnreadableCheckpoint(f"{file}: unreadable {what} ({'empty file' if size == 0 else reason})") from None


def _load_json(file: str):
    with open(file, encoding="utf-8") as f:
        return json.load(f)


def _load_yaml(file: str):
    with open(file, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    if not isinstance(data, dict):
        raise ValueError("not a mapping of settings")
    return data


def _load_state(file: str) -> TrainerState:
    data = _load_json(file)
    if not isinstance(data, dict):
        raise ValueError("not a mapping")
    return TrainerState.from_dict(data)


def _load_rng(file: str) -> list[dict[str, Any]]:
    with open(file, "rb") as f:
        states = pickle.load(f)
    if isinstance(states, dict):  # a fine-tuning checkpoint of before the engine: one process's state
        states = [states]
    if not (
        isinstance(states, list)
        and all(isinstance(s, dict) and {"python", "numpy", "paddle"} <= s.keys() for s in states)
    ):
        raise ValueError("not a list of per-rank random states")
    return states


def _first_file(path: str, *names: str) -> str:
    """The first of ``names`` that exists in ``path`` (else the first name, for the error message)."""
    return next(
        (os.path.join(path, n) for n in names if os.path.isfile(os.path.join(path, n))), os.path.join(path, names[0])
    )


def read_trainer_state(path: str) -> TrainerState:
    return _read(os.path.join(path, TRAINER_STATE), "checkpoint state", _load_state)


def read_args(path: str) -> dict[str, Any]:
    """The run settings a checkpoint was saved with (``args.yaml``, or an older fine-tuning ``training_args.json``)."""
    file = _first_file(path, ARGS_FILE, OLD_ARGS_FILE)
    return _read(file, "run settings", _load_json if file.endswith(".json") else _load_yaml)


def missing_files(path: str) -> list[str]:
    """What a resume needs that ``path`` lacks (every file when it is not a directory)."""
    needed = [
        WEIGHTS_NAME,
        (OPTIMIZER_STATE, OLD_OPTIMIZER_STATE),
        RNG_STATE,
        TRAINER_STATE,
        (ARGS_FILE, OLD_ARGS_FILE),
    ]
    missing = []
    for names in needed:
        names = (names,) if isinstance(names, str) else names
        if not any(os.path.isfile(os.path.join(path, n)) for n in names):
            missing.append(names[0])
    return missing


def read_checkpoint(path: str) -> Checkpoint:
    """Every file of the checkpoint at ``path`` (:class:`UnreadableCheckpoint` naming the first missing or
    unreadable one)."""
    if not os.path.isdir(path):
        raise UnreadableCheckpoint(f"{path}: no such checkpoint directory")
    if paddlenlp_checkpoint.detect_layout(path) in ("paddlenlp-pretrain", "paddlenlp-trainer"):
        return from_paddlenlp(paddlenlp_checkpoint.read_checkpoint(path))
    scaler_file = os.path.join(path, SCALER_STATE)
    return Checkpoint(
        path=path,
        state=read_trainer_state(path),
        args=read_args(path),
        model_state=_read(os.path.join(path, WEIGHTS_NAME), "model weights", paddle.load),
        optimizer_state=_read(_first_file(path, OPTIMIZER_STATE, OLD_OPTIMIZER_STATE), "optimizer state", paddle.load),
        scaler_state=_read(scaler_file, "loss-scaler state", paddle.load) if os.path.isfile(scaler_file) else None,
        rng_states=_read(os.path.join(path, RNG_STATE), "random-number states", _load_rng),
    )


def from_paddlenlp(read: paddlenlp_checkpoint.PaddleNLPCheckpoint) -> Checkpoint:
    """A PaddleNLP checkpoint (its run_pretrain.py ``model_last`` or its Trainer's ``checkpoint-N``) in this layout's
    terms: the moments keyed by structured names as :func:`save_checkpoint` keys them, the LR scheduler's position,
    the step counters (``consumed_samples``: saved by run_pretrain.py, else steps x the global batch) and the loss
    scale. Its random states are not in this toolkit's form: dropout restarts from the seed (said at resume)."""
    optimizer: dict[str, Any] = {}
    masters: dict[str, Any] = {}
    for structured, moments in read.optimizer_state.items():
        for acc in paddlenlp_checkpoint.ACCUMULATORS:
            if acc in moments:
                optimizer[f"{structured}/{acc}_0"] = moments[acc]
        if "master_weight" in moments:
            masters[structured] = moments["master_weight"]
    if masters:
        optimizer["master_weights"] = masters
    if read.lr_scheduler is not None:
        optimizer["LR_Scheduler"] = dict(read.lr_scheduler)
    trainer = read.trainer_state or {}
    state = TrainerState.from_dict(
        {
            **{k: v for k, v in trainer.items() if k in ("best_metric", "log_history")},
            "global_step": read.global_step,
            "global_batch_size": read.global_batch_size or 0,
            "consumed_samples": read.consumed_samples
            if read.consumed_samples is not None
            else read.global_step * (read.global_batch_size or 0),
        }
    )
    return Checkpoint(
        path=read.path,
        model_state=read.model_state,
        optimizer_state=optimizer,
        scaler_state=read.scaler_state,
        rng_states=[],
        state=state,
        args={},
    )


def verify_checkpoint(path: str) -> None:
    """Read every file of the checkpoint at ``path`` (``UnreadableCheckpoint`` naming the first bad one)."""
    read_checkpoint(path)


def rng_state() -> dict[str, Any]:
    """This process's random states (dropout masks come from paddle's generator)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "paddle": paddle.get_rng_state()}
    if paddle.is_compiled_with_cuda() and paddle.device.get_device().startswith("gpu"):
        state["cuda"] = paddle.get_cuda_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    paddle.set_rng_state(state["paddle"])
    if "cuda" in state:
        paddle.set_cuda_rng_state(state["cuda"])


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    paddle.seed(seed)


def fp32_state_dict(model, optimizer) -> dict[str, paddle.Tensor]:
    """The model's weights in float32 for ``model_state.pdparams``: under AMP O2 (low-precision parameters) each
    parameter the optimizer keeps a float32 master copy of (``multi_precision``) is taken from that copy, not cast up
    from its 8- or 11-bit-mantissa value; anything else in float16/bfloat16 is cast to float32."""
    masters = getattr(optimizer, "_master_weights", None) or {}
    state = {}
    for key, value in model.state_dict(use_hook=False).items():  # the parameters themselves (no save_dtype cast)
        master = masters.get(getattr(value, "name", None))
        if master is not None:
            value = master
        if value.dtype in (paddle.float16, paddle.bfloat16):
            value = value.astype("float32")
        state[key] = value
    return state


def renamed_optimizer_state(model, state: dict, to_structured: bool) -> dict:
    """Optimizer state keys ``<param.name>_<slot>`` <-> ``<structured name>/<slot>``: Paddle's parameter names
    (``linear_12.w_0``) depend on how many layers the process built before, the model's structured names do not.
    Keys of neither form (a checkpoint saved with Paddle's names, as pretraining wrote before the engine) are kept."""
    pairs = [(p.name, n) for n, p in model.named_parameters()]
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


def save_checkpoint(
    path: str,
    *,
    model,
    optimizer,
    scaler,
    state: TrainerState,
    rng_states: list[dict[str, Any]],
    args_dict: dict[str, Any],
    save_extra: Callable[[str], None] = lambda d: None,
) -> None:
    """Write one complete checkpoint to ``path`` (atomically replacing an older one there). ``model`` is the bare
    model (not the DataParallel wrapper); ``rng_states[r]`` is rank r's."""
    with atomic_dir(path) as tmp:
        model.save_pretrained(tmp, state_dict=fp32_state_dict(model, optimizer))
        save_extra(tmp)
        fault_point(f"checkpoint {path}: model written")
        optimizer_state = renamed_optimizer_state(model, optimizer.state_dict(), to_structured=True)
        paddle.save(optimizer_state, os.path.join(tmp, OPTIMIZER_STATE))
        if scaler is not None:
            paddle.save(scaler.state_dict(), os.path.join(tmp, SCALER_STATE))
        with open(os.path.join(tmp, RNG_STATE), "wb") as f:
            pickle.dump(rng_states, f)
        with open(os.path.join(tmp, ARGS_FILE), "w", encoding="utf-8") as f:
            yaml.safe_dump(args_dict, f, sort_keys=False, allow_unicode=True)
        fault_point(f"checkpoint {path}: optimizer and rng written")
        with open(os.path.join(tmp, TRAINER_STATE), "w", encoding="utf-8") as f:
            json.dump(dataclasses.asdict(state), f, indent=2)


def load_model_weights(path: str, model) -> None:
    """Load the weights of ``path`` into ``model``: a model directory (``model_state.pdparams`` with ours or PaddleNLP's
    names, or HF transformers' files) or a built-in model name (PaddleNLP's published weights: its cache, else
    downloaded, ``ernie.hub``); shape mismatches are errors.

    ``model`` must still hold float32 parameters: load before ``paddle.amp.decorate``. Into a decorated (O2) model the
    float32 values would be rounded to fp16/bf16, and the optimizer's float32 master weights (made from the
    parameters at its first step, kept apart after it) would not see them: refused (RuntimeError, a caller's bug)."""
    low = [n for n, p in model.named_parameters() if p.dtype in (paddle.float16, paddle.bfloat16)]
    if low:
        raise RuntimeError(
            f"load_model_weights({path}): {len(low)} parameters of the model are float16/bfloat16 (first: {low[0]}); "
            "load the weights before paddle.amp.decorate, which then makes the fp32 master weights from them"
        )
    file = os.path.join(path, WEIGHTS_NAME)
    if os.path.isfile(file):  # ours / PaddleNLP's: a bad file is named as every checkpoint file is
        model.load_weights(_read(file, "model weights", paddle.load), source=file)
        return
    state, file = read_state_dict(path)  # HF's directory, or a built-in name's published weights
    model.load_weights(state, source=file)


def step_dirs(output_dir: str, prefix: str) -> list[str]:
    """The ``output_dir/<prefix><step>`` directories (pretraining's ``model_``, the Trainer's ``checkpoint-``),
    oldest step first; none when ``output_dir`` does not exist."""
    if not os.path.isdir(output_dir):
        return []
    pattern = re.compile(re.escape(prefix) + r"(\d+)")
    found = [(int(m.group(1)), n) for n in os.listdir(output_dir) if (m := pattern.fullmatch(n))]
    return [os.path.join(output_dir, n) for _, n in sorted(found) if os.path.isdir(os.path.join(output_dir, n))]


def newest_readable_checkpoint(output_dir: str) -> str | None:
    """The ``output_dir/model_<step>`` with the highest step whose files all read, else ``None``."""
    for path in reversed(step_dirs(output_dir, "model_")):
        try:
            verify_checkpoint(path)
            return path
        except UserError:
            continue
    return None


@contextlib.contextmanager
def reading_resume_checkpoint(resume_dir: str, output_dir: str):
    """Around the reads of ``model_last``: an unreadable file is reported with the newest readable
    ``model_<step>`` to resume from instead."""
    try:
        yield
    except UnreadableCheckpoint as e:
        other = newest_readable_checkpoint(output_dir)
        last = os.path.join(output_dir, "model_last")
        hint = (
            f"the newest readable checkpoint is {other}: to resume from it, move {last} away and copy {other} to {last}"
            if other
            else f"no readable model_<step> checkpoint exists in {output_dir}: move {last} away to start over"
        )
        raise UserError(f"cannot resume from {resume_dir}: {e}; {hint}") from None


def config_changes(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``section.flag: old -> new`` for every setting that differs between two sectioned arg dicts."""
    changes = []
    for section, values in current.items():
        old_values = saved.get(section) or {}
        for key, value in values.items():
            if key in old_values and old_values[key] != value:
                changes.append(f"{section}.{key}: {old_values[key]!r} -> {value!r}")
    return changes
