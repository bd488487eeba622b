"""Baidu LAC's word segmentation model (``seg_model`` of the ``lac`` package) run on Paddle Inference 3.x.

LAC's own Python code imports ``paddle.fluid`` and cannot load on Paddle 3, but its shipped inference model can:
a character-level BiGRU-CRF that reads one LoD tensor of char ids ``[total_chars, 1]`` (int64, ``lod = [[0,
end_1, end_2, ...]]`` marks where each text ends) and returns one tag id per char: ``-B`` / ``-I`` / ``-E`` /
``-S`` (``conf/tag.dic``). A word starts at every ``B`` or ``S`` tag.

Input preparation follows LAC's reader: each char is first normalised through ``conf/q2b.dic`` (full-width ->
half-width, traditional -> simplified), then looked up in ``conf/word.dic`` (unknown -> the ``OOV`` id). Both
maps are folded into one code-point lookup table, so a whole batch becomes ids in a single numpy gather.

Speed: benchmarks/bench_segmentation.py (its figures: docs/results/bench_segmentation.md). Building the runner
selects MKL's AVX2 code path on non-Intel CPUs (``ensure_cpu_tuning``), several times faster than MKL's generic one
there. Texts are sorted by length, cut into chunks of at most ``max_chunk`` chars (preferably after punctuation; F1
is unchanged) and packed into LoD batches of about ``batch_chars`` chars (2k-8k chars: alike). Nearly all the time
is Paddle's ``fusion_gru`` op, which the IR pass ``fc_gru_fuse_pass`` builds with ``use_seq=True``: it runs the
recurrence one sequence at a time, so bigger batches only amortise per-run overhead (4k-8k chars best; 1k much
slower; 16k+ slower again, cache). Tried and slower: oneDNN (``enable_mkldnn``), no IR optimisation, deleting the
fusion pass (batched ``gru`` op), no memory optimisation.

Lexical analysis (:class:`LacLexicalModel`, the package's ``lac_model``: words + POS + PER/LOC/ORG/TIME) reads
pieces, not chars, as LAC's ``LacModel`` does:

1. ``fast_cut``: the text is cut by a max-score path over ``conf/small_seg.dic`` (95k words). LAC scores a dictionary
   piece by ``log(len(piece)) - log(total count)`` (its prefix tree stores the word *length*, not the count) and
   any other char by ``-log(total count)``; ties go to the longer piece; runs of single ASCII letters/digits are
   glued into one piece.
2. A piece found in ``conf/word.dic`` (58k chars and words) gets one id (through ``q2b.dic`` on the whole piece);
   any other piece goes char by char (each q2b-normalised, unknown -> ``OOV``). The LoD counts pieces.
3. The model returns one tag id per piece; the rest of a piece continues its tag (``X-I``). ``conf/tag.dic`` has
   57 lines for 49 ids: the later lines reuse ids 16-21 and 34-35, so (as in LAC, last line wins) the labels are
   ``PER``/``LOC``/``ORG``/``TIME``, never ``nr``/``ns``/``nt``/``t``. A word starts at a ``-B`` tag (or the
   first char); its label is the type of its last char's tag (``O`` -> ``""``, as LAC).
"""

from __future__ import annotations

import importlib.util
import itertools
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ernie.utils import UserError
from ernie.utils.cpu_tuning import ensure_cpu_tuning

LAC_MODEL_ENV = "ERNIE_LAC_MODEL_DIR"
INSTALL_HINT = (
    "pip install --no-build-isolation --no-deps lac==2.1.2, or pass lac_model_dir= / set "
    f"{LAC_MODEL_ENV} to a LAC seg_model directory (the one holding model/ and conf/)"
)
_NUM_CODEPOINTS = 0x110000
# Where a too-long text is preferably cut: right after one of these.
_CUT_AFTER = re.compile(r"[。！？；，、!?;,\s]")


LAC_LEXICAL_MODEL_ENV = "ERNIE_LAC_LEXICAL_MODEL_DIR"
_MODEL_ENV = {"seg_model": LAC_MODEL_ENV, "lac_model": LAC_LEXICAL_MODEL_ENV}
_MODEL_FILES = {
    "seg_model": ("model", "conf/word.dic", "conf/q2b.dic", "conf/tag.dic"),
    "lac_model": ("model", "conf/word.dic", "conf/q2b.dic", "conf/tag.dic", "conf/small_seg.dic"),
}


