"""The on-disk format of a model directory, numpy only: file names, weight names ours <-> HF, HF weights and config.

Contract:

* **File names** (the one owner of each): ``WEIGHTS_NAME`` (``model_state.pdparams``, ours = PaddleNLP's weights),
  ``CONFIG_NAME`` / ``LEGACY_CONFIG_NAME`` (``config.json`` / PaddleNLP's older ``model_config.json``) and HF
  transformers' weight files (``model.safetensors``, a sharded ``model.safetensors.index.json``,
  ``pytorch_model.bin``). Pretraining checkpoints, fine-tuned models and exports all name their weights
  ``WEIGHTS_NAME``.
* **Weight names** (:func:`state_to_hf`, :func:`state_from_hf`): our (PaddleNLP's) names and layout <-> HF's
  (``encoder.layers.i.self_attn.q_proj`` <-> ``encoder.layer.i.attention.self.query`` ...); Linear weights are stored
  [in, out] here and [out, in] in PyTorch (transposed); the MLM decoder tied to the word embeddings (written once, an
  untied one is refused); the decoder bias (``decoder_bias`` <-> ``cls.predictions.bias``); HF's ``position_ids`` /
  ``token_type_ids`` buffers (checked, not stored); ERNIE 3.0's ``task_type_embeddings``. A weight name neither side
  knows is an error naming it; nothing is dropped silently. Arrays are copied bit for bit.
* **Configs** (:func:`config_to_hf`, :func:`config_dict_from_hf`): our config dict (PaddleNLP keys) <-> HF's
  ErnieConfig dict (HF defaults filled, keys of one side only dropped, unsupported variants refused).
* **Reading** (:func:`is_hf_dir`, :func:`read_hf_weights`, :func:`read_hf_state`, :func:`read_json_object`): HF
  weights as numpy arrays (safetensors' numpy API; ``pytorch_model.bin`` only when torch is installed).

Layer: the bottom of the model layer. It imports numpy, ``ernie.utils`` and, when reading HF weights, safetensors
only (never Paddle, never ``ernie.configuration`` / ``ernie.modeling``, which build on it); reading
``model_state.pdparams`` needs Paddle and lives in ``ernie.modeling.read_state_dict``; ``ernie.convert`` is the
command line on top.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from typing import Any

import numpy as np

from ernie.utils import UserError

WEIGHTS_NAME = "model_state.pdparams"  # ours / PaddleNLP's weights file in every model directory
CONFIG_NAME = "config.json"  # ours, PaddleNLP's and HF's
LEGACY_CONFIG_NAME = "model_config.json"  # PaddleNLP's older name, still written beside config.json
HF_SAFETENSORS = "model.safetensors"
HF_SAFETENSORS_INDEX = "model.safetensors.index.json"
HF_TORCH_WEIGHTS = "pytorch_model.bin"
HF_WEIGHT_FILES = (HF_SAFETENSORS, HF_SAFETENSORS_INDEX, HF_TORCH_WEIGHTS)

# our class name -> HF class name
ARCHITECTURES = {
    "ErnieModel": "ErnieModel",
    "ErnieForPretraining": "ErnieForPreTraining",
    "ErnieForMaskedLM": "ErnieForMaskedLM",
    "ErnieForSequenceClassification": "ErnieForSequenceClassification",
    "ErnieForTokenClassification": "ErnieForTokenClassification",
    "ErnieForQuestionAnswering": "ErnieForQuestionAnswering",
}
HF_ARCHITECTURES = {v: k for k, v in ARCHITECTURES.items()}
CLASSIFIERS = ("ErnieForSequenceClassification", "ErnieForTokenClassification")

# HF ErnieConfig defaults: a key absent from an HF config.json means these, not our defaults.
HF_CONFIG_DEFAULTS = {
    "vocab_size": 30522,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "task_type_vocab_size": 3,
    "use_task_id": False,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-12,
    "pad_token_id": 0,
    "classifier_dropout": None,
}
# Keys of HF's PretrainedConfig that mean nothing to our model (dropped when reading an HF config).
HF_ONLY_CONFIG_KEYS = {
    "transformers_version",
    "torch_dtype",
    "use_cache",
    "position_embedding_type",
    "is_decoder",
    "add_cross_attention",
    "_name_or_path",
    "return_dict",
    "output_hidden_states",
    "output_attentions",
    "torchscript",
    "tie_word_embeddings",
    "gradient_checkpointing",
    "bos_token_id",
    "eos_token_id",
    "sep_token_id",
    "problem_type",
    "tokenizer_class",
    "label2id",
    "model_type",
    "architectures",
}
# Keys of PaddleNLP's config that mean nothing to HF (dropped when writing an HF config).
PADDLE_ONLY_CONFIG_KEYS = {
    "paddlenlp_version",
    "dtype",
    "init_class",
    "architectures",
    "model_type",
    "num_labels",
    "label2id",
    "id2label",
    "num_classes",
}


# ---- weight names ---------------------------------------------------------------------------------------------------
# (ours, HF, is a Linear weight). {i}: layer index, {w}: weight|bias. Body names are relative to the encoder ("ernie."
# prefix in task models, none in a bare ErnieModel); head names are absolute.
_BODY = [
    ("embeddings.word_embeddings.weight", "embeddings.word_embeddings.weight", False),
    ("embeddings.position_embeddings.weight", "embeddings.position_embeddings.weight", False),
    ("embeddings.token_type_embeddings.weight", "embeddings.token_type_embeddings.weight", False),
    ("embeddings.task_type_embeddings.weight", "embeddings.task_type_embeddings.weight", False),
    ("embeddings.layer_norm.{w}", "embeddings.LayerNorm.{w}", False),
    ("encoder.layers.{i}.self_attn.q_proj.{w}", "encoder.layer.{i}.attention.self.query.{w}", True),
    ("encoder.layers.{i}.self_attn.k_proj.{w}", "encoder.layer.{i}.attention.self.key.{w}", True),
    ("encoder.layers.{i}.self_attn.v_proj.{w}", "encoder.layer.{i}.attention.self.value.{w}", True),
    ("encoder.layers.{i}.self_attn.out_proj.{w}", "encoder.layer.{i}.attention.output.dense.{w}", True),
    ("encoder.layers.{i}.norm1.{w}", "encoder.layer.{i}.attention.output.LayerNorm.{w}", False),
    ("encoder.layers.{i}.linear1.{w}", "encoder.layer.{i}.intermediate.dense.{w}", True),
    ("encoder.layers.{i}.linear2.{w}", "encoder.layer.{i}.output.dense.{w}", True),
    ("encoder.layers.{i}.norm2.{w}", "encoder.layer.{i}.output.LayerNorm.{w}", False),
    ("pooler.dense.{w}", "pooler.dense.{w}", True),
]
_HEADS = [
    ("cls.predictions.transform.{w}", "cls.predictions.transform.dense.{w}", True),
    ("cls.predictions.layer_norm.{w}", "cls.predictions.transform.LayerNorm.{w}", False),
    ("cls.predictions.decoder_bias", "cls.predictions.bias", False),
    ("cls.seq_relationship.{w}", "cls.seq_relationship.{w}", True),
]
_CLASSIFIER = ("classifier.{w}", "classifier.{w}", True)
_QA_CLASSIFIER = ("classifier.{w}", "qa_outputs.{w}", True)
BASE = "ernie."
WORD_EMBEDDINGS = "embeddings.word_embeddings.weight"


def _compile(template: str) -> re.Pattern:
    pattern = re.escape(template).replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{w\}", r"(?P<w>weight|bias)")
    return re.compile(pattern + "$")


def _rename(key: str, architecture: str | None, to_hf: bool) -> tuple[str, bool] | None:
    """(new name, transpose?) of one weight, or None when no rule knows it. Only ours -> HF needs the architecture
    (our QA head is ``classifier``, HF's ``qa_outputs``)."""
    if to_hf:
        heads = _HEADS + [_QA_CLASSIFIER if architecture == "ErnieForQuestionAnswering" else _CLASSIFIER]
    else:
        heads = _HEADS + [_CLASSIFIER, _QA_CLASSIFIER]
    body = _BODY
    candidates = (
        [(key, "", heads), (key[len(BASE) :], BASE, body)]
        if key.startswith(BASE)
        else [(key, "", heads), (key, "", body)]
    )
    for name, prefix, rules in candidates:
        for ours, hf, transpose in rules:
            pattern, target = (ours, hf) if to_hf else (hf, ours)
            m = _compile(pattern).match(name)
            if m:
                groups = m.groupdict()
                return prefix + target.format(**groups), transpose and groups.get("w", "weight") == "weight"
    return None


def _unknown(keys: list[str], source: str) -> UserError:
    return UserError(
        f"{source}: weight name(s) this converter does not know (nothing is dropped silently; is it an "
        f"ERNIE 1.0 / 3.0 checkpoint?): {', '.join(sorted(keys))}"
    )


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(a, b)


def _check_tied(state: dict[str, np.ndarray], key: str, same_as: str, source: str) -> None:
    """An alias (tied weight, second name of a bias) must equal the weight it stands for."""
    other = state.get(same_as)
    if other is not None and not _same(state[key], other):
        raise UserError(f"{source}: {key} differs from {same_as}; an untied MLM decoder is not supported")


def _map_names(
    state: dict[str, np.ndarray], architecture: str | None, to_hf: bool, source: str
) -> dict[str, np.ndarray]:
    """Rename (and transpose Linear weights of) every entry; any name without a rule is an error naming it."""
    out: dict[str, np.ndarray] = {}
    unknown = []
    for key, value in state.items():
        renamed = _rename(key, architecture, to_hf)
        if renamed is None:
            unknown.append(key)
            continue
        name, transpose = renamed
        out[name] = np.ascontiguousarray(value.T if transpose else value)
    if unknown:
        raise _unknown(unknown, source)
    return out


def state_to_hf(state: dict[str, np.ndarray], architecture: str, source: str = "state dict") -> dict[str, np.ndarray]:
    """Our (PaddleNLP) weight names and layout -> HF's. Tied aliases are checked and written once."""
    prefix = BASE if any(k.startswith(BASE) for k in state) else ""
    state = dict(state)
    if "cls.predictions.decoder.weight" in state:  # the tied decoder: the word embeddings themselves
        _check_tied(state, "cls.predictions.decoder.weight", prefix + WORD_EMBEDDINGS, source)
        del state["cls.predictions.decoder.weight"]
    if "cls.predictions.decoder.bias" in state:  # second name of decoder_bias
        _check_tied(state, "cls.predictions.decoder.bias", "cls.predictions.decoder_bias", source)
        state.setdefault("cls.predictions.decoder_bias", state.pop("cls.predictions.decoder.bias"))
        state.pop("cls.predictions.decoder.bias", None)
    return _map_names(state, architecture, True, source)


def state_from_hf(state: dict[str, np.ndarray], source: str = "state dict") -> dict[str, np.ndarray]:
    """HF's weight names and layout -> ours (PaddleNLP's). Buffers and tied aliases are checked, not returned."""
    prefix = BASE if any(k.startswith(BASE) for k in state) else ""
    state = dict(state)
    position_ids = state.pop(prefix + "embeddings.position_ids", None)  # buffer of older HF checkpoints
    if position_ids is not None and not np.array_equal(position_ids.reshape(-1), np.arange(position_ids.size)):
        raise UserError(
            f"{source}: {prefix}embeddings.position_ids is not 0..n-1; custom position ids are not supported"
        )
    token_type_ids = state.pop(prefix + "embeddings.token_type_ids", None)
    if token_type_ids is not None and np.any(token_type_ids):
        raise UserError(f"{source}: {prefix}embeddings.token_type_ids is not all zeros")
    if "cls.predictions.decoder.weight" in state:
        _check_tied(state, "cls.predictions.decoder.weight", prefix + WORD_EMBEDDINGS, source)
        del state["cls.predictions.decoder.weight"]
    if "cls.predictions.decoder.bias" in state:
        _check_tied(state, "cls.predictions.decoder.bias", "cls.predictions.bias", source)
        state.setdefault("cls.predictions.bias", state.pop("cls.predictions.decoder.bias"))
        state.pop("cls.predictions.decoder.bias", None)
    return _map_names(state, None, False, source)


# ---- configs --------------------------------------------------------------------------------------------------------
def config_to_hf(config, architecture: str, labels: list[str] | None = None) -> dict[str, Any]:
    """An HF ErnieConfig dict from our :class:`ernie.configuration.ErnieConfig` (every key explicit; ours-only fields
    kept as extras)."""
    if config.type_vocab_size <= 0:
        raise UserError("type_vocab_size 0 (no token-type embeddings) has no equivalent in HF's ERNIE")
    if config.pool_act != "tanh":
        raise UserError(f"pool_act {config.pool_act!r}: HF's ERNIE pooler is tanh only")
    if config.use_task_id and config.task_id != 0:
        warnings.warn(
            f"task_id {config.task_id}: HF's ERNIE uses task_type_ids 0 when none are given; pass "
            f"task_type_ids filled with {config.task_id} to get the same outputs",
            stacklevel=2,
        )
    d = {k: v for k, v in config.to_dict().items() if k not in PADDLE_ONLY_CONFIG_KEYS}
    d.update(
        model_type="ernie",
        architectures=[ARCHITECTURES[architecture]],
        position_embedding_type="absolute",
        torch_dtype="float32",
        tie_word_embeddings=True,
        use_cache=False,
    )
    if architecture in CLASSIFIERS or architecture == "ErnieForQuestionAnswering":
        n = 2 if architecture == "ErnieForQuestionAnswering" else config.num_labels
        if labels is None:
            id2label = config.extra.get("id2label")
            labels = (
                [id2label[str(i)] for i in range(n)]
                if isinstance(id2label, dict) and len(id2label) == n
                else [f"LABEL_{i}" for i in range(n)]
            )
        if len(labels) != n:
            raise UserError(f"{len(labels)} labels for a classifier with {n} outputs")
        d["id2label"] = {str(i): label for i, label in enumerate(labels)}
        d["label2id"] = {label: i for i, label in enumerate(labels)}
    else:  # no head that uses it: kept for the way back (HF takes a num_labels key too)
        d["num_labels"] = config.num_labels
    return dict(sorted(d.items()))


def config_dict_from_hf(d: dict[str, Any], source: str) -> dict[str, Any]:
    """Our config dict (PaddleNLP keys) from an HF ERNIE config.json dict: HF defaults filled, HF-only keys dropped,
    unsupported variants refused."""
    if d.get("model_type", "ernie") != "ernie":
        raise UserError(f"{source}: model_type {d.get('model_type')!r} is not an ERNIE model")
    if d.get("position_embedding_type", "absolute") != "absolute":
        raise UserError(
            f"{source}: position_embedding_type {d['position_embedding_type']!r}: only 'absolute' is supported"
        )
    if d.get("is_decoder") or d.get("add_cross_attention"):
        raise UserError(f"{source}: a decoder ERNIE (is_decoder / add_cross_attention) is not supported")
    out = {**HF_CONFIG_DEFAULTS, **{k: v for k, v in d.items() if k not in HF_ONLY_CONFIG_KEYS}}
    arch = hf_architecture(d)
    if arch is not None:
        out["architectures"] = [arch]
    return out


def hf_architecture(d: dict[str, Any]) -> str | None:
    """Our class name for the first of an HF config's ``architectures`` (None when it has none we know)."""
    archs = d.get("architectures") or [None]
    return HF_ARCHITECTURES.get(archs[0])


# ---- reading weights ------------------------------------------------------------------------------------------------
def is_hf_dir(directory: str) -> bool:
    """An HF-format directory: HF weights and no ``model_state.pdparams`` (which wins when both are there)."""
    d = str(directory)
    return (
        os.path.isdir(d)
        and not os.path.isfile(os.path.join(d, WEIGHTS_NAME))
        and any(os.path.isfile(os.path.join(d, f)) for f in HF_WEIGHT_FILES)
    )


def read_hf_weights(directory: str) -> tuple[dict[str, np.ndarray], str]:
    """HF weights of a directory as numpy arrays (HF names) and the file they came from."""
    single, index = os.path.join(directory, HF_SAFETENSORS), os.path.join(directory, HF_SAFETENSORS_INDEX)
    files = [single] if os.path.isfile(single) else []
    if not files and os.path.isfile(index):
        shards = read_json_object(index).get("weight_map", {})
        files = [os.path.join(directory, f) for f in sorted(set(shards.values()))]
    if files:
        # delays safetensors: the Paddle 2.6 legacy-export env (ernie/deploy/envs.py) imports the model layer without it
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        state: dict[str, np.ndarray] = {}
        for f in files:
            try:
                state.update(load_file(f))
            except (SafetensorError, OSError, TypeError, ValueError) as e:
                raise UserError(
                    f"{f}: cannot read ({type(e).__name__}: {e}; bfloat16 weights must be converted to float32 first)"
                ) from None
        return state, files[0]
    path = os.path.join(directory, HF_TORCH_WEIGHTS)
    try:
        import torch  # optional (the test extra): only old HF checkpoints need it
    except ImportError:
        raise UserError(f"{path}: reading pytorch_model.bin needs torch (or save the model with safetensors)") from None
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's input problem
        raise UserError(f"{path}: cannot read ({type(e).__name__}: {e})") from None
    return {k: (v.float() if v.dtype == torch.bfloat16 else v).numpy() for k, v in raw.items()}, path


def read_hf_state(directory: str) -> tuple[dict[str, np.ndarray], str]:
    """HF weights of a directory under our names and layout, and the file they came from."""
    hf_state, source = read_hf_weights(directory)
    return state_from_hf(hf_state, source), source


def read_json_object(path: str, what: str = "file") -> dict[str, Any]:
    """A JSON object from ``path``; missing, malformed or non-object files are a :class:`UserError` naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
    except FileNotFoundError:
        raise UserError(f"{path}: {what} not found") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason}); save the {what} as UTF-8") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read the {what} ({e.strerror or e})") from None
    if not isinstance(d, dict):
        raise UserError(f"{path}: expected a JSON object")
    return d


def infer_architecture(declared: str | None, keys, source: str) -> str:
    """The architecture named by the config, else the one the weight names imply (a classifier head is ambiguous)."""
    if declared is not None:
        if declared not in ARCHITECTURES:
            raise UserError(
                f"{source}: architecture {declared!r} is not supported (known: {', '.join(sorted(ARCHITECTURES))})"
            )
        return declared
    keys = set(keys)
    if "cls.seq_relationship.weight" in keys:
        return "ErnieForPretraining"
    if any(k.startswith("cls.predictions.") for k in keys):
        return "ErnieForMaskedLM"
    if "qa_outputs.weight" in keys:
        return "ErnieForQuestionAnswering"
    if "classifier.weight" in keys:
        raise UserError(
            f"{source}: the config names no architecture and a classifier head fits sequence or token "
            "classification: pass --architecture"
        )
    return "ErnieModel"


def numpy_state(state: dict[str, Any], source: str) -> dict[str, np.ndarray]:
    """A state dict of tensors (anything with ``.numpy()``) or arrays as numpy arrays; bfloat16 is refused."""
    out = {}
    for k, v in state.items():
        a = v.numpy() if hasattr(v, "numpy") else np.asarray(v)
        if a.dtype == np.uint16:  # Paddle's bfloat16 comes out as raw uint16
            raise UserError(f"{source}: {k} is bfloat16; cast the model to float32 before converting")
        out[k] = a
    return out
