"""Chinese word segmenters for whole-word masking, behind one batched interface.

``get_segmenter(name, **opts).segment(texts) -> list[list[str]]``; for every text ``"".join(words)`` equals the
text with its whitespace removed (whitespace always separates words and never appears in one).

* ``lac``: Baidu LAC's segmentation model on Paddle Inference (:mod:`data_tools.lac`); options ``lac_model_dir``,
  ``num_threads``, ``batch_chars``, ``max_chunk``.
* ``jieba``: jieba's dictionary + DAG segmentation (precise mode), ``hmm=False`` by default: on People's Daily
  its HMM for unknown words lowers F1 (it glues PKU's surname / given-name pairs and number + measure words) and
  costs speed (benchmarks/bench_segmentation.py; docs/results/bench_segmentation.md).
* ``char``: the BERT char-masking baseline: every CJK char and every punctuation/symbol char is a word; runs of
  other letters and digits (``hello``, ``１９９８``) stay whole, as BERT's basic tokenizer keeps them, so that
  WordPiece sees the same words it would without segmentation.

CLI (``scripts/words_segmentation.py``): ``--input_path IN --output_path OUT --cn_seg_func lac|jieba|char
--workers N [--overwrite]``. A ``.txt`` input gives one output line per input line, words joined by single
spaces; a folder gives a folder of such files (every ``*.txt`` below it, same relative names). Output order is
input order; outputs are written atomically. An input with no text at all (empty or whitespace-only files) is
refused, as by the other data entry points.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterator

import numpy as np

from ernie.utils import (
    ArgumentParser,
    UserError,
    atomic_dir,
    atomic_write,
    check_output_path,
    cli_main,
    remove_stale_temporaries,
)
from ernie.utils.lock import lock_output

from .lac import LacSegModel, find_lac_model_dir
from .pool import ordered_map, sigterm_as_interrupt


def _drop_whitespace(words: list[str]) -> list[str]:
    """Split the words at whitespace and drop the whitespace (one C-level join + split)."""
    return " ".join(words).split()


class Segmenter:
    """Base class: ``segment`` a batch of texts into lists of words."""

    name = ""

    def segment(self, texts: list[str]) -> list[list[str]]:
        raise NotImplementedError

    def __call__(self, text: str) -> list[str]:
        return self.segment([text])[0]


_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f"
# A run of letters/digits that are not CJK ideographs, else any single non-space char.
_CHAR_WORD = re.compile(rf"(?:(?![{_CJK}])[^\W_])+|\S")


class CharSegmenter(Segmenter):
    """Each CJK char / punctuation char a word; non-CJK letter-digit runs whole."""

    name = "char"

    def segment(self, texts: list[str]) -> list[list[str]]:
        return [_CHAR_WORD.findall(text) for text in texts]


class JiebaSegmenter(Segmenter):
    """jieba's precise mode; ``hmm=True`` adds its HMM for out-of-dictionary words."""

    name = "jieba"

    def __init__(self, hmm: bool = False):
        import logging

        import jieba

        jieba.setLogLevel(logging.WARNING)
        self.tokenizer = jieba.Tokenizer()
        self.tokenizer.initialize()
        self.hmm = hmm

    def segment(self, texts: list[str]) -> list[list[str]]:
        cut = self.tokenizer.lcut
        return [_drop_whitespace(cut(text, HMM=self.hmm)) for text in texts]


class LacSegmenter(Segmenter):
    """LAC's seg_model (see :mod:`data_tools.lac`)."""

    name = "lac"

    def __init__(
        self, lac_model_dir: str | None = None, num_threads: int = 1, batch_chars: int = 4096, max_chunk: int = 128
    ):
        self.model = LacSegModel(lac_model_dir, num_threads=num_threads, batch_chars=batch_chars, max_chunk=max_chunk)

    def segment(self, texts: list[str]) -> list[list[str]]:
        out = []
        for text, starts in zip(texts, self.model.word_starts(texts)):
            cuts = np.flatnonzero(starts).tolist() + [len(text)]
            words = [text[a:b] for a, b in zip(cuts[:-1], cuts[1:])]
            out.append(_drop_whitespace(words))
        return out


