"""The one optimizer builder (ernie.training.optim) as pretraining and fine-tuning call it: the same AdamW, decay sets,
clipping and learning rate step by step as each trainer's own builder had before they were merged.

The references below are the two builders as they were (ernie/training/trainer.py build_optimizer and
ernie/finetune/trainer.py Trainer._optimizer on main d600433,
now FinetuneRecipe._optimizer), written out here so the comparison can fail.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

paddle = pytest.importorskip("paddle")

from ernie import modeling  # noqa: E402
from ernie.configuration import ErnieConfig  # noqa: E402
from ernie.finetune.recipe import FinetuneRecipe  # noqa: E402
from ernie.training import engine, optim  # noqa: E402
from ernie.training import trainer as pretrain_trainer  # noqa: E402


# ---- the builders as they were ---------------------------------------------------------------------------------------
def _old_lr_at(step, max_lr, min_lr, warmup_steps, decay_steps, style):
    if warmup_steps > 0 and step <= warmup_steps:
        return max_lr * step / warmup_steps
    if style == "none":
        return max_lr
    if step > decay_steps:
        return min_lr
    progress = (step - warmup_steps) / (decay_steps - warmup_steps)
    coeff = 0.5 * (math.cos(math.pi * progress) + 1.0) if style == "cosine" else 1.0 - progress
    return min_lr + coeff * (max_lr - min_lr)


class _OldWarmupDecay(paddle.optimizer.lr.LRScheduler):
    def __init__(self, max_lr, min_lr, warmup_steps, decay_steps, style):
        self.args = (max_lr, min_lr, warmup_steps, decay_steps, style)
        super().__init__(learning_rate=max_lr, last_epoch=-1)

    def get_lr(self):
        return _old_lr_at(self.last_epoch, *self.args)


def _old_pretrain_builder(args, model, use_master_weights):
    o, t = args.optimizer, args.training
    scheduler = _OldWarmupDecay(o.max_lr, o.min_lr, o.warmup_rate * t.max_steps, o.decay_steps, o.lr_decay_style)
    decayed = {p.name for n, p in model.named_parameters() if not any(k in n for k in ("bias", "norm"))}
    optimizer = paddle.optimizer.AdamW(
        learning_rate=scheduler,
        beta1=o.adam_beta1,
        beta2=o.adam_beta2,
        epsilon=o.adam_epsilon,
        parameters=model.parameters(),
        weight_decay=o.weight_decay,
        apply_decay_param_fun=decayed.__contains__,
        grad_clip=paddle.nn.ClipGradByGlobalNorm(o.grad_clip) if o.grad_clip > 0 else None,
        multi_precision=use_master_weights,
    )
    return optimizer, scheduler


def _old_finetune_builder(a, model, max_steps):
    warmup = int(a.warmup_ratio * max_steps)

    def factor(step):
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (max_steps - step) / max(1, max_steps - warmup))

    scheduler = paddle.optimizer.lr.LambdaDecay(a.learning_rate, factor)
    no_decay = {p.name for n, p in model.named_parameters() if "bias" in n or "norm" in n}
    optimizer = paddle.optimizer.AdamW(
        learning_rate=scheduler,
        parameters=model.parameters(),
        weight_decay=a.weight_decay,
        apply_decay_param_fun=lambda name: name not in no_decay,
        grad_clip=paddle.nn.ClipGradByGlobalNorm(a.max_grad_norm) if a.max_grad_norm > 0 else None,
    )
    return optimizer, scheduler


# ---- helpers ---------------------------------------------------------------------------------------------------------
def _config(**kw):
    return ErnieConfig(
        vocab_size=40,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        **kw,
    )


def _pretrain_args(style="cosine", warmup_rate=0.13, grad_clip=1.0, max_steps=40, decay_steps=30):
    optimizer = SimpleNamespace(
        max_lr=1e-3,
        min_lr=1e-5,
        warmup_rate=warmup_rate,
        decay_steps=decay_steps,
        lr_decay_style=style,
        adam_beta1=0.85,
        adam_beta2=0.97,
        adam_epsilon=1e-6,
        weight_decay=0.05,
        grad_clip=grad_clip,
    )
    return SimpleNamespace(optimizer=optimizer, training=SimpleNamespace(max_steps=max_steps, warmup_steps=None))


def _finetune_args(warmup_ratio=0.1, max_grad_norm=1.0):
    return SimpleNamespace(
        learning_rate=5e-4,
        warmup_ratio=warmup_ratio,
        weight_decay=0.01,
        max_grad_norm=max_grad_norm,
        metric_for_best_model="loss",
    )


def _lrs(scheduler, n):
    out = []
    for _ in range(n):
        out.append(scheduler.last_lr)
        scheduler.step()
    return out


def _same_optimizer(new, old):
    """Same hyper-parameters, clipping and per-parameter decay decision."""
    for attr in ("_beta1", "_beta2", "_epsilon", "_weight_decay", "_multi_precision"):
        assert getattr(new, attr) == getattr(old, attr), attr
    assert type(new._grad_clip) is type(old._grad_clip)
    if old._grad_clip is not None:
        assert new._grad_clip.clip_norm == old._grad_clip.clip_norm
    # twin models: the same structure, parameter by parameter (their generated names differ)
    assert [tuple(p.shape) for p in new._parameter_list] == [tuple(p.shape) for p in old._parameter_list]
    decided = [new._apply_decay_param_fun(p.name) for p in new._parameter_list]
    assert decided == [old._apply_decay_param_fun(p.name) for p in old._parameter_list]
    assert any(decided) and not all(decided)  # biases / LayerNorms are left out, the rest decays


def _train(model, optimizer, scheduler, steps, seed=0, clear=lambda opt: opt.clear_grad()):
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        ids = paddle.to_tensor(rng.integers(1, 40, size=(2, 8)))
        labels = paddle.to_tensor(rng.integers(0, 2, size=(2,)))
        loss = paddle.nn.functional.cross_entropy(model(ids), labels)
        loss.backward()
        optimizer.step()
        clear(optimizer)
        scheduler.step()
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


def _twin_models():
    paddle.seed(3)
    a = modeling.ErnieForSequenceClassification(_config())
    b = modeling.ErnieForSequenceClassification(_config())
    b.set_state_dict(a.state_dict())
    return a, b


# ---- pretraining ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "style, warmup_rate, grad_clip",
    [("cosine", 0.13, 1.0), ("linear", 0.1, 0.0), ("none", 0.0, 1.0), ("cosine", 0.0, 0.5)],
)
def test_pretraining_builder_unchanged(style, warmup_rate, grad_clip):
    args = _pretrain_args(style, warmup_rate, grad_clip)
    new_model, old_model = _twin_models()
    new_opt, new_sched = pretrain_trainer.build_optimizer(args, new_model, use_master_weights=False)
    old_opt, old_sched = _old_pretrain_builder(args, old_model, use_master_weights=False)
    _same_optimizer(new_opt, old_opt)
    assert _lrs(new_sched, 45) == _lrs(old_sched, 45)  # past max_steps and decay_steps: exactly equal floats
    assert pretrain_trainer.build_optimizer(args, new_model, use_master_weights=True)[0]._multi_precision


def test_pretraining_builder_trains_identically():
    args = _pretrain_args()
    new_model, old_model = _twin_models()
    new = _train(new_model, *pretrain_trainer.build_optimizer(args, new_model, use_master_weights=False), steps=4)
    old = _train(old_model, *_old_pretrain_builder(args, old_model, use_master_weights=False), steps=4)
    assert new.keys() == old.keys() and all(np.array_equal(new[k], old[k]) for k in new)


# ---- fine-tuning ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("warmup_ratio, max_grad_norm, max_steps", [(0.1, 1.0, 30), (0.0, 0.0, 7), (0.5, 1.0, 3)])
def test_finetuning_builder_unchanged(warmup_ratio, max_grad_norm, max_steps):
    a = _finetune_args(warmup_ratio, max_grad_norm)
    new_model, old_model = _twin_models()
    new_opt, new_sched = FinetuneRecipe(new_model, a, task=None, train_features=[])._optimizer(max_steps)
    old_opt, old_sched = _old_finetune_builder(a, old_model, max_steps)
    _same_optimizer(new_opt, old_opt)
    assert _lrs(new_sched, max_steps + 3) == _lrs(old_sched, max_steps + 3)
    # the LR scheduler's state (saved inside fine-tuning checkpoints) keeps its keys, so old checkpoints resume
    assert new_sched.state_dict().keys() == old_sched.state_dict().keys()


def test_finetuning_builder_trains_identically():
    a = _finetune_args()
    new_model, old_model = _twin_models()
    new = _train(new_model, *FinetuneRecipe(new_model, a, task=None, train_features=[])._optimizer(10), steps=4)
    old = _train(old_model, *_old_finetune_builder(a, old_model, 10), steps=4)
    assert new.keys() == old.keys() and all(np.array_equal(new[k], old[k]) for k in new)


# ---- clearing the gradients -----------------------------------------------------------------------------------------
def test_clear_grads_releases_them_on_cpu_with_the_same_updates():
    args = _pretrain_args()  # clipping on: the global norm reads every gradient
    released, zeroed = _twin_models()
    a = _train(
        released,
        *pretrain_trainer.build_optimizer(args, released, use_master_weights=False),
        steps=4,
        clear=optim.clear_grads,
    )
    b = _train(zeroed, *pretrain_trainer.build_optimizer(args, zeroed, use_master_weights=False), steps=4)
    assert all(p.grad is None for p in released.parameters())
    assert all(p.grad is not None and not p.grad.numpy().any() for p in zeroed.parameters())  # Paddle's default
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_clear_grads_keeps_paddles_default_on_accelerators_and_the_loop_uses_it(monkeypatch):
    calls = []

    class Opt:
        def clear_grad(self, set_to_zero=True):
            calls.append(set_to_zero)

        def step(self):
            pass

    for device in ("gpu:0", "cpu"):
        monkeypatch.setattr(paddle.device, "get_device", lambda d=device: d)
        optim.clear_grads(Opt())
    assert calls == [True, False]
    scheduler = paddle.optimizer.lr.LinearWarmup(1e-3, 2, 0.0, 1e-3)
    assert engine.apply_update(Opt(), None, scheduler, finite=True)  # pretraining's update clears this way
    assert calls[-1] is False
