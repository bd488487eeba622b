"""The one optimizer builder of pretraining (``ernie.training.trainer``) and fine-tuning (``ernie.finetune.trainer``).

:func:`build_optimizer`: AdamW with decoupled weight decay on every weight except biases and normalisation parameters
(:func:`decays`, PaddleNLP's and HF's rule), global-norm gradient clipping (off when the norm is 0) and the learning
rate of a Paddle LR scheduler. The two trainers differ only in the schedule they pass (``ernie.training.lr``:
:class:`~ernie.training.lr.WarmupDecay` for pretraining, :func:`~ernie.training.lr.finetune_schedule` for fine-tuning)
and in the Adam moments' settings and master weights pretraining exposes as flags.

:func:`clear_grads`: how both trainers clear the gradients after an update (released on the CPU, zero-filled
elsewhere).
"""

from __future__ import annotations

import paddle

NO_DECAY_KEYS = ("bias", "norm")  # parameters whose structured name contains one of these get no weight decay


def decays(structured_name: str) -> bool:
    """Whether the parameter of this structured name (``ernie.encoder.layers.0.norm1.weight`` ...) gets weight
    decay."""
    return not any(k in structured_name for k in NO_DECAY_KEYS)


def build_optimizer(
    model: paddle.nn.Layer,
    scheduler: paddle.optimizer.lr.LRScheduler,
    *,
    weight_decay: float,
    max_grad_norm: float,
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
    multi_precision: bool = False,
) -> paddle.optimizer.AdamW:
    """AdamW over ``model``'s parameters driven by ``scheduler``. ``multi_precision``: fp32 master weights (AMP O2)."""
    decayed = {p.name for n, p in model.named_parameters() if decays(n)}
    return paddle.optimizer.AdamW(
        learning_rate=scheduler,
        beta1=beta1,
        beta2=beta2,
        epsilon=epsilon,
        parameters=model.parameters(),
        weight_decay=weight_decay,
        apply_decay_param_fun=decayed.__contains__,
        grad_clip=paddle.nn.ClipGradByGlobalNorm(max_grad_norm) if max_grad_norm > 0 else None,
        multi_precision=multi_precision,
    )


def clear_grads(optimizer: paddle.optimizer.Optimizer) -> None:
    """Clear the gradients after an update. On the CPU they are released (``clear_grad(set_to_zero=False)``, torch's
    ``zero_grad(set_to_none=True)``): the next backward creates each one as it is computed, instead of every
    gradient's zero-filled copy being held through the whole next forward, the activations' peak (a training step
    peaks lower by the size of the model's gradients; the parameters after each update are bit-identical, since the
    first gradient written into a zero-filled one is ``0 + g``). On accelerators Paddle's default (zero-filled) stays,
    what PaddleNLP's Trainer runs unless its pipeline ``enable_release_grads`` is asked for."""
    optimizer.clear_grad(set_to_zero=paddle.device.get_device() != "cpu")
