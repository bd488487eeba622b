"""Process-level CPU settings for the math libraries (docs/cpu.md lists them): fast by default, on every path.

Contract: nothing happens at import (Paddle is imported only when the Paddle flag is set). The settings are applied

- by every entry point: :func:`ernie.utils.cli_main` calls :func:`tune_process` before the entry's body runs;
- by the library, once per process, before its first GEMM: building a model (``ErniePretrainedModel.__init__``), a
  LAC runner (``data_tools.lac``) or a Paddle Inference predictor (``ernie.deploy.infer``) calls
  :func:`ensure_cpu_tuning`;
- by the training and fine-tuning loops with their run device (:func:`tune_cpu_math`);
- by the DataLoader workers of pretraining (:func:`tune_worker_process`: denormals only).

None is applied over a variable or flag the user set in the environment, and ``ERNIE_NO_CPU_TUNING=1`` skips them
all. :func:`applied` says what this process changed. The settings: denormal floats flushed to zero (x86 MXCSR FTZ +
DAZ, every compute thread; off with ``ERNIE_NO_FLUSH_DENORMALS=1``), MKL's AVX2 code path on non-Intel CPUs, glibc
malloc thresholds, Paddle's dense kernels instead of strided views, and as many math threads as the process has cores
(see :func:`tune_process` and :func:`tune_cpu_math`). All but the first keep every fp32 result exact; the flush
changes only values below float32's smallest normal (1.2e-38), which become 0, as torch's
``set_flush_denormal(True)``.

Flushing denormals: :func:`flush_denormals` (thread-level: MXCSR is per thread), :func:`mxcsr` reads it. x86-64 Linux
only, through the C library's own ``fegetenv`` / ``fesetenv`` (libm, the x86-64 ``fenv_t`` holds MXCSR at byte 28):
no compiler, no executable memory and no import of the C++ extension (``data_tools`` is a layer above this one).
"""

from __future__ import annotations

import os
import sys

from .machine import cpu_info, parse_cpuinfo, usable_cores

NO_TUNING_ENV = "ERNIE_NO_CPU_TUNING"
NO_FLUSH_ENV = "ERNIE_NO_FLUSH_DENORMALS"
MXCSR_FTZ, MXCSR_DAZ = 1 << 15, 1 << 6  # flush-to-zero (results), denormals-are-zero (inputs)
# OpenMP runtimes whose existing worker threads get the setting (a parallel region running fesetenv in each):
# Paddle's MKL and its own kernels use Intel's (paddle/libs/libiomp5.so), oneDNN GNU's; LLVM's for completeness.
_OPENMP_LIBS = ("libiomp5.so", "libgomp.so.1", "libomp.so")
# glibc's own knobs for the two malloc thresholds (environment variables and GLIBC_TUNABLES names)
_MALLOC_ENV = {
    -3: ("MALLOC_MMAP_THRESHOLD_", "glibc.malloc.mmap_threshold"),
    -1: ("MALLOC_TRIM_THRESHOLD_", "glibc.malloc.trim_threshold"),
}
_MALLOC_VALUE = {-3: 1 << 30, -1: (1 << 31) - 1}  # M_MMAP_THRESHOLD: 1 GiB (glibc's maximum on 64 bit); M_TRIM
_applied: dict[str, object] = {}
# OMP_NUM_THREADS as it was before Paddle was imported (import paddle writes "1" when it is unset); None: unknown
_OMP_BEFORE_PADDLE = os.environ.get("OMP_NUM_THREADS") if "paddle" not in sys.modules else None
_library_done = False


def applied() -> dict[str, object]:
    """What this process has changed so far: ``flush_denormals``, ``MKL_DEBUG_CPU_TYPE``, ``M_MMAP_THRESHOLD``,
    ``M_TRIM_THRESHOLD``, ``FLAGS_use_stride_kernel``, ``num_threads`` -> the value set (a copy)."""
    return dict(_applied)


