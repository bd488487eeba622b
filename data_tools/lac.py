"""Baidu LAC's word segmentation model (``seg_model`` of the ``lac`` package) run on Paddle Inference 3.x.

LAC's own Python code imports ``paddle.fluid`` and cannot load on Paddle 3, but its shipped inference model can:
a character-level BiGRU-CRF that reads one LoD tensor of char ids ``[total_chars, 1]`` (int64, ``lod = [[0,
end_1, end_2, ...]]`` marks where each text ends) and returns one tag id per char: ``-B`` / ``-I`` / ``-E`` /
``-S`` (``conf/tag.dic``). A word starts at every ``B`` or ``S`` tag.

Input preparation follows LAC's reader: each char is first normalised through ``conf/q2b.dic`` (full-width ->
half-width, traditional -> simplified), then looked up in ``conf/word.dic`` (unknown -> the ``OOV`` id). Both
maps are folded into one code-point lookup table, so a whole batch becomes ids in a single numpy gather.

Speed (~200 KB/s per core, benchmarks/bench_segmentation.py): texts are sorted by length, cut into chunks of at
most ``max_chunk`` chars (preferably after punctuation; F1 is unchanged) and packed into LoD batches of about
``batch_chars`` chars. 93% of the time is Paddle's ``fusion_gru`` op, which the IR pass ``fc_gru_fuse_pass``
builds with ``use_seq=True``: it runs the recurrence one sequence at a time, so bigger batches only amortise
per-run overhead (1k chars: -40%, 4k-8k: best, 16k+: slower again, cache). Tried and slower: oneDNN
(``enable_mkldnn``), no IR optimisation, deleting the fusion pass (batched ``gru`` op), no memory optimisation.
"""
from __future__ import annotations

import importlib.util
import itertools
import os
import re
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ernie.utils import UserError

LAC_MODEL_ENV = "ERNIE_LAC_MODEL_DIR"
INSTALL_HINT = ("pip install --no-build-isolation --no-deps lac==2.1.2, or pass lac_model_dir= / set "
                f"{LAC_MODEL_ENV} to a LAC seg_model directory (the one holding model/ and conf/)")
_NUM_CODEPOINTS = 0x110000
# Where a too-long text is preferably cut: right after one of these.
_CUT_AFTER = re.compile(r"[。！？；，、!?;,\s]")


def find_lac_model_dir(lac_model_dir: str | None = None) -> str:
    """The LAC ``seg_model`` directory: the argument, else ``$ERNIE_LAC_MODEL_DIR``, else the installed ``LAC``
    package's ``seg_model`` (found without importing LAC, which fails on Paddle 3)."""
    path = lac_model_dir or os.environ.get(LAC_MODEL_ENV)
    if path is None:
        spec = importlib.util.find_spec("LAC")
        if spec is None or not spec.submodule_search_locations:
            raise UserError(f"the LAC segmentation model is not installed: {INSTALL_HINT}")
        path = os.path.join(list(spec.submodule_search_locations)[0], "seg_model")
    for rel in ("model", "conf/word.dic", "conf/q2b.dic", "conf/tag.dic"):
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
    def load(cls, conf_dir: str) -> "LacVocab":
        word_to_id = {w: int(i) for i, w in _read_tsv(os.path.join(conf_dir, "word.dic"))}
        table = np.full(_NUM_CODEPOINTS, word_to_id["OOV"], dtype=np.int64)
        for w, i in word_to_id.items():
            if len(w) == 1:
                table[ord(w)] = i
        for src, dst in _read_tsv(os.path.join(conf_dir, "q2b.dic")):
            if len(src) == 1 and dst in word_to_id:
                table[ord(src)] = word_to_id[dst]
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


class LacSegModel:
    """Tags texts with LAC's seg_model; :meth:`word_starts` gives, per text, a bool array ``[len(text)]`` that is
    True where a word begins."""

    def __init__(self, lac_model_dir: str | None = None, num_threads: int = 1, batch_chars: int = 4096,
                 max_chunk: int = 128):
        import paddle.inference as paddle_infer

        self.model_dir = find_lac_model_dir(lac_model_dir)
        self.vocab = LacVocab.load(os.path.join(self.model_dir, "conf"))
        self.batch_chars = batch_chars
        self.max_chunk = max_chunk
        config = paddle_infer.Config(os.path.join(self.model_dir, "model"))
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
        """One predictor run. ``ids``: int64 ``[total_chars]``, ``lod``: ``[0, end_1, ...]`` -> tag ids
        ``[total_chars]``."""
        self._input.reshape([len(ids), 1])
        self._input.copy_from_cpu(ids.reshape(-1, 1))
        self._input.set_lod([lod])
        self.predictor.run()
        return self._output.copy_to_cpu().reshape(-1)

    def word_starts(self, texts: list[str]) -> list[np.ndarray]:
        """Per text a bool array ``[len(text)]``: True at the first char of each word (always at position 0, and
        at the start of every ``max_chunk`` piece of a long text)."""
        pieces = [(t, a, b) for t, text in enumerate(texts)
                  for a, b in itertools.pairwise(_chunk_bounds(text, self.max_chunk)) if b > a]
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
    batch, n = [], 0
    for piece in sorted(pieces, key=lambda p: p[2] - p[1]):
        size = piece[2] - piece[1]
        if batch and n + size > batch_chars:
            yield batch
            batch, n = [], 0
        batch.append(piece)
        n += size
    if batch:
        yield batch
