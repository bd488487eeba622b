"""The fine-tuning driver behind every task's entry function (:mod:`ernie.finetune_cli`).

``run(args, task_cls, options)`` does, in order, what the ``--do_*`` flags ask, calling only the methods of the
:class:`~ernie.finetune.tasks.Task` subclass it is given:

* ``--do_train``: fine-tune, write checkpoints, then the final (or best) model into ``output_dir`` itself:
  ``model_state.pdparams``, ``config.json`` / ``model_config.json`` (with ``id2label``), ``vocab.txt``,
  ``tokenizer_config.json``, ``label.txt`` (one label a line, line number = id; tasks with a label set);
* ``--do_eval``: score the dev split -> ``eval_results.json`` and the task's ``eval_predictions`` file;
* ``--do_predict``: predict the test split -> the task's predictions file (+ ``test_results.json`` when labelled);
* ``--do_export``: static inference model -> ``output_dir/export/`` by the ``exporter`` the caller passes
  (:func:`ernie.deploy.export.export_model`, given by :mod:`ernie.finetune_cli`: deploy sits above fine-tuning).

Unlabelled rows: a training example without a label is an error naming its file:line, and so is an unlabelled
dev example (the dev split is scored): both are found before training starts. An unlabelled test split is
predicted, not scored.

Output dir (docs/design.md, "Fine-tuning output-dir contract"; :mod:`ernie.finetune.outdir`): data, labels,
tokenizer, model and the checkpoint to resume are all checked before the first write; the run holds
``output_dir/.run.lock`` throughout; ``run_status.json`` is ``running`` during training and ``complete`` last; an
interrupted run is resumed (``--resume_from_checkpoint``, or by default on a rerun); ``--overwrite_output_dir``
replaces the previous output only once the new one is complete.

It returns (and writes to ``all_results.json``) a dict with the figures, for scripts and the end-to-end demo.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import numpy as np
import paddle

from data_tools.corpus import DatasetSplits
from ernie import hub
from ernie.configuration import ErnieConfig
from ernie.tokenizer import ErnieTokenizer
from ernie.training.checkpoint import Checkpoint, read_checkpoint
from ernie.training.distributed import DistEnv, all_gather_object, barrier, init_distributed
from ernie.utils import LABEL_FILE, UserError, read_label_file, write_label_file
from ernie.utils.lock import lock_output_dir, release_output_dir

from . import outdir
from .args import FinetuneArgs
from .datasets import load_dataset
from .outdir import write_json
from .recipe import FinetuneRecipe
from .tasks import Task

LOCK_WAIT_SECONDS = 30.0  # how long a run waits for another one holding output_dir


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def load_tokenizer(args: FinetuneArgs):
    source = args.tokenizer_name_or_path or args.model_name_or_path
    if not os.path.isdir(source) and hub.model_spec(source) is None:  # a known name: its vocabulary (ernie.hub)
        flag = "--tokenizer_name_or_path" if args.tokenizer_name_or_path else "--model_name_or_path"
        raise UserError(
            f"{flag} {source}: no such directory with vocab.txt (give --tokenizer_name_or_path VOCAB_DIR "
            f"when --model_name_or_path is a config name)"
        )
    return ErnieTokenizer.from_pretrained(source)


def load_model(args: FinetuneArgs, task_cls: type[Task], labels: list[str], vocab_size: int):
    """A model directory (weights + config) or a configs/models name / config file (random init); the tokenizer's
    ``vocab_size`` must fit the model's embedding table."""
    path = args.model_name_or_path
    dropout = {
        k: getattr(args, k)
        for k in ("hidden_dropout_prob", "attention_probs_dropout_prob")
        if getattr(args, k) is not None
    }
    model = task_cls.build_model(path, labels, **dropout)  # a config name: random init, same shapes as pretraining
    if model.config.vocab_size < vocab_size:
        raise UserError(
            f"--tokenizer_name_or_path: the vocab has {vocab_size} tokens but the model "
            f"{path} only {model.config.vocab_size}"
        )
    if task_cls.uses_label_set:
        model.config.extra = {
            **model.config.extra,
            "id2label": {str(i): x for i, x in enumerate(labels)},
            "label2id": {x: i for i, x in enumerate(labels)},
        }
    init = "weights" if os.path.isdir(path) or hub.model_spec(path) is not None else "random init"
    log(
        f"model: {type(model).__name__} from {path} ({init}; {model.config.num_hidden_layers} layers, hidden "
        f"{model.config.hidden_size}, {sum(int(np.prod(p.shape)) for p in model.parameters()) / 1e6:.2f}M params)"
    )
    return model


