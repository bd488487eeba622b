"""Learning-rate schedule: linear warmup 0 -> max_lr, then cosine / linear decay max_lr -> min_lr, then min_lr.

Same curve as PaddleNLP's ``CosineAnnealingWithWarmupDecay`` / ``LinearAnnealingWithWarmupDecay``.
"""
from __future__ import annotations

import math

from paddle.optimizer.lr import LRScheduler


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
