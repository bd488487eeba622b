"""Raw text files -> one jsonl of documents ``{"text": ...}``, the input of create_pretraining_data.

A document is a run of lines ended by a line equal to ``--doc_spliter`` after stripping (default ``""``: a blank line,
the convention of :func:`data_tools.corpus.write_peoples_daily_text`); its lines are joined with ``"\\n"``, which the
sentence splitter treats as a boundary. With ``--one_doc_per_line`` every non-blank line is a document (one review, one
tweet, one article a line). A file of at least :data:`MANY_LINES` text lines that makes a single document gets a warning
naming that flag: it is almost always a one-document-per-line file read the other way. Files are read in parallel (one
task per file, results kept in input order), documents are shuffled with a fixed ``--seed`` unless ``--no-shuffle``, and
the output is written atomically. Lines that are not valid UTF-8 and documents shorter than ``--min_doc_length`` chars
are skipped and counted, with the first place each problem occurred.

    python scripts/trans_to_json.py --input_path corpus_dir --output_path docs.jsonl --workers 2
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from tqdm import tqdm

from ernie.utils import (
    ArgumentParser,
    UserError,
    atomic_write,
    check_output_path,
    cli_main,
    list_input_files,
    remove_stale_temporaries,
)
from ernie.utils.lock import lock_output

from .pool import ordered_map, sigterm_as_interrupt


@dataclass
class SkipLog:
    """Counts of skipped or notable input, each with the ``file:line`` where it first happened."""

    counts: Counter = field(default_factory=Counter)
    first: dict = field(default_factory=dict)

    def add(self, what: str, where: str, n: int = 1) -> None:
        self.counts[what] += n
        self.first.setdefault(what, where)

    def update(self, other: SkipLog) -> None:
        for what, n in other.counts.items():
            self.add(what, other.first[what], n)

    def lines(self) -> list[str]:
        return [f"{n} {what} (first at {self.first[what]})" for what, n in self.counts.items()]


MANY_LINES = 100  # text lines in one file that made one document: warn that --one_doc_per_line may be meant


@dataclass
class FileDocuments:
    """What one input file gave: its documents, the skip log, bytes read and non-blank lines read."""

    docs: list[str]
    skipped: SkipLog
    size: int
    text_lines: int


@dataclass
class TransConfig:
    input_path: str
    output_path: str
    json_key: str = "text"
    doc_spliter: str = ""
    one_doc_per_line: bool = False
    min_doc_length: int = 10
    workers: int = 1
    log_interval: int = 1
    no_shuffle: bool = False
    seed: int = 1234
    overwrite: bool = False


def file_to_documents(
    path: str, doc_spliter: str = "", min_doc_length: int = 10, one_doc_per_line: bool = False
) -> FileDocuments:
    """Documents of one text file (a ``doc_spliter`` line ends one, or every non-blank line is one), with the skip
    log, the bytes read and the number of non-blank lines."""
    docs: list[str] = []
    skipped = SkipLog()
    current: list[str] = []
    start_line = 1
    text_lines = 0

    def close() -> None:
        text = "\n".join(current).strip()
        if text:
            if len(text) >= min_doc_length:
                docs.append(text)
            else:
                skipped.add(f"documents shorter than --min_doc_length {min_doc_length} skipped", f"{path}:{start_line}")
        current.clear()

    try:
        with open(path, "rb") as f:
            lineno = 0
            for lineno, raw in enumerate(f, start=1):
                try:
                    line = raw.decode("utf-8").rstrip()
                except UnicodeDecodeError:
                    skipped.add("lines of invalid UTF-8 skipped", f"{path}:{lineno}")
                    continue
                if line.strip():
                    text_lines += 1
                if one_doc_per_line:
                    if line.strip():
                        start_line = lineno
                        current.append(line)
                        close()
                elif line.strip() == doc_spliter:
                    close()
                    start_line = lineno + 1
                elif line:
                    if not current:
                        start_line = lineno
                    current.append(line)
            close()
            size = f.tell()
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None
    return FileDocuments(docs, skipped, size, text_lines)


def _file_task(args: tuple[str, str, int, bool]) -> FileDocuments:
    return file_to_documents(*args)


def one_document_warning(path: str, result: FileDocuments, config: TransConfig) -> str | None:
    """The warning for a file of many lines that made one document (``None`` when there is nothing to say)."""
    if config.one_doc_per_line or len(result.docs) != 1 or result.text_lines < MANY_LINES:
        return None
    ender = "a blank line" if config.doc_spliter == "" else f"a line {config.doc_spliter!r} (--doc_spliter)"
    return (
        f"warning: {path}: {result.text_lines} lines made 1 document ({ender} ends a document); if every line "
        "is a document, rerun with --one_doc_per_line"
    )


def trans_to_json(config: TransConfig) -> dict:
    """Run the conversion; returns counts (files, documents, bytes) and the skip log."""
    files = list_input_files(config.input_path)
    output = config.output_path if config.output_path.endswith(".jsonl") else config.output_path + ".jsonl"
    check_output_path(output, config.overwrite)
    if os.path.abspath(output) in map(os.path.abspath, files):
        raise UserError(f"--output_path: {output} is also an input file")
    if config.workers < 1:
        raise UserError(f"--workers: must be >= 1, got {config.workers}")
    if config.log_interval < 1:
        raise UserError(f"--log_interval: must be >= 1, got {config.log_interval}")
    with lock_output(output, "--output_path"):
        check_output_path(output, config.overwrite)  # again inside the lock: another run may have written it
        remove_stale_temporaries(output)
        return _convert(config, files, output)


def _convert(config: TransConfig, files: list[str], output: str) -> dict:
    tasks = [(p, config.doc_spliter, config.min_doc_length, config.one_doc_per_line) for p in files]
    skipped, docs, total_bytes, warnings = SkipLog(), [], 0, []
    start = time.time()
    workers = config.workers if len(files) > 1 else 1
    results = ordered_map(_file_task, tasks, workers, in_flight=2 * workers)
    try:
        for i, result in enumerate(tqdm(results, total=len(files), unit="file", disable=None), start=1):
            docs += result.docs
            skipped.update(result.skipped)
            total_bytes += result.size
            warning = one_document_warning(files[i - 1], result, config)
            if warning:
                warnings.append(warning)
                print(warning, file=sys.stderr)
            if i % config.log_interval == 0 and not sys.stderr.isatty():
                mbs = total_bytes / max(time.time() - start, 1e-9) / 2**20
                print(f"Processed {i} files ({mbs:.2f} MB/s)", file=sys.stderr)
    finally:
        results.close()
    if not docs:
        raise UserError(
            f"--input_path: no documents found in {config.input_path}"
            + "".join(f"; {line}" for line in skipped.lines())
        )
    if not config.no_shuffle:
        random.Random(config.seed).shuffle(docs)
    with atomic_write(output, "w") as f:
        for text in docs:
            f.write(json.dumps({config.json_key: text}, ensure_ascii=False))
            f.write("\n")
    return {
        "files": len(files),
        "documents": len(docs),
        "bytes": total_bytes,
        "output": output,
        "skipped": skipped,
        "seconds": time.time() - start,
        "warnings": warnings,
    }


def build_parser() -> ArgumentParser:
    p = ArgumentParser(allow_abbrev=False, description="Convert raw text files to a jsonl of documents.")
    p.add_argument("--input_path", required=True, help="a text file or a folder of them")
    p.add_argument("--output_path", required=True, help="the .jsonl to write ('.jsonl' is appended if missing)")
    p.add_argument("--json_key", default="text", help="key of the document text in each json line")
    p.add_argument("--doc_spliter", default="", help="line that ends a document (after stripping); '' = blank line")
    p.add_argument(
        "--one_doc_per_line",
        action="store_true",
        help="every non-blank line is a document (one review/article a line); --doc_spliter is then unused",
    )
    p.add_argument("--min_doc_length", type=int, default=10, help="drop documents with fewer chars")
    p.add_argument("--workers", type=int, default=1, help="processes reading files in parallel")
    p.add_argument("--log_interval", type=int, default=1, help="files between progress lines (non-tty)")
    p.add_argument("--no-shuffle", dest="no_shuffle", action="store_true", help="keep the input order")
    p.add_argument("--seed", type=int, default=1234, help="seed of the document shuffle")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    return p


@cli_main
def main(argv=None) -> int:
    config = TransConfig(**vars(build_parser().parse_args(argv)))
    with sigterm_as_interrupt():  # a terminated run stops its workers and removes its temporary files
        stats = trans_to_json(config)
    print(
        f"Wrote {stats['documents']} documents from {stats['files']} files "
        f"({stats['bytes'] / 2**20:.2f} MB, {stats['seconds']:.1f} s) to {stats['output']}"
    )
    for line in stats["skipped"].lines():
        print(f"  {line}")
    return 0
