"""The fine-tuning driver behind scripts/run_seq_cls.py and scripts/run_ner.py.

``run(args, task_name)`` does, in order, what the ``--do_*`` flags ask:

* ``--do_train``: fine-tune, write checkpoints, then the final (or best) model into ``output_dir`` itself:
  ``model_state.pdparams``, ``config.json`` / ``model_config.json`` (with ``id2label``), ``vocab.txt``,
  ``tokenizer_config.json``, ``label.txt`` (one label a line, line number = id);
* ``--do_eval``: score the dev split -> ``eval_results.json``;
* ``--do_predict``: predict the test split -> ``test_predictions.tsv`` (+ ``test_results.json`` when labelled);
* ``--do_export``: static inference model -> ``output_dir/export/`` (see :mod:`ernie.deploy.export`).

It returns (and writes to ``all_results.json``) a dict with the figures, for scripts and the end-to-end demo.
"""
from __future__ import annotations

import csv
import os
import shutil
import sys
import time

import numpy as np

from ernie.utils import UserError, atomic_dir, atomic_write

from . import data as D
from .args import FinetuneArgs
from .trainer import Trainer, list_checkpoints, write_json

LABEL_FILE = "label.txt"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def read_label_file(directory: str) -> list[str] | None:
    """Labels from ``directory/label.txt`` (None when there is none)."""
    path = os.path.join(directory, LABEL_FILE)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        labels = [line.rstrip("\n") for line in f if line.strip()]
    if not labels:
        raise UserError(f"{path}: empty label file")
    return labels


def write_label_file(directory: str, labels: list[str]) -> None:
    with atomic_write(os.path.join(directory, LABEL_FILE), "w") as f:
        f.write("".join(f"{label}\n" for label in labels))


def make_task(task_name: str, tokenizer, labels: list[str], max_seq_length: int):
    from .tasks import NerTask, SeqClsTask

    return (SeqClsTask if task_name == D.SEQ_CLS else NerTask)(tokenizer, labels, max_seq_length)


def load_tokenizer(args: FinetuneArgs):
    from ernie.tokenizer import ErnieTokenizer

    source = args.tokenizer_name_or_path or args.model_name_or_path
    if not os.path.isdir(source):
        flag = "--tokenizer_name_or_path" if args.tokenizer_name_or_path else "--model_name_or_path"
        raise UserError(f"{flag} {source}: no such directory with vocab.txt (give --tokenizer_name_or_path VOCAB_DIR "
                        f"when --model_name_or_path is a config name)")
    return ErnieTokenizer.from_pretrained(source)


def load_model(args: FinetuneArgs, task_name: str, labels: list[str], vocab_size: int):
    """A model directory (weights + config) or a configs/models name / config file (random init); the tokenizer's
    ``vocab_size`` must fit the model's embedding table."""
    from ernie.modeling import ErnieForSequenceClassification, ErnieForTokenClassification

    cls = ErnieForSequenceClassification if task_name == D.SEQ_CLS else ErnieForTokenClassification
    path = args.model_name_or_path
    model = cls.from_pretrained(path, num_labels=len(labels))  # a config name: same shapes as pretraining uses
    if model.config.vocab_size < vocab_size:
        raise UserError(f"--tokenizer_name_or_path: the vocab has {vocab_size} tokens but the model "
                        f"{path} only {model.config.vocab_size}")
    model.config.extra = {**model.config.extra, "id2label": {str(i): l for i, l in enumerate(labels)},
                          "label2id": {l: i for i, l in enumerate(labels)}}
    init = "random init" if not os.path.isdir(path) else "weights"
    log(f"model: {cls.__name__} from {path} ({init}; {model.config.num_hidden_layers} layers, hidden "
        f"{model.config.hidden_size}, {sum(int(np.prod(p.shape)) for p in model.parameters()) / 1e6:.2f}M params)")
    return model


def load_data(args: FinetuneArgs, task_name: str) -> D.DatasetSplits:
    if args.dataset:
        return D.load_builtin(args.dataset, task_name)
    return D.load_files(task_name, args.train_file, args.dev_file, args.test_file)


def prepare_output_dir(args: FinetuneArgs) -> None:
    """Refuse to train into a non-empty ``output_dir`` unless ``--overwrite_output_dir`` (then stale checkpoints
    of the previous run are removed, so that rotation and best-model tracking see only this run)."""
    out = args.output_dir
    if args.do_train and os.path.isdir(out) and os.listdir(out):
        if not args.overwrite_output_dir:
            raise UserError(f"--output_dir {out} already exists and is not empty; pass --overwrite_output_dir to "
                            f"train into it")
        for path in list_checkpoints(out):
            shutil.rmtree(path)
    os.makedirs(out, exist_ok=True)


def save_model_dir(model, tokenizer, labels: list[str], directory: str) -> None:
    """Model + tokenizer + label.txt: a directory that --model_name_or_path and export_model.py accept."""
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    write_label_file(directory, labels)


def publish_model(model, tokenizer, labels: list[str], output_dir: str) -> None:
    """Write the final model into ``output_dir`` itself: complete in a temporary sibling first, then each file is
    moved in with one atomic rename."""
    staging = os.path.join(output_dir, "final_model")
    with atomic_dir(staging) as tmp:
        save_model_dir(model, tokenizer, labels, tmp)
    for name in sorted(os.listdir(staging)):
        os.replace(os.path.join(staging, name), os.path.join(output_dir, name))
    os.rmdir(staging)


