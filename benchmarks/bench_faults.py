"""The fault matrix of issue #34, data side and training engine: each fault (and a few that already held) is run for
real, in a child process, and decided by its check: the exit status, exactly one ``error:`` line on stderr and no
traceback (nor Paddle's ``FatalError``), no run longer than its timeout (a hang is a failure), the outputs intact by
checksum and no temporary file left behind; for training, the checkpoint at the step the run names and a rerun of
the same command that resumes from it.

    python benchmarks/bench_faults.py                 # every case, writes docs/results/faults.md
    python benchmarks/bench_faults.py --tree /work/main --results /tmp/before.md   # the same cases on another checkout
    python benchmarks/bench_faults.py --only dead_worker,disk_full

Disk-full cases run without root through a small ``RLIMIT_FSIZE`` in the child (SIGXFSZ ignored, so the write
fails with EFBIG as on a full disk); a dead worker is a real ``kill -9`` of a pool worker (and, deterministically,
``ERNIE_FAULT_WORKER_KILL_AT``: the worker SIGKILLs itself at its N-th task). The training cases run
scripts/run_pretrain.py (alone and under ``paddle.distributed.launch --nproc_per_node 2``) on a 2-layer 64-wide
model over token files of the scratch corpus, and scripts/run_seq_cls.py on a 2-layer 32-wide model over 48 tsv rows;
signals are real ``kill``s of the trainer, the launcher, its process group, a rank or a DataLoader worker.
tests/test_faults.py runs a fast subset of these same cases.

    python benchmarks/bench_faults.py --only pretrain_signal,finetune_resume   # kinds, spaces as underscores
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
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
TRAIN_THREADS = "1"  # training runs: OMP_NUM_THREADS (2 ranks on 2 cores), PYTHONUNBUFFERED (logs as they happen)
TINY_PRETRAIN_MODEL = {  # tests/test_pretrain.py's TINY_MODEL; vocab_size: the Env vocabulary's
    "vocab_size": 0, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 256,
    "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 128, "type_vocab_size": 2, "initializer_range": 0.02, "pad_token_id": 0,
}  # fmt: skip
FINETUNE_CHARS = "好差很太不错棒烂喜欢讨厌满意失望推荐值得"
TINY_FINETUNE_MODEL = {  # tests/test_finetune_safety.py's CONFIG
    "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
    "hidden_act": "gelu", "max_position_embeddings": 32, "vocab_size": 40, "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
}  # fmt: skip


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

    # ------------------------------------------------------------------ training inputs (built on first use)

    def pretrain_inputs(self) -> tuple[str, str]:
        """(token-file dir, tiny model config json) for scripts/run_pretrain.py: the docs through
        create_pretraining_data.py --cn_seg_func char, a 2-layer 64-wide model with the Env vocabulary's size."""
        data, model = os.path.join(self.work, "pretrain_data"), os.path.join(self.work, "tiny_pretrain.json")
        if not os.path.isfile(model):
            shutil.rmtree(data, ignore_errors=True)
            os.makedirs(data)
            made = self.run(self.cpd(os.path.join(data, "pd"), "--workers", "1"))
            if made.rc != 0:
                raise RuntimeError(f"create_pretraining_data failed: {made.err.strip()[-300:]}")
            with open(os.path.join(self.vocab, "vocab.txt"), encoding="utf-8") as f:
                vocab_size = sum(1 for line in f if line.strip())
            with open(model + ".tmp", "w", encoding="utf-8") as f:
                json.dump({**TINY_PRETRAIN_MODEL, "vocab_size": vocab_size}, f)
            os.replace(model + ".tmp", model)
        return data, model

    def pretrain_flags(self, out: str, *more: str, **flags: object) -> list[str]:
        """run_pretrain.py's flags of a tiny CPU run into ``out`` (``flags`` override, ``more`` appended as given)."""
        data, model = self.pretrain_inputs()
        values: dict[str, object] = dict(
            model_name_or_path=model, tokenizer_name_or_path=self.vocab, input_dir=data, output_dir=out,
            device="cpu", max_seq_len=64, micro_batch_size=8, num_workers=0, eval_iters=0, test_iters=0,
            max_steps=60, checkpoint_steps=1000, save_steps=1000, logging_freq=1, seed=7,
        )  # fmt: skip
        values.update(flags)
        return [x for k, v in values.items() for x in (f"--{k}", str(v))] + list(more)

    def pretrain(self, out: str, *more: str, **flags: object) -> list[str]:
        return self.script("run_pretrain") + self.pretrain_flags(out, *more, **flags)

    def launch(self, log_dir: str, out: str, *more: str, **flags: object) -> list[str]:
        """``python -m paddle.distributed.launch --nproc_per_node 2`` of the tiny pretraining."""
        return [
            sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir", log_dir,
            os.path.join(self.tree, "scripts", "run_pretrain.py"), *self.pretrain_flags(out, *more, **flags),
        ]  # fmt: skip

    def finetune_inputs(self) -> dict[str, str]:
        """A vocab dir, a tiny model config and train/dev tsv files (pos/neg), as tests/test_finetune_safety.py."""
        root = os.path.join(self.work, "finetune_data")
        names = (("vocab", "vocab"), ("config", "config.json"), ("train", "train.tsv"), ("dev", "dev.tsv"))
        paths = {k: os.path.join(root, v) for k, v in names}
        if not os.path.isfile(paths["config"]):
            shutil.rmtree(root, ignore_errors=True)
            os.makedirs(paths["vocab"])
            with open(os.path.join(paths["vocab"], "vocab.txt"), "w", encoding="utf-8") as f:
                f.write("\n".join(["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]", *FINETUNE_CHARS]) + "\n")
            rng = random.Random(0)
            pos, neg = "很好棒喜欢满意推荐值得", "差太烂讨厌失望不"
            for split, n in (("train", 48), ("dev", 16)):
                with open(paths[split], "w", encoding="utf-8") as f:
                    for _ in range(n):
                        label = rng.choice(["pos", "neg"])
                        text = "".join(rng.choice(pos if label == "pos" else neg) for _ in range(rng.randint(3, 8)))
                        f.write(f"{text}\t{label}\n")
            with open(paths["config"] + ".tmp", "w", encoding="utf-8") as f:
                json.dump(TINY_FINETUNE_MODEL, f)
            os.replace(paths["config"] + ".tmp", paths["config"])
        return paths

    def seq_cls(self, out: str, *more: str, **flags: object) -> list[str]:
        """run_seq_cls.py of the tiny model: 6 steps an epoch, evaluation and a checkpoint every 3 steps."""
        f = self.finetune_inputs()
        values: dict[str, object] = dict(
            model_name_or_path=f["config"], tokenizer_name_or_path=f["vocab"], train_file=f["train"],
            dev_file=f["dev"], max_seq_length=16, batch_size=8, max_steps=12, eval_steps=3, save_steps=3,
            logging_steps=1, learning_rate=5e-3, seed=1, device="cpu", output_dir=out,
        )  # fmt: skip
        values.update(flags)
        flat = [x for k, v in values.items() for x in (f"--{k}", str(v))]
        return self.script("run_seq_cls") + flat + ["--do_train", "--do_eval", *more]

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

    def start_training(self, cmd: list[str], fsize: int | None = None) -> subprocess.Popen:
        return self.start(cmd, fsize, OMP_NUM_THREADS=TRAIN_THREADS, PYTHONUNBUFFERED="1")

    def run_training(self, cmd: list[str], fsize: int | None = None) -> Run:
        start = time.time()
        return self.finish(self.start_training(cmd, fsize), start)

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


