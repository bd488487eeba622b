"""Pretraining configuration: one dataclass per concern, filled from defaults < ``--config`` YAML < command line.

Every field is a command-line flag with exactly PaddleNLP's ernie-1.0 ``run_pretrain.py`` name (``--max_lr``,
``--micro_batch_size`` ...); ``--config``, ``--amp_dtype``, ``--attention``, ``--masking``, ``--masking_schedule`` and
``--knowledge_mix`` are additions. A YAML config is either flat (``max_lr: 1e-4``) or grouped by the section names
below (``optimizer: {max_lr: 1e-4}``).

The ``data`` section is owned by :mod:`data_tools.ernie_dataset`: :class:`DataArgs` inherits its flag fields
(:class:`~data_tools.ernie_dataset.ErnieDatasetFlags`, declared there once and checked once by
``ErnieDatasetConfig.validate``) beside the two options that are not the dataset's (``input_dir``, ``num_workers``);
:meth:`DataArgs.dataset_config` hands them back as an ``ErnieDatasetConfig``.

Every section is a plain ``@dataclass`` (type checkers and IDEs see every field); the parser is built from the
fields: their type, default and ``metadata`` (``help``, ``choices``).

Everything that can be checked without Paddle is checked in :func:`parse_args`, so a bad flag is one clear line
before any work starts. Checks that need the world size (batch divisibility) live in :func:`derive_batching`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from data_tools.blending import parse_input_dir
from data_tools.ernie_dataset import ErnieDatasetConfig, ErnieDatasetFlags
from ernie import hub
from ernie.configuration import ErnieConfig, resolve_config_file
from ernie.utils import ArgumentParser, UserError, field_annotation, require_finite, str2bool
from ernie.weights import WEIGHTS_NAME

from .distributed import check_batching

REQUIRED: Any = object()  # marker default: the flag must come from the command line or the YAML config


@dataclass
class ModelArgs:
    model_type: str = field(default="ernie", metadata={"choices": ["ernie"], "help": "model family"})
    model_name_or_path: str = field(
        default=REQUIRED,
        metadata={
            "help": "model config: a name in configs/models (ernie-1.0-base-zh), a directory with model_config.json "
            "or config.json (ours, PaddleNLP's or an HF transformers ERNIE dir), or a .json file; with "
            "--continue_training its weights"
        },
    )
    tokenizer_name_or_path: str | None = field(
        default=None,
        metadata={"help": "directory with vocab.txt (+ tokenizer_config.json); default: model_name_or_path"},
    )
    continue_training: bool = field(
        default=False,
        metadata={
            "help": "start from the weights in model_name_or_path with a fresh optimizer (instead of from scratch)"
        },
    )
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    use_recompute: bool = field(default=False, metadata={"help": "recompute encoder layers in backward to save memory"})
    attention: str = field(
        default="eager",
        metadata={
            "choices": ["eager", "sdpa", "flash"],
            "help": "attention kernel: eager (matmul + softmax, as PaddleNLP's ERNIE); opt-in sdpa "
            "(F.scaled_dot_product_attention: flash / memory-efficient / math as Paddle's checks allow) or flash "
            "(flash attention where Paddle allows it: fp16/bf16, head_dim % 8 == 0, SM 8.x+; else eager). "
            "The kernel that runs is logged",
        },
    )
    position_embedding_init: str | None = field(
        default=None,
        metadata={
            "help": "from scratch (--continue_training keeps the saved weights): the initial position embeddings, "
            "normal (truncated normal, as every weight) or sinusoidal[:RMS] (the Transformer's sin/cos table at "
            "root-mean-square RMS, default 0.1: a small model learns sooner to attend to its neighbours); "
            "default: the model config's (normal)"
        },
    )
    vocab_size: int | None = field(
        default=None,
        metadata={
            "help": "rows of the embedding table (and of the MLM output) when pretraining from scratch; default: the "
            "model config's. Set it to the vocabulary's size so no compute goes to rows no token uses"
        },
    )


DATASET_FLAGS = dataclasses.fields(ErnieDatasetFlags)


@dataclass
class _InputDir:
    input_dir: str = field(
        default=REQUIRED,
        metadata={
            "help": "folder of token files ({P}_ids.npy + {P}_idx.npz, or {P}.bin + {P}.idx), one prefix, or "
            "'w1 prefix1 w2 prefix2' to blend corpora"
        },
    )


@dataclass
class DataArgs(ErnieDatasetFlags, _InputDir):
    """The ``data`` section: the dataset's flags (inherited from their owner) + ``input_dir`` and ``num_workers``.

    Dataclass fields are collected from the last base to the first, so the flags read ``--input_dir``, the dataset's
    flags, ``--num_workers`` (the order of ``--help`` and of a checkpoint's args.yaml).
    """

    num_workers: int = field(default=2, metadata={"help": "DataLoader worker processes per rank"})

    def dataset_config(self, seed: int, samples_per_step: int = 0) -> ErnieDatasetConfig:
        """The dataset options of this section (``seed``: the training section's; ``samples_per_step``: the global
        batch size, which places the masking stages of ``--masking_schedule`` in the sample stream)."""
        return ErnieDatasetConfig(
            seed=seed, samples_per_step=samples_per_step, **{f.name: getattr(self, f.name) for f in DATASET_FLAGS}
        )


@dataclass
class OptimizerArgs:
    max_lr: float = 1e-4
    min_lr: float = 1e-5
    warmup_rate: float = field(default=0.01, metadata={"help": "share of max_steps spent in linear warmup"})
    decay_steps: int | None = field(
        default=None, metadata={"help": "step at which the decay reaches min_lr (default max_steps)"}
    )
    lr_decay_style: str = field(default="cosine", metadata={"choices": ["cosine", "linear", "none"]})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW decay; never applied to biases and norms"})
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    grad_clip: float = field(default=1.0, metadata={"help": "clip by global norm; 0 disables"})


@dataclass
class TrainingArgs:
    output_dir: str = field(default=REQUIRED, metadata={"help": "checkpoints, logs and VisualDL records"})
    device: str = field(default="gpu", metadata={"choices": ["cpu", "gpu", "xpu", "npu", "mlu"]})
    seed: int = 1234
    micro_batch_size: int = field(default=8, metadata={"help": "sequences per rank per forward"})
    global_batch_size: int | None = field(
        default=None,
        metadata={
            "help": "sequences per optimizer step = micro_batch_size x ranks x accumulation (default: no accumulation)"
        },
    )
    max_steps: int = 500000
    gradient_accumulation_steps: int | None = field(
        default=None,
        metadata={"help": "micro batches per optimizer step (sets --global_batch_size micro x ranks x N)"},
    )
    warmup_steps: int | None = field(default=None, metadata={"help": "warmup steps (instead of --warmup_rate)"})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "start from step 0 instead of resuming output_dir/model_last"}
    )
    save_total_limit: int | None = field(
        default=None, metadata={"help": "keep the newest N model_<step> checkpoints (model_last is always kept)"}
    )
    resume_from_checkpoint: str | None = field(
        default=None,
        metadata={
            "help": "a checkpoint to resume from: ours, or PaddleNLP's run_pretrain.py model_last or Trainer "
            "checkpoint-N (default: output_dir/model_last, else its newest model_<step>)"
        },
    )
    checkpoint_steps: int = field(default=500, metadata={"help": "save output_dir/model_last every N steps"})
    save_steps: int = field(default=500, metadata={"help": "save output_dir/model_<step> every N steps"})
    use_amp: bool = False
    amp_dtype: str = field(default="float16", metadata={"choices": ["float16", "bfloat16"]})
    fp16_opt_level: str = field(default="O2", metadata={"choices": ["O1", "O2"]})
    scale_loss: float = field(default=32768.0, metadata={"help": "initial dynamic loss scale (float16 only)"})
    amp_master_grad: bool | None = field(
        default=None,
        metadata={
            "help": "float32 gradients (accumulated, all-reduced, clipped) under O2; default: on for bfloat16 O2 on "
            "a GPU, off otherwise (PaddleNLP's flag)"
        },
    )
    deterministic: bool = field(
        default=False,
        metadata={"help": "deterministic GPU kernels (cuDNN, embedding backward): a resumed run repeats bit for bit"},
    )
    max_nonfinite_steps: int = field(
        default=10,
        metadata={"help": "stop after this many consecutive steps with a non-finite loss (float32/bfloat16)"},
    )


@dataclass
class LoggingArgs:
    logging_freq: int = 1
    eval_freq: int = 500
    eval_iters: int = field(default=10, metadata={"help": "global batches of validation data per evaluation"})
    test_iters: int | None = field(
        default=None, metadata={"help": "global batches of test data evaluated at the end (default 10 x eval_iters)"}
    )


SECTIONS = {
    "model": ModelArgs,
    "data": DataArgs,
    "optimizer": OptimizerArgs,
    "training": TrainingArgs,
    "logging": LoggingArgs,
}


@dataclass
class PretrainArgs:
    model: ModelArgs
    data: DataArgs
    optimizer: OptimizerArgs
    training: TrainingArgs
    logging: LoggingArgs

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Sectioned plain dict (the YAML layout of configs/pretrain and of a checkpoint's args.yaml)."""
        return {name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}

    def flat(self) -> dict[str, Any]:
        return {k: v for section in self.to_dict().values() for k, v in section.items()}


def _flag_owner() -> dict[str, str]:
    """flag name -> section name."""
    return {f.name: section for section, cls in SECTIONS.items() for f in dataclasses.fields(cls)}


_SCALAR_TYPES: dict[str, Callable[[str], Any]] = {"str": str, "int": int, "float": float, "bool": str2bool}


def _field_type(f: dataclasses.Field) -> Callable[[str], Any]:
    """The scalar type of a field (``Optional[int]`` -> int)."""
    return _SCALAR_TYPES[field_annotation(f)[0]]


# PaddleNLP's / HF's TrainingArguments names (run_pretrain_trainer.py, run_gb512_s1m_trainer.sh) -> the flag of ours
# they are another name of (the one table of renamed flags; fine-tuning's own names are already the Trainer's)
TRAINER_ALIASES = {
    "per_device_train_batch_size": "micro_batch_size",
    "learning_rate": "max_lr",
    "min_learning_rate": "min_lr",
    "warmup_ratio": "warmup_rate",
    "max_grad_norm": "grad_clip",
    "logging_steps": "logging_freq",
    "eval_steps": "eval_freq",
    "max_seq_length": "max_seq_len",
    "dataloader_num_workers": "num_workers",
    "recompute": "use_recompute",
    "lr_scheduler_type": "lr_decay_style",
}


@dataclass
class TrainerEraFlags:
    """Trainer-era flags with no field of ours of the same meaning: each is translated into ours by
    :func:`apply_trainer_flags` (or accepted when it asks for what this toolkit does anyway, refused in one line
    otherwise)."""

    fp16: bool = field(default=False, metadata={"help": "= --use_amp true --amp_dtype float16"})
    bf16: bool = field(default=False, metadata={"help": "= --use_amp true --amp_dtype bfloat16"})
    use_flash_attention: bool = field(default=False, metadata={"help": "= --attention flash"})
    data_impl: str = field(default="mmap", metadata={"help": "accepted: both token-file layouts are read as found"})
    tensor_parallel_degree: int = field(default=1, metadata={"help": "1 only (data parallel)"})
    pipeline_parallel_degree: int = field(default=1, metadata={"help": "1 only (data parallel)"})
    sharding_parallel_degree: int = field(default=1, metadata={"help": "1 only (data parallel)"})
    sharding: str = field(default="", metadata={"help": "empty only (no sharding)"})
    do_train: bool = field(default=True, metadata={"help": "accepted (pretraining trains)"})
    do_eval: bool = field(default=True, metadata={"help": "accepted (evaluation: --eval_freq / --eval_iters)"})
    do_predict: bool = field(default=True, metadata={"help": "accepted (the test split: --test_iters)"})
    per_device_eval_batch_size: int = field(default=0, metadata={"help": "accepted (evaluation uses the micro batch)"})
    report_to: str = field(default="visualdl", metadata={"help": "accepted (jsonl + VisualDL are always written)"})
    disable_tqdm: bool = field(default=False, metadata={"help": "accepted (no progress bar)"})
    logging_dir: str = field(default="", metadata={"help": "accepted (logs go to output_dir)"})


def apply_trainer_flags(values: dict[str, Any], given: dict[str, Any]) -> None:
    """Translate the :class:`TrainerEraFlags` in ``given`` into our flags in ``values`` (in place)."""

    def degree(name: str) -> None:
        if given.get(name, 1) not in (1, -1, 0):
            raise UserError(f"--{name} {given[name]}: this toolkit trains data parallel only (pass 1)")

    for name in ("tensor_parallel_degree", "pipeline_parallel_degree", "sharding_parallel_degree"):
        degree(name)
    if given.get("sharding"):
        raise UserError(f"--sharding {given['sharding']}: this toolkit trains data parallel only (leave it empty)")
    if given.get("data_impl", "mmap") not in ("mmap", "lazy"):
        raise UserError(f"--data_impl {given['data_impl']}: expected mmap or lazy")
    if given.get("fp16") and given.get("bf16"):
        raise UserError("--fp16 and --bf16: choose one")
    for flag, dtype in (("fp16", "float16"), ("bf16", "bfloat16")):
        if given.get(flag):
            values["use_amp"], values["amp_dtype"] = True, dtype
    if given.get("use_flash_attention"):
        values["attention"] = "flash"


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        allow_abbrev=False,
        prog="run_pretrain.py",
        description="ERNIE 1.0 pretraining (MLM + SOP), PaddleNLP flags.",
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--config", help="YAML file of flag values (flat or grouped by section); flags override it")
    for section, cls in SECTIONS.items():
        group = parser.add_argument_group(section)
        for f in dataclasses.fields(cls):
            kind = _field_type(f)
            extra: dict[str, Any] = {"nargs": "?", "const": True} if kind is str2bool else {}
            default = "required" if f.default is REQUIRED else f.default
            text = f"{f.metadata.get('help', '')} (default: {default})".replace("%", "%%")  # argparse %-formats help
            aliases = [f"--{a}" for a, ours in TRAINER_ALIASES.items() if ours == f.name]
            if aliases:
                text += f" (also {', '.join(aliases)})"
            group.add_argument(
                f"--{f.name}", *aliases, type=kind, choices=f.metadata.get("choices"), help=text, **extra
            )
    group = parser.add_argument_group("PaddleNLP Trainer names (run_pretrain_trainer.py)")
    for f in dataclasses.fields(TrainerEraFlags):
        kind = _field_type(f)
        extra = {"nargs": "?", "const": True} if kind is str2bool else {}
        group.add_argument(f"--{f.name}", dest=f"trainer.{f.name}", type=kind, help=f.metadata["help"], **extra)
    return parser


def load_yaml_config(path: str) -> dict[str, Any]:
    """Flat {flag: value} from a YAML config; unknown keys are an error naming the file."""
    if not os.path.isfile(path):
        raise UserError(f"--config: {path} does not exist")
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise UserError(f"{path}{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if raw is None:
        raise UserError(f"--config {path}: empty file (expected a mapping of flag names to values)")
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping of flag names to values")
    owner = _flag_owner()
    flat: dict[str, Any] = {}
    for key, value in raw.items():
        if key in SECTIONS and isinstance(value, dict):
            for k, v in value.items():
                if owner.get(k) != key:
                    raise UserError(f"{path}: unknown key {key}.{k}")
                flat[k] = v
        elif key in owner:
            flat[key] = value
        else:
            raise UserError(f"{path}: unknown key {key!r} (expected a run_pretrain.py flag name)")
    return flat


def _coerce(name: str, value: Any, f: dataclasses.Field, source: str) -> Any:
    """Type-check a YAML value against its field."""
    if value is None:
        if field_annotation(f)[1]:
            return None
        raise UserError(f"{source}: {name} may not be null")
    kind = _field_type(f)
    try:
        if kind is int and (isinstance(value, bool) or (isinstance(value, float) and not value.is_integer())):
            raise ValueError
        value = kind(value)
    except (TypeError, ValueError, argparse.ArgumentTypeError):
        raise UserError(f"{source}: {name}: invalid value {value!r}") from None
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise UserError(f"{source}: {name}: {value!r} is not one of {', '.join(choices)}")
    return value


def parse_args(argv: list[str] | None = None) -> PretrainArgs:
    """Parse and validate; raises :class:`UserError` naming the flag at fault."""
    ns = vars(build_parser().parse_args(argv))
    values: dict[str, Any] = {}
    config_path = ns.pop("config", None)
    fields = {f.name: f for cls in SECTIONS.values() for f in dataclasses.fields(cls)}
    if config_path:
        for k, v in load_yaml_config(config_path).items():
            values[k] = _coerce(k, v, fields[k], config_path)
    trainer = {k.split(".", 1)[1]: ns.pop(k) for k in list(ns) if k.startswith("trainer.")}
    values.update(ns)
    apply_trainer_flags(values, trainer)
    sections = {}
    for section, cls in SECTIONS.items():
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name in values:
                kwargs[f.name] = values[f.name]
            elif f.default is REQUIRED:
                raise UserError(f"--{f.name} is required (on the command line or in --config)")
        sections[section] = cls(**kwargs)
    args = PretrainArgs(**sections)
    validate(args)
    return args


def warmup_steps(args: PretrainArgs) -> float:
    """The LR warmup in steps: --warmup_steps, else --warmup_rate x --max_steps."""
    t = args.training
    return float(t.warmup_steps) if t.warmup_steps is not None else args.optimizer.warmup_rate * t.max_steps


def _check(cond: bool, flag: str, message: str) -> None:
    if not cond:
        raise UserError(f"--{flag}: {message}")


def validate(args: PretrainArgs) -> None:
    """Checks of single flags and of flags against each other (world-size checks: :func:`derive_batching`)."""
    m, d, o, t, lg = args.model, args.data, args.optimizer, args.training, args.logging
    for section in SECTIONS:
        require_finite(getattr(args, section))
    if m.tokenizer_name_or_path is None:
        m.tokenizer_name_or_path = m.model_name_or_path
    for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
        _check(0.0 <= getattr(m, name) < 1.0, name, "must be in [0, 1)")
    try:
        resolve_config_file(m.model_name_or_path)
    except UserError as e:
        raise UserError(f"--model_name_or_path: {e}") from None
    if m.position_embedding_init is not None:
        try:
            ErnieConfig(position_embedding_init=m.position_embedding_init)
        except UserError as e:
            raise UserError(f"--position_embedding_init: {e}") from None
    source = m.model_name_or_path
    if os.path.isdir(source) and not os.path.isfile(os.path.join(source, WEIGHTS_NAME)):
        _check(
            not os.path.isdir(os.path.join(source, "model_last")),
            "model_name_or_path",
            f"{source} is a pretraining output dir: pass its checkpoint, {os.path.join(source, 'model_last')}",
        )
    if m.continue_training:
        _check(
            os.path.isdir(source) or hub.model_spec(source) is not None,
            "model_name_or_path",
            f"{source} is neither a directory nor a known model name; --continue_training needs a saved model "
            "(model_state.pdparams + model_config.json/config.json) or a name such as ernie-1.0-base-zh",
        )
    tok = m.tokenizer_name_or_path
    _check(
        os.path.isfile(os.path.join(tok, "vocab.txt")) if os.path.isdir(tok) else hub.model_spec(tok) is not None,
        "tokenizer_name_or_path",
        f"{tok} has no vocab.txt (give a directory written by ErnieTokenizer.save_pretrained, or a known model name "
        "such as ernie-1.0-base-zh)",
    )

    parse_input_dir(d.input_dir)  # a folder, a prefix or "w1 prefix1 w2 prefix2"; errors name --input_dir
    d.dataset_config(t.seed).validate()  # the dataset's options: checked by their owner
    _check(d.num_workers >= 0, "num_workers", "must be >= 0")

    _check(o.max_lr > 0, "max_lr", "must be > 0")
    _check(0 <= o.min_lr <= o.max_lr, "min_lr", f"must be in [0, max_lr={o.max_lr}]")
    _check(0.0 <= o.warmup_rate <= 1.0, "warmup_rate", "must be in [0, 1]")
    for name in ("gradient_accumulation_steps", "save_total_limit"):
        _check(getattr(t, name) is None or getattr(t, name) >= 1, name, "must be >= 1")
    _check(t.warmup_steps is None or 0 <= t.warmup_steps <= t.max_steps, "warmup_steps", "must be in [0, max_steps]")
    if o.decay_steps is None:
        o.decay_steps = t.max_steps
    _check(
        o.decay_steps > warmup_steps(args),
        "decay_steps",
        f"must be > the warmup steps ({warmup_steps(args):g})",
    )
    _check(o.weight_decay >= 0, "weight_decay", "must be >= 0")
    _check(o.grad_clip >= 0, "grad_clip", "must be >= 0 (0 disables clipping)")
    _check(0 <= o.adam_beta1 < 1 and 0 <= o.adam_beta2 < 1, "adam_beta1", "betas must be in [0, 1)")

    _check(t.micro_batch_size >= 1, "micro_batch_size", "must be >= 1")
    _check(
        t.global_batch_size is None or t.global_batch_size >= t.micro_batch_size,
        "global_batch_size",
        f"must be >= micro_batch_size ({t.micro_batch_size})",
    )
    _check(t.max_steps >= 1, "max_steps", "must be >= 1")
    for name in ("checkpoint_steps", "save_steps"):
        _check(getattr(t, name) >= 1, name, "must be >= 1")
    _check(t.scale_loss > 0, "scale_loss", "must be > 0")
    _check(t.max_nonfinite_steps >= 1, "max_nonfinite_steps", "must be >= 1")
    if os.path.exists(t.output_dir):
        _check(os.path.isdir(t.output_dir), "output_dir", f"{t.output_dir} exists and is not a directory")

    _check(lg.logging_freq >= 1, "logging_freq", "must be >= 1")
    _check(lg.eval_freq >= 1, "eval_freq", "must be >= 1")
    _check(lg.eval_iters >= 0, "eval_iters", "must be >= 0")
    if lg.test_iters is None:
        lg.test_iters = 10 * lg.eval_iters
    _check(lg.test_iters >= 0, "test_iters", "must be >= 0")


@dataclass
class Batching:
    """How a global batch is made: ``global_batch_size = micro_batch_size x dp_degree x accumulate_steps``."""

    micro_batch_size: int
    dp_degree: int
    accumulate_steps: int

    @property
    def global_batch_size(self) -> int:
        return self.micro_batch_size * self.dp_degree * self.accumulate_steps


def derive_batching(args: PretrainArgs, world_size: int) -> Batching:
    t = args.training
    per_step = t.micro_batch_size * world_size
    if t.gradient_accumulation_steps is not None:
        by_accumulation = per_step * t.gradient_accumulation_steps
        if t.global_batch_size is not None and t.global_batch_size != by_accumulation:
            raise UserError(
                f"--gradient_accumulation_steps {t.gradient_accumulation_steps}: micro_batch_size x ranks x it = "
                f"{by_accumulation}, but --global_batch_size is {t.global_batch_size}; give one of the two"
            )
        t.global_batch_size = by_accumulation
    global_batch = t.global_batch_size if t.global_batch_size is not None else per_step
    check_batching(t.micro_batch_size, world_size, global_batch)  # says what to set instead
    t.global_batch_size = global_batch
    return Batching(t.micro_batch_size, world_size, global_batch // per_step)
