"""Classical baselines beside the demo's fine-tuned transformer: what a practitioner tries first, on exactly the
data and metric of the demo's fine-tuning (``examples.demo.PROTOCOLS``), so that a row of the results table reads
"pretraining beats / does not beat this".

Contract:

- Data: :func:`protocol_splits` loads a protocol's ``--dataset`` the way the fine-tuning runner does
  (``ernie.finetune.datasets.load_dataset`` with the task class of ``protocol.task``) and keeps the first
  ``train_samples`` training and ``dev_samples`` dev examples (``ernie.finetune.runner._limit``) and the full test
  split. Hyper-parameters are chosen on that dev slice only (the best dev figure; ties: the first in grid order);
  the figure reported is the test split's, from the model fitted on the training slice with the chosen values.
- Sentiment (:func:`sentiment_baseline`): TF-IDF of character n-grams (sublinear tf) + logistic regression
  (scikit-learn, lbfgs). ``max_chars``: each text cut to its first ``max_chars`` characters (the demo's
  ``max_seq_length - 2``: the window the model sees, [CLS] and [SEP] aside; :func:`window_text`) or ``None`` (the
  whole review). The model's window is ``max_seq_length - 2`` tokens: the same characters for Chinese text, which
  is one token a character; spaces (no token) and Latin words or digits (WordPieces) shift it a little. Metric:
  ``SeqClsTask.metrics`` (accuracy, as the demo reports it).
- NER (:func:`ner_baseline`): a per-character linear-chain CRF (sklearn-crfsuite, L-BFGS) on the characters of the
  window (the first ``max_seq_length - 2``, as ``NerTask.encode``), features :func:`char_features`; scored by
  :func:`ner_scores`, i.e. ``NerTask.metrics``: entity P/R/F1 (``ernie.finetune.metrics.entity_prf``) against the
  gold tags of all characters, those past the window predicted ``O`` -- the model's scoring path exactly.
- Deterministic (no random state is drawn: lbfgs on both), seconds to a minute of one CPU core.
- scikit-learn and sklearn-crfsuite are optional (the ``demo`` extra): :func:`missing_packages` names the absent
  ones and :func:`run_baselines` then returns ``None`` after one line saying so, never raising.

``python examples/baselines.py`` prints the figures of the demo's protocols (and the review / sentence lengths).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

PACKAGES = {"sklearn": "scikit-learn", "sklearn_crfsuite": "sklearn-crfsuite"}  # module -> PyPI name
INSTALL_HINT = "pip install -e '.[demo]'"
# Hyper-parameter grids, searched on dev (grid order breaks ties).
SENTIMENT_GRID: dict[str, tuple] = {"ngram_range": ((1, 2), (1, 3)), "C": (1.0, 3.0, 10.0, 30.0)}
NER_GRID: tuple[tuple[float, float], ...] = ((0.05, 0.05), (0.1, 0.01), (0.1, 0.1))  # (c1 = L1, c2 = L2)
CRF_MAX_ITERATIONS = 100


def missing_packages() -> list[str]:
    """PyPI names of the baselines' packages that are not importable (empty: all there)."""
    return [pypi for module, pypi in PACKAGES.items() if importlib.util.find_spec(module) is None]


def task_class(protocol) -> type:
    """The fine-tuning task class that runs ``protocol`` (``protocol.task``: "seq_cls" or "ner")."""
    from ernie.finetune.tasks import all_tasks

    return all_tasks()[protocol.task]


def protocol_splits(protocol) -> tuple[list[dict], list[dict], list[dict], list[str]]:
    """(train slice, dev slice, full test split, label names) of ``protocol``, selected as the runner selects them."""
    from ernie.finetune.datasets import load_dataset
    from ernie.finetune.runner import _limit

    data = load_dataset(task_class(protocol), protocol.dataset, None, None, None, None)
    return _limit(data.train, protocol.train_samples), _limit(data.dev, protocol.dev_samples), data.test, data.labels


def window_text(text: str, max_chars: int | None) -> str:
    """``text`` cut to its first ``max_chars`` characters (``None``: whole)."""
    return text if max_chars is None else text[:max_chars]


