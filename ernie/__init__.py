"""ERNIE 1.0 on PaddlePaddle: tokenizer, model, pretraining, fine-tuning and export.

Public names are imported lazily, so that the data tools (which need only the tokenizer) do not import Paddle.
"""

from __future__ import annotations

import importlib
import warnings as _warnings

# Paddle warns on every import that ccache (for building custom C++ ops) is missing; nothing here builds ops.
_warnings.filterwarnings("ignore", message="No ccache found", category=UserWarning)

__version__ = "0.1.0"

_EXPORTS = {
    "ErnieTokenizer": "ernie.tokenizer",
    "ErnieConfig": "ernie.configuration",
    "ErnieModel": "ernie.modeling",
    "ErnieForPretraining": "ernie.modeling",
    "ErniePretrainingCriterion": "ernie.modeling",
    "ErnieForSequenceClassification": "ernie.modeling",
    "ErnieForTokenClassification": "ernie.modeling",
    "ErnieForQuestionAnswering": "ernie.modeling",
    "ErnieForMaskedLM": "ernie.modeling",
    "ErniePretrainedModel": "ernie.modeling",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ernie' has no attribute {name!r}")
