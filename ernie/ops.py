"""CPU fp32 kernels, dropout and attention-bias helpers for the ERNIE model (ernie/modeling.py).

Contract: every function here computes the same fp32 quantities as the stock Paddle op it replaces (checked by
tests/test_modeling.py and the PaddleNLP weight-parity tests); the fast routes are taken only for fp32 tensors on CPU
in dynamic mode, and everywhere else (GPU, AMP dtypes, static graphs) the stock Paddle ops run.

- :func:`linear` / :class:`Linear` and :func:`add_broadcast` compute bias gradients as a GEMV instead of Paddle's
  slow CPU row reduction, and add the bias after expanding it (Paddle's CPU broadcasting add is 5-30x slower than
  an expand followed by a same-shape add); :func:`add_expanded` is that add for any broadcastable tensor;
- :class:`LayerNorm` runs Paddle's forward kernel and a backward made of GEMV row means and
  same-shape elementwise ops (Paddle's CPU layer_norm_grad takes ~30x its forward);
- :func:`dropout` draws CPU masks from numpy's SFC64 generator (seeded from Paddle's);
- :func:`attention_bias` turns a keep-mask into an additive bias exact in fp32 and safe in fp16/bf16;
- :func:`kernel_plan` picks the accelerator fast paths by device and dtype (:class:`KernelPlan`, logged once per
  device/dtype on logger ``ernie.ops``): F.scaled_dot_product_attention (flash attention under fp16/bf16 on GPU) and
  the fused bias-dropout-residual-LayerNorm kernel; :func:`residual_layer_norm` falls back to the plain ops (and
  logs it) when a fused kernel is not registered for the device/dtype.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle.autograd import PyLayer


# ---- CPU fp32 kernels -----------------------------------------------------------------------------------------------
# Measured on 2 threads, [1024, 768] fp32 (ERNIE-base, batch 8 x 128): Paddle's CPU reduction over rows (the gradient
# of a broadcast bias add) is ~30x slower than the same sum done as a [1, M] x [M, N] GEMV; its broadcasting
# elementwise ops ([M, N] * [N], [M, N] - [M, 1]) take 0.5-3 ms where expand + a same-shape op take 0.15-0.2 ms; its
# layer_norm_grad takes 10-12 ms against 0.3 ms for the forward; its dropout draws random numbers ~3x slower than
# numpy. The functions below compute the same quantities through the fast routes for fp32 tensors on CPU.
# Everywhere else (GPU, AMP dtypes) the stock Paddle ops run.


def _cpu_fp32(x: paddle.Tensor) -> bool:
    # Independent of the grad mode on purpose: recompute runs the forward under no_grad and again with grad, and
    # both runs must take the same path (same dropout masks, same rounding).
    return paddle.in_dynamic_mode() and x.dtype == paddle.float32 and x.place.is_cpu_place()


def _needs_grad(*tensors) -> tuple[bool, ...]:
    """Which PyLayer inputs want a gradient: Paddle requires None for the others (frozen weights, constant inputs)."""
    return tuple(t is not None and not t.stop_gradient for t in tensors)


def _row_sum(dy2: paddle.Tensor) -> paddle.Tensor:
    """Column sums of a 2-D tensor as a GEMV: [M, N] -> [N]."""
    return paddle.matmul(paddle.ones([1, dy2.shape[0]], dtype=dy2.dtype), dy2).reshape([-1])


class _LinearFn(PyLayer):
    """y = x @ W (+ b), or x @ W^T (+ b) with ``transpose_w``; x [..., K] -> y [..., N]."""

    @staticmethod
    def forward(ctx, x, weight, bias, transpose_w):
        lead = list(x.shape[:-1])
        x2 = x.reshape([-1, x.shape[-1]])
        y = paddle.matmul(x2, weight, transpose_y=transpose_w)
        if bias is not None:
            y = y.add_(bias.expand(y.shape))
        ctx.save_for_backward(x2, weight)
        ctx.meta = (lead, transpose_w, bias is not None, _needs_grad(x, weight, bias))
        return y.reshape(lead + [y.shape[-1]])

    @staticmethod
    def backward(ctx, dy):
        x2, weight = ctx.saved_tensor()
        lead, transpose_w, has_bias, (need_x, need_w, need_b) = ctx.meta
        dy2 = dy.reshape([-1, dy.shape[-1]])
        dx = dw = db = None
        if need_x:  # weight [N, K] with transpose_w, else [K, N]
            dx = paddle.matmul(dy2, weight, transpose_y=not transpose_w)
            dx = dx.reshape(lead + [dx.shape[-1]])
        if need_w:
            dw = paddle.matmul(dy2, x2, transpose_x=True) if transpose_w else paddle.matmul(x2, dy2, transpose_x=True)
        if need_b:
            db = _row_sum(dy2)
        return (dx, dw, db) if has_bias else (dx, dw)


class _AddBroadcastFn(PyLayer):
    """y = x + r, with r broadcast over x's leading dims (r [*T], x [..., *T])."""

    @staticmethod
    def forward(ctx, x, r):
        ctx.r_shape, ctx.needs = list(r.shape), _needs_grad(x, r)
        return x + r.expand(x.shape)

    @staticmethod
    def backward(ctx, dy):
        numel = int(np.prod(ctx.r_shape))
        need_x, need_r = ctx.needs
        return (dy if need_x else None), (_row_sum(dy.reshape([-1, numel])).reshape(ctx.r_shape) if need_r else None)


