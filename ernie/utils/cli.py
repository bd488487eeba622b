"""The argument toolkit of every entry point: one ``str2bool`` and one ``ArgumentParser`` whose errors are one line.

``ArgumentParser`` is argparse's parser with ``error()`` raising :class:`~ernie.utils.UserError` instead of printing
the usage block and exiting; entry points decorated with :func:`~ernie.utils.cli_main` turn that into the single
``error: <message>`` line (exit status 2) the design promises. ``--help`` still prints the full help.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re

from .errors import UserError

TRUE_WORDS = ("1", "true", "t", "yes", "y", "on")
FALSE_WORDS = ("0", "false", "f", "no", "n", "off")


def str2bool(value) -> bool:
    """``true/false`` flag values (PaddleNLP style): 1/0, true/false, t/f, yes/no, y/n, on/off, any case."""
    if isinstance(value, bool):
        return value
    v = str(value).strip().lower()
    if v in TRUE_WORDS:
        return True
    if v in FALSE_WORDS:
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {value!r}")


def field_annotation(f: dataclasses.Field) -> tuple[str, bool]:
    """``(scalar type name, accepts None)`` of a flag dataclass field: ``int``, ``Optional[int]`` and ``int | None``
    (annotations are strings under ``from __future__ import annotations``). The one reader of flag annotations, for
    the pretraining and the fine-tuning parsers."""
    text = str(f.type).replace(" ", "")
    if text.startswith("Optional[") and text.endswith("]"):
        return text[len("Optional[") : -1], True
    parts = text.split("|")
    return next(p for p in parts if p != "None"), "None" in parts


def require_finite(flags) -> None:
    """``UserError("--NAME: VALUE is not a finite number")`` for the first float field of the flag dataclass
    ``flags`` that is NaN or infinite (every float flag of every parser is checked this way)."""
    for f in dataclasses.fields(flags):
        value = getattr(flags, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"--{f.name}: {value} is not a finite number")


def require_positive(args, names) -> None:
    """``UserError("--NAME must be >= 1")`` for the first of ``names`` whose value on ``args`` is below 1 (a None
    value, an unset optional flag, passes)."""
    for name in names:
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name} must be >= 1")


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors: a bad or missing flag raises ``UserError(message)``; no abbreviations (a prefix
    of a flag is not taken for it: ``--fp16`` never becomes ``--fp16_opt_level``); a negative number in exponent
    notation (``--max_lr -1e-3``) is a value, not a flag."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"^-((\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|inf|infinity|nan)$", re.I)

    def error(self, message):
        raise UserError(message)
