"""Reading data files: every reader of the fine-tuning tasks' file formats, for the user's own files and for the
public benchmarks' official layouts (which file of which benchmark is read how is :mod:`ernie.finetune.datasets`).

Examples are plain dicts, each with ``"source": "file:line"`` when it has a line:

* sequence classification: ``{"text": str, "text_pair": str | None, "label": str | None}``
  (:func:`read_seq_cls_file`; the CLUE json-lines and tsv layouts: :func:`clue_reader`, :func:`tsv_reader`)
* token classification (NER): ``{"tokens": list[str], "labels": list[str] | None}`` (one token per character, BIO;
  :func:`read_ner_file`)
* extractive QA: ``{"id", "title", "context", "question", "answers", "answer_starts", "source"}`` (SQuAD-style
  JSON, :func:`read_squad_file`; written back by :func:`write_squad_file`)

The reader rule (:class:`RowSkips`, as HF / PaddleNLP read official files): a row that cannot be used is skipped
and counted, one warning line gives the count and the first (``file:line: why``); only a file with no usable row
is refused. The built-in datasets are not read here: they are built by :mod:`data_tools.corpus`.
"""

from __future__ import annotations

import bisect
import csv
import json
import re
import sys
from collections.abc import Callable

from ernie.utils import UserError, atomic_write


# ------------------------------------------------------------------------------------------------ file loaders
class RowSkips:
    """The reader rule for data files (as HF / PaddleNLP read official files): a row that cannot be used is
    skipped and counted, and one warning line gives the count and the first such row (``file:line: why``); a file
    in which no row can be used is refused with that first reason (it is not in the layout at all).

    ``what`` names the rows (``rows``, ``questions``); ``repairs`` counts rows kept after a repair, reported the
    same way (see :meth:`repaired`)."""

    def __init__(self, path: str, what: str = "rows"):
        self.path, self.what = path, what
        self.count = 0
        self.first: str | None = None
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
    optional header whose last field is ``label``) or jsonl. Labels are kept as strings, stripped of surrounding
    whitespace (``"positive "`` is ``positive``). A tsv file has one layout, the field count of most of its rows:
    a row with more fields (a tab inside the text) is skipped and counted, never read as a text pair; in a
    3-column file a 2-field row is skipped too (text + label or text + pair cannot be told apart); a 1-field row
    is an unlabelled text. Unusable rows are skipped and counted (:class:`RowSkips`)."""
    out, skips = [], RowSkips(path)
    rows = [(lineno, rec) for lineno, rec in read_rows(path)]
    counts: dict[int, int] = {}
    for lineno, rec in rows:
        if isinstance(rec, list) and not (lineno == 1 and rec[-1].strip().lower() == "label") and len(rec) <= 3:
            counts[len(rec)] = counts.get(len(rec), 0) + 1
    labelled = {n: c for n, c in counts.items() if n > 1}
    width = max(labelled, key=lambda n: (labelled[n], -n)) if labelled else 1  # ties: the fewer fields
    for lineno, rec in rows:
        if isinstance(rec, dict):
            text, pair, label = _first(rec, _TEXT_KEYS), _first(rec, _PAIR_KEYS), rec.get("label")
        else:
            if lineno == 1 and rec[-1].strip().lower() == "label":
                continue
            if len(rec) > 3:
                skips.skip(
                    f"{path}:{lineno}", f"expected 1-3 tab-separated fields (text[, text_pair], label), got {len(rec)}"
                )
                continue
            if len(rec) > 1 and len(rec) != width:
                layout = "text<TAB>label" if width == 2 else "text<TAB>text_pair<TAB>label"
                skips.skip(
                    f"{path}:{lineno}",
                    f"{len(rec)} tab-separated fields in a file of {layout} rows"
                    + (" (a tab inside the text?)" if len(rec) > width else ""),
                )
                continue
            text, pair, label = rec[0], (rec[1] if len(rec) == 3 else None), (rec[-1] if len(rec) > 1 else None)
        if not isinstance(text, str) or not text.strip():
            skips.skip(f"{path}:{lineno}", "empty or missing text")
            continue
        label = None if label is None else str(label).strip()
        out.append(
            {
                "text": text,
                "text_pair": pair or None,
                "label": label or None,
                "source": f"{path}:{lineno}",
            }
        )
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
            if len(tokens) == 1 and len(tokens[0].strip()) > 1:
                skips.skip(
                    f"{path}:{lineno}",
                    "one token of several characters: not a token sequence (characters joined by \\002, tags "
                    "likewise; a text<TAB>label file is sequence classification: run_seq_cls.py)",
                )
                continue
        if not tokens or not isinstance(tokens, list):
            skips.skip(f"{path}:{lineno}", "empty or missing tokens")
            continue
        if labels is not None and (not isinstance(labels, list) or len(labels) != len(tokens)):
            skips.skip(
                f"{path}:{lineno}",
                f"{len(tokens)} tokens but {len(labels) if isinstance(labels, list) else 'no list of'} labels",
            )
            continue
        out.append(
            {
                "tokens": [str(t) for t in tokens],
                "labels": None if labels is None else [str(x).strip() for x in labels],
                "source": f"{path}:{lineno}",
            }
        )
    return skips.finish(out)


# ------------------------------------------------------------------------------------------ SQuAD-style JSON
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
    Which questions can be trained on is :func:`squad_training_examples`'s rule."""
    try:
        with open(path, encoding="utf-8") as f:
            raw = f.read()
        doc = json.loads(raw)
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not SQuAD-style JSON ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise UserError(f'{path}: expected SQuAD-style JSON {{"data": [{{"paragraphs": [{{"context", "qas"}}]}}]}}')
    lines = _IdLines(raw)
    skips = RowSkips(path, "questions")
    out: list[dict] = []
    seen: dict[str, int] = {}

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
                        kind = (
                            "missing answer_start set to the first occurrence of its text"
                            if start is None
                            else "answer_start moved to the nearest occurrence of its text"
                        )
                        skips.repaired(kind, where, "answers")
                    texts.append(text)
                    starts.append(found)
                out.append(
                    {
                        "id": qid,
                        "title": title,
                        "context": context,
                        "question": question,
                        "answers": texts,
                        "answer_starts": starts,
                        "source": where,
                    }
                )
    return skips.finish(out)


