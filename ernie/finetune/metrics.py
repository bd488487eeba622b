"""Evaluation metrics: accuracy and macro-F1 for classification, entity-level P/R/F1 for BIO tagging."""
from __future__ import annotations

import numpy as np


def accuracy(preds: np.ndarray, labels: np.ndarray) -> float:
    """Share of ``preds`` [N] equal to ``labels`` [N]."""
    preds, labels = np.asarray(preds), np.asarray(labels)
    return float((preds == labels).mean()) if len(labels) else 0.0


def macro_f1(preds: np.ndarray, labels: np.ndarray, num_labels: int) -> float:
    """Unweighted mean over the ``num_labels`` classes of per-class F1 (a class absent from both is scored 0)."""
    preds, labels = np.asarray(preds), np.asarray(labels)
    classes = np.arange(num_labels)
    tp = ((preds[:, None] == classes) & (labels[:, None] == classes)).sum(0)
    predicted = (preds[:, None] == classes).sum(0)
    actual = (labels[:, None] == classes).sum(0)
    denom = predicted + actual
    f1 = np.divide(2 * tp, denom, out=np.zeros(num_labels), where=denom > 0)
    return float(f1.mean())


def classification_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """``{"accuracy", "macro_f1"}`` from ``logits`` [N, C] and gold ``labels`` [N]."""
    preds = np.asarray(logits).argmax(-1)
    return {"accuracy": accuracy(preds, labels), "macro_f1": macro_f1(preds, labels, np.asarray(logits).shape[-1])}


def bio_entities(tags: list[str]) -> set[tuple[str, int, int]]:
    """Entities ``(type, start, end)`` (half-open) in a BIO tag sequence, conlleval-style: an ``I-X`` that does not
    continue an ``X`` entity starts a new one."""
    entities, kind, start = set(), None, 0
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, _, label = tag.partition("-")
        continues = prefix == "I" and label == kind
        if kind is not None and not continues:
            entities.add((kind, start, i))
            kind = None
        if prefix in ("B", "I") and not continues:
            kind, start = label, i
    return entities


def entity_prf(gold: list[list[str]], pred: list[list[str]]) -> dict[str, float]:
    """Micro-averaged entity-level ``{"precision", "recall", "f1"}``: an entity counts when type and both
    boundaries match exactly."""
    tp = n_pred = n_gold = 0
    for g, p in zip(gold, pred, strict=True):
        ge, pe = bio_entities(g), bio_entities(p)
        tp += len(ge & pe)
        n_pred += len(pe)
        n_gold += len(ge)
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}
