"""Pretraining (scripts/run_pretrain.py, ernie.training) on a tiny model and the built-in People's Daily corpus.

Fast tests check flags, the LR schedule and checkpoint atomicity in-process; the slow ones run real trainings: loss
falls, 2 ranks == 1 rank x 2 accumulation steps, SIGKILL + restart == uninterrupted (also with ``--masking knowledge``
and across the stage boundaries of ``--masking_schedule``), 2-node launch, continue_training, AMP (bf16 O1/O2) and
recompute, flat process count and memory under frequent evaluation, a rank killed mid-step named. Unreadable checkpoint
files and unwritable outputs of every writer give one line.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from ernie.utils import UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "scripts", "run_pretrain.py")
TINY_MODEL = {
    "vocab_size": 0,
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 256,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 128,
    "type_vocab_size": 2,
    "initializer_range": 0.02,
    "pad_token_id": 0,
}


def build_demo(out_dir: str, num_paragraphs: int = 1500) -> dict[str, str]:
    """vocab dir + npy token files (with unit markers) of the first People's Daily paragraphs + a tiny model
    config."""
    from fixtures import write_peoples_daily_pretraining_data

    from ernie.tokenizer import ErnieTokenizer

    vocab_dir, data_dir = write_peoples_daily_pretraining_data(out_dir, num_paragraphs, units=True)
    model_json = os.path.join(out_dir, "tiny.json")
    with open(model_json, "w") as f:
        json.dump({**TINY_MODEL, "vocab_size": ErnieTokenizer.from_pretrained(vocab_dir).vocab_size}, f)
    return {"vocab": vocab_dir, "data": data_dir, "model": model_json}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return build_demo(str(tmp_path_factory.mktemp("pretrain_demo")))


def flags(demo, output_dir, **overrides) -> list[str]:
    values = dict(
        model_name_or_path=demo["model"],
        tokenizer_name_or_path=demo["vocab"],
        input_dir=demo["data"],
        output_dir=output_dir,
        device="cpu",
        max_seq_len=64,
        micro_batch_size=8,
        max_steps=12,
        checkpoint_steps=4,
        save_steps=100,
        eval_freq=6,
        eval_iters=1,
        test_iters=1,
        max_lr=1e-2,
        min_lr=1e-3,
        warmup_rate=0.1,
        num_workers=0,
        logging_freq=1,
        seed=7,
    )
    values.update(overrides)
    return [x for k, v in values.items() for x in (f"--{k}", str(v))]


def run_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def run(cmd: list[str], cwd: str, check: bool = True, timeout: int = 240) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=run_env(), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def train_losses(output_dir: str, event: str = "train") -> dict[int, float]:
    with open(os.path.join(output_dir, "train_log.jsonl"), encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    return {r["step"]: r["loss"] for r in records if r["event"] == event}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------------ fast tests


def test_flags_yaml_and_errors(demo, tmp_path):
    from ernie.training.args import derive_batching, parse_args

    config = tmp_path / "c.yaml"
    config.write_text(
        textwrap.dedent(f"""
        model: {{model_name_or_path: {demo["model"]}, tokenizer_name_or_path: {demo["vocab"]}}}
        data: {{input_dir: {demo["data"]}, max_seq_len: 64}}
        optimizer: {{max_lr: 5.0e-4}}
        training: {{output_dir: {tmp_path / "out"}, micro_batch_size: 4, global_batch_size: 16}}
        eval_freq: 7
    """)
    )
    args = parse_args(["--config", str(config), "--max_lr", "1e-3", "--use_amp", "--amp_dtype", "bfloat16"])
    assert args.optimizer.max_lr == 1e-3 and args.logging.eval_freq == 7 and args.training.use_amp
    assert args.optimizer.decay_steps == args.training.max_steps and args.logging.test_iters == 100
    assert derive_batching(args, world_size=2).accumulate_steps == 2
    with pytest.raises(UserError, match="--global_batch_size: 16 is not a multiple .* 4 x 3"):
        derive_batching(parse_args(["--config", str(config)]), world_size=3)

    base = ["--config", str(config)]
    for bad, message in [
        (["--max_lr", "fast"], "--max_lr"),
        (["--min_lr", "1"], "--min_lr"),
        (["--split", "0,1,1"], "--split"),
        (["--fp16_opt_level", "O3"], "--fp16_opt_level"),
        (["--input_dir", str(tmp_path)], "--input_dir"),
        (["--nonsense", "1"], "--nonsense"),
        (["--warmup_rate", "2"], "--warmup_rate"),
        (["--use_amp", "maybe"], "--use_amp"),
        (["--model_name_or_path", "no-such-model"], "--model_name_or_path"),
        (["--continue_training", "true"], "--model_name_or_path"),
    ]:
        with pytest.raises(UserError, match=re.escape(message)):
            parse_args(base + bad)
    (tmp_path / "bad.yaml").write_text("max_lr: 1\nmax_lrr: 2\n")
    with pytest.raises(UserError, match="bad.yaml: unknown key 'max_lrr'"):
        parse_args(["--config", str(tmp_path / "bad.yaml")])


def test_vocab_size_sets_the_embedding_rows(demo, trained, tmp_path):
    """--vocab_size: the rows of the embedding table and MLM output (from scratch); one line when it cannot hold the
    vocabulary or contradicts the weights of --continue_training."""
    from ernie.tokenizer import ErnieTokenizer
    from ernie.training.args import parse_args
    from ernie.training.trainer import build_model

    tok = ErnieTokenizer.from_pretrained(demo["vocab"])
    base = flags(demo, str(tmp_path / "out"), model_name_or_path="ernie-mini-cpu")  # vocab_size 18,000 in its config
    model = build_model(parse_args(base + ["--vocab_size", str(tok.vocab_size)]), tok)
    assert model.ernie.embeddings.word_embeddings.weight.shape[0] == tok.vocab_size
    assert model.cls.predictions.decoder_bias.shape[0] == tok.vocab_size
    assert build_model(parse_args(base), tok).config.vocab_size == 18000  # default: the model config's
    with pytest.raises(UserError, match=f"--vocab_size: {tok.vocab_size - 1} is smaller than the vocabulary"):
        build_model(parse_args(base + ["--vocab_size", str(tok.vocab_size - 1)]), tok)
    cont = flags(
        demo, str(tmp_path / "out2"), model_name_or_path=os.path.join(trained, "model_last"), continue_training="true"
    )
    with pytest.raises(UserError, match="--vocab_size: .* differs from the vocab_size"):
        build_model(parse_args(cont + ["--vocab_size", str(tok.vocab_size + 8)]), tok)


def test_position_embedding_init_from_scratch_only(demo, trained, tmp_path, capsys):
    """--position_embedding_init: the starting position embeddings of a model pretrained from scratch, written into
    its config; --continue_training keeps the saved weights (one warning line); a bad value is one error line."""
    import paddle

    from ernie.modeling import sinusoidal_positions
    from ernie.tokenizer import ErnieTokenizer
    from ernie.training.args import parse_args
    from ernie.training.trainer import build_model

    tok = ErnieTokenizer.from_pretrained(demo["vocab"])
    base = flags(demo, str(tmp_path / "out"))
    model = build_model(parse_args(base + ["--position_embedding_init", "sinusoidal:0.2"]), tok)
    assert model.config.position_embedding_init == "sinusoidal:0.2"
    table = model.ernie.embeddings.position_embeddings.weight.numpy()
    assert np.array_equal(table, sinusoidal_positions(*table.shape, 0.2))
    assert build_model(parse_args(base), tok).config.position_embedding_init == "normal"  # the model config's
    with pytest.raises(UserError, match=re.escape("--position_embedding_init: position_embedding_init 'sin'")):
        parse_args(base + ["--position_embedding_init", "sin"])
    last = os.path.join(trained, "model_last")
    cont = flags(demo, str(tmp_path / "out2"), model_name_or_path=last, continue_training="true")
    kept = build_model(parse_args(cont + ["--position_embedding_init", "sinusoidal"]), tok)
    saved = paddle.load(os.path.join(last, "model_state.pdparams"))["ernie.embeddings.position_embeddings.weight"]
    assert np.array_equal(kept.ernie.embeddings.position_embeddings.weight.numpy(), saved.numpy())
    assert (
        "--position_embedding_init sinusoidal is not used: the run starts from the weights" in capsys.readouterr().err
    )


@pytest.mark.parametrize("name", ["ernie-tiny-cpu", "ernie-1.0-base-gpu", "ernie-1.0-base-gpu-fp16"])
def test_shipped_configs_parse(demo, tmp_path, name):
    from ernie.training.args import derive_batching, parse_args

    args = parse_args(
        [
            "--config",
            os.path.join(REPO, "configs", "pretrain", f"{name}.yaml"),
            "--input_dir",
            demo["data"],
            "--tokenizer_name_or_path",
            demo["vocab"],
            "--output_dir",
            str(tmp_path),
        ]
    )
    world = 2 if "cpu" in name else 8
    assert derive_batching(args, world).global_batch_size == args.training.global_batch_size


def test_bad_flag_is_one_line_before_any_work(demo, tmp_path):
    proc = run([sys.executable, SCRIPT] + flags(demo, str(tmp_path / "out"), global_batch_size=12), REPO, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: --global_batch_size: 12 is not a multiple")
    assert "Traceback" not in proc.stderr and not (tmp_path / "out").exists()


def test_threads_per_process(monkeypatch):
    from ernie.training.distributed import configure_threads

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("PADDLE_LOCAL_SIZE", "2")
    assert configure_threads() == 4 and os.environ["OMP_NUM_THREADS"] == "4"
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's choice wins
    assert configure_threads() == 3


def test_lr_schedule():
    from ernie.training.lr import WarmupDecay, lr_at

    assert lr_at(0, 1.0, 0.1, 10, 100, "cosine") == 0.0
    assert lr_at(5, 1.0, 0.1, 10, 100, "cosine") == pytest.approx(0.5)
    assert lr_at(10, 1.0, 0.1, 10, 100, "cosine") == pytest.approx(1.0)
    assert lr_at(55, 1.0, 0.1, 10, 100, "cosine") == pytest.approx(0.55)
    assert lr_at(55, 1.0, 0.1, 10, 100, "linear") == pytest.approx(0.55)
    assert lr_at(32.5, 1.0, 0.1, 10, 100, "linear") == pytest.approx(0.775)
    assert lr_at(100, 1.0, 0.1, 10, 100, "linear") == pytest.approx(0.1)
    assert lr_at(500, 1.0, 0.1, 10, 100, "cosine") == 0.1
    assert lr_at(500, 1.0, 0.1, 10, 100, "none") == 1.0
    sched = WarmupDecay(1.0, 0.1, 10, 100, "cosine")
    for _ in range(55):
        sched.step()
    assert sched() == pytest.approx(0.55)
    restored = WarmupDecay(1.0, 0.1, 10, 100, "cosine")
    restored.set_state_dict(sched.state_dict())
    assert restored() == sched()


def test_disk_full_during_save_keeps_previous_checkpoint(demo, tmp_path, monkeypatch, capsys):
    """The second checkpoint write fails with ENOSPC: the run stops with one clear error, model_last still holds
    the first checkpoint in full, and no temporary folder is left behind."""
    import paddle

    from ernie.training import checkpoint, trainer

    real_save, calls = paddle.save, []

    def full_disk_save(obj, path, *a, **kw):
        if str(path).endswith(checkpoint.OPTIMIZER_STATE):
            calls.append(path)
            if len(calls) == 2:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, path, *a, **kw)

    monkeypatch.setattr(paddle, "save", full_disk_save)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        trainer.main(flags(demo, str(out), max_steps=8, checkpoint_steps=2, eval_iters=0, test_iters=0))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "No space left on device" in err and "model_last is intact" in err
    assert checkpoint.read_trainer_state(str(out / "model_last")).global_step == 2
    assert (out / "model_last" / checkpoint.OPTIMIZER_STATE).is_file()
    assert not any(name.startswith(".model_last") for name in os.listdir(out))


# ------------------------------------------------------------------------------------------------ slow tests


@pytest.fixture(scope="module")
def reference_run(demo, tmp_path_factory):
    """An uninterrupted 12-step fp32 run with dropout (the baseline of several tests)."""
    out = str(tmp_path_factory.mktemp("reference") / "out")
    proc = run([sys.executable, SCRIPT] + flags(demo, out), REPO)
    return out, proc


@pytest.mark.slow
def test_loss_falls_and_logs(demo, reference_run, tmp_path):
    out, proc = reference_run
    losses = train_losses(out)
    assert sorted(losses) == list(range(1, 13))
    assert np.mean([losses[s] for s in (10, 11, 12)]) < np.mean([losses[s] for s in (1, 2, 3)]) - 0.3
    valid = train_losses(out, "valid")
    assert set(valid) == {0, 6, 12} and set(train_losses(out, "test")) == {12}  # step 0: the untrained model
    assert valid[12] < valid[0]
    assert re.search(
        r"global step 12, loss: [\d.]+, lm_loss: [\d.]+, sop_loss: [\d.]+, speed: [\d.]+ steps/s, "
        r"ips: [\d.]+ seqs/s, tokens/s: \d+, learning rate: [\d.e+-]+",
        proc.stdout,
    )
    assert os.path.isdir(os.path.join(out, "visualdl")) and os.listdir(os.path.join(out, "visualdl"))
    for ckpt_dir in ("model_last", "model_12"):
        files = set(os.listdir(os.path.join(out, ckpt_dir)))
        assert {
            "model_state.pdparams",
            "model_state.pdopt",
            "rng_state.pkl",
            "trainer_state.json",
            "args.yaml",
            "vocab.txt",
            "model_config.json",
        } <= files
    # the same command again: already complete, nothing retrained
    again = run([sys.executable, SCRIPT] + flags(demo, out), REPO)
    assert "nothing to do" in again.stdout
    png = tmp_path / "curves.png"
    run([sys.executable, os.path.join(REPO, "scripts", "plot_logs.py"), "--log", out, "--output", str(png)], REPO)
    assert png.stat().st_size > 1000


KILLER = """
import os, signal, sys
import paddle
from ernie.training import trainer
real_save, seen = paddle.save, []
def killing_save(obj, path, *a, **kw):
    if str(path).endswith("model_state.pdopt"):
        seen.append(path)
        if len(seen) == {kill_at}:
            os.kill(os.getpid(), signal.SIGKILL)   # mid-run, in the middle of writing a checkpoint
    return real_save(obj, path, *a, **kw)
