"""CPU fp32 kernels, dropout and attention-bias helpers for the ERNIE model (ernie/modeling.py).

Contract: every function here computes the same fp32 quantities as the stock Paddle op it replaces (checked by
tests/test_modeling.py and the PaddleNLP weight-parity tests); the fast routes are taken only for fp32 tensors on CPU
in dynamic mode, and everywhere else (GPU, AMP dtypes, static graphs) the stock Paddle ops run: on a GPU tensor in
dynamic mode :func:`linear` is ``F.linear`` (a CUDA build's ``linear_v2``, GEMM + bias in one op, on AMP's white
list; the transposed tied-decoder GEMM stays matmul + add, as PaddleNLP's ERNIE), elsewhere matmul + add.

- :func:`linear` / :class:`Linear` and :func:`add_broadcast` compute bias gradients as a GEMV instead of Paddle's
  slow CPU row reduction, and add the bias after expanding it (Paddle's CPU broadcasting add is several times slower
  than an expand followed by a same-shape add); :func:`add_expanded` is that add for any broadcastable tensor;
- :class:`LayerNorm` runs Paddle's forward kernel and a backward made of GEMV row means and
  same-shape elementwise ops (Paddle's CPU layer_norm_grad is an order of magnitude slower than its forward);
- :func:`dropout` draws CPU masks from numpy's SFC64 generator (seeded from Paddle's);
- :func:`dropout_matmul` (the attention's dropout into its matmul with the values) and :func:`linear` with
  ``rebuild_weight`` (a weight computed from parameters, such as the concatenated q/k/v weight) keep less for the
  backward on CPU fp32: the dropped-out probabilities and the computed weight are computed again there instead of
  being held from forward to backward (same values, same gradients);
- :func:`attention_bias` turns a keep-mask into an additive bias exact in fp32 and safe in fp16/bf16;
- :func:`kernel_plan` picks the residual/LayerNorm fast path by device and dtype (:class:`KernelPlan`, logged once per
  device/dtype on logger ``ernie.ops``): the fused bias-dropout-residual-LayerNorm on GPU only for the dtypes Paddle
  registers it for (float32/float64/float16, not bfloat16), called with autocast off (under O2 its float32 LayerNorm
  weights would otherwise promote the whole op to float32); :func:`residual_layer_norm` falls back to the plain ops
  (and logs it) when the fused kernel still raises;
- :func:`choose_attention` decides the attention kernel: "eager" (matmul/softmax, PaddleNLP's ERNIE path) by default,
  the opt-in F.scaled_dot_product_attention backends (flash / memory-efficient / math) by Paddle's own predicates,
  with :func:`sdpa_bias` giving each backend the mask shape its kernel requires (contract below), built once per
  encoder forward by :func:`sdpa_mask` (the memory-efficient kernel's [B, H, S, S] bias is not made again by every
  layer).
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
# On the CPU (profile of ERNIE-base, [1024, 768] fp32; figures in docs/results/recorded_before_results_files.md):
# Paddle's reduction over rows (the gradient of a broadcast bias add) is far slower than the same sum done as a
# [1, M] x [M, N] GEMV; its broadcasting elementwise ops ([M, N] * [N], [M, N] - [M, 1]) are slower than expand + a
# same-shape op; its layer_norm_grad is far slower than the forward; its dropout draws random numbers slower than
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
    def forward(ctx, x, weight, bias, transpose_w, rebuild_weight):
        lead = list(x.shape[:-1])
        x2 = x.reshape([-1, x.shape[-1]])
        y = paddle.matmul(x2, weight, transpose_y=transpose_w)
        if bias is not None:
            y = y.add_(bias.expand(y.shape))
        # a weight computed from parameters is computed again in the backward rather than kept until then
        ctx.save_for_backward(x2, None if rebuild_weight else weight)
        ctx.rebuild_weight = rebuild_weight
        ctx.meta = (lead, transpose_w, bias is not None, _needs_grad(x, weight, bias))
        return y.reshape(lead + [y.shape[-1]])

    @staticmethod
    def backward(ctx, dy):
        x2, weight = ctx.saved_tensor()
        if ctx.rebuild_weight is not None:
            weight = ctx.rebuild_weight()
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
            dx = g - paddle.matmul(g, mean_of).expand(rows) - xhat * paddle.matmul(g * xhat, mean_of).expand(rows)
            dx = (dx * rstd).reshape(x.shape)
        return dx, (_row_sum(dy2 * xhat) if need_w else None), (_row_sum(dy2) if need_b else None)


def linear(x, weight, bias=None, transpose_w: bool = False, rebuild_weight=None) -> paddle.Tensor:
    """x @ W + b ([..., K] -> [..., N]); W is [K, N], or [N, K] with ``transpose_w``. ``rebuild_weight``: for a W
    computed from parameters, a function computing it again (the same values); on CPU fp32 the backward then calls it
    instead of W being kept from forward to backward."""
    if _cpu_fp32(x):
        return _LinearFn.apply(x, weight, bias, transpose_w, rebuild_weight)
    if not transpose_w and bias is not None and _on_gpu(x):
        # GEMM + bias in one op: on a CUDA build F.linear is linear_v2 (nn/functional/common.py), on AMP's white list
        return F.linear(x, weight, bias)
    y = paddle.matmul(x, weight, transpose_y=transpose_w)
    return y if bias is None else y + bias


def _on_gpu(x: paddle.Tensor) -> bool:
    """A GPU tensor in dynamic mode (static graphs, exports included, keep matmul + add)."""
    return paddle.in_dynamic_mode() and x.place.is_gpu_place()


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
    faster than PCG64's float32 draws)."""
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


