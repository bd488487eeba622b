"""The GPU training path, checked on the CPU where a CPU can check it (issue #24): recompute + data parallel taking
the no_sync + one explicit all-reduce route, the float16 loss scaler on CPU, the LR schedule not advancing on a step
the scaler skipped, fp32 master weights in model_state.pdparams under AMP O2, and scripts/gpu_selfcheck.py's no-GPU
line and CPU dry run. Kernel selection against Paddle's own predicates: tests/test_kernels.py."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
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
    assert "7 of 7 cases passed" in out
    for case in ("fp32 recompute", "fp32 attn=sdpa", "attn math", "fp32 resume", "fp32 acc=2", "recompute dropout=0.1"):
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


# ---- issue #30: the AMP policy (ernie.training.amp), kernels and distributed checks, against Paddle's own lists,
# predicates and ops on the CPU ------------------------------------------------------------------------------------

from ernie import ops  # noqa: E402
from ernie.training import amp  # noqa: E402
from ernie.training import distributed as dist_mod  # noqa: E402
from ernie.utils import UserError  # noqa: E402


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_o2_lists_make_the_embedding_lookup_white(dtype):
    """Paddle's O2 lists put lookup_table_v2 on the black list (embeddings out in float32); with amp_lists' custom
    lists, Paddle's own merge (_update_list, what auto_cast runs with) has it white at O2, black at O1 as before."""
    from paddle.amp import amp_lists as paddle_lists

    assert "lookup_table_v2" in paddle_lists.black_list()[dtype]["O2"]  # the default the fix is for
    white, black = amp.paddle_op_lists("O2", dtype)
    assert {"lookup_table", "lookup_table_v2"} <= white and not {"lookup_table", "lookup_table_v2"} & black
    assert set(amp.AMP_BLACK_LIST) <= black and "linear_v2" in white  # F.linear's GPU op stays low precision
    white1, black1 = amp.paddle_op_lists("O1", dtype)
    assert "lookup_table_v2" in black1 and "lookup_table_v2" not in white1 and set(amp.AMP_BLACK_LIST) <= black1
    import warnings

    with warnings.catch_warnings():  # on the CPU auto_cast warns and disables itself, after checking the lists
        warnings.simplefilter("ignore")
        w, b = amp.amp_lists("O2", dtype)
        with paddle.amp.auto_cast(True, custom_white_list=w, custom_black_list=b, level="O2", dtype=dtype):
            pass


def fake_gpu(monkeypatch, capability, cuda="12.6", name="Tesla V100-SXM2-32GB"):
    """The GPU queries Paddle's own AMP predicates read, answering as ``name`` would; the predicates run as they are."""
    monkeypatch.setattr(paddle.device.cuda, "get_device_capability", lambda *a: capability)
    monkeypatch.setattr(paddle.device.cuda, "get_device_name", lambda *a: name)
    monkeypatch.setattr(paddle.version, "cuda", lambda: cuda)


def test_bf16_on_a_gpu_without_bf16_is_refused_naming_the_fp16_config(monkeypatch):
    ac = importlib.import_module("paddle.amp.auto_cast")  # the module (paddle.amp.auto_cast is also a function)

    fake_gpu(monkeypatch, (7, 0))
    assert not ac._is_gpu_bfloat16_supported() and ac._is_gpu_float16_supported()  # Paddle's verdict for a V100
    with pytest.raises(UserError) as e:
        amp.check_amp_supported("gpu", "bfloat16")
    message = str(e.value)
    assert message.startswith("--amp_dtype bfloat16:") and "\n" not in message and amp.FP16_CONFIG in message
    assert os.path.isfile(os.path.join(REPO, amp.FP16_CONFIG)) and "compute capability 7.0" in message
    amp.check_amp_supported("gpu", "float16")  # the fp16 config runs there
    fake_gpu(monkeypatch, (8, 0), name="NVIDIA A100-SXM4-80GB")
    amp.check_amp_supported("gpu", "bfloat16")
    fake_gpu(monkeypatch, (8, 0), cuda="10.2")  # Paddle also wants CUDA 11+
    with pytest.raises(UserError):
        amp.check_amp_supported("gpu", "bfloat16")
    fake_gpu(monkeypatch, (6, 1), name="Tesla P40")
    with pytest.raises(UserError, match="--use_amp false"):
        amp.check_amp_supported("gpu", "float16")
    amp.check_amp_supported("cpu", "bfloat16")  # no AMP on the CPU at all: the engine warns


