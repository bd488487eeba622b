"""Token files of the pretraining corpus: writers and an mmap reader for both of PaddleNLP's formats.

A corpus is a list of documents, a document a list of sentences, a sentence a 1-D array of token ids. Two on-disk
layouts hold it; both are read by PaddleNLP 2.8.1 (``paddlenlp.data.indexed_dataset``) and written by it:

``npy`` (PaddleNLP ernie-1.0's ``create_pretraining_data.py``, the default here)
    ``{P}_ids.npy``  every token id of the corpus, 1-D, uint16 (vocab <= 65536) or int32;
    ``{P}_idx.npz``  ``lens`` int32 [n_sentences] tokens per sentence, ``docs`` int64 [n_docs + 1] the first
                     sentence of every document, ``docs[0] == 0``, ``docs[-1] == n_sentences``.

``mmap`` (Megatron-LM's ``MMapIndexedDataset``)
    ``{P}.bin``  every token id, raw little-endian;
    ``{P}.idx``  ``b"MMIDIDX\\x00\\x00"``, version ``<Q`` 1, dtype code ``<B``, ``<Q`` n_sentences, ``<Q``
                 n_docs + 1, then sizes int32 [n_sentences], byte pointers int64 [n_sentences], doc_idx int64
                 [n_docs + 1].

Unit markers (optional, either layout): ``{P}_units.npy``, uint8 [n_tokens], one marker byte per token in token
order (bit flags of :mod:`data_tools.lexical_units`: word / phrase / entity starts). PaddleNLP ignores the file;
the two main files are the same with or without it.

Writers (:func:`make_builder`) stream tokens to hidden temporary files and rename them into place only in
:meth:`finalize`, index file last, so a crash never leaves a final-named half file. :class:`IndexedDataset`
opens either layout without reading the token file (``np.load(mmap_mode="r")`` / ``np.memmap``), checks that
index and tokens agree, and hands out sentences and documents as read-only views.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
import tempfile
import zipfile
from array import array
from collections.abc import Iterable, Sequence
from typing import BinaryIO

import numpy as np

from ernie.tokenizer import VOCAB_FILE
from ernie.utils import UserError, check_output_path, fsync_dir, output_error, remove_stale_temporaries
from ernie.utils.lock import lock_output

NPY, MMAP = "npy", "mmap"
IMPLS = (NPY, MMAP)

_MMAP_MAGIC = b"MMIDIDX\x00\x00"
_MMAP_VERSION = 1
# Megatron / fairseq dtype codes, as written in the .idx header.
_DTYPE_CODES = {
    1: np.uint8,
    2: np.int8,
    3: np.int16,
    4: np.int32,
    5: np.int64,
    6: np.float64,
    7: np.float32,
    8: np.uint16,
    9: np.uint32,
    10: np.uint64,
}
_CODE_OF_DTYPE = {np.dtype(t): c for c, t in _DTYPE_CODES.items()}
_NPY_HEADER_BYTES = 128  # fixed-size .npy header, rewritten with the final shape in finalize()
_COPY_CHUNK = 1 << 24  # elements copied at a time when merging


def best_fitting_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id of a ``vocab_size`` vocabulary fits in it, else int32."""
    return np.dtype(np.uint16 if vocab_size <= 65536 else np.int32)


def npy_paths(prefix: str) -> tuple[str, str]:
    """(token file, index file) of the npy layout."""
    return prefix + "_ids.npy", prefix + "_idx.npz"


def mmap_paths(prefix: str) -> tuple[str, str]:
    """(token file, index file) of the mmap layout."""
    return prefix + ".bin", prefix + ".idx"


def units_path(prefix: str) -> str:
    """The optional unit-marker file of a corpus (either layout)."""
    return prefix + "_units.npy"


def meta_path(prefix: str) -> str:
    """The optional metadata sidecar of a corpus (either layout): ``{"vocab_fingerprint": ..., "vocab_size": N}``."""
    return prefix + "_meta.json"


def _vocab_tokens(tokenizer_or_vocab_file) -> list[str]:
    vocab = getattr(tokenizer_or_vocab_file, "vocab", None)
    if isinstance(vocab, dict):
        tokens = [t for t, _ in sorted(vocab.items(), key=lambda item: item[1])]
    else:
        path = str(tokenizer_or_vocab_file)
        if os.path.isdir(path):
            path = os.path.join(path, VOCAB_FILE)
        try:
            with open(path, encoding="utf-8") as f:
                tokens = [line.rstrip("\r\n") for line in f]
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"{path}: cannot read the vocabulary ({e})") from None
        while tokens and not tokens[-1]:
            tokens.pop()
    return tokens


