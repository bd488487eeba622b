"""jsonl documents -> token files for pretraining, with Chinese word boundaries kept as ``##`` pieces.

    python scripts/create_pretraining_data.py --model_name vocab_dir --input_path docs.jsonl \\
        --output_prefix data/corpus --split_sentences --chinese --cn_whole_word_segment --cn_seg_func jieba \\
        --workers 2 [--data_impl npy|mmap] [--cn_splited --cn_split_dimer " "] [--overwrite]

Flags are those of PaddleNLP's ``model_zoo/ernie-1.0`` script. Per document (one json line):

    text ─ split_sentences (--split_sentences) ─ segmenter (--cn_seg_func, or split on --cn_split_dimer with
    --cn_splited) ─ ErnieTokenizer.encode_words ─► ids per sentence (哈尔滨 -> 哈 ##尔 ##滨)

``--cn_seg_func lac_lexical`` segments with LAC's lexical model (words + POS + entities, :mod:`data_tools.lac`)
and also writes ``{P}_units.npy``: one marker byte per token saying where each word, phrase and named entity
begins (:mod:`data_tools.lexical_units`), which ``run_pretrain.py --masking knowledge`` needs. The main token files
are the same as without markers.

Without ``--cn_whole_word_segment`` sentences are tokenized plainly (no ``##`` boundaries). Lines are read in
chunks, encoded by ``--workers`` processes and written in input order (at most a few chunks in flight), through a
builder that writes hidden temporary files and renames them at the end: an interrupted or failed run leaves no
output under the final names. Bad lines (invalid UTF-8 or JSON, no ``--json_key`` text, overlong) and empty
documents are skipped and counted; one-sentence documents are kept and counted (SOP needs two sentences);
sentences longer than ``--max_sentence_length`` tokens are cut at word starts (the sample builder skips
documents holding a sentence over 512 tokens). The counts, with the first ``file:line`` of each, are printed at
the end.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from ernie.tokenizer import ErnieTokenizer
from ernie.utils import ArgumentParser, UserError, cli_main, list_input_files

from .indexed_dataset import (
    IMPLS,
    best_fitting_dtype,
    make_builder,
    meta_path,
    output_paths,
    units_path,
    vocab_fingerprint,
)
from .lac import LacLexicalModel
from .lexical_units import (
    ENTITY_START,
    IN_ENTITY,
    PHRASE_START,
    WORD_START,
    split_whitespace,
    token_markers,
    word_markers,
)
from .pool import ordered_map, sigterm_as_interrupt
from .segmentation import get_segmenter
from .sentence_split import split_sentences
from .trans_to_json import SkipLog

SEGMENTER_NAMES = ("lac", "lac_lexical", "jieba", "char")
LEXICAL = "lac_lexical"  # the segmenter that also gives phrases and entities (unit markers)
CHUNK_LINES = 256  # documents per task
CHUNK_BYTES = 1 << 20  # ... or this many input bytes, whichever comes first


@dataclass
class PretrainDataConfig:
    model_name: str
    input_path: str
    output_prefix: str
    tokenizer_name: str = "ErnieTokenizer"
    data_format: str = "JSON"
    json_key: str = "text"
    split_sentences: bool = False
    data_impl: str = "npy"
    chinese: bool = False
    cn_whole_word_segment: bool = False
    cn_seg_func: str = "jieba"
    cn_splited: bool = False
    cn_split_dimer: str = " "
    append_eos: bool = False
    log_interval: int = 100
    workers: int = 1
    max_sentence_length: int = 512
    max_line_bytes: int = 256 << 20
    overwrite: bool = False

    def check(self) -> None:
        if not os.path.exists(self.input_path):
            raise UserError(f"--input_path: {self.input_path} does not exist")
        if self.data_impl not in IMPLS:
            raise UserError(f"--data_impl: {self.data_impl!r}; choose one of {', '.join(IMPLS)}")
        if self.cn_seg_func not in SEGMENTER_NAMES:
            raise UserError(f"--cn_seg_func: {self.cn_seg_func!r}; choose one of {', '.join(SEGMENTER_NAMES)}")
        for flag in ("workers", "log_interval"):
            if getattr(self, flag) < 1:
                raise UserError(f"--{flag}: must be >= 1, got {getattr(self, flag)}")
        if self.max_sentence_length < 0:
            raise UserError(f"--max_sentence_length: must be >= 0 (0 = no limit), got {self.max_sentence_length}")
        if self.cn_splited and not self.cn_split_dimer:
            raise UserError("--cn_split_dimer: must not be empty")
        if self.cn_seg_func == LEXICAL and not (self.cn_whole_word_segment and not self.cn_splited):
            raise UserError(f"--cn_seg_func {LEXICAL}: needs --cn_whole_word_segment (and no --cn_splited)")

    @property
    def writes_units(self) -> bool:
        """Whether the run writes unit markers ({P}_units.npy)."""
        return self.cn_whole_word_segment and not self.cn_splited and self.cn_seg_func == LEXICAL


# --------------------------------------------------------------------------------------------- encoding (workers)


def load_tokenizer(config: PretrainDataConfig):
    if not os.path.isdir(config.model_name):
        raise UserError(
            f"--model_name: {config.model_name} is not a vocabulary folder (vocab.txt + "
            f"tokenizer_config.json, e.g. from scripts/build_vocab.py)"
        )
    return ErnieTokenizer.from_pretrained(config.model_name)


def eos_token_id(tokenizer) -> int:
    """The vocabulary's end-of-document token for ``--append_eos``."""
    for token in ("[EOS]", "</s>", "<eos>"):
        if token in tokenizer.vocab:
            return tokenizer.vocab[token]
    raise UserError("--append_eos: the vocabulary has no end-of-sequence token ([EOS], </s> or <eos>)")


