"""The data-side fault matrix: each fault of issue #34 (and a few that already held) is run for real, in a child
process, and decided by its check: the exit status, exactly one ``error:`` line on stderr and no traceback, no run
longer than its timeout (a hang is a failure), the outputs intact by checksum and no temporary file left behind.

    python benchmarks/bench_faults.py                 # every case, writes docs/results/faults.md
    python benchmarks/bench_faults.py --tree /work/main --results /tmp/before.md   # the same cases on another checkout
    python benchmarks/bench_faults.py --only dead_worker,disk_full

Disk-full cases run without root through a small ``RLIMIT_FSIZE`` in the child (SIGXFSZ ignored, so the write
fails with EFBIG as on a full disk); a dead worker is a real ``kill -9`` of a pool worker (and, deterministically,
``ERNIE_FAULT_WORKER_KILL_AT``: the worker SIGKILLs itself at its N-th task). tests/test_faults.py runs a fast
subset of these same cases.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 120.0  # a case that runs longer hangs: the old pool waited forever for a dead worker


@dataclass
class Outcome:
    held: bool
    detail: str


@dataclass
class Run:
    rc: int | None  # None: killed at the timeout (a hang)
    out: str
    err: str
    seconds: float

    def error_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.startswith("error:")]

    def one_line_error(self, rc: int = 2, needle: str = "") -> Outcome:
        """The check of a refused run: status ``rc``, one ``error:`` line (containing ``needle``), no traceback."""
        if self.rc is None:
            return Outcome(False, f"hung: still running after {self.seconds:.0f} s")
        errors = self.error_lines()
        if "Traceback" in self.err:
            return Outcome(False, f"rc {self.rc}, traceback: {self.err.strip().splitlines()[-1][:160]}")
        if self.rc != rc or len(errors) != 1 or needle.lower() not in errors[0].lower():
            last = errors[0] if errors else (self.err.strip().splitlines() or ["(no stderr)"])[-1]
            return Outcome(False, f"rc {self.rc}: {last[:200]}")
        return Outcome(True, f"rc {self.rc}: {errors[0][:200]}")


class Env:
    """The tree under test (its scripts, on PYTHONPATH) and a scratch folder with a small vocabulary and corpus."""

    def __init__(self, tree: str, work: str):
        self.tree, self.work = os.path.abspath(tree), work
        self.vocab = os.path.join(work, "vocab")
        self.docs = os.path.join(work, "docs.jsonl")
        self.small = os.path.join(work, "small.jsonl")
        self.big = os.path.join(work, "big.jsonl")  # 4 x docs: a run long enough to be killed mid-way
        self.texts = os.path.join(work, "texts")
        if not os.path.isdir(self.vocab):
            self._prepare()

    def _prepare(self) -> None:
        sys.path.insert(0, ROOT)
        from data_tools.corpus import peoples_daily_documents

        docs = peoples_daily_documents()
        chars = sorted({c for d in docs for p in d for c in p if not c.isspace()})
        os.makedirs(self.vocab)
        with open(os.path.join(self.vocab, "vocab.txt"), "w", encoding="utf-8") as f:
            f.write(
                "\n".join(["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]", *chars, *("##" + c for c in chars)]) + "\n"
            )
        with open(self.docs, "w", encoding="utf-8") as f:
            for d in docs:
                f.write(json.dumps({"text": "\n".join(d)}, ensure_ascii=False) + "\n")
        with open(self.big, "w", encoding="utf-8") as f:
            for _ in range(4):
                for d in docs:
                    f.write(json.dumps({"text": "\n".join(d)}, ensure_ascii=False) + "\n")
        with open(self.small, "w", encoding="utf-8") as f:
            for d in docs[:60]:
                f.write(json.dumps({"text": "\n".join(d)}, ensure_ascii=False) + "\n")
        os.makedirs(self.texts)
        for i in range(24):  # trans_to_json / words_segmentation input: 24 files, a few hundred KB each
            with open(os.path.join(self.texts, f"part{i:02d}.txt"), "w", encoding="utf-8") as f:
                for d in docs[i * 120 : (i + 1) * 120]:
                    f.write("\n".join(d) + "\n\n")

    def script(self, name: str) -> list[str]:
        return [sys.executable, os.path.join(self.tree, "scripts", f"{name}.py")]

    def env(self, **extra: str) -> dict:
        env = {**os.environ, "PYTHONPATH": self.tree, "ERNIE_NO_LEGACY_EXPORT": "1", **extra}
        env.pop("ERNIE_DEBUG", None)
        return env

    def cpd(self, prefix: str, *more: str, inp: str | None = None, vocab: str | None = None) -> list[str]:
        return self.script("create_pretraining_data") + [
            "--model_name", vocab or self.vocab, "--input_path", inp or self.docs, "--output_prefix", prefix,
            "--split_sentences", "--cn_whole_word_segment", "--cn_seg_func", "char", "--log_interval", "100000",
            *more,
        ]  # fmt: skip

    def start(self, cmd: list[str], fsize: int | None = None, **env: str) -> subprocess.Popen:
        def limit() -> None:
            if fsize is not None:
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing
                resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

        return subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env(**env), preexec_fn=limit,
            start_new_session=True,
        )  # fmt: skip

    def finish(self, proc: subprocess.Popen, start: float, timeout: float | None = None) -> Run:
        timeout = timeout or TIMEOUT
        try:
            out, err = proc.communicate(timeout=max(1.0, timeout - (time.time() - start)))
            rc: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            rc = None
        return Run(rc, out, err, time.time() - start)

    def run(self, cmd: list[str], fsize: int | None = None, timeout: float | None = None, **env: str) -> Run:
        start = time.time()
        return self.finish(self.start(cmd, fsize, **env), start, timeout)


def checksums(folder: str) -> dict[str, str]:
    out = {}
    for root, _, names in os.walk(folder):
        for n in names:
            path = os.path.join(root, n)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()[:16]
    return out


def leftovers(folder: str) -> list[str]:
    """Temporary and lock files of the toolkit left in ``folder`` (hidden names)."""
    return sorted(n for n in os.listdir(folder) if n.startswith(".")) if os.path.isdir(folder) else []


def clean(out: str, run: Outcome) -> Outcome:
    """``run`` held only if ``out`` holds no hidden temporary file either."""
    left = [n for n in leftovers(out) if n.endswith((".tmp", ".lock"))]
    if run.held and left:
        return Outcome(False, f"{run.detail}; left behind: {', '.join(left)}")
    return run


def fresh(e: Env, name: str) -> str:
    path = os.path.join(e.work, "cases", name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def child_pids(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="utf-8") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


# ------------------------------------------------------------------------------------------------------ cases


def dead_worker_cpd_kill9(e: Env) -> Outcome:
    """kill -9 of one create_pretraining_data worker (what the OOM killer does)."""
    out = fresh(e, "dead_cpd")
    start = time.time()
    proc = e.start(e.cpd(os.path.join(out, "c"), "--workers", "2", inp=e.big))
    workers: list[int] = []
    while time.time() - start < 30 and len(workers) < 2:
        time.sleep(0.2)
        workers = child_pids(proc.pid)
        workers = [w for w in workers if child_pids(w) == []][:2] if len(workers) >= 2 else workers
    time.sleep(1.0)
    if proc.poll() is not None or not workers:
        return Outcome(False, f"could not kill a worker (children {workers}, rc {proc.poll()})")
    os.kill(workers[0], signal.SIGKILL)
    run = e.finish(proc, start)
    result = run.one_line_error(2, "SIGKILL")
    return clean(out, result if not os.listdir(out) or not result.held else Outcome(False, "output files written"))


def _dead_worker_injected(e: Env, name: str, cmd: list[str], out: str) -> Outcome:
    run = e.run(cmd, ERNIE_FAULT_WORKER_KILL_AT="2")
    result = run.one_line_error(2, "SIGKILL")
    written = [n for n in os.listdir(out) if not n.startswith(".")]
    if result.held and written:
        return Outcome(False, f"{result.detail}; outputs written: {written}")
    return clean(out, result)


def dead_worker_cpd(e: Env) -> Outcome:
    """create_pretraining_data --workers 2: a worker SIGKILLed at its 2nd task."""
    out = fresh(e, "dead_cpd_injected")
    return _dead_worker_injected(e, "cpd", e.cpd(os.path.join(out, "c"), "--workers", "2"), out)


def dead_worker_trans(e: Env) -> Outcome:
    """trans_to_json --workers 2: a worker SIGKILLed at its 2nd file."""
    out = fresh(e, "dead_trans")
    cmd = e.script("trans_to_json") + ["--input_path", e.texts, "--output_path", os.path.join(out, "d.jsonl")]
    return _dead_worker_injected(e, "trans", cmd + ["--workers", "2"], out)


def dead_worker_seg(e: Env) -> Outcome:
    """words_segmentation --workers 2: a worker SIGKILLed at its 2nd chunk."""
    out = fresh(e, "dead_seg")
    cmd = e.script("words_segmentation") + [
        "--input_path", e.texts, "--output_path", os.path.join(out, "seg"), "--cn_seg_func", "char", "--workers", "2",
    ]  # fmt: skip
    return _dead_worker_injected(e, "seg", cmd, out)


def sigterm_cpd(e: Env) -> Outcome:
    """SIGTERM to create_pretraining_data --workers 2 mid-run: it ends (130), workers gone, no temporary files."""
    out = fresh(e, "term_cpd")
    start = time.time()
    proc = e.start(e.cpd(os.path.join(out, "c"), "--workers", "2", inp=e.big))
    while time.time() - start < 30 and len(child_pids(proc.pid)) < 2:
        time.sleep(0.2)
    time.sleep(1.5)
    kids = child_pids(proc.pid)
    if proc.poll() is not None:
        return Outcome(False, f"finished (rc {proc.returncode}) before the SIGTERM")
    os.kill(proc.pid, signal.SIGTERM)
    run = e.finish(proc, start, timeout=30)
    result = run.one_line_error(130, "interrupted")
    alive = [k for k in kids if os.path.exists(f"/proc/{k}") and "zombie" not in _status(k)]
    if result.held and alive:
        result = Outcome(False, f"{result.detail}; workers still alive: {alive}")
    return clean(out, result)


def _status(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as f:
            return f.read().lower()
    except OSError:
        return "zombie"


def _concurrent(e: Env, name: str, make: Callable[[str], list[str]], outputs: Callable[[str], list[str]]) -> Outcome:
    out = fresh(e, name)
    start = time.time()
    procs = [e.start(make(out)) for _ in range(2)]
    runs = [e.finish(p, start) for p in procs]
    ok = [r for r in runs if r.rc == 0]
    refused = [r for r in runs if r.rc != 0]
    if any(r.rc is None for r in runs):
        return Outcome(False, "hung")
    if len(ok) != 1 or len(refused) != 1:
        return Outcome(False, f"exit statuses {[r.rc for r in runs]} (both succeeded: one result replaced the other)")
    verdict = refused[0].one_line_error(2, "")
    if not verdict.held:
        return verdict
    missing = [p for p in outputs(out) if not os.path.isfile(p)]
    if missing:
        return Outcome(False, f"outputs missing: {missing}")
    said = [line for line in refused[0].err.splitlines() if line.startswith("waiting up to")]
    waited = f"said '{said[0][:70]}...', then " if said else ""
    return clean(out, Outcome(True, f"one wrote, the other {waited}{verdict.detail}"))


def concurrent_cpd(e: Env) -> Outcome:
    """Two create_pretraining_data runs on one output at the same time."""
    return _concurrent(
        e,
        "conc_cpd",
        lambda out: e.cpd(os.path.join(out, "c"), "--workers", "1"),
        lambda out: [os.path.join(out, "c_ids.npy"), os.path.join(out, "c_idx.npz")],
    )


def concurrent_trans(e: Env) -> Outcome:
    """Two trans_to_json runs on one output at the same time."""
    return _concurrent(
        e,
        "conc_trans",
        lambda out: (
            e.script("trans_to_json") + ["--input_path", e.texts, "--output_path", os.path.join(out, "d.jsonl")]
        ),
        lambda out: [os.path.join(out, "d.jsonl")],
    )


def _disk_full(e: Env, name: str, cmd: Callable[[str], list[str]], fsize: int, keep: dict | None = None) -> Outcome:
    out = fresh(e, name)
    for rel, data in (keep or {}).items():
        with open(os.path.join(out, rel), "wb") as f:
            f.write(data)
    before = checksums(out)
    run = e.run(cmd(out), fsize=fsize)
    result = run.one_line_error(2, "cannot write")
    after = {k: v for k, v in checksums(out).items() if not k.startswith(".")}
    if result.held and after != before:
        return Outcome(False, f"{result.detail}; files changed: {sorted(set(after) ^ set(before)) or 'contents'}")
    return clean(out, result)


def disk_full_cpd(e: Env) -> Outcome:
    """create_pretraining_data with a 256 KB file-size limit (EFBIG, as a full disk's ENOSPC)."""
    return _disk_full(e, "full_cpd", lambda out: e.cpd(os.path.join(out, "c")), 256 << 10)


def disk_full_cpd_overwrite(e: Env) -> Outcome:
    """The same with --overwrite over an older corpus: the older one stays intact."""
    old = fresh(e, "full_cpd_old_src")
    first = e.run(e.cpd(os.path.join(old, "c"), inp=e.small))
    if first.rc != 0:
        return Outcome(False, f"setup failed: {first.err.strip()[-200:]}")
    keep = {}
    for n in os.listdir(old):
        with open(os.path.join(old, n), "rb") as f:
            keep[n] = f.read()
    return _disk_full(e, "full_cpd_old", lambda out: e.cpd(os.path.join(out, "c"), "--overwrite"), 256 << 10, keep)


def disk_full_trans(e: Env) -> Outcome:
    """trans_to_json with a 256 KB file-size limit."""
    return _disk_full(
        e,
        "full_trans",
        lambda out: e.script("trans_to_json") + ["--input_path", e.texts, "--output_path", os.path.join(out, "d")],
        256 << 10,
    )


def disk_full_merge(e: Env) -> Outcome:
    """merge with a 64 KB file-size limit."""
    src = fresh(e, "full_merge_src")
    for part in ("a", "b"):
        run = e.run(e.cpd(os.path.join(src, part), inp=e.small))
        if run.rc != 0:
            return Outcome(False, f"setup failed: {run.err.strip()[-200:]}")
    return _disk_full(
        e,
        "full_merge",
        lambda out: (
            e.script("merge")
            + ["--input", os.path.join(src, "a"), os.path.join(src, "b"), "--output_prefix", os.path.join(out, "m")]
        ),
        64 << 10,
    )


def disk_full_vocab(e: Env) -> Outcome:
    """build_vocab with a 4 KB file-size limit."""
    return _disk_full(
        e,
        "full_vocab",
        lambda out: (
            e.script("build_vocab")
            + ["--input_path", e.texts, "--output_dir", os.path.join(out, "v"), "--vocab_size", "3000"]
        ),
        4 << 10,
    )


_TINY_MODEL = """
import sys
import paddle
from ernie.configuration import ErnieConfig
from ernie.finetune.runner import save_model_dir
from ernie.modeling import ErnieForSequenceClassification
from ernie.tokenizer import ErnieTokenizer, write_tokenizer_files
out = sys.argv[1]
special = dict(unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]")
write_tokenizer_files(out + "/vocab", ["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]", *"好差的很"], True, special)
tok = ErnieTokenizer.from_pretrained(out + "/vocab")
paddle.seed(7)
config = ErnieConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64, num_labels=2)
save_model_dir(ErnieForSequenceClassification(config), tok, ["neg", "pos"], out + "/model")
"""


def disk_full_export(e: Env) -> Outcome:
    """export_model.py with a 16 KB file-size limit (paddle.jit.save's writes)."""
    src = fresh(e, "full_export_src")
    made = e.run([sys.executable, "-c", _TINY_MODEL, src])
    if made.rc != 0:
        return Outcome(False, f"setup failed: {made.err.strip()[-200:]}")
    return _disk_full(
        e,
        "full_export",
        lambda out: (
            e.script("export_model")
            + ["--model_path", os.path.join(src, "model"), "--output_path", os.path.join(out, "export")]
        ),
        16 << 10,
    )


def vocab_mismatch_merge(e: Env) -> Outcome:
    """merge of two corpora built with different vocabularies."""
    src = fresh(e, "vocab_merge_src")
    other = os.path.join(src, "vocab2")
    os.makedirs(other)
    with open(os.path.join(e.vocab, "vocab.txt"), encoding="utf-8") as f:
        tokens = f.read().split("\n")
    tokens[10], tokens[11] = tokens[11], tokens[10]  # same size, two ids swapped
    with open(os.path.join(other, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(tokens))
    a = e.run(e.cpd(os.path.join(src, "a"), inp=e.small))
    b = e.run(e.cpd(os.path.join(src, "b"), inp=e.small, vocab=other))
    if a.rc != 0 or b.rc != 0:
        return Outcome(False, f"setup failed: {(a.err + b.err).strip()[-200:]}")
    out = fresh(e, "vocab_merge")
    cmd = e.script("merge") + ["--input", os.path.join(src, "a"), os.path.join(src, "b")]
    run = e.run(cmd + ["--output_prefix", os.path.join(out, "m")])
    result = run.one_line_error(2, "vocabular")
    return clean(out, result if not os.listdir(out) or not result.held else Outcome(False, "merged output written"))


def old_corpus_still_merges(e: Env) -> Outcome:
    """Already held: a corpus without a vocabulary record (older version, PaddleNLP) still opens and merges."""
    src = fresh(e, "old_merge_src")
    for part in ("a", "b"):
        run = e.run(e.cpd(os.path.join(src, part), inp=e.small))
        if run.rc != 0:
            return Outcome(False, f"setup failed: {run.err.strip()[-200:]}")
        with_meta = os.path.join(src, f"{part}_meta.json")
        if os.path.exists(with_meta):
            os.unlink(with_meta)
    out = fresh(e, "old_merge")
    cmd = e.script("merge") + ["--input", os.path.join(src, "a"), os.path.join(src, "b")]
    run = e.run(cmd + ["--output_prefix", os.path.join(out, "m")])
    ok = run.rc == 0 and os.path.isfile(os.path.join(out, "m_idx.npz")) and "Traceback" not in run.err
    return Outcome(ok, f"rc {run.rc}: {(run.out.strip().splitlines() or [''])[-1][:160]}")


def stale_temp_cleaned(e: Env) -> Outcome:
    """A killed run's temporary files of the same output are removed by the next run; a user's file is kept."""
    out = fresh(e, "stale")
    stale = [os.path.join(out, ".c_ids.npy.k3j9x0qa.tmp"), os.path.join(out, ".c_idx.npz.a1b2c3d4.tmp")]
    mine = os.path.join(out, ".c_ids.npy.my-notes")
    for p in [*stale, mine]:
        with open(p, "w") as f:
            f.write("x")
    run = e.run(e.cpd(os.path.join(out, "c"), inp=e.small))
    left = [os.path.basename(p) for p in stale if os.path.exists(p)]
    ok = run.rc == 0 and not left and os.path.exists(mine)
    return Outcome(ok, f"rc {run.rc}; stale left: {left or 'none'}; user's file kept: {os.path.exists(mine)}")


def trans_killed_then_rerun(e: Env) -> Outcome:
    """trans_to_json SIGKILLed between writing its temporary file and renaming it; the rerun cleans and writes."""
    out = fresh(e, "trans_kill")
    cmd = e.script("trans_to_json") + ["--input_path", e.texts, "--output_path", os.path.join(out, "d.jsonl")]
    first = e.run(cmd, ERNIE_FAULT_KILL_AT="1")
    tmp_after_kill = [n for n in os.listdir(out) if n.endswith(".tmp")]
    second = e.run(cmd)
    left = [n for n in os.listdir(out) if n.endswith(".tmp")]
    ok = first.rc == -signal.SIGKILL and second.rc == 0 and not left and os.path.isfile(os.path.join(out, "d.jsonl"))
    return Outcome(ok, f"killed run left {tmp_after_kill}; rerun rc {second.rc}, left {left or 'nothing'}")


def max_length_2(e: Env) -> Outcome:
    """seq_cls_infer.py --max_length 2."""
    out = fresh(e, "maxlen")
    return e.run(e.script("seq_cls_infer") + ["--model_dir", out, "--max_length", "2"]).one_line_error(2, "max_length")


def vocab_bad_utf8(e: Env) -> Outcome:
    """build_vocab on a file with an invalid UTF-8 line: skipped and counted, as by the other tools."""
    out = fresh(e, "vocab_utf8")
    src = os.path.join(out, "in.txt")
    with open(src, "wb") as f:
        f.write("今天天气很好。\n".encode() + b"\xff\xfe bad\n" + "我们去公园。\n".encode())
    cmd = e.script("build_vocab") + ["--input_path", src, "--output_dir", os.path.join(out, "v")]
    run = e.run(cmd + ["--vocab_size", "130"])
    said = [line.strip() for line in (run.out + run.err).splitlines() if "invalid UTF-8" in line]
    return Outcome(run.rc == 0 and bool(said), f"rc {run.rc}: {(said or ['no count of the skipped line'])[0][:160]}")


def vocab_size_unreached(e: Env) -> Outcome:
    """build_vocab --vocab_size far above what the corpus holds: says so."""
    out = fresh(e, "vocab_size")
    src = os.path.join(out, "in.txt")
    with open(src, "w", encoding="utf-8") as f:
        f.write("今天天气很好。我们去公园。\n")
    run = e.run(
        e.script("build_vocab") + ["--input_path", src, "--output_dir", os.path.join(out, "v"), "--vocab_size", "30000"]
    )
    ok = run.rc == 0 and "--vocab_size" in run.err
    return Outcome(ok, f"rc {run.rc}: {(run.err.strip().splitlines() or [''])[-1][:160]}")


def existing_output_refused(e: Env) -> Outcome:
    """Already held: an existing output without --overwrite is refused and left as it was."""
    out = fresh(e, "exists")
    path = os.path.join(out, "d.jsonl")
    with open(path, "w") as f:
        f.write("mine\n")
    before = checksums(out)
    run = e.run(e.script("trans_to_json") + ["--input_path", e.texts, "--output_path", path])
    result = run.one_line_error(2, "already exists")
    return result if checksums(out) == before else Outcome(False, "the existing output changed")


def missing_input(e: Env) -> Outcome:
    """Already held: a missing --input_path is one line."""
    out = fresh(e, "missing")
    return e.run(e.cpd(os.path.join(out, "c"), inp=os.path.join(out, "nope.jsonl"))).one_line_error(2, "--input_path")


CASES: list[tuple[str, str, Callable[[Env], Outcome]]] = [
    ("dead worker", "cpd_kill9", dead_worker_cpd_kill9),
    ("dead worker", "cpd_injected", dead_worker_cpd),
    ("dead worker", "trans_to_json", dead_worker_trans),
    ("dead worker", "words_segmentation", dead_worker_seg),
    ("signal", "cpd_sigterm", sigterm_cpd),
    ("concurrent writers", "cpd", concurrent_cpd),
    ("concurrent writers", "trans_to_json", concurrent_trans),
    ("disk full", "cpd", disk_full_cpd),
    ("disk full", "cpd_overwrite_keeps_old", disk_full_cpd_overwrite),
    ("disk full", "trans_to_json", disk_full_trans),
    ("disk full", "merge", disk_full_merge),
    ("disk full", "build_vocab", disk_full_vocab),
    ("disk full", "export_model", disk_full_export),
    ("wrong data", "merge_other_vocab", vocab_mismatch_merge),
    ("wrong data", "old_corpus_merges", old_corpus_still_merges),
    ("leftovers", "stale_temp_cleaned", stale_temp_cleaned),
    ("leftovers", "trans_killed_rerun", trans_killed_then_rerun),
    ("small", "seq_cls_infer_max_length_2", max_length_2),
    ("small", "build_vocab_bad_utf8", vocab_bad_utf8),
    ("small", "build_vocab_size_unreached", vocab_size_unreached),
    ("held before", "existing_output_refused", existing_output_refused),
    ("held before", "missing_input", missing_input),
]


def run_cases(env: Env, only: set[str] | None = None) -> list[tuple[str, str, Outcome, float]]:
    rows = []
    for kind, name, fn in CASES:
        if only and kind.replace(" ", "_") not in only and name not in only:
            continue
        start = time.time()
        try:
            outcome = fn(env)
        except Exception as e:  # noqa: BLE001 - a broken case is a failed case, not a crashed matrix
            outcome = Outcome(False, f"case crashed: {type(e).__name__}: {e}")
        rows.append((kind, name, outcome, time.time() - start))
        mark = "held" if outcome.held else "FAILED"
        print(f"{kind:20s} {name:30s} {mark:6s} {time.time() - start:6.1f} s  {outcome.detail}", flush=True)
    return rows


def report(rows: list[tuple[str, str, Outcome, float]], tree: str) -> str:
    held = sum(o.held for _, _, o, _ in rows)
    kinds: dict[str, list[int]] = {}
    for kind, _, o, _ in rows:
        kinds.setdefault(kind, [0, 0])[0 if o.held else 1] += 1
    lines = [
        f"Tree under test: `{tree}`. Cases tried: **{len(rows)}**, held: **{held}**, failed: **{len(rows) - held}**.",
        "",
        "| kind | tried | held | failed |",
        "|---|---|---|---|",
        *(f"| {k} | {h + f} | {h} | {f} |" for k, (h, f) in kinds.items()),
        "",
        "| kind | case | result | seconds | check |",
        "|---|---|---|---|---|",
        *(
            f"| {k} | {n} | {'held' if o.held else '**failed**'} | {s:.1f} | {o.detail.replace('|', '/')} |"
            for k, n, o, s in rows
        ),
    ]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tree", default=ROOT, help="checkout whose scripts are tested (default: this one)")
    p.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    p.add_argument("--only", default="", help="comma-separated kinds (dead_worker, disk_full, ...) or case names")
    p.add_argument("--results", default=os.path.join(ROOT, "docs", "results", "faults.md"), help="'-': none")
    p.add_argument("--timeout", type=float, default=TIMEOUT, help="seconds after which a run counts as hung")
    a = p.parse_args()
    globals()["TIMEOUT"] = a.timeout
    sys.path.insert(0, ROOT)
    from benchmarks.bench_report import machine, write_results

    work = a.work or tempfile.mkdtemp(prefix="bench_faults_")
    setup, load0 = machine(), os.getloadavg()[0]
    start = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows = run_cases(Env(a.tree, work), set(filter(None, a.only.split(","))) or None)
    body = report(rows, a.tree)
    print(body)
    if a.results and a.results != "-":
        command = " ".join(["python", *sys.argv])
        write_results(
            a.results, "Fault matrix (data side)", "benchmarks/bench_faults.py", command, setup, start, load0, body
        )
    if not a.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(o.held for _, _, o, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
