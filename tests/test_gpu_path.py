"""The GPU training path, checked on the CPU where a CPU can check it (issue #24): recompute + data parallel taking
the no_sync + one explicit all-reduce route, the float16 loss scaler on CPU, the LR schedule not advancing on a step
the scaler skipped, fp32 master weights in model_state.pdparams under AMP O2, and scripts/gpu_selfcheck.py's no-GPU
line and CPU dry run. Kernel selection against Paddle's own predicates: tests/test_kernels.py."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest

paddle = pytest.importorskip("paddle")

from ernie import ErnieConfig, ErnieForPretraining  # noqa: E402
from ernie.modeling import ErniePretrainingCriterion  # noqa: E402
from ernie.selfcheck import Case, synthetic_args, synthetic_batches  # noqa: E402
from ernie.training import checkpoint as ckpt  # noqa: E402
from ernie.training import engine as engine_module  # noqa: E402
from ernie.training import trainer  # noqa: E402
from ernie.training.distributed import DistEnv  # noqa: E402
from ernie.training.engine import Engine  # noqa: E402

ONE_RANK = DistEnv(rank=0, world_size=1, local_rank=0, host="h")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
V, S, B = 64, 16, 4


def tiny_model(**kw):
    paddle.seed(5)
    cfg = dict(
        vocab_size=V,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    model = ErnieForPretraining(ErnieConfig(**{**cfg, **kw}))
    model.train()
    return model


def batches(n):
    return [{k: paddle.to_tensor(v) for k, v in b.items()} for b in synthetic_batches(V, B, S, n)]


def make_engine(args, model, env=ONE_RANK):
    """The engine of a pretraining run with ``args`` over ``model`` (one rank)."""
    return Engine(trainer.engine_config(args), env, model, lambda m, mp: trainer.build_optimizer(args, m, mp))


def pretrain_loss(model, batch):
    return trainer.forward(model, ErniePretrainingCriterion(), batch)


class RecordingDataParallel:
    """Stands in for paddle.DataParallel on 2 ranks: records which micro steps ran under no_sync."""

    def __init__(self, model):
        self.model, self.log, self._in_no_sync = model, [], False

    def __call__(self, *a, **kw):
        self.log.append("no_sync" if self._in_no_sync else "reducer")
        return self.model(*a, **kw)

    @contextlib.contextmanager
    def no_sync(self):
        self._in_no_sync = True
        try:
            yield
        finally:
            self._in_no_sync = False


@pytest.mark.parametrize(
    "device, recompute, expected_mode, expected_log, reduces",
    [
        ("gpu", True, "manual", ["no_sync"] * 3, 1),  # recompute: no_sync on every micro step, one all-reduce
        ("gpu", False, "reducer", ["no_sync", "no_sync", "reducer"], 0),  # the reducer in the last backward
        ("cpu", False, "manual", ["no_sync"] * 3, 1),  # gloo: all-reduce from Python
    ],
)
def test_recompute_with_data_parallel_takes_the_no_sync_route(
    monkeypatch, device, recompute, expected_mode, expected_log, reduces
):
    from fractions import Fraction

    mode = engine_module.grad_sync_mode(2, device, recompute)
    assert mode == expected_mode and engine_module.grad_sync_mode(1, device, recompute) == "none"
    calls = []
    monkeypatch.setattr(engine_module, "reduce_gradients", lambda model, env, dev: calls.append(dev))
    model = tiny_model(use_recompute=recompute)
    args = synthetic_args(Case("small", recompute=recompute), "cpu", B, S, 1, "unused")
    engine = make_engine(args, model)
    # two ranks on `device`, simulated: the wrapper records no_sync, the all-reduce is recorded above
    engine.train_model, engine.sync_mode = RecordingDataParallel(model), mode
    engine.env = DistEnv(rank=0, world_size=2, local_rank=0, host="h")
    engine.config = dataclasses.replace(engine.config, device=device)
    engine.step([(b, Fraction(1, 3)) for b in batches(3)], pretrain_loss)
    assert engine.train_model.log == expected_log and calls == [device] * reduces


def test_recompute_is_exact_on_cpu():
    """use_recompute changes memory, not results: same gradients as without it (dropout off)."""
    grads = []
    for recompute in (False, True):
        model = tiny_model(use_recompute=recompute)
        b = batches(1)[0]
        loss = pretrain_loss(model, b)[0]
        loss.backward()
        grads.append({n: p.grad.numpy() for n, p in model.named_parameters() if p.grad is not None})
    for name, g in grads[0].items():
        np.testing.assert_allclose(grads[1][name], g, rtol=1e-6, atol=1e-7, err_msg=name)


def test_float16_scaler_on_cpu_logs_without_crashing(capsys):
    """--use_amp --amp_dtype float16 on CPU: no scaler is built (Paddle's would be disabled: no scale, no counters,
    which the first log line used to read); a disabled one is skipped by the logger too."""
    args = synthetic_args(Case("small", precision="fp16-O2"), "cpu", B, S, 1, "unused")
    assert make_engine(args, tiny_model()).scaler is None
    disabled = paddle.amp.GradScaler(init_loss_scaling=1024.0)  # on CPU Paddle disables it
    assert not disabled.is_enable()

    class Log:
        enabled, records = True, []

        def record(self, *a, **kw):
            self.records.append(kw)

    from data_tools.masking import MaskingSchedule

    batching = trainer.Batching(B, 1, 1)
    stage = MaskingSchedule.single("basic").stage_at_step(0)
    for s in (None, disabled):
        trainer.log_train_step(Log(), args, batching, 1, np.array([1.0, 0.5, 0.5]), 1e-4, 1, 1.0, s, B, stage)
    assert "loss_scaling" not in capsys.readouterr().out


def scheduler_moves(args) -> bool:
    from ernie.training.lr import lr_at

    o = args.optimizer
    return lr_at(0, o.max_lr, o.min_lr, 0, o.decay_steps, o.lr_decay_style) != lr_at(
        1, o.max_lr, o.min_lr, 0, o.decay_steps, o.lr_decay_style
    )


class SkippingScaler:
    """A float16 loss scaler forced to report an overflow (found_inf) on every step, as Paddle's GradScaler does
    after step(): the optimizer update is skipped."""

    def __init__(self, found_inf: bool):
        self.found_inf, self._cache_found_inf = found_inf, None

    def is_enable(self):
        return True

    def scale(self, loss):
        return loss

    def step(self, optimizer):
        self._cache_found_inf = self.found_inf
        if not self.found_inf:
            optimizer.step()

    def update(self):
        pass


@pytest.mark.parametrize("found_inf", [True, False])
def test_lr_schedule_does_not_advance_on_a_skipped_step(found_inf):
    model = tiny_model()
    args = synthetic_args(Case("small"), "cpu", B, S, 10, "unused")
    assert scheduler_moves(args)  # cosine decay from step 0: the LR changes every step
    from fractions import Fraction

    engine = make_engine(args, model)
    before = {n: p.numpy().copy() for n, p in model.named_parameters()}
    engine.scaler = SkippingScaler(found_inf)
    result = engine.step([(batches(1)[0], Fraction(1))], pretrain_loss)
    changed = any(not np.array_equal(p.numpy(), before[n]) for n, p in model.named_parameters())
    assert engine.scheduler.last_epoch == (0 if found_inf else 1) and changed == (not found_inf)
    assert result.ran == (not found_inf)
    assert result.finite  # with a scaler, a skipped step is normal (not counted as non-finite)


def test_nonfinite_gradients_skip_the_update_and_the_lr_step():
    model = tiny_model()
    args = synthetic_args(Case("small"), "cpu", B, S, 10, "unused")
    optimizer, scheduler = trainer.build_optimizer(args, model, use_master_weights=False)
    loss = pretrain_loss(model, batches(1)[0])[0]
    (loss * float("nan")).backward()
    assert not engine_module.gradients_finite(model.parameters())
    assert engine_module.apply_update(optimizer, None, scheduler, finite=False) is False
    assert scheduler.last_epoch == 0
    assert all(p.grad is None or float(p.grad.abs().sum()) == 0 for p in model.parameters())  # cleared


def test_o2_checkpoint_holds_the_fp32_master_weights(tmp_path):
    """Under O2 the parameters hold bf16-rounded values and the optimizer the fp32 masters (simulated: Paddle runs no
    AMP on CPU): model_state.pdparams gets the masters, not the rounded values cast up."""
    model = tiny_model()
    args = synthetic_args(Case("small", precision="bf16-O2"), "cpu", B, S, 1, str(tmp_path))
    optimizer, _ = trainer.build_optimizer(args, model, use_master_weights=True)
    masters = {}
    for p in model.parameters():
        precise = p.numpy() + np.float32(1e-3) / 3  # not representable in bf16's 8-bit mantissa
        masters[p.name] = paddle.to_tensor(precise)
        p.set_value(paddle.to_tensor(precise).astype("bfloat16").astype("float32"))  # what O2 keeps in the model
    optimizer._master_weights = dict(masters)

    out = str(tmp_path / "ckpt")
    ckpt.save_checkpoint(
        out,
        model=model,
        optimizer=optimizer,
        scaler=None,
        state=ckpt.TrainerState(),
        rng_states=[ckpt.rng_state()],
        args_dict=args.to_dict(),
    )
    saved = paddle.load(os.path.join(out, "model_state.pdparams"))
    by_key = model.state_dict(use_hook=False)
    assert saved.keys() == by_key.keys()
    for key, param in by_key.items():
        got = saved[key].numpy() if hasattr(saved[key], "numpy") else saved[key]
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, masters[param.name].numpy(), err_msg=key)
        assert not np.array_equal(got, param.numpy()), key


def test_selfcheck_without_a_gpu_says_so_in_one_line():
    env = {**os.environ, "PYTHONPATH": REPO, "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "gpu_selfcheck.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0:
        pytest.skip("a GPU is visible")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines() == [out.stdout.strip()] and "no GPU" in out.stdout


def test_selfcheck_cpu_dry_run(capsys):
    """The CPU-detectable part: fp32, recompute, SDPA and resume on the small model, one table, exit 0."""
    from ernie import selfcheck

    assert (
        selfcheck.main(
            ["--device", "cpu", "--models", "small", "--steps", "2", "--seq_len", "32", "--micro_batch", "4"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "4 of 4 cases passed" in out
    for case in ("fp32 recompute", "fp32 attn=sdpa", "attn math", "fp32 resume"):
        assert case in out


def test_selfcheck_catches_a_broken_resume(monkeypatch, capsys):
    """The resume row can fail: an optimizer state that is not restored gives different losses."""
    from ernie import selfcheck

    real = ckpt.read_checkpoint

    def without_optimizer_state(path):
        read = real(path)
        # the moments not restored (the LR position is: Paddle's set_state_dict needs it)
        read.optimizer_state = {"LR_Scheduler": read.optimizer_state["LR_Scheduler"]}
        return read

    monkeypatch.setattr(ckpt, "read_checkpoint", without_optimizer_state)
    runner = selfcheck.Runner("cpu", 4, 32, 4, DistEnv(rank=0, world_size=1, local_rank=0, host="h"))
    result = runner.run(Case("small", resume=True), None)
    assert not result.ok and result.diff > 0


FUSED_VS_PYTHON = """
import numpy as np, paddle, paddle.distributed as dist
from ernie.training import engine, trainer
from ernie.training.distributed import init_distributed
from ernie import ErnieConfig, ErnieForPretraining
from ernie.modeling import ErniePretrainingCriterion
from ernie.selfcheck import Case, synthetic_args, synthetic_batches, shard
env = init_distributed("cpu")
grads = []
for device in ("gpu", "cpu"):  # "gpu": Paddle's fused_allreduce_gradients (gloo here); "cpu": the Python buckets
    paddle.seed(5)
    model = ErnieForPretraining(ErnieConfig(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                            intermediate_size=32, max_position_embeddings=32))
    batch = {k: paddle.to_tensor(v) for k, v in shard(synthetic_batches(64, 4, 16, 1)[0], env.rank, 2).items()}
    trainer.forward(model, ErniePretrainingCriterion(), batch)[0].backward()
    mine = {n: p.grad.numpy().copy() for n, p in model.named_parameters() if p.grad is not None}
    engine.reduce_gradients(model, env, device)
    grads.append({n: p.grad.numpy() for n, p in model.named_parameters() if p.grad is not None})
    others = []
    dist.all_gather_object(others, mine)
    for n, g in grads[-1].items():  # the mean over the two ranks
        np.testing.assert_allclose(g, (others[0][n] + others[1][n]) / 2, rtol=1e-5, atol=1e-7, err_msg=n)