class DocumentEncoder:
    """Turns a chunk of json lines into token ids: the per-process state of a run (tokenizer, segmenter)."""

    def __init__(self, config: PretrainDataConfig):
        self.config = config
        self.tokenizer = load_tokenizer(config)
        self.dtype = best_fitting_dtype(self.tokenizer.vocab_size)
        self.eos = eos_token_id(self.tokenizer) if config.append_eos else None
        self.split: Callable[[str], list[str]] = lambda text: [text]
        if config.split_sentences:
            self.split = split_sentences
        self.lexical = None
        if config.writes_units:
            self.lexical = LacLexicalModel()
        self.segment = self._build_segmenter()

    def _build_segmenter(self) -> Callable[[list[str]], list[list[str]]] | None:
        """Sentences -> words, or None when no segmenter runs (plain tokenization, pre-segmented input, or the
        lexical model, which :meth:`encode_lexical` runs)."""
        config = self.config
        if not config.cn_whole_word_segment or config.cn_splited or config.writes_units:
            return None
        return get_segmenter(config.cn_seg_func).segment

    def presegmented_sentences(self, text: str) -> list[list[str]]:
        """Sentences, as word lists, of text already segmented with ``--cn_split_dimer`` (``--cn_splited``).

        Sentences are found on the text without separators (so that closing quotes stay with their sentence)
        and each word goes to the sentence in which it starts."""
        dimer = self.config.cn_split_dimer
        lines = [[w for w in (x.strip() for x in line.split(dimer)) if w] for line in text.splitlines()]
        if not self.config.split_sentences:
            return [[w for words in lines for w in words]]
        sentences = []
        for words in lines:
            if not words:
                continue
            raw = "".join(words)
            starts, pos = [], 0
            for sentence in self.split(raw):
                pos = raw.find(sentence, pos)
                if pos < 0:  # the splitter changed the text: keep the line as one sentence
                    starts, pos = [0], len(raw)
                    break
                starts.append(pos)
                pos += len(sentence)
            starts = starts or [0]
            groups: list[list[str]] = [[] for _ in starts]
            k, offset = 0, 0
            for word in words:
                while k + 1 < len(starts) and offset >= starts[k + 1]:
                    k += 1
                groups[k].append(word)
                offset += len(word)
            sentences += groups
        return sentences

    def encode_lexical(self, sentences: list[str]) -> list[tuple[list[int], np.ndarray]]:
        """Per sentence, its ids (whole words kept, as ``encode_words``) and their unit markers uint8."""
        assert self.lexical is not None, "encode_lexical needs the lexical analyser (--cn_seg_func lac_lexical)"
        out = []
        for words, labels in self.lexical.analyse(sentences):
            words, flags = split_whitespace(words, word_markers(labels))
            per_word = [self.tokenizer.encode_words([w]) for w in words]
            out.append(([i for ids in per_word for i in ids], token_markers([len(x) for x in per_word], flags)))
        return out

    def sentences_to_ids(self, texts: list[str]) -> list[list]:
        """Per document text, the ids of each of its sentences (empty ones included); with unit markers, each
        sentence is ``(ids, markers)``."""
        tok = self.tokenizer
        if self.config.cn_whole_word_segment and self.config.cn_splited:
            return [[tok.encode_words(words) for words in self.presegmented_sentences(t)] for t in texts]
        docs = [[s for s in (x.strip() for x in self.split(t)) if s] for t in texts]
        flat = [s for sentences in docs for s in sentences]
        if self.lexical is not None:
            encoded = self.encode_lexical(flat)
        elif self.segment is None:
            encoded = [tok.convert_tokens_to_ids(tok.tokenize(s)) for s in flat]
        else:
            encoded = [tok.encode_words(words) for words in self.segment(flat)]
        it = iter(encoded)
        return [[next(it) for _ in sentences] for sentences in docs]

    def cut_overlong(self, ids: list[int], units: np.ndarray | None = None) -> list:
        """Pieces of at most ``max_sentence_length`` tokens, cut at word starts where the sentence has one (with
        ``units``: ``(ids, markers)`` pieces, each piece beginning a word and a phrase, and an entity if inside
        one)."""
        limit = self.config.max_sentence_length
        starts = self.tokenizer.is_word_start(np.asarray(ids))
        bounds = [0]
        while len(ids) - bounds[-1] > limit:
            begin = bounds[-1]
            window = np.flatnonzero(starts[begin + 1 : begin + limit + 1])
            bounds.append(begin + 1 + int(window[-1]) if len(window) else begin + limit)
        bounds.append(len(ids))
        if units is None:
            return [ids[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        pieces = []
        for a, b in zip(bounds[:-1], bounds[1:]):
            marks = units[a:b].copy()
            marks[0] |= WORD_START | PHRASE_START | (ENTITY_START if marks[0] & IN_ENTITY else 0)
            pieces.append((ids[a:b], marks))
        return pieces

    def parse(self, path: str, lineno: int, raw: bytes, skipped: SkipLog) -> str | None:
        """The document text of one json line, or None (counted in ``skipped``)."""
        where = f"{path}:{lineno}"
        key = self.config.json_key
        if len(raw) > self.config.max_line_bytes:
            skipped.add(f"lines longer than {self.config.max_line_bytes} bytes skipped", where)
            return None
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            skipped.add("lines of invalid UTF-8 skipped", where)
            return None
        if not line.strip():
            skipped.add("blank lines skipped", where)
            return None
        try:
            record = json.loads(line)
        except ValueError:
            skipped.add("lines of invalid JSON skipped", where)
            return None
        if not isinstance(record, dict) or key not in record:
            skipped.add(f"lines without the key {key!r} skipped", where)
            return None
        text = record[key]
        if not isinstance(text, str):
            skipped.add(f"lines whose {key!r} is not a string skipped", where)
            return None
        return text

    def encode_chunk(self, path: str, lines: list[tuple[int, bytes]]) -> ChunkResult:
        skipped = SkipLog()
        parsed = [(lineno, self.parse(path, lineno, raw, skipped)) for lineno, raw in lines]
        texts = [(lineno, t) for lineno, t in parsed if t is not None]
        encoded = self.sentences_to_ids([t for _, t in texts])
        with_units = self.lexical is not None
        if not with_units:  # one code path below: sentences as (ids, markers), markers None
            encoded = [[(s, None) for s in sentences] for sentences in encoded]
        limit = self.config.max_sentence_length
        ids: list[int] = []
        units: list[np.ndarray] = []
        lens: list[int] = []
        per_doc: list[int] = []
        for (lineno, _), sentences in zip(texts, encoded):
            where = f"{path}:{lineno}"
            doc = [s for s in sentences if s[0]]
            if not doc:
                skipped.add("empty documents skipped", where)
                continue
            if self.eos is not None:
                last, marks = doc[-1]
                # the EOS marker 3: a word of its own and a phrase of its own
                doc[-1] = (last + [self.eos], None if marks is None else np.append(marks, 3).astype(marks.dtype))
            if limit and any(len(s) > limit for s, _ in doc):
                skipped.add(
                    f"sentences longer than {limit} tokens cut at word starts",
                    where,
                    sum(len(s) > limit for s, _ in doc),
                )
                doc = [piece for s, m in doc for piece in (self._cut(s, m) if len(s) > limit else [(s, m)])]
            if len(doc) == 1:
                skipped.add("one-sentence documents kept (SOP needs two sentences)", where)
            for s, m in doc:
                ids += s
                lens.append(len(s))
                if with_units:
                    units.append(m)
            per_doc.append(len(doc))
        marks = (np.concatenate(units) if units else np.zeros(0, dtype=np.uint8)) if with_units else None
        return ChunkResult(
            np.asarray(ids, dtype=self.dtype),
            np.asarray(lens, dtype=np.int32),
            np.asarray(per_doc, dtype=np.int64),
            skipped,
            sum(len(raw) for _, raw in lines),
            marks,
        )

    def _cut(self, ids: list[int], marks: np.ndarray | None) -> list[tuple]:
        pieces = self.cut_overlong(ids, marks)
        return pieces if marks is not None else [(p, None) for p in pieces]


@dataclass
class ChunkResult:
    ids: np.ndarray  # [T] token ids of every kept sentence
    lens: np.ndarray  # [S] int32 tokens per sentence
    sentences_per_doc: np.ndarray  # [D] int64
    skipped: SkipLog
    num_bytes: int
    units: np.ndarray | None = None  # [T] uint8 unit markers (with --cn_seg_func lac_lexical)


_ENCODER: DocumentEncoder | None = None


def _init_worker(config: PretrainDataConfig) -> None:
    """Worker initializer (:func:`data_tools.pool.ordered_map`): build the encoder once per process."""
    global _ENCODER
    _ENCODER = DocumentEncoder(config)


def _encode_task(task: tuple[str, list[tuple[int, bytes]]]) -> ChunkResult:
    assert _ENCODER is not None, "_init_worker runs before the first task"
    return _ENCODER.encode_chunk(*task)


# ------------------------------------------------------------------------------------------------ reading, order


def read_chunks(files: list[str], max_line_bytes: int) -> Iterator[tuple[str, list[tuple[int, bytes]]]]:
    """(file, [(line number, raw line)]) chunks of at most CHUNK_LINES lines / ~CHUNK_BYTES bytes. A line over
    ``max_line_bytes`` is not held in memory: it is passed on as its first ``max_line_bytes + 1`` bytes."""
    for path in files:
        try:
            f = open(path, "rb")
        except OSError as e:
            raise UserError(f"{path}: cannot read ({e.strerror})") from None
        with f:
            chunk, size, lineno = [], 0, 0
            while True:
                raw = f.readline(max_line_bytes + 1)
                if not raw:
                    break
                lineno += 1
                if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
                    while (rest := f.readline(1 << 20)) and not rest.endswith(b"\n"):
                        pass  # drop the rest of the overlong line
                chunk.append((lineno, raw))
                size += len(raw)
                if len(chunk) >= CHUNK_LINES or size >= CHUNK_BYTES:
                    yield path, chunk
                    chunk, size = [], 0
            if chunk:
                yield path, chunk


# ---------------------------------------------------------------------------------------------------------- run


class Progress:
    """tqdm bar in MB of input (with MB/s) on a terminal; a log line every ``log_interval`` documents otherwise."""

    def __init__(self, total_bytes: int, log_interval: int):
        self.bar = tqdm(
            total=total_bytes,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            disable=None,
            desc="encoding",
            file=sys.stderr,
        )
        self.log_interval, self.next_log = log_interval, log_interval
        self.start, self.docs, self.bytes = time.time(), 0, 0

    def update(self, num_bytes: int, num_docs: int) -> None:
        self.bytes += num_bytes
        self.docs += num_docs
        self.bar.update(num_bytes)
        if self.bar.disable and self.docs >= self.next_log:
            self.next_log = (self.docs // self.log_interval + 1) * self.log_interval
            elapsed = max(time.time() - self.start, 1e-9)
            print(
                f"Processed {self.docs} documents ({self.docs / elapsed:.1f} docs/s, "
                f"{self.bytes / elapsed / 2**20:.3f} MB/s)",
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> float:
        self.bar.close()
        return time.time() - self.start


def create_pretraining_data(config: PretrainDataConfig) -> dict:
    """Encode ``config.input_path`` into ``config.output_prefix``; returns counts and the skip log."""
    config.check()
    files = list_input_files(config.input_path, suffixes=(".jsonl", ".json"))
    tokenizer = load_tokenizer(config)  # fails early on a bad vocabulary
    if config.cn_whole_word_segment and not any(t.startswith("##") and len(t) == 3 for t in tokenizer.vocab):
        print(
            f"warning: {tokenizer.vocab_file} has no ##<char> entries: whole-word boundaries cannot be kept",
            file=sys.stderr,
        )
    dtype = best_fitting_dtype(tokenizer.vocab_size)
    skipped = SkipLog()
    progress = Progress(sum(os.path.getsize(p) for p in files), config.log_interval)
    with make_builder(
        config.output_prefix,
        config.data_impl,
        dtype,
        overwrite=config.overwrite,
        units=config.writes_units,
        vocab_fingerprint=vocab_fingerprint(tokenizer),
        vocab_size=tokenizer.vocab_size,
    ) as builder:
        results = ordered_map(
            _encode_task, read_chunks(files, config.max_line_bytes), config.workers, _init_worker, (config,)
        )
        for result in results:
            builder.add_documents(result.ids, result.lens, result.sentences_per_doc, result.units)
            skipped.update(result.skipped)
            progress.update(result.num_bytes, len(result.sentences_per_doc))
        seconds = progress.close()
        if builder.num_documents == 0:
            raise UserError(
                f"--input_path: no documents to write from {config.input_path}"
                + "".join(f"; {line}" for line in skipped.lines())
            )
        builder.finalize()
    outputs: tuple[str, ...] = output_paths(config.output_prefix, config.data_impl)
    if builder.has_units:
        outputs = (*outputs, units_path(config.output_prefix))
    outputs = (*outputs, meta_path(config.output_prefix))
    return {
        "files": outputs,
        "documents": builder.num_documents,
        "sentences": builder.num_sentences,
        "tokens": builder.num_tokens,
        "bytes": progress.bytes,
        "seconds": seconds,
        "skipped": skipped,
        "summary": builder.summary(),
        "dtype": dtype,
    }


def build_parser() -> ArgumentParser:
    p = ArgumentParser(allow_abbrev=False, description="Encode jsonl documents into pretraining token files.")
    p.add_argument("--model_name", required=True, help="vocabulary folder (vocab.txt + tokenizer_config.json)")
    p.add_argument("--tokenizer_name", default="ErnieTokenizer", choices=["ErnieTokenizer"])
    g = p.add_argument_group("data input/output")
    g.add_argument("--input_path", required=True, help="a .jsonl file or a folder of .jsonl/.json files")
    g.add_argument(
        "--output_prefix",
        required=True,
        help="output files are PREFIX_ids.npy + PREFIX_idx.npz (npy) or PREFIX.bin + PREFIX.idx (mmap)",
    )
    g.add_argument("--data_format", default="JSON", choices=["JSON"], help="one json document per line")
    g.add_argument("--json_key", default="text", help="key of the document text")
    g.add_argument("--split_sentences", action="store_true", help="split documents into sentences (for SOP)")
    g.add_argument("--data_impl", default="npy", choices=IMPLS, help="output format")
    g.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    g = p.add_argument_group("chinese words")
    g.add_argument(
        "--chinese",
        action="store_true",
        help="Chinese corpus (accepted for PaddleNLP compatibility: the sentence splitter handles Chinese and English)",
    )
    g.add_argument("--cn_whole_word_segment", action="store_true", help="mark word boundaries with ## pieces")
    g.add_argument(
        "--cn_seg_func",
        default="jieba",
        choices=SEGMENTER_NAMES,
        help=f"word segmenter; {LEXICAL} (LAC's lexical model) also writes PREFIX_units.npy, the word / "
        "phrase / entity markers that --masking knowledge needs",
    )
    g.add_argument("--cn_splited", action="store_true", help="input text is already segmented into words")
    g.add_argument("--cn_split_dimer", default=" ", help="separator of pre-segmented words")
    g = p.add_argument_group("common config")
    g.add_argument("--append_eos", action="store_true", help="append the vocabulary's EOS token to each document")
    g.add_argument(
        "--max_sentence_length", type=int, default=512, help="cut longer sentences (tokens) at word starts; 0 = never"
    )
    g.add_argument("--log_interval", type=int, default=100, help="documents between progress lines (non-tty)")
    g.add_argument("--workers", type=int, default=1, help="encoding processes")
    return p


@cli_main
def main(argv=None) -> int:
    config = PretrainDataConfig(**vars(build_parser().parse_args(argv)))
    with sigterm_as_interrupt():  # a terminated run stops its workers and removes its temporary files
        stats = create_pretraining_data(config)
    mb = stats["bytes"] / 2**20
    print(f"Wrote {' + '.join(stats['files'])} ({np.dtype(stats['dtype']).name}): {stats['summary']}")
    print(
        f"Read {mb:.2f} MB in {stats['seconds']:.1f} s ({mb / max(stats['seconds'], 1e-9):.3f} MB/s, "
        f"{config.workers} worker(s))"
    )
    for line in stats["skipped"].lines():
        print(f"  {line}")
    return 0
