"""Extractive QA with an exported model (scripts/qa_infer.py): Paddle Inference or ONNX Runtime.

    python scripts/qa_infer.py --model_dir output/qa/export --input_file dev.json --backend onnxruntime \
        --output predictions.json

``--input_file`` is SQuAD-style JSON (CMRC 2018 / DuReader-robust layout); the predictions ``{id: answer}`` are
written to ``--output`` (atomically, never over an existing file without ``--overwrite``) and CMRC 2018 EM/F1 are
printed over the questions that have answers (the line says how many lack them; with none, it says why there is
no score). ``--max_seq_length`` defaults to 384, or to the model's ``max_position_embeddings`` when that is
smaller (and ``--max_query_length`` to 64, or half of it when that is less); an export of another task is
refused. Windows and the answer search are those of fine-tuning (:class:`ernie.finetune.qa.QaTask`), so the same
flags give the same answers.
"""

from __future__ import annotations

import json
import os
from typing import Any

from ernie.finetune.metrics import cmrc_scores
from ernie.finetune.readers import read_squad_file
from ernie.tokenizer import ErnieTokenizer
from ernie.utils import ArgumentParser, atomic_write, check_output_path, cli_main, require_positive

from .infer import BACKENDS, add_precision_flag, check_max_length, check_task, make_backend, model_positions
from .layout import INPUT_NAMES

DEFAULT_MAX_SEQ_LENGTH = 384  # PaddleNLP's run_du.py / HF's run_qa.py; capped at the model's positions


class QaPredictor:
    """Span-extraction QA on an exported model: the same windows and answer search as fine-tuning
    (:class:`ernie.finetune.qa.QaTask`), start/end logits from the backend."""

    def __init__(
        self,
        model_dir: str,
        backend: str = "paddle",
        device: str = "cpu",
        batch_size: int = 32,
        max_length: int = 384,
        num_threads: int = 1,
        doc_stride: int = 128,
        max_query_length: int = 64,
        max_answer_length: int = 30,
        n_best_size: int = 20,
        precision: str = "fp32",
    ):
        # delays Paddle (ernie.finetune.qa imports it): importing this module and --help stay Paddle-free
        from ernie.finetune.qa import QaOptions, QaTask

        self.backend = make_backend(model_dir, backend, device, num_threads, precision)
        tokenizer = ErnieTokenizer.from_pretrained(model_dir)
        self.task = QaTask(
            tokenizer, [], max_length, QaOptions(doc_stride, max_query_length, max_answer_length, n_best_size)
        )
        self.batch_size = batch_size

    def predict(self, examples: list[dict]) -> dict[str, str]:
        """``{id: answer}`` for examples ``{"id", "question", "context"[, "answers", "answer_starts"]}``."""
        examples = [{"answers": [], "answer_starts": [], **ex} for ex in examples]
        features = self.task.encode(examples)
        outputs: list[tuple[Any, Any]] = []  # per feature: (start logits, end logits)
        for i in range(0, len(features), self.batch_size):
            batch = self.task.collate(features[i : i + self.batch_size])
            start, end = self.backend.run_all({k: batch[k] for k in INPUT_NAMES})[:2]
            outputs.extend((start[j, :n], end[j, :n]) for j, n in enumerate(batch["lengths"]))
        return self.task.predictions(outputs, features)


@cli_main
def main(argv: list[str] | None = None) -> dict:
    """scripts/qa_infer.py; returns ``{"predictions": {id: answer}, "scores": {...} | None}``."""
    p = ArgumentParser(
        allow_abbrev=False, prog="qa_infer.py", description="Extractive QA with an exported ERNIE model."
    )
    p.add_argument("--model_dir", required=True, help="exported QA model (run_qa.py --do_export / export_model.py)")
    p.add_argument("--input_file", required=True, help="SQuAD-style JSON (CMRC 2018 / DuReader-robust layout)")
    p.add_argument("--output", required=True, help="predictions JSON {id: answer}")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    p.add_argument("--backend", choices=BACKENDS, default="paddle")
    p.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument(
        "--max_seq_length",
        type=int,
        default=None,
        help=f"tokens per window; default {DEFAULT_MAX_SEQ_LENGTH} or the model's positions if fewer",
    )
    p.add_argument("--doc_stride", type=int, default=128)
    p.add_argument(
        "--max_query_length",
        type=int,
        default=None,
        help="question tokens kept; default 64, or half of --max_seq_length if that is less",
    )
    p.add_argument("--max_answer_length", type=int, default=30)
    p.add_argument("--n_best_size", type=int, default=20)
    p.add_argument("--cpu_threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    add_precision_flag(p)
    a = p.parse_args(argv)
    from ernie.finetune.qa import QaOptions  # delays Paddle (ernie.finetune.qa imports it) until the flags parse

    check_task(a.model_dir, "qa", "qa_infer.py")
    if a.max_seq_length is None:
        a.max_seq_length = min(DEFAULT_MAX_SEQ_LENGTH, model_positions(a.model_dir) or DEFAULT_MAX_SEQ_LENGTH)
    if a.max_query_length is None:
        a.max_query_length = min(QaOptions.max_query_length, a.max_seq_length // 2)
    require_positive(a, ("batch_size", "max_seq_length", "cpu_threads"))
    check_max_length(a.model_dir, a.max_seq_length, "--max_seq_length")
    QaOptions(a.doc_stride, a.max_query_length, a.max_answer_length, a.n_best_size).validate(a)  # their one check
    check_output_path(a.output, a.overwrite)
    examples = read_squad_file(a.input_file)
    predictor = QaPredictor(
        a.model_dir,
        a.backend,
        a.device,
        a.batch_size,
        a.max_seq_length,
        a.cpu_threads,
        a.doc_stride,
        a.max_query_length,
        a.max_answer_length,
        a.n_best_size,
        a.precision,
    )
    predictions = predictor.predict(examples)
    with atomic_write(a.output, "w") as f:
        json.dump(predictions, f, ensure_ascii=False, indent=1)
        f.write("\n")
    scores = None
    answered = {ex["id"]: ex["answers"] for ex in examples if ex["answers"]}
    if answered:
        scores = cmrc_scores(answered, predictions)
        note = (
            f"{len(examples)} questions"
            if len(answered) == len(examples)
            else f"the {len(answered)} of {len(examples)} questions that have answers; the other "
            f"{len(examples) - len(answered)} are predicted, not scored"
        )
        print(f"EM {scores['exact_match']:.2f}  F1 {scores['f1']:.2f}  ({note})")
    else:
        print(f"no EM/F1: no question in {a.input_file} has answers")
    print(f"wrote {len(predictions)} predictions to {a.output}")
    return {"predictions": predictions, "scores": scores}
