"""Process-level CPU settings for the math libraries: ``tune_cpu_math`` (Paddle is imported only when it is called).

Contract: nothing happens at import; the entry points that train or run the model call :func:`tune_cpu_math` at the
start of ``main``. Every setting keeps fp32 results exact; ``ERNIE_NO_CPU_TUNING=1`` skips them all.
"""
from __future__ import annotations

import os


def tune_cpu_math(device: str = "cpu") -> None:
    """Process-level CPU settings for Paddle's kernels (all keep fp32 results exact).

    Called explicitly by the entry points that train or run the model (pretraining, fine-tuning, inference,
    benchmarks), at the start of ``main`` before Paddle's first GEMM; importing the model does not call it.

    1. MKL's AVX2 GEMM on AMD CPUs: the MKL shipped with the Paddle CPU wheel takes a slow generic path on non-Intel
       CPUs unless ``MKL_DEBUG_CPU_TYPE=5`` (3-4x on every matmul, measured on an AMD EPYC; nothing on Intel, so it
       is set only on AMD CPUs with AVX2, and only if the user has not set it). MKL reads it at its first GEMM.
    2. glibc malloc keeps freed blocks instead of unmapping them (``M_MMAP_THRESHOLD`` / ``M_TRIM_THRESHOLD``):
       Paddle's CPU allocator hands every multi-MB tensor to malloc, and with the default thresholds each one is a
       fresh mmap whose pages fault in one by one, which made an elementwise add 5x slower than the arithmetic.
       The cost is that the process keeps its peak heap instead of returning it to the OS.
    3. Dense kernels instead of strided views, when ``device`` (the run's, "cpu", "gpu", "gpu:0" ...) is the CPU:
       ``FLAGS_use_stride_kernel`` off, as in Paddle 2.x. With it on (Paddle 3's default) a transpose or
       unbind returns a strided view, and the matmul or reshape that consumes it copies it through a generic
       element-by-element kernel: the attention's [B, S, 3, heads, head_dim] permute took 27 ms that way against
       1.3 ms for the dense transpose kernel, and the attention block's forward + backward 81 ms against 18 ms
       (ERNIE-base, batch 8 x 128, 2 threads; a quarter of the training step). Left alone if the user set
       ``FLAGS_use_stride_kernel`` in the environment.
    Set ``ERNIE_NO_CPU_TUNING=1`` to skip all three.
    """
    if os.environ.get("ERNIE_NO_CPU_TUNING"):
        return
    if "MKL_DEBUG_CPU_TYPE" not in os.environ:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                head = f.read(1 << 16)
        except OSError:
            head = ""
        if "AuthenticAMD" in head and " avx2" in head:
            os.environ["MKL_DEBUG_CPU_TYPE"] = "5"
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        libc.mallopt(M_MMAP_THRESHOLD, 1 << 30)
        libc.mallopt(M_TRIM_THRESHOLD, (1 << 31) - 1)
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass
    if "FLAGS_use_stride_kernel" not in os.environ and device.split(":")[0] == "cpu":
        import paddle

        paddle.set_flags({"FLAGS_use_stride_kernel": False})
