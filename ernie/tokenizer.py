"""ERNIE 1.0 tokenizer: BERT-style basic tokenization + WordPiece over a vocab.txt, PaddleNLP-compatible ids.

On the same vocab.txt, :class:`ErnieTokenizer` gives the same tokens and ids as
``paddlenlp.transformers.ErnieTokenizer`` (tested in ``tests/test_tokenizer.py``, compat marker):

1. special tokens written in the text (``[MASK]``...) are kept whole, the rest is normalised char by char:
   lower-casing + accent stripping (NFD minus ``Mn`` marks) when ``do_lower_case``; control chars, NUL and U+FFFD
   removed; whitespace -> space;
2. basic tokenization: every CJK char and every punctuation/symbol char is a token of its own, other runs of
   non-space chars form words;
3. WordPiece: greedy longest-match-first, continuation pieces prefixed ``##``; a word with no split (or longer than
   100 chars) is ``[UNK]``.

Steps 1-2 run as one ``str.translate`` (per-char table filled lazily) and one regex ``findall``; step 3 is cached per
word, so encoding costs a few dictionary lookups per token.

Whole-word encoding (for whole-word masking, see docs/design.md): :meth:`ErnieTokenizer.encode_words` takes
segmented words and encodes every non-first CJK char of a word as its ``##char`` entry, so word boundaries live in
the ids: ``["哈尔滨", "是"] -> 哈 ##尔 ##滨 是``. :meth:`~ErnieTokenizer.wwm_restore_map` maps those ids back to the
plain chars the model sees, :meth:`~ErnieTokenizer.is_word_start` tells word starts.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
import unicodedata
from collections.abc import Iterable, Sequence
from typing import cast

import numpy as np

from ernie import hub
from ernie.utils import UserError, atomic_write, resolve_dir

VOCAB_FILE = "vocab.txt"
CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_FILE = "special_tokens_map.json"
SPECIAL_TOKEN_NAMES = ("pad_token", "cls_token", "sep_token", "mask_token", "unk_token")

# CJK ideograph blocks, as BERT / PaddleNLP's BasicTokenizer define "Chinese char": each one is a token of its own.
CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)
# Codepoints PaddleNLP treats as symbols although their Unicode category is not S*.
_EXTRA_SYMBOLS = (0x00AD, 0x00B2, 0x00BA, 0x3007, 0x00B5, 0x00D8, 0x014B, 0x01B1)
# Words made only of these (fully assigned, no case, no decomposition) skip normalisation in encode_words.
_PURE_CJK_WORD = re.compile("[\u4e00-\u9fff\u3400-\u4dbf]+")
_MAX_CHARS_PER_WORD = 100
_MAX_CACHE = 1 << 20


def is_cjk_char(ch: str) -> bool:
    """True for a CJK ideograph (the BERT definition: it is always a token of its own)."""
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in CJK_RANGES)


def is_punctuation(ch: str) -> bool:
    """True for chars the basic tokenizer splits off: ASCII non-alphanumerics, Unicode P* and S*, a few extras."""
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch)[0] in "PS" or cp in _EXTRA_SYMBOLS


def _is_removed(ch: str) -> bool:
    """Chars the cleanup deletes: NUL, U+FFFD and control/format/unassigned chars (category C*) but tab/newlines."""
    return ch in "\x00\ufffd" or (ch not in "\t\n\r" and unicodedata.category(ch)[0] == "C")


def _is_space(ch: str) -> bool:
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def _strip_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")


def _char_class(codepoints: Iterable[int]) -> str:
    """A regex character class body for a sorted set of codepoints, compressed into ranges."""
    parts: list[tuple[int, int]] = []
    run: list[int] = []
    for cp in codepoints:
        if run and cp == run[-1] + 1:
            run.append(cp)
            continue
        if run:
            parts.append((run[0], run[-1]))
        run = [cp]
    if run:
        parts.append((run[0], run[-1]))
    return "".join(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in parts)


@functools.lru_cache(maxsize=1)
def punctuation_class() -> str:
    """Regex character-class body (no brackets) of every char :func:`is_punctuation` accepts: the chars the basic
    tokenizer splits off (BERT's split only ASCII and P* ones; ``ernie.convert`` gives HF's fast tokenizer this
    class so that it splits as we do)."""
    category = unicodedata.category
    codepoints = {cp for cp in range(sys.maxunicode + 1) if category(chr(cp))[0] in "PS"}
    codepoints.update(cp for cp in range(128) if is_punctuation(chr(cp)))
    codepoints.update(_EXTRA_SYMBOLS)
    return _char_class(sorted(codepoints))


@functools.lru_cache(maxsize=1)
def _basic_regexes() -> tuple[re.Pattern, re.Pattern]:
    """(``CJK char | punctuation char | word``, ``word``) where a word is a run of other non-space chars.

    Built once per process (~0.15 s: one pass over the Unicode categories)."""
    punct = punctuation_class()
    cjk = "".join(f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in CJK_RANGES)
    word = f"[^\\s{cjk}{punct}]+"
    return re.compile(f"[{cjk}]|[{punct}]|{word}"), re.compile(word)


class _NormalizeTable(dict):
    """``str.translate`` table filled on first sight of each char: the per-char part of basic tokenization.

    A char maps to ``strip_accents(lower(c))`` (when lower-casing) with removed chars dropped and whitespace turned
    into a space. PaddleNLP lower-cases text one char at a time too, so the results agree.
    """

    def __init__(self, do_lower_case: bool):
        super().__init__()
        self.do_lower_case = do_lower_case

    def __missing__(self, cp: int):
        ch = chr(cp)
        out = ch.lower() if self.do_lower_case else ch
        out = "".join(" " if _is_space(c) else c for c in out if not _is_removed(c))
        if self.do_lower_case:
            out = _strip_accents(out)
        value = cp if out == ch else (out or None)
        self[cp] = value
        return value


class BasicTokenizer:
    """Normalisation + split into CJK chars, punctuation chars and words (no vocabulary involved)."""

    def __init__(self, do_lower_case: bool = True):
        self.do_lower_case = do_lower_case
        self._table = _NormalizeTable(do_lower_case)
        token_re, word_re = _basic_regexes()
        self._findall = token_re.findall
        self._find_words = word_re.findall

    def normalize(self, text: str) -> str:
        """The per-char part: case, accents, control chars and whitespace (lengths may change)."""
        return text.translate(self._table)

    def words(self, normalized: str) -> list[str]:
        """The word tokens (neither CJK nor punctuation) of :meth:`normalize`'s output."""
        return self._find_words(normalized)

    def tokenize(self, text: str) -> list[str]:
        """``"Héllo,世界!"`` -> ``["hello", ",", "世", "界", "!"]``."""
        return self._findall(text.translate(self._table))