def check_positions(args: FinetuneArgs) -> None:
    """``--max_seq_length`` must fit the model's ``max_position_embeddings``: checked once, before any data is read
    or anything written (a longer example would otherwise fail deep in the model, possibly mid-training)."""
    limit = ErnieConfig.from_pretrained(args.model_name_or_path).max_position_embeddings
    if args.max_seq_length > limit:
        raise UserError(
            f"--max_seq_length {args.max_seq_length} exceeds the {limit} positions of the model "
            f"{args.model_name_or_path} (max_position_embeddings); pass --max_seq_length {limit} or less"
        )


def load_data(args: FinetuneArgs, task_cls: type[Task]) -> DatasetSplits:
    """The splits named by ``--dataset`` [``--data_dir``] or given as ``--train_file/--dev_file/--test_file``."""
    needed = tuple(
        split for split, flag in (("train", args.do_train), ("dev", args.do_eval), ("test", args.do_predict)) if flag
    )
    return load_dataset(
        task_cls, args.dataset, args.data_dir, args.train_file, args.dev_file, args.test_file, needed=needed
    )


def save_model_dir(model, tokenizer, labels: list[str] | None, directory: str, state_dict=None) -> None:
    """Model + tokenizer (+ label.txt): a directory that --model_name_or_path and export_model.py accept
    (``state_dict``: the weights to save, default the model's)."""
    model.save_pretrained(directory, state_dict=state_dict)
    tokenizer.save_pretrained(directory)
    if labels:
        write_label_file(directory, labels)


def read_resume_checkpoint(path: str, model, labels: list[str]) -> Checkpoint:
    """Read the checkpoint to resume in full and check that it fits ``model`` and ``labels``."""
    try:
        resume = read_checkpoint(path)
    except UserError as e:
        raise UserError(f"cannot resume: {e}") from None
    saved_labels = read_label_file(path)
    if labels and saved_labels is not None and saved_labels != labels:
        raise UserError(
            f"--resume_from_checkpoint {path}: its labels {saved_labels} differ from the training data's {labels}"
        )
    expected = {k: list(v.shape) for k, v in model.state_dict().items()}
    saved = {k: list(v.shape) for k, v in resume.model_state.items()}
    diff = sorted(k for k in set(saved) | set(expected) if saved.get(k) != expected.get(k))
    if diff:
        raise UserError(
            f"--resume_from_checkpoint {path}: its weights do not fit the model of "
            f"--model_name_or_path (first difference: {diff[0]})"
        )
    return resume


def _limit(examples: list[dict], n: int | None) -> list[dict]:
    return examples[:n] if n else examples


def _require_labels(task_cls: type[Task], examples: list[dict], split: str, why: str) -> None:
    """``UserError`` naming the first unlabelled example of ``split`` (its file:line when it has one)."""
    found = task_cls.first_unlabelled(examples)
    if found is not None:
        i, ex = found
        at = ex.get("source") or f"{split} split, example {i + 1}"
        raise UserError(f"{at}: {split} example without a label ({why})")


