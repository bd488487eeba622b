"""The process-level CPU settings (ernie.utils.cpu_tuning, docs/cpu.md) are in effect wherever Paddle math runs: in
every entry point (the registry of ernie/cli.py: scripts/*.py and [project.scripts]) and in a plain Python-API
process, asked of MKL itself (``mkl_serv_cpu_detect``: the GEMM code path MKL chose at its first call) after the math
ran; never over what the user set; all off with ERNIE_NO_CPU_TUNING=1."""

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
from ernie.utils import UserError
from ernie.utils.cpu_tuning import default_num_threads, mkl_cpu_type

ROOT = Path(__file__).resolve().parents[1]
USER_KNOBS = (
    "ERNIE_NO_CPU_TUNING",
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
                                  "applied": cpu_tuning.applied()}), flush=True)
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
    assert set(rep["applied"]) <= {"M_TRIM_THRESHOLD"}, rep
    rep = run_report(MODEL_PROCESS, ERNIE_NO_CPU_TUNING="1")
    assert rep["env"] is None and rep["stride"] is True and rep["applied"] == {}, rep
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