# ------------------------------------------------------------------------------------------ engine: helpers


def _json(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def saved_step(checkpoint: str) -> int | None:
    """The global step of a checkpoint dir (its trainer_state.json), None when there is none."""
    state = _json(os.path.join(checkpoint, "trainer_state.json"))
    return None if state is None else int(state["global_step"])


def train_records(out: str) -> int:
    try:
        with open(os.path.join(out, "train_log.jsonl"), encoding="utf-8") as f:
            return sum('"event": "train"' in line for line in f)
    except OSError:
        return 0


def wait_for(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 90.0) -> bool:
    """Poll ``ready`` until it holds (True) or ``proc`` ends / the time is up (False)."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if ready():
            return True
        time.sleep(0.1)
    return False


def not_started(proc: subprocess.Popen, e: Env, start: float, what: str) -> Outcome:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    run = e.finish(proc, start, timeout=30)
    last = (run.err.strip().splitlines() or ["(no stderr)"])[-1]
    return Outcome(False, f"{what} (rc {run.rc}): {last[:200]}")


def crash_marks(text: str) -> list[str]:
    return [m for m in ("Traceback", "FatalError", "SIGABRT") if m in text]


def stopped(run: Run, rc: int, last_line: str) -> str | None:
    """None when ``run`` ended as a stopped run (status, exactly one ``error:`` line, last, no crash), else why."""
    if run.rc is None:
        return f"hung: still running after {run.seconds:.0f} s"
    lines = run.err.strip().splitlines() or ["(no stderr)"]
    if crash_marks(run.err):
        return f"rc {run.rc}, {'/'.join(crash_marks(run.err))} on stderr: {lines[-1][:160]}"
    if run.rc != rc or lines[-1] != last_line or len(run.error_lines()) != 1:
        return f"rc {run.rc}, {len(run.error_lines())} error lines, last line: {lines[-1][:160]}"
    return None


def workerlog(log_dir: str, rank: int) -> str:
    try:
        with open(os.path.join(log_dir, f"workerlog.{rank}"), encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def rank_pids(launcher: int) -> dict[int, int]:
    """rank -> pid of the launcher's worker processes (PADDLE_TRAINER_ID in their environment)."""
    found = {}
    for pid in child_pids(launcher):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
        except OSError:
            continue
        if b"PADDLE_TRAINER_ID" in env:
            found[int(env[b"PADDLE_TRAINER_ID"])] = pid
    return found


# ------------------------------------------------------------------------------------------ engine: pretraining


def pretrain_sigterm(e: Env) -> Outcome:
    """SIGTERM (twice, as the launcher sends it) to a single-process run after a few steps; the same command again."""
    out = os.path.join(fresh(e, "pt_term"), "out")
    cmd = e.pretrain(out)
    start = time.time()
    proc = e.start_training(cmd)
    if not wait_for(proc, lambda: train_records(out) >= 3):
        return not_started(proc, e, start, "did not reach step 3")
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGTERM)
    run = e.finish(proc, start)
    why = stopped(run, 143, "error: terminated (SIGTERM)")
    step = saved_step(os.path.join(out, "model_last"))
    if why or step is None or f"terminated at step {step}" not in run.out:
        return Outcome(False, why or f"model_last at step {step}, stdout does not say 'terminated at step {step}'")
    again = e.run_training(cmd)
    resumed = f"resuming from {os.path.join(out, 'model_last')}: step {step}" in again.out
    done = saved_step(os.path.join(out, "model_last"))
    ok = again.rc == 0 and resumed and done == 60
    return Outcome(
        ok,
        f"rc 143 at step {step}, model_last at {step}; rerun rc {again.rc}, resumed: {resumed}, model_last at {done}",
    )