def find_lac_model_dir(lac_model_dir: str | None = None, which: str = "seg_model") -> str:
    """The LAC ``which`` model directory (``seg_model`` or ``lac_model``): the argument, else the environment
    variable (``$ERNIE_LAC_MODEL_DIR`` / ``$ERNIE_LAC_LEXICAL_MODEL_DIR``), else the installed ``LAC`` package's
    one (found without importing LAC, which fails on Paddle 3)."""
    path = lac_model_dir or os.environ.get(_MODEL_ENV[which])
    if path is None:
        spec = importlib.util.find_spec("LAC")
        if spec is None or not spec.submodule_search_locations:
            raise UserError(f"the LAC {which} is not installed: {INSTALL_HINT}")
        path = os.path.join(list(spec.submodule_search_locations)[0], which)
    for rel in _MODEL_FILES[which]:
        if not os.path.exists(os.path.join(path, rel)):
            raise UserError(f"LAC model directory {path} lacks {rel}: {INSTALL_HINT}")
    return path


def _read_tsv(path: str) -> list[tuple[str, str]]:
    """``key\\tvalue`` lines (LAC's dictionaries); lines without exactly one tab are skipped, as LAC does."""
    with open(path, encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t") for line in f]
    return [(r[0], r[1]) for r in rows if len(r) == 2]


@dataclass
class LacVocab:
    """Char -> id lookup over all code points (q2b already applied) and the ids of the word-start tags."""

    char_ids: np.ndarray  # [0x110000] int64
    start_tags: np.ndarray  # tag ids that begin a word (B, S)
    num_tags: int

    @classmethod
    def load(cls, conf_dir: str) -> LacVocab:
        word_to_id = {w: int(i) for i, w in _read_tsv(os.path.join(conf_dir, "word.dic"))}
        table = np.full(_NUM_CODEPOINTS, word_to_id["OOV"], dtype=np.int64)
        for w, i in word_to_id.items():
            if len(w) == 1:
                table[ord(w)] = i
        for src, dst in _read_tsv(os.path.join(conf_dir, "q2b.dic")):
            if len(src) == 1:  # LAC: q2b first, then the dictionary (a char mapped outside it is OOV)
                table[ord(src)] = word_to_id.get(dst, word_to_id["OOV"])
        tags = {int(i): t for i, t in _read_tsv(os.path.join(conf_dir, "tag.dic"))}
        starts = np.array([i for i, t in tags.items() if t.endswith(("B", "S"))], dtype=np.int64)
        return cls(char_ids=table, start_tags=starts, num_tags=len(tags))

    def encode(self, text: str) -> np.ndarray:
        """Char ids of ``text``: int64 ``[len(text)]``."""
        return self.char_ids[np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)]