paddle.save = killing_save
trainer.main(sys.argv[1:])
"""


@pytest.mark.slow
def test_sigkill_and_restart_reproduces_uninterrupted_run(demo, reference_run, tmp_path):
    out = str(tmp_path / "out")
    killer = tmp_path / "killer.py"
    killer.write_text(KILLER.format(kill_at=2))  # checkpoints at steps 4 and 8: dies while writing step 8's
    killed = run([sys.executable, str(killer)] + flags(demo, out), REPO, check=False)
    assert killed.returncode == -signal.SIGKILL
    assert max(train_losses(out)) == 8 and os.path.isdir(os.path.join(out, ".model_last.tmp"))

    resumed = run([sys.executable, SCRIPT] + flags(demo, out, save_steps=50), REPO)
    assert "resuming from" in resumed.stdout and "step 4" in resumed.stdout
    # a changed setting is reported on resume, not silently mixed
    assert "setting changed since the checkpoint: training.save_steps: 100 -> 50" in resumed.stderr
    reference = train_losses(reference_run[0])
    losses = train_losses(out)
    assert sorted(losses) == list(range(1, 13))
    for step in range(1, 13):
        assert losses[step] == pytest.approx(reference[step], rel=1e-6, abs=0), step
    assert train_losses(out, "test")[12] == pytest.approx(train_losses(reference_run[0], "test")[12], rel=1e-6)


@pytest.mark.slow
def test_knowledge_masking_sigkill_and_restart_is_exact(demo, tmp_path):
    """--masking knowledge (per-sample level from (seed, i)): killed mid-checkpoint and restarted == uninterrupted."""
    common = dict(masking="knowledge", max_steps=8, checkpoint_steps=4, eval_freq=8, micro_batch_size=4)
    reference = str(tmp_path / "reference")
    run([sys.executable, SCRIPT] + flags(demo, reference, **common), REPO)
    out = str(tmp_path / "out")
    killer = tmp_path / "killer.py"
    killer.write_text(KILLER.format(kill_at=2))  # dies while writing step 8's checkpoint
    assert (
        run([sys.executable, str(killer)] + flags(demo, out, **common), REPO, check=False).returncode == -signal.SIGKILL
    )
    resumed = run([sys.executable, SCRIPT] + flags(demo, out, **common), REPO)
    assert "resuming from" in resumed.stdout and "step 4" in resumed.stdout
    expected, losses = train_losses(reference), train_losses(out)
    assert sorted(losses) == list(range(1, 9))
    for step in range(1, 9):
        assert losses[step] == pytest.approx(expected[step], rel=1e-6, abs=0), step


def test_knowledge_masking_without_markers_is_one_line(demo, tmp_path):
    from fixtures import write_peoples_daily_token_files

    from ernie.tokenizer import ErnieTokenizer

    prefix = write_peoples_daily_token_files(
        str(tmp_path / "plain"), ErnieTokenizer.from_pretrained(demo["vocab"]), num_paragraphs=300
    )
    proc = run(
        [sys.executable, SCRIPT]
        + flags(demo, str(tmp_path / "out"), input_dir=prefix, masking="knowledge", split="1,0,0"),
        REPO,
        check=False,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: --masking knowledge: {prefix} has no unit markers ({prefix}_units.npy); build the corpus with "
        "create_pretraining_data.py --cn_seg_func lac_lexical, or use --masking word"
    )


@pytest.mark.slow
def test_two_ranks_equal_one_rank_with_accumulation(demo, tmp_path):
    common = dict(
        micro_batch_size=4,
        global_batch_size=8,
        max_steps=6,
        checkpoint_steps=6,
        eval_freq=3,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    one = str(tmp_path / "one")
    run([sys.executable, SCRIPT] + flags(demo, one, **common), REPO)
    two = str(tmp_path / "two")
    launch = [
        sys.executable,
        "-m",
        "paddle.distributed.launch",
        "--nproc_per_node",
        "2",
        "--log_dir",
        str(tmp_path / "log"),
    ]
    run(launch + [SCRIPT] + flags(demo, two, **common), REPO)
    assert "x 2 ranks x 1 accumulation = global batch 8" in open(tmp_path / "log" / "workerlog.0").read()
    a, b = train_losses(one), train_losses(two)
    assert sorted(a) == sorted(b) == list(range(1, 7))
    for step in a:
        assert abs(a[step] - b[step]) <= 1e-5 * abs(a[step]), (step, a[step], b[step])
    for event in ("valid", "test"):
        for step, value in train_losses(one, event).items():
            assert train_losses(two, event)[step] == pytest.approx(value, rel=1e-5)


@pytest.mark.slow
def test_two_node_launch_on_localhost(demo, tmp_path):
    out, port = str(tmp_path / "out"), free_port()
    cmds = [
        [
            sys.executable,
            "-m",
            "paddle.distributed.launch",
            "--nnodes",
            "2",
            "--master",
            f"127.0.0.1:{port}",
            "--rank",
            str(r),
            "--nproc_per_node",
            "1",
            "--log_dir",
            str(tmp_path / f"log{r}"),
            SCRIPT,
        ]
        + flags(
            demo,
            out,
            max_steps=4,
            checkpoint_steps=2,
            micro_batch_size=4,
            eval_freq=2,
            share_folder="true",
            binary_head="false",
        )  # MLM only: the SOP-only weights are frozen, data parallel must cope
        for r in (0, 1)
    ]
    procs = [
        subprocess.Popen(c, cwd=REPO, env=run_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for c in cmds
    ]
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert sorted(train_losses(out)) == [1, 2, 3, 4]
    assert "ranks: 2 (dp)" in open(tmp_path / "log0" / "workerlog.0").read()


@pytest.mark.slow
def test_continue_training_from_saved_dir(demo, reference_run, tmp_path):
    saved = os.path.join(reference_run[0], "model_12")
    out = str(tmp_path / "out")
    run(
        [sys.executable, SCRIPT]
        + flags(
            demo,
            out,
            model_name_or_path=saved,
            continue_training="true",
            max_steps=3,
            warmup_rate=0.0,
            eval_iters=0,
            test_iters=0,
        ),
        REPO,
    )
    continued = train_losses(out)
    scratch = train_losses(reference_run[0])
    assert continued[1] < scratch[1] - 0.3  # starts from the trained weights, not from scratch
    assert os.path.isfile(os.path.join(out, "model_last", "model_state.pdparams"))


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra",
    [
        dict(use_amp="true", amp_dtype="bfloat16", fp16_opt_level="O1"),
        dict(use_amp="true", amp_dtype="bfloat16", fp16_opt_level="O2", use_recompute="true"),
        dict(use_amp="true", amp_dtype="float16", fp16_opt_level="O2"),
    ],
    ids=["bf16-O1", "bf16-O2-recompute", "fp16-O2-cpu"],
)
def test_amp_and_recompute_paths_run(demo, tmp_path, extra):
    from ernie.training import trainer

    out = str(tmp_path / "out")
    trainer.main(flags(demo, out, max_steps=3, checkpoint_steps=3, eval_freq=3, **extra))
    losses = train_losses(out)
    assert sorted(losses) == [1, 2, 3] and all(math.isfinite(v) for v in losses.values())


def poison_forward_after(n: int, monkeypatch) -> None:
    """Every pretraining forward after the first ``n`` returns a NaN loss."""
    from ernie.training import trainer

    real_forward, calls = trainer.forward, []

    def poisoned_forward(*a, **kw):
        calls.append(1)
        loss, lm, sop = real_forward(*a, **kw)
        return (loss * float("nan"), lm, sop) if len(calls) > n else (loss, lm, sop)

    monkeypatch.setattr(trainer, "forward", poisoned_forward)


@pytest.mark.slow
def test_nonfinite_losses_stop_with_last_good_checkpoint(demo, tmp_path, monkeypatch, capsys):
    from ernie.training import trainer

    poison_forward_after(5, monkeypatch)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        trainer.main(
            flags(demo, str(out), max_steps=20, checkpoint_steps=2, max_nonfinite_steps=3, eval_iters=0, test_iters=0)
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "not finite for 3 consecutive steps (up to step 8)" in err and "model_last" in err
    from ernie.training.checkpoint import read_trainer_state

    assert read_trainer_state(str(out / "model_last")).global_step == 4


CRASHER = """
import os, sys
from ernie.training import trainer
real_forward, calls = trainer.forward, []
def failing_forward(*a, **kw):
    calls.append(1)
    if os.environ.get("PADDLE_TRAINER_ID") == "1" and len(calls) == 3:
        raise RuntimeError("injected worker failure")
    return real_forward(*a, **kw)
