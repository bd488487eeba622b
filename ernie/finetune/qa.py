"""Extractive question answering (span extraction): :class:`QaTask` (run by scripts/run_qa.py,
:func:`ernie.finetune_cli.run_qa`).

    python scripts/run_qa.py --dataset peoples_daily_qa --model_name_or_path output/model_last \
        --output_dir output/qa --do_train --do_eval --do_predict --do_export
    python scripts/run_qa.py --dataset cmrc2018 --data_dir data/cmrc2018 --model_name_or_path ... --do_train --do_eval

Data: SQuAD-style JSON (the layout of CMRC 2018 and DuReader-robust): ``{"data": [{"title", "paragraphs":
[{"context", "qas": [{"id", "question", "answers": [{"text", "answer_start"}]}]}]}]}``; a question without answers
is unlabelled (predicted, not scored).

Features: ``[CLS] question[:max_query_length] [SEP] window [SEP]``, token types 0 / 1. The context is tokenized
with character offsets (each CJK character and punctuation mark a token; other runs WordPiece-split, pieces
mapped to their characters; whitespace dropped) and cut into windows of ``max_seq_length - len(question) - 3``
tokens whose starts are ``--doc_stride`` tokens apart (BERT's convention; the last window reaches the end), so a
long context is covered by overlapping windows. A window that does not hold the whole answer is trained to point
at [CLS]. Prediction: per window the ``--n_best_size`` best starts and ends over context tokens, spans of at most
``--max_answer_length`` tokens scored by start + end logit; the best span over all windows of a question is mapped
back to the context's characters. Metrics: CMRC 2018's official EM / F1 (:func:`metrics.cmrc_scores`).
Predictions: ``{id: answer}`` JSON (``test_predictions.json``; ``eval_predictions.json`` with ``--do_eval``).

Files are read by :func:`ernie.finetune.readers.read_squad_file`; the built-in ``peoples_daily_qa`` (cloze
questions in the manner of CMRC 2017) is built by :func:`data_tools.corpus.peoples_daily_qa_dataset`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np
import paddle

from data_tools.corpus import peoples_daily_qa_dataset
from ernie.tokenizer import is_cjk_char, is_punctuation
from ernie.utils import UserError, atomic_write, require_positive

from .metrics import cmrc_scores
from .readers import read_squad_file, squad_training_examples
from .tasks import Task, cross_entropy


# ------------------------------------------------------------------------------------------- tokenization
class OffsetTokenizer:
    """Token ids with character offsets ``(start, end)`` into the text (see the module docstring)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self._cache: dict[str, tuple[list[int], list[int]]] = {}

    def _word(self, word: str) -> tuple[list[int], list[int]]:
        """(piece ids, piece lengths in characters) of one word."""
        hit = self._cache.get(word)
        if hit is None:
            pieces = self.tokenizer.tokenize(word)
            lengths, left = [], len(word)
            for k, piece in enumerate(pieces):
                n = (
                    left
                    if k == len(pieces) - 1
                    else min(left, max(1, len(piece[2:] if piece.startswith("##") else piece)))
                )
                lengths.append(n)
                left -= n
            hit = (self.tokenizer.convert_tokens_to_ids(pieces) if pieces else [], lengths)
            if len(self._cache) < 200_000:
                self._cache[word] = hit
        return hit

    def __call__(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        ids: list[int] = []
        offsets: list[tuple[int, int]] = []
        start = None

        def flush(end: int):
            nonlocal start
            if start is not None:
                pos = start
                for tid, n in zip(*self._word(text[start:end])):
                    ids.append(tid)
                    offsets.append((pos, pos + n))
                    pos += n
                start = None

        for i, ch in enumerate(text):
            if ch.isspace():
                flush(i)
            elif is_cjk_char(ch) or is_punctuation(ch):
                flush(i)
                start = i
                flush(i + 1)
            elif start is None:
                start = i
        flush(len(text))
        return ids, offsets


# ------------------------------------------------------------------------------------------------- the task
@dataclass
class QaOptions:
    """Flags of span-extraction QA (PaddleNLP's run_qa.py names and defaults)."""

    doc_stride: int = field(default=128, metadata={"help": "tokens between the starts of two context windows"})
    max_query_length: int = field(default=64, metadata={"help": "question tokens kept"})
    max_answer_length: int = field(default=30, metadata={"help": "longest answer span predicted, in tokens"})
    n_best_size: int = field(default=20, metadata={"help": "start / end candidates per window"})

    def validate(self, args) -> None:
        require_positive(self, ("doc_stride", "max_query_length", "max_answer_length", "n_best_size"))
        if self.max_query_length + 3 >= args.max_seq_length:
            raise UserError(
                f"--max_query_length {self.max_query_length} leaves no room for the context in "
                f"--max_seq_length {args.max_seq_length}"
            )


class QaTask(Task):
    name = "qa"
    description = "Fine-tune ERNIE for extractive question answering (SQuAD-style span extraction)."
    model_class = "ErnieForQuestionAnswering"
    label_keys = ("start_positions", "end_positions")
    output_names = ("start_logits", "end_logits")
    default_metric = "f1"
    metric_names = ("f1", "exact_match", "loss")
    uses_label_set = False
    builtin_datasets = {"peoples_daily_qa": peoples_daily_qa_dataset}
    file_format = (
        'SQuAD-style JSON {"data": [{"title", "paragraphs": [{"context", "qas": [{"id", '
        '"question", "answers": [{"text", "answer_start"}]}]}]}]} (CMRC 2018 / DuReader-robust)'
    )
    predictor = "ernie.deploy.qa_infer:QaPredictor"
    Options = QaOptions

    read_file = staticmethod(read_squad_file)

    @classmethod
    def training_examples(cls, examples: list[dict], source: str) -> list[dict]:
        return squad_training_examples(examples, source)

    def __init__(self, tokenizer, labels: list[str], max_seq_length: int, options=None):
        super().__init__(tokenizer, labels, max_seq_length, options)
        self.offset_tokenizer = OffsetTokenizer(tokenizer)

    @classmethod
    def example_labels(cls, example: dict) -> list[str] | None:
        return None if not example["answers"] else []  # labelled, but no label set

    # ------------------------------------------------------------------------------------------ features
    def encode(self, examples: list[dict]) -> list[dict]:
        """One feature per window (see the module docstring); each keeps its example's index, the token offsets of
        its context tokens, and (for scoring) the example's id, context and answers."""
        tok, opt = self.tokenizer, self.options
        out = []
        for index, ex in enumerate(examples):
            q_ids = tok.convert_tokens_to_ids(tok.tokenize(ex["question"]))[: opt.max_query_length]
            c_ids, c_offsets = self.offset_tokenizer(ex["context"])
            room = self.max_seq_length - len(q_ids) - 3
            span = None
            located = [(a, t) for a, t in zip(ex["answer_starts"], ex["answers"]) if a is not None]
            if located:  # the first answer found in the context is the one trained on
                a0, a1 = located[0][0], located[0][0] + len(located[0][1])
                inside = [k for k, (s, e) in enumerate(c_offsets) if s < a1 and e > a0]
                span = (inside[0], inside[-1]) if inside else None
            starts, w0 = [0], 0
            while w0 + room < len(c_ids):
                w0 += min(room, opt.doc_stride)
                starts.append(w0)
            for w0 in starts:
                w1 = min(w0 + room, len(c_ids))
                ids = [tok.cls_token_id, *q_ids, tok.sep_token_id, *c_ids[w0:w1], tok.sep_token_id]
                first = len(q_ids) + 2  # index of the window's first context token
                feature = {
                    "input_ids": np.asarray(ids, dtype=np.int64),
                    "token_type_ids": np.asarray([0] * first + [1] * (w1 - w0 + 1), dtype=np.int64),
                    "example_index": index,
                    "context_start": first,
                    "offsets": c_offsets[w0:w1],
                    "id": ex["id"],
                    "context": ex["context"],
                    "answers": ex["answers"],
                }
                if ex["answers"]:
                    if span is not None and w0 <= span[0] and span[1] < w1:
                        feature["start_positions"] = np.int64(first + span[0] - w0)
                        feature["end_positions"] = np.int64(first + span[1] - w0)
                    else:
                        feature["start_positions"] = feature["end_positions"] = np.int64(0)
                out.append(feature)
        return out

    def collate(self, features: list[dict]) -> dict[str, np.ndarray]:
        batch = super().collate(features)
        batch["lengths"] = np.asarray([len(f["input_ids"]) for f in features], dtype=np.int64)
        if all("start_positions" in f for f in features):
            batch["start_positions"] = np.asarray([f["start_positions"] for f in features], dtype=np.int64)
            batch["end_positions"] = np.asarray([f["end_positions"] for f in features], dtype=np.int64)
        return batch

    def loss(self, raw, batch: dict[str, np.ndarray]) -> paddle.Tensor:
        start_logits, end_logits = raw
        return (
            cross_entropy(start_logits, paddle.to_tensor(batch["start_positions"]))
            + cross_entropy(end_logits, paddle.to_tensor(batch["end_positions"]))
        ) / 2

    def outputs(self, raw, batch: dict[str, np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        start, end = (t.numpy() for t in raw)
        return [(start[i, :n], end[i, :n]) for i, n in enumerate(batch["lengths"])]

    # ---------------------------------------------------------------------------------------- predictions
    def best_span(
        self, feature: dict, start_logits: np.ndarray, end_logits: np.ndarray
    ) -> tuple[float, int, int] | None:
        """(score, char start, char end) of the best answer span in one window, or None."""
        first, n = feature["context_start"], len(feature["offsets"])
        s_logits, e_logits = start_logits[first : first + n], end_logits[first : first + n]
        k = self.options.n_best_size
        best = None
        for s in np.argsort(-s_logits)[:k]:
            for e in np.argsort(-e_logits)[:k]:
                if e < s or e - s + 1 > self.options.max_answer_length:
                    continue
                score = float(s_logits[s] + e_logits[e])
                if best is None or score > best[0]:
                    best = (score, feature["offsets"][s][0], feature["offsets"][e][1])
        return best

    def predictions(self, outputs: list, features: list[dict]) -> dict[str, str]:
        """``{id: answer text}``: the best span over all windows of each question ("" when none is valid)."""
        best: dict[str, tuple[float, str]] = {}
        for (start_logits, end_logits), f in zip(outputs, features):
            found = self.best_span(f, start_logits, end_logits)
            if f["id"] not in best:
                best[f["id"]] = (float("-inf"), "")
            if found is not None and found[0] > best[f["id"]][0]:
                best[f["id"]] = (found[0], f["context"][found[1] : found[2]])
        return {qid: text for qid, (_, text) in best.items()}

    def metrics(self, outputs: list, features: list[dict]) -> dict[str, float]:
        references = {f["id"]: f["answers"] for f in features}
        return cmrc_scores(references, self.predictions(outputs, features))

    def write_predictions(
        self, output_dir: str, examples: list[dict], features: list[dict], outputs: list, split: str = "test"
    ) -> str:
        path = os.path.join(output_dir, f"{split}_predictions.json")
        with atomic_write(path, "w") as f:
            json.dump(self.predictions(outputs, features), f, ensure_ascii=False, indent=1)
            f.write("\n")
        return path