def squad_training_examples(examples: list[dict], what: str = "training split") -> list[dict]:
    """The questions that can become a training feature (HF / PaddleNLP): a question text, a context and an
    answer found in it (the first such answer is trained on). The others are skipped, counted and the first
    named on stderr; none left is a ``UserError``."""
    skips = RowSkips(what, "questions")
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
        warn(
            f"{what}: skipped {skips.count} of {len(examples)} questions that cannot become a training "
            f"feature (first: {skips.first})"
        )
    if not out:
        raise UserError(f"{what}: no question can become a training feature (first: {skips.first})")
    return out


def _short(value, n: int = 40) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= n else text[: n - 1] + "…"


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
    if isinstance(start, int) and context[start : start + len(text)] == text:
        return start
    hits = [m.start() for m in re.finditer(re.escape(text), context)]
    if not hits:
        return None
    return min(hits, key=lambda h: abs(h - start)) if isinstance(start, int) else hits[0]


def write_squad_file(path: str, examples: list[dict]) -> None:
    """Write ``examples`` as SQuAD-style JSON (one paragraph per example), atomically."""
    data = [
        {
            "title": ex.get("title", ""),
            "paragraphs": [
                {
                    "context": ex["context"],
                    "qas": [
                        {
                            "id": ex["id"],
                            "question": ex["question"],
                            "answers": [
                                {"text": t, "answer_start": s} for t, s in zip(ex["answers"], ex["answer_starts"])
                            ],
                        }
                    ],
                }
            ],
        }
        for ex in examples
    ]
    with atomic_write(path, "w") as f:
        json.dump({"version": "1.0", "data": data}, f, ensure_ascii=False, indent=1)