for n in grads[0]:
    np.testing.assert_allclose(grads[0][n], grads[1][n], rtol=1e-6, atol=1e-8, err_msg=n)
print("OK", env.rank)
"""


@pytest.mark.slow
def test_explicit_all_reduce_averages_like_the_reducer(tmp_path):
    """Under a 2-rank launch (gloo): Paddle's fused_allreduce_gradients (the GPU "manual" route of recompute + data
    parallel) and the CPU Python all-reduce both leave every rank with the mean of the ranks' gradients."""
    script = tmp_path / "fused.py"
    script.write_text(FUSED_VS_PYTHON)
    env = {**os.environ, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "paddle.distributed.launch",
            "--nproc_per_node",
            "2",
            "--log_dir",
            str(tmp_path / "log"),
            str(script),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    logs = "".join((tmp_path / "log" / f).read_text() for f in os.listdir(tmp_path / "log") if "workerlog" in f)
    assert out.returncode == 0 and logs.count("OK ") == 2, logs[-3000:]


@pytest.mark.slow
def test_selfcheck_data_parallel_rows_on_two_cpu_ranks(tmp_path):
    """The data-parallel part of the self-check (what it launches on 2+ GPUs), on 2 CPU ranks: the reducer-free
    route with and without recompute gives the same losses, and resume is exact."""
    import json

    rows = tmp_path / "rows.json"
    env = {**os.environ, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "paddle.distributed.launch",
            "--nproc_per_node",
            "2",
            "--log_dir",
            str(tmp_path / "log"),
            os.path.join(REPO, "ernie", "selfcheck.py"),
            "--device",
            "cpu",
            "--models",
            "small",
            "--steps",
            "2",
            "--seq_len",
            "32",
            "--micro_batch",
            "2",
            "--rows_json",
            str(rows),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    results = json.loads(rows.read_text())
    assert [(r["case"]["recompute"], r["case"]["resume"], r["ranks"]) for r in results] == [
        (False, False, 2),
        (True, False, 2),
        (False, True, 2),
    ]
    assert all(not r["error"] for r in results) and results[1]["diff"] == 0.0 and results[2]["diff"] == 0.0
