"""The pretraining config dataclasses (ernie.training.args) as a type checker and a user see them.

``DataArgs`` is a plain ``@dataclass`` that inherits the dataset's flags from their one owner
(``data_tools.ernie_dataset.ErnieDatasetFlags``); the flags, their order, defaults and help are what they were when
it was built with ``make_dataclass``; ``--help`` prints (a ``%`` in a help text once made it crash); YAML values are
typed by the field annotations in both spellings (``Optional[int]`` and ``int | None``).
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import typing

import pytest

from data_tools.ernie_dataset import ErnieDatasetConfig, ErnieDatasetFlags
from ernie.training import args as A
from ernie.utils import UserError, field_annotation

DATA_FLAGS = [
    "input_dir",
    "max_seq_len",
    "masked_lm_prob",
    "short_seq_prob",
    "binary_head",
    "max_ngrams",
    "favor_longer_ngram",
    "masking",
    "masking_schedule",
    "knowledge_mix",
    "split",
    "share_folder",
    "num_workers",
]


def test_data_args_is_a_dataclass_with_the_dataset_flags_in_order():
    assert dataclasses.is_dataclass(A.DataArgs) and A.SECTIONS["data"] is A.DataArgs
    assert [f.name for f in dataclasses.fields(A.DataArgs)] == DATA_FLAGS
    hints = typing.get_type_hints(A.DataArgs)  # what a type checker resolves
    assert hints["max_seq_len"] is int and hints["masking_schedule"] == str | None
    assert hints["input_dir"] is str and hints["num_workers"] is int
    owner = {f.name: f for f in dataclasses.fields(ErnieDatasetFlags)}
    for f in dataclasses.fields(A.DataArgs):
        if f.name in owner:  # declared once: default and help are the owner's
            assert (f.default, dict(f.metadata)) == (owner[f.name].default, dict(owner[f.name].metadata))
    d = A.DataArgs(input_dir="corpus", max_seq_len=64, masking="knowledge", num_workers=0)
    config = d.dataset_config(seed=7, samples_per_step=16)
    assert isinstance(config, ErnieDatasetConfig)
    assert (config.max_seq_len, config.masking, config.seed, config.samples_per_step) == (64, "knowledge", 7, 16)
    assert config.split == ErnieDatasetConfig().split


def test_help_prints_every_section():
    proc = subprocess.run(
        [sys.executable, "-c", "from ernie.training.args import build_parser; build_parser().parse_args(['--help'])"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "head_dim % 8 == 0" in proc.stdout  # the help text with a % sign
    for flag in ["--input_dir", "--masking_schedule", "--num_workers", "--max_lr", "--output_dir", "--eval_iters"]:
        assert flag in proc.stdout
    assert proc.stdout.index("--input_dir") < proc.stdout.index("--max_seq_len") < proc.stdout.index("--num_workers")


@pytest.mark.parametrize(
    "annotation, expected",
    [
        ("int", ("int", False)),
        ("Optional[int]", ("int", True)),
        ("int | None", ("int", True)),
        ("None | str", ("str", True)),
    ],
)
def test_annotation_spellings(annotation, expected):
    field = dataclasses.field(default=None)
    field.type = annotation
    assert field_annotation(field) == expected


def test_yaml_null_only_for_optional_fields(tmp_path):
    fields = {f.name: f for cls in A.SECTIONS.values() for f in dataclasses.fields(cls)}
    assert A._coerce("masking_schedule", None, fields["masking_schedule"], "c.yaml") is None  # str | None
    assert A._coerce("decay_steps", None, fields["decay_steps"], "c.yaml") is None  # Optional[int]
    assert A._coerce("max_seq_len", "64", fields["max_seq_len"], "c.yaml") == 64
    with pytest.raises(UserError, match="c.yaml: max_seq_len may not be null"):
        A._coerce("max_seq_len", None, fields["max_seq_len"], "c.yaml")
    with pytest.raises(UserError, match="c.yaml: masking: 'bert' is not one of"):
        A._coerce("masking", "bert", fields["masking"], "c.yaml")
