"""Learning-rate schedules (the optimizer that follows them: ``ernie.training.optim.build_optimizer``).

* Pretraining (:class:`WarmupDecay`, :func:`lr_at`): linear warmup 0 -> max_lr over a (possibly fractional) number
  of steps, then cosine / linear decay max_lr -> min_lr until ``decay_steps``, then min_lr. Same curve as PaddleNLP's
  ``CosineAnnealingWithWarmupDecay`` / ``LinearAnnealingWithWarmupDecay``.
* Fine-tuning (:func:`finetune_schedule`, :func:`finetune_factor`): ``int(warmup_ratio * max_steps)`` warmup steps
  whose first step already trains (``(step + 1) / (warmup + 1)`` of the peak), then linear decay to 0 at
  ``max_steps``.

Both are Paddle LR schedulers whose state (``last_epoch`` = completed optimizer steps, saved inside the optimizer's
state dict) is all that resume needs.
"""

from __future__ import annotations

import functools
import math

from paddle.optimizer.lr import LambdaDecay, LRScheduler


def lr_at(step: int, max_lr: float, min_lr: float, warmup_steps: float, decay_steps: int, style: str) -> float:
    """Learning rate used by optimizer step ``step`` (0-based count of completed steps)."""
    if warmup_steps > 0 and step <= warmup_steps:
        return max_lr * step / warmup_steps
    if style == "none":
        return max_lr
    if step > decay_steps:
        return min_lr
    progress = (step - warmup_steps) / (decay_steps - warmup_steps)
    coeff = 0.5 * (math.cos(math.pi * progress) + 1.0) if style == "cosine" else 1.0 - progress
    return min_lr + coeff * (max_lr - min_lr)


class WarmupDecay(LRScheduler):
    """Paddle scheduler wrapper around :func:`lr_at`; ``last_epoch`` is the number of completed optimizer steps,
    and its state (saved inside the optimizer's state dict) is all that resume needs."""

    def __init__(self, max_lr: float, min_lr: float, warmup_steps: float, decay_steps: int, style: str = "cosine"):
        self.max_lr, self.min_lr = max_lr, min_lr
        self.warmup_steps, self.decay_steps, self.style = warmup_steps, decay_steps, style
        super().__init__(learning_rate=max_lr, last_epoch=-1)

    def get_lr(self) -> float:
        return lr_at(self.last_epoch, self.max_lr, self.min_lr, self.warmup_steps, self.decay_steps, self.style)


def finetune_factor(step: int, warmup_steps: int, max_steps: int) -> float:
    """Fraction of the peak learning rate used by fine-tuning step ``step`` (0-based)."""
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    return max(0.0, (max_steps - step) / max(1, max_steps - warmup_steps))


def finetune_schedule(learning_rate: float, warmup_ratio: float, max_steps: int) -> LambdaDecay:
    """The fine-tuning scheduler: ``learning_rate * finetune_factor(step)``."""
    warmup_steps = int(warmup_ratio * max_steps)
    return LambdaDecay(
        learning_rate, functools.partial(finetune_factor, warmup_steps=warmup_steps, max_steps=max_steps)
    )