def pretrain_sigint_group(e: Env) -> Outcome:
    """SIGINT to the process group (Ctrl-C) of a single-process run with --num_workers 2."""
    out = os.path.join(fresh(e, "pt_int"), "out")
    start = time.time()
    proc = e.start_training(e.pretrain(out, num_workers=2))
    if not wait_for(proc, lambda: train_records(out) >= 3):
        return not_started(proc, e, start, "did not reach step 3")
    kids = child_pids(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)
    run = e.finish(proc, start)
    why = stopped(run, 130, "error: interrupted")
    step = saved_step(os.path.join(out, "model_last"))
    if why or step is None or f"interrupted at step {step}" not in run.out:
        return Outcome(False, why or f"model_last at step {step}, stdout does not say 'interrupted at step {step}'")
    time.sleep(0.5)
    alive = [k for k in kids if os.path.exists(f"/proc/{k}") and "zombie" not in _status(k)]
    if alive:
        return Outcome(False, f"rc 130 at step {step}; DataLoader workers still alive: {alive}")
    return Outcome(True, f"rc 130: error: interrupted; model_last at step {step}; {len(kids)} worker(s) gone")


def _launch_stop(e: Env, name: str, send: Callable[[subprocess.Popen], None]) -> Outcome:
    work = fresh(e, name)
    out, logs = os.path.join(work, "out"), os.path.join(work, "log")
    start = time.time()
    proc = e.start_training(e.launch(logs, out))
    if not wait_for(proc, lambda: train_records(out) >= 3, timeout=150):
        return not_started(proc, e, start, "the launch did not reach step 3")
    send(proc)
    run = e.finish(proc, start)
    if run.rc is None:
        return Outcome(False, f"hung: the launch still ran after {run.seconds:.0f} s")
    step = saved_step(os.path.join(out, "model_last"))
    said = []
    for rank in (0, 1):
        text = workerlog(logs, rank)
        if crash_marks(text):
            last = (text.strip().splitlines() or [""])[-1]
            return Outcome(False, f"workerlog.{rank}: {'/'.join(crash_marks(text))}; last line: {last[:160]}")
        said.append([int(w.split()[-1].rstrip(".,:;")) for w in _stop_phrases(text)])
    if step is None or any(s != [step] for s in said):
        return Outcome(False, f"model_last at step {step}; workerlogs say stopped at {said}")
    errors = [line for r in (0, 1) for line in workerlog(logs, r).splitlines() if line.startswith("error:")]
    return Outcome(
        True,
        f"launcher rc {run.rc}; both ranks stopped at step {step}, model_last at {step}; "
        f"ranks said {sorted(set(errors))}",
    )


