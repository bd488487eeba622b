"""ErnieConfig: the model's hyper-parameters, stored as JSON under PaddleNLP's key names.

A config is read from a checkpoint directory (``config.json``, else the legacy ``model_config.json``), from a JSON
file, or by name from the configs shipped in ``configs/models/`` (``ernie-1.0-base-zh``, ``ernie-1.0-large-zh``,
``ernie-tiny-cpu`` ...; every PaddleNLP name of ``ernie.hub.MODELS`` has its file there: ``ernie-3.0-base-zh``,
``ernie-tiny`` ..., PaddleNLP's config entry over its ErnieConfig defaults; a hub name without one is read from
``ernie.hub``). Keys PaddleNLP writes that do not change the network (``architectures``,
``paddlenlp_version``, ``dtype`` ...) are accepted and dropped. An HF transformers ERNIE directory is read through
:func:`hf_config` (the key mapping lives in ``ernie.weights``, the numpy-only module this one builds on).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ernie import hub
from ernie.utils import UserError, atomic_write
from ernie.weights import CONFIG_NAME, LEGACY_CONFIG_NAME, config_dict_from_hf, is_hf_dir, read_json_object

MODELS_DIR = (
    Path(__file__).resolve().parent / "configs" / "models"
)  # package data (a symlink to ../configs in a checkout)


# "eager": matmul + softmax + additive bias (PaddleNLP's ERNIE); opt-in: "sdpa" (F.scaled_dot_product_attention,
# Paddle picks flash / memory-efficient / math), "flash" (flash attention only when Paddle's predicates allow it)
ATTENTION_CHOICES = ("eager", "sdpa", "flash")
# position_embedding_init "sinusoidal": the table's root-mean-square (5x the default initializer_range; chosen on the
# demo's validation loss, docs/results/demo_recipe.md)
DEFAULT_SINUSOIDAL_RMS = 0.1


@dataclass
class ErnieConfig:
    """ERNIE 1.0 hyper-parameters (defaults: ernie-1.0-base-zh).

    The field names are PaddleNLP's, so a config.json moves between the two libraries unchanged.
    ``use_recompute`` (recompute each encoder layer in backward), ``attention`` (the attention kernel: "eager", the
    matmul/softmax path PaddleNLP's ERNIE runs, or the opt-in "sdpa" / "flash", see ernie.ops.choose_attention) and
    ``num_labels`` / ``classifier_dropout`` (task heads) are run-time options; ``position_embedding_init`` only decides
    the initial value of a model built without weights (see :meth:`sinusoidal_position_rms`); the rest fix the shapes
    of the weights.
    """

    vocab_size: int = 18000
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 513
    type_vocab_size: int = 2
    task_type_vocab_size: int = 3
    use_task_id: bool = False
    task_id: int = 0
    initializer_range: float = 0.02
    pad_token_id: int = 0
    layer_norm_eps: float = 1e-12
    pool_act: str = "tanh"
    num_labels: int = 2
    classifier_dropout: float | None = None
    use_recompute: bool = False
    attention: str = "eager"
    # "normal" (truncated normal(0, initializer_range), as every other weight: PaddleNLP's and BERT's) or "sinusoidal"
    # / "sinusoidal:RMS" (the Transformer's sin/cos table scaled to root-mean-square RMS, default 0.1, as the starting
    # value of the learned position embeddings: what lets a small model learn to attend to its neighbours early)
    position_embedding_init: str = "normal"
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        if self.hidden_size % self.num_attention_heads:
            raise UserError(
                f"hidden_size ({self.hidden_size}) must be a multiple of num_attention_heads "
                f"({self.num_attention_heads})"
            )
        if self.hidden_act not in ("gelu", "relu", "tanh"):
            raise UserError(f"hidden_act {self.hidden_act!r} is not supported (gelu, relu, tanh)")
        if self.attention not in ATTENTION_CHOICES:
            raise UserError(f"attention {self.attention!r} is not one of {', '.join(ATTENTION_CHOICES)}")
        self.sinusoidal_position_rms()  # validates position_embedding_init

    def sinusoidal_position_rms(self) -> float | None:
        """The root-mean-square of the sinusoidal initial position embeddings, or None for the normal init."""
        kind, colon, rms = self.position_embedding_init.partition(":")
        if kind == "normal" and not colon:
            return None
        if kind == "sinusoidal":
            try:
                value = float(rms) if colon else DEFAULT_SINUSOIDAL_RMS
            except ValueError:
                value = math.nan
            if math.isfinite(value) and value > 0:
                return value
        raise UserError(
            f"position_embedding_init {self.position_embedding_init!r} is not normal, sinusoidal or sinusoidal:RMS "
            "(a positive number, e.g. sinusoidal:0.1)"
        )

    # ---- dict / JSON -------------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> ErnieConfig:
        """Build from a PaddleNLP-style dict. Unknown keys are kept in ``extra`` (and written back on save)."""
        if "init_args" in d:  # legacy PaddleNLP model_config.json: {"init_args": [{...}], "init_class": ...}
            args = d["init_args"]
            inner = args[0] if args and isinstance(args[0], dict) else {}
            if "init_args" in inner:  # task model wrapping ErnieModel
                inner = {**inner["init_args"][0], **{k: v for k, v in inner.items() if k != "init_args"}}
            d = {**inner, **{k: v for k, v in d.items() if k not in ("init_args", "init_class")}}
        names = {f.name: f for f in dataclasses.fields(cls) if f.name != "extra"}
        kwargs: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in d.items():
            if key in names:
                kwargs[key] = _coerce(value, names[key], source)
            elif key == "num_classes":
                kwargs["num_labels"] = int(value)
            elif key == "id2label" and isinstance(value, dict):
                kwargs.setdefault("num_labels", len(value))
                extra[key] = value
            elif key not in ("init_class",):
                extra[key] = value
        return cls(**kwargs, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        """PaddleNLP-compatible dict (run-time only options included; PaddleNLP ignores the ones it lacks)."""
        d = {k: v for k, v in dataclasses.asdict(self).items() if k != "extra"}
        out = dict(self.extra)
        out.update(d)
        out.setdefault("model_type", "ernie")
        return dict(sorted(out.items()))

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> ErnieConfig:
        """Read a JSON config file; a missing or malformed file is a :class:`UserError` naming it."""
        path = str(path)
        return cls.from_dict(read_json_object(path, "config file"), source=path)

    @classmethod
    def from_pretrained(cls, name_or_dir: str | os.PathLike, **overrides) -> ErnieConfig:
        """Config of a checkpoint directory, a JSON file, or a name in ``configs/models/``.

        ``overrides`` replace fields after loading (e.g. ``vocab_size=len(tokenizer.vocab)``). An HF transformers
        ERNIE directory is read through :func:`hf_config`.
        """
        name = str(name_or_dir)
        builtin = hub.model_config(name)
        if is_hf_dir(name):
            cfg = hf_config(name)
        elif builtin is not None and not os.path.exists(name) and not (MODELS_DIR / f"{name}.json").is_file():
            cfg = cls.from_dict(builtin, source=f"PaddleNLP's {name}")  # a name of ernie.hub without a shipped file
        else:
            cfg = cls.from_file(resolve_config_file(name_or_dir))
        return cfg.replace(**overrides) if overrides else cfg

    def replace(self, **changes) -> ErnieConfig:
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise UserError(f"unknown ErnieConfig field(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def save_pretrained(self, save_dir: str | os.PathLike) -> None:
        """Write ``config.json`` and ``model_config.json`` (same content) into ``save_dir`` atomically."""
        text = json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"
        for name in (CONFIG_NAME, LEGACY_CONFIG_NAME):
            with atomic_write(os.path.join(save_dir, name), "w") as f:
                f.write(text)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


def hf_config(directory: str) -> ErnieConfig:
    """Our :class:`ErnieConfig` of an HF transformers ERNIE directory (HF defaults filled, HF-only keys dropped)."""
    path = os.path.join(directory, CONFIG_NAME)
    return ErnieConfig.from_dict(config_dict_from_hf(read_json_object(path), path), source=path)


def available_configs() -> list[str]:
    """Names of the configs shipped in ``configs/models/``."""
    return sorted(p.stem for p in MODELS_DIR.glob("*.json")) if MODELS_DIR.is_dir() else []


def resolve_config_file(name_or_dir: str | os.PathLike) -> str:
    """Path of the config JSON for a checkpoint dir, a JSON file, or a shipped config name."""
    s = str(name_or_dir)
    if os.path.isdir(s):
        for name in (CONFIG_NAME, LEGACY_CONFIG_NAME):
            if os.path.isfile(os.path.join(s, name)):
                return os.path.join(s, name)
        raise UserError(f"{s}: no {CONFIG_NAME} or {LEGACY_CONFIG_NAME} in this directory")
    if os.path.isfile(s):
        return s
    shipped = MODELS_DIR / f"{s}.json"
    if shipped.is_file():
        return str(shipped)
    raise UserError(
        f"{s}: not a checkpoint directory, a config file or a known model name "
        f"(known: {', '.join(available_configs()) or 'none'})"
    )


def _coerce(value: Any, f: dataclasses.Field, source: str) -> Any:
    """Check/convert a JSON value to the field's type; a wrong type is a UserError naming the key."""
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    try:
        if kind == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "float | None":
            return None if value is None else float(value)
        if kind == "bool":
            if not isinstance(value, bool):
                raise ValueError
            return value
        if kind == "str":
            if not isinstance(value, str):
                raise ValueError
            return value
    except (TypeError, ValueError):
        raise UserError(f"{source}: {f.name}: expected {kind}, got {value!r}") from None
    return value
