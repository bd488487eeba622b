"""Fine-tuning flags: one dataclass shared by every task, plus the task's own ``Options`` dataclass; each field is a
command-line flag named as in PaddleNLP's fine-tuning scripts.

Precedence of a value: the flag given on the command line, else the ``--dataset``'s default hyper-parameters
(PaddleNLP's ernie-1.0 finetune/config.yml, see :mod:`ernie.finetune.datasets`), else the field's default.
"""

from __future__ import annotations

import dataclasses
import os
from argparse import SUPPRESS, _ActionsContainer
from dataclasses import dataclass, field

from ernie.utils import (
    ArgumentParser,
    UserError,
    check_writable,
    field_annotation,
    require_finite,
    require_positive,
    str2bool,
)

from .datasets import dataset_defaults, dataset_help

# other names of a flag: PaddleNLP's / HF's TrainingArguments spelling (ernie.training.args.TRAINER_ALIASES has
# pretraining's)
FINETUNE_ALIASES = {"batch_size": ("per_device_train_batch_size",)}


@dataclass
class FinetuneArgs:
    # ---- model
    model_name_or_path: str = field(
        kw_only=True,  # required (no default), after fields with defaults
        metadata={
            "required": True,
            "help": "a model directory (a pretraining output of ours such as output/model_last, a fine-tuned model, or "
            "a PaddleNLP ERNIE dir), or a name in configs/models (e.g. ernie-tiny-cpu) for random init",
        },
    )
    tokenizer_name_or_path: str | None = field(
        default=None,
        metadata={"help": "directory with vocab.txt (+ tokenizer_config.json); default: --model_name_or_path"},
    )
    hidden_dropout_prob: float | None = field(
        default=None,
        metadata={
            "help": "dropout on embeddings and hidden states while fine-tuning; default: the model's config (a "
            "pretraining run saves its own value, so pass it to fine-tune several inits alike)"
        },
    )
    attention_probs_dropout_prob: float | None = field(
        default=None,
        metadata={"help": "dropout on attention probabilities while fine-tuning; default: the model's config"},
    )
    # ---- data
    dataset: str | None = field(
        default=None,
        metadata={"help": "a built-in dataset or a benchmark in its official layout (the task's names: its --help)"},
    )
    data_dir: str | None = field(
        default=None,
        metadata={
            "help": "directory holding the --dataset's files as distributed (e.g. train.json, dev.json, test.json)"
        },
    )
    train_file: str | None = field(default=None, metadata={"help": "tsv or jsonl training file"})
    dev_file: str | None = field(default=None, metadata={"help": "tsv or jsonl dev file (--do_eval, model choice)"})
    test_file: str | None = field(default=None, metadata={"help": "tsv or jsonl test file (--do_predict)"})
    max_seq_length: int = field(
        default=128, metadata={"help": "tokens per example incl. [CLS]/[SEP]; longer texts are truncated"}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "use the first N training examples"})
    max_eval_samples: int | None = field(default=None, metadata={"help": "use the first N dev examples"})
    max_predict_samples: int | None = field(default=None, metadata={"help": "use the first N test examples"})
    # ---- what to do
    output_dir: str = field(kw_only=True, metadata={"required": True, "help": "fine-tuned model, checkpoints, results"})
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "train into a non-empty output_dir; its previous output is replaced only when the new one is "
            "complete"
        },
    )
    resume_from_checkpoint: str | None = field(
        default=None,
        metadata={
            "help": "continue training from a checkpoint dir (optimizer, scheduler, RNG and data position included), "
            "or auto/true: from the last complete checkpoint of the interrupted run in output_dir (a rerun into a "
            "directory holding an interrupted run resumes it by default)"
        },
    )
    do_train: bool = False
    do_eval: bool = field(default=False, metadata={"help": "evaluate on the dev split"})
    do_predict: bool = field(default=False, metadata={"help": "predict the test split (scored if it has labels)"})
    do_export: bool = field(default=False, metadata={"help": "export a static inference model to output_dir/export"})
    # ---- optimisation
    num_train_epochs: float = 3.0
    max_steps: int = field(default=-1, metadata={"help": "total optimizer steps; overrides --num_train_epochs"})
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = field(default=0.1, metadata={"help": "share of steps in linear warmup, then linear decay"})
    max_grad_norm: float = 1.0
    batch_size: int = field(
        default=32,
        metadata={"help": "examples per device per forward (PaddleNLP/HF: --per_device_train_batch_size)"},
    )
    gradient_accumulation_steps: int = field(
        default=1,
        metadata={"help": "forwards per optimizer step: a step sees batch_size x this x devices examples"},
    )
    fp16: bool = field(default=False, metadata={"help": "float16 AMP with a dynamic loss scale (GPU; a no-op on CPU)"})
    bf16: bool = field(default=False, metadata={"help": "bfloat16 AMP (GPU with bf16 support; a no-op on CPU)"})
    fp16_opt_level: str = field(
        default="O1",
        metadata={
            "choices": ["O1", "O2"],
            "help": "AMP level: O1 (autocast) or O2 (low-precision weights, fp32 master copies)",
        },
    )
    scale_loss: float = field(default=2.0**15, metadata={"help": "initial dynamic loss scale (--fp16)"})
    amp_master_grad: bool | None = field(
        default=None,
        metadata={"help": "float32 gradients under O2 (default: on for --bf16 O2 on a GPU, off otherwise)"},
    )
    seed: int = 42
    device: str | None = field(
        default=None,
        metadata={"choices": ["cpu", "gpu", "xpu", "npu"], "help": "default: gpu when Paddle has CUDA, else cpu"},
    )
    # ---- evaluation and checkpoints
    logging_steps: int = 20
    eval_steps: int | None = field(default=None, metadata={"help": "evaluate every N steps (default: per epoch)"})
    save_steps: int | None = field(default=None, metadata={"help": "checkpoint every N steps (default: --eval_steps)"})
    metric_for_best_model: str | None = field(
        default=None,
        metadata={
            "help": "dev metric that picks the best checkpoint: accuracy, macro_f1 (seq_cls), f1, precision, recall "
            "(ner) or loss; default accuracy / f1"
        },
    )
    load_best_model_at_end: bool = False
    save_total_limit: int | None = field(
        default=None, metadata={"help": "keep at most N checkpoints (the best one is always kept)"}
    )
    early_stopping_patience: int | None = field(
        default=None, metadata={"help": "stop after N evaluations without improvement of --metric_for_best_model"}
    )


