"""Extractive question answering (span extraction): :class:`QaTask`, the built-in People's Daily cloze set and
scripts/run_qa.py.

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

The built-in ``peoples_daily_qa`` (cloze questions in the manner of CMRC 2017) is described at
:func:`peoples_daily_qa`.
"""
from __future__ import annotations

import bisect
import functools
import hashlib
import json
import os
import re
from dataclasses import dataclass, field

import numpy as np
import paddle

from ernie.utils import UserError, atomic_write, cli_main, require_positive
from ernie.tokenizer import is_cjk_char, is_punctuation

from . import data as D
from .metrics import cmrc_scores
from .tasks import Task
from .trainer import cross_entropy

BLANK = "[MASK]"  # the blank of a cloze question (one special token)


# --------------------------------------------------------------------------------------------------- reading
def read_squad_file(path: str) -> list[dict]:
    """QA examples ``{"id", "title", "context", "question", "answers", "answer_starts", "source"}`` from a
    SQuAD-style JSON file, every question kept (evaluation scores each against all its answer texts).

    ``answer_starts[i]`` is the character offset of ``answers[i]`` in the context, or None when the text is not in
    the context (official files carry such answers; they still count for scoring). The ``source`` is
    ``file:line: question ID``. What is refused (``UserError`` naming the file and the question): a file not in
    the layout at all, an item of ``data`` / ``paragraphs`` / ``qas`` / ``answers`` that is not a JSON object, a
    context that is not a string, an ``answer_start`` that is not an integer. What is repaired, counted and
    reported on stderr with the first file:line: a duplicate question id (renamed ``ID#2``, ...; merging would
    score two questions as one), an ``answer_start`` outside the context or not at its text (moved to the nearest
    occurrence of the text), a missing ``answer_start`` (the first occurrence), an empty answer text (dropped).
    Which questions can be trained on is :func:`training_examples`'s rule."""
    try:
        with open(path, encoding="utf-8") as f:
            raw = f.read()
        doc = json.loads(raw)
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not SQuAD-style JSON ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise UserError(f"{path}: expected SQuAD-style JSON {{\"data\": [{{\"paragraphs\": [{{\"context\", \"qas\"}}]}}]}}")
    lines = _IdLines(raw)
    skips = D.RowSkips(path, "questions")
    out, seen = [], {}

    def items(parent, key: str, where: str) -> list:
        value = parent.get(key) or []
        if not isinstance(value, list) or not all(isinstance(x, dict) for x in value):
            bad = value if not isinstance(value, list) else next(x for x in value if not isinstance(x, dict))
            raise UserError(f"{where}: {key!r} must be a list of JSON objects, found {_short(bad)}")
        return value

    for d, entry in enumerate(items(doc, "data", path)):
        title = entry.get("title", "")
        for paragraph in items(entry, "paragraphs", f"{path}: data[{d}] ({title!r})"):
            context = paragraph.get("context")
            if not isinstance(context, str):
                raise UserError(f"{path}: a paragraph of {title!r} has no context string")
            for qa in items(paragraph, "qas", f"{path}: a paragraph of {title!r}"):
                qid = str(qa.get("id", len(out)))
                line = lines.line(qa.get("id"))
                where = f"{path}:{line}: question {qid}" if line else f"{path}: question {qid}"
                n = seen[qid] = seen.get(qid, 0) + 1
                if n > 1:
                    skips.repaired("duplicate question id, renamed ID#2, ID#3, ...", where)
                    qid = f"{qid}#{n}"
                question = qa.get("question")
                question = question.strip() if isinstance(question, str) else ""
                texts, starts = [], []
                for ans in items(qa, "answers", where):
                    text, start = ans.get("text"), ans.get("answer_start")
                    if not isinstance(text, str) or not text.strip():
                        skips.repaired("empty answer text dropped", where, "answers")
                        continue
                    if start is not None and (isinstance(start, bool) or not isinstance(start, int)):
                        raise UserError(f"{where}: answer_start {start!r} of {text!r} is not an integer")
                    found = locate_answer(context, text, start)
                    if found is not None and found != start:
                        kind = ("missing answer_start set to the first occurrence of its text" if start is None
                                else "answer_start moved to the nearest occurrence of its text")
                        skips.repaired(kind, where, "answers")
                    texts.append(text)
                    starts.append(found)
                out.append({"id": qid, "title": title, "context": context, "question": question,
                            "answers": texts, "answer_starts": starts, "source": where})
    return skips.finish(out)


