"""Run logging on rank 0: console lines in PaddleNLP's shape, ``output_dir/train_log.jsonl`` (one JSON record a
line, read by scripts/plot_logs.py) and VisualDL scalars under ``output_dir/visualdl``."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import IO, Any

from ernie.utils import atomic_write

LOG_FILE = "train_log.jsonl"


def console(message: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    print(f"[{stamp}] {message}", flush=True)


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def truncate_log(path: str, last_step: int) -> None:
    """Drop records after ``last_step`` (written by a run that died after its last checkpoint), so that the
    resumed run's records follow without duplicates."""
    if not os.path.isfile(path):
        return
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    kept = []
    for line in lines:
        try:
            if json.loads(line).get("step", 0) <= last_step:
                kept.append(line)
        except ValueError:  # a line cut short by the kill
            continue
    with atomic_write(path, "w") as f:
        f.writelines(kept)


class RunLogger:
    """Writes nothing unless ``enabled`` (rank 0). Records after ``start_step`` left by an earlier attempt are
    dropped first."""

    def __init__(self, output_dir: str, enabled: bool, start_step: int):
        self.enabled = enabled
        self.path = os.path.join(output_dir, LOG_FILE)
        self.writer = None
        self._file: IO[str] | None = None
        if not enabled:
            return
        os.makedirs(output_dir, exist_ok=True)
        truncate_log(self.path, start_step)  # a fresh run (0) or a resumed one continues the log without duplicates
        self._file = open(self.path, "a", encoding="utf-8")
        try:
            from visualdl import LogWriter
        except ImportError:
            warn("visualdl is not installed (pip install visualdl): no VisualDL records, jsonl log only")
        else:
            self.writer = LogWriter(logdir=os.path.join(output_dir, "visualdl"))

    def record(self, event: str, step: int, **values: Any) -> None:
        """One jsonl record + VisualDL scalars ``<event>/<name>``."""
        if self._file is None:  # not enabled
            return
        self._file.write(json.dumps({"event": event, "step": step, **values}) + "\n")
        self._file.flush()
        if self.writer is not None:
            for name, value in values.items():
                if isinstance(value, (int, float)):
                    self.writer.add_scalar(tag=f"{event}/{name}", value=value, step=step)

    def text(self, tag: str, value: str, step: int = 0) -> None:
        if self.enabled and self.writer is not None:
            self.writer.add_text(tag=tag, text_string=value, step=step)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self.writer is not None:
            self.writer.close()
