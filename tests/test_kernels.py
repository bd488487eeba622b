"""Kernel selection (ernie.ops.select_kernels / kernel_plan) and the plain fallback of the fused paths, on the CPU."""
from __future__ import annotations

import logging

import numpy as np
import pytest

paddle = pytest.importorskip("paddle")

from ernie import ErnieConfig, ErnieForPretraining, ops  # noqa: E402

V, S, B = 64, 12, 3


def tiny_model(**kw) -> ErnieForPretraining:
    base = dict(vocab_size=V, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                max_position_embeddings=32, hidden_act="gelu")
    base.update(kw)
    paddle.seed(3)
    return ErnieForPretraining(ErnieConfig(**base))


def inputs():
    rs = np.random.RandomState(0)
    ids = rs.randint(1, V, (B, S))
    ids[-1, 8:] = 0  # padding, so the attention mask matters
    seg = (np.arange(S)[None] >= S // 2).repeat(B, 0)
    return paddle.to_tensor(ids.astype("int64")), paddle.to_tensor(seg.astype("int64"))


def test_selection_by_device_and_dtype():
    plain = ops.KernelPlan(False, False, False)
    assert ops.select_kernels("cpu", "float32") == plain
    assert ops.select_kernels("cpu", "bfloat16") == plain
    for dtype in ("float16", "bfloat16", "paddle.float16"):
        plan = ops.select_kernels("gpu", dtype)
        assert plan.fused_attention and plan.fused_residual_ln and not plan.fused_dropout_add
    xpu = ops.select_kernels("xpu", "bfloat16")
    assert xpu.fused_attention and xpu.fused_dropout_add and not xpu.fused_residual_ln
    assert plain.describe() == "plain ops"


def test_cpu_plan_is_plain_and_logged_once(caplog, monkeypatch):
    monkeypatch.setattr(ops, "_LOGGED", set())
    with caplog.at_level(logging.INFO, logger="ernie.ops"):
        x = paddle.ones([2, 3])
        assert ops.kernel_plan(x) == ops.KernelPlan(False, False, False)
        ops.kernel_plan(x)
    lines = [r.getMessage() for r in caplog.records if r.name == "ernie.ops"]
    assert lines == ["ERNIE kernels on cpu/float32: plain ops"]


def test_forced_fused_paths_fall_back_to_plain_outputs(caplog, monkeypatch):
    """The GPU plan forced on the CPU: SDPA attention runs, the fused residual-LN (not registered on CPU) falls back
    with one log line; outputs and gradients equal the plain path's."""
    monkeypatch.setattr(ops, "_LOGGED", set())
    monkeypatch.setattr(ops, "_UNAVAILABLE", set())
    ids, seg = inputs()

    def run(plan):
        model = tiny_model()
        model.eval()  # dropout off: the two paths draw masks from different generators
        if plan is not None:
            for layer in model.ernie.encoder.layers:
                layer.kernels = plan
                layer.self_attn.fused_attention = plan.fused_attention
        scores, sop = model(ids, seg)
        (scores.square().mean() + sop.sum()).backward()
        return scores.numpy(), {n: p.grad.numpy() for n, p in model.named_parameters() if p.grad is not None}

    ref, ref_grads = run(None)
    with caplog.at_level(logging.INFO, logger="ernie.ops"):
        try:
            got, grads = run(ops.select_kernels("gpu", "float16"))
        except (RuntimeError, ValueError, NotImplementedError) as e:  # no CPU SDPA in this Paddle build
            pytest.skip(f"scaled_dot_product_attention unavailable on CPU: {e}")
    np.testing.assert_allclose(got, ref, atol=1e-5)
    assert grads.keys() == ref_grads.keys()
    for name, g in grads.items():
        np.testing.assert_allclose(g, ref_grads[name], atol=1e-5, err_msg=name)
    fallbacks = [r.getMessage() for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(fallbacks) == 1 and "cpu/float32" in fallbacks[0]


def test_fused_dropout_add_semantics():
    """The XPU plan's dropout-add (runs on the CPU too): residual + x * keep / (1 - p), then the LayerNorm."""
    paddle.seed(0)
    x, residual = paddle.rand([4, 64]) + 1.0, paddle.rand([4, 64])
    norm = paddle.nn.LayerNorm(64)
    identity = ops.residual_layer_norm(x, residual, lambda t: t, 0.5, True, ops.KernelPlan(False, False, True))
    delta = (identity - residual).numpy()
    kept = np.isclose(delta, 2 * x.numpy(), rtol=1e-5)
    assert np.all(kept | np.isclose(delta, 0.0)) and 0.2 < kept.mean() < 0.8
    evald = ops.residual_layer_norm(x, residual, norm, 0.5, False, ops.KernelPlan(False, False, True))
    np.testing.assert_allclose(evald.numpy(), norm(x + residual).numpy(), atol=1e-6)


def test_importing_the_model_has_no_process_side_effects():
    """Importing is free of process side effects (the settings come with the first model or an entry point, see
    tests/test_cpu_tuning.py): importing ernie.modeling calls no mallopt and leaves
    Paddle's strided views on; tune_cpu_math() then sets both (dense kernels on the CPU only, and never over a
    FLAGS_use_stride_kernel the user set)."""
    import subprocess
    import sys

    code = (
        "import ctypes\n"
        "calls = []\n"
        "class Libc:\n"
        "    def __init__(self, name): pass\n"
        "    def mallopt(self, *a): calls.append(a)\n"
        "real = ctypes.CDLL\n"
        "ctypes.CDLL = lambda name, *a, **k: Libc(name) if name == 'libc.so.6' else real(name, *a, **k)\n"
        "import paddle, ernie.modeling\n"
        "stride = lambda: paddle.get_flags('FLAGS_use_stride_kernel')['FLAGS_use_stride_kernel']\n"
        "print(len(calls), stride())\n"
        "from ernie.utils.cpu_tuning import tune_cpu_math\n"
        "tune_cpu_math('gpu')\n"
        "print(len(calls), stride())\n"
        "tune_cpu_math()\n"
        "print(len(calls), stride())\n"
    )
    unset = ("ERNIE_NO_CPU_TUNING", "FLAGS_use_stride_kernel")
    env = {k: v for k, v in __import__("os").environ.items() if k not in unset}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-6:] == ["0", "True", "2", "True", "4", "False"]
    env["FLAGS_use_stride_kernel"] = "1"  # the user's setting wins
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == "True"