def test_decorate_kwargs_are_paddle_decorates_and_master_grad_is_not_its_cast():
    """decorate_kwargs binds to paddle.amp.decorate; its own master_grad (a cast to fp32 at the end of backward,
    core.eager.set_master_grads) breaks the next accumulated backward in Paddle 3.3.1, hence master_grad=False there
    and fleet's main_grad hook instead (next test)."""
    import inspect

    kwargs = amp.decorate_kwargs("O2", "bfloat16")
    inspect.signature(paddle.amp.decorate).bind(models=None, optimizers=None, **kwargs)
    assert kwargs["master_weight"] and kwargs["save_dtype"] == "float32" and kwargs["master_grad"] is False
    with pytest.raises(ValueError):
        amp.decorate_kwargs("O1", "bfloat16")
    from paddle.base import core

    w = paddle.create_parameter([3], dtype="bfloat16", default_initializer=paddle.nn.initializer.Constant(0.5))
    x = paddle.to_tensor([1.0, 2.0, 3.0]).astype("bfloat16")
    (w * x).astype("float32").sum().backward()
    core.eager.set_master_grads([w])
    assert w.grad.dtype == paddle.float32
    with pytest.raises(ValueError, match="does not match the type of data"):
        (w * x).astype("float32").sum().backward()  # second micro step: bf16 gradient into the fp32 one


class ScaleLayer(paddle.nn.Layer):
    """An elementwise layer (the CPU has bf16 kernels for these, not for matmul)."""

    def __init__(self):
        super().__init__()
        self.w = self.create_parameter([3], default_initializer=paddle.nn.initializer.Constant(0.5))

    def forward(self, x):
        return (x * self.w).astype("float32").sum()


def test_master_grad_accumulates_bf16_gradients_in_fp32():
    assert amp.use_master_grad("O2", "bfloat16", "gpu")
    assert not amp.use_master_grad("O2", "float16", "gpu") and not amp.use_master_grad("O1", "bfloat16", "gpu")
    assert not amp.use_master_grad("O2", "bfloat16", "cpu") and amp.needs_explicit_all_reduce(True)
    layer = ScaleLayer()
    layer.to(dtype="bfloat16")  # what decorate's O2 does to a non-norm layer under bf16
    optimizer = amp.enable_master_grad(
        layer, paddle.optimizer.AdamW(parameters=layer.parameters(), multi_precision=True), "bfloat16"
    )
    x = paddle.to_tensor([1.0, 2.0, 3.0]).astype("bfloat16")
    for _ in range(2):  # two micro steps
        layer(x).backward()
    w = layer.w
    assert w.grad is None and w.main_grad.dtype == paddle.float32
    np.testing.assert_array_equal(w.main_grad.numpy(), [2.0, 4.0, 6.0])
    assert amp.gradients(layer.parameters())[0] is w.main_grad and bool(amp.all_finite(layer.parameters()))
    optimizer.clear_grad()
    assert float(w.main_grad.abs().sum()) == 0.0


def test_deterministic_flags_are_paddles_cuda_flags():
    assert amp.deterministic_flags("cpu") == {}
    flags = amp.deterministic_flags("gpu")
    assert flags == {"FLAGS_cudnn_deterministic": True, "FLAGS_embedding_deterministic": 1}
    for name in flags:
        if paddle.is_compiled_with_cuda():
            paddle.get_flags([name])  # defined in every CUDA build
        else:  # defined only under PADDLE_WITH_CUDA / PADDLE_WITH_HIP (paddle/common/flags.cc)
            with pytest.raises(ValueError, match="cannot get its value"):
                paddle.get_flags([name])
    import inspect

    import paddle.nn.functional.flash_attention as fa

    assert "FLAGS_cudnn_deterministic" in inspect.getsource(fa)  # it also selects deterministic flash attention


def optimizer_state(model, optimizer):
    """Parameters and accumulators by structured name (Paddle names accumulators by the parameter's unique name)."""
    names = {p.name: n for n, p in model.named_parameters()}
    out = {f"param:{n}": p.numpy().copy() for n, p in model.named_parameters()}
    for acc, by_param in optimizer._accumulators.items():
        out.update({f"{acc}:{names[k]}": v.numpy().copy() for k, v in by_param.items()})
    return out


def test_step_if_finite_skips_exactly_and_steps_like_step():
    args = synthetic_args(Case("small"), "cpu", B, S, 10, "unused")
    runs = []
    for use_ours in (False, True):
        model = tiny_model()
        optimizer, _ = trainer.build_optimizer(args, model, use_master_weights=False)
        for i, b in enumerate(batches(3)):
            loss = pretrain_loss(model, b)[0]
            (loss * float("nan") if i == 1 else loss).backward()  # step 2: non-finite gradients
            if use_ours:
                before = optimizer_state(model, optimizer) if i else None
                finite = amp.step_if_finite(optimizer, model.parameters())
                assert finite.shape == [] and finite.dtype == paddle.bool and bool(finite) == (i != 1)
                if i == 1:  # skipped: every parameter, moment and beta power as before, bit for bit
                    after = optimizer_state(model, optimizer)
                    assert after.keys() == before.keys()
                    for k, v in before.items():
                        np.testing.assert_array_equal(after[k], v, err_msg=k)
            elif i != 1:
                optimizer.step()
            optimizer.clear_grad()
        runs.append(optimizer_state(model, optimizer))
    assert runs[0].keys() == runs[1].keys()
    for k, v in runs[0].items():
        np.testing.assert_array_equal(runs[1][k], v, err_msg=k)