def vocab_fingerprint(tokenizer_or_vocab_file, size: int | None = None) -> str:
    """The fingerprint of a vocabulary: ``sha256:`` + 16 hex digits of its tokens in id order (of its first ``size``
    tokens when given). Takes a tokenizer (anything with a ``vocab`` dict token -> id), a vocab.txt, or a folder
    holding one. Two vocabularies give the same fingerprint iff every id means the same token."""
    tokens = _vocab_tokens(tokenizer_or_vocab_file)
    if size is not None:
        tokens = tokens[:size]
    return "sha256:" + hashlib.sha256("\n".join(tokens).encode("utf-8")).hexdigest()[:16]


def vocab_size_of(tokenizer_or_vocab_file) -> int:
    return len(_vocab_tokens(tokenizer_or_vocab_file))


def read_vocab_fingerprint(prefix: str) -> str | None:
    """The fingerprint of the vocabulary the corpus at ``prefix`` was built with (:func:`vocab_fingerprint`), or None
    for a corpus that records none (built by an older version, by PaddleNLP, or without a vocabulary)."""
    return _read_meta(prefix).get("vocab_fingerprint")


def _read_meta(prefix: str) -> dict:
    path = meta_path(prefix)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable corpus metadata file ({e})") from None
    if not isinstance(meta, dict):
        raise UserError(f"{path}: not a corpus metadata file (expected a JSON object)")
    value, size = meta.get("vocab_fingerprint"), meta.get("vocab_size")
    if value is not None and not isinstance(value, str):
        raise UserError(f"{path}: vocab_fingerprint must be a string, found {value!r}")
    if size is not None and (not isinstance(size, int) or size < 1):
        raise UserError(f"{path}: vocab_size must be a positive integer, found {size!r}")
    return meta


def check_same_vocab(prefixes: Sequence[str], flag: str = "--input") -> str | None:
    """``UserError`` naming two corpora built with different vocabularies; returns their common fingerprint (None
    when some corpus records none: those cannot be checked)."""
    prints = [(p, read_vocab_fingerprint(p)) for p in prefixes]
    known = [(p, f) for p, f in prints if f is not None]
    for p, f in known[1:]:
        if f != known[0][1]:
            raise UserError(
                f"{flag}: {known[0][0]} and {p} were built with different vocabularies ({known[0][1]} vs {f}); "
                "token ids of one mean other tokens in the other: rebuild them with one vocabulary"
            )
    return known[0][1] if known and len(known) == len(prints) else None


def check_vocab(prefix: str, tokenizer_or_vocab_file, flag: str = "--tokenizer_name_or_path") -> None:
    """``UserError`` when the corpus at ``prefix`` records a vocabulary other than ``tokenizer_or_vocab_file``'s
    (nothing to check for a corpus that records none). A vocabulary that extends the corpus's (the same tokens
    first, more appended) passes: every id of the corpus means the same token in it."""
    meta = _read_meta(prefix)
    recorded = meta.get("vocab_fingerprint")
    if recorded is None:
        return
    current = vocab_fingerprint(tokenizer_or_vocab_file, meta.get("vocab_size"))
    if recorded != current:
        raise UserError(
            f"{flag}: the corpus {prefix} was built with another vocabulary ({recorded}, {meta_path(prefix)}) "
            f"than this one ({current}); its token ids would mean other tokens"
        )


def output_paths(prefix: str, impl: str) -> tuple[str, str]:
    if impl not in IMPLS:
        raise UserError(f"--data_impl: unknown format {impl!r}; choose one of {', '.join(IMPLS)}")
    return npy_paths(prefix) if impl == NPY else mmap_paths(prefix)


def detect_impl(prefix: str) -> str | None:
    """The format whose two files exist for ``prefix`` (npy first, as PaddleNLP's ``make_dataset``), else None."""
    for impl in IMPLS:
        if all(os.path.isfile(p) for p in output_paths(prefix, impl)):
            return impl
    return None


def exists(prefix: str) -> bool:
    return detect_impl(prefix) is not None


# ----------------------------------------------------------------------------------------------------- writers