SEGMENTERS: dict[str, Callable[..., Segmenter]] = {
    "lac": LacSegmenter,
    "jieba": JiebaSegmenter,
    "char": CharSegmenter,
}


def word_f1(pred: list[list[str]], gold: list[list[str]]) -> tuple[float, float, float]:
    """Precision, recall and F1 of predicted words against gold words (a word counts when its character span
    matches), summed over all texts: the usual segmentation score."""

    def spans(words):
        ends = [0]
        for w in words:
            ends.append(ends[-1] + len(w))
        return set(zip(ends[:-1], ends[1:]))

    tp = sum(len(spans(p) & spans(g)) for p, g in zip(pred, gold))
    precision, recall = tp / sum(map(len, pred)), tp / sum(map(len, gold))
    return precision, recall, 2 * precision * recall / (precision + recall)


def get_segmenter(name: str, **opts) -> Segmenter:
    """The segmenter called ``name`` (``"lac"``, ``"jieba"`` or ``"char"``), built with ``opts``."""
    if name not in SEGMENTERS:
        raise UserError(f"--cn_seg_func: unknown segmenter {name!r}; choose one of {', '.join(SEGMENTERS)}")
    return SEGMENTERS[name](**opts)


# ---------------------------------------------------------------------------------------------------------------
# CLI: scripts/words_segmentation.py

CHUNK_LINES = 2000  # lines per worker task


def read_text_lines(path: str, chunk_lines: int = CHUNK_LINES) -> Iterator[list[str]]:
    """The lines of a UTF-8 text file (line ends removed) in chunks; invalid UTF-8 -> ``UserError`` at file:line."""
    with open(path, "rb") as f:
        lineno, chunk = 0, []
        for raw in f:
            lineno += 1
            try:
                chunk.append(raw.decode("utf-8").rstrip("\r\n"))
            except UnicodeDecodeError as e:
                raise UserError(f"{path}:{lineno}: invalid UTF-8 at byte {e.start} of the line") from None
            if len(chunk) == chunk_lines:
                yield chunk
                chunk = []
        if chunk:
            yield chunk


def _input_files(input_path: str) -> list[tuple[str, str]]:
    """``(input file, path relative to the input folder)`` for a .txt file or every .txt under a folder."""
    if os.path.isfile(input_path):
        return [(input_path, os.path.basename(input_path))]
    if not os.path.isdir(input_path):
        raise UserError(f"--input_path: {input_path} does not exist")
    files = sorted(
        os.path.join(root, name) for root, _, names in os.walk(input_path) for name in names if name.endswith(".txt")
    )
    if not files:
        raise UserError(f"--input_path: no .txt files under {input_path}")
    return [(p, os.path.relpath(p, input_path)) for p in files]


_worker_segmenter: Segmenter | None = None


def _init_worker(name: str, in_pool: bool = False) -> None:
    global _worker_segmenter
    _worker_segmenter = get_segmenter(name)
    if in_pool and name == "lac":
        import paddle

        paddle.disable_signal_handler()  # a pool shutdown is not a crash: no "FatalError" report from paddle


def _segment_chunk(lines: list[str]) -> str:
    """Worker task: lines -> their output text (one space-joined line per input line)."""
    assert _worker_segmenter is not None, "_init_worker runs before the first task"
    return "".join(" ".join(words) + "\n" for words in _worker_segmenter.segment(lines))


def _segment_task(task: tuple[int, list[str]]) -> tuple[int, str]:
    """Worker task: (file number, lines) -> (file number, output text)."""
    return task[0], _segment_chunk(task[1])


def _has_text(path: str, block: int = 1 << 20) -> bool:
    """Whether ``path`` holds any non-whitespace byte (reads only up to the first one)."""
    with open(path, "rb") as f:
        while chunk := f.read(block):
            if chunk.strip():
                return True
    return False