def _stop_phrases(text: str) -> list[str]:
    import re

    return re.findall(r"(?:terminated|interrupted) at step \d+", text)


def launch_sigterm(e: Env) -> Outcome:
    """2-process launch: SIGTERM to the launcher (it passes SIGTERM on to both ranks)."""
    return _launch_stop(e, "launch_term", lambda proc: proc.send_signal(signal.SIGTERM))


def launch_sigint_group(e: Env) -> Outcome:
    """2-process launch: SIGINT to the launcher's process group (Ctrl-C in its terminal)."""
    return _launch_stop(e, "launch_int", lambda proc: os.killpg(proc.pid, signal.SIGINT))


def launch_rank_killed(e: Env) -> Outcome:
    """2-process launch, rank 1 SIGKILLed mid-run: rank 0 says so in one line and the launch ends."""
    work = fresh(e, "launch_kill")
    out, logs = os.path.join(work, "out"), os.path.join(work, "log")
    start = time.time()
    proc = e.start_training(e.launch(logs, out, max_steps=5000))
    if not wait_for(proc, lambda: train_records(out) >= 5, timeout=150):
        return not_started(proc, e, start, "the launch did not reach step 5")
    ranks = rank_pids(proc.pid)
    if 1 not in ranks:
        return not_started(proc, e, start, f"rank 1 not found among the launcher's children ({ranks})")
    os.kill(ranks[1], signal.SIGKILL)
    run = e.finish(proc, start)
    if run.rc is None:
        return Outcome(False, f"hung: the launch still ran {run.seconds:.0f} s after rank 1 died")
    text = workerlog(logs, 0)
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    lines = text.strip().splitlines() or ["(empty)"]
    if crash_marks(text):
        return Outcome(False, f"launcher rc {run.rc}; workerlog.0: {'/'.join(crash_marks(text))}; {lines[-1][:160]}")
    ok = (
        len(errors) == 1
        and lines[-1] == errors[0]
        and errors[0].startswith("error: rank 0 of 2")
        and "rank 1" in errors[0]
        and "died" in errors[0]
    )
    said = errors[0] if len(errors) == 1 else f"{len(errors)} error lines, last line {lines[-1]!r}"
    return Outcome(ok and run.rc != 0, f"launcher rc {run.rc} after {run.seconds:.0f} s; workerlog.0: {said[:220]}")