def write_predictions(path: str, header: list[str], rows: list[list]) -> None:
    with atomic_write(path, "w") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
        w.writerow(header)
        w.writerows(rows)


def _limit(examples: list[dict], n: int | None) -> list[dict]:
    return examples[:n] if n else examples


def run(args: FinetuneArgs, task_name: str) -> dict:
    """Do what the ``--do_*`` flags ask (see the module docstring); returns the results dict."""
    import paddle

    device = args.device or ("gpu" if paddle.device.is_compiled_with_cuda() else "cpu")
    paddle.set_device(device)
    paddle.seed(args.seed)
    np.random.seed(args.seed)
    if args.dataset:
        D.check_dataset_name(args.dataset, task_name)
    prepare_output_dir(args)
    tokenizer = load_tokenizer(args)
    data = load_data(args, task_name) if (args.do_train or args.do_eval or args.do_predict) else None

    model_labels = read_label_file(args.model_name_or_path) if os.path.isdir(args.model_name_or_path) else None
    if args.do_train:
        labels = data.labels
        if len(labels) < 2 and task_name == D.SEQ_CLS:
            raise UserError(f"--train_file: found {len(labels)} label(s), need at least 2")
    elif model_labels is not None:
        labels = model_labels
    else:
        raise UserError(f"--model_name_or_path {args.model_name_or_path}: without --do_train it must be a fine-tuned "
                        f"model directory (with {LABEL_FILE})")
    task = make_task(task_name, tokenizer, labels, args.max_seq_length)
    metric = args.metric_for_best_model or task.default_metric
    if metric not in task.metric_names:
        raise UserError(f"--metric_for_best_model {metric}: not a {task_name} metric ({', '.join(task.metric_names)})")
    args.metric_for_best_model = metric
    model = load_model(args, task_name, labels, tokenizer.vocab_size)

    results: dict = {"task": task_name, "labels": labels, "model_name_or_path": args.model_name_or_path}
    splits = {}
    if data is not None:
        splits = {"train": _limit(data.train, args.max_train_samples), "dev": _limit(data.dev, args.max_eval_samples),
                  "test": _limit(data.test, args.max_predict_samples)}
        for name, examples in splits.items():
            D.check_labels(examples, labels, task_name, f"{name} split")
        log(f"data: {args.dataset or 'files'}: train {len(splits['train'])}, dev {len(splits['dev'])}, "
            f"test {len(splits['test'])} examples; labels {labels if len(labels) <= 10 else len(labels)}")

    dev_features = task.encode(splits["dev"]) if splits.get("dev") else []
    trainer = Trainer(model, args, task, [], dev_features,
                      save_extra=lambda d: (tokenizer.save_pretrained(d), write_label_file(d, labels)), log=log)
    if args.do_train:
        if not splits["train"]:
            raise UserError("--do_train: the training split is empty")
        trainer.train_features = task.encode(splits["train"])
        t0 = time.time()
        state = trainer.train()
        publish_model(model, tokenizer, labels, args.output_dir)
        results["train"] = {"steps": state.global_step, "seconds": round(time.time() - t0, 1),
                            "best_step": state.best_step, "best_metric": state.best_metric, "metric": metric}
        log(f"saved the fine-tuned model to {args.output_dir}")
    if args.do_eval:
        if not dev_features:
            raise UserError("--do_eval: no dev data (pass --dev_file or --dataset)")
        results["eval"] = trainer.evaluate(dev_features)
        write_json(os.path.join(args.output_dir, "eval_results.json"), results["eval"])
        log("dev: " + ", ".join(f"{k} {v:.4f}" for k, v in results["eval"].items()))
    if args.do_predict:
        if not splits.get("test"):
            raise UserError("--do_predict: no test data (pass --test_file or --dataset)")
        features = task.encode(splits["test"])
        outputs, loss = trainer.predict(features)
        header, rows = task.prediction_rows(splits["test"], outputs)
        pred_path = os.path.join(args.output_dir, "test_predictions.tsv")
        write_predictions(pred_path, header, rows)
        results["predictions_file"] = pred_path
        if all("labels" in f for f in features):
            results["test"] = {**task.metrics(outputs, features), "loss": loss}
            write_json(os.path.join(args.output_dir, "test_results.json"), results["test"])
            log("test: " + ", ".join(f"{k} {v:.4f}" for k, v in results["test"].items()))
        log(f"wrote {len(rows)} predictions to {pred_path}")
    if args.do_export:
        from ernie.deploy.export import export_model

        export_dir = os.path.join(args.output_dir, "export")
        results["export_dir"] = export_model(model, tokenizer, labels, export_dir, task=task_name,
                                             overwrite=args.do_train or args.overwrite_output_dir)
        log(f"exported the inference model to {export_dir}")
    write_json(os.path.join(args.output_dir, "all_results.json"), results)
    return results


def main_for(task_name: str, argv: list[str] | None, prog: str) -> dict:
    from .args import parse_args

    doc = {D.SEQ_CLS: "Fine-tune ERNIE for sequence (pair) classification.",
           D.NER: "Fine-tune ERNIE for character-level named-entity recognition (BIO)."}[task_name]
    args = parse_args(argv if argv is not None else sys.argv[1:], prog=prog, description=doc)
    from ernie.utils.cpu_tuning import tune_cpu_math

    tune_cpu_math()  # process-level CPU settings, before the first GEMM
    return run(args, task_name)
