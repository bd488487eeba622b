"""Kernel selection on the CPU: the residual-LN plan (ernie.ops.select_kernels / kernel_plan, its plain fallback) and
the attention kernel (ernie.ops.choose_attention) against Paddle's own SDPA predicates with the GPU checks mocked, and
the mask shape handed to each SDPA backend against that kernel's documented contract."""

from __future__ import annotations

import logging

import numpy as np
import pytest

paddle = pytest.importorskip("paddle")

from ernie import ErnieConfig, ErnieForPretraining, ops  # noqa: E402

V, S, B = 64, 12, 3


def tiny_model(**kw) -> ErnieForPretraining:
    base = dict(
        vocab_size=V,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        hidden_act="gelu",
    )
    base.update(kw)
    paddle.seed(3)
    return ErnieForPretraining(ErnieConfig(**base))


def inputs():
    rs = np.random.RandomState(0)
    ids = rs.randint(1, V, (B, S))
    ids[-1, 8:] = 0  # padding, so the attention mask matters
    seg = (np.arange(S)[None] >= S // 2).repeat(B, 0)
    return paddle.to_tensor(ids.astype("int64")), paddle.to_tensor(seg.astype("int64"))


def test_residual_ln_selection_by_device_and_dtype():
    """The fused residual-LN only for the dtypes Paddle registers it for on GPU (float/double/float16, not bf16)."""
    plain = ops.KernelPlan(False, False)
    assert ops.select_kernels("cpu", "float32") == plain
    assert ops.select_kernels("cpu", "bfloat16") == plain
    for dtype in ("float16", "float32", "paddle.float16"):
        assert ops.select_kernels("gpu", dtype) == ops.KernelPlan(True, False)
    assert ops.select_kernels("gpu", "bfloat16") == plain  # bf16 O2: LayerNorm weights are bf16, no such kernel
    assert ops.select_kernels("xpu", "bfloat16") == ops.KernelPlan(False, True)
    assert plain.describe() == "plain ops"


def test_cpu_plan_is_plain_and_logged_once(caplog, monkeypatch):
    monkeypatch.setattr(ops, "_LOGGED", set())
    with caplog.at_level(logging.INFO, logger="ernie.ops"):
        x = paddle.ones([2, 3])
        assert ops.kernel_plan(x) == ops.KernelPlan(False, False)
        ops.kernel_plan(x)
    lines = [r.getMessage() for r in caplog.records if r.name == "ernie.ops"]
    assert lines == ["ERNIE residual+LayerNorm on cpu/float32: plain ops"]


def test_forced_fused_residual_ln_falls_back_to_plain_outputs(caplog, monkeypatch):
    """The GPU fp16 plan forced on the CPU: the fused residual-LN (not registered on CPU) falls back with one log line;
    outputs and gradients equal the plain path's."""
    monkeypatch.setattr(ops, "_LOGGED", set())
    monkeypatch.setattr(ops, "_UNAVAILABLE", set())
    ids, seg = inputs()

    def run(plan):
        model = tiny_model()
        model.eval()
        if plan is not None:
            for layer in model.ernie.encoder.layers:
                layer.kernels = plan
        scores, sop = model(ids, seg)
        (scores.square().mean() + sop.sum()).backward()
        return scores.numpy(), {n: p.grad.numpy() for n, p in model.named_parameters() if p.grad is not None}

    ref, ref_grads = run(None)
    with caplog.at_level(logging.INFO, logger="ernie.ops"):
        got, grads = run(ops.select_kernels("gpu", "float16"))
    np.testing.assert_allclose(got, ref, atol=1e-5)
    assert grads.keys() == ref_grads.keys()
    for name, g in grads.items():
        np.testing.assert_allclose(g, ref_grads[name], atol=1e-5, err_msg=name)
    fallbacks = [r.getMessage() for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(fallbacks) == 1 and "cpu/float32" in fallbacks[0]


def test_fused_residual_ln_needs_matching_operands(caplog, monkeypatch):
    """Mixed operands (AMP O1: fp16 sublayer output, fp32 residual; or LayerNorm weights not fp32) never reach the
    fused kernel: plain ops, one log line naming the dtypes."""
    import paddle.incubate.nn.functional as IF

    monkeypatch.setattr(ops, "_LOGGED", set())
    monkeypatch.setattr(
        IF,
        "fused_bias_dropout_residual_layer_norm",
        lambda *a, **k: pytest.fail("fused kernel called with mismatched operands"),
    )
    norm = paddle.nn.LayerNorm(8)
    x, residual = paddle.rand([2, 8]), paddle.rand([2, 8])
    with caplog.at_level(logging.INFO, logger="ernie.ops"):
        out = ops.residual_layer_norm(x.astype("float16"), residual, norm, 0.0, False, ops.KernelPlan(True, False))
    np.testing.assert_allclose(out.numpy(), norm(x.astype("float16").astype("float32") + residual).numpy(), atol=1e-5)
    assert any(
        "plain ops here" in r.getMessage() and "residual paddle.float32" in r.getMessage() for r in caplog.records
    )


def test_fused_dropout_add_semantics():
    """The XPU plan's dropout-add (runs on the CPU too): residual + x * keep / (1 - p), then the LayerNorm."""
    paddle.seed(0)
    x, residual = paddle.rand([4, 64]) + 1.0, paddle.rand([4, 64])
    norm = paddle.nn.LayerNorm(64)
    identity = ops.residual_layer_norm(x, residual, lambda t: t, 0.5, True, ops.KernelPlan(False, True))
    delta = (identity - residual).numpy()
    kept = np.isclose(delta, 2 * x.numpy(), rtol=1e-5)
    assert np.all(kept | np.isclose(delta, 0.0)) and 0.2 < kept.mean() < 0.8
    evald = ops.residual_layer_norm(x, residual, norm, 0.5, False, ops.KernelPlan(False, True))
    np.testing.assert_allclose(evald.numpy(), norm(x + residual).numpy(), atol=1e-6)


# ---- attention kernel selection, with Paddle's own predicates (paddle.nn.functional.sdpa) seeing a GPU ------------


@pytest.fixture
def as_on_gpu(monkeypatch):
    """Paddle's real can_use_flash_attention / can_use_mem_efficient_attention / select_sdp_for_sdpa, with only their
    device and hardware checks answered as on an SM 8.x GPU (everything else: Paddle's code on our arguments)."""
    from paddle.nn.attention import sdpa as backends
    from paddle.nn.functional import sdpa

    # a CUDA build sets FLAGS_flash_attn_available / FLAGS_mem_efficient_attn_available, which enable the backends
    monkeypatch.setattr(backends, "_backend_enabled", {b: True for b in backends._backend_enabled})
    monkeypatch.setattr(sdpa, "check_all_tensors_on_device", lambda params: True)
    monkeypatch.setattr(sdpa, "check_flash_attention_hardware_support", lambda device_id: True)
    monkeypatch.setattr(sdpa, "check_mem_efficient_hardware_support", lambda device_id: True)
    monkeypatch.setattr(sdpa, "_config", {})  # re-read the supported dtypes (bf16 included when supported)
    monkeypatch.setattr(sdpa.paddle.device, "is_bf16_supported", lambda including_emulation=True: True)
    monkeypatch.setattr(ops, "_ATTN_CACHE", {})
    monkeypatch.setattr(ops, "_LOGGED", set())
    return sdpa


def qkv(dtype, B=2, S=16, heads=2, head_dim=8):
    rs = np.random.RandomState(1)
    return [paddle.to_tensor(rs.randn(B, S, heads, head_dim).astype("float32")).astype(dtype) for _ in range(3)]


def test_flash_needs_scale_none(as_on_gpu):
    """The first finding, on Paddle's own predicate: any scale other than None rules flash attention out."""
    q, k, v = qkv("float16")
    params = ops._sdp_params(q, k, v, [2, 1, 16, 16], 0.0)
    assert as_on_gpu.can_use_flash_attention(params)
    params.scale = 1.0
    assert not as_on_gpu.can_use_flash_attention(params)
    assert as_on_gpu.can_use_mem_efficient_attention(params)  # what the old code silently got instead


@pytest.mark.parametrize(
    "requested, dtype, S, head_dim, expected, refusal",
    [
        ("eager", "float16", 16, 8, "eager", None),
        ("sdpa", "float16", 16, 8, "flash_attn", None),
        ("sdpa", "bfloat16", 16, 8, "flash_attn", None),
        ("flash", "bfloat16", 16, 8, "flash_attn", None),
        ("sdpa", "float32", 16, 8, "mem_efficient", None),  # flash has no fp32 kernel
        ("sdpa", "float32", 12, 8, "math", None),  # mask last dim not a multiple of 8: no memory-efficient either
        ("flash", "float32", 16, 8, "eager", "check_dtypes_low_precision_fa"),
        ("flash", "float16", 16, 12, "eager", "check_head_dim_size_flash"),  # head_dim % 8 != 0
        ("flash", "float16", 16, 264, "eager", "check_head_dim_size_flash"),  # head_dim > 256
    ],
)
def test_attention_kernel_selection_on_gpu(as_on_gpu, caplog, requested, dtype, S, head_dim, expected, refusal):
    q, k, v = qkv(dtype, S=S, head_dim=head_dim)
    with caplog.at_level(logging.INFO, logger="ernie.ops"):
        assert ops.choose_attention(requested, q, k, v, 0.1) == expected
    lines = [r.getMessage() for r in caplog.records if r.name == "ernie.ops"]
    assert lines[-1].endswith(ops.describe_attention(expected)) and f"--attention {requested}" in lines[-1]
    if refusal:
        assert any(refusal in line and "eager instead" in line for line in lines)


def test_attention_on_the_real_cpu_predicates():
    """Unmocked on the CPU: "flash" is refused by Paddle's device check, "sdpa" is SDPA's math path."""
    q, k, v = qkv("float32")
    assert ops.choose_attention("flash", q, k, v, 0.0) == "eager"
    assert ops.choose_attention("sdpa", q, k, v, 0.0) == "math"


def mem_efficient_bias_ok(bias_shape, q_shape, k_shape) -> bool:
    """Paddle's memory_efficient_attention bias contract (memory_efficient_attention_utils.h
    GetMemoryEfficientBiasStrideB, and the forward kernel striding heads by Sq * Sk): rank 4 [B, H, Sq, Sk]."""
    B, Sq, H = q_shape[0], q_shape[1], q_shape[2]
    Sk = k_shape[1]
    return len(bias_shape) == 4 and list(bias_shape) == [B, H, Sq, Sk]


def flash_mask_ok(mask, q, k) -> bool:
    """Paddle's flash_attn mask contract (flash_attn_utils.h): rank >= 4, q's dtype, [B | 1, 1 | H, Sq, Sk]."""
    s = list(mask.shape)
    return (
        len(s) == 4
        and mask.dtype == q.dtype
        and s[2] == q.shape[1]
        and s[3] == k.shape[1]
        and s[0] in (1, q.shape[0])
        and s[1] in (1, q.shape[2])
    )


def padding_bias(B=2, S=16, pad_from=11, dtype="float32"):
    keep = np.ones((B, S), bool)
    keep[-1, pad_from:] = False
    return ops.attention_bias(paddle.to_tensor(keep).unsqueeze([1, 2]), dtype)  # [B, 1, 1, S], as the model builds


def reference_attention(q, k, v, bias):
    """softmax(q k^T / sqrt(d) + bias) v in fp32, [B, S, heads, d] layout."""
    qf, kf, vf = (t.astype("float32").transpose([0, 2, 1, 3]) for t in (q, k, v))
    scores = paddle.matmul(qf, kf, transpose_y=True) * qf.shape[-1] ** -0.5 + bias.astype("float32")
    return paddle.matmul(paddle.nn.functional.softmax(scores, -1), vf).transpose([0, 2, 1, 3])


def test_the_old_mask_breaks_memory_efficient_attention():
    """The model's broadcast bias [B, 1, 1, S] (what the old code handed SDPA, which only expands heads) fails the
    memory-efficient kernel's contract; the bias sdpa_bias gives it meets it."""
    q, k, v = qkv("float32")
    old = padding_bias()
    expanded_by_sdpa = [old.shape[0], q.shape[2], old.shape[2], old.shape[3]]
    assert not mem_efficient_bias_ok(expanded_by_sdpa, q.shape, k.shape)
    assert mem_efficient_bias_ok(ops.sdpa_bias(old, "mem_efficient", q, k).shape, q.shape, k.shape)
    flash_bias = ops.sdpa_bias(padding_bias(dtype="float16"), "flash_attn", *qkv("float16")[:2])
    assert flash_bias.dtype == paddle.float16 and list(flash_bias.shape) == [2, 1, 16, 16]


def test_memory_efficient_path_end_to_end(as_on_gpu, monkeypatch):
    """ "sdpa" in fp32 with the GPU predicates: Paddle's SDPA dispatches to memory_efficient_attention (replaced by a
    stand-in that enforces the kernel's bias contract and computes the reference) with scale=None."""
    import paddle.incubate.nn.memory_efficient_attention as mea

    seen = {}

    def fake(query, key, value, attn_bias=None, p=0.0, scale=None, training=True):
        seen.update(bias=list(attn_bias.shape), scale=scale)
        assert mem_efficient_bias_ok(attn_bias.shape, query.shape, key.shape), attn_bias.shape
        return reference_attention(query, key, value, attn_bias)

    monkeypatch.setattr(mea, "memory_efficient_attention", fake)
    q, k, v = qkv("float32")
    bias = padding_bias()
    kernel = ops.choose_attention("sdpa", q, k, v, 0.0)
    assert kernel == "mem_efficient"
    out = ops.sdpa_attention(q, k, v, bias, kernel, 0.0, False)
    assert seen == {"bias": [2, 2, 16, 16], "scale": None}
    np.testing.assert_allclose(out.numpy(), reference_attention(q, k, v, bias).numpy(), atol=1e-5)


def test_model_through_memory_efficient_attention(as_on_gpu, monkeypatch):
    """The model with --attention sdpa, Paddle's SDPA dispatching to the (stand-in) memory-efficient kernel: unscaled q
    with scale=None (head_dim 8: 1/sqrt(8) is not a power of two, so a scale applied twice or never shows), the
    padding bias in the kernel's shape; outputs and gradients equal the eager path's."""
    import paddle.incubate.nn.memory_efficient_attention as mea

    calls = []

    def fake(query, key, value, attn_bias=None, p=0.0, scale=None, training=True):
        calls.append(list(attn_bias.shape))
        assert scale is None and mem_efficient_bias_ok(attn_bias.shape, query.shape, key.shape), attn_bias.shape
        return reference_attention(query, key, value, attn_bias)

    monkeypatch.setattr(mea, "memory_efficient_attention", fake)
    rs = np.random.RandomState(0)
    ids = rs.randint(1, V, (B, 16))
    ids[-1, 9:] = 0
    ids = paddle.to_tensor(ids.astype("int64"))

    def run(attention):
        model = tiny_model(attention=attention)
        model.eval()
        scores, sop = model(ids)
        (scores.square().mean() + sop.sum()).backward()
        return scores.numpy(), {n: p.grad.numpy() for n, p in model.named_parameters() if p.grad is not None}

    ref, ref_grads = run("eager")
    got, grads = run("sdpa")
    assert calls == [[B, 2, 16, 16]] * 2  # both layers, [B, heads, S, S]
    np.testing.assert_allclose(got, ref, atol=1e-5)
    for name, g in grads.items():
        np.testing.assert_allclose(g, ref_grads[name], atol=1e-5, err_msg=name)


def test_flash_path_end_to_end(as_on_gpu, monkeypatch):
    """ "flash" in bf16 with the GPU predicates: Paddle's SDPA calls the flash_attn op (replaced by a stand-in enforcing
    its mask contract) with a [B, 1, S, S] bf16 bias."""
    seen = {}

    def fake(query, key, value, fixed_seed_offset, attn_mask, dropout, causal, return_softmax, is_test, rng_name):
        seen.update(mask=list(attn_mask.shape), dtype=attn_mask.dtype)
        assert flash_mask_ok(attn_mask, query, key)
        return reference_attention(query, key, value, attn_mask).astype(query.dtype), None, None, None

    monkeypatch.setattr(paddle._C_ops, "flash_attn", fake)
    q, k, v = qkv("bfloat16")
    kernel = ops.choose_attention("flash", q, k, v, 0.0)
    assert kernel == "flash_attn"
    bias = padding_bias(dtype="bfloat16")
    out = ops.sdpa_attention(q, k, v, bias, kernel, 0.0, False)
    assert seen == {"mask": [2, 1, 16, 16], "dtype": paddle.bfloat16}
    ref = reference_attention(q, k, v, bias).numpy()
    np.testing.assert_allclose(out.astype("float32").numpy(), ref, atol=0.05)


def test_model_default_attention_is_eager(caplog, monkeypatch):
    monkeypatch.setattr(ops, "_LOGGED", set())
    ids, seg = inputs()
    with caplog.at_level(logging.INFO, logger="ernie.ops"):
        tiny_model()(ids, seg)
    lines = [r.getMessage() for r in caplog.records if "--attention" in r.getMessage()]
    assert lines == ["ERNIE attention on cpu/float32 (--attention eager): " + ops.describe_attention("eager")]
    assert ErnieConfig().attention == "eager"


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
