"""AMP policy for pretraining on GPU (issue #30): which ops autocast keeps low precision, whether the device can run
the requested dtype at all, how the model is decorated, where the gradients live, the deterministic-kernel flags and
an opt-in update that keeps the skip decision on the device. Self-contained policy functions; the training engine
calls them (order in docs/gpu.md, "AMP policy"). Each one's preconditions are read from Paddle 3.3.1's own source
(file names below are under site-packages/paddle) and tested against Paddle's real lists and predicates on the CPU
(tests/test_gpu_path.py).

Contract:

- :func:`amp_lists` ``(level, dtype) -> (custom_white_list, custom_black_list)`` for ``paddle.amp.auto_cast``. O2
  white-lists ``lookup_table`` / ``lookup_table_v2`` (amp_lists.py puts them on the O2 black list,
  ``EXTRA_BLACK_LIST``), as PaddleNLP's Trainer does (trainer.py ``autocast_smart_context_manager``: "the lookup_table
  is in black_list, but in O2, we need it return fp16"): without it the embeddings come out float32 and every add and
  LayerNorm of the residual stream after them is promoted to float32. :func:`paddle_op_lists` is what autocast then
  runs with (Paddle's own ``_update_list``).
- :func:`check_amp_supported` ``(device, dtype)``: a :class:`UserError` when Paddle would silently train in float32
  (``decorate`` returns the model unchanged and ``auto_cast`` only warns, auto_cast.py), decided by the very
  predicates those two call (``_is_gpu_bfloat16_supported``: compute capability >= 8 and CUDA >= 11;
  ``_is_gpu_float16_supported``: >= 7).
- :func:`decorate_kwargs` ``(level, dtype) -> dict`` for ``paddle.amp.decorate``; :func:`use_master_grad` /
  :func:`enable_master_grad`: float32 gradients under bf16 O2 (PaddleNLP's ``--amp_master_grad``: fleet's
  ``MixPrecisionLayer`` / ``MixPrecisionOptimizer``, gradients accumulated into a float32 ``main_grad``), which
  needs the explicit all-reduce (:func:`needs_explicit_all_reduce`); :func:`gradients` reads the gradients wherever
  they live.
- :func:`deterministic_flags` ``(device) -> dict`` for ``paddle.set_flags`` (``--deterministic`` opt-in).
- :func:`step_if_finite` ``(optimizer, parameters) -> device bool``: the update applied only when every gradient is
  finite, decided on the device (no host read); opt-in, see its docstring.

Engine order (``device``, ``level`` = --fp16_opt_level, ``dtype`` = --amp_dtype, with --use_amp):

1. after ``init_distributed``: ``check_amp_supported(device, dtype)``; with ``--deterministic``:
   ``paddle.set_flags(deterministic_flags(device))``;
2. weights loaded (``checkpoint.load_model_weights``) into the float32 model, then the optimizer built
   (``multi_precision=True``), then at O2 ``paddle.amp.decorate(models=model, optimizers=optimizer,
   **decorate_kwargs(level, dtype))``;
3. ``master = use_master_grad(level, dtype, device)``; if so ``optimizer = enable_master_grad(model, optimizer,
   dtype)`` (bare model, before ``paddle.DataParallel``);
4. gradient sync "manual" (``no_sync`` on every micro step, then ``fused_allreduce_gradients``) when
   ``needs_explicit_all_reduce(master)`` with more than one rank, as for recompute;
5. every forward: ``white, black = amp_lists(level, dtype)``, ``paddle.amp.auto_cast(enable=True, level=level,
   dtype=dtype, custom_white_list=white, custom_black_list=black)``;
6. the finite check reads :func:`gradients` (``main_grad`` under master gradients; ``param.grad`` is None then).
"""

from __future__ import annotations

import importlib

import paddle

from ernie.utils import UserError

# The black list every AMP forward runs with (softmax cross-entropy, its reductions and the division by the number of
# targets stay float32); the engine's auto_cast gets it through amp_lists.
AMP_BLACK_LIST = ("reduce_sum", "softmax_with_cross_entropy", "c_softmax_with_cross_entropy", "elementwise_div")
# O2 only: the embedding lookups return the low-precision dtype (PaddleNLP's Trainer, autocast_smart_context_manager)
O2_WHITE_LIST = ("lookup_table", "lookup_table_v2")
# The shipped float16 config, named by check_amp_supported for GPUs without bfloat16 (V100, T4)
FP16_CONFIG = "configs/pretrain/ernie-1.0-base-gpu-fp16.yaml"


def amp_lists(level: str, dtype: str) -> tuple[list[str], list[str]]:
    """(custom_white_list, custom_black_list) for ``paddle.amp.auto_cast(level=level, dtype=dtype, ...)``.

    ``level`` "O1" | "O2", ``dtype`` "float16" | "bfloat16". Both levels black-list :data:`AMP_BLACK_LIST`; O2
    white-lists :data:`O2_WHITE_LIST` so that the embeddings come out in ``dtype``. The lists never overlap (Paddle's
    ``_update_list`` refuses an overlap)."""
    if level not in ("O1", "O2") or dtype not in ("float16", "bfloat16"):
        raise ValueError(f"amp_lists: level O1|O2 and dtype float16|bfloat16, got {level!r}, {dtype!r}")
    white = list(O2_WHITE_LIST) if level == "O2" else []
    return white, list(AMP_BLACK_LIST)