def _libm():
    """The C library's math part (fegetenv / fesetenv) where MXCSR can be set through it: x86-64 Linux; else None."""
    import platform

    if not sys.platform.startswith("linux") or platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    try:
        import ctypes

        for name in ("libm.so.6", "libc.musl-x86_64.so.1", None):  # glibc; musl; whatever the process has
            try:
                lib = ctypes.CDLL(name)
                lib.fegetenv, lib.fesetenv  # noqa: B018  (both must exist)
                return lib
            except (OSError, AttributeError):
                continue
    except ImportError:
        pass
    return None


def _fenv(libm):
    import ctypes

    env = (ctypes.c_ubyte * 32)()  # x86-64 fenv_t: the x87 environment (28 bytes), then MXCSR
    if libm.fegetenv(env) != 0:
        raise OSError("fegetenv failed")
    return env


def mxcsr() -> int | None:
    """The calling thread's MXCSR register (x86-64 Linux), None elsewhere. Bit 15 is flush-to-zero, bit 6
    denormals-are-zero (:data:`MXCSR_FTZ`, :data:`MXCSR_DAZ`)."""
    libm = _libm()
    if libm is None:
        return None
    return int.from_bytes(bytes(_fenv(libm)[28:32]), "little")


def flush_denormals(on: bool = True, omp_workers: bool = True) -> bool:
    """Set (``on``) or clear x86's flush-to-zero and denormals-are-zero bits in the calling thread's MXCSR; with
    ``omp_workers`` also in the worker threads the OpenMP runtimes already loaded have started (one parallel region
    per runtime that runs the same ``fesetenv`` in each of its threads). True when the bits were set; False on other
    CPUs and systems, where it does nothing.

    Why: a float32 below 1.2e-38 (a subnormal) costs the CPU a microcode assist, about a hundred times a normal
    operation, in every SSE/AVX instruction that reads or produces one. Pretraining makes them in its backward pass:
    the gradients of the activations and of the attention probabilities of the positions that get their gradient
    only through attention (docs/cpu.md, "Denormals"); without the flush a CPU pretraining from scratch ran 4.6x
    (tiny) and 6.9x (ERNIE-base) slower at the end of its first 70 / 10 steps. With both bits set such values are
    read and written as 0, what PyTorch's ``torch.set_flush_denormal(True)`` does.

    Threads: MXCSR belongs to a thread. Linux gives a new thread its creator's, and ``fork`` the child its forking
    thread's, so setting it in the main thread before the math starts covers every later thread (entry points and
    the first model: before their first Paddle op, though maybe after ``import paddle``). Intel's OpenMP (MKL's
    GEMMs, Paddle's kernels) also copies the master's MXCSR into its workers at each parallel region
    (``KMP_INHERIT_FP_CONTROL``, on by default); the region run here covers the workers of a pool started before the
    call in any runtime. Not in a forked child (``omp_workers=False``, e.g. a DataLoader worker): GNU OpenMP's pool
    does not survive fork, and a parallel region there would wait for it.
    """
    libm = _libm()
    if libm is None:
        return False
    import ctypes

    env = _fenv(libm)
    value = int.from_bytes(bytes(env[28:32]), "little")
    value = value | MXCSR_FTZ | MXCSR_DAZ if on else value & ~(MXCSR_FTZ | MXCSR_DAZ)
    env[28:32] = list(value.to_bytes(4, "little"))
    if libm.fesetenv(env) != 0:
        return False
    if omp_workers and _other_threads():
        fesetenv = ctypes.cast(libm.fesetenv, ctypes.c_void_p)
        for name in _OPENMP_LIBS:
            try:  # only a runtime the process has loaded already (RTLD_NOLOAD: never loads one)
                omp = ctypes.CDLL(name, mode=os.RTLD_NOLOAD)
                parallel, max_threads = omp.GOMP_parallel, omp.omp_get_max_threads
            except (OSError, AttributeError):
                continue
            # GOMP_parallel(fn, data, num_threads, flags): fn(data) in every thread of the team, fn = fesetenv
            parallel.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
            parallel.restype = None
            # as many threads as the pool may hold: its current setting, or the cores (a pool sized before a change)
            parallel(fesetenv, ctypes.addressof(env), max(1, max_threads(), usable_cores()), 0)
    return bool(on)


