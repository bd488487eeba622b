"""The two fine-tuning tasks: encoding examples into features, batching, loss, outputs, metrics, prediction rows.

A feature is a dict of numpy arrays for one example: ``input_ids`` [L], ``token_type_ids`` [L] and, when the
example is labelled, ``labels`` ([] for seq_cls, [L] for ner with ``IGNORE_INDEX`` on [CLS]/[SEP]).
"""
from __future__ import annotations

import numpy as np
import paddle

from .metrics import classification_metrics, entity_prf, bio_entities
from .trainer import IGNORE_INDEX, cross_entropy, pad_stack


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


class SeqClsTask:
    """Sequence (pair) classification: the [CLS] head's logits; accuracy and macro-F1."""

    name = "seq_cls"
    default_metric = "accuracy"
    metric_names = ("accuracy", "macro_f1", "loss")

    def __init__(self, tokenizer, labels: list[str], max_seq_length: int):
        self.tokenizer, self.labels, self.max_seq_length = tokenizer, labels, max_seq_length
        self.label2id = {label: i for i, label in enumerate(labels)}

    def encode(self, examples: list[dict]) -> list[dict]:
        out = []
        for ex in examples:
            enc = self.tokenizer(ex["text"], ex["text_pair"], max_length=self.max_seq_length, truncation=True)
            feature = {k: np.asarray(enc[k], dtype=np.int64) for k in ("input_ids", "token_type_ids")}
            if ex["label"] is not None:
                feature["labels"] = np.int64(self.label2id[ex["label"]])
            out.append(feature)
        return out

    def collate(self, features: list[dict]) -> dict[str, np.ndarray]:
        batch = {"input_ids": pad_stack([f["input_ids"] for f in features], self.tokenizer.pad_token_id),
                 "token_type_ids": pad_stack([f["token_type_ids"] for f in features], 0)}
        if all("labels" in f for f in features):
            batch["labels"] = np.asarray([f["labels"] for f in features], dtype=np.int64)
        return batch

    def loss(self, logits: paddle.Tensor, labels: paddle.Tensor) -> paddle.Tensor:
        return cross_entropy(logits, labels)

    def outputs(self, logits: np.ndarray, batch: dict[str, np.ndarray]) -> list[np.ndarray]:
        return list(logits)

    def metrics(self, outputs: list[np.ndarray], features: list[dict]) -> dict[str, float]:
        return classification_metrics(np.stack(outputs), np.asarray([f["labels"] for f in features]))

    def prediction_rows(self, examples: list[dict], outputs: list[np.ndarray]) -> tuple[list[str], list[list]]:
        """Header and rows of the predictions file (tsv)."""
        probs = softmax(np.stack(outputs))
        rows = [[ex["text"] if ex["text_pair"] is None else f"{ex['text']} ||| {ex['text_pair']}",
                 self.labels[int(p.argmax())], f"{p.max():.4f}"] for ex, p in zip(examples, probs)]
        return ["text", "label", "confidence"], rows


class NerTask:
    """Character-level BIO tagging: one token per character; entity-level precision / recall / F1."""

    name = "ner"
    default_metric = "f1"
    metric_names = ("f1", "precision", "recall", "loss")

    def __init__(self, tokenizer, labels: list[str], max_seq_length: int):
        self.tokenizer, self.labels, self.max_seq_length = tokenizer, labels, max_seq_length
        self.label2id = {label: i for i, label in enumerate(labels)}
        self._char_ids: dict[str, int] = {}

    def char_id(self, ch: str) -> int:
        """The id of one character: its first WordPiece, or [UNK] when it tokenizes to nothing (e.g. a space)."""
        cid = self._char_ids.get(ch)
        if cid is None:
            pieces = self.tokenizer.tokenize(ch)
            cid = self.tokenizer.convert_tokens_to_ids(pieces[0]) if pieces else self.tokenizer.unk_token_id
            self._char_ids[ch] = cid
        return cid

    def encode(self, examples: list[dict]) -> list[dict]:
        """``[CLS] chars[:max_seq_length - 2] [SEP]``; labels ``IGNORE_INDEX`` on the special tokens."""
        out, keep = [], self.max_seq_length - 2
        tok = self.tokenizer
        for ex in examples:
            ids = [tok.cls_token_id, *(self.char_id(c) for c in ex["tokens"][:keep]), tok.sep_token_id]
            feature = {"input_ids": np.asarray(ids, dtype=np.int64),
                       "token_type_ids": np.zeros(len(ids), dtype=np.int64)}
            if ex["labels"] is not None:
                tags = [self.label2id[t] for t in ex["labels"]]
                feature["labels"] = np.asarray([IGNORE_INDEX, *tags[:keep], IGNORE_INDEX], dtype=np.int64)
                feature["gold"] = np.asarray(tags, dtype=np.int64)  # all characters, for scoring
            out.append(feature)
        return out

    def collate(self, features: list[dict]) -> dict[str, np.ndarray]:
        batch = {"input_ids": pad_stack([f["input_ids"] for f in features], self.tokenizer.pad_token_id),
                 "token_type_ids": pad_stack([f["token_type_ids"] for f in features], 0),
                 "lengths": np.asarray([len(f["input_ids"]) - 2 for f in features], dtype=np.int64)}
        if all("labels" in f for f in features):
            batch["labels"] = pad_stack([f["labels"] for f in features], IGNORE_INDEX)
        return batch

    def loss(self, logits: paddle.Tensor, labels: paddle.Tensor) -> paddle.Tensor:
        return cross_entropy(logits, labels)

    def outputs(self, logits: np.ndarray, batch: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Predicted tag ids per example, for its characters only (no [CLS]/[SEP]/padding)."""
        tags = logits.argmax(-1)
        return [tags[i, 1:1 + n] for i, n in enumerate(batch["lengths"])]

    def tags(self, output: np.ndarray, n_chars: int) -> list[str]:
        """Tag names for all ``n_chars`` characters (those cut by ``max_seq_length`` are ``O``)."""
        return [self.labels[int(t)] for t in output] + ["O"] * (n_chars - len(output))

    def metrics(self, outputs: list[np.ndarray], features: list[dict]) -> dict[str, float]:
        """Entity P/R/F1 against the gold tags of all characters (those cut by ``max_seq_length`` included)."""
        gold = [[self.labels[t] for t in f["gold"]] for f in features]
        pred = [self.tags(o, len(g)) for o, g in zip(outputs, gold)]
        return entity_prf(gold, pred)

    def prediction_rows(self, examples: list[dict], outputs: list[np.ndarray]) -> tuple[list[str], list[list]]:
        header = ["text", "tags", "entities"]
        rows = []
        for ex, o in zip(examples, outputs):
            tags = self.tags(o, len(ex["tokens"]))
            ents = sorted(bio_entities(tags), key=lambda e: e[1])
            rows.append(["".join(ex["tokens"]), " ".join(tags),
                         " ".join(f"{''.join(ex['tokens'][s:e])}/{k}" for k, s, e in ents)])
        return header, rows
