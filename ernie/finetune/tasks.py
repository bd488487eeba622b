"""The fine-tuning task contract: one :class:`Task` subclass per task owns everything task-specific.

A task class declares its ``name`` (the ``task`` of deploy_config.json and of ``--task`` flags), the model class
it fine-tunes (``model_class``, a name in :mod:`ernie.modeling`), its file reader (``read_file``), its label
discovery (``labels_from_examples``, ``example_labels``), its metrics (``metrics``, ``metric_names``,
``default_metric``), its batch keys (``input_names`` fed to the model, ``label_keys`` read by the loss), its export
signature (``input_names`` -> ``output_names``), its deployment predictor (``predictor``: ``"module:Class"``),
its built-in datasets (``builtin_datasets``) and its task-only flags (``Options``, a dataclass whose fields become
command-line flags). An instance, made with the tokenizer, the label names and the flags, turns examples into
features (``encode``), features into batches (``collate``), runs the model (``forward``) and scores or writes its
outputs. :mod:`ernie.finetune.recipe` and :mod:`ernie.finetune.runner` only call these methods.

Adding a task = one module in ``ernie/finetune/`` with the subclass (found by :func:`all_tasks`), plus its entry
function in :mod:`ernie.finetune_cli`. Task modules import the readers (:mod:`ernie.finetune.readers`) and the
built-in data (:mod:`data_tools.corpus`), never the runner or the CLI.

A feature is a dict with numpy arrays for the model inputs and labels, and optionally plain-Python bookkeeping
(e.g. which example a QA window came from); a batch is a dict of numpy arrays.
"""

from __future__ import annotations

import csv
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import paddle
import paddle.nn.functional as F

import ernie.finetune
import ernie.modeling
from ernie.utils import UserError, atomic_write

IGNORE_INDEX = -100


def pad_stack(arrays: list[np.ndarray], value: int, length: int | None = None) -> np.ndarray:
    """Right-pad 1-D int arrays to ``length`` (default: the longest) -> [B, length] int64."""
    length = length or max(len(a) for a in arrays)
    out = np.full((len(arrays), length), value, dtype=np.int64)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
    return out


def cross_entropy(logits: paddle.Tensor, labels: paddle.Tensor) -> paddle.Tensor:
    """Mean cross-entropy over the last axis, ignoring label ``IGNORE_INDEX``."""
    num_classes = logits.shape[-1]
    return F.cross_entropy(logits.reshape([-1, num_classes]), labels.reshape([-1]), ignore_index=IGNORE_INDEX)


@dataclass
class NoOptions:
    """A task without task-only flags."""