def _resolve_labels(args: FinetuneArgs, task_cls: type[Task], data: DatasetSplits | None) -> list[str]:
    if not task_cls.uses_label_set:
        return []
    model_labels = read_label_file(args.model_name_or_path) if os.path.isdir(args.model_name_or_path) else None
    if args.do_train:
        assert data is not None  # run() loads the data for --do_train
        labels = data.labels
        if len(labels) < task_cls.min_labels:
            raise UserError(f"--train_file: found {len(labels)} label(s), need at least {task_cls.min_labels}")
        return labels
    if model_labels is not None:
        return model_labels
    raise UserError(
        f"--model_name_or_path {args.model_name_or_path}: without --do_train it must be a fine-tuned "
        f"model directory (with {LABEL_FILE})"
    )


def run_device(args: FinetuneArgs) -> str:
    """``--device``, or by default gpu when this Paddle build has CUDA, else cpu."""
    return args.device or ("gpu" if paddle.device.is_compiled_with_cuda() else "cpu")


def run(args: FinetuneArgs, task_cls: type[Task], options=None, exporter: Callable | None = None) -> dict:
    """Do what the ``--do_*`` flags ask (see the module docstring); returns the results dict. ``exporter``
    (``export_model(model, tokenizer, labels, export_dir, task=, overwrite=) -> str``) serves ``--do_export``."""
    if args.do_export and exporter is None:
        raise ValueError("runner.run: --do_export needs an exporter (ernie.finetune_cli passes export_model)")
    env = init_distributed(run_device(args))  # the device; under paddle.distributed.launch, the collective group
    paddle.seed(args.seed)
    np.random.seed(args.seed)
    check_positions(args)
    data = load_data(args, task_cls) if (args.do_train or args.do_eval or args.do_predict) else None
    splits = {}
    if data is not None:
        splits = {
            "train": _limit(data.train, args.max_train_samples),
            "dev": _limit(data.dev, args.max_eval_samples),
            "test": _limit(data.test, args.max_predict_samples),
        }
        if args.do_train:
            if not splits["train"]:
                raise UserError("--do_train: the training split is empty")
            _require_labels(task_cls, splits["train"], "training", "every training example needs one")
        if (args.do_train or args.do_eval) and splits["dev"]:
            _require_labels(
                task_cls,
                splits["dev"],
                "dev",
                "the dev split is scored; pass unlabelled data as --test_file to predict it",
            )
    labels = _resolve_labels(args, task_cls, data)
    tokenizer = load_tokenizer(args)
    task = task_cls(tokenizer, labels, args.max_seq_length, options)
    metric = args.metric_for_best_model or task.default_metric
    if metric not in task.metric_names:
        raise UserError(f"--metric_for_best_model {metric}: not a {task.name} metric ({', '.join(task.metric_names)})")
    args.metric_for_best_model = metric
    if data is not None:  # before anything is written: an unknown label leaves output_dir as it was
        for name, examples in splits.items():
            task_cls.check_labels(examples, labels, f"{name} split")
    if not env.is_main:  # data parallel: rank 0 owns output_dir; the others train beside it and write nothing
        return _run_locked(args, task_cls, task, tokenizer, labels, data, splits, metric, exporter, env)
    created = not os.path.exists(args.output_dir)
    lock = lock_output_dir(args.output_dir, wait=LOCK_WAIT_SECONDS, log=log)
    try:
        return _run_locked(args, task_cls, task, tokenizer, labels, data, splits, metric, exporter, env)
    except BaseException:
        if created and os.listdir(args.output_dir) == [os.path.basename(lock.name)]:  # refused: leave no trace
            os.unlink(lock.name)
            os.rmdir(args.output_dir)
        raise
    finally:
        release_output_dir(lock)