trainer.forward = failing_forward
trainer.main(sys.argv[1:])
"""


@pytest.mark.slow
def test_worker_crash_ends_the_launch_naming_the_rank(demo, tmp_path):
    crasher = tmp_path / "crasher.py"
    crasher.write_text(CRASHER)
    launch = [
        sys.executable,
        "-m",
        "paddle.distributed.launch",
        "--nproc_per_node",
        "2",
        "--log_dir",
        str(tmp_path / "log"),
        str(crasher),
    ]
    proc = run(
        launch + flags(demo, str(tmp_path / "out"), max_steps=50, micro_batch_size=4), REPO, check=False, timeout=180
    )
    assert proc.returncode != 0
    assert "error: rank 1 of 2" in open(tmp_path / "log" / "workerlog.1").read()
    # on the launcher's console, whichever rank the launcher happens to notice dead first
    assert "error: rank 1 of 2 on" in proc.stdout + proc.stderr and "injected worker failure" in proc.stderr


def _pids_running(marker: str) -> list[int]:
    """PIDs of processes whose command line contains ``marker``."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    out.append(int(pid))
        except OSError:
            pass
    return out


@pytest.mark.slow
def test_sigkill_to_the_launcher_takes_the_workers_down(demo, tmp_path):
    """paddle.distributed.launch puts each worker in a session of its own: a SIGKILL to the launcher alone must
    still end them, or they would keep writing checkpoints beside the restarted run."""
    out = str(tmp_path / "orphan_check_out")
    launch = [
        sys.executable,
        "-m",
        "paddle.distributed.launch",
        "--nproc_per_node",
        "2",
        "--log_dir",
        str(tmp_path / "log"),
        SCRIPT,
    ]
    proc = subprocess.Popen(
        launch
        + flags(
            demo, out, max_steps=10_000, checkpoint_steps=10_000, eval_freq=10_000, num_workers=1
        ),  # DataLoader workers must go down too
        cwd=REPO,
        env=run_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 180
        while not os.path.exists(os.path.join(out, "train_log.jsonl")):
            assert proc.poll() is None and time.time() < deadline, "the launch did not start training"
            time.sleep(0.5)
        workers = [p for p in _pids_running(out) if p != proc.pid]
        assert workers, "no worker processes found"
        os.kill(proc.pid, signal.SIGKILL)  # the launcher only, not its process group
        proc.wait()
        deadline = time.time() + 60
        while _pids_running(out) and time.time() < deadline:
            time.sleep(0.5)
        left = {p: open(f"/proc/{p}/status").read().split("\n")[:3] for p in _pids_running(out)}
        assert not left, f"processes left after the launcher died (workers were {workers}): {left}"
        from ernie.training.distributed import lock_output_dir

        # and the output_dir lock goes with them (waited for: a dying process drops its memory before its files)
        lock_output_dir(out, wait=max(1.0, deadline - time.time())).close()
    finally:
        for pid in _pids_running(out):
            os.kill(pid, signal.SIGKILL)


def test_second_run_on_the_same_output_dir_is_refused(tmp_path):
    from ernie.training.distributed import lock_output_dir

    held = lock_output_dir(str(tmp_path))
    code = (
        "import sys\nfrom ernie.training.distributed import lock_output_dir\nfrom ernie.utils import UserError\n"
        f"try:\n    lock_output_dir({str(tmp_path)!r}, wait=1)\nexcept UserError as e:\n    print(e); sys.exit(3)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 3 and f"pid {os.getpid()}" in proc.stdout
    held.close()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ------------------------------------------------------------------------- long runs and unreadable checkpoints


TRACKER = """
import json, sys
import psutil
from ernie.training import trainer
real_evaluate, samples = trainer.evaluate, []
def tracked_evaluate(*a, **kw):
    out = real_evaluate(*a, **kw)
    me = psutil.Process()
    tree = [me] + me.children(recursive=True)
    samples.append({"children": len(tree) - 1, "pss": sum(p.memory_full_info().pss for p in tree)})
    return out
trainer.evaluate = tracked_evaluate
trainer.main(sys.argv[2:])
json.dump(samples, open(sys.argv[1], "w"))
"""


@pytest.mark.slow
def test_frequent_evaluation_keeps_process_count_and_memory_flat(demo, tmp_path):
    """Each evaluation used to leave its DataLoader worker behind (2 -> 7 processes per rank in 300 steps)."""
    tracker, samples = tmp_path / "tracker.py", tmp_path / "samples.json"
    tracker.write_text(TRACKER)
    run(
        [sys.executable, str(tracker), str(samples)]
        + flags(demo, str(tmp_path / "out"), max_steps=60, eval_freq=2, checkpoint_steps=20, num_workers=1),
        REPO,
    )
    s = json.loads(samples.read_text())
    # step 0, every 2 steps, the test set at the end; each held-out pass evaluates twice (the run's word masking, then
    # the same samples basic-masked: the comparable figure)
    assert len(s) == 2 * 32
    counts = [x["children"] for x in s]
    # the training loader's one worker; the evaluation's own worker has exited by the time evaluate returns
    assert max(counts) == min(counts) == 1, counts
    # a leaked worker is >= 30 MB of PSS each: 30 of them would be > 900 MB
    assert s[-1]["pss"] - s[1]["pss"] < 100e6, [round(x["pss"] / 1e6) for x in s]


KILLED_MID_STEP_TIMEOUT = 240


@pytest.mark.slow
def test_rank_killed_mid_step_is_named(demo, tmp_path):
    out = str(tmp_path / "out")
    launch = [
        sys.executable,
        "-m",
        "paddle.distributed.launch",
        "--nproc_per_node",
        "2",
        "--log_dir",
        str(tmp_path / "log"),
        SCRIPT,
    ]
    proc = subprocess.Popen(
        launch + flags(demo, out, max_steps=100_000, checkpoint_steps=100_000, save_steps=100_000, eval_freq=100_000),
        cwd=REPO,
        env=run_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        log = os.path.join(out, "train_log.jsonl")
        deadline = time.time() + KILLED_MID_STEP_TIMEOUT
        while not (os.path.exists(log) and sum(1 for _ in open(log)) > 20):  # well into training
            assert proc.poll() is None and time.time() < deadline, "the launch did not start training"
            time.sleep(0.2)
        import psutil

        rank1 = [p for p in psutil.Process(proc.pid).children() if p.environ().get("PADDLE_TRAINER_ID") == "1"]
        assert len(rank1) == 1
        rank1[0].kill()
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode != 0
    assert "error: rank 0 of 2 on" in stderr and "rank 1 of this machine died first" in stderr, stderr[-3000:]
    assert "SIGABRT" not in stderr + stdout


# ------------------------------------------------------------------------------------------ unreadable checkpoints


@pytest.fixture(scope="module")
def trained(demo, tmp_path_factory):
    """An output_dir with model_2, model_4 and model_last (step 4) of a 1-rank run."""
    out = str(tmp_path_factory.mktemp("trained") / "out")
    run(
        [sys.executable, SCRIPT]
        + flags(demo, out, max_steps=4, save_steps=2, checkpoint_steps=2, eval_freq=100, eval_iters=0, test_iters=0),
        REPO,
    )
    return out


def _corrupt(path: str, how: str) -> None:
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write({"truncated": data[: len(data) // 2], "empty": b"", "garbage": os.urandom(777)}[how])


def _main_error(argv, capsys) -> str:
    from ernie.training import trainer

    with pytest.raises(SystemExit) as exc:
        trainer.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    errors = [line for line in err.splitlines() if not line.startswith("warning: ")]
    assert "Traceback" not in err and len(errors) == 1 and errors[0].startswith("error: "), err
    return errors[0]


@pytest.mark.parametrize(
    "name, how",
    [
        ("model_state.pdparams", "truncated"),
        ("model_state.pdparams", "empty"),
        ("model_state.pdparams", "garbage"),
        ("rng_state.pkl", "truncated"),
        ("model_state.pdopt", "garbage"),
        ("trainer_state.json", "garbage"),
        ("args.yaml", "empty"),
    ],
)
def test_unreadable_model_last_names_the_file_and_a_checkpoint_to_resume_from(
    demo, trained, tmp_path, capsys, name, how
):
    import shutil

    out = str(tmp_path / "out")
    shutil.copytree(trained, out)
    _corrupt(os.path.join(out, "model_last", name), how)
    _corrupt(os.path.join(out, "model_4", "model_state.pdopt"), "truncated")  # so model_2 is the newest readable
    err = _main_error(flags(demo, out, max_steps=6, eval_iters=0, test_iters=0), capsys)
    assert os.path.join(out, "model_last", name) in err
    assert f"the newest readable checkpoint is {os.path.join(out, 'model_2')}" in err, err


def test_continue_training_from_a_truncated_weights_file_names_it(demo, trained, tmp_path, capsys):
    import shutil

    src = str(tmp_path / "weights")
    shutil.copytree(os.path.join(trained, "model_2"), src)
    _corrupt(os.path.join(src, "model_state.pdparams"), "truncated")
    err = _main_error(flags(demo, str(tmp_path / "out"), model_name_or_path=src, continue_training="true"), capsys)
    assert f"{src}/model_state.pdparams: unreadable model weights" in err


# ---------------------------------------------------------------------------------------- unwritable output location


def _cli(script: str, args: list[str]) -> subprocess.CompletedProcess:
    return run([sys.executable, os.path.join(REPO, "scripts", script)] + args, REPO, check=False)


def test_unwritable_output_is_one_line_in_every_writer(demo, tmp_path):
    """An output under a regular file cannot be created, even by root: each writer says so in one line, exit 2,
    before any work."""
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("")
    txt = tmp_path / "txt"
    txt.mkdir()
    (txt / "a.txt").write_text("今天天气很好。我们去公园散步。\n\n明天下雨，我们在家看书。\n", encoding="utf-8")
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text(
        json.dumps({"text": "今天天气很好。我们去公园散步。"}, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    out = str(blocker / "out")
    cases = {
        "trans_to_json.py": ["--input_path", str(txt), "--output_path", out],
        "build_vocab.py": ["--input_path", str(txt), "--output_dir", out, "--vocab_size", "100"],
        "words_segmentation.py": ["--input_path", str(txt / "a.txt"), "--output_path", out, "--cn_seg_func", "char"],
        "create_pretraining_data.py": [
            "--model_name",
            demo["vocab"],
            "--input_path",
            str(jsonl),
            "--output_prefix",
            out,
            "--cn_seg_func",
            "char",
            "--split_sentences",
            "--chinese",
            "--cn_whole_word_segment",
        ],
        "merge.py": ["--input", f"{demo['data']}/pd", f"{demo['data']}/pd", "--output_prefix", out],
        "run_pretrain.py": flags(demo, out, max_steps=2),
    }
    for script, args in cases.items():
        proc = _cli(script, args)
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, (script, proc.stderr[-2000:])
        assert len(errors) == 1 and "cannot write" in errors[0] and str(blocker) in errors[0], (script, errors)


# -------------------------------------------------------------------------------- Ctrl-C and refused runs (#20)
class _InterruptingBackward:
    """A PyLayer whose backward raises KeyboardInterrupt: Ctrl-C landing inside ernie/ops.py's PyLayer backward,
    which Paddle re-raises from C++ as ``OSError: (External) ... KeyboardInterrupt``."""

    @staticmethod
    def make():
        import paddle

        class Fn(paddle.autograd.PyLayer):
            @staticmethod
            def forward(ctx, x):
                return x * 1.0

            @staticmethod
            def backward(ctx, dy):
                raise KeyboardInterrupt

        return Fn


def _interrupted(argv, capsys) -> str:
    from ernie.training import trainer

    with pytest.raises(SystemExit) as exc:
        trainer.main(argv)
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 130 and err.splitlines()[-1] == "error: interrupted" and "Traceback" not in err, err
    return err


def test_ctrl_c_stops_after_the_step_and_saves_model_last(demo, tmp_path, monkeypatch, capsys):
    """The first Ctrl-C lets the current step finish, saves model_last at it, then exits 130."""
    from ernie.training import checkpoint, trainer

    real_forward, calls = trainer.forward, []

    def interrupting_forward(*a, **kw):
        calls.append(1)
        if len(calls) == 6:
            os.kill(os.getpid(), signal.SIGINT)
        return real_forward(*a, **kw)

    monkeypatch.setattr(trainer, "forward", interrupting_forward)
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN where the suite runs in the background (CI), else Python's
    out = tmp_path / "out"
    err = _interrupted(flags(demo, str(out), checkpoint_steps=4, eval_iters=0, test_iters=0), capsys)
    assert "stopping after this step" in err
    assert checkpoint.read_trainer_state(str(out / "model_last")).global_step == 6
    assert signal.getsignal(signal.SIGINT) is before  # the handler is put back


def test_ctrl_c_inside_a_pylayer_backward_is_error_interrupted(demo, tmp_path, monkeypatch, capsys):
    from ernie.training import trainer

    real_forward, calls, fn = trainer.forward, [], _InterruptingBackward.make()

    def forward_interrupted_in_backward(*a, **kw):
        calls.append(1)
        loss, lm, sop = real_forward(*a, **kw)
        return (fn.apply(loss), lm, sop) if len(calls) == 3 else (loss, lm, sop)

    monkeypatch.setattr(trainer, "forward", forward_interrupted_in_backward)
    _interrupted(flags(demo, str(tmp_path / "out"), eval_iters=0, test_iters=0), capsys)


def test_run_refused_by_a_pre_check_leaves_no_output_dir(demo, tmp_path, capsys):
    out = tmp_path / "new_out"
    err = _main_error(flags(demo, str(out), max_seq_len=200), capsys)
    assert "--max_seq_len" in err and not out.exists()
    kept = tmp_path / "users_dir"
    kept.mkdir()
    _main_error(flags(demo, str(kept), max_seq_len=200), capsys)
    assert kept.is_dir()  # a directory the user made is never removed


@pytest.mark.slow
def test_ctrl_c_to_the_process_group_with_loader_workers(demo, tmp_path):
    """Ctrl-C as a terminal sends it (to the whole process group, DataLoader workers included): rc 130, one
    ``error: interrupted`` line, model_last at the last complete step, and the rerun resumes from it."""
    out = str(tmp_path / "out")
    argv = [sys.executable, SCRIPT] + flags(
        demo, out, max_steps=400, checkpoint_steps=1000, save_steps=1000, eval_iters=0, test_iters=0, num_workers=2
    )
    proc = subprocess.Popen(
        argv, cwd=REPO, env=run_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    log = os.path.join(out, "train_log.jsonl")
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        if os.path.isfile(log) and len(train_losses(out)) >= 3:
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130 and stderr.strip().splitlines()[-1] == "error: interrupted", stderr[-3000:]
    assert "Traceback" not in stderr
    from ernie.training.checkpoint import read_trainer_state

    step = read_trainer_state(os.path.join(out, "model_last")).global_step
    assert step >= 3 and f"interrupted at step {step}" in stdout


@pytest.mark.slow
def test_masking_schedule_resume_at_and_across_a_stage_boundary_is_exact(demo, tmp_path):
    """--masking_schedule: killed while saving step 6, the run resumes from the step-3 checkpoint (exactly at the
    basic -> entity boundary), crosses the entity -> knowledge boundary at 6 and equals the uninterrupted run; records
    name the stage; valid records carry the basic-masked figures; a schedule that re-masks steps done is refused;
    --continue_training from the checkpoint starts a new schedule."""
    common = dict(
        masking_schedule="basic:3,entity:3,knowledge",
        knowledge_mix="0.5,0.2,0.3",
        max_steps=8,
        checkpoint_steps=3,
        eval_freq=4,
        micro_batch_size=4,
    )
    reference = str(tmp_path / "reference")
    ref = run([sys.executable, SCRIPT] + flags(demo, reference, **common), REPO)
    assert "masking stage 2 entity (steps 4-6) of 3" in ref.stdout and "masking: knowledge" in ref.stdout
    out = str(tmp_path / "out")
    killer = tmp_path / "killer.py"
    killer.write_text(KILLER.format(kill_at=2))  # checkpoints at 3 and 6: dies while writing step 6's
    assert (
        run([sys.executable, str(killer)] + flags(demo, out, **common), REPO, check=False).returncode == -signal.SIGKILL
    )
    with open(os.path.join(out, "model_last", "trainer_state.json")) as f:
        saved = json.load(f)
    assert (saved["global_step"], saved["masking_stage"], saved["masking_schedule"]) == (
        3,
        "basic",
        "basic:3,entity:3,knowledge",
    )
    resumed = run([sys.executable, SCRIPT] + flags(demo, out, **common), REPO)
    assert "resuming from" in resumed.stdout and "step 3" in resumed.stdout
    expected, losses = train_losses(reference), train_losses(out)
    assert sorted(losses) == list(range(1, 9))
    for step in range(1, 9):
        assert losses[step] == pytest.approx(expected[step], rel=1e-6, abs=0), step
    with open(os.path.join(out, "train_log.jsonl"), encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    stages = {r["step"]: r["masking_stage"] for r in records if r["event"] == "train"}
    assert stages == {
        1: "basic",
        2: "basic",
        3: "basic",
        4: "entity",
        5: "entity",
        6: "entity",
        7: "knowledge",
        8: "knowledge",
    }
    valid = {r["step"]: r for r in records if r["event"] == "valid"}
    assert valid[0]["masking_stage"] == "basic" and valid[0]["basic_lm_loss"] == valid[0]["lm_loss"]
    assert valid[4]["masking_stage"] == "entity" and valid[4]["basic_lm_loss"] != valid[4]["lm_loss"]
    assert all(0 <= v["lm_acc"] <= 1 and 0 <= v["basic_lm_acc"] <= 1 for v in valid.values())
    # resuming with a schedule that masks the steps done differently is refused in one line; later stages may change
    changed = run(
        [sys.executable, SCRIPT]
        + flags(demo, out, **{**common, "masking_schedule": "basic:4,entity", "max_steps": 10}),
        REPO,
        check=False,
    )
    assert changed.returncode == 2 and "--masking_schedule: the checkpoint in" in changed.stderr
    later = run(
        [sys.executable, SCRIPT]
        + flags(demo, out, **{**common, "masking_schedule": "basic:3,entity:3,knowledge:2,phrase", "max_steps": 9}),
        REPO,
    )
    assert "masking stage 4 phrase" in later.stdout
    # --continue_training from that checkpoint is a new run: its schedule starts again at its own step 1
    fresh = str(tmp_path / "continued")
    run(
        [sys.executable, SCRIPT]
        + flags(
            demo,
            fresh,
            **{
                **common,
                "model_name_or_path": os.path.join(out, "model_last"),
                "continue_training": "true",
                "max_steps": 2,
            },
        ),
        REPO,
    )
    with open(os.path.join(fresh, "train_log.jsonl"), encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    assert [r["masking_stage"] for r in records if r["event"] == "train"] == ["basic", "basic"]


def _run_until_step(argv, out, steps, **popen):
    """Start ``argv`` and return the process once its train log has ``steps`` train records."""
    proc = subprocess.Popen(
        argv, cwd=REPO, env=run_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen
    )
    log = os.path.join(out, "train_log.jsonl")
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        if os.path.isfile(log) and len(train_losses(out)) >= steps:
            break
        time.sleep(0.1)
    assert proc.poll() is None, proc.communicate()
    return proc


def test_sigterm_stops_after_the_step_saves_model_last_and_the_rerun_resumes(demo, tmp_path):
    """SIGTERM (what timeout, SLURM and Kubernetes send) to a single-process pretraining: no C++ "FatalError", the step
    finishes, model_last is saved at it, status 143 with one line; the rerun resumes from that step."""
    out = str(tmp_path / "out")
    argv = [sys.executable, SCRIPT] + flags(
        demo, out, max_steps=400, checkpoint_steps=1000, save_steps=1000, eval_iters=0, test_iters=0
    )
    proc = _run_until_step(argv, out, 3)
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGTERM)  # as paddle.distributed.launch does: more SIGTERMs change nothing
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == "error: terminated (SIGTERM)" and "Traceback" not in stderr
    assert "FatalError" not in stderr
    from ernie.training.checkpoint import read_trainer_state

    step = read_trainer_state(os.path.join(out, "model_last")).global_step
    assert step >= 3 and f"terminated at step {step}" in stdout
    resumed = run([sys.executable, SCRIPT] + flags(demo, out, max_steps=step + 2, eval_iters=0, test_iters=0), REPO)
    assert (
        f"step {step}" in resumed.stdout and read_trainer_state(os.path.join(out, "model_last")).global_step == step + 2
    )


@pytest.mark.slow
def test_sigterm_to_the_launcher_stops_every_rank_at_one_step_and_saves(demo, tmp_path):
    """The README's 2-process launch, SIGTERM to the launcher (it sends SIGTERM to both ranks' process groups, then
    waits 30 s): both ranks stop after the same step, rank 0 saves model_last at it, no traceback in either log."""
    out = str(tmp_path / "out")
    log_dir = str(tmp_path / "launch_log")
    argv = [
        sys.executable,
        "-m",
        "paddle.distributed.launch",
        "--nproc_per_node",
        "2",
        "--log_dir",
        log_dir,
        SCRIPT,
        *flags(demo, out, max_steps=400, checkpoint_steps=1000, save_steps=1000, eval_iters=0, test_iters=0),
    ]
    proc = _run_until_step(argv, out, 3, start_new_session=True)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    from ernie.training.checkpoint import read_trainer_state

    step = read_trainer_state(os.path.join(out, "model_last")).global_step
    assert step >= 3
    for rank in (0, 1):
        with open(os.path.join(log_dir, f"workerlog.{rank}"), encoding="utf-8") as f:
            text = f.read()
        assert f"terminated at step {step}" in text and "Traceback" not in text and "FatalError" not in text, text[
            -3000:
        ]


def test_a_last_step_with_a_non_finite_loss_fails_and_is_not_saved(demo, tmp_path, monkeypatch, capsys):
    """The streak limit is not reached, but the run's last step is not finite: status 2, one line, model_last stays at
    the last finite checkpoint (it used to exit 0 with nothing said)."""
    poison_forward_after(5, monkeypatch)
    out = tmp_path / "out"
    err = _main_error(flags(demo, str(out), max_steps=6, checkpoint_steps=4, eval_iters=0, test_iters=0), capsys)
    assert "last training step (6)" in err and "model_last" in err
    from ernie.training.checkpoint import read_trainer_state

    assert read_trainer_state(str(out / "model_last")).global_step == 4 and not (out / "model_6").exists()


@pytest.mark.parametrize("flag", ["max_lr", "warmup_rate", "grad_clip"])
def test_non_finite_float_flags_are_refused(demo, tmp_path, capsys, flag):
    err = _main_error(flags(demo, str(tmp_path / "out"), **{flag: "inf"}), capsys)
    assert err == f"error: --{flag}: inf is not a finite number"


def test_model_steps_without_model_last_are_resumed_not_overwritten(demo, tmp_path):
    """An output dir holding model_<step> checkpoints but no model_last (moved away, lost): the rerun resumes from
    the newest readable one instead of training from scratch over them."""
    out = str(tmp_path / "out")
    run([sys.executable, SCRIPT] + flags(demo, out, max_steps=8, save_steps=4, eval_iters=0, test_iters=0), REPO)
    shutil.rmtree(os.path.join(out, "model_last"))
    resumed = run(
        [sys.executable, SCRIPT] + flags(demo, out, max_steps=10, save_steps=4, eval_iters=0, test_iters=0), REPO
    )
    assert "resuming from" in resumed.stdout and "model_8" in resumed.stdout
    from ernie.training.checkpoint import read_trainer_state

    assert read_trainer_state(os.path.join(out, "model_last")).global_step == 10


def test_paddlenlp_trainer_flag_names_run_as_ours(demo, tmp_path):
    """run_pretrain_trainer.py's / run_gb512_s1m_trainer.sh's TrainingArguments names: each is taken as the flag of
    ours it names (the saved args.yaml shows the values), those that ask for what the toolkit does anyway are
    accepted, and --save_total_limit keeps the newest model_<step>."""
    import yaml

    from ernie.training import trainer

    out = tmp_path / "out"
    base = flags(demo, str(out), max_steps=4, save_steps=2)
    renamed = {
        "--micro_batch_size": "--per_device_train_batch_size",
        "--max_lr": "--learning_rate",
        "--min_lr": "--min_learning_rate",
        "--logging_freq": "--logging_steps",
        "--eval_freq": "--eval_steps",
        "--max_seq_len": "--max_seq_length",
        "--num_workers": "--dataloader_num_workers",
    }
    argv = [renamed.get(x, x) for x in base if x != "--warmup_rate"]
    argv.remove("0.1")  # --warmup_rate's value: --warmup_steps instead
    argv += [
        "--warmup_steps",
        "1",
        "--gradient_accumulation_steps",
        "2",
        "--fp16",
        "false",
        "--bf16",
        "false",
        "--do_train",
        "--do_eval",
        "--report_to",
        "visualdl",
        "--disable_tqdm",
        "true",
        "--data_impl",
        "mmap",
        "--tensor_parallel_degree",
        "1",
        "--sharding",
        "",
        "--save_total_limit",
        "1",
        "--recompute",
        "false",
    ]
    trainer.main(argv)
    saved = yaml.safe_load((out / "model_last" / "args.yaml").read_text())
    assert saved["training"]["micro_batch_size"] == 8 and saved["training"]["global_batch_size"] == 16
    assert saved["optimizer"]["max_lr"] == 1e-2 and saved["data"]["max_seq_len"] == 64
    assert saved["training"]["warmup_steps"] == 1 and saved["logging"]["logging_freq"] == 1
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("model_")) == ["model_4", "model_last"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--tensor_parallel_degree", "2"], "--tensor_parallel_degree 2: this toolkit trains data parallel only"),
        (["--sharding", "stage2"], "--sharding stage2: this toolkit trains data parallel only"),
        (["--fp16", "--bf16"], "--fp16 and --bf16: choose one"),
        (["--gradient_accumulation_steps", "2", "--global_batch_size", "8"], "give one of the two"),
    ],
)
def test_trainer_flags_without_a_meaning_here_are_refused_in_one_line(demo, tmp_path, capsys, extra, message):
    err = _main_error(flags(demo, str(tmp_path / "out")) + extra, capsys)
    assert message in err, err


@pytest.mark.parametrize("layout", ["paddlenlp", "before_the_engine"])
def test_a_paddlenlp_run_pretrain_model_last_resumes_at_its_step_lr_and_data(demo, tmp_path, layout):
    """A model_last in the layout of PaddleNLP's run_pretrain.py (config.yml with global_step / consumed_samples,
    model_state.pdopt keyed by Paddle's parameter names, no RNG state; made here from a run of ours, the reader is
    checked against PaddleNLP-written files in tests/test_migration.py) resumes with --resume_from_checkpoint: the
    step, the LR and the next losses equal the uninterrupted run's (dropout off: PaddleNLP saves no RNG state).
    ``before_the_engine``: our own model_last as pretraining wrote it before the engine (the optimizer keyed by
    Paddle's parameter names, everything else as now), with dropout on: resumed exactly from output_dir."""
    import paddle

    common = dict(max_steps=6, checkpoint_steps=3, eval_iters=0, test_iters=0, decay_steps=6, warmup_rate=0)
    if layout == "paddlenlp":
        common.update(
            hidden_dropout_prob=0, attention_probs_dropout_prob=0
        )  # the schedule does not depend on max_steps
    reference = str(tmp_path / "reference")
    run([sys.executable, SCRIPT] + flags(demo, reference, **common), REPO)
    first = str(tmp_path / "first")
    run([sys.executable, SCRIPT] + flags(demo, first, **{**common, "max_steps": 3}), REPO)
    theirs = tmp_path / "paddlenlp_model_last"
    shutil.copytree(os.path.join(first, "model_last"), theirs)
    weights = paddle.load(str(theirs / "model_state.pdparams"))
    names = {k: v.name for k, v in weights.items()}
    ours = paddle.load(str(theirs / "model_state.pdopt"))
    raw = {}
    for key, value in ours.items():
        if "/" in key:
            structured, slot = key.split("/", 1)
            raw[f"{names[structured]}_{slot}"] = value
        else:
            raw[key] = value
    paddle.save(raw, str(theirs / "model_state.pdopt"))
    if layout == "before_the_engine":
        out = str(tmp_path / "out")
        os.makedirs(out)
        shutil.copytree(theirs, os.path.join(out, "model_last"))
        resumed = run([sys.executable, SCRIPT] + flags(demo, out, **common), REPO)
        assert "resuming from" in resumed.stdout and "step 3" in resumed.stdout
        expected, losses = train_losses(reference), train_losses(out)
        assert [losses[s] for s in (4, 5, 6)] == [expected[s] for s in (4, 5, 6)]
        return
    state = json.loads((theirs / "trainer_state.json").read_text())
    (theirs / "config.yml").write_text(
        f"model_name: x\nglobal_step: {state['global_step']}\nglobal_batch_size: {state['global_batch_size']}\n"
        f"consumed_samples: {state['consumed_samples']}\n"
    )
    for name in ("trainer_state.json", "rng_state.pkl", "args.yaml"):
        (theirs / name).unlink()
    out = str(tmp_path / "out")
    resumed = run([sys.executable, SCRIPT] + flags(demo, out, resume_from_checkpoint=str(theirs), **common), REPO)
    assert "resuming from" in resumed.stdout and "step 3" in resumed.stdout
    expected, losses = train_losses(reference), train_losses(out)
    assert sorted(losses) == [4, 5, 6]
    for step in (4, 5, 6):
        assert losses[step] == expected[step], step
    with open(os.path.join(reference, "train_log.jsonl"), encoding="utf-8") as f:
        lr_ref = {r["step"]: r["learning_rate"] for r in map(json.loads, f) if r["event"] == "train"}
    with open(os.path.join(out, "train_log.jsonl"), encoding="utf-8") as f:
        lr_out = {r["step"]: r["learning_rate"] for r in map(json.loads, f) if r["event"] == "train"}
    assert all(lr_out[s] == lr_ref[s] for s in (4, 5, 6))


def test_resume_with_another_vocabulary_is_refused(demo, tmp_path, capsys):
    """The checkpoint's vocab.txt against the run's tokenizer: the same size with two tokens swapped is another
    vocabulary (its ids mean other tokens), refused in one line before anything is written."""
    out = str(tmp_path / "out")
    run([sys.executable, SCRIPT] + flags(demo, out, max_steps=2, eval_iters=0, test_iters=0), REPO)
    other = tmp_path / "other_vocab"
    shutil.copytree(demo["vocab"], other)
    lines = (other / "vocab.txt").read_text(encoding="utf-8").splitlines()
    lines[10], lines[11] = lines[11], lines[10]
    (other / "vocab.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    before = sorted(os.listdir(out))
    err = _main_error(flags(demo, out, max_steps=4, tokenizer_name_or_path=str(other)), capsys)
    assert "not the vocabulary" in err and "model_last" in err and sorted(os.listdir(out)) == before


def test_a_launch_log_dir_shared_with_a_running_launch_is_refused(demo, tmp_path):
    """Two launches with one --log_dir would write into each other's workerlog.N: the second run stops in one line."""
    log_dir = tmp_path / "launch_log"
    log_dir.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from ernie.utils.lock import lock_output_dir; "
         "lock_output_dir(sys.argv[1]); print('held', flush=True); time.sleep(60)", str(log_dir)],
        env={**run_env(), "PYTHONPATH": REPO}, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        proc = subprocess.run(
            [sys.executable, SCRIPT] + flags(demo, str(tmp_path / "out"), max_steps=2),
            cwd=REPO, env={**run_env(), "PADDLE_LOG_DIR": str(log_dir)}, capture_output=True, text=True, timeout=240,
        )  # fmt: skip
    finally:
        holder.kill()
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith("error: --log_dir"), proc.stderr