class Task:
    """Base class of the fine-tuning tasks (see the module docstring)."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    model_class: ClassVar[str] = ""
    input_names: ClassVar[tuple[str, ...]] = ("input_ids", "token_type_ids")
    label_keys: ClassVar[tuple[str, ...]] = ("labels",)
    output_names: ClassVar[tuple[str, ...]] = ("logits",)
    default_metric: ClassVar[str] = "loss"
    metric_names: ClassVar[tuple[str, ...]] = ("loss",)
    uses_label_set: ClassVar[bool] = True  # a label.txt and a classifier head of len(labels) outputs
    min_labels: ClassVar[int] = 1
    builtin_datasets: ClassVar[dict[str, Callable]] = {}
    file_format: ClassVar[str] = ""
    predictor: ClassVar[str | None] = None
    Options: ClassVar[type] = NoOptions

    def __init__(self, tokenizer, labels: list[str], max_seq_length: int, options=None):
        self.tokenizer, self.labels, self.max_seq_length = tokenizer, list(labels), max_seq_length
        self.label2id = {label: i for i, label in enumerate(self.labels)}
        self.options = options if options is not None else self.Options()

    # ------------------------------------------------------------------------------------------------- data
    @classmethod
    def read_file(cls, path: str) -> list[dict]:
        """Examples of one data file (each with ``"source": "path:line"`` when it has a line)."""
        raise NotImplementedError

    @classmethod
    def training_examples(cls, examples: list[dict], source: str) -> list[dict]:
        """The examples of a training file (``source``) that can become a training feature; the reader already
        skipped the unusable rows, so by default all of them (QA drops e.g. answers not in the context)."""
        return examples

    @classmethod
    def example_labels(cls, example: dict) -> list[str] | None:
        """The label names an example carries, or None when it is unlabelled."""
        raise NotImplementedError

    @classmethod
    def labels_from_examples(cls, examples: list[dict]) -> list[str]:
        """The label set found in ``examples``, in a fixed order (numbers numerically)."""
        found = {x for ex in examples for x in (cls.example_labels(ex) or [])}
        return sorted(found, key=_label_sort_key)

    @classmethod
    def check_labels(cls, examples: list[dict], labels: list[str], where: str) -> None:
        """``UserError`` if an example carries a label outside ``labels``."""
        known = set(labels)
        for i, ex in enumerate(examples):
            bad = [x for x in (cls.example_labels(ex) or []) if x not in known]
            if bad:
                at = ex.get("source") or f"{where}, example {i + 1}"
                raise UserError(f"{at}: label {bad[0]!r} is not among the model's labels {labels}")

    @classmethod
    def first_unlabelled(cls, examples: list[dict]) -> tuple[int, dict] | None:
        """(index, example) of the first example without labels, or None."""
        return next(((i, ex) for i, ex in enumerate(examples) if cls.example_labels(ex) is None), None)

    # ------------------------------------------------------------------------------------------------ model
    @classmethod
    def model_cls(cls):
        return getattr(ernie.modeling, cls.model_class)

    @classmethod
    def build_model(cls, name_or_dir: str, labels: list[str], **config_overrides):
        """The task model from a checkpoint dir or a config name; the head has ``len(labels)`` outputs;
        ``config_overrides`` replace config fields (fine-tuning dropout)."""
        overrides = {"num_labels": len(labels)} if cls.uses_label_set else {}
        return cls.model_cls().from_pretrained(name_or_dir, **overrides, **config_overrides)

    # ------------------------------------------------------------------------------------- features / batches
    def encode(self, examples: list[dict]) -> list[dict]:
        raise NotImplementedError

    def collate(self, features: list[dict]) -> dict[str, np.ndarray]:
        batch = {
            "input_ids": pad_stack([f["input_ids"] for f in features], self.tokenizer.pad_token_id),
            "token_type_ids": pad_stack([f["token_type_ids"] for f in features], 0),
        }
        return batch

    def forward(self, model, batch: dict[str, np.ndarray]):
        """The model's raw outputs (a tensor or a tuple of tensors) for one batch."""
        return model(*(paddle.to_tensor(batch[k]) for k in self.input_names))

    def has_labels(self, batch: dict[str, np.ndarray]) -> bool:
        return all(k in batch for k in self.label_keys)

    def loss(self, raw, batch: dict[str, np.ndarray]) -> paddle.Tensor:
        return cross_entropy(raw, paddle.to_tensor(batch["labels"]))

    def outputs(self, raw, batch: dict[str, np.ndarray]) -> list:
        """Per-feature outputs kept after a forward (numpy)."""
        raise NotImplementedError

    def metrics(self, outputs: list, features: list[dict]) -> dict[str, float]:
        raise NotImplementedError

    def write_predictions(
        self, output_dir: str, examples: list[dict], features: list[dict], outputs: list, split: str = "test"
    ) -> str:
        """Write the predictions file of ``split`` (``test`` / ``eval``) into ``output_dir``; returns its path."""
        raise NotImplementedError


def _label_sort_key(label: str):
    return (0, int(label), "") if label.lstrip("-").isdigit() else (1, 0, label)


def write_tsv(path: str, header: list[str], rows: list[list]) -> None:
    """A predictions table (``write_predictions`` of the tsv tasks), written atomically."""
    with atomic_write(path, "w") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
        w.writerow(header)
        w.writerows(rows)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def all_tasks() -> dict[str, type[Task]]:
    """Every task class, by name: the modules of ``ernie.finetune`` are imported and their Task subclasses kept."""
    pkg = ernie.finetune
    for info in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"{pkg.__name__}.{info.name}")
    found: dict[str, type[Task]] = {}
    stack = list(Task.__subclasses__())
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if cls.name:
            found[cls.name] = cls
    return found


def get_task(name: str, flag: str = "--task") -> type[Task]:
    tasks = all_tasks()
    if name not in tasks:
        raise UserError(f"{flag} {name}: unknown task; choose one of {', '.join(sorted(tasks))}")
    return tasks[name]


def task_of_architecture(architecture: str) -> type[Task] | None:
    """The task whose model class is ``architecture`` (a config's ``architectures[0]``), or None."""
    return next((t for t in all_tasks().values() if t.model_class == architecture), None)