class _DropoutMatmulFn(PyLayer):
    """y = (x * keep / (1 - p)) @ v, keeping x, keep and v for the backward but not the dropped-out x (computed again
    there, the same expression on the same tensors: the same values). x is the attention probabilities, which softmax
    keeps for its own backward anyway, so the saved x costs nothing; gradients as :class:`_DropoutFn` then matmul."""

    @staticmethod
    def forward(ctx, x, keep, v, scale):
        ctx.save_for_backward(x, v)
        ctx.keep, ctx.scale, ctx.needs = keep, scale, _needs_grad(x, v)
        return paddle.matmul(x * (keep.astype(x.dtype) * scale), v)

    @staticmethod
    def backward(ctx, dy):
        x, v = ctx.saved_tensor()
        need_x, need_v = ctx.needs
        m = ctx.keep.astype(dy.dtype) * ctx.scale
        dx = paddle.matmul(dy, v, transpose_y=True) * m if need_x else None
        dv = paddle.matmul(x * m, dy, transpose_x=True) if need_v else None
        return dx, None, dv


def _keep_mask(x: paddle.Tensor, p: float) -> paddle.Tensor:
    """The CPU keep-mask for dropout on x (bool, x's shape), seeded from Paddle's generator."""
    seed = int(paddle.randint(0, 2**31 - 1, [1]).item())  # type: ignore[arg-type]  # item(): float | bool | complex
    return paddle.to_tensor(_keep_bits(list(x.shape), p, seed))


def dropout_matmul(x: paddle.Tensor, v: paddle.Tensor, p: float, training: bool) -> paddle.Tensor:
    """``dropout(x, p, training) @ v`` (the attention's probabilities times the values), with the same mask as
    :func:`dropout` draws. On CPU fp32 in training the dropped-out x is not kept for the backward
    (:class:`_DropoutMatmulFn`): a training step holds one [B, heads, S, S] tensor less per layer."""
    if training and p > 0 and _cpu_fp32(x) and not (x.stop_gradient and v.stop_gradient):
        return _DropoutMatmulFn.apply(x, _keep_mask(x, p), v, np.float32(1.0 / (1.0 - p)))
    return paddle.matmul(dropout(x, p, training), v)


def dropout(x: paddle.Tensor, p: float, training: bool) -> paddle.Tensor:
    """Dropout in upscale-in-train mode, skipped entirely when it is the identity (eval or p == 0).

    On CPU fp32 the keep-mask comes from numpy (:func:`_keep_bits`), seeded from Paddle's generator, so
    ``paddle.seed`` makes runs reproducible and recompute (which replays Paddle's RNG state) regenerates the same mask.
    """
    if not training or p <= 0:
        return x
    if not _cpu_fp32(x):
        return F.dropout(x, p, training=True)
    keep = _keep_mask(x, p)
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
KERNEL_LOG: list[str] = []  # every kernel line logged so far, in order (scripts/gpu_selfcheck.py reports them)
_UNAVAILABLE: set = set()  # (device, dtype) whose fused residual-LN kernel raised: plain path from then on