def training_examples(examples: list[dict], what: str = "training split") -> list[dict]:
    """The questions that can become a training feature (HF / PaddleNLP): a question text, a context and an
    answer found in it (the first such answer is trained on). The others are skipped, counted and the first
    named on stderr; none left is a ``UserError``."""
    skips = D.RowSkips(what, "questions")
    out = []
    for ex in examples:
        at = ex.get("source") or f"question {ex['id']}"
        if not ex["question"]:
            skips.skip(at, "empty question")
        elif not ex["context"].strip():
            skips.skip(at, "empty context")
        elif ex["answers"] and all(s is None for s in ex["answer_starts"]):
            skips.skip(at, f"answer {_short(ex['answers'][0])} is not in the context")
        else:
            out.append(ex)
    if skips.count:
        D.warn(f"{what}: skipped {skips.count} of {len(examples)} questions that cannot become a training "
               f"feature (first: {skips.first})")
    if not out:
        raise UserError(f"{what}: no question can become a training feature (first: {skips.first})")
    return out


def _short(value, n: int = 40) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= n else text[:n - 1] + "…"


class _IdLines:
    """Line numbers of question ids in a JSON text: the k-th lookup of an id gets the line of its k-th
    ``"id": <value>`` pair in the raw text (one scan, then a binary search per lookup)."""

    _PAIR = re.compile(r'"id"\s*:\s*("(?:[^"\\]|\\.)*"|-?\d+)')

    def __init__(self, raw: str):
        self.raw = raw
        self._where: dict[str, list[int]] | None = None
        self._used: dict[str, int] = {}
        self._newlines: list[int] = []

    def line(self, qid) -> int | None:
        if qid is None:
            return None
        if self._where is None:
            self._where = {}
            self._newlines = [m.start() for m in re.finditer("\n", self.raw)]
            for m in self._PAIR.finditer(self.raw):
                try:
                    key = json.dumps(json.loads(m.group(1)), ensure_ascii=False)
                except ValueError:
                    continue
                self._where.setdefault(key, []).append(m.start())
        key = json.dumps(qid, ensure_ascii=False)
        hits = self._where.get(key, [])
        k = self._used.get(key, 0)
        self._used[key] = k + 1
        if not hits:
            return None
        return bisect.bisect_left(self._newlines, hits[min(k, len(hits) - 1)]) + 1


def locate_answer(context: str, text: str, start) -> int | None:
    """The character offset of ``text`` in ``context``: ``start`` when it points at it, else the occurrence
    nearest to ``start`` (data sets carry a few shifted offsets), else None."""
    if isinstance(start, int) and context[start:start + len(text)] == text:
        return start
    hits = [m.start() for m in re.finditer(re.escape(text), context)]
    if not hits:
        return None
    return min(hits, key=lambda h: abs(h - start)) if isinstance(start, int) else hits[0]


# --------------------------------------------------------------------------------------------- built-in data
_SENTENCE = re.compile("[^。！？]*[。！？]+|[^。！？]+$")
QA_MIN_SENTENCE, QA_MAX_SENTENCE, QA_MAX_CONTEXT, QA_PER_DOCUMENT = 8, 80, 800, 4


@functools.lru_cache(maxsize=2)
def _peoples_daily_qa(path: str | None) -> tuple[tuple[dict, ...], ...]:
    splits = _build_peoples_daily_qa(path)
    return tuple(tuple(splits[name]) for name in D.SPLIT_BUCKETS)


