"""The process-level CPU settings (ernie.utils.cpu_tuning, docs/cpu.md) are in effect wherever Paddle math runs: in
every entry point (the registry of ernie/cli.py: scripts/*.py and [project.scripts]) and in a plain Python-API
process, asked of MKL itself (``mkl_serv_cpu_detect``: the GEMM code path MKL chose at its first call) after the math
ran; never over what the user set; all off with ERNIE_NO_CPU_TUNING=1. Denormals are flushed (x86 MXCSR FTZ + DAZ)
in every compute thread, read from the register of each thread (the main one, a thread started later, every worker
of both OpenMP runtimes, a DataLoader worker process) and seen in a GEMM of subnormal inputs; off with
ERNIE_NO_FLUSH_DENORMALS=1. No timing here: benchmarks/bench_denormals.py measures what the flush is for."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from data_tools.lac import find_lac_model_dir
from ernie.cli import ENTRY_POINTS
from ernie.utils import UserError, cpu_tuning
from ernie.utils.cpu_tuning import MXCSR_DAZ, MXCSR_FTZ, default_num_threads, mkl_cpu_type, mxcsr

ROOT = Path(__file__).resolve().parents[1]
USER_KNOBS = (
    "ERNIE_NO_CPU_TUNING",
    "ERNIE_NO_FLUSH_DENORMALS",
    "KMP_INHERIT_FP_CONTROL",
    "OMP_NUM_THREADS",
    "MKL_DEBUG_CPU_TYPE",
    "FLAGS_use_stride_kernel",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "GLIBC_TUNABLES",
)

# What the process looks like once its math ran: MKL's code path, Paddle's strided-kernel flag, what was applied.
REPORT = """
def report():
    import ctypes, json, os, paddle
    from ernie.utils import cpu_tuning
    lib = os.path.join(os.path.dirname(paddle.__file__), "libs", "libmklml_intel.so")
    mkl = ctypes.CDLL(lib).mkl_serv_cpu_detect() if os.path.exists(lib) else None
    stride = paddle.get_flags("FLAGS_use_stride_kernel")["FLAGS_use_stride_kernel"]
    print("REPORT " + json.dumps({"mkl": mkl, "env": os.environ.get("MKL_DEBUG_CPU_TYPE"), "stride": stride,
                                  "applied": cpu_tuning.applied(), "mxcsr": cpu_tuning.mxcsr()}), flush=True)
"""

# Runs one entry point with the body of its first ``cli_main`` function replaced by a probe that does a GEMM (the
# entry's first math) and reports: whatever the entry does before its body (module code, the cli_main wrapper, a
# console-script shim) is what the probe sees. An entry point that does not go through cli_main never reaches the
# probe, and fails the test.
ENTRY_RUNNER = (
    REPORT
    + """
import importlib, runpy, sys
import ernie.utils, ernie.utils.errors as errors
real_cli_main = errors.cli_main
def probe(*args, **kwargs):
    import paddle
    x = paddle.randn([64, 64])
    paddle.matmul(x, x).numpy()
    report()
    sys.exit(0)
errors.cli_main = ernie.utils.cli_main = lambda fn: real_cli_main(probe)
kind, target = sys.argv[1], sys.argv[2]
sys.argv = [target]
if kind == "script":
    runpy.run_path(target, run_name="__main__")
else:
    module, name = target.split(":")
    getattr(importlib.import_module(module), name)()
