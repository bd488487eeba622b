"""The one training engine (ernie/training/engine.py) as fine-tuning runs it: gradient accumulation equal to the large
batch, --fp16 / --bf16 accepted (AMP a no-op on the CPU), non-finite settings and training refused, SIGTERM saving a
resumable checkpoint, and checkpoints of the layout fine-tuning wrote before the engine resuming exactly.
Pretraining's side (SIGTERM, the last step non-finite, model_<step> without model_last): tests/test_pretrain.py."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("paddle")

import test_finetune_safety as safety
from test_finetune_safety import ROOT, argv, child_env, run_cli, run_main, weights

files = safety.files  # the fixtures of that module, used here too
same_math_threads = safety.same_math_threads


def test_accumulation_equals_the_large_batch(files, tmp_path):
    """batch 2 x 4 accumulation steps = batch 8 in one step: same weights after the run (float tolerance: the
    micro batches' losses are summed in another order)."""
    base = ["--eval_steps", "100", "--hidden_dropout_prob", "0", "--attention_probs_dropout_prob", "0"]
    run_main(argv(files, tmp_path / "big", *base, steps=6))
    small = argv(files, tmp_path / "acc", *base, "--gradient_accumulation_steps", "4", steps=6)
    small[small.index("--batch_size") + 1] = "2"
    run_main(small)
    big, acc = weights(tmp_path / "big"), weights(tmp_path / "acc")
    assert big.keys() == acc.keys()
    for k in big:
        np.testing.assert_allclose(acc[k], big[k], rtol=2e-4, atol=2e-6, err_msg=k)


def test_trainer_era_names_and_amp_flags_are_accepted(files, tmp_path):
    """PaddleNLP's / HF's spelling (--per_device_train_batch_size) and --fp16 true (a no-op on the CPU: the same
    weights as float32); --fp16 is never read as --fp16_opt_level."""
    run_main(argv(files, tmp_path / "fp32", steps=3))
    args = argv(files, tmp_path / "fp16", "--fp16", "true", "--fp16_opt_level", "O2", steps=3)
    args[args.index("--batch_size")] = "--per_device_train_batch_size"
    run_main(args)
    a, b = weights(tmp_path / "fp32"), weights(tmp_path / "fp16")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize(
    "flag, value", [("--learning_rate", "nan"), ("--warmup_ratio", "inf"), ("--max_grad_norm", "-inf")]
)
def test_non_finite_float_flags_are_refused(files, tmp_path, capsys, flag, value):
    err = run_cli(argv(files, tmp_path / "out", flag, value), capsys)
    assert f"{flag}: {value}" in err and "not a finite number" in err and not (tmp_path / "out").exists()


def test_diverging_fine_tuning_fails_and_exports_nothing(files, tmp_path, capsys):
    """--learning_rate 1e30: the loss turns non-finite; the run ends in one line (status 2), never "complete", no
    final model and no export."""
    out = tmp_path / "out"
    err = run_cli(argv(files, out, "--learning_rate", "1e30", "--do_export", steps=4), capsys)
    assert "non-finite" in err or "not finite" in err
    status = json.loads((out / "run_status.json").read_text())
    assert status["status"] == "running"  # an interrupted run: a rerun resumes or starts over, never "complete"
    assert not (out / "model_state.pdparams").exists() and not (out / "export").exists()


def test_sigterm_saves_a_checkpoint_and_the_rerun_resumes_exactly(files, tmp_path):
    """SIGTERM (timeout, SLURM, Kubernetes) mid-run: the step finishes, checkpoint-<step> is written, status 143 with
    one line; the rerun resumes from it and ends with the weights of an uninterrupted run."""
    ref = tmp_path / "ref"
    run_main(argv(files, ref, steps=40))
    out = tmp_path / "out"
    cmd = [sys.executable, os.path.join(ROOT, "scripts", "run_seq_cls.py"), *argv(files, out, steps=40)]
    proc = subprocess.Popen(cmd, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (out.exists() and any(n.startswith("checkpoint-") for n in os.listdir(out))):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr[-2000:]
    lines = stderr.strip().splitlines()
    assert lines[-1] == "error: terminated (SIGTERM)" and "Traceback" not in stderr and "FatalError" not in stderr
    assert "terminated at step" in stdout
    run_main(argv(files, out, steps=40))
    a, b = weights(ref), weights(out)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_a_checkpoint_of_the_layout_before_the_engine_resumes_exactly(files, tmp_path, capsys):
    """A fine-tuning checkpoint as written before the engine (optimizer.pdopt, training_args.json, one RNG state)
    resumes and ends with the uninterrupted run's weights."""
    ref = tmp_path / "ref"
    run_main(argv(files, ref, "--save_total_limit", "10", steps=12))
    old = tmp_path / "old_ckpt"
    shutil.copytree(ref / "checkpoint-6", old)
    os.replace(old / "model_state.pdopt", old / "optimizer.pdopt")
    import yaml

    (old / "training_args.json").write_text(json.dumps(yaml.safe_load((old / "args.yaml").read_text())))
    (old / "args.yaml").unlink()
    with open(old / "rng_state.pkl", "rb") as f:
        states = pickle.load(f)
    with open(old / "rng_state.pkl", "wb") as f:
        pickle.dump(states[0], f)
    out = tmp_path / "out"
    run_main(argv(files, out, "--resume_from_checkpoint", str(old), steps=12))
    assert "resuming from" in capsys.readouterr().out
    a, b = weights(ref), weights(out)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.slow
def test_data_parallel_fine_tuning_under_launch_equals_one_process(files, tmp_path):
    """run_seq_cls.py on 2 ranks (gloo) with --per_device_train_batch_size 4 = one process with batch 8: the same
    final weights (float tolerance: the gradient is averaged over ranks); only rank 0 writes output_dir."""
    base = ["--eval_steps", "100", "--hidden_dropout_prob", "0", "--attention_probs_dropout_prob", "0"]
    run_main(argv(files, tmp_path / "one", *base, steps=6))
    two = argv(files, tmp_path / "two", *base, steps=6)
    two[two.index("--batch_size") : two.index("--batch_size") + 2] = ["--per_device_train_batch_size", "4"]
    log_dir = tmp_path / "launch_log"
    cmd = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir", str(log_dir)]
    proc = subprocess.run(
        [*cmd, os.path.join(ROOT, "scripts", "run_seq_cls.py"), *two],
        env=child_env({"OMP_NUM_THREADS": "1"}),
        capture_output=True,
        text=True,
        timeout=600,
    )
    logs = "".join((log_dir / f"workerlog.{r}").read_text() for r in (0, 1) if (log_dir / f"workerlog.{r}").exists())
    assert proc.returncode == 0, logs[-4000:]
    a, b = weights(tmp_path / "one"), weights(tmp_path / "two")
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=2e-4, atol=2e-6, err_msg=k)
    assert json.loads((tmp_path / "two" / "run_status.json").read_text())["status"] == "complete"