def paddle_op_lists(level: str, dtype: str) -> tuple[set[str], set[str]]:
    """The (white, black) op sets ``paddle.amp.auto_cast`` runs with for :func:`amp_lists`' lists: Paddle's own
    merge of its default lists (paddle/amp/amp_lists.py) with the custom ones (paddle/amp/auto_cast.py
    ``_update_list``)."""
    from paddle.amp.auto_cast import _update_list

    white, black = amp_lists(level, dtype)
    return _update_list(white, black, level, dtype)  # type: ignore[arg-type]  # level/dtype: checked above


def check_amp_supported(device: str, dtype: str) -> None:
    """Refuse AMP in ``dtype`` on a ``device`` where Paddle would silently run float32.

    On a GPU, ``paddle.amp.decorate`` returns the model unchanged and ``auto_cast`` only warns when
    ``paddle.amp.auto_cast._is_gpu_bfloat16_supported()`` (compute capability >= 8 and CUDA >= 11) or
    ``_is_gpu_float16_supported()`` (>= 7) is False for the current GPU: those two predicates decide here too.
    ``device`` "cpu" (Paddle runs no AMP there; the engine warns) and other accelerators pass unchecked. Call after
    ``paddle.set_device`` (the predicates read the current GPU)."""
    if device != "gpu":
        return
    ac = importlib.import_module("paddle.amp.auto_cast")  # the module (paddle.amp.auto_cast is also a function)

    supported = ac._is_gpu_bfloat16_supported() if dtype == "bfloat16" else ac._is_gpu_float16_supported()
    if supported:
        return
    major, minor = paddle.device.cuda.get_device_capability()
    gpu = f"{paddle.device.cuda.get_device_name()}, compute capability {major}.{minor}, CUDA {paddle.version.cuda()}"
    if dtype == "bfloat16":
        raise UserError(
            f"--amp_dtype bfloat16: this GPU ({gpu}) has no bfloat16 AMP (Paddle needs compute capability 8.0+ and "
            f"CUDA 11+) and would silently train in float32; use {FP16_CONFIG} (--amp_dtype float16 with dynamic "
            "loss scaling) or --use_amp false"
        )
    raise UserError(
        f"--amp_dtype float16: this GPU ({gpu}) has no float16 AMP (Paddle needs compute capability 7.0+) and would "
        "silently train in float32; pass --use_amp false"
    )


def decorate_kwargs(level: str, dtype: str) -> dict:
    """Keyword arguments for ``paddle.amp.decorate(models=..., optimizers=..., **kwargs)`` (O2 only; O1 does not
    decorate): low-precision parameters, float32 master weights in the optimizer, float32 ``state_dict``.

    ``master_grad`` stays False: decorate's float32 gradients are a cast at the end of each backward
    (``core.eager.set_master_grads``), and the next backward of an accumulated step then adds a bf16 gradient into
    the float32 one, which Paddle 3.3.1's accumulation node refuses (tested on the CPU). Float32 gradients come from
    :func:`enable_master_grad` instead, as in PaddleNLP's Trainer."""
    if level != "O2":
        raise ValueError("decorate_kwargs: only AMP O2 decorates the model")
    return {"level": "O2", "dtype": dtype, "master_weight": True, "save_dtype": "float32", "master_grad": False}


def use_master_grad(level: str, dtype: str, device: str) -> bool:
    """Whether gradients are accumulated, all-reduced and clipped in float32 (:func:`enable_master_grad`): bf16 O2 on
    a GPU, where a bf16 gradient (8-bit mantissa) loses the small contributions of an accumulated or all-reduced sum.
    float16 O2 keeps Paddle's GradScaler path (its unscale reads ``param.grad``), and the CPU runs no AMP."""
    return level == "O2" and dtype == "bfloat16" and device == "gpu"


def enable_master_grad(model, optimizer, dtype: str):
    """Float32 gradients for a decorated (O2) ``model``: PaddleNLP's ``--amp_master_grad`` on data parallel.

    Registers fleet's ``MixPrecisionLayer`` hook on every parameter (each backward's low-precision gradient is added
    into a float32 ``param.main_grad`` and released; ``param.grad`` stays None) and returns ``optimizer`` wrapped in
    ``MixPrecisionOptimizer`` (clips and steps on ``main_grad``, clears it). Call after ``paddle.amp.decorate`` and
    on the bare model, before ``paddle.DataParallel``. The gradients are then averaged over ranks only by the
    explicit all-reduce (:func:`needs_explicit_all_reduce`), and read through :func:`gradients`."""
    from paddle.distributed.fleet.utils import mix_precision_utils

    mix_precision_utils.MixPrecisionLayer(model, dtype=dtype)  # registers the hooks; the wrapper itself is not used
    return mix_precision_utils.MixPrecisionOptimizer(optimizer)