def _run_locked(
    args: FinetuneArgs,
    task_cls: type[Task],
    task: Task,
    tokenizer,
    labels: list[str],
    data,
    splits,
    metric: str,
    exporter: Callable | None,
    env: DistEnv,
) -> dict:
    """:func:`run` once ``output_dir`` is locked (by rank 0): model and plan checked first, then training writes.
    With several ranks, rank 0 decides the plan (which checkpoint to resume) and every rank follows it."""
    out, main = args.output_dir, env.is_main
    if main:
        outdir.recover(out, log)
    plan = outdir.plan(args, log) if args.do_train and main else None
    if args.do_train and env.world_size > 1:
        plan = all_gather_object(plan, env.world_size)[0]
    model = load_model(args, task_cls, labels, tokenizer.vocab_size)
    resume = read_resume_checkpoint(plan.resume_from, model, labels) if plan and plan.resume_from else None

    results: dict = {"task": task.name, "labels": labels, "model_name_or_path": args.model_name_or_path}
    if data is not None:
        log(
            f"data: {args.dataset or 'files'}: train {len(splits['train'])}, dev {len(splits['dev'])}, "
            f"test {len(splits['test'])} examples"
            + (f"; labels {labels if len(labels) <= 10 else len(labels)}" if labels else "")
        )

    dev_features = task.encode(splits["dev"]) if splits.get("dev") else []

    def save_extra(d: str) -> None:
        tokenizer.save_pretrained(d)
        if labels:
            write_label_file(d, labels)

    trainer = FinetuneRecipe(
        model,
        args,
        task,
        [],
        dev_features,
        save_extra=save_extra,
        log=log if main else (lambda m: None),
        env=env,
    )
    if args.do_train:
        trainer.train_features = task.encode(splits["train"])
        assert plan is not None  # made above for --do_train
        if resume is not None:
            trainer.check_resume(resume)  # a refused resume changes nothing in output_dir
        if main:
            outdir.begin(out, plan, args.model_name_or_path)  # the first write into output_dir
        barrier(env.world_size)
        t0 = time.time()
        state = trainer.train(resume)
        if not main:
            return {}
        model = trainer.model  # the engine's (under O2: decorated)
        final = trainer.final_state_dict()
        outdir.publish(out, lambda d: save_model_dir(model, tokenizer, labels, d, state_dict=final))
        results["train"] = {
            "steps": state.global_step,
            "seconds": round(time.time() - t0, 1),
            "best_step": state.best_step,
            "best_metric": state.best_metric,
            "metric": metric,
        }
        if resume is not None:
            results["train"]["resumed_from"] = resume.path
        log(f"saved the fine-tuned model to {out}")
    if not main:
        return {}
    if args.do_eval:
        if not dev_features:
            raise UserError("--do_eval: no dev data (pass --dev_file or --dataset)")
        outputs, loss = trainer.predict(dev_features)
        results["eval"] = {**task.metrics(outputs, dev_features), "loss": loss}
        results["eval_predictions_file"] = task.write_predictions(
            args.output_dir, splits["dev"], dev_features, outputs, split="eval"
        )
        write_json(os.path.join(args.output_dir, "eval_results.json"), results["eval"])
        log("dev: " + ", ".join(f"{k} {v:.4f}" for k, v in results["eval"].items()))
    if args.do_predict:
        if not splits.get("test"):
            raise UserError("--do_predict: no test data (pass --test_file or --dataset)")
        features = task.encode(splits["test"])
        outputs, loss = trainer.predict(features)
        pred_path = task.write_predictions(args.output_dir, splits["test"], features, outputs)
        results["predictions_file"] = pred_path
        if task_cls.first_unlabelled(splits["test"]) is None:
            results["test"] = {**task.metrics(outputs, features), "loss": loss}
            write_json(os.path.join(args.output_dir, "test_results.json"), results["test"])
            log("test: " + ", ".join(f"{k} {v:.4f}" for k, v in results["test"].items()))
        log(f"wrote {len(splits['test'])} predictions to {pred_path}")
    if args.do_export:
        export_dir = os.path.join(args.output_dir, "export")
        assert exporter is not None  # run() refuses --do_export without one
        results["export_dir"] = exporter(
            model, tokenizer, labels, export_dir, task=task.name, overwrite=args.do_train or args.overwrite_output_dir
        )
        log(f"exported the inference model to {export_dir}")
    write_json(os.path.join(args.output_dir, "all_results.json"), results)
    if args.do_train:
        outdir.finish(out)  # written last: the run is complete
    return results
