"""Training checkpoints: everything needed to continue a run exactly, written atomically.

A checkpoint directory (``output_dir/model_last`` or ``output_dir/model_<step>``) holds::

    model_state.pdparams, model_config.json   weights + config (ErnieForPretraining.save_pretrained, float32;
                                              under AMP O2 the optimizer's fp32 master weights: fp32_state_dict)
    vocab.txt, tokenizer_config.json          the tokenizer
    model_state.pdopt                         optimizer state (moments, master weights, LR scheduler)
    scaler.pdparams                           float16 dynamic loss-scaling state (only with --amp_dtype float16)
    rng_state.pkl                             python / numpy / paddle RNG states of every rank
    trainer_state.json                        global_step, consumed_samples, global_batch_size, world_size,
                                              masking_schedule + the current masking stage (name, index, start)
    args.yaml                                 the full configuration of the run

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
from dataclasses import dataclass
from typing import Any

import numpy as np
import paddle
import yaml

from ernie.utils import UserError, atomic_dir
from ernie.weights import WEIGHTS_NAME, is_hf_dir, read_hf_state

TRAINER_STATE = "trainer_state.json"
OPTIMIZER_STATE = "model_state.pdopt"
SCALER_STATE = "scaler.pdparams"
RNG_STATE = "rng_state.pkl"
ARGS_FILE = "args.yaml"


@dataclass
class TrainerState:
    """Step counters + the masking stage of the last step done (``masking_schedule``: the spec the run follows;
    empty in checkpoints written before schedules existed)."""

    global_step: int = 0
    consumed_samples: int = 0
    global_batch_size: int = 0
    world_size: int = 1
    masking_schedule: str = ""
    masking_stage: str = ""
    masking_stage_index: int = 0
    masking_stage_start: int = 0


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


def save_checkpoint(
    path: str,
    *,
    model,
    optimizer,
    scaler,
    tokenizer,
    state: TrainerState,
    rng_states: list[dict[str, Any]],
    args_dict: dict[str, Any],
) -> None:
    """Write one complete checkpoint to ``path`` (atomically replacing an older one there).

    ``model`` is the bare ErnieForPretraining (not the DataParallel wrapper); ``rng_states[r]`` is rank r's.
    """
    with atomic_dir(path) as tmp:
        model.save_pretrained(tmp, state_dict=fp32_state_dict(model, optimizer))
        tokenizer.save_pretrained(tmp)
        paddle.save(optimizer.state_dict(), os.path.join(tmp, OPTIMIZER_STATE))
        if scaler is not None:
            paddle.save(scaler.state_dict(), os.path.join(tmp, SCALER_STATE))
        with open(os.path.join(tmp, RNG_STATE), "wb") as f:
            pickle.dump(rng_states, f)
        with open(os.path.join(tmp, TRAINER_STATE), "w", encoding="utf-8") as f:
            json.dump(dataclasses.asdict(state), f, indent=2)
        with open(os.path.join(tmp, ARGS_FILE), "w", encoding="utf-8") as f:
            yaml.safe_dump(args_dict, f, sort_keys=False, allow_unicode=True)


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


class UnreadableCheckpoint(UserError):
    """A checkpoint file that is missing, truncated or not what it should be; the message names the file."""


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


def _load_pickle(file: str):
    with open(file, "rb") as f:
        return pickle.load(f)


def _load_yaml(file: str):
    with open(file, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    if not isinstance(data, dict):
        raise ValueError("not a mapping of settings")
    return data


def _load_state(file: str):
    with open(file, encoding="utf-8") as f:
        return TrainerState(**json.load(f))


def read_trainer_state(path: str) -> TrainerState:
    return _read(os.path.join(path, TRAINER_STATE), "checkpoint state", _load_state)


def read_args(path: str) -> dict[str, Any]:
    return _read(os.path.join(path, ARGS_FILE), "run settings", _load_yaml)


def load_model_weights(path: str, model) -> None:
    """Load ``path/model_state.pdparams`` (ours or PaddleNLP's names) into ``model``; shape mismatches are errors.

    ``model`` must still hold float32 parameters: load before ``paddle.amp.decorate``. Into a decorated (O2) model the
    float32 values would be rounded to fp16/bf16, and the optimizer's float32 master weights (made from the
    parameters at its first step, kept apart after it) would not see them: refused (RuntimeError, a caller's bug)."""
    low = [n for n, p in model.named_parameters() if p.dtype in (paddle.float16, paddle.bfloat16)]
    if low:
        raise RuntimeError(
            f"load_model_weights({path}): {len(low)} parameters of the model are float16/bfloat16 (first: {low[0]}); "
            "load the weights before paddle.amp.decorate, which then makes the fp32 master weights from them"
        )
    if is_hf_dir(path):  # an HF transformers ERNIE directory: its weights converted on load
        state, file = read_hf_state(path)
        model.load_weights(state, source=file)
        return
    file = os.path.join(path, WEIGHTS_NAME)
    if not os.path.isfile(file):
        raise UserError(f"{path}: no {WEIGHTS_NAME} (model weights) in this directory")
    model.load_weights(_read(file, "model weights", paddle.load), source=file)


def load_training_state(path: str, optimizer, scaler) -> list[dict[str, Any]]:
    """Restore optimizer (+ LR scheduler) and loss-scaler state; returns the saved per-rank RNG states."""
    optimizer.set_state_dict(_read(os.path.join(path, OPTIMIZER_STATE), "optimizer state", paddle.load))
    scaler_file = os.path.join(path, SCALER_STATE)
    if scaler is not None and os.path.isfile(scaler_file):
        scaler.load_state_dict(_read(scaler_file, "loss-scaler state", paddle.load))
    return _read(os.path.join(path, RNG_STATE), "random-number states", _load_rng)


def _load_rng(file: str) -> list[dict[str, Any]]:
    states = _load_pickle(file)
    if not (
        isinstance(states, list)
        and all(isinstance(s, dict) and {"python", "numpy", "paddle"} <= s.keys() for s in states)
    ):
        raise ValueError("not a list of per-rank random states")
    return states


def verify_checkpoint(path: str) -> None:
    """Read every file of the checkpoint at ``path`` (``UnreadableCheckpoint`` naming the first bad one)."""
    read_trainer_state(path)
    read_args(path)
    _read(os.path.join(path, WEIGHTS_NAME), "model weights", paddle.load)
    _read(os.path.join(path, OPTIMIZER_STATE), "optimizer state", paddle.load)
    _read(os.path.join(path, RNG_STATE), "random-number states", _load_rng)


def newest_readable_checkpoint(output_dir: str) -> str | None:
    """The ``output_dir/model_<step>`` with the highest step whose files all read, else ``None``."""
    steps = sorted(
        (int(m.group(1)) for m in map(re.compile(r"model_(\d+)$").match, os.listdir(output_dir)) if m), reverse=True
    )
    for step in steps:
        path = os.path.join(output_dir, f"model_{step}")
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