# ------------------------------------------------------------------------------------ official layouts (CLUE, tsv)
def clue_reader(convert: Callable[[dict], tuple[str, str | None, object]], skip_label: str | None = None):
    """A CLUE json-lines reader: ``convert(record) -> (text, text_pair, label)``; rows labelled ``skip_label``
    (``-``: no annotator majority) are dropped, as PaddleNLP does; rows that cannot be used are skipped and
    counted (:class:`RowSkips`)."""

    def read(path: str, split: str) -> list[dict]:
        out, skips = [], RowSkips(path)
        for lineno, rec in read_rows(path, force_json=True):
            where = f"{path}:{lineno}"
            try:
                text, pair, label = convert(rec)
            except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
                skips.skip(where, f"not in the expected layout ({type(e).__name__}: {e})")
                continue
            if skip_label is not None and label == skip_label:
                continue
            if not isinstance(text, str) or not text.strip():
                skips.skip(where, "empty or missing text")
                continue
            out.append(
                {
                    "text": text,
                    "text_pair": pair or None,
                    "label": None if label in (None, "") else str(label),
                    "source": where,
                }
            )
        return skips.finish(out)

    return read


def clue_sentence(rec):
    return rec["sentence"], None, rec.get("label")


def clue_pair(rec):
    return rec["sentence1"], rec["sentence2"], rec.get("label")


def clue_csl(rec):
    return "，".join(rec["keyword"]), rec["abst"], rec.get("label")


def clue_wsc(rec):
    """CLUEWSC2020: mark the entity with ``_..._`` and the pronoun with ``[...]`` (PaddleNLP's convert_clue)."""
    text, t = rec["text"], rec["target"]
    marks = sorted(
        [
            (t["span1_index"], t["span1_text"], "_", "_", "span1_text"),
            (t["span2_index"], t["span2_text"], "[", "]", "span2_text"),
        ],
        reverse=True,
    )
    for start, span, left, right, key in marks:  # from the right, so earlier offsets stay valid
        length = len(span)
        if text[start : start + length] != span:
            raise ValueError(f"{key} {span!r} is not at index {start} of the text")
        text = text[:start] + left + text[start : start + length] + right + text[start + length :]
    return text, None, rec.get("label")


def tsv_reader(
    columns: dict[str, tuple[str, ...]] | tuple[str, ...],
    header: bool | dict[str, tuple[str, ...]],
    rename: dict | None = None,
    labels: tuple[str, ...] = (),
):
    """A tsv reader with named columns (``text``, ``text_pair``, ``label``, others ignored); ``columns`` may
    differ per split (a dict keyed by train / dev / test).

    ``header``: False (none), the header's field names per split (line 1 must be exactly that line), or True
    (line 1 must not be a data row: its label field is not one of ``labels``). A file whose line 1 is not the
    promised header is said so on stderr, and its line 1 is read as data, not dropped. Rows that cannot be used
    are skipped and counted (:class:`RowSkips`)."""

    def read(path: str, split: str) -> list[dict]:
        cols = columns[split] if isinstance(columns, dict) else columns
        expected = header.get(split) if isinstance(header, dict) else None
        out, skips = [], RowSkips(path)
        for lineno, rec in read_rows(path, force_tsv=True):
            row = dict(zip(cols, rec))
            if header and lineno == 1:
                if expected is not None and tuple(f.strip() for f in rec) == expected:
                    continue
                if expected is None and (row.get("label") or "").strip() not in labels:
                    continue
                promised = "'" + "\\t".join(expected) + "'" if expected else "(field names)"
                warn(f"{path}:1: not the header line {promised} the layout promises; line 1 is read as data")
            if len(rec) not in (len(cols), len(cols) - ("label" in cols)) or not row.get("text", "").strip():
                skips.skip(
                    f"{path}:{lineno}",
                    f"expected {len(cols)} tab-separated fields ({', '.join(cols)}) with a text, got {len(rec)}",
                )
                continue
            label = (row.get("label") or "").strip() or None
            if rename and label in rename:
                label = rename[label]
            out.append(
                {
                    "text": row["text"],
                    "text_pair": row.get("text_pair") or None,
                    "label": label,
                    "source": f"{path}:{lineno}",
                }
            )
        return skips.finish(out)

    return read