def peoples_daily_qa(path: str | None = None) -> D.DatasetSplits:
    """The built-in cloze QA set from People's Daily 1998-01 (CMRC 2017 style), fixed and offline.

    Articles are the corpus's documents (:func:`data_tools.corpus.split_documents`, paragraphs joined without a
    separator). In each article, every sentence of ``QA_MIN_SENTENCE``-``QA_MAX_SENTENCE`` characters that holds a
    named entity (PER / LOC / ORG, as in the NER set) is a candidate; its question is the sentence with one entity
    replaced by ``[MASK]`` and its context is the rest of the article (the sentence removed, at most
    ``QA_MAX_CONTEXT`` characters). The blanked entity is the first (in md5 order of the entity text) whose text
    occurs in that context, and its answer is the first occurrence there. Candidates whose sentence still occurs in
    the context (repeated sentences: the question could be answered by finding it) are dropped; at most
    ``QA_PER_DOCUMENT`` questions per article (the first in md5 order of the question). Whole articles go to one
    split by ``md5(article) % 100`` (0-79 train, 80-89 dev, 90-99 test), so no context is shared between splits;
    within a split, questions are ordered by md5 of their id.

    Sizes: 6,084 train / 705 dev / 819 test questions (median context ~500 characters).
    """
    train, dev, test = _peoples_daily_qa(path)
    return D.DatasetSplits([dict(ex) for ex in train], [dict(ex) for ex in dev], [dict(ex) for ex in test], [])


def article_splits(path: str | None = None) -> list[tuple[str, range]]:
    """(split, paragraph index range) of every People's Daily article, in corpus order: the article-level split of
    the built-in QA set (so that e.g. a pretraining corpus can leave out the dev/test articles)."""
    from data_tools.corpus import peoples_daily_text, split_documents

    out, i = [], 0
    for doc in split_documents(peoples_daily_text(path)):
        bucket = D.md5_bucket("".join(doc))
        out.append((next(n for n, r in D.SPLIT_BUCKETS.items() if bucket in r), range(i, i + len(doc))))
        i += len(doc)
    return out


def _build_peoples_daily_qa(path: str | None) -> dict[str, list[dict]]:
    from data_tools.corpus import peoples_daily_entities

    paragraphs = peoples_daily_entities(path)
    splits: dict[str, list[dict]] = {name: [] for name in D.SPLIT_BUCKETS}
    for name, span in article_splits(path):
        splits[name].extend(_cloze_questions(paragraphs[span.start:span.stop]))
    for name in splits:
        splits[name].sort(key=lambda ex: _md5(ex["id"]))
    return splits


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def _cloze_questions(paragraphs: list[tuple[str, list[tuple[int, int, str]]]]) -> list[dict]:
    """The cloze questions of one article (see :func:`peoples_daily_qa`)."""
    sentences = []  # (paragraph index, start, end, entity spans relative to the sentence)
    for p, (text, spans) in enumerate(paragraphs):
        for m in _SENTENCE.finditer(text):
            a, b = m.span()
            inner = [(s - a, e - a, t) for s, e, t in spans if s >= a and e <= b]
            if QA_MIN_SENTENCE <= b - a <= QA_MAX_SENTENCE and inner:
                sentences.append((p, a, b, inner))
    out = []
    for p, a, b, inner in sentences:
        text = paragraphs[p][0]
        sentence = text[a:b]
        context = "".join(t if k != p else t[:a] + t[b:] for k, (t, _) in enumerate(paragraphs))[:QA_MAX_CONTEXT]
        if sentence in context:
            continue
        for s, e, _ in sorted(inner, key=lambda x: _md5(sentence[x[0]:x[1]])):
            answer = sentence[s:e]
            start = context.find(answer)
            if start < 0:
                continue
            question = sentence[:s] + BLANK + sentence[e:]
            out.append({"id": _md5(question + "\n" + context)[:16], "title": "", "context": context,
                        "question": question, "answers": [answer], "answer_starts": [start], "source": None})
            break
    out.sort(key=lambda ex: _md5(ex["id"]))
    return out[:QA_PER_DOCUMENT]