# dtypes for which Paddle 3.3.1 registers fused_bias_dropout_residual_layer_norm on GPU (float, double, float16; no
# bfloat16 kernel: under bf16 O2 the LayerNorm weights are bf16 too, so the plain ops run)
FUSED_RESIDUAL_LN_DTYPES = ("float32", "float64", "float16")


@dataclass(frozen=True)
class KernelPlan:
    """Which fused residual/LayerNorm kernels one device/dtype runs; all off is the plain path (the CPU kernels above).

    The attention kernel is chosen per call by :func:`choose_attention` (it depends on shapes and the mask)."""

    fused_residual_ln: bool  # LN(residual + dropout(x)) in one kernel (incubate fused_bias_dropout_residual_layer_norm)
    fused_dropout_add: bool  # residual + dropout(x) in one kernel (incubate fused_dropout_add), LN separate

    def describe(self) -> str:
        on = [n for n in ("fused_residual_ln", "fused_dropout_add") if getattr(self, n)]
        return ", ".join(on) if on else "plain ops"


def select_kernels(device: str, dtype: str) -> KernelPlan:
    """The residual/LayerNorm fast paths for a device kind ("cpu", "gpu", "xpu", ...) and a dtype name.

    CPU: the plain path (Paddle's CPU build has no fused residual-LN kernel). GPU: the fused
    bias-dropout-residual-LayerNorm for the dtypes Paddle registers it for (:data:`FUSED_RESIDUAL_LN_DTYPES`), the
    plain ops otherwise (bfloat16). Other accelerators: the fused dropout-add.
    """
    dtype = dtype.replace("paddle.", "")
    if device == "cpu":
        return KernelPlan(False, False)
    if device == "gpu":
        return KernelPlan(dtype in FUSED_RESIDUAL_LN_DTYPES, False)
    return KernelPlan(False, True)


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
        KERNEL_LOG.append(message)
        _log.info(message)


@paddle.jit.not_to_static  # plain Python at trace time (Paddle 2.6 dy2static mangles its early returns)
def kernel_plan(x: paddle.Tensor) -> KernelPlan:
    """The plan for a tensor's device and dtype (plain path in static graphs: exportable ops only), logged once."""
    if not paddle.in_dynamic_mode():
        return KernelPlan(False, False)
    device, dtype = _device_kind(x), str(x.dtype).replace("paddle.", "")
    plan = select_kernels(device, dtype)
    if (device, dtype) in _UNAVAILABLE:
        plan = KernelPlan(False, plan.fused_dropout_add)
    _log_once(("plan", device, dtype), f"ERNIE residual+LayerNorm on {device}/{dtype}: {plan.describe()}")
    return plan


@paddle.jit.not_to_static  # its branches are on Python values: trace the chosen path only
def residual_layer_norm(
    x: paddle.Tensor, residual: paddle.Tensor, norm, p: float, training: bool, plan: KernelPlan
) -> paddle.Tensor:
    """norm(residual + dropout(x)) for a paddle.nn.LayerNorm ``norm``, fused when the plan says so and the operands
    are what the kernel reads them as: x and residual of one dtype, LayerNorm weights in float32 (float64 for
    float64 x; Paddle's LayerNormParamType). Otherwise (e.g. AMP O1, where the residual is an fp32 LayerNorm output
    and x an fp16 GEMM output) the plain ops run, logged once."""
    if plan.fused_residual_ln:
        want_w = paddle.float64 if x.dtype == paddle.float64 else paddle.float32
        if x.dtype != residual.dtype or norm.weight is None or norm.weight.dtype != want_w:
            key = (_device_kind(x), str(x.dtype).replace("paddle.", ""))
            _log_once(
                ("operands",) + key,
                f"ERNIE residual+LayerNorm on {key[0]}/{key[1]}: plain ops here (x "
                f"{x.dtype}, residual {residual.dtype}, LayerNorm weight "
                f"{None if norm.weight is None else norm.weight.dtype})",
            )
            plan = KernelPlan(False, plan.fused_dropout_add)
    if plan.fused_residual_ln:
        import paddle.incubate.nn.functional as IF

        try:
            # autocast off: under AMP O2 its float32 LayerNorm weights would promote the whole op to float32 (Paddle
            # promotes an op off the lists when any input is float32); the kernel itself reads fp16 x with fp32 weights
            with paddle.amp.auto_cast(enable=False):
                return IF.fused_bias_dropout_residual_layer_norm(
                    x, residual, None, norm.weight, norm.bias, p if training else 0.0, norm._epsilon, training
                )
        except (RuntimeError, NotImplementedError, ValueError, TypeError) as e:  # not registered for device/dtype
            key = (_device_kind(x), str(x.dtype).replace("paddle.", ""))
            _UNAVAILABLE.add(key)
            _log_once(
                ("fallback",) + key,
                f"ERNIE residual+LayerNorm on {key[0]}/{key[1]}: fused kernel unavailable "
                f"({type(e).__name__}: {str(e).splitlines()[0][:120]}), plain ops instead",
            )
    if plan.fused_dropout_add and training and p > 0:
        import paddle.incubate.nn.functional as IF

        return norm(IF.fused_dropout_add(x, residual, p=p, training=True))
    return norm(residual + dropout(x, p, training))