def _other_threads() -> bool:
    """Whether this process runs threads besides the calling one (a fresh process or forked child: no)."""
    try:
        return len(os.listdir("/proc/self/task")) > 1
    except OSError:
        return True


def mkl_cpu_type(cpuinfo: str | None = None) -> str | None:
    """The ``MKL_DEBUG_CPU_TYPE`` this CPU needs, from its features: ``"5"`` (MKL's AVX2 code path) when the CPU has
    AVX2 and FMA but is not a GenuineIntel one, else None.

    The MKL of the Paddle CPU wheel (2019.0 Update 5) picks its GEMM code path by the CPUID vendor string: on any
    other vendor (AMD, Hygon, Zhaoxin) it runs its generic SSE path whatever the CPU supports (docs/cpu.md), unless
    ``MKL_DEBUG_CPU_TYPE=5`` tells it to use the AVX2 kernels (which need AVX2 and FMA). On Intel CPUs MKL already
    picks the best path (AVX-512 where there is one), which the variable would downgrade, so it is left alone.
    ``cpuinfo``: the text of /proc/cpuinfo (read when None; no /proc/cpuinfo -> None).
    """
    info = cpu_info() if cpuinfo is None else parse_cpuinfo(cpuinfo)
    if not info:
        return None
    vendor, flags = info.get("vendor_id", ""), set(info.get("flags", "").split())
    if vendor and vendor != "GenuineIntel" and {"avx2", "fma"} <= flags:
        return "5"
    return None


def _user_set_malloc(param: int) -> bool:
    env, tunable = _MALLOC_ENV[param]
    return env in os.environ or tunable in os.environ.get("GLIBC_TUNABLES", "")


def tune_process() -> None:
    """The settings that need no Paddle import (entry points call this first, through ``cli_main``):

    0. Denormals flushed to zero (:func:`flush_denormals`) in the calling thread, and in the OpenMP workers already
       started; ``ERNIE_NO_FLUSH_DENORMALS=1`` leaves MXCSR alone. Every call sets the calling thread again (a
       thread's own register; microseconds).
    1. ``MKL_DEBUG_CPU_TYPE`` (see :func:`mkl_cpu_type`). MKL reads it once, at its first GEMM or vector-math call
       (a matmul, softmax or GELU; not at ``import paddle``): set later, it changes nothing in the process.
    2. glibc malloc keeps freed blocks instead of unmapping them (``M_MMAP_THRESHOLD`` 1 GiB, ``M_TRIM_THRESHOLD``
       2 GiB): Paddle's CPU allocator hands every multi-MB tensor to malloc, and with the default thresholds each
       one is a fresh mmap whose pages fault in one by one, which makes an elementwise add several times slower than
       the arithmetic. The process keeps the heap it reached instead of returning it to the OS between steps, and the
       heap fragments: a higher RSS peak than with every block of 1 MiB or more mmapped, which costs more CPU time
       (figures: docs/cpu.md); ``MALLOC_MMAP_THRESHOLD_`` set by the user wins.
    """
    if os.environ.get(NO_TUNING_ENV):
        return
    if not os.environ.get(NO_FLUSH_ENV) and flush_denormals():
        _applied["flush_denormals"] = True
    if "MKL_DEBUG_CPU_TYPE" not in os.environ:
        cpu_type = mkl_cpu_type()
        if cpu_type is not None:
            os.environ["MKL_DEBUG_CPU_TYPE"] = cpu_type
            _applied["MKL_DEBUG_CPU_TYPE"] = cpu_type
    names = {-3: "M_MMAP_THRESHOLD", -1: "M_TRIM_THRESHOLD"}
    todo = [p for p in names if names[p] not in _applied and not _user_set_malloc(p)]
    if todo:
        try:
            import ctypes

            libc = ctypes.CDLL("libc.so.6")
            for param in todo:
                if libc.mallopt(param, _MALLOC_VALUE[param]):
                    _applied[names[param]] = _MALLOC_VALUE[param]
        except (OSError, AttributeError):  # not glibc: nothing to tune
            pass