def test_nan_on_the_first_step_leaves_fresh_accumulators():
    model = tiny_model()
    args = synthetic_args(Case("small"), "cpu", B, S, 10, "unused")
    optimizer, _ = trainer.build_optimizer(args, model, use_master_weights=False)
    before = {n: p.numpy().copy() for n, p in model.named_parameters()}
    (pretrain_loss(model, batches(1)[0])[0] * float("inf")).backward()
    assert not bool(amp.step_if_finite(optimizer, model.parameters()))
    for n, p in model.named_parameters():
        np.testing.assert_array_equal(p.numpy(), before[n], err_msg=n)
    for acc, by_param in optimizer._accumulators.items():
        for v in by_param.values():
            expected = {"beta1_pow_acc": args.optimizer.adam_beta1, "beta2_pow_acc": args.optimizer.adam_beta2}
            np.testing.assert_allclose(v.numpy(), expected.get(acc, 0.0), err_msg=acc)


def test_load_weights_writes_the_parameters_behind_decorates_state_dict_hook(tmp_path):
    """paddle.amp.decorate(save_dtype=...) registers a StateDictHook on every layer: state_dict() then returns cast
    copies. load_weights writes into the parameters themselves; load_model_weights refuses a decorated model."""
    from paddle.amp.auto_cast import StateDictHook

    source = tiny_model()
    paddle.seed(99)
    target = ErnieForPretraining(
        ErnieConfig(
            **{k: getattr(source.config, k) for k in ("vocab_size", "hidden_size")},
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=32,
        )
    )
    for layer in target.sublayers(include_self=True):
        layer.register_state_dict_hook(StateDictHook("float32"))
    assert (
        target.state_dict()["ernie.embeddings.word_embeddings.weight"]
        is not target.ernie.embeddings.word_embeddings.weight
    )
    target.load_weights(source.state_dict(use_hook=False))
    for (n, p), q in zip(target.named_parameters(), source.parameters(), strict=True):
        np.testing.assert_array_equal(p.numpy(), q.numpy(), err_msg=n)
    source.save_pretrained(str(tmp_path / "w"))
    target.to(dtype="bfloat16")  # as decorate's bf16 O2 leaves it
    with pytest.raises(RuntimeError, match="before paddle.amp.decorate"):
        ckpt.load_model_weights(str(tmp_path / "w"), target)


def test_gpu_linear_is_f_linear(monkeypatch):
    """On a GPU tensor ops.linear hands GEMM + bias to F.linear, which a CUDA build runs as linear_v2 (on AMP's white
    list); the CPU fp32 route and the transposed (tied decoder) route are unchanged."""
    import inspect

    from paddle.amp import amp_lists as paddle_lists

    assert "_C_ops.linear_v2(x, weight, bias, False)" in inspect.getsource(paddle.nn.functional.linear)
    assert "linear_v2" in paddle_lists.WHITE_LIST
    calls = []
    real = ops.F.linear
    monkeypatch.setattr(ops.F, "linear", lambda *a: calls.append(a) or real(*a))
    monkeypatch.setattr(ops, "_on_gpu", lambda x: True)
    x, w, b = (paddle.rand(s, dtype="float64") for s in ([2, 3, 4], [4, 5], [5]))
    np.testing.assert_allclose(ops.linear(x, w, b).numpy(), (paddle.matmul(x, w) + b).numpy(), rtol=1e-12)
    assert len(calls) == 1
    ops.linear(x, w.T, b, transpose_w=True)
    ops.linear(x.astype("float32"), w.astype("float32"), b.astype("float32"))  # CPU fp32: its own kernel
    assert len(calls) == 1


def test_fused_residual_ln_runs_with_autocast_off(monkeypatch):
    """Inside an O2 autocast (the tracer's level set as auto_cast sets it on a GPU) the fused op is called under
    Paddle's amp_guard(enable=False): level O0 during the call, O2 again after."""
    import paddle.incubate.nn.functional as IF
    from paddle.base import core
    from paddle.base.framework import _dygraph_tracer

    seen = []

    def fused(x, residual, bias, w, b, p, eps, training):
        seen.append(_dygraph_tracer()._amp_level)
        return paddle.nn.functional.layer_norm(residual + x, x.shape[-1:], w, b, eps)

    monkeypatch.setattr(IF, "fused_bias_dropout_residual_layer_norm", fused)
    norm = paddle.nn.LayerNorm(4)
    x, r = paddle.rand([2, 4]), paddle.rand([2, 4])
    tracer = _dygraph_tracer()
    old = tracer._amp_level
    tracer._amp_level = core.AmpLevel.O2
    try:
        out = ops.residual_layer_norm(x, r, norm, 0.0, False, ops.KernelPlan(True, False))
        assert tracer._amp_level == core.AmpLevel.O2
    finally:
        tracer._amp_level = old
    assert seen == [core.AmpLevel.O0]
    np.testing.assert_allclose(out.numpy(), norm(r + x).numpy(), rtol=1e-6)