# ---- attention kernel -----------------------------------------------------------------------------------------------
# Contract (docs/design.md, "Attention kernels"): "eager" (the default everywhere) is matmul + softmax + an additive
# bias [B, 1, 1|S, S], what PaddleNLP's ERNIE runs in production. "sdpa" and "flash" are opt-in and go through
# F.scaled_dot_product_attention with scale=None (1/sqrt(head_dim) applied by the kernel, nothing folded into q), the
# backend decided by Paddle's own predicates (paddle.nn.functional.sdpa.select_sdp_for_sdpa / can_use_*), evaluated
# here on the exact arguments handed over so that the mask can be shaped for the backend that will run:
#   flash_attn     bias [B, 1, Sq, Sk] in q's dtype (flash_attn_utils.h: rank 4, same dtype as q);
#   mem_efficient  bias [B, H, Sq, Sk] in q's dtype (memory_efficient_attention_utils.h: 2nd-last dim = query
#                  length, dims 0/1 = (B, H) or (1, 1); the forward kernel strides heads by Sq * Sk);
#   math           the broadcastable bias [B, 1, 1|S, S] (plain matmul/softmax).
# "flash" whose preconditions fail (fp32, head_dim not a multiple of 8 or > 256, no SM 8.x, a backend disabled)
# runs "eager" and logs the Paddle check that failed. One log line per (request, device, dtype, kernel).
_ATTN_CACHE: dict = {}


def _sdp_params(q: paddle.Tensor, k: paddle.Tensor, v: paddle.Tensor, mask_shape, dropout_p: float):
    """Paddle's own SDPParams for q/k/v [B, S, heads, head_dim], as F.scaled_dot_product_attention builds it."""
    from paddle.nn.functional import sdpa

    if not sdpa._config:
        sdpa.init_config()
    return sdpa.SDPParams(
        query_shape=q.shape,
        key_shape=k.shape,
        value_shape=v.shape,
        attn_mask_shape=mask_shape,
        dropout=dropout_p,
        is_causal=False,
        scale=None,
        query_stop_gradient=q.stop_gradient,
        dtype=(q.dtype, k.dtype, v.dtype),
        place=(q.place, k.place, v.place),
    )


def _flash_refusal(params) -> str:
    """The first of Paddle's flash-attention checks that fails for ``params`` (its own function names)."""
    from paddle.nn.functional import sdpa

    for check in (
        "check_all_tensors_on_device",
        "check_head_dim_size_flash",
        "check_flash_causal_non_square_seqlens",
        "check_dtypes_low_precision_fa",
        "check_scale_is_None",
    ):
        if not getattr(sdpa, check)(params):
            return check
    if not sdpa.check_flash_attention_hardware_support(params.device_id[0]):
        return "check_flash_attention_hardware_support"
    return "flash backend disabled: FLAGS_flash_attn_available or paddle.nn.attention.sdpa_kernel"