def tune_worker_process() -> None:
    """A DataLoader worker's call (``ernie.training.distributed.loader_worker_init``): denormals flushed in the
    worker's own thread (a forked worker has its parent's MXCSR already, a spawned one does not), no OpenMP region
    (see :func:`flush_denormals`). Off with ``ERNIE_NO_FLUSH_DENORMALS=1`` or ``ERNIE_NO_CPU_TUNING=1``."""
    if not os.environ.get(NO_TUNING_ENV) and not os.environ.get(NO_FLUSH_ENV) and flush_denormals(omp_workers=False):
        _applied["flush_denormals"] = True


def tune_cpu_math(device: str = "cpu") -> None:
    """All the settings for a run on ``device`` ("cpu", "gpu", "gpu:0" ...): :func:`tune_process`, and when
    ``device`` is the CPU:

    3. Dense kernels instead of strided views: ``FLAGS_use_stride_kernel`` off, as in Paddle 2.x. With it on (Paddle
       3's default) a transpose or unbind returns a strided view, and the matmul or reshape that consumes it copies
       it through a generic element-by-element kernel, far slower than the dense transpose kernel (the attention's
       [B, S, 3, heads, head_dim] permute; a quarter of ERNIE-base's training step: the profile in
       docs/results/recorded_before_results_files.md). Left alone if the
       user set ``FLAGS_use_stride_kernel`` in the environment.
    4. Math threads: ``import paddle`` sets ``OMP_NUM_THREADS=1`` when it is unset, so a plain Paddle process does its
       GEMMs on one core (PyTorch uses them all). Unless the user set ``OMP_NUM_THREADS`` (:func:`user_set_threads`),
       MKL and OpenMP get :func:`default_num_threads` (the process's cores / the launch's local processes).

    The training and fine-tuning loops call it at the start of ``main`` with their run device. ``ERNIE_NO_CPU_TUNING=1``
    skips everything.
    """
    if os.environ.get(NO_TUNING_ENV):
        return
    tune_process()
    if "FLAGS_use_stride_kernel" not in os.environ and device.split(":")[0] == "cpu":
        try:
            import paddle
        except ImportError:  # e.g. FastDeploy's own environment: no Paddle dygraph to tune
            return
        if paddle.get_flags("FLAGS_use_stride_kernel")["FLAGS_use_stride_kernel"]:
            paddle.set_flags({"FLAGS_use_stride_kernel": False})
            _applied["FLAGS_use_stride_kernel"] = False
    if device.split(":")[0] == "cpu" and "num_threads" not in _applied and not user_set_threads():
        try:
            from paddle.base import core
        except ImportError:
            return
        threads = default_num_threads()
        if threads > 1:
            core.set_num_threads(threads)
            _applied["num_threads"] = threads


def default_num_threads() -> int:
    """Math threads per process: the cores this process may run on, divided by the processes of a
    ``paddle.distributed.launch`` job on this machine (``PADDLE_LOCAL_SIZE``)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, int(os.environ.get("PADDLE_LOCAL_SIZE", "1") or 1)))


def user_set_threads() -> bool:
    """Whether the user chose the math threads: ``OMP_NUM_THREADS`` in the environment the process started with, set
    before Paddle was imported (when this module was imported first), or set to anything but the "1" that
    ``import paddle`` writes when it is unset."""
    if _OMP_BEFORE_PADDLE is not None:
        return True
    try:
        with open("/proc/self/environ", "rb") as f:
            if any(v.startswith(b"OMP_NUM_THREADS=") for v in f.read().split(b"\0")):
                return True
    except OSError:
        pass
    return os.environ.get("OMP_NUM_THREADS", "1") != "1"


def ensure_cpu_tuning(device: str | None = None) -> None:
    """The library's call: :func:`tune_cpu_math` for ``device`` (default: Paddle's current device), once per process,
    so a flag the user changes afterwards (``paddle.set_flags``) stays as they set it. Called where the library is
    about to run Paddle math (a model, LAC runner or inference predictor is built), before its first GEMM."""
    global _library_done
    if _library_done or os.environ.get(NO_TUNING_ENV):
        return
    _library_done = True
    if device is None:
        import paddle

        device = paddle.device.get_device()
    tune_cpu_math(device)