"""
)


def entry_points() -> list[tuple[str, str]]:
    """Every entry point of the registry: ("script", path) for its scripts/*.py, ("console", "module:function") for
    its console scripts (tests/test_cli.py: they are what scripts/ and [project.scripts] hold)."""
    scripts = [("script", str(ROOT / ep.script_path)) for ep in ENTRY_POINTS if ep.script]
    return scripts + [("console", ep.console_target) for ep in ENTRY_POINTS]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in USER_KNOBS}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def run_report(code: str, args: list[str] = (), **extra: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=clean_env(**extra),
        timeout=300,
        check=False,
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("REPORT ")]
    assert lines, f"no report (exit {out.returncode}):\n{out.stdout[-1500:]}\n{out.stderr[-3000:]}"
    return json.loads(lines[-1][len("REPORT ") :])


def assert_tuned(rep: dict) -> None:
    wanted = mkl_cpu_type()
    if wanted is not None:  # this CPU needs MKL's AVX2 path: MKL must have taken it at its first GEMM
        assert rep["env"] == wanted and rep["mkl"] == int(wanted), rep
    else:
        assert rep["env"] is None, rep
    if sys.platform.startswith("linux"):
        assert {"M_MMAP_THRESHOLD", "M_TRIM_THRESHOLD"} <= set(rep["applied"]), rep
    if rep["mxcsr"] is not None:  # x86-64 Linux: denormals flushed in the thread that ran the math
        assert rep["mxcsr"] & FLUSH == FLUSH and rep["applied"]["flush_denormals"] is True, rep


FLUSH = MXCSR_FTZ | MXCSR_DAZ


def test_entry_points_are_enumerated():
    kinds = entry_points()
    assert len([k for k in kinds if k[0] == "script"]) >= 15 and len([k for k in kinds if k[0] == "console"]) >= 15
    for kind, target in kinds:  # every script names the module it runs (the runner resolves it the same way)
        if kind == "script":
            ast.parse(Path(target).read_text(encoding="utf-8"))


@pytest.mark.slow
@pytest.mark.parametrize("kind,target", entry_points(), ids=lambda v: Path(v).name if "/" in v else v)
def test_every_entry_point_has_the_settings_in_effect_at_its_first_gemm(kind, target):
    assert_tuned(run_report(ENTRY_RUNNER, [kind, target]))


def test_mkl_cpu_type_follows_what_mkl_needs():
    def info(vendor, flags):
        return f"processor\t: 0\nvendor_id\t: {vendor}\nflags\t\t: fpu sse2 {flags}\n\nprocessor\t: 1\n"

    assert mkl_cpu_type(info("AuthenticAMD", "avx avx2 fma avx512f")) == "5"
    assert mkl_cpu_type(info("HygonGenuine", "avx avx2 fma")) == "5"
    assert mkl_cpu_type(info("GenuineIntel", "avx avx2 fma avx512f")) is None  # MKL's own dispatch is right
    assert mkl_cpu_type(info("AuthenticAMD", "avx")) is None  # no AVX2/FMA: the AVX2 kernels would not run
    assert mkl_cpu_type("") is None


MODEL_PROCESS = (
    REPORT
    + """
import sys
import paddle
from ernie import ErnieConfig, ErnieForPretraining
config = ErnieConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64)
model = ErnieForPretraining(config)
if len(sys.argv) > 1:  # the user changes the flag after the first model: a later model keeps their setting
    paddle.set_flags({"FLAGS_use_stride_kernel": True})
    model = ErnieForPretraining(config)
ids = paddle.randint(1, 100, [2, 16])
prediction_scores, _ = model(ids)
prediction_scores.mean().backward()
report()
"""
)


def test_a_model_built_through_the_public_api_applies_the_settings():
    rep = run_report(MODEL_PROCESS)
    assert_tuned(rep)
    assert rep["stride"] is False and rep["applied"]["FLAGS_use_stride_kernel"] is False
    assert rep["applied"].get("num_threads", 1) == default_num_threads()  # import paddle alone would give 1
    assert run_report(MODEL_PROCESS, ["user_flag"])["stride"] is True


def test_the_user_settings_win_and_the_switch_turns_everything_off():
    rep = run_report(
        MODEL_PROCESS,
        MKL_DEBUG_CPU_TYPE="0",
        FLAGS_use_stride_kernel="1",
        MALLOC_MMAP_THRESHOLD_="262144",
        OMP_NUM_THREADS="1",
    )
    assert rep["env"] == "0" and rep["stride"] is True, rep
    assert set(rep["applied"]) <= {"M_TRIM_THRESHOLD", "flush_denormals"}, rep  # the flush: its own switch
    rep = run_report(MODEL_PROCESS, ERNIE_NO_CPU_TUNING="1")
    assert rep["env"] is None and rep["stride"] is True and rep["applied"] == {}, rep
    assert rep["mxcsr"] is None or rep["mxcsr"] & FLUSH == 0, rep
    if mkl_cpu_type() is not None and rep["mkl"] is not None:
        assert rep["mkl"] != int(mkl_cpu_type())  # the generic path: what the settings change


def test_a_lac_runner_applies_the_settings_before_its_first_gemm():
    try:
        find_lac_model_dir()
    except UserError:
        pytest.skip("LAC's seg_model is not installed")
    code = REPORT + (
        "from data_tools.segmentation import get_segmenter\n"
        "print(get_segmenter('lac').segment(['百度是一家高科技公司。']))\n"
        "report()\n"
    )
    assert_tuned(run_report(code))


# A plain Python-API process that has run Paddle math on 2 threads (both OpenMP runtimes' pools started) before
# building its first model, which applies the settings (the library's path: after import paddle and its pools); then
# every thread's MXCSR: the main thread, a thread started afterwards, each worker of Intel's OpenMP (MKL, Paddle's
# kernels) and GNU's (oneDNN), a DataLoader worker process (the pretraining loader's worker_init_fn), and what a
# GEMM of subnormal inputs gives (0 everywhere once flushed, denormals-are-zero; 6.4e-38 a row without).
DENORMAL_PROCESS = """
import ctypes, json, os, threading
import numpy as np
import paddle
from ernie.training.distributed import loader_worker_init
from ernie.utils import cpu_tuning
paddle.base.core.set_num_threads(2)
x = paddle.randn([256, 256])
(x @ x).numpy()
READ = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
def omp_workers(lib):  # MXCSR of every thread of a 2-thread region of one OpenMP runtime
    seen = {}
    def read(_):
        seen[threading.get_native_id()] = cpu_tuning.mxcsr()
    callback = READ(read)
    runtime = ctypes.CDLL(lib, mode=os.RTLD_NOLOAD)
    runtime.GOMP_parallel.argtypes = [READ, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
    runtime.GOMP_parallel(callback, None, 2, 0)
    return sorted(seen.values())
iomp = os.path.join(os.path.dirname(paddle.__file__), "libs", "libiomp5.so")
before = {"iomp": omp_workers(iomp), "gomp": omp_workers("libgomp.so.1")}  # both pools exist from here on
from ernie import ErnieConfig, ErnieForPretraining
ErnieForPretraining(ErnieConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=64))
later = []
t = threading.Thread(target=lambda: later.append(cpu_tuning.mxcsr()))
t.start()
t.join()
class Registers(paddle.io.Dataset):
    def __len__(self):
        return 2
    def __getitem__(self, i):
        return np.array([cpu_tuning.mxcsr(), os.getpid()], dtype="int64")
loader = paddle.io.DataLoader(Registers(), batch_size=1, num_workers=1, worker_init_fn=loader_worker_init)
worker = [b.numpy().tolist()[0] for b in loader]
gemm = (paddle.full([2048, 64], 1e-39) @ paddle.ones([64, 64])).numpy()
print("REPORT " + json.dumps({
    "before": before, "main": cpu_tuning.mxcsr(), "thread": later[0], "iomp": omp_workers(iomp),
    "gomp": omp_workers("libgomp.so.1"), "worker": worker, "pid": os.getpid(),
    "gemm_nonzero_rows": int((gemm != 0).any(axis=1).sum()), "applied": cpu_tuning.applied(),
}), flush=True)
"""


def flushed(register: int) -> bool:
    return register & FLUSH == FLUSH


@pytest.mark.skipif(mxcsr() is None, reason="MXCSR is x86-64 Linux only (elsewhere the flush is a no-op)")
def test_denormals_are_flushed_in_every_compute_thread_and_the_switches_turn_it_off():
    rep = run_report(DENORMAL_PROCESS)
    assert not any(flushed(r) for r in rep["before"]["iomp"] + rep["before"]["gomp"]), rep  # nothing at import
    assert rep["applied"]["flush_denormals"] is True, rep
    assert flushed(rep["main"]) and flushed(rep["thread"]), rep
    assert len(rep["iomp"]) == 2 and all(map(flushed, rep["iomp"])), rep  # MKL's and Paddle's threads
    assert len(rep["gomp"]) == 2 and all(map(flushed, rep["gomp"])), rep  # a pool started before the setting
    assert all(pid != rep["pid"] and flushed(r) for r, pid in rep["worker"]), rep  # the DataLoader worker process
    assert rep["gemm_nonzero_rows"] == 0, rep
    # Intel's OpenMP without its own copy of the master's MXCSR at each region: its workers, started before the
    # setting, have it from the region the setting ran in them
    rep = run_report(DENORMAL_PROCESS, KMP_INHERIT_FP_CONTROL="false")
    assert len(rep["iomp"]) == 2 and all(map(flushed, rep["iomp"])) and rep["gemm_nonzero_rows"] == 0, rep
    for switch in ("ERNIE_NO_FLUSH_DENORMALS", "ERNIE_NO_CPU_TUNING"):
        rep = run_report(DENORMAL_PROCESS, **{switch: "1"})
        registers = [rep["main"], rep["thread"], *rep["iomp"], *rep["gomp"], *(r for r, _ in rep["worker"])]
        assert not any(map(flushed, registers)) and "flush_denormals" not in rep["applied"], (switch, rep)
        assert rep["gemm_nonzero_rows"] == 2048, (switch, rep)  # 1e-39 * 1 summed over 64: still subnormal


@pytest.mark.skipif(mxcsr() is None, reason="MXCSR is x86-64 Linux only")
def test_flush_denormals_sets_and_clears_the_calling_threads_bits():
    start = mxcsr()
    try:
        assert cpu_tuning.flush_denormals(True, omp_workers=False) and flushed(mxcsr())
        assert mxcsr() & ~FLUSH & 0x7F80 == start & 0x7F80  # exception masks and rounding mode untouched
        assert not cpu_tuning.flush_denormals(False, omp_workers=False) and mxcsr() & FLUSH == 0
    finally:
        cpu_tuning.flush_denormals(flushed(start), omp_workers=False)


def test_the_flush_is_a_no_op_off_x86(monkeypatch):
    import platform

    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    assert cpu_tuning.mxcsr() is None and cpu_tuning.flush_denormals() is False