@paddle.jit.not_to_static  # plain Python at trace time: exports run "eager"
def choose_attention(
    requested: str, q: paddle.Tensor, k: paddle.Tensor | None, v: paddle.Tensor | None, dropout_p: float
) -> str:
    """The kernel that runs for an ``attention`` setting: "eager", or SDPA's "flash_attn" / "mem_efficient" /
    "math"; q/k/v [B, S, heads, head_dim] (for "eager" only q's device and dtype are read: k and v may be None).
    Logged once per (request, device, dtype, kernel); static graphs (exports) always run "eager"."""
    if not paddle.in_dynamic_mode():
        return "eager"
    device, dtype = _device_kind(q), str(q.dtype).replace("paddle.", "")
    if requested == "eager":
        _log_once(
            ("attn", requested, device, dtype, requested),
            f"ERNIE attention on {device}/{dtype} (--attention eager): {describe_attention('eager')}",
        )
        return "eager"
    assert k is not None and v is not None, "choose_attention: k and v are needed unless requested is 'eager'"
    key = (requested, tuple(q.shape), tuple(k.shape), dtype, str(q.place), dropout_p > 0)
    kernel = _ATTN_CACHE.get(key)
    if kernel is None:
        from paddle.nn.functional import sdpa

        B, Sq, Sk = q.shape[0], q.shape[1], k.shape[1]
        params = _sdp_params(q, k, v, [B, 1, Sq, Sk], dropout_p)
        try:
            backend = sdpa.select_sdp_for_sdpa(params)
        except RuntimeError as e:  # every backend disabled by the user
            backend, why = None, str(e)
        if requested == "flash" and backend != "flash_attn":
            why = _flash_refusal(params) if backend else why
            kernel = "eager"
            _log_once(
                ("attn-refused", requested, device, dtype),
                f"ERNIE attention on {device}/{dtype}: --attention flash not possible ({why}), eager instead",
            )
        else:
            kernel = backend or "eager"
        _ATTN_CACHE[key] = kernel
    _log_once(
        ("attn", requested, device, dtype, kernel),
        f"ERNIE attention on {device}/{dtype} (--attention {requested}): {describe_attention(kernel)}",
    )
    return kernel


def describe_attention(kernel: str) -> str:
    return {
        "eager": "eager (matmul + softmax + additive bias [B, 1, 1|S, S])",
        "flash_attn": "flash_attn (F.scaled_dot_product_attention, bias [B, 1, S, S], scale None)",
        "mem_efficient": "mem_efficient (F.scaled_dot_product_attention, bias [B, H, S, S], scale None)",
        "math": "math (F.scaled_dot_product_attention, bias [B, 1, 1|S, S], scale None)",
    }[kernel]


def sdpa_bias(bias: paddle.Tensor, kernel: str, q: paddle.Tensor, k: paddle.Tensor) -> paddle.Tensor:
    """The additive bias (from :func:`attention_bias`, broadcastable to [B, H, Sq, Sk]) in the shape the SDPA
    backend ``kernel`` requires (see the contract above), materialised (contiguous) in q's dtype."""
    B, Sq, H = q.shape[0], q.shape[1], q.shape[2]
    Sk = k.shape[1]
    if bias.dtype != q.dtype:
        bias = bias.astype(q.dtype)
    if kernel == "flash_attn":
        shape = [B, 1, Sq, Sk]
    elif kernel == "mem_efficient":
        shape = [B, H, Sq, Sk]
    else:
        return bias
    return bias if list(bias.shape) == shape else bias.expand(shape).contiguous()


def sdpa_mask(mask: paddle.Tensor | None, kernel: str, q: paddle.Tensor, k: paddle.Tensor, cache: dict | None = None):
    """The SDPA mask for a keep-mask / additive ``mask`` (:func:`attention_bias` in q's dtype, shaped by
    :func:`sdpa_bias` for ``kernel``), built once per ``cache``: the encoder passes one dict per forward, so the
    memory-efficient kernel's [B, H, S, S] bias is materialised once, not in every layer. Keyed by kernel, dtype and
    shapes; the mask itself is the same for every layer of one forward."""
    if mask is None:
        return None
    key = (kernel, str(q.dtype), tuple(q.shape[:3]), k.shape[1])
    if cache is not None and key in cache:
        return cache[key]
    out = sdpa_bias(attention_bias(mask, q.dtype), kernel, q, k)
    if cache is not None:
        cache[key] = out
    return out


def sdpa_attention(q, k, v, bias, kernel: str, dropout_p: float, training: bool) -> paddle.Tensor:
    """F.scaled_dot_product_attention for q/k/v [B, S, heads, head_dim] (unscaled q: scale=None) -> [B, S, heads,
    head_dim], with the bias shaped for ``kernel`` (the backend :func:`choose_attention` found Paddle will select;
    :func:`sdpa_mask` gives it already shaped, and is then returned as it is)."""
    mask = None if bias is None else sdpa_bias(bias, kernel, q, k)
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, dropout_p=dropout_p if training else 0.0, training=training, scale=None
    )
