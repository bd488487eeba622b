"""Vocabulary builder: a BERT/ERNIE-style vocab.txt learned from raw Chinese (+ English) text.

    python scripts/build_vocab.py --input_path TXT_OR_DIR --output_dir DIR --vocab_size N
                                  [--cjk_range corpus|all] [--min_freq K] [--overwrite]

Layout of the vocab (ids in this order, deterministic for a given corpus and flags):

1. ``[PAD]`` ``[CLS]`` ``[SEP]`` ``[MASK]`` ``[UNK]`` (ids 0-4; the first four as in PaddleNLP's ernie-1.0 vocab);
2. digits, ASCII letters and ASCII punctuation, with ``##`` forms of the digits and letters;
3. the corpus's other punctuation/symbol chars by frequency;
4. CJK chars by frequency (``--cjk_range all``: then the rest of U+4E00..U+9FA5 by codepoint);
5. WordPiece pieces for everything else (English, digits runs, other scripts), learned with HF ``tokenizers``;
6. the ``##`` form of every CJK char of block 4, used by whole-word encoding (``哈 ##尔 ##滨``).

The text is counted after the tokenizer's own basic tokenization (lower-casing, accent stripping, CJK and
punctuation split), so every entry is reachable. When ``--vocab_size`` cannot hold all CJK chars of the corpus, the
rarest are dropped (WordPiece keeps at least a tenth of the free room when it has that many pieces).

Determinism: HF's ``WordPieceTrainer`` breaks ties between equal-count merges by hash-map order, so it can differ
between runs. The same BPE algorithm run without a continuation prefix (``BpeTrainer``) assigns ids in a fixed order
and is deterministic; word starts are marked with ``▁`` instead and converted to the ``##`` convention afterwards
(``▁un`` -> ``un``, ``aff`` -> ``##aff``).
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import string
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from ernie.tokenizer import CONFIG_FILE, VOCAB_FILE, BasicTokenizer, is_cjk_char, is_punctuation, write_tokenizer_files
from ernie.utils import ArgumentParser, UserError, check_output_path, cli_main, list_input_files, output_error
from ernie.utils.lock import lock_output

from .pool import sigterm_as_interrupt
from .trans_to_json import SkipLog

SPECIAL_TOKENS = ("[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]")
MAX_VOCAB_SIZE = 65535  # ids must fit uint16 in the token files
CJK_BASIC_BLOCK = (0x4E00, 0x9FA5)  # --cjk_range all (the block PaddleNLP's extend_chinese_char covers)
WORD_START = "\u2581"  # marks word-initial pieces while training (a symbol: never inside a basic token)
_MAX_WORD_CHARS = 100  # longer words are [UNK] for the tokenizer: not worth learning
_CHUNK_CHARS = 1 << 22


@dataclass
class VocabConfig:
    """Options of :func:`build_vocab`."""

    vocab_size: int
    cjk_range: str = "corpus"  # "corpus": CJK chars seen at least min_freq times; "all": the whole basic block
    min_freq: int = 1  # minimum count of a CJK/punctuation char, and of a merge for WordPiece
    do_lower_case: bool = True
    wordpiece_share: float = 0.1  # share of the free room kept for WordPiece when CJK chars do not all fit
    limit_alphabet: int = 1000  # at most this many distinct chars in WordPiece pieces


@dataclass
class CorpusCounts:
    chars: collections.Counter  # every char of the normalised text (CJK and punctuation chars are tokens)
    words: collections.Counter  # word tokens (neither CJK nor punctuation)
    n_bytes: int
    n_files: int
    skipped: SkipLog = field(default_factory=SkipLog)


def read_chunks(files: list[str], skipped: SkipLog | None = None) -> Iterator[str]:
    """Decoded text in chunks of ~4M chars (whole lines); lines of invalid UTF-8 are skipped and counted in
    ``skipped`` (with the first file:line), as the other data tools do."""
    for path in files:
        lines, size = [], 0
        try:
            f = open(path, "rb")
        except OSError as e:
            raise UserError(f"{path}: cannot read ({e.strerror})") from None
        with f:
            for lineno, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    if skipped is not None:
                        skipped.add("lines of invalid UTF-8 skipped", f"{path}:{lineno} (byte {e.start})")
                    continue
                lines.append(line)
                size += len(line)
                if size >= _CHUNK_CHARS:
                    yield "".join(lines)
                    lines, size = [], 0
        if lines:
            yield "".join(lines)


def count_corpus(input_path: str, do_lower_case: bool = True) -> CorpusCounts:
    """Count chars and word tokens of the corpus after basic tokenization."""
    files = list_input_files(input_path)
    basic = BasicTokenizer(do_lower_case)
    chars: collections.Counter = collections.Counter()
    words: collections.Counter = collections.Counter()
    n_bytes = 0
    skipped = SkipLog()
    for chunk in read_chunks(files, skipped):
        n_bytes += len(chunk.encode("utf-8"))
        normalized = basic.normalize(chunk)
        chars.update(normalized)
        words.update(basic.words(normalized))
    return CorpusCounts(chars, words, n_bytes, len(files), skipped)


def base_tokens() -> list[str]:
    """Specials, then digits, ASCII letters, ASCII punctuation, then ## digits and ## letters."""
    alnum = string.digits + string.ascii_lowercase
    return [*SPECIAL_TOKENS, *alnum, *string.punctuation, *("##" + c for c in alnum)]