# --------------------------------------------------------------------------------------------------- sentiment
def sentiment_baseline(
    train: Sequence[dict],
    dev: Sequence[dict],
    test: Sequence[dict],
    labels: Sequence[str],
    max_chars: int | None,
    grid: dict[str, tuple] | None = None,
) -> dict[str, Any]:
    """TF-IDF char n-grams + logistic regression on ``text`` cut to ``max_chars`` (module docstring). Returns
    ``{"accuracy", "macro_f1"}`` on ``test``, ``"dev_accuracy"``, the chosen ``"ngram_range"`` and ``"C"``, and
    ``"seconds"``."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from ernie.finetune.seq_cls import SeqClsTask

    t0 = time.time()
    grid = grid or SENTIMENT_GRID
    task = SeqClsTask(None, list(labels), max_seq_length=0)  # scoring only: no tokenizer needed

    def texts(examples: Sequence[dict]) -> list[str]:
        return [window_text(ex["text"], max_chars) for ex in examples]

    def ids(examples: Sequence[dict]) -> np.ndarray:
        return np.asarray([task.label2id[ex["label"]] for ex in examples], dtype=np.int64)

    def scores(model, x, examples: Sequence[dict]) -> dict[str, float]:
        logits = np.zeros((x.shape[0], len(task.labels)))
        logits[:, model.classes_] = model.predict_proba(x)  # columns in the task's label order
        return task.metrics(list(logits), [{"labels": y} for y in ids(examples)])

    best: tuple[float, tuple, float, Any, Any] | None = None
    y = ids(train)
    for ngram_range in grid["ngram_range"]:
        vectorizer = TfidfVectorizer(analyzer="char", ngram_range=tuple(ngram_range), sublinear_tf=True)
        x_train = vectorizer.fit_transform(texts(train))
        x_dev = vectorizer.transform(texts(dev))
        for c in grid["C"]:
            model = LogisticRegression(C=c, max_iter=2000).fit(x_train, y)
            dev_accuracy = scores(model, x_dev, dev)["accuracy"]
            if best is None or dev_accuracy > best[0]:
                best = (dev_accuracy, tuple(ngram_range), c, vectorizer, model)
    assert best is not None, "sentiment_baseline: empty grid"
    dev_accuracy, ngram_range, c, vectorizer, model = best
    out: dict[str, Any] = scores(model, vectorizer.transform(texts(test)), test)
    out.update(dev_accuracy=dev_accuracy, ngram_range=list(ngram_range), C=c, seconds=round(time.time() - t0, 1))
    return out


# --------------------------------------------------------------------------------------------------------- NER
def char_features(chars: Sequence[str]) -> list[dict[str, str]]:
    """Per-character CRF features: the character, its neighbours at -2..+2 and the two bigrams it is in
    (``<s>`` / ``</s>`` past the ends)."""
    padded = ["<s>", "<s>", *chars, "</s>", "</s>"]
    out = []
    for i in range(len(chars)):
        a, b, c, d, e = padded[i : i + 5]
        out.append({"c-2": a, "c-1": b, "c0": c, "c+1": d, "c+2": e, "b-1": b + c, "b+1": c + d})
    return out


def ner_scores(
    labels: Sequence[str], examples: Sequence[dict], predicted: Sequence[Sequence[str]], max_seq_length: int
) -> dict[str, float]:
    """Entity P/R/F1 of ``predicted`` tags (for the window's characters, or fewer) against the gold tags of all
    characters of ``examples``, by ``NerTask.metrics``: the path the fine-tuned model is scored by."""
    from ernie.finetune.ner import NerTask

    task = NerTask(None, list(labels), max_seq_length)  # scoring only: no tokenizer needed
    outputs = [np.asarray([task.label2id[t] for t in tags], dtype=np.int64) for tags in predicted]
    features = [{"gold": np.asarray([task.label2id[t] for t in ex["labels"]], dtype=np.int64)} for ex in examples]
    return task.metrics(outputs, features)


def ner_baseline(
    train: Sequence[dict],
    dev: Sequence[dict],
    test: Sequence[dict],
    labels: Sequence[str],
    max_seq_length: int,
    grid: Sequence[tuple[float, float]] | None = None,
    max_iterations: int = CRF_MAX_ITERATIONS,
) -> dict[str, Any]:
    """A per-character CRF on the first ``max_seq_length - 2`` characters (module docstring). Returns
    ``{"f1", "precision", "recall"}`` on ``test``, ``"dev_f1"``, the chosen ``"c1"``, ``"c2"`` and ``"seconds"``."""
    import sklearn_crfsuite

    t0 = time.time()
    keep = max_seq_length - 2

    def features(examples: Sequence[dict]) -> list[list[dict[str, str]]]:
        return [char_features(ex["tokens"][:keep]) for ex in examples]

    x_train, x_dev = features(train), features(dev)
    y_train = [list(ex["labels"][:keep]) for ex in train]
    best: tuple[float, float, float, Any] | None = None
    for c1, c2 in grid or NER_GRID:
        crf = sklearn_crfsuite.CRF(algorithm="lbfgs", c1=c1, c2=c2, max_iterations=max_iterations)
        crf.fit(x_train, y_train)
        dev_f1 = ner_scores(labels, dev, crf.predict(x_dev), max_seq_length)["f1"]
        if best is None or dev_f1 > best[0]:
            best = (dev_f1, c1, c2, crf)
    assert best is not None, "ner_baseline: empty grid"
    dev_f1, c1, c2, crf = best
    out: dict[str, Any] = ner_scores(labels, test, crf.predict(features(test)), max_seq_length)
    out.update(dev_f1=dev_f1, c1=c1, c2=c2, seconds=round(time.time() - t0, 1))
    return out


# ------------------------------------------------------------------------------------------------- the demo's
def baseline_rows(protocol) -> dict[str, str]:
    """``{key: description}`` of the baselines run for ``protocol`` (the keys of :func:`run_baselines`' dicts)."""
    window = f"on the model's window, the first {protocol.max_seq_length - 2} chars"
    if protocol.task == "seq_cls":
        lr = "TF-IDF char n-grams + logistic regression"
        return {"tfidf_lr_window": f"{lr}, {window}", "tfidf_lr_whole": f"{lr}, on the whole review"}
    return {"crf_window": f"per-character CRF (char +-2 window, bigrams), {window}"}


def run_protocol(protocol) -> dict[str, dict[str, Any]]:
    """Every baseline of one protocol -> ``{key: figures}`` (keys: :func:`baseline_rows`)."""
    train, dev, test, labels = protocol_splits(protocol)
    keep = protocol.max_seq_length - 2
    if protocol.task == "seq_cls":
        return {
            "tfidf_lr_window": sentiment_baseline(train, dev, test, labels, keep),
            "tfidf_lr_whole": sentiment_baseline(train, dev, test, labels, None),
        }
    if protocol.task == "ner":
        return {"crf_window": ner_baseline(train, dev, test, labels, protocol.max_seq_length)}
    raise ValueError(f"run_protocol: no baseline for task {protocol.task!r}")


def run_baselines(protocols: dict) -> dict[str, dict[str, dict[str, Any]]] | None:
    """``{task: {key: figures}}`` for the demo's ``protocols``; ``None`` (after one line naming the missing
    packages) when scikit-learn or sklearn-crfsuite is not installed."""
    missing = missing_packages()
    if missing:
        print(f"  classical baselines left out: {', '.join(missing)} not installed ({INSTALL_HINT})", flush=True)
        return None
    return {task: run_protocol(protocol) for task, protocol in protocols.items()}


def length_summary(lengths: Sequence[int], window: int) -> dict[str, float]:
    """Median, p90, p99 of ``lengths`` and the share longer than ``window``."""
    xs = np.asarray(lengths)
    return {
        "median": float(np.median(xs)),
        "p90": float(np.percentile(xs, 90)),
        "p99": float(np.percentile(xs, 99)),
        "longer_than_window": float((xs > window).mean()),
    }


def main() -> None:
    from examples.demo import PROTOCOLS

    for protocol in PROTOCOLS.values():
        train, _, test, _ = protocol_splits(protocol)
        key = "text" if protocol.task == "seq_cls" else "tokens"
        keep = protocol.max_seq_length - 2
        for split, examples in (("train slice", train), ("test", test)):
            s = length_summary([len(ex[key]) for ex in examples], keep)
            print(
                f"{protocol.dataset} {split}: {len(examples)} examples, characters median {s['median']:g}, "
                f"p90 {s['p90']:g}, p99 {s['p99']:g}; {100 * s['longer_than_window']:.1f} % longer than {keep}"
            )
    results = run_baselines(PROTOCOLS)
    for task, figures in (results or {}).items():
        rows = baseline_rows(PROTOCOLS[task])
        for key, f in figures.items():
            print(f"{task} {rows[key]}: {f}")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