class _LayerNormFn(PyLayer):
    """y = (x - mean) / sqrt(var + eps) * w + b over the last axis; x [..., n], w and b [n]."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        ctx.save_for_backward(x, weight)
        ctx.eps, ctx.needs = eps, _needs_grad(x, weight, bias)
        return F.layer_norm(x, x.shape[-1:], weight, bias, eps)

    @staticmethod
    def backward(ctx, dy):
        x, weight = ctx.saved_tensor()
        need_x, need_w, need_b = ctx.needs
        n = x.shape[-1]
        x2, dy2 = x.reshape([-1, n]), dy.reshape([-1, n])
        rows = [x2.shape[0], n]
        mean_of = paddle.full([n, 1], 1.0 / n, dtype=x.dtype)  # row means as GEMVs: [M, n] x [n, 1]
        xc = x2 - paddle.matmul(x2, mean_of).expand(rows)
        rstd = paddle.rsqrt(paddle.matmul(xc * xc, mean_of) + ctx.eps).expand(rows)
        xhat = xc * rstd
        dx = None
        if need_x:
            g = dy2 * weight.expand(rows)
            dx = (g - paddle.matmul(g, mean_of).expand(rows) - xhat * paddle.matmul(g * xhat, mean_of).expand(rows))
            dx = (dx * rstd).reshape(x.shape)
        return dx, (_row_sum(dy2 * xhat) if need_w else None), (_row_sum(dy2) if need_b else None)


def linear(x, weight, bias=None, transpose_w: bool = False) -> paddle.Tensor:
    """x @ W + b ([..., K] -> [..., N]); W is [K, N], or [N, K] with ``transpose_w``."""
    if _cpu_fp32(x):
        return _LinearFn.apply(x, weight, bias, transpose_w)
    y = paddle.matmul(x, weight, transpose_y=transpose_w)
    return y if bias is None else y + bias


def add_broadcast(x: paddle.Tensor, r: paddle.Tensor) -> paddle.Tensor:
    """x + r, r broadcast over the leading dims of x."""
    return _AddBroadcastFn.apply(x, r) if _cpu_fp32(x) else x + r


def add_expanded(x: paddle.Tensor, r: paddle.Tensor) -> paddle.Tensor:
    """x + r for any r broadcastable to x's shape (an attention bias [B, 1, 1, S] on scores [B, heads, S, S]).

    On CPU fp32, r is expanded first; r's gradient, if it needs one, is then expand's (a reduction: meant for
    constants such as the attention bias)."""
    if _cpu_fp32(x) and list(r.shape) != list(x.shape):
        return x + r.expand(x.shape)
    return x + r


def _keep_bits(shape: list[int], p: float, seed: int) -> np.ndarray:
    """bool keep-mask: False with probability p (to 2**-32); 32 bits of numpy's SFC64 per element (its raw output is
    ~4x faster than PCG64's float32 draws)."""
    n = int(np.prod(shape))
    bits = np.random.SFC64(seed).random_raw((n + 1) // 2).view(np.uint32)[:n]
    return (bits >= np.uint32(min(round(p * 2.0**32), 2**32 - 1))).reshape(shape)


class _DropoutFn(PyLayer):
    """y = x * keep / (1 - p), keeping only the bool mask for the backward (1 byte per element, where ``x * mask``
    kept x and a float32 mask: 8 bytes; ERNIE-base batch 8 x 128 trains in ~200 MB less)."""

    @staticmethod
    def forward(ctx, x, keep, scale):
        ctx.keep, ctx.scale = keep, scale
        return x * (keep.astype(x.dtype) * scale)

    @staticmethod
    def backward(ctx, dy):
        return dy * (ctx.keep.astype(dy.dtype) * ctx.scale), None


def dropout(x: paddle.Tensor, p: float, training: bool) -> paddle.Tensor:
    """Dropout in upscale-in-train mode, skipped entirely when it is the identity (eval or p == 0).

    On CPU fp32 the keep-mask comes from numpy (:func:`_keep_bits`), seeded from Paddle's generator, so
    ``paddle.seed`` makes runs reproducible and recompute (which replays Paddle's RNG state) regenerates the same mask.
    """
    if not training or p <= 0:
        return x
    if not _cpu_fp32(x):
        return F.dropout(x, p, training=True)
    seed = int(paddle.randint(0, 2**31 - 1, [1]).item())
    keep = paddle.to_tensor(_keep_bits(list(x.shape), p, seed))
    if x.stop_gradient:
        return x * (keep.astype(x.dtype) * np.float32(1.0 / (1.0 - p)))
    return _DropoutFn.apply(x, keep, np.float32(1.0 / (1.0 - p)))


class Linear(nn.Linear):
    """nn.Linear (same parameters and names) whose CPU training step uses the fast kernels above."""

    def forward(self, x):
        return linear(x, self.weight, self.bias)


class LayerNorm(nn.LayerNorm):
    """nn.LayerNorm over the last axis (same parameters and names) whose CPU backward uses the fast kernels above."""

    def forward(self, x):
        if _cpu_fp32(x) and self.weight is not None and self.bias is not None and len(self._normalized_shape) == 1:
            return _LayerNormFn.apply(x, self.weight, self.bias, self._epsilon)
        # nn.LayerNorm.forward's own call (no zero-argument super(): Paddle 2.6's dy2static cannot convert it)
        return F.layer_norm(x, self._normalized_shape, self.weight, self.bias, self._epsilon)


def attention_bias(mask: paddle.Tensor, dtype) -> paddle.Tensor:
    """Additive attention bias in ``dtype`` from a keep-mask (bool) or an additive float mask.

    Masked positions get the dtype's lowest finite value (not a -1e4 constant), so the bias is exact in fp32 and
    safe in fp16/bf16.
    """
    if mask.dtype == paddle.bool:
        # built in fp32 (exact for the fp16/bf16 lowest values too), then cast: `where` has no fp16/bf16 CPU kernel
        low = paddle.full([], paddle.finfo(dtype).min, dtype="float32")
        bias = paddle.where(mask, paddle.zeros([], dtype="float32"), low)
        return bias if bias.dtype == dtype else bias.astype(dtype)
    return mask.astype(dtype) if mask.dtype != dtype else mask


# ---- accelerator fast paths -----------------------------------------------------------------------------------------
_log = logging.getLogger("ernie.ops")
_LOGGED: set = set()
_UNAVAILABLE: set = set()  # (device, dtype) whose fused residual-LN kernel raised: plain path from then on


@dataclass(frozen=True)
class KernelPlan:
    """Which fused kernels one device/dtype runs; everything off is the plain path (the CPU kernels above)."""

    fused_attention: bool  # F.scaled_dot_product_attention: flash attention on GPU for fp16/bf16
    fused_residual_ln: bool  # LN(residual + dropout(x)) in one kernel (incubate fused_bias_dropout_residual_layer_norm)
    fused_dropout_add: bool  # residual + dropout(x) in one kernel (incubate fused_dropout_add), LN separate

    def describe(self) -> str:
        on = [n for n in ("fused_attention", "fused_residual_ln", "fused_dropout_add") if getattr(self, n)]
        return ", ".join(on) if on else "plain ops"


def select_kernels(device: str, dtype: str) -> KernelPlan:
    """The fast paths for a device kind ("cpu", "gpu", "xpu", ...) and a dtype name ("float32", "float16", ...).

    CPU: the plain path (there the explicit matmul/softmax attention is as fast and its dropout uses the fast CPU mask,
    and Paddle's CPU build has no fused residual-LN kernel). GPU: scaled-dot-product attention (flash kernels under
    fp16/bf16, memory-efficient/math under fp32) and the fused bias-dropout-residual-LayerNorm. Other accelerators:
    scaled-dot-product attention (it dispatches to whatever the device offers) and the fused dropout-add.
    """
    dtype = dtype.replace("paddle.", "")
    if device == "cpu":
        return KernelPlan(False, False, False)
    if device == "gpu":
        return KernelPlan(True, dtype in ("float16", "bfloat16", "float32"), False)
    return KernelPlan(True, False, True)


def _device_kind(x: paddle.Tensor) -> str:
    place = x.place
    if place.is_cpu_place():
        return "cpu"
    if place.is_gpu_place():
        return "gpu"
    return "xpu" if hasattr(place, "is_xpu_place") and place.is_xpu_place() else "custom"


def _log_once(key, message: str) -> None:
    if key not in _LOGGED:
        _LOGGED.add(key)
        _log.info(message)


@paddle.jit.not_to_static  # plain Python at trace time (Paddle 2.6 dy2static mangles its early returns)
def kernel_plan(x: paddle.Tensor) -> KernelPlan:
    """The plan for a tensor's device and dtype (plain path in static graphs: exportable ops only), logged once."""
    if not paddle.in_dynamic_mode():
        return KernelPlan(False, False, False)
    device, dtype = _device_kind(x), str(x.dtype).replace("paddle.", "")
    plan = select_kernels(device, dtype)
    if (device, dtype) in _UNAVAILABLE:
        plan = KernelPlan(plan.fused_attention, False, plan.fused_dropout_add)
    _log_once(("plan", device, dtype), f"ERNIE kernels on {device}/{dtype}: {plan.describe()}")
    return plan


@paddle.jit.not_to_static  # its branches are on Python values: trace the chosen path only
def residual_layer_norm(x: paddle.Tensor, residual: paddle.Tensor, norm, p: float, training: bool,
                        plan: KernelPlan) -> paddle.Tensor:
    """norm(residual + dropout(x)) for a paddle.nn.LayerNorm ``norm``, fused when the plan says so."""
    if plan.fused_residual_ln:
        import paddle.incubate.nn.functional as IF

        try:
            return IF.fused_bias_dropout_residual_layer_norm(
                x, residual, None, norm.weight, norm.bias, p if training else 0.0, norm._epsilon, training)
        except (RuntimeError, NotImplementedError, ValueError) as e:  # kernel not registered for this device/dtype
            key = (_device_kind(x), str(x.dtype).replace("paddle.", ""))
            _UNAVAILABLE.add(key)
            _log_once(("fallback",) + key, f"ERNIE kernels on {key[0]}/{key[1]}: fused residual LayerNorm unavailable "
                                           f"({type(e).__name__}: {str(e).splitlines()[0][:120]}), plain ops instead")
    if plan.fused_dropout_add and training and p > 0:
        import paddle.incubate.nn.functional as IF

        return norm(IF.fused_dropout_add(x, residual, p=p, training=True))
    return norm(residual + dropout(x, p, training))