class WordpieceTokenizer:
    """Greedy longest-match-first WordPiece over ``vocab``; continuation pieces carry the ``##`` prefix."""

    def __init__(self, vocab: dict[str, int], unk_token: str, max_input_chars_per_word: int = _MAX_CHARS_PER_WORD):
        self.vocab = vocab
        self.unk_token = unk_token
        self.max_input_chars_per_word = max_input_chars_per_word
        self.max_piece_len = max((len(t) - 2 if t.startswith("##") else len(t) for t in vocab), default=1)

    def tokenize(self, word: str) -> list[str]:
        """One basic token -> its pieces, e.g. ``"unaffable"`` -> ``["un", "##aff", "##able"]``, or ``[unk]``."""
        if len(word) > self.max_input_chars_per_word:
            return [self.unk_token]
        pieces, start = [], 0
        while start < len(word):
            end = min(len(word), start + self.max_piece_len)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    break
                end -= 1
            if end == start:
                return [self.unk_token]
            pieces.append(piece)
            start = end
        return pieces


def load_vocab(vocab_file: str, required: Sequence[str] = ()) -> dict[str, int]:
    """Read a vocab.txt (one token a line, id = line number); ``UserError`` naming the file when it is missing,
    not UTF-8, has a duplicate token or lacks one of ``required``."""
    if not os.path.isfile(vocab_file):
        raise UserError(f"{vocab_file}: vocabulary file not found")
    vocab: dict[str, int] = {}
    try:
        with open(vocab_file, encoding="utf-8") as f:
            for index, line in enumerate(f):
                token = line.rstrip("\n")
                if token in vocab:
                    raise UserError(
                        f"{vocab_file}:{index + 1}: duplicate token {token!r} (first at line {vocab[token] + 1})"
                    )
                vocab[token] = index
    except UnicodeDecodeError as e:
        raise UserError(f"{vocab_file}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
    if not vocab:
        raise UserError(f"{vocab_file}: empty vocabulary")
    missing = [t for t in required if t not in vocab]
    if missing:
        raise UserError(f"{vocab_file}: vocabulary lacks the special token(s) {', '.join(missing)}")
    return vocab


class ErnieTokenizer:
    """ERNIE tokenizer over a BERT-style vocab.txt (see the module docstring for the pipeline).

    Args:
        vocab_file: path of vocab.txt; it must contain the five special tokens.
        do_lower_case: lower-case and strip accents (ERNIE 1.0 is uncased).
        unk_token, sep_token, pad_token, cls_token, mask_token: the special tokens' spelling.
    """

    def __init__(
        self,
        vocab_file: str,
        do_lower_case: bool = True,
        unk_token: str = "[UNK]",
        sep_token: str = "[SEP]",
        pad_token: str = "[PAD]",
        cls_token: str = "[CLS]",
        mask_token: str = "[MASK]",
    ):
        self.vocab_file = vocab_file
        self.do_lower_case = do_lower_case
        self.pad_token, self.cls_token, self.sep_token = pad_token, cls_token, sep_token
        self.mask_token, self.unk_token = mask_token, unk_token
        self.vocab = load_vocab(vocab_file, required=self.all_special_tokens)
        self.ids_to_tokens = list(self.vocab)
        self.basic_tokenizer = BasicTokenizer(do_lower_case)
        self.wordpiece_tokenizer = WordpieceTokenizer(self.vocab, unk_token)
        self.unk_token_id = self.vocab[unk_token]
        self.pad_token_id = self.vocab[pad_token]
        self.cls_token_id = self.vocab[cls_token]
        self.sep_token_id = self.vocab[sep_token]
        self.mask_token_id = self.vocab[mask_token]
        self._special_ids = {t: self.vocab[t] for t in self.all_special_tokens}
        self._special_split = re.compile("(" + "|".join(map(re.escape, self.all_special_tokens)) + ")")
        self._specials_bracketed = all("[" in t for t in self.all_special_tokens)
        self._word_ids: dict[str, tuple[int, ...]] = {}  # basic token -> WordPiece ids
        self._whole_word_ids: dict[str, tuple[int, ...]] = {}  # segmented word -> encode_words ids
        # CJK char -> id of its "##char" entry (its plain id when the vocab has no ## form): non-first chars of a word.
        self._cjk_continuation = {
            t: self.vocab.get("##" + t, i) for t, i in self.vocab.items() if len(t) == 1 and is_cjk_char(t)
        }

    # ----------------------------------------------------------------------------------------------- loading/saving
    @classmethod
    def from_pretrained(cls, directory: str, **kwargs) -> ErnieTokenizer:
        """Load ``directory/vocab.txt`` (+ ``tokenizer_config.json`` if present); ``kwargs`` override the config.

        A built-in model name that is not a directory (``ernie-1.0-base-zh``, ``ernie-3.0-medium-zh`` ...,
        :data:`ernie.hub.MODELS`) loads its vocabulary as PaddleNLP does: from PaddleNLP's cache, else downloaded
        into it (:func:`ernie.hub.model_file`), with PaddleNLP's init configuration (``do_lower_case``)."""
        directory = str(directory)
        resolved = resolve_dir(directory)
        spec = hub.model_spec(directory)
        if resolved is None and spec is not None:
            vocab_file = hub.model_file(directory, "vocab")
            return cls(vocab_file, **{**spec.tokenizer, **kwargs})
        if resolved is None:
            raise UserError(
                f"{directory}: tokenizer directory not found (expected {VOCAB_FILE} and {CONFIG_FILE}) and not a "
                f"known model name (known: {', '.join(hub.known_models())})"
            )
        config_path = os.path.join(resolved, CONFIG_FILE)
        config = {}
        if os.path.isfile(config_path):
            try:
                with open(config_path, encoding="utf-8") as f:
                    config = json.load(f)
            except (ValueError, UnicodeDecodeError) as e:
                raise UserError(f"{config_path}: not a valid JSON file ({e})") from None
            if not isinstance(config, dict):
                raise UserError(f"{config_path}: expected a JSON object")
        known = {"do_lower_case", *SPECIAL_TOKEN_NAMES}
        # HF may write a special token as an AddedToken dict {"content": "[UNK]", ...}
        init = {
            k: (v["content"] if isinstance(v, dict) and "content" in v else v) for k, v in config.items() if k in known
        }
        init.update(kwargs)
        return cls(os.path.join(resolved, VOCAB_FILE), **init)

    def save_pretrained(self, directory: str) -> None:
        """Write vocab.txt, tokenizer_config.json and special_tokens_map.json (PaddleNLP's layout), each atomically."""
        os.makedirs(directory, exist_ok=True)
        special = {
            name: getattr(self, name) for name in ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
        }
        write_tokenizer_files(directory, self.ids_to_tokens, self.do_lower_case, special)

    # ------------------------------------------------------------------------------------------------ vocabulary
    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def __len__(self) -> int:
        return len(self.vocab)

    @property
    def all_special_tokens(self) -> list[str]:
        return [self.pad_token, self.cls_token, self.sep_token, self.mask_token, self.unk_token]

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]):
        if isinstance(tokens, str):
            return self.vocab.get(tokens, self.unk_token_id)
        get, unk = self.vocab.get, self.unk_token_id
        return [get(t, unk) for t in tokens]

    def convert_ids_to_tokens(self, ids: int | Sequence[int]):
        if isinstance(ids, (int, np.integer)):
            return self.ids_to_tokens[int(ids)]
        itos = self.ids_to_tokens
        return [itos[int(i)] for i in ids]

    # ------------------------------------------------------------------------------------------------- tokenizing
    def _split_special(self, text: str) -> list[str]:
        """Split off special tokens written in the text (kept whole, surrounding whitespace dropped)."""
        return [p for p in self._special_split.split(text) if p]

    def _piece_ids(self, token: str) -> tuple[int, ...]:
        """WordPiece ids of one basic token, cached."""
        ids = self._word_ids.get(token)
        if ids is None:
            if len(self._word_ids) >= _MAX_CACHE:
                self._word_ids.clear()
            ids = tuple(
                self.vocab[p] if p in self.vocab else self.unk_token_id
                for p in self.wordpiece_tokenizer.tokenize(token)
            )
            self._word_ids[token] = ids
        return ids

    def tokenize(self, text: str) -> list[str]:
        """Text -> WordPiece tokens, e.g. ``"哈尔滨 Unaffable"`` -> ``["哈", "尔", "滨", "una", "##ffa", "##ble"]``."""
        itos = self.ids_to_tokens
        return [itos[i] for i in self._text_to_ids(text)]

    def _text_to_ids(self, text: str) -> list[int]:
        out: list[int] = []
        # Special tokens are kept whole (all default ones contain "[", so plain text skips the split).
        parts = self._split_special(text) if "[" in text or not self._specials_bracketed else (text,)
        for part in parts:
            special_id = self._special_ids.get(part)
            if special_id is not None:
                out.append(special_id)
                continue
            for token in self.basic_tokenizer.tokenize(part):
                ids = self._word_ids.get(token)
                out.extend(ids if ids is not None else self._piece_ids(token))
        return out

    def encode_words(self, words: Sequence[str]) -> list[int]:
        """Segmented words -> ids with word boundaries kept (no [CLS]/[SEP]).

        Each word is tokenized like text; every token after the first that is a single CJK char is replaced by its
        ``##char`` entry when the vocab has one: ``["哈尔滨", "是", "A股"]`` -> ids of ``哈 ##尔 ##滨 是 a ##股``.
        Results are cached per word; pure-CJK words skip normalisation.
        """
        cache = self._whole_word_ids
        out: list[int] = []
        extend = out.extend
        for word in words:
            ids = cache.get(word)
            if ids is None:
                ids = self._encode_word(word)
            extend(ids)
        return out

    def _encode_word(self, word: str) -> tuple[int, ...]:
        if len(self._whole_word_ids) >= _MAX_CACHE:
            self._whole_word_ids.clear()
        unk, cont = self.unk_token_id, self._cjk_continuation
        if _PURE_CJK_WORD.fullmatch(word):
            first = cont.get(word[0])
            ids = (self.vocab[word[0]] if first is not None else unk, *(cont.get(c, unk) for c in word[1:]))
        else:
            pieces = self._text_to_ids(word)
            tokens = self.convert_ids_to_tokens(pieces)
            for k in range(1, len(pieces)):
                if tokens[k] in cont:
                    pieces[k] = cont[tokens[k]]
            ids = tuple(pieces)
        self._whole_word_ids[word] = ids
        return ids

    @functools.cached_property
    def _restore_map(self) -> np.ndarray:
        table = np.arange(len(self.vocab), dtype=np.int32)
        for token, i in self.vocab.items():
            if len(token) == 3 and token.startswith("##") and token[2] in self._cjk_continuation:
                table[i] = self.vocab[token[2]]
        return table

    def wwm_restore_map(self) -> np.ndarray:
        """int32 [vocab_size]: the id of ``##X`` -> the id of ``X`` for each CJK char X in the vocab, identity
        elsewhere (English ``##`` pieces stay). ``restore[ids]`` turns whole-word ids into the model's inputs."""
        return self._restore_map

    @functools.cached_property
    def _word_start_table(self) -> np.ndarray:
        return np.array([not t.startswith("##") for t in self.ids_to_tokens], dtype=bool)

    def is_word_start(self, ids) -> np.ndarray:
        """bool array shaped like ``ids``: False for ``##`` pieces (continuations of the previous word)."""
        return self._word_start_table[np.asarray(ids, dtype=np.int64)]

    # -------------------------------------------------------------------------------------------------- decoding
    def convert_tokens_to_string(self, tokens: Sequence[str]) -> str:
        return " ".join(tokens).replace(" ##", "").strip()

    def decode(
        self, ids: Sequence[int], skip_special_tokens: bool = False, clean_up_tokenization_spaces: bool = True
    ) -> str:
        """Ids -> text, ``##`` pieces glued to the previous token (CJK chars stay space-separated, as PaddleNLP)."""
        tokens = self.convert_ids_to_tokens([int(i) for i in ids])
        if skip_special_tokens:
            special = set(self.all_special_tokens)
            tokens = [t for t in tokens if t not in special]
        text = self.convert_tokens_to_string(tokens)
        if clean_up_tokenization_spaces:
            for before, after in (
                (" .", "."),
                (" ?", "?"),
                (" !", "!"),
                (" ,", ","),
                (" ' ", "'"),
                (" n't", "n't"),
                (" 'm", "'m"),
                (" 's", "'s"),
                (" 've", "'ve"),
                (" 're", "'re"),
            ):
                text = text.replace(before, after)
        return text

    # -------------------------------------------------------------------------------------------------- encoding
    def build_inputs_with_special_tokens(self, ids_a: list[int], ids_b: list[int] | None = None) -> list[int]:
        """``[CLS] A [SEP]`` or ``[CLS] A [SEP] B [SEP]``."""
        if ids_b is None:
            return [self.cls_token_id, *ids_a, self.sep_token_id]
        return [self.cls_token_id, *ids_a, self.sep_token_id, *ids_b, self.sep_token_id]

    @staticmethod
    def _truncate(ids_a: list[int], ids_b: list[int] | None, max_length: int, strategy: str):
        """Drop tokens from the right until ``[CLS] A [SEP] (B [SEP])`` fits ``max_length`` (PaddleNLP's rules:
        ``longest_first`` removes one token at a time from the longer sequence, from B on ties)."""
        n_special = 2 if ids_b is None else 3
        excess = len(ids_a) + len(ids_b or ()) + n_special - max_length
        if excess <= 0:
            return ids_a, ids_b
        if strategy == "longest_first" and ids_b is not None:
            la, lb = len(ids_a), len(ids_b)
            for _ in range(excess):
                if la > lb:
                    la -= 1
                else:
                    lb -= 1
            return ids_a[:la], ids_b[:lb]
        if strategy in ("longest_first", "only_first"):
            if len(ids_a) <= excess:
                raise ValueError(f"cannot truncate the first sequence ({len(ids_a)} tokens) by {excess}")
            return ids_a[:-excess], ids_b
        if strategy == "only_second":
            if ids_b is None or len(ids_b) <= excess:
                raise ValueError(f"cannot truncate the second sequence by {excess} tokens")
            return ids_a, ids_b[:-excess]
        raise ValueError(f"unknown truncation strategy {strategy!r}")

    def _encode_one(self, text: str, text_pair: str | None, max_length: int | None, truncation) -> dict:
        ids_a = self._text_to_ids(text)
        ids_b = None if text_pair is None else self._text_to_ids(text_pair)
        if max_length is not None and truncation not in (False, "do_not_truncate"):
            strategy = "longest_first" if truncation in (True, None) else truncation
            ids_a, ids_b = self._truncate(ids_a, ids_b, max_length, strategy)
        input_ids = self.build_inputs_with_special_tokens(ids_a, ids_b)
        token_type_ids = [0] * (len(ids_a) + 2) + ([1] * (len(ids_b) + 1) if ids_b is not None else [])
        return {"input_ids": input_ids, "token_type_ids": token_type_ids}

    def _pad(self, encoded: dict, length: int) -> None:
        n = length - len(encoded["input_ids"])
        if n > 0:
            encoded["input_ids"] = encoded["input_ids"] + [self.pad_token_id] * n
            encoded["token_type_ids"] = encoded["token_type_ids"] + [0] * n
            if "attention_mask" in encoded:
                encoded["attention_mask"] = encoded["attention_mask"] + [0] * n

    def batch_encode(
        self,
        batch_text_or_text_pairs: Sequence[str | tuple[str, str]],
        max_length: int | None = None,
        padding: bool | str = False,
        truncation: bool | str = False,
        return_attention_mask: bool = False,
        return_tensors: str | None = None,
    ) -> dict:
        """Encode texts or ``(text, text_pair)`` tuples; returns a dict of lists (or arrays with ``return_tensors``
        ``"np"`` / ``"pd"``). ``padding``: ``"max_length"`` pads to ``max_length``, ``True``/``"longest"`` to the
        batch's longest. A ``max_length`` without padding or truncation truncates (``longest_first``), as PaddleNLP.
        """
        if max_length is not None and padding is False and truncation is False:
            truncation = "longest_first"
        rows = []
        for item in batch_text_or_text_pairs:
            text, pair = (item, None) if isinstance(item, str) else item
            row = self._encode_one(text, pair, max_length, truncation)
            if return_attention_mask:
                row["attention_mask"] = [1] * len(row["input_ids"])
            rows.append(row)
        if padding in (True, "longest", "max_length") and rows:
            length = max(len(r["input_ids"]) for r in rows)
            if padding == "max_length" and max_length is not None:
                length = max_length
            for row in rows:
                self._pad(row, length)
        batch = {key: [row[key] for row in rows] for key in (rows[0] if rows else ("input_ids", "token_type_ids"))}
        return self._as_tensors(batch, return_tensors)

    def __call__(
        self,
        text: str | Sequence[str],
        text_pair: str | Sequence[str] | None = None,
        max_length: int | None = None,
        padding: bool | str = False,
        truncation: bool | str = False,
        return_attention_mask: bool = False,
        return_tensors: str | None = None,
    ) -> dict:
        """Encode one text (or pair) into ``input_ids`` and ``token_type_ids`` (+ ``attention_mask``); lists of texts
        go to :meth:`batch_encode`. With ``return_tensors`` a single text gets a batch axis of 1."""
        if not isinstance(text, str):
            items = list(text) if text_pair is None else list(zip(text, text_pair))
            return self.batch_encode(items, max_length, padding, truncation, return_attention_mask, return_tensors)
        item = text if text_pair is None else (text, cast(str, text_pair))  # one text: text_pair is one text too
        batch = self.batch_encode([item], max_length, padding, truncation, return_attention_mask)
        single = {key: value[0] for key, value in batch.items()}
        if return_tensors is None:
            return single
        return self._as_tensors({key: [value] for key, value in single.items()}, return_tensors)

    @staticmethod
    def _as_tensors(batch: dict, return_tensors: str | None) -> dict:
        if return_tensors is None:
            return batch
        if return_tensors not in ("np", "pd"):
            raise ValueError(f"return_tensors must be None, 'np' or 'pd', not {return_tensors!r}")
        lengths = {len(row) for rows in batch.values() for row in rows}
        if len(lengths) > 1:
            raise ValueError("sequences of different lengths: pass padding=True to return tensors")
        arrays = {key: np.asarray(rows, dtype=np.int64) for key, rows in batch.items()}
        if return_tensors == "pd":
            import paddle

            return {key: paddle.to_tensor(a) for key, a in arrays.items()}
        return arrays


def write_tokenizer_files(
    directory: str,
    tokens: Sequence[str],
    do_lower_case: bool,
    special: dict[str, str],
    extra_config: dict | None = None,
) -> None:
    """vocab.txt + tokenizer_config.json + special_tokens_map.json in ``directory`` (each written atomically; the
    vocab last, so a complete vocab.txt implies the configs beside it are complete). ``extra_config`` adds to (or
    replaces keys of) tokenizer_config.json, e.g. ``tokenizer_class`` for HF transformers."""
    config = {"do_lower_case": do_lower_case, **special, "tokenizer_class": "ErnieTokenizer", **(extra_config or {})}
    with atomic_write(os.path.join(directory, SPECIAL_TOKENS_FILE), "w") as f:
        json.dump(special, f, ensure_ascii=False, indent=2)
    with atomic_write(os.path.join(directory, CONFIG_FILE), "w") as f:
        json.dump(config, f, ensure_ascii=False, indent=2)
    with atomic_write(os.path.join(directory, VOCAB_FILE), "w") as f:
        f.write("".join(t + "\n" for t in tokens))