def by_frequency(counts: collections.Counter, keep, min_freq: int) -> list[str]:
    """Keys passing ``keep`` with count >= ``min_freq``, most frequent first, ties by codepoint."""
    return sorted((k for k, n in counts.items() if n >= min_freq and keep(k)), key=lambda k: (-counts[k], k))


def train_wordpiece(words: collections.Counter, size: int, config: VocabConfig) -> list[str]:
    """WordPiece pieces (``##`` convention) for the word tokens: single chars (both forms) first, then learned
    pieces in merge order. At most ``size`` + alphabet pieces."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    kept = sorted(w for w in words if len(w) <= _MAX_WORD_CHARS)
    if not kept or size <= 0:
        return []
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.BpeTrainer(
        vocab_size=size,
        min_frequency=max(config.min_freq, 2),
        show_progress=False,
        special_tokens=[],
        limit_alphabet=config.limit_alphabet,
    )
    # One line per distinct word repeated by its count: the trainer counts words itself.
    lines = ((WORD_START + w + " ") * words[w] for w in kept)
    tokenizer.train_from_iterator(lines, trainer=trainer, length=len(kept))
    learned = [t for t, _ in sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])]

    def to_wordpiece(piece: str) -> str:
        return piece[1:] if piece.startswith(WORD_START) else "##" + piece

    singles = [c for c in learned if len(c) == 1 and c != WORD_START]
    pieces = [p for c in singles for p in (c, "##" + c)]
    pieces += [to_wordpiece(t) for t in learned if len(t.lstrip(WORD_START)) > 1]
    return pieces


def assemble_vocab(counts: CorpusCounts, config: VocabConfig) -> tuple[list[str], dict[str, int]]:
    """The vocab's token list (see the module docstring for its layout) and a summary of its parts."""
    n = config.vocab_size
    tokens = base_tokens()
    seen = set(tokens)
    punct = [c for c in by_frequency(counts.chars, is_punctuation, config.min_freq) if c not in seen]
    tokens += punct
    seen.update(punct)
    cjk = by_frequency(counts.chars, is_cjk_char, config.min_freq)
    if config.cjk_range == "all":
        lo, hi = CJK_BASIC_BLOCK
        cjk_set = set(cjk)
        cjk += [chr(cp) for cp in range(lo, hi + 1) if chr(cp) not in cjk_set]
    free = n - len(tokens)
    if free < 2:
        raise UserError(
            f"--vocab_size: {n} is too small: special tokens, digits, letters and punctuation alone take {len(tokens)}"
        )
    if config.cjk_range == "all" and 2 * len(cjk) > free:
        raise UserError(
            f"--vocab_size: {n} is too small for --cjk_range all: needs at least "
            f"{len(tokens) + 2 * len(cjk)} (each CJK char and its ## form)"
        )

    wordpieces = [p for p in dict.fromkeys(train_wordpiece(counts.words, free, config)) if p not in seen]
    reserve = min(len(wordpieces), int(free * config.wordpiece_share)) if 2 * len(cjk) > free else 0
    n_cjk = len(cjk) if config.cjk_range == "all" else min(len(cjk), (free - reserve) // 2)
    cjk = cjk[:n_cjk]
    wordpieces = wordpieces[: free - 2 * n_cjk]
    tokens += cjk + wordpieces + ["##" + c for c in cjk]
    summary = {
        "special+ascii": len(base_tokens()),
        "punctuation": len(punct),
        "cjk": n_cjk,
        "cjk_continuation": n_cjk,
        "wordpiece": len(wordpieces),
        "total": len(tokens),
    }
    return tokens, summary


def build_vocab(input_path: str, output_dir: str, config: VocabConfig, overwrite: bool = False) -> dict:
    """Count ``input_path``, assemble the vocab and write ``output_dir``/vocab.txt + tokenizer_config.json
    (+ special_tokens_map.json). Refuses existing outputs unless ``overwrite``. Returns the summary."""
    if not 0 < config.vocab_size <= MAX_VOCAB_SIZE:
        raise UserError(f"--vocab_size: must be in 1..{MAX_VOCAB_SIZE} (ids must fit uint16), got {config.vocab_size}")
    if config.cjk_range not in ("corpus", "all"):
        raise UserError(f"--cjk_range: must be 'corpus' or 'all', got {config.cjk_range!r}")
    if config.min_freq < 1:
        raise UserError(f"--min_freq: must be >= 1, got {config.min_freq}")
    for name in (VOCAB_FILE, CONFIG_FILE):
        check_output_path(os.path.join(output_dir, name), overwrite)
    with lock_output(output_dir, "--output_dir"):
        for name in (VOCAB_FILE, CONFIG_FILE):  # again inside the lock: another run may have written them
            check_output_path(os.path.join(output_dir, name), overwrite)
        return _build(input_path, output_dir, config)


def _build(input_path: str, output_dir: str, config: VocabConfig) -> dict:
    counts = count_corpus(input_path, config.do_lower_case)
    if not counts.chars.keys() - {" ", "\n"}:
        raise UserError(
            f"--input_path: {input_path} holds no text" + "".join(f"; {line}" for line in counts.skipped.lines())
        )
    tokens, summary = assemble_vocab(counts, config)
    try:
        os.makedirs(output_dir, exist_ok=True)
    except OSError as e:
        raise output_error(output_dir, e) from None
    special = {
        "unk_token": "[UNK]",
        "sep_token": "[SEP]",
        "pad_token": "[PAD]",
        "cls_token": "[CLS]",
        "mask_token": "[MASK]",
    }
    # the three files appear together or not at all: written into a hidden folder beside them, then renamed in
    # (vocab.txt last: its presence marks a whole vocabulary); a full disk leaves the previous files as they were
    tmp = os.path.join(output_dir, ".build_vocab.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        os.makedirs(tmp)
        write_tokenizer_files(tmp, tokens, config.do_lower_case, special)
        for name in sorted(os.listdir(tmp), key=lambda n: n == VOCAB_FILE):
            try:
                os.replace(os.path.join(tmp, name), os.path.join(output_dir, name))
            except OSError as e:
                raise output_error(os.path.join(output_dir, name), e) from None
    except UserError as e:  # name the output, not the hidden folder
        raise UserError(str(e).replace(tmp, output_dir)) from None
    except OSError as e:
        raise output_error(output_dir, e) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    summary["corpus_bytes"] = counts.n_bytes
    summary["corpus_files"] = counts.n_files
    summary["skipped"] = counts.skipped  # type: ignore[assignment]
    return summary


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    parser.add_argument("--input_path", required=True, help="a text file or a folder of text files")
    parser.add_argument("--output_dir", required=True, help="where vocab.txt and tokenizer_config.json go")
    parser.add_argument("--vocab_size", type=int, required=True, help=f"at most this many tokens (<= {MAX_VOCAB_SIZE})")
    parser.add_argument(
        "--cjk_range",
        choices=["corpus", "all"],
        default="corpus",
        help="CJK chars seen in the corpus (default) or the whole U+4E00..U+9FA5 block",
    )
    parser.add_argument(
        "--min_freq",
        type=int,
        default=1,
        help="minimum count of a CJK/punctuation char (WordPiece merges need at least 2)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing vocab in --output_dir")
    return parser.parse_args(argv)


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = VocabConfig(vocab_size=args.vocab_size, cjk_range=args.cjk_range, min_freq=args.min_freq)
    start = time.perf_counter()
    with sigterm_as_interrupt():  # a terminated run removes its temporary files
        summary = build_vocab(args.input_path, args.output_dir, config, overwrite=args.overwrite)
    seconds = time.perf_counter() - start
    skipped = summary.pop("skipped")
    parts = ", ".join(f"{k} {v}" for k, v in summary.items() if k not in ("total", "corpus_bytes", "corpus_files"))
    print(
        f"vocab: {summary['total']} tokens ({parts}) from {summary['corpus_bytes'] / 1e6:.1f} MB in "
        f"{summary['corpus_files']} file(s), {seconds:.1f} s -> {os.path.join(args.output_dir, VOCAB_FILE)}"
    )
    for line in skipped.lines():
        print(f"  {line}")
    if summary["total"] < args.vocab_size:
        print(
            f"note: the corpus holds only {summary['total']} distinct tokens, fewer than --vocab_size "
            f"{args.vocab_size}: the vocabulary has {summary['total']} entries (more text, or --cjk_range all, "
            "would give more)",
            file=sys.stderr,
        )
    return 0
