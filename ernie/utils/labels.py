"""Label files: ``label.txt`` beside a fine-tuned or exported model, one label a line, line number = class id.

The one reader and writer of that file, shared by fine-tuning (``ernie.finetune``), deployment (``ernie.deploy``)
and the HF converter (``ernie.convert``: ``id2label`` <-> ``label.txt``), so that none imports another to find a
model's labels.
"""

from __future__ import annotations

import os

from .errors import UserError
from .io import atomic_write

LABEL_FILE = "label.txt"


def read_label_file(directory: str) -> list[str] | None:
    """Labels from ``directory/label.txt`` (None when there is none; an empty file is a ``UserError``)."""
    path = os.path.join(directory, LABEL_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            labels = [line.rstrip("\r\n") for line in f if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read the label file ({e})") from None
    if not labels:
        raise UserError(f"{path}: empty label file")
    return labels


def write_label_file(directory: str, labels: list[str]) -> None:
    """Write ``directory/label.txt`` atomically."""
    with atomic_write(os.path.join(directory, LABEL_FILE), "w") as f:
        f.write("".join(f"{label}\n" for label in labels))
