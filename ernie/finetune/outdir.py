"""The fine-tuning ``output_dir``: what a training run may do to it, decided before it writes anything.

The contract (docs/design.md, "Fine-tuning output-dir contract"): the caller holds the directory's lock
(:func:`ernie.utils.lock.lock_output_dir`) around everything here; :func:`recover` finishes what a killed run left
half done (a final model whose renames were cut short, temporary dirs); :func:`plan` reads the directory and the flags
and returns what the run will do -- or raises ``UserError`` without having changed anything; :func:`begin` applies it
(previous checkpoints renamed into ``.replaced/``, ``run_status.json`` = running) right before training;
:func:`publish` puts the final model in place; :func:`finish` marks the run complete and only then deletes what it
replaced.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ernie.training.checkpoint import missing_files as missing_checkpoint_files
from ernie.utils import UserError, atomic_dir, atomic_write, fault_point, fsync_dir

from .recipe import CHECKPOINT_PREFIX, MODEL_FILE, list_checkpoints

STATUS_FILE = "run_status.json"
REPLACED_DIR = ".replaced"
FINAL_STAGE = ".final_model"
AUTO = ("auto", "true", "1", "yes")


@dataclass
class Plan:
    """What a training run does to ``output_dir``: resume from ``resume_from`` (a complete checkpoint) or start
    from ``--model_name_or_path``; rename ``replace`` (the previous run's checkpoints) into ``.replaced/``."""

    resume_from: str | None = None
    replace: list[str] = field(default_factory=list)


def read_status(output_dir: str) -> dict | None:
    """``run_status.json`` of ``output_dir`` (None when absent or unreadable: treated as an older version's)."""
    try:
        with open(os.path.join(output_dir, STATUS_FILE), encoding="utf-8") as f:
            status = json.load(f)
        return status if isinstance(status, dict) else None
    except (OSError, ValueError):
        return None


def write_status(output_dir: str, status: str, **info) -> None:
    record = {"status": status, "pid": os.getpid(), "host": socket.gethostname(), **info}
    with atomic_write(os.path.join(output_dir, STATUS_FILE), "w") as f:
        json.dump(record, f, indent=2, ensure_ascii=False)
        f.write("\n")


def complete_checkpoints(output_dir: str) -> list[str]:
    """``checkpoint-<step>`` dirs holding every file a resume needs, oldest first."""
    return [p for p in list_checkpoints(output_dir) if not missing_checkpoint_files(p)]


def recover(output_dir: str, log: Callable[[str], None]) -> None:
    """Finish a publish cut short by a kill (the new final model was complete in ``.final_model``) and remove the
    temporary dirs of atomic writes that never finished."""
    if os.path.isdir(os.path.join(output_dir, FINAL_STAGE)):
        log(
            f"{output_dir}: an earlier run was stopped while putting its complete final model in place; finishing "
            "that first"
        )
        _move_stage_in(output_dir)
    for name in sorted(os.listdir(output_dir)):
        path = os.path.join(output_dir, name)
        if (
            name.startswith(f".{CHECKPOINT_PREFIX}")
            and name.endswith(".old")
            and not os.path.exists(os.path.join(output_dir, name[1:-4]))
        ):
            os.replace(path, os.path.join(output_dir, name[1:-4]))  # killed between atomic_dir's two renames
        elif (
            name.startswith(f".{CHECKPOINT_PREFIX}")
            and name.endswith((".tmp", ".deleting", ".old"))
            or name in (f"{FINAL_STAGE}.tmp", f".{FINAL_STAGE}.tmp", f".{FINAL_STAGE}.old")
        ):
            shutil.rmtree(path, ignore_errors=True)
        elif name.startswith(".") and name.endswith(".tmp") and os.path.isfile(path):  # atomic_write's temporary
            os.unlink(path)


def _visible(output_dir: str) -> list[str]:
    return sorted(n for n in os.listdir(output_dir) if not n.startswith(".")) if os.path.isdir(output_dir) else []


def _inside(path: str, directory: str) -> bool:
    path, directory = os.path.realpath(path), os.path.realpath(directory)
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def _describe(status: dict) -> str:
    return (
        f"started {status.get('started', '?')} by pid {status.get('pid', '?')} on {status.get('host', '?')}, "
        f"from {status.get('model_name_or_path', '?')}"
    )


def plan(args, log: Callable[[str], None]) -> Plan:
    """Decide what ``--do_train`` does with ``args.output_dir`` (see the module docstring); changes nothing."""
    out = args.output_dir
    visible = [n for n in _visible(out) if n != STATUS_FILE]
    status = read_status(out)
    interrupted = status is not None and status.get("status") == "running"
    resume = args.resume_from_checkpoint
    auto = resume is not None and resume.lower() in AUTO
    overwrite_hint = "pass --overwrite_output_dir to start over"
    if resume is not None and not auto:
        missing = missing_checkpoint_files(resume)
        if missing:
            raise UserError(f"--resume_from_checkpoint {resume}: not a complete checkpoint (no {', '.join(missing)})")
        if visible and not _inside(resume, out) and not args.overwrite_output_dir:
            raise UserError(
                f"--output_dir {out} already exists and is not empty; pass --overwrite_output_dir to "
                f"continue {resume} into it"
            )
        return Plan(resume_from=resume)
    if interrupted and not (args.overwrite_output_dir and not auto):
        assert status is not None  # interrupted: a status file says "running"
        found = complete_checkpoints(out)
        if found:
            log(
                f"{out}: found an interrupted run ({_describe(status)}); resuming from its last complete "
                f"checkpoint {found[-1]}" + ("" if auto else f" ({overwrite_hint})")
            )
            return Plan(resume_from=found[-1])
        if os.path.isfile(os.path.join(out, MODEL_FILE)) and not args.overwrite_output_dir:
            raise UserError(
                f"--output_dir {out} holds an interrupted run ({_describe(status)}) without a complete "
                f"checkpoint, next to a previous final model; {overwrite_hint} (the previous model is "
                f"replaced only when the new one is complete)"
            )
        log(f"{out}: found an interrupted run ({_describe(status)}) without a complete checkpoint; starting over")
    elif auto:
        log(f"--resume_from_checkpoint {resume}: no interrupted run in {out}; starting from {args.model_name_or_path}")
    if visible and not (args.overwrite_output_dir or interrupted):
        what = "a complete fine-tuning run" if status is not None or MODEL_FILE in visible else "files"
        raise UserError(
            f"--output_dir {out} already exists and holds {what}; pass --overwrite_output_dir to "
            f"train into it (the previous output is replaced only when the new one is complete)"
        )
    replace = list_checkpoints(out)
    for path in replace:
        if _inside(args.model_name_or_path, path):
            raise UserError(
                f"--model_name_or_path {args.model_name_or_path} is a checkpoint of --output_dir {out}, "
                f"which this run would replace: pass --resume_from_checkpoint {path} to continue that "
                f"run, or choose another --output_dir"
            )
    return Plan(replace=replace)


def begin(output_dir: str, the_plan: Plan, model_name_or_path: str) -> None:
    """Apply ``the_plan`` right before training: the previous checkpoints renamed into ``.replaced/`` (kept until
    :func:`finish`), then ``run_status.json`` = running."""
    if the_plan.replace:
        trash = os.path.join(output_dir, REPLACED_DIR)
        os.makedirs(trash, exist_ok=True)
        for path in the_plan.replace:
            os.replace(path, os.path.join(trash, f"{len(os.listdir(trash))}-{os.path.basename(path)}"))
            fault_point(f"replace {path}")
        fsync_dir(output_dir)
    write_status(
        output_dir,
        "running",
        started=time.strftime("%Y-%m-%d %H:%M:%S"),
        model_name_or_path=model_name_or_path,
        resumed_from=the_plan.resume_from,
    )


def publish(output_dir: str, write: Callable[[str], None]) -> None:
    """Write the final model into ``output_dir`` itself: ``write(dir)`` builds it complete in ``.final_model``
    (atomic_dir), then its files are renamed in one by one; :func:`recover` finishes the renames after a kill."""
    with atomic_dir(os.path.join(output_dir, FINAL_STAGE)) as tmp:
        write(tmp)
    _move_stage_in(output_dir)


def _move_stage_in(output_dir: str) -> None:
    stage = os.path.join(output_dir, FINAL_STAGE)
    for name in sorted(os.listdir(stage)):
        os.replace(os.path.join(stage, name), os.path.join(output_dir, name))
        fault_point(f"publish {name}")
    fsync_dir(output_dir)
    os.rmdir(stage)


def finish(output_dir: str, **info) -> None:
    """Mark the run complete (written last), then delete what it replaced."""
    status = read_status(output_dir) or {}
    write_status(
        output_dir,
        "complete",
        **{k: v for k, v in status.items() if k not in ("status", "pid", "host")},
        finished=time.strftime("%Y-%m-%d %H:%M:%S"),
        **info,
    )
    shutil.rmtree(os.path.join(output_dir, REPLACED_DIR), ignore_errors=True)


def write_json(path: str, obj) -> None:
    """A results file of the output dir (``all_results.json`` ...), written atomically."""
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")