def write_squad_file(path: str, examples: list[dict]) -> None:
    """Write ``examples`` as SQuAD-style JSON (one paragraph per example), atomically."""
    data = [{"title": ex.get("title", ""), "paragraphs": [{"context": ex["context"], "qas": [
        {"id": ex["id"], "question": ex["question"],
         "answers": [{"text": t, "answer_start": s} for t, s in zip(ex["answers"], ex["answer_starts"])]}]}]}
            for ex in examples]
    with atomic_write(path, "w") as f:
        json.dump({"version": "1.0", "data": data}, f, ensure_ascii=False, indent=1)


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
                n = left if k == len(pieces) - 1 else min(left, max(1, len(piece[2:] if piece.startswith("##")
                                                                          else piece)))
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
            raise UserError(f"--max_query_length {self.max_query_length} leaves no room for the context in "
                            f"--max_seq_length {args.max_seq_length}")


class QaTask(Task):
    name = "qa"
    description = "Fine-tune ERNIE for extractive question answering (SQuAD-style span extraction)."
    model_class = "ErnieForQuestionAnswering"
    label_keys = ("start_positions", "end_positions")
    output_names = ("start_logits", "end_logits")
    default_metric = "f1"
    metric_names = ("f1", "exact_match", "loss")
    uses_label_set = False
    builtin_datasets = {"peoples_daily_qa": peoples_daily_qa}
    file_format = ("SQuAD-style JSON {\"data\": [{\"title\", \"paragraphs\": [{\"context\", \"qas\": [{\"id\", "
                   "\"question\", \"answers\": [{\"text\", \"answer_start\"}]}]}]}]} (CMRC 2018 / DuReader-robust)")
    predictor = "ernie.deploy.qa_infer:QaPredictor"
    Options = QaOptions

    read_file = staticmethod(read_squad_file)

    @classmethod
    def training_examples(cls, examples: list[dict], source: str) -> list[dict]:
        return training_examples(examples, source)

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
            q_ids = tok.convert_tokens_to_ids(tok.tokenize(ex["question"]))[:opt.max_query_length]
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
                feature = {"input_ids": np.asarray(ids, dtype=np.int64),
                           "token_type_ids": np.asarray([0] * first + [1] * (w1 - w0 + 1), dtype=np.int64),
                           "example_index": index, "context_start": first, "offsets": c_offsets[w0:w1],
                           "id": ex["id"], "context": ex["context"], "answers": ex["answers"]}
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
        return (cross_entropy(start_logits, paddle.to_tensor(batch["start_positions"]))
                + cross_entropy(end_logits, paddle.to_tensor(batch["end_positions"]))) / 2

    def outputs(self, raw, batch: dict[str, np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        start, end = (t.numpy() for t in raw)
        return [(start[i, :n], end[i, :n]) for i, n in enumerate(batch["lengths"])]

    # ---------------------------------------------------------------------------------------- predictions
    def best_span(self, feature: dict, start_logits: np.ndarray, end_logits: np.ndarray) -> tuple[float, int, int] | None:
        """(score, char start, char end) of the best answer span in one window, or None."""
        first, n = feature["context_start"], len(feature["offsets"])
        s_logits, e_logits = start_logits[first:first + n], end_logits[first:first + n]
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
                best[f["id"]] = (found[0], f["context"][found[1]:found[2]])
        return {qid: text for qid, (_, text) in best.items()}

    def metrics(self, outputs: list, features: list[dict]) -> dict[str, float]:
        references = {f["id"]: f["answers"] for f in features}
        return cmrc_scores(references, self.predictions(outputs, features))

    def write_predictions(self, output_dir: str, examples: list[dict], features: list[dict], outputs: list,
                          split: str = "test") -> str:
        path = os.path.join(output_dir, f"{split}_predictions.json")
        with atomic_write(path, "w") as f:
            json.dump(self.predictions(outputs, features), f, ensure_ascii=False, indent=1)
            f.write("\n")
        return path


@cli_main
def main(argv: list[str] | None = None) -> dict:
    """Parse ``argv`` (default ``sys.argv[1:]``) and run; returns the results dict (see :func:`runner.run`)."""
    from .runner import main_for

    return main_for(QaTask, argv, prog="run_qa.py")