def needs_explicit_all_reduce(master_grad: bool) -> bool:
    """Whether every micro step must run under ``no_sync`` with one ``fused_allreduce_gradients`` after the last
    (the engine's "manual" gradient sync): with master gradients DataParallel's reducer would all-reduce the
    transient low-precision gradients inside backward, before the hook moves them into ``main_grad``. PaddleNLP's
    Trainer does the same ("Hack dp with master_grad": ``is_no_sync = True``, then ``fused_allreduce_gradients``,
    whose ``_apply_collective_grads_eager`` all-reduces ``param.main_grad``)."""
    return master_grad


def gradients(parameters) -> list:
    """The gradient tensors of ``parameters``: ``param.main_grad`` under master gradients, else ``param.grad``
    (None and frozen parameters left out)."""
    out = []
    for p in parameters:
        if p.stop_gradient:
            continue
        g = getattr(p, "main_grad", None)
        if g is None:
            g = p.grad
        if g is not None:
            out.append(g)
    return out


def deterministic_flags(device: str) -> dict:
    """Paddle flags that make a GPU step repeat bit for bit (``--deterministic``): deterministic cuDNN algorithms
    (also makes flash attention take its deterministic version 2, nn/functional/flash_attention.py) and the
    deterministic embedding backward (the default one accumulates with atomics). Both are defined only in CUDA/ROCm
    builds (paddle/common/flags.cc, under ``PADDLE_WITH_CUDA || PADDLE_WITH_HIP``): empty on the CPU, which is
    deterministic already. Apply with ``paddle.set_flags``."""
    if device != "gpu":
        return {}
    return {"FLAGS_cudnn_deterministic": True, "FLAGS_embedding_deterministic": 1}


def all_finite(parameters) -> paddle.Tensor:
    """A device bool scalar: every gradient of ``parameters`` (:func:`gradients`) is finite. One fused check per
    gradient dtype (Paddle's ``check_finite_and_unscale`` with scale 1, as its GradScaler), no host read."""
    from paddle import _C_ops

    by_dtype: dict = {}
    for g in gradients(parameters):
        by_dtype.setdefault(g.dtype, []).append(g)
    found = paddle.zeros([1], dtype="bool")
    one = paddle.ones([1], dtype="float32")
    for grads in by_dtype.values():
        # Paddle's stub lacks the third (found_infinite) argument the eager op takes
        _, found_here = _C_ops.check_finite_and_unscale_(grads, one, paddle.zeros([1], dtype="bool"))  # type: ignore[call-arg]
        found = paddle.logical_or(found, found_here)
    return paddle.logical_not(found).reshape([])


def _optimizer_tensors(optimizer, params) -> list:
    """Every tensor an AdamW step writes: the parameters, their float32 master weights and the accumulators (moments,
    beta powers), created first if this is the optimizer's first step (as its own step would)."""
    inner = getattr(optimizer, "_inner_opt", optimizer)
    if not inner._accumulators:
        block = paddle.static.default_main_program().global_block()
        inner._create_accumulators(block, params)
    tensors = list(params) + list(getattr(inner, "_master_weights", {}).values())
    place = str(params[0].place)
    for by_param in inner._accumulators.values():
        for name, acc in list(by_param.items()):
            if (
                str(acc.place) != place
            ):  # AdamW keeps its beta powers on the CPU: moved once, so no step reads a host flag
                by_param[name] = acc = acc._copy_to(params[0].place, True)
            tensors.append(acc)
    return tensors


@paddle.no_grad()
def step_if_finite(optimizer, parameters) -> paddle.Tensor:
    """``optimizer.step()`` applied only if every gradient is finite, decided on the device; returns that device bool
    (scalar) without reading it.

    Opt-in (unproven on a GPU). Paddle's own skip needs a host read in dynamic mode: ``GradScaler.minimize`` hands
    ``found_inf`` to the optimizer, whose ``_create_optimization_pass`` tests it with ``if found_inf:``
    (optimizer/optimizer.py), and ``AdamW._append_optimize_op`` passes it to the kernel's ``SkipUpdate`` only in PIR
    static graphs (optimizer/adamw.py: ``found_inf ... if in_pir_mode() else None``). Here the step always runs and
    every tensor it writes (parameters, master weights, moments, beta powers) is put back to its value before the step
    where the flag is False (``paddle.where``): an exact skip, bought with one copy of the optimizer state per step
    (under bf16 O2, 14 bytes a parameter: bf16 weight, fp32 master, two fp32 moments; ~1.4 GB for ERNIE-base's
    ~100M parameters). The engine keeps the flag on the device (the LR-schedule step
    and the non-finite count then need it at log steps); whether the copy costs less than the host read it saves is
    for the GPU benchmark to show."""
    params = [p for p in parameters if not p.stop_gradient]
    finite = all_finite(params)
    if not params:
        return finite
    tensors = _optimizer_tensors(optimizer, params)
    before = [t.clone() for t in tensors]
    optimizer.step()
    for t, old in zip(tensors, before, strict=True):
        paddle.assign(paddle.where(finite, t, old), output=t)
    return finite