def test_memory_efficient_sdpa_mask_is_built_once_per_forward(monkeypatch):
    """The [B, H, S, S] bias of the memory-efficient kernel is made by the first layer and reused by the others (one
    attention_bias per forward for 2 layers); same outputs as eager attention."""
    from ernie import modeling

    monkeypatch.setattr(
        modeling, "choose_attention", lambda req, q, k, v, p: "mem_efficient" if req != "eager" else "eager"
    )
    built = []
    real = ops.attention_bias
    monkeypatch.setattr(ops, "attention_bias", lambda m, d: built.append(1) or real(m, d))
    shapes = []
    real_sdpa = ops.F.scaled_dot_product_attention
    monkeypatch.setattr(
        ops.F,
        "scaled_dot_product_attention",
        lambda q, k, v, attn_mask=None, **kw: (
            shapes.append(attn_mask.shape) or real_sdpa(q, k, v, attn_mask=attn_mask, **kw)
        ),
    )
    b = batches(1)[0]
    outs = []
    for attention in ("sdpa", "eager"):
        model = tiny_model(attention=attention)
        model.eval()
        outs.append(model(b["input_ids"], b["segment_ids"], attention_mask=b["input_mask"])[0].numpy())
    assert built == [1] and shapes == [[B, 2, S, S]] * 2
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-5, atol=1e-5)


def test_shipped_bf16_config_on_16_ranks_is_told_what_to_set():
    import yaml

    with open(os.path.join(REPO, "configs", "pretrain", "ernie-1.0-base-gpu.yaml"), encoding="utf-8") as f:
        t = yaml.safe_load(f)["training"]
    dist_mod.check_batching(t["micro_batch_size"], 8, t["global_batch_size"])
    dist_mod.check_batching(t["micro_batch_size"], 4, t["global_batch_size"])
    with pytest.raises(UserError) as e:
        dist_mod.check_batching(t["micro_batch_size"], 16, t["global_batch_size"])
    assert "--micro_batch_size 32 (32 x 16 ranks x 1 accumulation = 512)" in str(e.value)
    assert "--global_batch_size 1024" in str(e.value)
    with pytest.raises(UserError, match="--micro_batch_size 24"):
        dist_mod.check_batching(32, 3, 72)  # 72 / 3 = 24 per rank


def test_one_rank_sees_its_own_folder(tmp_path):
    env = DistEnv(rank=0, world_size=1, local_rank=0, host="h")
    assert dist_mod.detect_shared_folder(str(tmp_path), env)
    dist_mod.check_share_folder(str(tmp_path), env, share_folder=False)
    dist_mod.check_share_folder(str(tmp_path), env, share_folder=True)


SHARE_PROBE = """
import os, sys
from ernie.training.distributed import init_distributed, detect_shared_folder, check_share_folder
from ernie.utils import UserError
env = init_distributed("cpu")
root = sys.argv[1]
env.local_rank = 0  # two "machines" of one rank each
shared = detect_shared_folder(os.path.join(root, "shared"), env)
apart = detect_shared_folder(os.path.join(root, f"own{env.rank}"), env)
errors = []
for folder, flag in ((os.path.join(root, "shared"), False), (os.path.join(root, f"own{env.rank}"), True),
                     (os.path.join(root, "shared"), True), (os.path.join(root, f"own{env.rank}"), False)):
    try:
        check_share_folder(folder, env, flag)
        errors.append(None)
    except UserError as e:
        errors.append(str(e))
leftover = [f for f in os.listdir(os.path.join(root, "shared")) if f.startswith(".share-probe-")]
told = "pass --share_folder true" in errors[0]
print("RESULT", env.rank, shared, apart, [e is not None for e in errors], told, leftover)
"""


@pytest.mark.slow
def test_detect_shared_folder_on_two_ranks(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(SHARE_PROBE)
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
            str(tmp_path / "out"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    logs = "".join((tmp_path / "log" / f).read_text() for f in os.listdir(tmp_path / "log") if "workerlog" in f)
    assert out.returncode == 0, logs[-3000:]
    for rank in (0, 1):
        assert f"RESULT {rank} True False [True, True, False, False] True []" in logs, logs[-3000:]
