"""ERNIE 1.0 pretraining loop (MLM + SOP), data parallel, read top to bottom.

    python -m paddle.distributed.launch --gpus 0,1,2,3 scripts/run_pretrain.py --config configs/pretrain/x.yaml
    python -m paddle.distributed.launch --nproc_per_node 2 scripts/run_pretrain.py ...   # CPU, gloo

One optimizer step consumes ``global_batch_size = micro_batch_size x ranks x accumulate_steps`` sequences: each rank
runs ``accumulate_steps`` forward/backward passes on its own micro batches, gradients are all-reduced (averaged)
only on the last of them (``DataParallel.no_sync`` on the others; with --use_recompute or on CPU every micro step runs
under ``no_sync`` and one explicit all-reduce follows, see :func:`grad_sync_mode`), then every rank applies the same
update. The LR schedule advances only on steps whose update ran (not on float16 overflow steps).

The step, the loop, AMP, the gradient average, checkpoints and stop requests are the training engine's
(:mod:`ernie.training.engine`); this module is pretraining's recipe for it (:class:`PretrainRecipe`: the ERNIE
dataset's micro batches, MLM + SOP, held-out evaluation, ``model_last`` / ``model_<step>``) and its entry point.

Restarting the same command resumes from ``output_dir/model_last`` (without one, from the newest readable
``model_<step>``): weights, optimizer moments, LR schedule, loss scale, data position (consumed samples) and every
rank's RNG state, so a resumed fp32 run reproduces the uninterrupted one exactly. SIGINT (Ctrl-C) or SIGTERM to any
rank finishes the current step on every rank, saves ``model_last`` at it and exits (``error: interrupted``, status
130; SIGTERM: status 143); a run that fails before writing into an ``output_dir`` it created removes it.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import signal
import sys
import traceback
from fractions import Fraction
from typing import Any

import numpy as np
import paddle

from data_tools.batching import DistributedBatchSampler, collate
from data_tools.ernie_dataset import build_train_valid_test_datasets, train_valid_test_num_samples
from data_tools.indexed_dataset import vocab_fingerprint
from data_tools.masking import MaskingSchedule
from ernie.configuration import ErnieConfig
from ernie.modeling import ErnieForPretraining, ErniePretrainingCriterion
from ernie.tokenizer import ErnieTokenizer
from ernie.utils import Stopped, UserError, cli_main, is_interrupt, remove_dir, resolve_dir
from ernie.utils.cpu_tuning import tune_cpu_math
from ernie.weights import WEIGHTS_NAME, is_hf_dir

from . import checkpoint as ckpt
from . import optim
from .args import Batching, PretrainArgs, derive_batching, parse_args, warmup_steps
from .checkpoint import TrainerState, set_seed
from .distributed import (
    DistEnv,
    all_gather_object,
    all_reduce_mean,
    check_share_folder,
    die_with_launcher,
    discard_unused_output_dir,
    init_distributed,
    loader_worker_init,
    lock_output_dir,
    tell_launcher,
)
from .engine import SYNC_MODES, Engine, EngineConfig, Recipe
from .log import RunLogger, console, warn
from .lr import WarmupDecay

SOP_ONLY_PARAMETERS = ("ernie.pooler.", "cls.seq_relationship.")


# ----------------------------------------------------------------------------------------------- model + data


def build_model(args: PretrainArgs, tokenizer):
    """ErnieForPretraining from a config (from scratch) or from weights: those of a model directory given as
    --model_name_or_path (PaddleNLP's rule), or with --continue_training those of a name (published weights)."""
    m = args.model
    source = m.model_name_or_path
    # PaddleNLP's rule: a directory holding weights starts from them (with or without --continue_training); a name
    # or a config starts from a random init unless --continue_training asks for its (published) weights
    load = m.continue_training or (
        os.path.isdir(source) and (os.path.isfile(os.path.join(source, WEIGHTS_NAME)) or is_hf_dir(source))
    )
    config = ErnieConfig.from_pretrained(
        m.model_name_or_path,
        hidden_dropout_prob=m.hidden_dropout_prob,
        attention_probs_dropout_prob=m.attention_probs_dropout_prob,
        use_recompute=m.use_recompute,
        attention=m.attention,
    )
    if m.vocab_size is not None:
        if load and m.vocab_size != config.vocab_size:
            raise UserError(
                f"--vocab_size: {m.vocab_size} differs from the vocab_size {config.vocab_size} of the "
                f"weights in {m.model_name_or_path} (starting from them keeps their shape)"
            )
        if m.vocab_size < tokenizer.vocab_size:
            raise UserError(
                f"--vocab_size: {m.vocab_size} is smaller than the vocabulary "
                f"({tokenizer.vocab_size} tokens in {m.tokenizer_name_or_path})"
            )
        config = config.replace(vocab_size=m.vocab_size)
    if m.position_embedding_init is not None:
        if load:
            warn(
                f"--position_embedding_init {m.position_embedding_init} is not used: the run starts from the "
                f"weights of {source}"
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
    if load:
        ckpt.load_model_weights(source, model)
    console(f"model: {'weights from ' + source if load else 'random init with the config of ' + source}")
    if not args.data.binary_head:  # no SOP loss: freeze what only it trains (data parallel needs every grad)
        for name, param in model.named_parameters():
            if name.startswith(SOP_ONLY_PARAMETERS):
                param.stop_gradient = True
    return model


def build_optimizer(args: PretrainArgs, model, use_master_weights: bool):
    """(optimizer, LR scheduler): the shared AdamW (``ernie.training.optim``) with this run's warmup + decay."""
    o = args.optimizer
    assert o.decay_steps is not None  # filled in by validate()
    scheduler = WarmupDecay(
        o.max_lr, o.min_lr, warmup_steps=warmup_steps(args), decay_steps=o.decay_steps, style=o.lr_decay_style
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


def forward(model, criterion, batch, with_scores: bool = False):
    """(loss, lm_loss, sop_loss) of one micro batch (+ the MLM prediction scores with ``with_scores``); the caller
    holds the engine's autocast."""
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
def evaluate(engine: Engine, criterion, dataset, iters: int, args: PretrainArgs) -> dict[str, float]:
    """Mean losses and MLM accuracy (share of masked tokens predicted top-1) over the first ``iters`` micro batches
    of every rank of a (fixed) held-out dataset."""
    model, env = engine.train_model, engine.env
    model.eval()
    sums = paddle.zeros([3], dtype="float32")
    hits = paddle.zeros([2], dtype="float32")  # correct masked tokens, masked tokens
    # read to the end: an iterator dropped early keeps its worker processes (the loader's thread holds it), so
    # one would be left behind by every evaluation
    done = 0
    for batch in batches(dataset, args, env, num_batches=iters):
        with engine.autocast():
            *losses, scores = forward(model, criterion, batch, with_scores=True)
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


def evaluate_held_out(engine: Engine, criterion, dataset, iters: int, args: PretrainArgs, stage) -> dict:
    """The held-out figures of a run in masking ``stage``: losses and MLM accuracy with the stage's masking, and
    ``basic_lm_loss`` / ``basic_lm_acc`` on the same samples basic-masked, whatever the training masking (the figure
    that compares runs of different masking; computed once when the stage is ``basic``)."""
    values = evaluate(engine, criterion, dataset.with_masking(stage.name), iters, args)
    basic = values if stage.name == "basic" else evaluate(engine, criterion, dataset.with_masking("basic"), iters, args)
    return {
        **values,
        "basic_lm_loss": basic["lm_loss"],
        "basic_lm_acc": basic["lm_acc"],
        "masking_stage": stage.name,
        "masking_stage_index": stage.index,
    }


# -------------------------------------------------------------------------------------------------- recipe


class PretrainRecipe(Recipe):
    """MLM + SOP on the ERNIE dataset: what pretraining plugs into the engine (module docstring)."""

    value_names = ("loss", "lm_loss", "sop_loss")

    def __init__(self, args: PretrainArgs, env: DistEnv, batching: Batching, tokenizer, criterion, schedule, data):
        self.args, self.env, self.batching = args, env, batching
        self.tokenizer, self.criterion, self.schedule = tokenizer, criterion, schedule
        self.train_ds, self.valid_ds, self.test_ds = data
        self.train_data = None  # the loader's iterator, from the state's data position (start())
        self.log: RunLogger | None = None
        self.engine: Engine | None = None
        self.stage: Any = None  # the masking stage of the current step (data_tools.masking)

    def start(self, engine: Engine, state: TrainerState, log: RunLogger) -> None:
        self.engine, self.log = engine, log
        self.train_data = iter(batches(self.train_ds, self.args, self.env, consumed_samples=state.consumed_samples))

    @property
    def _engine(self) -> Engine:
        assert self.engine is not None, "start() first"
        return self.engine

    @property
    def _log(self) -> RunLogger:
        assert self.log is not None, "start() first"
        return self.log

    def next_step(self, state: TrainerState):
        assert self.train_data is not None, "start() first"
        acc = self.batching.accumulate_steps
        return [(self._next_batch(), Fraction(1, acc)) for _ in range(acc)]

    def _next_batch(self):
        assert self.train_data is not None, "start() first"
        return next(self.train_data)

    def loss(self, model, batch):
        return forward(model, self.criterion, batch)

    def before_step(self, state: TrainerState) -> None:
        stage = self.schedule.stage_at_step(state.global_step)
        if self.stage is None or stage.index != self.stage.index:
            self.stage = stage
            announce_stage(self._log, self.schedule, stage, state.global_step)

    def after_step(self, state: TrainerState) -> None:
        stage = self.stage
        state.consumed_samples += self.batching.global_batch_size
        state.masking_schedule, state.masking_stage = self.schedule.spec, stage.name
        state.masking_stage_index, state.masking_stage_start = stage.index, stage.start

    def log_train(self, state, values, lr, steps_done, elapsed) -> None:
        log_train_step(
            self._log,
            self.args,
            self.batching,
            state.global_step,
            [values["loss"], values["lm_loss"], values["sop_loss"]],
            lr,
            steps_done=steps_done,
            elapsed=elapsed,
            scaler=self._engine.scaler,
            consumed=state.consumed_samples,
            stage=self.stage,
        )

    def held_out(self, name: str, dataset, iters: int, step: int, stage) -> dict:
        iters *= self.batching.accumulate_steps
        values = evaluate_held_out(self._engine, self.criterion, dataset, iters, self.args, stage)
        report_eval(self._log, name, step, values)
        return values

    def scheduled_evaluation(self, state: TrainerState, final: bool):
        lg = self.args.logging
        if self.valid_ds is None or lg.eval_iters <= 0 or state.global_step % lg.eval_freq:
            return None
        return self.held_out("valid", self.valid_ds, lg.eval_iters, state.global_step, self.stage)

    def checkpoints_due(self, state: TrainerState, final: bool, improved: bool) -> list[str]:
        t, step = self.args.training, state.global_step
        due = []
        if step % t.save_steps == 0 or final:
            due.append(os.path.join(t.output_dir, f"model_{step}"))
        if step % t.checkpoint_steps == 0 or final:
            due.append(self.resume_checkpoint(state))
        return due

    def resume_checkpoint(self, state: TrainerState) -> str:
        return os.path.join(self.args.training.output_dir, "model_last")

    def save_extra(self, directory: str) -> None:
        self.tokenizer.save_pretrained(directory)

    def args_dict(self) -> dict:
        return self.args.to_dict()

    def after_save(self, path: str, state: TrainerState) -> None:
        """--save_total_limit: only the newest N model_<step> stay (model_last is not counted)."""
        limit, out = self.args.training.save_total_limit, self.args.training.output_dir
        if not limit or not self.env.writes_checkpoints(self.args.data.share_folder):
            return
        for path in ckpt.step_dirs(out, "model_")[:-limit]:
            remove_dir(path)


LOADER_DEATH = re.compile(
    r"DataLoader \d+ workers exit unexpectedly, pids: [\d, ]+|DataLoader process \(pid \d+\) exited[^.\n]*"
)


def loader_worker_death(error: BaseException, output_dir: str) -> UserError | None:
    """The one-line error for a DataLoader worker that died (what the out-of-memory killer does), found in ``error``
    or its causes, wherever Paddle raised it (``next()`` on the loader, or its SIGCHLD handler during a save or a
    backward); None for any other error."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        found = LOADER_DEATH.search(str(error))
        if found:
            return UserError(
                f"a DataLoader worker process died ({found.group(0)}; the out-of-memory killer sends SIGKILL): "
                f"rerun the same command to resume from {os.path.join(output_dir, 'model_last')}; fewer "
                "--num_workers use less memory"
            )
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    return None


def engine_config(args: PretrainArgs) -> EngineConfig:
    t = args.training
    return EngineConfig(
        output_dir=t.output_dir,
        device=t.device,
        max_steps=t.max_steps,
        use_amp=t.use_amp,
        amp_dtype=t.amp_dtype,
        amp_level=t.fp16_opt_level,
        scale_loss=t.scale_loss,
        amp_master_grad=t.amp_master_grad,
        deterministic=t.deterministic,
        use_recompute=args.model.use_recompute,
        max_nonfinite_steps=t.max_nonfinite_steps,
        logging_steps=args.logging.logging_freq,
        share_folder=args.data.share_folder,
    )


# -------------------------------------------------------------------------------------------------- main


def find_resume_dir(output_dir: str, resume_from: str | None = None) -> str | None:
    """The checkpoint a run resumes from: ``--resume_from_checkpoint`` (ours, or PaddleNLP's run_pretrain.py
    ``model_last`` / Trainer ``checkpoint-N``); else ``output_dir/model_last``; without one, the newest readable
    ``model_<step>`` (a run whose model_last was moved away or lost never trains over its other checkpoints). A
    ``checkpoint-N`` of PaddleNLP's Trainer in ``output_dir`` is named, never silently trained over."""
    if resume_from is not None:
        if not os.path.isdir(resume_from):
            raise UserError(f"--resume_from_checkpoint: {resume_from} is not a checkpoint directory")
        return resume_from
    last = resolve_dir(os.path.join(output_dir, "model_last"))
    if last or not os.path.isdir(output_dir):
        return last
    other = ckpt.newest_readable_checkpoint(output_dir)
    if other:
        console(f"{output_dir} has no model_last: resuming from {other}, its newest readable checkpoint")
        return other
    trainer_ckpts = ckpt.step_dirs(output_dir, "checkpoint-")
    if trainer_ckpts:
        names = ", ".join(os.path.basename(p) for p in trainer_ckpts)
        raise UserError(
            f"--output_dir {output_dir} holds Trainer checkpoints ({names}) and no model_last: "
            f"pass --resume_from_checkpoint {trainer_ckpts[-1]} to resume it, or choose another --output_dir"
        )
    return None


def train(args: PretrainArgs, env: DistEnv) -> None:
    """The run: the engine over :class:`PretrainRecipe`; a stop request (SIGINT / SIGTERM) raises
    :class:`~ernie.training.engine.Stopped` with ``model_last`` saved at the last complete step."""
    m, t, lg = args.model, args.training, args.logging
    batching = derive_batching(args, env.world_size)
    if t.use_amp and t.device == "cpu":
        warn("--use_amp: Paddle runs AMP only on GPU/XPU; on CPU the autocast and loss scaler are no-ops (fp32)")
    set_seed(t.seed + env.rank)  # different dropout masks on every rank
    check_share_folder(t.output_dir, env, args.data.share_folder)  # several machines: what they see decides
    if env.writes_checkpoints(args.data.share_folder):
        lock_output_dir(t.output_dir, log=console)  # held until the process exits; a wait is said
    log_dir = os.environ.get("PADDLE_LOG_DIR")
    if log_dir and env.local_rank == 0 and os.path.isdir(log_dir):
        # the launcher's --log_dir: two launches sharing one write into each other's workerlog.N
        try:
            lock_output_dir(log_dir, wait=0)
        except UserError:
            raise UserError(
                f"--log_dir {log_dir} (of paddle.distributed.launch) is used by another run on this machine: give "
                "each run its own --log_dir"
            ) from None

    # model, from scratch / continue_training / resume
    assert m.tokenizer_name_or_path is not None  # filled in by validate()
    tokenizer = ErnieTokenizer.from_pretrained(m.tokenizer_name_or_path)
    model = build_model(args, tokenizer)
    criterion = ErniePretrainingCriterion(with_nsp_loss=args.data.binary_head)
    # --overwrite_output_dir: step 0, unless a checkpoint is named explicitly
    resumes = t.resume_from_checkpoint is not None or not t.overwrite_output_dir
    resume_dir = find_resume_dir(t.output_dir, t.resume_from_checkpoint) if resumes else None
    # the masking stages, counted from step 0 of this run (a --continue_training run starts a new schedule)
    schedule = args.data.dataset_config(t.seed, batching.global_batch_size).schedule()
    state = TrainerState(
        global_batch_size=batching.global_batch_size, world_size=env.world_size, masking_schedule=schedule.spec
    )
    resume = None
    if resume_dir:
        with ckpt.reading_resume_checkpoint(resume_dir, t.output_dir):
            resume = ckpt.read_checkpoint(resume_dir)
        state = resume_state(resume, args, env, schedule)
        # ours and PaddleNLP's save the tokenizer beside the weights: another vocabulary would give its ids other
        # meanings, and model_last would ship a vocab.txt its embeddings were not trained on
        if os.path.isfile(os.path.join(resume_dir, "vocab.txt")) and vocab_fingerprint(resume_dir) != vocab_fingerprint(
            tokenizer
        ):
            raise UserError(
                f"--tokenizer_name_or_path {m.tokenizer_name_or_path}: not the vocabulary {resume_dir} was trained "
                "with (its vocab.txt differs): resume with that vocabulary, or start a new --output_dir"
            )
    if state.global_step >= t.max_steps:
        console(f"{resume_dir} is already at step {state.global_step} >= --max_steps {t.max_steps}: nothing to do")
        return
    engine = Engine(engine_config(args), env, model, lambda mdl, mp: build_optimizer(args, mdl, mp), resume=resume)
    del resume

    # data: each rank reads its slice of every global batch, from where the checkpoint stopped (the sample-index
    # caches are built by one rank per folder, the others wait: data_tools.index_cache)
    data = build_datasets(args, tokenizer, batching)
    recipe = PretrainRecipe(args, env, batching, tokenizer, criterion, schedule, data)
    log = RunLogger(t.output_dir, enabled=env.is_main, start_step=state.global_step)
    recipe.start(engine, state, log)
    if env.is_main:
        describe_run(args, env, batching, engine.model, log, resume_dir, state)
        if env.world_size > 1:
            console(f"gradient average over ranks: {SYNC_MODES[engine.sync_mode]}")
    if state.global_step == 0 and recipe.valid_ds is not None and lg.eval_iters > 0:  # the "before" of the curves
        recipe.held_out("valid", recipe.valid_ds, lg.eval_iters, 0, schedule.stage_at_step(0))
    try:
        engine.fit(recipe, state)
    except Stopped:
        log.close()
        raise
    assert lg.test_iters is not None  # filled in by validate()
    if recipe.test_ds is not None and lg.test_iters > 0:
        stage = schedule.stage_at_step(max(state.global_step - 1, 0))
        recipe.held_out("test", recipe.test_ds, lg.test_iters, state.global_step, stage)
    log.close()


def resume_state(resume: ckpt.Checkpoint, args: PretrainArgs, env: DistEnv, schedule: MaskingSchedule) -> TrainerState:
    """The checkpoint's step counters; every rank must see the same checkpoint; changed settings are reported; the
    masking schedule must agree with the checkpoint's over the steps done (later stages may change)."""
    resume_dir, state = resume.path, resume.state

    steps = all_gather_object(state.global_step, env.world_size)
    if len(set(steps)) > 1:
        raise UserError(
            f"ranks found different checkpoints in {resume_dir} (steps {steps}): with one output folder "
            "shared by all machines pass --share_folder true, otherwise give every machine the same "
            "model_last"
        )
    changes = ckpt.config_changes(resume.args, args.to_dict())
    if env.is_main:
        console(f"resuming from {resume_dir}: step {state.global_step}, {state.consumed_samples} samples consumed")
        for change in changes:
            warn(f"setting changed since the checkpoint: {change}")
    if state.global_batch_size and state.global_batch_size != args.training.global_batch_size:
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
        train(args, env)  # a stop request raises Stopped, which cli_main turns into its exit (130 / 143)
    except BaseException as e:
        if env.world_size > 1 and isinstance(e, Exception):
            # this rank is failing: the launcher's SIGTERM to the other ranks must not cut its one line short
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if fresh:
            discard_unused_output_dir(args.training.output_dir)  # refused before any output: leave no empty dir
        if is_interrupt(e) and not isinstance(e, KeyboardInterrupt):  # Ctrl-C re-raised by Paddle from C++
            raise KeyboardInterrupt from None
        died = loader_worker_death(e, args.training.output_dir) if not os.environ.get("ERNIE_DEBUG") else None
        if died is not None:
            e = died
            if env.world_size == 1:
                raise died from None
        if env.world_size == 1 or not isinstance(e, Exception):
            raise
        # Under a launch: name this rank, then exit at once (no teardown that could wait on dead peers), so that
        # the launcher sees this rank fail first, reports its log and stops the others.
        dead = [] if isinstance(e, UserError) else env.dead_peers()
        peer = re.search(r"pair_rank = (\d+)", str(e))
        if os.environ.get("ERNIE_DEBUG") or not (isinstance(e, UserError) or dead or peer):
            traceback.print_exc()  # an unexpected failure: its traceback (a lost peer needs none: ERNIE_DEBUG=1)
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