def _chunk_bounds(text: str, max_chunk: int) -> list[int]:
    """Cut points ``[0, ..., len(text)]`` making chunks of at most ``max_chunk`` chars, cut after punctuation or
    whitespace in the last quarter of a chunk when there is some."""
    bounds = [0]
    while len(text) - bounds[-1] > max_chunk:
        end = bounds[-1] + max_chunk
        cuts = [m.end() for m in _CUT_AFTER.finditer(text, end - max_chunk // 4, end)]
        bounds.append(cuts[-1] if cuts else end)
    bounds.append(len(text))
    return bounds


class _LacPredictor:
    """One LAC inference model on Paddle Inference: ids + LoD in, one tag id per id out."""

    def __init__(self, model_dir: str, num_threads: int = 1):
        import paddle.inference as paddle_infer

        ensure_cpu_tuning("cpu")  # before the first GEMM: MKL's AVX2 path on AMD CPUs (docs/cpu.md)
        config = paddle_infer.Config(os.path.join(model_dir, "model"))
        config.disable_glog_info()
        config.disable_gpu()
        # oneDNN's fusion_gru kernel crashes (SIGSEGV) after a few thousand batches of the built-in corpus on
        # Paddle 3.3.1; Paddle's own CPU kernel is as fast here and stable.
        config.disable_mkldnn()
        config.set_cpu_math_library_num_threads(num_threads)
        config.switch_ir_optim(True)
        config.enable_memory_optim()
        self.predictor = paddle_infer.create_predictor(config)
        self._input = self.predictor.get_input_handle(self.predictor.get_input_names()[0])
        self._output = self.predictor.get_output_handle(self.predictor.get_output_names()[0])

    def tag_batch(self, ids: np.ndarray, lod: list[int]) -> np.ndarray:
        """One predictor run. ``ids``: int64 ``[total]``, ``lod``: ``[0, end_1, ...]`` -> tag ids ``[total]``."""
        self._input.reshape([len(ids), 1])
        self._input.copy_from_cpu(np.ascontiguousarray(ids, dtype=np.int64).reshape(-1, 1))
        self._input.set_lod([lod])
        self.predictor.run()
        return self._output.copy_to_cpu().reshape(-1)


class LacSegModel(_LacPredictor):
    """Tags texts with LAC's seg_model; :meth:`word_starts` gives, per text, a bool array ``[len(text)]`` that is
    True where a word begins."""

    def __init__(
        self, lac_model_dir: str | None = None, num_threads: int = 1, batch_chars: int = 4096, max_chunk: int = 128
    ):
        self.model_dir = find_lac_model_dir(lac_model_dir)
        self.vocab = LacVocab.load(os.path.join(self.model_dir, "conf"))
        self.batch_chars = batch_chars
        self.max_chunk = max_chunk
        super().__init__(self.model_dir, num_threads)

    def word_starts(self, texts: list[str]) -> list[np.ndarray]:
        """Per text a bool array ``[len(text)]``: True at the first char of each word (always at position 0, and
        at the start of every ``max_chunk`` piece of a long text)."""
        pieces = [
            (t, a, b)
            for t, text in enumerate(texts)
            for a, b in itertools.pairwise(_chunk_bounds(text, self.max_chunk))
            if b > a
        ]
        starts = [np.zeros(len(text), dtype=bool) for text in texts]
        for batch in _pack_by_length(pieces, self.batch_chars):
            lod = np.cumsum([0] + [b - a for _, a, b in batch]).tolist()
            ids = self.vocab.encode("".join(texts[t][a:b] for t, a, b in batch))
            is_start = np.isin(self.tag_batch(ids, lod), self.vocab.start_tags)
            is_start[lod[:-1]] = True
            for (t, a, b), lo, hi in zip(batch, lod[:-1], lod[1:]):
                starts[t][a:b] = is_start[lo:hi]
        return starts


def _pack_by_length(pieces: list[tuple[int, int, int]], batch_chars: int) -> Iterator[list[tuple[int, int, int]]]:
    """Sort ``(text, start, end)`` pieces by length and group them into batches of at most ``batch_chars`` chars
    (a longer piece gets a batch of its own)."""
    batch: list[tuple[int, int, int]] = []
    n = 0
    for piece in sorted(pieces, key=lambda p: p[2] - p[1]):
        size = piece[2] - piece[1]
        if batch and n + size > batch_chars:
            yield batch
            batch, n = [], 0
        batch.append(piece)
        n += size
    if batch:
        yield batch


# ------------------------------------------------------------------------------------------ lexical analysis

_ASCII_ALNUM = re.compile(r"[a-zA-Z0-9]")


class FastCut:
    """LAC's ``Segment.fast_cut`` over ``conf/small_seg.dic``: same pieces (see the module docstring, step 1)."""

    def __init__(self, dict_path: str):
        entries: dict[str, int | None] = {}  # word -> its length; a proper prefix of a word -> None
        total = 0
        with open(dict_path, encoding="utf-8") as f:
            for line in f:
                word, count = line.strip().split(" ")
                entries[word] = len(word)
                for i in range(1, len(word)):
                    entries.setdefault(word[:i], None)
                total += int(count)
        self.entries = entries
        self.logtotal = math.log(total)
        self._log = [0.0] + [math.log(k) for k in range(1, max(map(len, entries)) + 1)]

    def __call__(self, text: str) -> list[str]:
        n, entries, logtotal, logs = len(text), self.entries, self.logtotal, self._log
        score = [0.0] * (n + 1)
        last = [0] * (n + 1)
        for idx in range(n - 1, -1, -1):
            best = (0.0 - logtotal + score[idx + 1], idx)  # the char alone: log(1)
            end = idx + 1
            word = text[idx:end]
            while end <= n and word in entries:
                length = entries[word]
                if length:
                    cand = (logs[length] - logtotal + score[end], end - 1)
                    if cand > best:
                        best = cand
                end += 1
                word = text[idx:end]
            score[idx], last[idx] = best
        pieces, buf, idx = [], "", 0
        while idx < n:
            end = last[idx] + 1
            piece = text[idx:end]
            if end - idx == 1 and _ASCII_ALNUM.match(piece):
                buf += piece
            else:
                if buf:
                    pieces.append(buf)
                    buf = ""
                pieces.append(piece)
            idx = end
        if buf:
            pieces.append(buf)
        return pieces


class LacLexicalModel(_LacPredictor):
    """LAC's ``lac_model``: :meth:`analyse` gives, per text, its words and their labels (POS tags and ``PER``,
    ``LOC``, ``ORG``, ``TIME``), as ``LAC(mode="lac").run`` does; whitespace is kept as LAC keeps it."""

    def __init__(
        self, lac_model_dir: str | None = None, num_threads: int = 1, batch_pieces: int = 4096, max_chunk: int = 128
    ):
        self.model_dir = find_lac_model_dir(lac_model_dir, "lac_model")
        conf = os.path.join(self.model_dir, "conf")
        self.vocab = LacVocab.load(conf)
        word_to_id = {w: int(i) for i, w in _read_tsv(os.path.join(conf, "word.dic"))}
        q2b = dict(_read_tsv(os.path.join(conf, "q2b.dic")))
        oov = word_to_id["OOV"]
        # a multi-char piece found in word.dic: one id (LAC checks the raw piece, then maps it through q2b)
        self.piece_ids = {w: word_to_id.get(q2b.get(w, w), oov) for w in word_to_id if len(w) > 1}
        labels: dict[int, str] = {}
        for i, t in _read_tsv(os.path.join(conf, "tag.dic")):
            labels[int(i)] = t  # later lines win: ids 16-21, 34-35 are PER/LOC/ORG/TIME
        size = max(labels) + 1
        self.tag_names = [labels.get(i, "O") for i in range(size)]
        self.types = sorted({t[:-2] for t in self.tag_names})
        self.tag_type = np.array([self.types.index(t[:-2]) for t in self.tag_names], dtype=np.int64)
        self.tag_begins = np.array([t.endswith(("B", "S")) for t in self.tag_names], dtype=bool)
        self.cut = FastCut(os.path.join(conf, "small_seg.dic"))
        self.batch_pieces = batch_pieces
        self.max_chunk = max_chunk
        super().__init__(self.model_dir, num_threads)

    def encode(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Model input of one text: (piece ids int64 [N], chars per piece int64 [N])."""
        char_ids = self.vocab.encode(text)
        ids, lens, pos = [], [], 0
        piece_ids = self.piece_ids
        for piece in self.cut(text):
            k = len(piece)
            if k > 1 and piece in piece_ids:
                ids.append(piece_ids[piece])
                lens.append(k)
            else:
                ids.extend(char_ids[pos : pos + k].tolist())
                lens.extend([1] * k)
            pos += k
        return np.array(ids, dtype=np.int64), np.array(lens, dtype=np.int64)

    def char_tags(self, texts: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per text ``(begins bool [len], type int64 [len])``: where a word begins and each char's tag type
        (an index into :attr:`types`)."""
        chunks = [
            (t, a, b)
            for t, text in enumerate(texts)
            for a, b in itertools.pairwise(_chunk_bounds(text, self.max_chunk))
            if b > a
        ]
        encoded = [self.encode(texts[t][a:b]) for t, a, b in chunks]
        out = [(np.zeros(len(text), dtype=bool), np.zeros(len(text), dtype=np.int64)) for text in texts]
        sized = [(k, 0, len(ids)) for k, (ids, _) in enumerate(encoded)]
        for batch in _pack_by_length(sized, self.batch_pieces):
            lod = np.cumsum([0] + [len(encoded[k][0]) for k, _, _ in batch]).tolist()
            tags = self.tag_batch(np.concatenate([encoded[k][0] for k, _, _ in batch]), lod)
            for (k, _, _), lo, hi in zip(batch, lod[:-1], lod[1:]):
                t, a, b = chunks[k]
                piece_tags, lens = tags[lo:hi], encoded[k][1]
                first = np.zeros(b - a, dtype=bool)
                first[np.cumsum(lens) - lens] = self.tag_begins[piece_tags]
                first[0] = True
                out[t][0][a:b] = first
                out[t][1][a:b] = np.repeat(self.tag_type[piece_tags], lens)
        return out

    def analyse(self, texts: list[str]) -> list[tuple[list[str], list[str]]]:
        """Per text ``(words, labels)``; a word's label is the type of its last char's tag (LAC's rule)."""
        out = []
        for text, (begins, types) in zip(texts, self.char_tags(texts)):
            cuts = np.flatnonzero(begins).tolist() + [len(text)]
            words = [text[a:b] for a, b in zip(cuts[:-1], cuts[1:])]
            out.append((words, [self.types[types[b - 1]] for b in cuts[1:]]))
        return out