def _add_fields(parser: _ActionsContainer, cls, helps: dict[str, str] | None = None) -> None:
    for f in dataclasses.fields(cls):
        kind = field_annotation(f)[0]
        kw = {
            "help": (helps or {}).get(f.name, f.metadata.get("help", "")),
            "choices": f.metadata.get("choices"),
            "default": SUPPRESS,
        }
        if kind == "bool":
            kw.update(type=str2bool, nargs="?", const=True)
        else:
            kw["type"] = {"int": int, "float": float, "str": str}[kind]
        if f.metadata.get("required"):
            kw["required"] = True
        parser.add_argument(f"--{f.name}", *(f"--{a}" for a in FINETUNE_ALIASES.get(f.name, ())), **kw)


def build_parser(prog: str, task_cls) -> ArgumentParser:
    """An argparse parser with one flag per :class:`FinetuneArgs` field and per field of the task's ``Options``
    (bool flags take an optional value); the ``--dataset`` help lists the task's datasets
    (:func:`~ernie.finetune.datasets.dataset_help`). Flags not given are absent from the parsed namespace."""
    parser = ArgumentParser(allow_abbrev=False, prog=prog, description=task_cls.description)
    _add_fields(parser, FinetuneArgs, {"dataset": dataset_help(task_cls)})
    if dataclasses.fields(task_cls.Options):
        _add_fields(parser.add_argument_group("task options"), task_cls.Options)
    return parser


