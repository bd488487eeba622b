"""Evaluation metrics: accuracy and macro-F1 for classification, entity-level P/R/F1 for BIO tagging, CMRC 2018
EM/F1 for span QA."""

from __future__ import annotations

import re

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


# ------------------------------------------------------------------------------------------ CMRC 2018 EM / F1
# The official CMRC 2018 evaluation (cmrc2018_evaluate.py, v5): lower-case and strip; EM compares the strings with
# these characters removed; F1 is over "mixed segments" (each CJK character and each of these characters one
# segment, other runs split into words), from the longest common substring of segments; both take the max over
# the reference answers and are averaged over all questions (a missing prediction scores 0), in percent.
CMRC_PUNCT = frozenset(
    [
        "-",
        ":",
        "_",
        "*",
        "^",
        "/",
        "\\",
        "~",
        "`",
        "+",
        "=",
        "，",
        "。",
        "：",
        "？",
        "！",
        "“",
        "”",
        "；",
        "’",
        "《",
        "》",
        "……",
        "·",
        "、",
        "「",
        "」",
        "（",
        "）",
        "－",
        "～",
        "『",
        "』",
    ]
)
_CJK = re.compile(r"[\u4e00-\u9fa5]")
_WORD = re.compile(r"\w+|[^\w\s]")


def _latin_words(text: str) -> list[str]:
    """Stand-in for ``nltk.word_tokenize`` (which needs a download): words and single punctuation marks."""
    return _WORD.findall(text)


def mixed_segmentation(text: str, rm_punc: bool = False) -> list[str]:
    text = str(text).lower().strip()
    segs, run = [], ""
    for ch in text:
        if rm_punc and ch in CMRC_PUNCT:
            continue
        if _CJK.match(ch) or ch in CMRC_PUNCT:
            if run:
                segs.extend(_latin_words(run))
                run = ""
            segs.append(ch)
        else:
            run += ch
    if run:
        segs.extend(_latin_words(run))
    return segs


def remove_punctuation(text: str) -> str:
    return "".join(ch for ch in str(text).lower().strip() if ch not in CMRC_PUNCT)


def longest_common_substring(a: list[str], b: list[str]) -> int:
    """Length of the longest common contiguous run of ``a`` and ``b``."""
    best, prev = 0, [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b):
            if x == y:
                cur[j + 1] = prev[j] + 1
                best = max(best, cur[j + 1])
        prev = cur
    return best


def cmrc_f1(answers: list[str], prediction: str) -> float:
    scores = []
    for ans in answers:
        a, p = mixed_segmentation(ans, rm_punc=True), mixed_segmentation(prediction, rm_punc=True)
        n = longest_common_substring(a, p)
        if n == 0:
            scores.append(0.0)
            continue
        precision, recall = n / len(p), n / len(a)
        scores.append(2 * precision * recall / (precision + recall))
    return max(scores) if scores else 0.0


def cmrc_em(answers: list[str], prediction: str) -> float:
    p = remove_punctuation(prediction)
    return float(any(remove_punctuation(a) == p for a in answers))


def cmrc_scores(references: dict[str, list[str]], predictions: dict[str, str]) -> dict[str, float]:
    """``{"exact_match", "f1"}`` in percent over all ``references`` (id -> answers); a missing prediction is 0."""
    if not references:
        return {"exact_match": 0.0, "f1": 0.0}
    em = f1 = 0.0
    for qid, answers in references.items():
        if qid in predictions:
            em += cmrc_em(answers, predictions[qid])
            f1 += cmrc_f1(answers, predictions[qid])
    n = len(references)
    return {"exact_match": 100.0 * em / n, "f1": 100.0 * f1 / n}
