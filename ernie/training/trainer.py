"""ERNIE 1.0 pretraining loop (MLM + SOP), data parallel, read top to bottom.

    python -m paddle.distributed.launch --gpus 0,1,2,3 scripts/run_pretrain.py --config configs/pretrain/x.yaml
    python -m paddle.distributed.launch --nproc_per_node 2 scripts/run_pretrain.py ...   # CPU, gloo

One optimizer step consumes ``global_batch_size = micro_batch_size x ranks x accumulate_steps`` sequences: each rank
runs ``accumulate_steps`` forward/backward passes on its own micro batches, gradients are all-reduced (averaged)
only on the last of them (``DataParallel.no_sync`` on the others; with --use_recompute or on CPU every micro step runs
under ``no_sync`` and one explicit all-reduce follows, see :func:`grad_sync_mode`), then every rank applies the same
update. The LR schedule advances only on steps whose update ran (not on float16 overflow steps).

Restarting the same command resumes from ``output_dir/model_last``: weights, optimizer moments, LR schedule,
loss scale, data position (consumed samples) and every rank's RNG state, so a resumed fp32 run reproduces the
uninterrupted one exactly. Ctrl-C (one rank) finishes the current step, saves ``model_last`` at it and exits with
``error: interrupted`` (status 130); a run that fails before writing into an ``output_dir`` it created removes it.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import random
import re
import sys
import time
import traceback
from typing import Literal, cast

import numpy as np
import paddle

from data_tools.batching import DistributedBatchSampler, collate
from data_tools.ernie_dataset import build_train_valid_test_datasets, train_valid_test_num_samples
from data_tools.masking import MaskingSchedule
from ernie.configuration import ErnieConfig
from ernie.modeling import ErnieForPretraining, ErniePretrainingCriterion
from ernie.tokenizer import ErnieTokenizer
from ernie.utils import StopRequest, UserError, cli_main, is_interrupt, resolve_dir
from ernie.utils.cpu_tuning import tune_cpu_math

from . import checkpoint as ckpt
from . import optim
from .args import Batching, PretrainArgs, derive_batching, parse_args
from .distributed import (
    DistEnv,
    all_gather_object,
    all_reduce_gradients,
    all_reduce_mean,
    barrier,
    die_with_launcher,
    discard_unused_output_dir,
    init_distributed,
    loader_worker_init,
    lock_output_dir,
    tell_launcher,
)
from .log import RunLogger, console, warn
from .lr import WarmupDecay

SOP_ONLY_PARAMETERS = ("ernie.pooler.", "cls.seq_relationship.")
AMP_BLACK_LIST = ["reduce_sum", "softmax_with_cross_entropy", "c_softmax_with_cross_entropy", "elementwise_div"]


def _amp_dtype(name: str) -> Literal["float16", "bfloat16"]:
    """``--amp_dtype`` (one of the flag's choices) as the literal type of Paddle's AMP API."""
    return cast(Literal["float16", "bfloat16"], name)


# ----------------------------------------------------------------------------------------------- model + data


def build_model(args: PretrainArgs, tokenizer):
    """ErnieForPretraining from a config (from scratch) or, with --continue_training, from saved weights."""
    m = args.model
    config = ErnieConfig.from_pretrained(
        m.model_name_or_path,
        hidden_dropout_prob=m.hidden_dropout_prob,
        attention_probs_dropout_prob=m.attention_probs_dropout_prob,
        use_recompute=m.use_recompute,
        attention=m.attention,
    )
    if m.vocab_size is not None:
        if m.continue_training and m.vocab_size != config.vocab_size:
            raise UserError(
                f"--vocab_size: {m.vocab_size} differs from the vocab_size {config.vocab_size} of the "
                f"weights in {m.model_name_or_path} (--continue_training keeps their shape)"
            )
        if m.vocab_size < tokenizer.vocab_size:
            raise UserError(
                f"--vocab_size: {m.vocab_size} is smaller than the vocabulary "
                f"({tokenizer.vocab_size} tokens in {m.tokenizer_name_or_path})"
            )
        config = config.replace(vocab_size=m.vocab_size)
    if m.position_embedding_init is not None:
        if m.continue_training:
            warn(
                f"--position_embedding_init {m.position_embedding_init} is not used: --continue_training starts "
                "from the saved weights"
            )
        else:
            config = config.replace(position_embedding_init=m.position_embedding_init)
    if tokenizer.vocab_size > config.vocab_size:
        raise UserError(
            f"--tokenizer_name_or_path: the vocabulary has {tokenizer.vocab_size} tokens but the model "
            f"config {m.model_name_or_path} has vocab_size {config.vocab_size}"
        )
    if args.data.max_seq_len > config.max_position_embeddings:
        raise UserError(
            f"--max_seq_len: {args.data.max_seq_len} exceeds the model's max_position_embeddings "
            f"({config.max_position_embeddings})"
        )
    model = ErnieForPretraining(config)
    if m.continue_training:
        ckpt.load_model_weights(m.model_name_or_path, model)
    if not args.data.binary_head:  # no SOP loss: freeze what only it trains (data parallel needs every grad)
        for name, param in model.named_parameters():
            if name.startswith(SOP_ONLY_PARAMETERS):
                param.stop_gradient = True
    return model


def build_optimizer(args: PretrainArgs, model, use_master_weights: bool):
    """(optimizer, LR scheduler): the shared AdamW (``ernie.training.optim``) with this run's warmup + decay."""
    o, t = args.optimizer, args.training
    assert o.decay_steps is not None  # filled in by validate()
    scheduler = WarmupDecay(
        o.max_lr, o.min_lr, warmup_steps=o.warmup_rate * t.max_steps, decay_steps=o.decay_steps, style=o.lr_decay_style
    )
    optimizer = optim.build_optimizer(
        model,
        scheduler,
        weight_decay=o.weight_decay,
        max_grad_norm=o.grad_clip,
        beta1=o.adam_beta1,
        beta2=o.adam_beta2,
        epsilon=o.adam_epsilon,
        multi_precision=use_master_weights,
    )
    return optimizer, scheduler


def build_training(args: PretrainArgs, model):
    """(model, optimizer, LR scheduler, loss scaler or None) for the model's weights as they are now: under
    --fp16_opt_level O2 the model is decorated (low-precision weights, fp32 master copies in the optimizer)."""
    t = args.training
    optimizer, scheduler = build_optimizer(args, model, use_master_weights=t.use_amp)
    # a loss scaler only where float16 AMP runs: on CPU Paddle's GradScaler is disabled (no scale, no counters)
    use_scaler = t.use_amp and t.amp_dtype == "float16" and t.device != "cpu"
    scaler = paddle.amp.GradScaler(init_loss_scaling=t.scale_loss) if use_scaler else None
    if t.use_amp and t.fp16_opt_level == "O2":
        model, optimizer = paddle.amp.decorate(
            models=model,
            optimizers=optimizer,
            level="O2",
            dtype=_amp_dtype(t.amp_dtype),
            master_weight=True,
            save_dtype="float32",
        )
    return model, optimizer, scheduler, scaler


def build_datasets(args: PretrainArgs, tokenizer, batching: Batching):
    """(train, valid, test) over --input_dir; valid/test hold eval_iters / test_iters global batches."""
    d, t, lg = args.data, args.training, args.logging
    assert lg.test_iters is not None  # filled in by validate()
    num_samples = train_valid_test_num_samples(t.max_steps, batching.global_batch_size, lg.eval_iters, lg.test_iters)
    return build_train_valid_test_datasets(
        d.input_dir, tokenizer, d.dataset_config(t.seed, batching.global_batch_size), num_samples
    )


def batches(dataset, args: PretrainArgs, env: DistEnv, consumed_samples: int = 0, num_batches: int | None = None):
    """A DataLoader over this rank's micro batches, starting after ``consumed_samples`` of the global stream and,
    with ``num_batches``, ending after that many of this rank's batches."""
    num_samples = len(dataset)
    if num_batches is not None:
        global_micro_batch = args.training.micro_batch_size * env.world_size
        num_samples = min(num_samples, consumed_samples + num_batches * global_micro_batch)
    sampler = DistributedBatchSampler(
        num_samples, args.training.micro_batch_size, env.rank, env.world_size, consumed_samples=consumed_samples
    )
    return paddle.io.DataLoader(
        dataset,
        # Paddle's stubs want its own BatchSampler (any iterable of index lists works) and know only collates of
        # arrays/numbers/mappings of arrays
        batch_sampler=sampler,  # type: ignore[arg-type]
        collate_fn=collate,  # type: ignore[arg-type]
        num_workers=args.data.num_workers,
        return_list=True,
        worker_init_fn=loader_worker_init if args.data.num_workers else None,
    )


# --------------------------------------------------------------------------------------------- one step


def forward(model, criterion, batch, args: PretrainArgs, with_scores: bool = False):
    """(loss, lm_loss, sop_loss) of one micro batch, under autocast when --use_amp (+ the MLM prediction scores
    with ``with_scores``)."""
    t = args.training
    with paddle.amp.auto_cast(
        enable=t.use_amp,
        level=cast(Literal["O1", "O2"], t.fp16_opt_level),  # the flag's choices
        dtype=_amp_dtype(t.amp_dtype),
        custom_black_list=AMP_BLACK_LIST,
    ):
        prediction_scores, seq_relationship_score = model(
            input_ids=batch["input_ids"],
            token_type_ids=batch["segment_ids"],
            attention_mask=batch["input_mask"],
            masked_positions=batch["masked_lm_positions"],
        )
        loss, lm_loss, sop_loss = criterion(
            prediction_scores, seq_relationship_score, batch["masked_lm_labels"], batch["next_sentence_labels"]
        )
    if with_scores:
        return loss, lm_loss, sop_loss, prediction_scores
    return loss, lm_loss, sop_loss


@paddle.no_grad()
def evaluate(model, criterion, dataset, iters: int, args: PretrainArgs, env: DistEnv) -> dict[str, float]:
    """Mean losses and MLM accuracy (share of masked tokens predicted top-1) over the first ``iters`` micro batches
    of every rank of a (fixed) held-out dataset."""
    model.eval()
    sums = paddle.zeros([3], dtype="float32")
    hits = paddle.zeros([2], dtype="float32")  # correct masked tokens, masked tokens
    # read to the end: an iterator dropped early keeps its worker processes (the loader's thread holds it), so
    # one would be left behind by every evaluation
    done = 0
    for batch in batches(dataset, args, env, num_batches=iters):
        *losses, scores = forward(model, criterion, batch, args, with_scores=True)
        sums += paddle.stack([x.astype("float32") for x in losses])
        labels = batch["masked_lm_labels"].reshape([-1])
        valid = (labels >= 0).astype("float32")
        correct = (paddle.argmax(scores, axis=-1).reshape([-1]) == labels).astype("float32") * valid
        hits += paddle.stack([correct.sum(), valid.sum()])
        done += 1
    if done != iters:
        raise UserError(f"the held-out set has {done} micro batches for this rank, {iters} are needed")
    model.train()
    loss, lm_loss, sop_loss = all_reduce_mean(sums / iters, env.world_size).numpy().tolist()
    correct, total = all_reduce_mean(hits, env.world_size).numpy().tolist()
    return {"loss": loss, "lm_loss": lm_loss, "sop_loss": sop_loss, "lm_acc": correct / max(total, 1e-9)}


def evaluate_held_out(model, criterion, dataset, iters: int, args: PretrainArgs, env: DistEnv, stage) -> dict:
    """The held-out figures of a run in masking ``stage``: losses and MLM accuracy with the stage's masking, and
    ``basic_lm_loss`` / ``basic_lm_acc`` on the same samples basic-masked, whatever the training masking (the figure
    that compares runs of different masking; computed once when the stage is ``basic``)."""
    values = evaluate(model, criterion, dataset.with_masking(stage.name), iters, args, env)
    basic = (
        values if stage.name == "basic" else evaluate(model, criterion, dataset.with_masking("basic"), iters, args, env)
    )
    return {
        **values,
        "basic_lm_loss": basic["lm_loss"],
        "basic_lm_acc": basic["lm_acc"],
        "masking_stage": stage.name,
        "masking_stage_index": stage.index,
    }


SYNC_MODES = {
    "none": "none (one rank)",
    "reducer": "DataParallel reducer in the last micro step's backward (no_sync before)",
    "manual": "no_sync on every micro step, then one explicit all-reduce",
}


def grad_sync_mode(world_size: int, device: str, use_recompute: bool) -> str:
    """How gradients are averaged over ranks.

    "none": one rank. "reducer": DataParallel's reducer all-reduces during the last micro step's backward
    (``no_sync`` on the others). "manual": every micro step under ``no_sync``, then one explicit all-reduce
    (:func:`reduce_gradients`): on CPU (a dead gloo peer is then a Python error naming it, not an abort) and with
    --use_recompute, whose reentrant recompute runs a second backward inside backward, which the reducer does not
    support ("... has been ready before ..."): Paddle's recompute docs ask for ``no_sync`` with data parallelism, and
    PaddleNLP's Trainer wraps every micro step in ``no_sync`` when recompute is on and then calls
    ``fused_allreduce_gradients``, as here.
    """
    if world_size == 1:
        return "none"
    return "manual" if device == "cpu" or use_recompute else "reducer"


def reduce_gradients(model, env: DistEnv, device: str) -> None:
    """Average the gradients over ranks after backward ("manual" mode): Paddle's fused_allreduce_gradients on
    accelerators (as PaddleNLP's Trainer), the Python bucketed all-reduce on CPU (distributed.all_reduce_gradients)."""
    if device == "cpu":
        all_reduce_gradients(model.parameters(), env.world_size)
    else:
        from paddle.distributed.fleet.utils.hybrid_parallel_util import fused_allreduce_gradients

        fused_allreduce_gradients(list(model.parameters()), None)


def gradients_finite(parameters) -> bool:
    """Whether every gradient is finite (one fused check on the device, one host read). After the average over
    ranks the gradients are the same everywhere, so every rank takes the same decision."""
    from paddle import _C_ops

    by_dtype: dict = {}  # one check per gradient dtype (fp32, and fp16/bf16 under O2), as Paddle's GradScaler does
    for p in parameters:
        if p.grad is not None:
            by_dtype.setdefault(p.grad.dtype, []).append(p.grad)
    if not by_dtype:
        return True
    one, found = paddle.ones([1], dtype="float32"), paddle.zeros([1], dtype="bool")
    for grads in by_dtype.values():
        # Paddle's stub lacks the third (found_infinite) argument the eager op takes
        _, found_here = _C_ops.check_finite_and_unscale_(grads, one, paddle.zeros([1], dtype="bool"))  # type: ignore[call-arg]
        found = paddle.logical_or(found, found_here)
    return not bool(found)


def apply_update(optimizer, scaler, scheduler, finite: bool) -> bool:
    """The optimizer step for one global batch; returns whether it ran. With the float16 loss scaler, the scaler
    decides (it skips steps whose gradients overflowed and adjusts the scale); otherwise non-finite gradients skip the
    step. The LR schedule advances only when the optimizer ran (as PaddleNLP's Trainer), so overflow steps early in
    float16 training do not eat the warmup."""
    if scaler is not None and scaler.is_enable():
        scaler.step(optimizer)
        scaler.update()
        ran = not bool(scaler._cache_found_inf)  # a Python bool after step() in dynamic mode
    else:
        ran = finite
        if ran:
            optimizer.step()
    optim.clear_grads(optimizer)
    if ran:
        scheduler.step()
    return ran


def train_step(
    train_model,
    model,
    criterion,
    data,
    optimizer,
    scaler,
    scheduler,
    args: PretrainArgs,
    env: DistEnv,
    acc: int,
    sync_mode: str,
):
    """One optimizer step over ``acc`` micro batches from ``data`` -> (this rank's mean (loss, lm_loss, sop_loss) as a
    device tensor, whether the update ran). ``train_model`` is the DataParallel wrapper (or the model itself)."""
    sums = paddle.zeros([3], dtype="float32")
    for micro in range(acc):
        batch = next(data)
        in_backward = sync_mode == "none" or (sync_mode == "reducer" and micro == acc - 1)
        with contextlib.nullcontext() if in_backward else train_model.no_sync():
            losses = forward(train_model, criterion, batch, args)
            scaled = losses[0] / acc
            (scaler.scale(scaled) if scaler else scaled).backward()
        sums += paddle.stack([x.detach().astype("float32") for x in losses])
    if sync_mode == "manual":
        reduce_gradients(model, env, args.training.device)
    use_scaler = scaler is not None and scaler.is_enable()
    finite = True if use_scaler else gradients_finite(model.parameters())
    ran = apply_update(optimizer, scaler, scheduler, finite)
    return sums / acc, (ran if not use_scaler else True)


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    paddle.seed(seed)


# -------------------------------------------------------------------------------------------------- main


def train(args: PretrainArgs, env: DistEnv, stop: StopRequest | None = None) -> None:
    """The run; with ``stop`` (one rank), Ctrl-C during the loop ends it after the current step, with
    ``model_last`` saved at that step (unless the loss is not finite), then raises KeyboardInterrupt."""
    m, t, lg = args.model, args.training, args.logging
    batching = derive_batching(args, env.world_size)
    if t.use_amp and t.device == "cpu":
        warn("--use_amp: Paddle runs AMP only on GPU/XPU; on CPU the autocast and loss scaler are no-ops (fp32)")
    set_seed(t.seed + env.rank)  # different dropout masks on every rank
    if env.writes_checkpoints(args.data.share_folder):
        lock_output_dir(t.output_dir)  # held until the process exits

    # model, from scratch / continue_training / resume
    assert m.tokenizer_name_or_path is not None  # filled in by validate()
    tokenizer = ErnieTokenizer.from_pretrained(m.tokenizer_name_or_path)
    model = build_model(args, tokenizer)
    criterion = ErniePretrainingCriterion(with_nsp_loss=args.data.binary_head)
    resume_dir = resolve_dir(os.path.join(t.output_dir, "model_last"))
    # the masking stages, counted from step 0 of this run (a --continue_training run starts a new schedule)
    schedule = args.data.dataset_config(t.seed, batching.global_batch_size).schedule()
    state = ckpt.TrainerState(
        global_batch_size=batching.global_batch_size, world_size=env.world_size, masking_schedule=schedule.spec
    )
    if resume_dir:
        with ckpt.reading_resume_checkpoint(resume_dir, t.output_dir):
            state = resume_state(resume_dir, args, env, schedule)
            ckpt.load_model_weights(resume_dir, model)
    if state.global_step >= t.max_steps:
        console(f"{resume_dir} is already at step {state.global_step} >= --max_steps {t.max_steps}: nothing to do")
        return

    model, optimizer, scheduler, scaler = build_training(args, model)
    rng_states = None
    if resume_dir:
        with ckpt.reading_resume_checkpoint(resume_dir, t.output_dir):
            rng_states = ckpt.load_training_state(resume_dir, optimizer, scaler)
    train_model = paddle.DataParallel(model) if env.world_size > 1 else model

    # data: each rank reads its slice of every global batch, from where the checkpoint stopped (the sample-index
    # caches are built by one rank per folder, the others wait: data_tools.index_cache)
    train_ds, valid_ds, test_ds = build_datasets(args, tokenizer, batching)
    train_data = iter(batches(train_ds, args, env, consumed_samples=state.consumed_samples))

    log = RunLogger(t.output_dir, enabled=env.is_main, start_step=state.global_step)
    if env.is_main:
        describe_run(args, env, batching, model, log, resume_dir, state)
    if rng_states is not None:
        if len(rng_states) == env.world_size:
            ckpt.set_rng_state(rng_states[env.rank])
        else:
            warn(
                f"{resume_dir} was saved by {len(rng_states)} ranks, this run has {env.world_size}: "
                "dropout randomness restarts from --seed"
            )

    def save(path: str) -> None:
        all_rng = all_gather_object(ckpt.rng_state(), env.world_size)
        if env.writes_checkpoints(args.data.share_folder):
            try:
                ckpt.save_checkpoint(
                    path,
                    model=model,
                    optimizer=optimizer,
                    scaler=scaler,
                    tokenizer=tokenizer,
                    state=state,
                    rng_states=all_rng,
                    args_dict=args.to_dict(),
                )
            except OSError as e:
                kept = resolve_dir(path) or resolve_dir(os.path.join(t.output_dir, "model_last"))
                raise UserError(
                    f"saving checkpoint {path} failed ({e.strerror or e}); "
                    f"{'the previous checkpoint ' + kept + ' is intact' if kept else 'no checkpoint kept'}"
                ) from None
        barrier(env.world_size)

    if state.global_step == 0 and valid_ds is not None and lg.eval_iters > 0:  # the "before" of the curves
        iters = lg.eval_iters * batching.accumulate_steps
        report_eval(
            log,
            "valid",
            0,
            evaluate_held_out(train_model, criterion, valid_ds, iters, args, env, schedule.stage_at_step(0)),
        )

    # the loop: one iteration = one optimizer step over a global batch (train_step: the micro steps, the gradient
    # average over ranks, the update). Losses stay on the device and are averaged over ranks at log steps only.
    acc = batching.accumulate_steps
    sync_mode = grad_sync_mode(env.world_size, t.device, m.use_recompute)
    if env.is_main and env.world_size > 1:
        console(f"gradient average over ranks: {SYNC_MODES[sync_mode]}")
    window = paddle.zeros([4], dtype="float32")  # summed finite (loss, lm_loss, sop_loss) + their count, this rank
    window_start, nonfinite_streak = state.global_step, 0
    tic, paused = time.time(), 0.0  # paused: time spent in evaluation and checkpoints, not counted as training
    if stop is not None:
        stop.arm()  # from here on, a first Ctrl-C stops after the current step (see below)
    stage = None
    while state.global_step < t.max_steps:
        if stage is None or schedule.stage_at_step(state.global_step).index != stage.index:
            stage = schedule.stage_at_step(state.global_step)
            announce_stage(log, schedule, stage, state.global_step)
        lr = optimizer.get_lr()
        sums, finite = train_step(
            train_model, model, criterion, train_data, optimizer, scaler, scheduler, args, env, acc, sync_mode
        )
        state.global_step += 1
        state.consumed_samples += batching.global_batch_size
        state.masking_schedule, state.masking_stage = schedule.spec, stage.name
        state.masking_stage_index, state.masking_stage_start = stage.index, stage.start
        step = state.global_step
        ok = paddle.isfinite(sums).all()
        window += paddle.concat([paddle.where(ok, sums, paddle.zeros_like(sums)), ok.astype("float32").reshape([1])])

        nonfinite_streak = 0 if finite else nonfinite_streak + 1
        if nonfinite_streak >= t.max_nonfinite_steps:
            last = resolve_dir(os.path.join(t.output_dir, "model_last"))
            raise UserError(
                f"the loss or its gradients were not finite for {nonfinite_streak} consecutive steps "
                f"(up to step {step}); "
                f"stopping. Last good checkpoint: {last or 'none'}. Lower --max_lr, raise --warmup_rate or enable "
                "--grad_clip, then rerun the same command to resume from it"
            )
        if step % lg.logging_freq == 0 or step == t.max_steps:
            totals = all_reduce_mean(window, env.world_size).numpy()  # the one host read of the losses
            mean = totals[:3] / totals[3] if totals[3] else np.full(3, np.nan)
            log_train_step(
                log,
                args,
                batching,
                step,
                mean,
                lr,
                steps_done=step - window_start,
                elapsed=time.time() - tic - paused,
                scaler=scaler,
                consumed=state.consumed_samples,
                stage=stage,
            )
            window, window_start = paddle.zeros([4], dtype="float32"), step
            tic, paused = time.time(), 0.0
        pause_start = time.time()
        if valid_ds is not None and lg.eval_iters > 0 and step % lg.eval_freq == 0:
            report_eval(
                log,
                "valid",
                step,
                evaluate_held_out(train_model, criterion, valid_ds, lg.eval_iters * acc, args, env, stage),
            )
        if nonfinite_streak == 0:  # never checkpoint weights that may be broken
            if step % t.save_steps == 0 or step == t.max_steps:
                save(os.path.join(t.output_dir, f"model_{step}"))
            if step % t.checkpoint_steps == 0 or step == t.max_steps:
                save(os.path.join(t.output_dir, "model_last"))
        paused += time.time() - pause_start
        if stop is not None and stop.requested:  # Ctrl-C: the step is complete, so model_last can be saved
            last = os.path.join(t.output_dir, "model_last")
            if nonfinite_streak:
                warn(f"interrupted at step {step} with a non-finite loss: {last} is not updated")
            elif not (step % t.checkpoint_steps == 0 or step == t.max_steps):
                save(last)
            console(
                f"interrupted at step {step}; {resolve_dir(last) or 'no checkpoint'} holds step "
                f"{ckpt.read_trainer_state(last).global_step if resolve_dir(last) else 0}: rerun the same "
                "command to resume"
            )
            log.close()
            raise KeyboardInterrupt
    if stop is not None:
        stop.disarm()

    assert lg.test_iters is not None  # filled in by validate()
    if test_ds is not None and lg.test_iters > 0:
        report_eval(
            log,
            "test",
            state.global_step,
            evaluate_held_out(
                train_model,
                criterion,
                test_ds,
                lg.test_iters * acc,
                args,
                env,
                schedule.stage_at_step(max(state.global_step - 1, 0)),
            ),
        )
    log.close()


def resume_state(resume_dir: str, args: PretrainArgs, env: DistEnv, schedule: MaskingSchedule) -> ckpt.TrainerState:
    """The checkpoint's step counters; every rank must see the same checkpoint; changed settings are reported; the
    masking schedule must agree with the checkpoint's over the steps done (later stages may change)."""
    state = ckpt.read_trainer_state(resume_dir)
    steps = all_gather_object(state.global_step, env.world_size)
    if len(set(steps)) > 1:
        raise UserError(
            f"ranks found different checkpoints in {resume_dir} (steps {steps}): with one output folder "
            "shared by all machines pass --share_folder true, otherwise give every machine the same "
            "model_last"
        )
    changes = ckpt.config_changes(ckpt.read_args(resume_dir), args.to_dict())
    if env.is_main:
        console(f"resuming from {resume_dir}: step {state.global_step}, {state.consumed_samples} samples consumed")
        for change in changes:
            warn(f"setting changed since the checkpoint: {change}")
    if state.global_batch_size != args.training.global_batch_size:
        raise UserError(
            f"--global_batch_size: the checkpoint in {resume_dir} was trained with "
            f"{state.global_batch_size}; resume with the same value (or start a new --output_dir)"
        )
    if state.masking_schedule:  # (checkpoints written before schedules existed carry none)
        saved = MaskingSchedule(state.masking_schedule)
        if saved.history(state.global_step) != schedule.history(state.global_step):
            raise UserError(
                f"--masking_schedule: the checkpoint in {resume_dir} trained its {state.global_step} steps with "
                f"{state.masking_schedule!r} (last in stage {state.masking_stage_index + 1}, {state.masking_stage}); "
                f"{schedule.spec!r} masks those steps differently. Resume with the checkpoint's schedule (stages not "
                "begun yet may change), or start a new schedule from its weights with --continue_training in a new "
                "--output_dir"
            )
    return state


def announce_stage(log: RunLogger, schedule: MaskingSchedule, stage, step: int) -> None:
    """Console line + VisualDL text when a masking stage begins (or a run starts / resumes inside one)."""
    if len(schedule.stages) == 1 and step > 0:
        return
    message = (
        f"masking {stage.describe()} of {len(schedule.stages)} ({schedule.spec}): from step {step + 1} "
        f"(training sample {step * schedule.samples_per_step})"
    )
    if log.enabled:
        console(message)
    log.text("masking_stage", message, step=step)


def describe_run(args, env: DistEnv, batching: Batching, model, log: RunLogger, resume_dir, state) -> None:
    n_params = sum(int(np.prod(p.shape)) for p in model.parameters())
    console(
        f"ranks: {env.world_size} (dp), micro batch {batching.micro_batch_size} x {env.world_size} ranks x "
        f"{batching.accumulate_steps} accumulation = global batch {batching.global_batch_size}; "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; paddle {paddle.__version__} "
        f"on {args.training.device}; {n_params / 1e6:.1f}M parameters"
    )
    for key, value in args.flat().items():
        console(f"{key:30}: {value}")
    log.text("args", json.dumps(args.to_dict(), indent=2))
    if not resume_dir:
        log.record("start", 0, world_size=env.world_size, global_batch_size=batching.global_batch_size)
    else:
        log.record("resume", state.global_step, world_size=env.world_size)


def log_train_step(
    log: RunLogger,
    args,
    batching: Batching,
    step: int,
    losses,
    lr: float,
    steps_done: int,
    elapsed: float,
    scaler,
    consumed: int,
    stage,
) -> None:
    speed = steps_done / max(elapsed, 1e-9)
    seqs = speed * batching.global_batch_size
    tokens = seqs * args.data.max_seq_len
    values = {
        "loss": float(losses[0]),
        "lm_loss": float(losses[1]),
        "sop_loss": float(losses[2]),
        "learning_rate": lr,
        "steps_per_second": speed,
        "samples_per_second": seqs,
        "tokens_per_second": tokens,
        "consumed_samples": consumed,
        "masking_stage": stage.name,
        "masking_stage_index": stage.index,
    }
    line = (
        f"global step {step}, loss: {losses[0]:.9f}, lm_loss: {losses[1]:.6f}, sop_loss: {losses[2]:.6f}, "
        f"speed: {speed:.2f} steps/s, ips: {seqs:.2f} seqs/s, tokens/s: {tokens:.0f}, learning rate: {lr:.5e}, "
        f"masking: {stage.name}"
    )
    if scaler is not None and scaler.is_enable():
        amp = {
            "loss_scaling": float(scaler._scale.item()),
            "incr_count": int(scaler._incr_count),
            "decr_count": int(scaler._decr_count),
        }
        line += ", " + ", ".join(f"{k}: {v:g}" for k, v in amp.items())
        values.update(amp)
    if log.enabled:
        console(line)
    log.record("train", step, **values)


def report_eval(log: RunLogger, name: str, step: int, losses: dict) -> None:
    if log.enabled:
        console(
            f"{name} step {step}, loss: {losses['loss']:.6f}, lm_loss: {losses['lm_loss']:.6f}, "
            f"sop_loss: {losses['sop_loss']:.6f}, lm_acc: {losses['lm_acc']:.4f} (masking: "
            f"{losses['masking_stage']}); basic-masked lm_loss: {losses['basic_lm_loss']:.6f}, lm_acc: "
            f"{losses['basic_lm_acc']:.4f}"
        )
    log.record(name, step, **losses)


@cli_main
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    tune_cpu_math(args.training.device)  # process-level CPU settings, before the first GEMM
    die_with_launcher()
    env = init_distributed(args.training.device)
    fresh = not os.path.lexists(args.training.output_dir)
    try:
        with StopRequest(enabled=env.world_size == 1) as stop:
            train(args, env, stop)
    except BaseException as e:
        if fresh:
            discard_unused_output_dir(args.training.output_dir)  # refused before any output: leave no empty dir
        if is_interrupt(e) and not isinstance(e, KeyboardInterrupt):  # Ctrl-C re-raised by Paddle from C++
            raise KeyboardInterrupt from None
        if env.world_size == 1 or not isinstance(e, Exception):
            raise
        # Under a launch: name this rank, then exit at once (no teardown that could wait on dead peers), so that
        # the launcher sees this rank fail first, reports its log and stops the others.
        if not isinstance(e, UserError):
            traceback.print_exc()
        dead = [] if isinstance(e, UserError) else env.dead_peers()
        peer = re.search(r"pair_rank = (\d+)", str(e))
        if dead:
            who = f"rank {dead[0]}" if len(dead) == 1 else f"ranks {', '.join(map(str, dead))}"
            last_line = str(e).strip().splitlines()[-1][:200] if str(e).strip() else type(e).__name__
            cause = (
                f"{who} of this machine died first (its process ended, see its workerlog); this rank lost "
                f"contact with it ({last_line})"
            )
        elif peer:
            cause = f"lost contact with rank {peer.group(1)}, which stopped first (see its workerlog)"
        else:
            cause = str(e)
        message = f"error: rank {env.rank} of {env.world_size} on {env.host}: {cause}"
        print(message, file=sys.stderr, flush=True)
        log_dir = os.environ.get("PADDLE_LOG_DIR")
        tell_launcher(message + (f" (log: {log_dir}/workerlog.{env.local_rank})" if log_dir else ""))
        sys.stdout.flush()
        for worker in multiprocessing.active_children():  # DataLoader workers would outlive os._exit
            worker.terminate()
        os._exit(2 if isinstance(e, UserError) else 1)