def segment_files(
    input_path: str, output_path: str, cn_seg_func: str = "jieba", workers: int = 1, overwrite: bool = False
) -> list[str]:
    """Segment a .txt file or a folder of them into ``output_path`` (see the module docstring); returns the
    written files."""

    files = _input_files(input_path)
    in_abs, out_abs = os.path.abspath(input_path), os.path.abspath(output_path)
    if out_abs == in_abs or out_abs.startswith(in_abs + os.sep):
        raise UserError("--output_path: must not be --input_path or lie inside it")
    check_output_path(output_path, overwrite)
    if not any(_has_text(src) for src, _ in files):  # as trans_to_json, build_vocab, create_pretraining_data
        raise UserError(f"--input_path: {input_path} holds no text")
    if cn_seg_func not in SEGMENTERS:
        raise UserError(f"--cn_seg_func: unknown segmenter {cn_seg_func!r}; choose one of {', '.join(SEGMENTERS)}")
    if workers < 1:
        raise UserError(f"--workers: must be >= 1, got {workers}")
    if cn_seg_func == "lac":
        find_lac_model_dir()  # fail here with a clear message, not inside every pool worker
    with lock_output(output_path, "--output_path"):
        check_output_path(output_path, overwrite)  # again inside the lock: another run may have written it
        remove_stale_temporaries(output_path)
        return _segment_all(files, input_path, output_path, cn_seg_func, workers)


def _segment_all(files: list[tuple[str, str]], input_path: str, output_path: str, cn_seg_func: str, workers: int):
    from tqdm import tqdm

    if workers > 1:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    tasks = ((k, chunk) for k, (src, _) in enumerate(files) for chunk in read_text_lines(src))
    outputs = ordered_map(
        _segment_task, tasks, workers, _init_worker, (cn_seg_func, workers > 1), start_method="spawn"
    )  # one pool for every file: each worker loads its segmenter once
    progress = tqdm(unit="B", unit_scale=True, desc=f"segment ({cn_seg_func})", file=sys.stderr, disable=None)
    try:
        if os.path.isfile(input_path):
            with atomic_write(output_path, "w") as f:
                for _, text in outputs:
                    f.write(text)
                    progress.update(len(text.encode("utf-8")))
            written = [output_path]
        else:
            with atomic_dir(output_path) as tmp:
                for _, rel in files:  # every output exists, empty inputs included
                    os.makedirs(os.path.dirname(os.path.join(tmp, rel)), exist_ok=True)
                    open(os.path.join(tmp, rel), "w").close()
                current, out = -1, None
                try:
                    for k, text in outputs:
                        if out is None or k != current:
                            if out is not None:
                                out.close()
                            current, out = k, open(os.path.join(tmp, files[k][1]), "a", encoding="utf-8")
                        out.write(text)
                        progress.update(len(text.encode("utf-8")))
                finally:
                    if out is not None:
                        out.close()
            written = [os.path.join(output_path, rel) for _, rel in files]
    finally:
        outputs.close()  # stops the workers on any early exit
        progress.close()
    return written


@cli_main
def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(
        allow_abbrev=False, description="Segment Chinese text into words (one output line per input line)."
    )
    parser.add_argument("--input_path", required=True, help="a .txt file or a folder of .txt files")
    parser.add_argument("--output_path", required=True, help="output .txt file (or folder, for a folder input)")
    parser.add_argument("--cn_seg_func", default="jieba", choices=sorted(SEGMENTERS), help="segmenter")
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    args = parser.parse_args(argv)
    with sigterm_as_interrupt():  # a terminated run stops its workers and removes its temporary files
        written = segment_files(args.input_path, args.output_path, args.cn_seg_func, args.workers, args.overwrite)
    print(f"wrote {len(written)} file(s) to {args.output_path}", file=sys.stderr)
    return 0