def dataloader_worker_killed(e: Env) -> Outcome:
    """--num_workers 1, the DataLoader worker (a child of the trainer) SIGKILLed after model_last; the rerun resumes."""
    out = os.path.join(fresh(e, "pt_loader_kill"), "out")
    cmd = e.pretrain(out, num_workers=1, checkpoint_steps=2)
    start = time.time()
    proc = e.start_training(cmd)
    if not wait_for(proc, lambda: saved_step(os.path.join(out, "model_last")) is not None and train_records(out) >= 3):
        return not_started(proc, e, start, "no model_last by step 3")
    workers = child_pids(proc.pid)
    if not workers:
        return not_started(proc, e, start, "no DataLoader worker process found")
    os.kill(workers[0], signal.SIGKILL)
    run = e.finish(proc, start)
    result = run.one_line_error(2, "DataLoader worker")
    if not result.held:
        raised = [line.strip() for line in run.err.splitlines() if "DataLoader process (pid" in line]
        more = f"; raised: {raised[-1][:160]}" if raised and raised[-1][:100] not in result.detail else ""
        return Outcome(False, result.detail + more)
    step = saved_step(os.path.join(out, "model_last"))
    again = e.run_training(cmd)
    resumed = "resuming from" in again.out
    ok = again.rc == 0 and resumed and saved_step(os.path.join(out, "model_last")) == 60
    return Outcome(ok, f"{result.detail}; rerun from step {step}: rc {again.rc}, resumed: {resumed}")


def _pretrain_refused(e: Env, name: str, needle: str, **flags: object) -> Outcome:
    out = os.path.join(fresh(e, name), "out")
    result = e.run_training(e.pretrain(out, **flags)).one_line_error(2, needle)
    if result.held and os.path.exists(out):
        return Outcome(False, f"{result.detail}; the output dir was created: {os.listdir(out)}")
    return result


def pretrain_max_lr_inf(e: Env) -> Outcome:
    """--max_lr inf: one line, no output dir."""
    return _pretrain_refused(e, "pt_lr_inf", "--max_lr: inf is not a finite number", max_lr="inf")


def pretrain_max_lr_nan(e: Env) -> Outcome:
    """--max_lr nan: one line, no output dir."""
    return _pretrain_refused(e, "pt_lr_nan", "--max_lr: nan is not a finite number", max_lr="nan")


def pretrain_warmup_nan(e: Env) -> Outcome:
    """--warmup_rate nan: one line, no output dir."""
    return _pretrain_refused(e, "pt_warmup_nan", "--warmup_rate: nan is not a finite number", warmup_rate="nan")


def pretrain_max_lr_negative(e: Env) -> Outcome:
    """--max_lr -1e-3: a value (not a flag), refused in one line about --max_lr."""
    result = _pretrain_refused(e, "pt_lr_neg", "--max_lr", max_lr="-1e-3")
    if result.held and "expected one argument" in result.detail:
        return Outcome(False, f"{result.detail} (-1e-3 read as a flag)")
    return result


def pretrain_model_steps_no_last(e: Env) -> Outcome:
    """An output dir with model_4, model_8 and no model_last: the rerun resumes from model_8, model_4 untouched."""
    out = os.path.join(fresh(e, "pt_no_last"), "out")
    first = e.run_training(e.pretrain(out, max_steps=8, save_steps=4))
    if first.rc != 0 or saved_step(os.path.join(out, "model_8")) != 8:
        return Outcome(False, f"setup failed (rc {first.rc}): {first.err.strip()[-200:]}")
    shutil.rmtree(os.path.join(out, "model_last"))
    kept = {n: checksums(os.path.join(out, n)) for n in ("model_4", "model_8")}
    again = e.run_training(e.pretrain(out, max_steps=10, save_steps=4))
    resumed = f"resuming from {os.path.join(out, 'model_8')}" in again.out
    changed = [n for n, sums in kept.items() if checksums(os.path.join(out, n)) != sums]
    last = saved_step(os.path.join(out, "model_last"))
    ok = again.rc == 0 and resumed and not changed and last == 10
    return Outcome(
        ok,
        f"rerun rc {again.rc}, resumed from model_8: {resumed}, model_last at {last}, "
        f"changed: {changed or 'none of model_4, model_8'}",
    )