def _npy_header(dtype: np.dtype, length: int) -> bytes:
    """A version-1.0 .npy header of exactly ``_NPY_HEADER_BYTES`` bytes for a 1-D array."""
    body = repr({"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (length,)})
    pad = _NPY_HEADER_BYTES - 10 - len(body) - 1
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", _NPY_HEADER_BYTES - 10) + (body + " " * pad + "\n").encode()


class _TempFile:
    """A hidden temporary file next to ``final`` that becomes ``final`` on :meth:`commit`."""

    def __init__(self, final: str):
        self.final = final
        directory = os.path.dirname(os.path.abspath(final)) or "."
        try:
            os.makedirs(directory, exist_ok=True)
            fd, self.path = tempfile.mkstemp(prefix=f".{os.path.basename(final)}.", suffix=".tmp", dir=directory)
        except OSError as e:
            raise output_error(final, e) from None
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp's 0600 would hide the corpus from other users
        self.file: BinaryIO = os.fdopen(fd, "w+b")

    def write(self, data: bytes) -> None:
        try:
            self.file.write(data)
        except OSError as e:  # a full disk, a file-size limit: one line naming the output
            raise output_error(self.final, e) from None

    def close(self) -> None:
        if not self.file.closed:
            try:
                self.file.flush()
                os.fsync(self.file.fileno())
                self.file.close()
            except OSError as e:
                raise output_error(self.final, e) from None

    def commit(self) -> None:
        self.close()
        try:
            os.replace(self.path, self.final)
        except OSError as e:
            raise output_error(self.final, e) from None

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


class IndexedDatasetBuilder:
    """Streams sentences to a temporary token file; :meth:`finalize` writes the index and renames both.

    Use as ``b = make_builder(prefix, "npy", np.uint16)``, then per document ``b.add_item(ids)`` for each sentence
    (or ``b.add_doc(flat_ids, lens)``) and ``b.end_document()``; finally ``b.finalize()``. Any exception inside a
    ``with`` block, or :meth:`abort`, removes the temporary files and leaves existing outputs untouched.
    """

    impl: str = ""

    def __init__(
        self,
        prefix: str,
        dtype=np.uint16,
        overwrite: bool = False,
        units: bool = False,
        vocab_fingerprint: str | None = None,
        flag: str = "--output_prefix",
        vocab_size: int | None = None,
    ):
        self.prefix = prefix
        self.dtype = np.dtype(dtype)
        self.vocab_fingerprint, self.vocab_size = vocab_fingerprint, vocab_size
        self._done = True  # nothing to abort until the temporary files exist
        self._lock: contextlib.ExitStack | None = None
        if self.dtype not in _CODE_OF_DTYPE:
            raise UserError(f"unsupported token dtype {self.dtype}")
        self.data_path, self.index_path = output_paths(prefix, self.impl)
        self.units_path = units_path(prefix)
        self.meta_path = meta_path(prefix)
        finals = (self.data_path, self.index_path, self.units_path, self.meta_path)
        for path in finals:
            check_output_path(path, overwrite)
        # every writer of this prefix (create_pretraining_data, merge) holds its lock from here to finalize / abort
        lock = contextlib.ExitStack()
        lock.enter_context(lock_output(prefix, flag))
        try:
            for path in finals:  # again inside the lock: another run may have written them meanwhile
                check_output_path(path, overwrite)
            remove_stale_temporaries(*finals)  # a killed run's leftovers (nobody else writes them now)
            self._data = _TempFile(self.data_path)
            self._units = None
            try:
                self._data.write(self._data_header(0))
                if units:
                    self._units = _TempFile(self.units_path)
                    self._units.write(_npy_header(np.dtype(np.uint8), 0))
            except BaseException:
                self._data.discard()
                if self._units is not None:
                    self._units.discard()
                raise
        except BaseException:
            lock.close()
            raise
        self._lock = lock
        self._sizes = array("i")  # int32 tokens per sentence
        self._doc_idx = array("q", [0])  # int64 first sentence of each document, then the end
        self._num_tokens = 0
        self._done = False

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # -- format specifics
    def _data_header(self, num_tokens: int) -> bytes:
        return b""

    def _write_index(self, f: BinaryIO, sizes: np.ndarray, doc_idx: np.ndarray) -> None:
        raise NotImplementedError

    # -- building
    @property
    def has_units(self) -> bool:
        return self._units is not None

    def _write_units(self, units, num_tokens: int) -> None:
        if self._units is None:
            return
        if units is None:
            raise ValueError("this builder writes unit markers: give units= with the ids")
        units = np.asarray(units, dtype=np.uint8)
        if units.size != num_tokens:
            raise ValueError(f"{units.size} unit markers for {num_tokens} tokens")
        self._units.write(units.tobytes())

    def add_item(self, ids: Sequence[int] | np.ndarray, units=None) -> None:
        """Append one sentence (token ids, and their unit markers when the builder writes them)."""
        ids = np.asarray(ids, dtype=self.dtype)
        self._write_units(units, ids.size)
        self._data.write(ids.tobytes())
        self._sizes.append(ids.size)
        self._num_tokens += ids.size

    def add_doc(self, ids: np.ndarray, lens: Sequence[int], units=None) -> None:
        """Append a whole document at once: its sentences' ids concatenated, and their lengths."""
        self.add_documents(ids, lens, [len(lens)], units)

    def add_documents(self, ids: np.ndarray, lens: Sequence[int], sentences_per_doc: Sequence[int], units=None) -> None:
        """Append many documents at once: all their ids [T], sentence lengths [S] (summing to T) and sentence
        counts per document [D] (summing to S); ``units`` uint8 [T] when the builder writes unit markers."""
        ids = np.asarray(ids, dtype=self.dtype)
        sizes = np.asarray(lens, dtype=np.int32)
        counts = np.asarray(sentences_per_doc, dtype=np.int64)
        if int(sizes.sum()) != ids.size or int(counts.sum()) != sizes.size:
            raise ValueError(
                f"{ids.size} ids, sentence lengths summing to {int(sizes.sum())}, {sizes.size} sentences "
                f"and sentence counts summing to {int(counts.sum())} do not match"
            )
        base = len(self._sizes)
        self._write_units(units, ids.size)
        self._data.write(ids.tobytes())
        self._sizes.frombytes(sizes.tobytes())
        self._doc_idx.frombytes((base + np.cumsum(counts)).tobytes())
        self._num_tokens += ids.size

    def end_document(self) -> None:
        """Close the current document (documents are delimited by sentence counts, not by empty sentences)."""
        self._doc_idx.append(len(self._sizes))

    def merge_file_(self, other_prefix: str) -> None:
        """Append every document of the corpus at ``other_prefix`` (either format) after the ones built so far."""
        other = IndexedDataset(other_prefix)
        if self.vocab_fingerprint and other.vocab_fingerprint and other.vocab_fingerprint != self.vocab_fingerprint:
            raise UserError(
                f"{other_prefix}: built with another vocabulary ({other.vocab_fingerprint}) than the output's "
                f"({self.vocab_fingerprint})"
            )
        if not np.can_cast(other.dtype, self.dtype, casting="safe"):
            raise UserError(f"{other_prefix}: token dtype {other.dtype} does not fit the output's {self.dtype}")
        if self._units is not None and other.units is None:
            raise UserError(
                f"{other_prefix}: has no unit markers ({units_path(other_prefix)}) but the output keeps them"
            )
        base = len(self._sizes)
        tokens = other.tokens
        for start in range(0, tokens.size, _COPY_CHUNK):
            self._data.write(np.asarray(tokens[start : start + _COPY_CHUNK], dtype=self.dtype).tobytes())
            if self._units is not None:
                assert other.units is not None  # checked above
                self._units.write(np.asarray(other.units[start : start + _COPY_CHUNK]).tobytes())
        self._sizes.frombytes(np.ascontiguousarray(other.sizes, dtype=np.int32).tobytes())
        self._doc_idx.frombytes((np.asarray(other.doc_idx[1:], dtype=np.int64) + base).tobytes())
        self._num_tokens += tokens.size
        del other

    # -- completion
    @property
    def num_sentences(self) -> int:
        return len(self._sizes)

    @property
    def num_documents(self) -> int:
        return len(self._doc_idx) - 1

    @property
    def num_tokens(self) -> int:
        return self._num_tokens

    def finalize(self) -> None:
        """Write the index, then move token file and index into place (index last: its presence marks a whole
        corpus). An old index of the same name is removed first, so a crash never pairs new tokens with it; so are
        an old ``{P}_units.npy`` and ``{P}_meta.json``, replaced by this run's (when it writes them)."""
        if self._done:
            return
        index = _TempFile(self.index_path)
        meta = _TempFile(self.meta_path) if self.vocab_fingerprint else None
        try:
            header = self._data_header(self._num_tokens)
            if header:
                self._data.file.seek(0)
                self._data.write(header)
            sizes = np.frombuffer(self._sizes, dtype=np.int32)
            doc_idx = np.frombuffer(self._doc_idx, dtype=np.int64)
            try:
                self._write_index(index.file, sizes, doc_idx)
            except OSError as e:
                raise output_error(self.index_path, e) from None
            self._data.close()
            if self._units is not None:
                self._units.file.seek(0)
                self._units.write(_npy_header(np.dtype(np.uint8), self._num_tokens))
                self._units.close()
            if meta is not None:
                record = {"vocab_fingerprint": self.vocab_fingerprint, "vocab_size": self.vocab_size, "format": 1}
                meta.write((json.dumps(record) + "\n").encode())
                meta.close()
            index.close()
            for stale in (self.index_path, self.units_path, self.meta_path):
                try:  # never pair new tokens with an old index, old markers or an old vocabulary record
                    os.unlink(stale)
                except FileNotFoundError:
                    pass
                except OSError as e:
                    raise output_error(stale, e) from None
            self._data.commit()
            if self._units is not None:
                self._units.commit()
            if meta is not None:
                meta.commit()
            index.commit()
            fsync_dir(os.path.dirname(os.path.abspath(self.index_path)))
        except BaseException:
            index.discard()
            if meta is not None:
                meta.discard()
            self.abort()
            raise
        self._done = True
        self._release()

    def abort(self) -> None:
        """Drop the temporary files; final-named outputs are left as they were."""
        if not self._done:
            self._data.discard()
            if self._units is not None:
                self._units.discard()
            self._done = True
        self._release()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.abort()

    def __del__(self):
        with contextlib.suppress(Exception):
            self.abort()

    def summary(self) -> str:
        n_sent, n_doc, n_tok = self.num_sentences, self.num_documents, self.num_tokens
        return (
            f"{n_doc} documents, {n_sent} sentences, {n_tok} tokens "
            f"({n_tok / max(n_sent, 1):.2f} tokens/sentence, {n_tok / max(n_doc, 1):.2f} tokens/document)"
        )


class NpyDatasetBuilder(IndexedDatasetBuilder):
    """Writes ``{P}_ids.npy`` + ``{P}_idx.npz`` (``lens`` int32, ``docs`` int64), PaddleNLP ernie-1.0's layout."""

    impl = NPY

    def _data_header(self, num_tokens: int) -> bytes:
        return _npy_header(self.dtype, num_tokens)

    def _write_index(self, f: BinaryIO, sizes: np.ndarray, doc_idx: np.ndarray) -> None:
        np.savez(f, lens=sizes, docs=doc_idx)


class MMapDatasetBuilder(IndexedDatasetBuilder):
    """Writes ``{P}.bin`` + ``{P}.idx``, Megatron's / ``paddlenlp.data.indexed_dataset``'s mmap layout."""

    impl = MMAP

    def _write_index(self, f: BinaryIO, sizes: np.ndarray, doc_idx: np.ndarray) -> None:
        f.write(_MMAP_MAGIC)
        f.write(struct.pack("<Q", _MMAP_VERSION))
        f.write(struct.pack("<B", _CODE_OF_DTYPE[self.dtype]))
        f.write(struct.pack("<Q", len(sizes)))
        f.write(struct.pack("<Q", len(doc_idx)))
        f.write(sizes.astype("<i4").tobytes())
        pointers = np.zeros(len(sizes), dtype="<i8")
        np.cumsum(sizes[:-1], out=pointers[1:])
        f.write((pointers * self.dtype.itemsize).tobytes())
        f.write(doc_idx.astype("<i8").tobytes())


def make_builder(
    prefix: str,
    impl: str = NPY,
    dtype=np.uint16,
    overwrite: bool = False,
    units: bool = False,
    vocab_fingerprint: str | None = None,
    flag: str = "--output_prefix",
    vocab_size: int | None = None,
) -> IndexedDatasetBuilder:
    """A writer of ``prefix`` in format ``impl`` ("npy" | "mmap"), with ``{P}_units.npy`` when ``units`` and
    ``{P}_meta.json`` recording ``vocab_fingerprint`` (and ``vocab_size``) when given; refuses existing outputs
    unless ``overwrite``.
    Holds the prefix's output lock (:func:`ernie.utils.lock.lock_output`) until ``finalize`` / ``abort``."""
    output_paths(prefix, impl)  # validates impl
    cls = NpyDatasetBuilder if impl == NPY else MMapDatasetBuilder
    return cls(
        prefix, dtype, overwrite=overwrite, units=units, vocab_fingerprint=vocab_fingerprint, flag=flag,
        vocab_size=vocab_size,
    )  # fmt: skip


def merge(
    prefixes: Iterable[str], output_prefix: str, impl: str | None = None, overwrite: bool = False, dtype=None
) -> IndexedDatasetBuilder:
    """Concatenate the corpora at ``prefixes`` (in order) into ``output_prefix``; returns the finalized builder.

    ``impl`` defaults to the format of the first input, ``dtype`` to the widest input dtype. Unit markers are
    kept when every input has them (``builder.has_units`` says whether they were).
    """
    prefixes = list(prefixes)
    if not prefixes:
        raise UserError("--input_prefixes: no corpora to merge")
    inputs = [IndexedDataset(p) for p in prefixes]  # validates all inputs before writing anything
    fingerprint = check_same_vocab(prefixes)
    sizes = {_read_meta(p).get("vocab_size") for p in prefixes}
    impl = impl or inputs[0].impl
    dtype = np.dtype(dtype) if dtype is not None else np.result_type(*[d.dtype for d in inputs])
    units = all(d.units is not None for d in inputs)
    with make_builder(
        output_prefix, impl, dtype, overwrite=overwrite, units=units, vocab_fingerprint=fingerprint,
        vocab_size=sizes.pop() if fingerprint and len(sizes) == 1 else None,
    ) as builder:  # fmt: skip
        for prefix in prefixes:
            builder.merge_file_(prefix)
        builder.finalize()
    return builder


# ------------------------------------------------------------------------------------------------------ reader


def _memmap_npz_member(path: str, name: str) -> np.ndarray:
    """Array ``name`` of an uncompressed .npz, memory-mapped in place (np.load would read it whole); falls back to
    ``np.load`` for compressed archives."""
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        if name + ".npy" not in names:
            have = ", ".join(n[:-4] for n in names if n.endswith(".npy")) or "nothing"
            raise UserError(f"{path}: missing array {name!r} (it holds {have}; expected 'lens' and 'docs')")
        info = zf.getinfo(name + ".npy")
        stored = info.compress_type == zipfile.ZIP_STORED
    if not stored:
        with np.load(path) as npz:
            return npz[name]
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
        if local[:4] != b"PK\x03\x04":
            raise ValueError(f"bad zip local header for {name}")
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        f.seek(info.header_offset + 30 + name_len + extra_len)
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(f)
        offset = f.tell()
    if fortran or len(shape) != 1:
        raise ValueError(f"{name} is not a 1-D C-ordered array")
    if shape[0] == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)


class IndexedDataset:
    """Read-only view of a token corpus in either format, chosen by the files present for ``prefix``.

    Attributes:
        sizes:   int32 [n_sentences] tokens per sentence.
        doc_idx: int64 [n_docs + 1] first sentence of each document; ``doc_idx[-1] == n_sentences``.
        pointers: int64 [n_sentences + 1] token offset of each sentence in :attr:`tokens`.
        tokens:  [n_tokens] every token id (memory-mapped; uint16 or int32).

    ``ds[i]`` is sentence ``i`` (a view), ``ds[a:b]`` a list of them, ``ds.get(i, offset, length)`` part of one,
    ``ds.get_document(d)`` the sentence views of document ``d``. Opening maps the files and reads only the index
    (``validate=False`` also skips the O(n_sentences) consistency checks, e.g. when re-opened in a worker).
    """

    def __init__(self, prefix: str, validate: bool = True):
        self.prefix = prefix
        impl = detect_impl(prefix)
        if impl is None:
            raise UserError(self._missing_message(prefix))
        self.impl = impl
        if impl == NPY:
            self._open_npy()
        else:
            self._open_mmap()
        self.pointers = np.zeros(len(self.sizes) + 1, dtype=np.int64)
        np.cumsum(self.sizes, out=self.pointers[1:])
        self.units_path = units_path(prefix)
        self.units = self._open_units()
        self.vocab_fingerprint = read_vocab_fingerprint(prefix)  # None: the corpus records no vocabulary
        if validate:
            self._validate()

    @staticmethod
    def _missing_message(prefix: str) -> str:
        for impl in IMPLS:
            data, index = output_paths(prefix, impl)
            have = [os.path.isfile(p) for p in (data, index)]
            if any(have):
                missing = index if have[0] else data
                return f"{missing}: missing (the corpus at {prefix} is incomplete or still being written)"
        return (
            f"{prefix}: no token files: expected {prefix}_ids.npy + {prefix}_idx.npz (npy) "
            f"or {prefix}.bin + {prefix}.idx (mmap)"
        )

    def _open_npy(self) -> None:
        self.data_path, self.index_path = npy_paths(self.prefix)
        try:
            self.tokens = np.load(self.data_path, mmap_mode="r")
        except (ValueError, OSError, EOFError) as e:
            raise UserError(f"{self.data_path}: not a readable .npy token file ({e})") from None
        if self.tokens.ndim != 1:
            raise UserError(f"{self.data_path}: token array must be 1-D, found shape {self.tokens.shape}")
        try:
            self.sizes = _memmap_npz_member(self.index_path, "lens")
            self.doc_idx = _memmap_npz_member(self.index_path, "docs")
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
            raise UserError(f"{self.index_path}: not a readable .npz index ({e})") from None

    def _open_mmap(self) -> None:
        self.data_path, self.index_path = mmap_paths(self.prefix)
        header = struct.Struct("<9sQBQQ")
        try:
            with open(self.index_path, "rb") as f:
                raw = f.read(header.size)
            if len(raw) < header.size:
                raise ValueError("file is shorter than its header")
            magic, version, code, n_sent, n_docs = header.unpack(raw)
            if magic != _MMAP_MAGIC or version != _MMAP_VERSION:
                raise ValueError(f"magic {magic!r} version {version}, expected {_MMAP_MAGIC!r} version 1")
            if code not in _DTYPE_CODES:
                raise ValueError(f"unknown dtype code {code}")
            expected = header.size + 4 * n_sent + 8 * n_sent + 8 * n_docs
            actual = os.path.getsize(self.index_path)
            if actual != expected:
                raise ValueError(f"{actual} bytes, expected {expected} for {n_sent} sentences and {n_docs} doc marks")
            buf = np.memmap(self.index_path, dtype=np.uint8, mode="r")
        except (ValueError, OSError, struct.error) as e:
            raise UserError(f"{self.index_path}: not a valid mmap index ({e})") from None
        off = header.size
        self.sizes = np.frombuffer(buf, dtype="<i4", count=n_sent, offset=off)
        self._byte_pointers = np.frombuffer(buf, dtype="<i8", count=n_sent, offset=off + 4 * n_sent)
        self.doc_idx = np.frombuffer(buf, dtype="<i8", count=n_docs, offset=off + 12 * n_sent)
        dtype = np.dtype(_DTYPE_CODES[code])
        size = os.path.getsize(self.data_path)
        if size % dtype.itemsize:
            raise UserError(f"{self.data_path}: {size} bytes is not a whole number of {dtype} tokens")
        self.tokens = np.memmap(self.data_path, dtype=dtype, mode="r") if size else np.zeros(0, dtype=dtype)

    def _open_units(self) -> np.ndarray | None:
        """The memory-mapped unit markers, None when the corpus has none; checked against the token count."""
        if not os.path.isfile(self.units_path):
            return None
        try:
            units = np.load(self.units_path, mmap_mode="r")
        except (ValueError, OSError, EOFError) as e:
            raise UserError(f"{self.units_path}: not a readable .npy marker file ({e})") from None
        if units.dtype != np.uint8 or units.ndim != 1 or units.size != self.tokens.size:
            raise UserError(
                f"{self.units_path}: expected uint8 [{self.tokens.size}] markers (one per token of "
                f"{self.data_path}), found {units.dtype} {list(units.shape)}"
            )
        return units

    def _validate(self) -> None:
        sizes, docs = self.sizes, self.doc_idx
        where = self.index_path
        if len(sizes) and int(sizes.min()) < 0:
            raise UserError(f"{where}: negative sentence length at sentence {int(np.argmin(sizes))}")
        total = int(self.pointers[-1])
        if total != self.tokens.size:
            raise UserError(
                f"{where}: sentence lengths sum to {total} tokens but {self.data_path} holds {self.tokens.size}"
            )
        if len(docs) == 0 or int(docs[0]) != 0:
            raise UserError(f"{where}: document index must start at 0")
        if int(docs[-1]) != len(sizes):
            raise UserError(f"{where}: document index ends at {int(docs[-1])} but there are {len(sizes)} sentences")
        steps = np.diff(docs)
        if len(steps) and int(steps.min()) < 0:
            raise UserError(f"{where}: document index decreases at document {int(np.argmin(steps))}")
        if self.impl == MMAP and len(sizes):
            itemsize = self.tokens.dtype.itemsize
            if not np.array_equal(self._byte_pointers, self.pointers[:-1] * itemsize):
                raise UserError(f"{where}: sentence pointers disagree with sentence sizes")

    def check_token_ids(self, vocab_size: int, chunk: int = 1 << 26) -> None:
        """``UserError`` naming the token file, the first bad id and its document when an id is ``>= vocab_size``
        (a corpus built with another vocabulary). One vectorised pass over the memory map, ``chunk`` ids at a time
        (~0.1 s per 100M uint16 tokens once paged in)."""
        if self.tokens.dtype.kind == "u" and vocab_size > np.iinfo(self.tokens.dtype).max:
            return  # every id of this dtype fits
        tokens = self.tokens
        for lo in range(0, tokens.size, chunk):
            block = np.asarray(tokens[lo : lo + chunk])
            if int(block.max()) < vocab_size and (block.dtype.kind == "u" or int(block.min()) >= 0):
                continue
            bad = lo + int(np.flatnonzero((block >= vocab_size) | (block < 0))[0])
            count = sum(
                int(((tokens[i : i + chunk] >= vocab_size) | (tokens[i : i + chunk] < 0)).sum())
                for i in range(lo, tokens.size, chunk)
            )
            sentence = int(np.searchsorted(self.pointers, bad, side="right")) - 1
            document = int(np.searchsorted(self.doc_idx, sentence, side="right")) - 1
            raise UserError(
                f"{self.data_path}: token id {int(tokens[bad])} (document {document}, token {bad}; "
                f"{count} such ids in all) is outside the vocabulary of {vocab_size} tokens: the "
                "corpus was built with another vocabulary than --tokenizer_name_or_path"
            )

    # -- pickling (DataLoader workers re-open the files instead of copying arrays)
    def __getstate__(self):
        return self.prefix

    def __setstate__(self, prefix):
        type(self).__init__(self, prefix, validate=False)

    # -- access
    @property
    def dtype(self) -> np.dtype:
        return self.tokens.dtype

    @property
    def num_tokens(self) -> int:
        return int(self.tokens.size)

    @property
    def num_documents(self) -> int:
        return len(self.doc_idx) - 1

    def __len__(self) -> int:
        return len(self.sizes)

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            start, stop, step = idx.indices(len(self))
            if step != 1:
                raise ValueError("slices of an IndexedDataset must be contiguous")
            return [self.tokens[self.pointers[i] : self.pointers[i + 1]] for i in range(start, stop)]
        i = int(idx)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"sentence {idx} out of range for {len(self)} sentences")
        return self.tokens[self.pointers[i] : self.pointers[i + 1]]

    def get(self, idx: int, offset: int = 0, length: int | None = None) -> np.ndarray:
        """Tokens ``offset : offset + length`` of sentence ``idx`` (to its end when ``length`` is None)."""
        start, end = int(self.pointers[idx]), int(self.pointers[idx + 1])
        begin = start + offset
        stop = end if length is None else min(begin + length, end)
        return self.tokens[begin:stop]

    def get_document(self, doc: int) -> list[np.ndarray]:
        """The sentences of document ``doc``, each a view."""
        return self[int(self.doc_idx[doc]) : int(self.doc_idx[doc + 1])]

    def document_tokens(self, doc: int) -> np.ndarray:
        """All tokens of document ``doc`` as one view."""
        a, b = int(self.doc_idx[doc]), int(self.doc_idx[doc + 1])
        return self.tokens[self.pointers[a] : self.pointers[b]]

    def num_tokens_of(self, idx: int) -> int:
        return int(self.sizes[idx])

    @staticmethod
    def exists(prefix: str) -> bool:
        return exists(prefix)


__all__ = [
    "NPY",
    "MMAP",
    "IMPLS",
    "IndexedDataset",
    "IndexedDatasetBuilder",
    "NpyDatasetBuilder",
    "MMapDatasetBuilder",
    "make_builder",
    "merge",
    "best_fitting_dtype",
    "detect_impl",
    "exists",
    "output_paths",
    "npy_paths",
    "units_path",
    "meta_path",
    "mmap_paths",
    "vocab_fingerprint",
    "vocab_size_of",
    "read_vocab_fingerprint",
    "check_same_vocab",
    "check_vocab",
]
