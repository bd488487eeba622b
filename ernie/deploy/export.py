"""Export a fine-tuned model to a static Paddle inference model, in the layout FastDeploy's ERNIE examples load.

``export_model(model, tokenizer, labels, output_dir)`` writes, atomically (the directory appears complete or not
at all)::

    output_dir/
      model.json                   the program, PIR (Paddle 3's paddle.jit.save), for Paddle Inference 3
      model.pdmodel                the same program as a legacy ProgramDesc (Paddle 2.x / PaddleNLP <= 2.8 layout),
                                   for FastDeploy 1.0.7 (its Paddle Inference 2.x, ONNX Runtime and OpenVINO
                                   backends); traced by Paddle 2.6 in an isolated environment, see
                                   ernie/deploy/legacy_export.py (``ERNIE_NO_LEGACY_EXPORT=1`` skips it; a failure
                                   there is a warning, the rest of the export stands)
      model.pdiparams              the weights, shared by both programs (byte-identical by construction)
      vocab.txt, tokenizer_config.json, special_tokens_map.json
      label.txt                    one label a line, line number = class id
      deploy_config.json           task, labels, input names, program file name, max_position_embeddings,
                                   "precisions" (["fp32"], or ["fp32", "int8"]) and "int8" (its file and method)
      model.onnx, model.int8.onnx  only with ``quantize="int8"`` (``--quantize int8``): the paddle2onnx conversion
                                   and its INT8 version for ONNX Runtime (ernie/deploy/quantize.py, which says why
                                   dynamic quantization and why not Paddle Inference); the fp32 files are unchanged

The signature is the task's (:class:`ernie.finetune.tasks.Task`): inputs ``input_ids`` and ``token_type_ids``,
int64 [batch, seq] with both dimensions dynamic, padding ``pad_token_id`` (0) masked inside the program; outputs
float32 ``logits`` [batch, num_labels] (seq_cls) or [batch, seq, num_labels] (ner), ``start_logits`` and
``end_logits`` [batch, seq] (qa). deploy_config.json names the task, its outputs and (for tasks with a label set)
the labels. A pretraining checkpoint is refused: it has no task head to export.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource

import paddle

from ernie.configuration import ErnieConfig, resolve_config_file
from ernie.finetune.tasks import all_tasks, get_task, task_of_architecture
from ernie.tokenizer import ErnieTokenizer
from ernie.utils import (
    ArgumentParser,
    UserError,
    atomic_dir,
    cli_main,
    output_error,
    read_label_file,
    write_label_file,
)

from . import legacy_export
from .layout import DEPLOY_CONFIG, INPUT_NAMES, MODEL_PREFIX, PARAMS_SUFFIX, PRECISIONS, PROGRAM_SUFFIXES, program_file  # noqa: F401
from .quantize import write_int8_onnx

QUANTIZE_CHOICES = ("int8",)


class _LogitsOnly(paddle.nn.Layer):
    """The exported signature: (input_ids, token_type_ids) -> the task's outputs. Wrapping keeps the caller's model
    a plain dygraph layer (``to_static`` converts the wrapper, not the model)."""

    def __init__(self, model: paddle.nn.Layer):
        super().__init__()
        self.model = model

    def forward(self, input_ids, token_type_ids):
        return self.model(input_ids, token_type_ids=token_type_ids)


def export_model(
    model: paddle.nn.Layer,
    tokenizer,
    labels: list[str],
    output_dir: str,
    task: str = "seq_cls",
    overwrite: bool = False,
    quantize: str | None = None,
) -> str:
    """Trace ``model`` to a static program and write the deployable directory (see the module docstring);
    ``quantize="int8"`` adds ``model.int8.onnx``."""
    if quantize not in (None, *QUANTIZE_CHOICES):
        raise UserError(
            f"--quantize {quantize}: choose one of {', '.join(QUANTIZE_CHOICES)} (or leave it out for fp32 only)"
        )
    task_cls = get_task(task)
    was_training = model.training
    model.eval()
    spec = [paddle.static.InputSpec([None, None], "int64", name) for name in task_cls.input_names]
    try:
        with atomic_dir(output_dir, overwrite=overwrite) as tmp:
            # no_grad: an inference program, and the model's training-only fast paths stay out of the trace
            with paddle.no_grad():
                static = paddle.jit.to_static(_LogitsOnly(model), input_spec=spec, full_graph=True)
                paddle.jit.save(static, os.path.join(tmp, MODEL_PREFIX))
            program = program_file(tmp)
            if program is None or not os.path.isfile(os.path.join(tmp, MODEL_PREFIX + PARAMS_SUFFIX)):
                raise RuntimeError(f"paddle.jit.save wrote no program/params: {sorted(os.listdir(tmp))}")
            check_saved(output_dir, tmp, [program, os.path.join(tmp, MODEL_PREFIX + PARAMS_SUFFIX)])
            legacy = legacy_export.write_if_enabled(model, tmp, MODEL_PREFIX + PARAMS_SUFFIX)
            int8 = None
            if quantize == "int8":
                int8 = write_int8_onnx(tmp, model.config.vocab_size)
            tokenizer.save_pretrained(tmp)
            if labels:
                write_label_file(tmp, labels)
            with open(os.path.join(tmp, DEPLOY_CONFIG), "w", encoding="utf-8") as f:
                json.dump(
                    {
                        "task": task,
                        "labels": labels,
                        "input_names": list(task_cls.input_names),
                        "output_names": list(task_cls.output_names),
                        "model_file": os.path.basename(program),
                        "params_file": MODEL_PREFIX + PARAMS_SUFFIX,
                        "legacy_model_file": legacy,
                        "paddle_version": paddle.__version__,
                        "max_position_embeddings": model.config.max_position_embeddings,
                        "precisions": ["fp32"] + (["int8"] if int8 else []),
                        "int8": int8,
                    },
                    f,
                    indent=2,
                    ensure_ascii=False,
                )
    except OSError as e:  # a full disk or a file-size limit in paddle.jit.save, the tokenizer or label files
        raise output_error(output_dir, e) from None
    except RuntimeError as e:  # Paddle reports a failed write of its own files as a RuntimeError
        if _write_failure(e) is None:
            raise
        raise UserError(f"cannot write {output_dir}: {_write_failure(e)}") from None
    finally:
        model.train(was_training)
    return os.path.abspath(output_dir)


def check_saved(output_dir: str, tmp: str, files: list[str]) -> None:
    """``UserError`` when ``paddle.jit.save`` may have left a truncated file: it does not report a failed write (the
    C++ stream stops and the call returns), so the two ways a write fails are checked after it: a file as large as
    the file-size limit (``ulimit -f``: EFBIG), and a disk that is full now (a small probe write fails: ENOSPC); a PIR
    program (``.json``) must also parse."""
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    for path in files:
        if limit != resource.RLIM_INFINITY and os.path.getsize(path) >= limit:
            raise UserError(
                f"cannot write {output_dir}: {os.path.basename(path)} stopped at the file-size limit of {limit} "
                "bytes (ulimit -f); nothing was exported"
            )
    probe = os.path.join(tmp, ".write_probe")
    try:
        with open(probe, "wb") as f:
            f.write(b"\0" * (1 << 16))
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise UserError(f"{output_error(output_dir, e)}; nothing was exported") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(probe)
    for path in files:
        if path.endswith(".json"):
            try:
                with open(path, encoding="utf-8") as f:
                    json.load(f)
            except (OSError, ValueError):
                raise UserError(
                    f"cannot write {output_dir}: {os.path.basename(path)} is not complete JSON; nothing was exported"
                ) from None


_WRITE_FAILURES = ("No space left on device", "File too large", "Read-only file system", "Disk quota exceeded")


def _write_failure(error: BaseException) -> str | None:
    """The cause named in a Paddle error that is a failed write (a full disk, a file-size limit), else None."""
    text = str(error)
    return next((cause for cause in _WRITE_FAILURES if cause in text), None)


def _task_of(config, model_path: str, flag_task: str | None):
    """The task class of a model directory: ``--task``, else its config's ``architectures``; a checkpoint without
    a task head (pretraining, bare encoder) is a ``UserError``."""
    arch = (config.extra.get("architectures") or [""])[0]
    found = task_of_architecture(arch)
    if flag_task:
        task_cls = get_task(flag_task)
        if found is not None and found is not task_cls:
            raise UserError(f"--task {flag_task}: {model_path} holds a {found.name} model ({arch})")
        if found is None and arch:
            raise UserError(
                f"--model_path {model_path}: a {arch} checkpoint (no {flag_task} head); fine-tune it "
                f"first, e.g. scripts/run_{flag_task}.py --model_name_or_path {model_path}"
            )
        return task_cls
    if found is None:
        kinds = ", ".join(f"{t.model_class} ({n})" for n, t in sorted(all_tasks().items()))
        raise UserError(
            f"--model_path {model_path}: a {arch or 'model without architectures in its config'} "
            f"checkpoint, not a fine-tuned model ({kinds}); fine-tune it first (scripts/run_seq_cls.py, "
            f"run_ner.py, run_qa.py) and export the result"
        )
    return found


@cli_main
def main(argv: list[str] | None = None) -> str:
    """scripts/export_model.py: ``--model_path`` (a fine-tuned model dir) -> ``--output_path`` (deployable dir)."""
    p = ArgumentParser(
        allow_abbrev=False,
        prog="export_model.py",
        description="Export a fine-tuned ERNIE model for Paddle Inference / FastDeploy / ONNX Runtime.",
    )
    p.add_argument(
        "--model_path",
        required=True,
        help="fine-tuned model directory (output_dir of run_seq_cls.py, run_ner.py or run_qa.py)",
    )
    p.add_argument("--output_path", required=True, help="directory to write the inference model into")
    p.add_argument(
        "--task", choices=sorted(all_tasks()), default=None, help="default: from the model's config (architectures)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output_path")
    p.add_argument(
        "--quantize",
        choices=QUANTIZE_CHOICES,
        default=None,
        help="also write model.int8.onnx: ONNX Runtime dynamic INT8 (weights per channel) for CPU serving "
        "with --backend onnxruntime --precision int8; the fp32 files are written as without it",
    )
    a = p.parse_args(argv)
    if not os.path.isdir(a.model_path):
        raise UserError(f"--model_path {a.model_path}: no such directory")
    config = ErnieConfig.from_file(resolve_config_file(a.model_path))
    task_cls = _task_of(config, a.model_path, a.task)
    labels = []
    if task_cls.uses_label_set:
        id2label = config.extra.get("id2label") or {}
        labels = read_label_file(a.model_path) or [id2label.get(str(i), str(i)) for i in range(config.num_labels)]
    model = task_cls.build_model(a.model_path, labels)
    tokenizer = ErnieTokenizer.from_pretrained(a.model_path)
    out = export_model(
        model, tokenizer, labels, a.output_path, task=task_cls.name, overwrite=a.overwrite, quantize=a.quantize
    )
    print(f"exported {task_cls.name} model to {out}: {', '.join(sorted(os.listdir(out)))}")
    return out