def parse_args(argv: list[str] | None, prog: str, task_cls) -> tuple[FinetuneArgs, object]:
    """(FinetuneArgs, the task's Options) from ``argv``; a ``--dataset``'s defaults fill the flags not given."""
    given = vars(build_parser(prog, task_cls).parse_args(argv))
    defaults = dataset_defaults(given.get("dataset"), task_cls)
    names = {f.name for f in dataclasses.fields(FinetuneArgs)}
    option_names = {f.name for f in dataclasses.fields(task_cls.Options)}
    values = {**{k: v for k, v in defaults.items() if k in names | option_names}, **given}
    args = FinetuneArgs(**{k: v for k, v in values.items() if k in names})
    options = task_cls.Options(**{k: v for k, v in values.items() if k in option_names})
    validate(args)
    if hasattr(options, "validate"):
        options.validate(args)
    return args, options


def check_output_dir(path: str) -> None:
    """``--output_dir`` must be a directory or creatable as one (not a file, not under a file, writable): checked
    before any work, with pretraining's message."""
    if not path:
        return
    if os.path.lexists(path) and not os.path.isdir(path):
        raise UserError(f"--output_dir: {path} exists and is not a directory")
    try:
        check_writable(os.path.join(path, "x") if os.path.isdir(path) else path)
    except UserError as e:
        raise UserError(f"--output_dir: {e}") from None


def validate(args: FinetuneArgs) -> None:
    """Checks that need no data or model; each failure names its flag."""
    if not (args.do_train or args.do_eval or args.do_predict or args.do_export):
        raise UserError("nothing to do: pass at least one of --do_train, --do_eval, --do_predict, --do_export")
    if args.resume_from_checkpoint is not None and not args.do_train:
        raise UserError("--resume_from_checkpoint needs --do_train")
    if args.data_dir and not args.dataset:
        raise UserError("--data_dir needs --dataset (the name tells the files' layout)")
    if (args.do_train or args.do_eval or args.do_predict) and not (
        args.dataset or args.train_file or args.dev_file or args.test_file
    ):
        raise UserError("--dataset: no data; pass --dataset or --train_file/--dev_file/--test_file")
    if args.do_train and not (args.dataset or args.train_file):
        raise UserError("--do_train needs --train_file (or --dataset)")
    check_output_dir(args.output_dir)
    require_positive(args, ("max_seq_length", "batch_size", "logging_steps"))
    if args.max_seq_length < 3:
        raise UserError("--max_seq_length must be >= 3 ([CLS], one token, [SEP])")
    if args.max_seq_length > 512:
        raise UserError("--max_seq_length must be <= 512 (ERNIE 1.0 position embeddings)")
    require_positive(
        args,
        (
            "eval_steps",
            "save_steps",
            "save_total_limit",
            "early_stopping_patience",
            "max_train_samples",
            "max_eval_samples",
            "max_predict_samples",
        ),
    )
    for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
        value = getattr(args, name)
        if value is not None and not 0 <= value < 1:
            raise UserError(f"--{name} must be in [0, 1)")
    require_finite(args)
    require_positive(args, ("gradient_accumulation_steps",))
    if args.fp16 and args.bf16:
        raise UserError("--fp16 and --bf16: choose one")
    if args.learning_rate <= 0:
        raise UserError("--learning_rate must be > 0")
    if args.max_steps <= 0 and args.num_train_epochs <= 0:
        raise UserError("--num_train_epochs must be > 0 (or give --max_steps)")
    if not 0 <= args.warmup_ratio < 1:
        raise UserError("--warmup_ratio must be in [0, 1)")
    if args.load_best_model_at_end and args.eval_steps and args.save_steps and args.save_steps % args.eval_steps:
        raise UserError("--save_steps must be a multiple of --eval_steps with --load_best_model_at_end")
    if (
        args.do_train
        and (args.load_best_model_at_end or args.early_stopping_patience)
        and not (args.dataset or args.dev_file)
    ):
        raise UserError("--load_best_model_at_end / --early_stopping_patience need a dev set (--dev_file)")