def pretrain_resume_other_vocab(e: Env) -> Outcome:
    """A rerun into a checkpoint with another vocabulary (two tokens swapped): one line, the output dir unchanged."""
    out = os.path.join(fresh(e, "pt_other_vocab"), "out")
    first = e.run_training(e.pretrain(out, max_steps=2))
    if first.rc != 0:
        return Outcome(False, f"setup failed (rc {first.rc}): {first.err.strip()[-200:]}")
    other = os.path.join(os.path.dirname(out), "other_vocab")
    shutil.copytree(e.vocab, other)
    with open(os.path.join(other, "vocab.txt"), encoding="utf-8") as f:
        lines = f.read().splitlines()
    lines[10], lines[11] = lines[11], lines[10]
    with open(os.path.join(other, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")

    def data(folder: str) -> dict[str, str]:  # the run's files (the lock file records its holder's pid)
        return {k: v for k, v in checksums(folder).items() if not os.path.basename(k).startswith(".")}

    before = data(out)
    result = e.run_training(e.pretrain(out, max_steps=4, tokenizer_name_or_path=other)).one_line_error(
        2, "not the vocabulary"
    )
    changed = sorted(k for k in before.keys() | data(out).keys() if before.get(k) != data(out).get(k))
    return result if not changed else Outcome(False, f"{result.detail}; changed: {changed[:3]}")


def pretrain_shared_log_dir(e: Env) -> Outcome:
    """A run whose launch --log_dir another running launch holds: one line, rc 2."""
    log_dir = os.path.join(fresh(e, "pt_log_dir"), "launch_log")
    os.makedirs(log_dir)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from ernie.utils.lock import lock_output_dir; "
         "lock_output_dir(sys.argv[1]); print('held', flush=True); time.sleep(60)", log_dir],
        env=e.env(), stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        holder.stdout.readline()
        out = os.path.join(os.path.dirname(log_dir), "out")
        start = time.time()
        proc = subprocess.Popen(
            e.pretrain(out, max_steps=2), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=e.env(PADDLE_LOG_DIR=log_dir), start_new_session=True,
        )  # fmt: skip
        return e.finish(proc, start).one_line_error(2, "--log_dir")
    finally:
        holder.kill()


def pretrain_diverges(e: Env) -> Outcome:
    """--max_lr 1e30, 6 steps (the streak limit of 10 not reached): rc 2, the last step named, no model_6."""
    out = os.path.join(fresh(e, "pt_diverge"), "out")
    run = e.run_training(e.pretrain(out, max_lr="1e30", max_steps=6, max_nonfinite_steps=10))
    result = run.one_line_error(2, "last training step (6)")
    if result.held and os.path.exists(os.path.join(out, "model_6")):
        return Outcome(False, f"{result.detail}; model_6 written")
    return result


def pretrain_trainer_flags(e: Env) -> Outcome:
    """--fp16 true is PaddleNLP Trainer's flag (taken); --fp16_opt, a prefix of --fp16_opt_level, is refused."""
    out = os.path.join(fresh(e, "pt_fp16"), "out")
    taken = e.run_training(e.pretrain(out, "--fp16", "true", max_steps=2))
    said = (taken.err.strip().splitlines() or [""])[-1]
    unknown = any("unrecognized" in line or "ambiguous" in line for line in taken.error_lines())
    if unknown or "Traceback" in taken.err or taken.rc is None:
        return Outcome(False, f"--fp16 true: rc {taken.rc}: {said[:200]}")
    prefix = e.run_training(e.pretrain(os.path.join(out, "b"), "--fp16_opt", "O1", max_steps=2))
    refused = prefix.one_line_error(2, "--fp16_opt")
    fp16 = "ran" if taken.rc == 0 else f"taken, then rc {taken.rc}: {(taken.error_lines() or [said])[0][:120]}"
    ok = refused.held and (taken.rc == 0 or len(taken.error_lines()) == 1)
    return Outcome(ok, f"--fp16 true: {fp16}; --fp16_opt O1: {refused.detail}")


# ------------------------------------------------------------------------------------------ engine: fine-tuning


def checkpoints(out: str) -> list[int]:
    if not os.path.isdir(out):
        return []
    return sorted(int(n.split("-")[1]) for n in os.listdir(out) if n.startswith("checkpoint-") and n[11:].isdigit())


def run_status(out: str) -> str | None:
    status = _json(os.path.join(out, "run_status.json"))
    return None if status is None else status.get("status")


def finetune_sigterm(e: Env) -> Outcome:
    """SIGTERM to run_seq_cls.py after its first checkpoint: 143, checkpoint-N, "running"; the rerun completes."""
    out = os.path.join(fresh(e, "ft_term"), "out")
    cmd = e.seq_cls(out, max_steps=60, eval_steps=30, save_steps=4)
    start = time.time()
    proc = e.start_training(cmd)
    if not wait_for(proc, lambda: bool(checkpoints(out))):
        return not_started(proc, e, start, "no checkpoint written")
    proc.send_signal(signal.SIGTERM)
    run = e.finish(proc, start)
    why = stopped(run, 143, "error: terminated (SIGTERM)")
    saved, status = checkpoints(out), run_status(out)
    said = [int(p.split()[-1]) for p in _stop_phrases(run.out + run.err)]
    if why or not saved or said != [saved[-1]] or status != "running":
        return Outcome(False, why or f"checkpoints {saved}, said stopped at {said}, run_status {status}")
    again = e.run_training(cmd)
    resumed = f"resuming from {os.path.join(out, f'checkpoint-{saved[-1]}')}" in again.out + again.err
    ok = again.rc == 0 and resumed and run_status(out) == "complete"
    return Outcome(
        ok,
        f"rc 143, terminated at step {saved[-1]}, checkpoints {saved}, run_status running; rerun "
        f"rc {again.rc}, resumed from checkpoint-{saved[-1]}: {resumed}, run_status {run_status(out)}",
    )


def _finetune_refused(e: Env, name: str, needle: str, **flags: object) -> Outcome:
    out = os.path.join(fresh(e, name), "out")
    result = e.run_training(e.seq_cls(out, **flags)).one_line_error(2, needle)
    if result.held and os.path.exists(out):
        return Outcome(False, f"{result.detail}; the output dir was created: {os.listdir(out)}")
    return result


def finetune_lr_nan(e: Env) -> Outcome:
    """run_seq_cls.py --learning_rate nan: one line, no output dir."""
    return _finetune_refused(e, "ft_lr_nan", "--learning_rate", learning_rate="nan")


def finetune_max_seq_length_2(e: Env) -> Outcome:
    """run_seq_cls.py --max_seq_length 2: one line."""
    return _finetune_refused(e, "ft_len2", "--max_seq_length", max_seq_length=2)


def finetune_diverges(e: Env) -> Outcome:
    """run_seq_cls.py --learning_rate 1e30 --do_export: rc 2, not "complete", no final model, no export."""
    out = os.path.join(fresh(e, "ft_diverge"), "out")
    result = e.run_training(e.seq_cls(out, "--do_export", learning_rate="1e30")).one_line_error(2)
    left = [n for n in ("model_state.pdparams", "export") if os.path.exists(os.path.join(out, n))]
    if result.held and (left or run_status(out) == "complete"):
        return Outcome(False, f"{result.detail}; run_status {run_status(out)}, written: {left}")
    return Outcome(result.held, f"{result.detail}; run_status {run_status(out)}" if result.held else result.detail)


def finetune_resume_changed(e: Env) -> Outcome:
    """A SIGKILLed run resumed with another --batch_size / --learning_rate / --max_seq_length: one line naming the
    flag each time; with the same settings it resumes."""
    out = os.path.join(fresh(e, "ft_resume"), "out")
    base = dict(max_steps=60, eval_steps=30, save_steps=4)
    start = time.time()
    proc = e.start_training(e.seq_cls(out, **base))
    if not wait_for(proc, lambda: bool(checkpoints(out))):
        return not_started(proc, e, start, "no checkpoint written")
    os.killpg(proc.pid, signal.SIGKILL)
    e.finish(proc, start, timeout=30)
    if not checkpoints(out):
        return Outcome(False, "no checkpoint left after the SIGKILL")
    said, failed = [], []
    for flag, value in (("batch_size", 4), ("learning_rate", 1e-3), ("max_seq_length", 24)):
        before = visible(checksums(out))
        refused = e.run_training(e.seq_cls(out, **{**base, flag: value})).one_line_error(2, f"--{flag}")
        after = visible(checksums(out))
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        if not refused.held:
            failed.append(f"--{flag} {value}: {refused.detail}")
        elif changed:
            named = refused.detail[refused.detail.rfind("(") : refused.detail.rfind(")") + 1]
            failed.append(
                f"--{flag} {value} refused in one line {named}, but the refused run rewrote {', '.join(changed)}"
            )
        else:
            said.append(refused.detail)
    again = e.run_training(e.seq_cls(out, **base))
    resumed = "resuming from" in again.out + again.err
    ok = not failed and again.rc == 0 and resumed and run_status(out) == "complete"
    return Outcome(ok, f"{' / '.join(failed or said)}; same settings: rc {again.rc}, resumed: {resumed}")


def visible(sums: dict[str, str]) -> dict[str, str]:
    """Checksums without hidden names (the lock, a killed run's temporary dirs, which any run may clean)."""
    return {k: v for k, v in sums.items() if not any(part.startswith(".") for part in k.split(os.sep))}


def finetune_disk_full(e: Env) -> Outcome:
    """run_seq_cls.py with a 32 KB file-size limit: the first checkpoint's weights cannot be written."""
    out = os.path.join(fresh(e, "ft_full"), "out")
    run = e.run_training(e.seq_cls(out), fsize=32 << 10)
    result = run.one_line_error(2, "cannot write")
    if result.held and (out not in result.detail and "checkpoint" not in result.detail):
        return Outcome(False, f"{result.detail} (no path named)")
    if result.held and run_status(out) == "complete":
        return Outcome(False, f"{result.detail}; run_status complete")
    return Outcome(result.held, f"{result.detail}; run_status {run_status(out)}" if result.held else result.detail)


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
    ("pretrain signal", "pretrain_sigterm_resume", pretrain_sigterm),
    ("pretrain signal", "sigint_group_workers", pretrain_sigint_group),
    ("pretrain signal", "launch_sigterm", launch_sigterm),
    ("pretrain signal", "launch_sigint_group", launch_sigint_group),
    ("pretrain dead process", "launch_rank1_sigkill", launch_rank_killed),
    ("pretrain dead process", "dataloader_worker_sigkill", dataloader_worker_killed),
    ("pretrain flags", "max_lr_inf", pretrain_max_lr_inf),
    ("pretrain flags", "max_lr_nan", pretrain_max_lr_nan),
    ("pretrain flags", "warmup_rate_nan", pretrain_warmup_nan),
    ("pretrain flags", "max_lr_negative", pretrain_max_lr_negative),
    ("pretrain flags", "fp16_trainer_flag_and_prefix", pretrain_trainer_flags),
    ("pretrain resume", "model_step_without_model_last", pretrain_model_steps_no_last),
    ("pretrain resume", "other_vocabulary_refused", pretrain_resume_other_vocab),
    ("pretrain flags", "shared_launch_log_dir", pretrain_shared_log_dir),
    ("pretrain diverges", "max_lr_1e30_last_step", pretrain_diverges),
    ("finetune signal", "finetune_sigterm_resume", finetune_sigterm),
    ("finetune flags", "learning_rate_nan", finetune_lr_nan),
    ("finetune flags", "max_seq_length_2", finetune_max_seq_length_2),
    ("finetune diverges", "learning_rate_1e30", finetune_diverges),
    ("finetune resume", "changed_settings_refused", finetune_resume_changed),
    ("finetune disk full", "checkpoint_save", finetune_disk_full),
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
            a.results,
            "Fault matrix (data side and training engine)",
            "benchmarks/bench_faults.py",
            command,
            setup,
            start,
            load0,
            body,
        )
    if not a.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(o.held for _, _, o, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
