"""Nothing a user owns is lost by fine-tuning (issue #20, "Data loss"): checks before writes, the output_dir lock,
interrupted runs recognised and resumed bit-exactly, --overwrite_output_dir replacing only when complete, atomic
checkpoints, and convert_checkpoint.py refusing --output inside --input. The fault-injection test kills runs at
random write points (ernie.utils.fault_point) and reruns them.

Everything runs on a 2-layer, 32-wide model with a 40-token vocab and 48 training rows (a run takes ~2 s)."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MATH_THREADS = 2  # "set by the user" to the toolkit (not "1", the value import paddle writes)
CHARS = "好差很太不错棒烂喜欢讨厌满意失望推荐值得"
CONFIG = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "hidden_act": "gelu",
    "max_position_embeddings": 32,
    "vocab_size": 40,
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
}


@pytest.fixture(scope="module", autouse=True)
def same_math_threads():
    """Runs in this process and in subprocesses are compared bit for bit, and GEMMs on 1 and on 2 threads round
    differently: both sides get MATH_THREADS, chosen the way a user does (``OMP_NUM_THREADS`` in the environment, which
    the toolkit's CPU tuning leaves alone), and this process's Paddle is set to it (earlier tests of the session may
    have set other counts; ``import paddle`` wrote ``OMP_NUM_THREADS=1`` here, which a child takes as the user's)."""
    from paddle.base import core

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", str(MATH_THREADS))
        core.set_num_threads(MATH_THREADS)
        yield


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A vocab dir, a model config and train/dev tsv files (labels pos/neg).

    ``bad_dev``: a label the training data lacks.
    """
    root = tmp_path_factory.mktemp("safety")
    vocab = root / "vocab"
    vocab.mkdir()
    (vocab / "vocab.txt").write_text(
        "\n".join(["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]", *CHARS]) + "\n", encoding="utf-8"
    )
    (root / "config.json").write_text(json.dumps(CONFIG), encoding="utf-8")
    rng = random.Random(0)
    pos, neg = "很好棒喜欢满意推荐值得", "差太烂讨厌失望不"

    def rows(n):
        out = []
        for _ in range(n):
            label = rng.choice(["pos", "neg"])
            text = "".join(rng.choice(pos if label == "pos" else neg) for _ in range(rng.randint(3, 8)))
            out.append(f"{text}\t{label}\n")
        return "".join(out)

    (root / "train.tsv").write_text(rows(48), encoding="utf-8")
    (root / "dev.tsv").write_text(rows(16), encoding="utf-8")
    (root / "bad_dev.tsv").write_text(rows(8) + "好好\tmaybe\n", encoding="utf-8")
    return {
        k: str(root / v)
        for k, v in (
            ("vocab", "vocab"),
            ("config", "config.json"),
            ("train", "train.tsv"),
            ("dev", "dev.tsv"),
            ("bad_dev", "bad_dev.tsv"),
        )
    }


def argv(files, out, *extra, seed=1, steps=12):
    """A run of 12 steps (2 epochs of 6 batches), eval every 3, checkpoints at 3, 6, 9, 12 (2 kept + the best)."""
    return [
        "--model_name_or_path",
        files["config"],
        "--tokenizer_name_or_path",
        files["vocab"],
        "--train_file",
        files["train"],
        "--dev_file",
        files["dev"],
        "--max_seq_length",
        "16",
        "--batch_size",
        "8",
        "--max_steps",
        str(steps),
        "--eval_steps",
        "3",
        "--logging_steps",
        "2",
        "--learning_rate",
        "5e-3",
        "--save_total_limit",
        "2",
        "--load_best_model_at_end",
        "--seed",
        str(seed),
        "--device",
        "cpu",
        "--output_dir",
        str(out),
        "--do_train",
        "--do_eval",
        *extra,
    ]


def run_main(args):
    from ernie.finetune_cli import run_seq_cls as main

    return main(list(args))


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as exc:
        run_main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def child_env(extra=None) -> dict:
    """The environment of a fine-tuning subprocess (its math threads: ``same_math_threads``)."""
    return {**os.environ, "PYTHONPATH": ROOT, **(extra or {})}


def run_process(args, env_extra=None, timeout=300):
    env = child_env(env_extra)
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "run_seq_cls.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def weights(directory) -> dict:
    import paddle

    return {k: v.numpy() for k, v in paddle.load(os.path.join(str(directory), "model_state.pdparams")).items()}


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def snapshot(directory) -> dict:
    """Every file under ``directory`` (relative path -> bytes), the lock file left out."""
    found = {}
    for root, _, names in os.walk(directory):
        for n in names:
            path = os.path.join(root, n)
            if n != ".run.lock":
                with open(path, "rb") as f:
                    found[os.path.relpath(path, directory)] = f.read()
    return found


def status(directory) -> str | None:
    path = os.path.join(str(directory), "run_status.json")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)["status"]


@pytest.fixture(scope="module")
def finished(files, tmp_path_factory):
    """A complete run (seed 1) and its results; tests copy it before changing it."""
    out = tmp_path_factory.mktemp("finished") / "out"
    results = run_main(argv(files, out))
    return out, results


@pytest.fixture(scope="module")
def fault_log(files, finished, tmp_path_factory) -> list[str]:
    """The fault points of an --overwrite_output_dir run (seed 2) over ``finished``, in order (point n = line n)."""
    root = tmp_path_factory.mktemp("faults")
    shutil.copytree(finished[0], root / "out")
    proc = run_process(
        argv(files, root / "out", "--overwrite_output_dir", seed=2), {"ERNIE_FAULT_LOG": str(root / "faults.txt")}
    )
    assert proc.returncode == 0, proc.stderr
    return [line.split(" ", 1)[1] for line in (root / "faults.txt").read_text(encoding="utf-8").splitlines()]


def point(log: list[str], *words: str) -> int:
    """The number of the first fault point whose name holds every one of ``words``."""
    return next(i + 1 for i, name in enumerate(log) if all(w in name for w in words))


def copy_of(finished, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(finished[0], out)
    return out


# ----------------------------------------------------------------------------------- 1. --overwrite_output_dir
def test_complete_run_is_marked_and_leaves_no_temporaries(finished):
    out, results = finished
    assert status(out) == "complete"
    assert not [n for n in os.listdir(out) if n.startswith(".") and n != ".run.lock"], os.listdir(out)
    assert sorted(n for n in os.listdir(out) if n.startswith("checkpoint-")) == [
        "checkpoint-12",
        "checkpoint-9",
    ] or results["train"]["best_step"] not in (9, 12)
    assert results["train"]["steps"] == 12


def test_unknown_label_on_overwrite_changes_nothing(files, finished, tmp_path, capsys):
    out = copy_of(finished, tmp_path)
    before = snapshot(out)
    args = argv(files, out, "--overwrite_output_dir")
    args[args.index("--dev_file") + 1] = files["bad_dev"]
    err = run_cli(args, capsys)
    assert "maybe" in err
    assert snapshot(out) == before  # before the fix: every checkpoint-* was deleted first


def test_continuing_from_own_checkpoint_with_overwrite_is_refused_and_keeps_it(files, finished, tmp_path, capsys):
    out = copy_of(finished, tmp_path)
    before = snapshot(out)
    ckpt = str(out / "checkpoint-12")
    args = argv(files, out, "--overwrite_output_dir")
    args[args.index("--model_name_or_path") + 1] = ckpt
    err = run_cli(args, capsys)
    assert "--resume_from_checkpoint" in err and ckpt in err
    assert snapshot(out) == before  # before the fix: "not a checkpoint directory", and checkpoint-12 was gone


def test_overwrite_keeps_the_previous_output_until_the_new_one_is_complete(files, finished, fault_log, tmp_path):
    out = copy_of(finished, tmp_path)
    old = weights(out)
    # killed right after the previous checkpoints were moved aside: the previous final model is untouched
    kill_at = point(fault_log, "replace", "checkpoint-12")
    proc = run_process(argv(files, out, "--overwrite_output_dir", seed=2), {"ERNIE_FAULT_KILL_AT": str(kill_at)})
    assert proc.returncode == -9, proc.stderr
    assert same_weights(weights(out), old)
    assert os.path.isdir(out / ".replaced") and not any(n.startswith("checkpoint-") for n in os.listdir(out))
    results = run_main(argv(files, out, "--overwrite_output_dir", seed=2))
    assert status(out) == "complete" and not os.path.exists(out / ".replaced")
    assert not same_weights(weights(out), old) and results["train"]["steps"] == 12


def test_refuses_a_complete_run_without_overwrite(files, finished, tmp_path, capsys):
    out = copy_of(finished, tmp_path)
    err = run_cli(argv(files, out), capsys)
    assert "--overwrite_output_dir" in err and "complete" in err


# --------------------------------------------------------------------------------------------------- 2. the lock
def test_second_run_waits_then_refuses_naming_the_holder(files, tmp_path, capsys, monkeypatch):
    from ernie.finetune import runner

    out = tmp_path / "out"
    code = (
        "import sys, time\nfrom ernie.utils.lock import lock_output_dir\n"
        f"lock_output_dir({str(out)!r})\nprint('locked', flush=True)\ntime.sleep(60)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": ROOT}, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        monkeypatch.setattr(runner, "LOCK_WAIT_SECONDS", 1.0)
        err = run_cli(argv(files, out, "--overwrite_output_dir"), capsys)
        assert f"pid {holder.pid}" in err and "another run" in err
        assert os.listdir(out) == [".run.lock"]  # nothing written (before the fix: no lock at all)
    finally:
        holder.kill()
        holder.wait()
    run_main(argv(files, out, steps=3))  # the holder gone, the lock is free
    assert status(out) == "complete"


def test_two_concurrent_overwrite_runs_into_one_dir(files, finished, tmp_path):
    """The issue's case: two `--overwrite_output_dir --load_best_model_at_end --save_total_limit 2` runs started
    together into one dir (before the fix both crashed on each other's rotated checkpoints, leaving no model)."""
    out = copy_of(finished, tmp_path)
    env = child_env()
    cmd = [sys.executable, os.path.join(ROOT, "scripts", "run_seq_cls.py"), *argv(files, out, "--overwrite_output_dir")]
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    logs = "".join(o + e for o, e in outputs)
    assert codes in ([0, 0], [0, 2]), logs
    if codes == [0, 0]:  # the second waited for the first, then replaced its output
        assert "waiting up to 30 s for another run (pid" in logs, logs
    else:  # the first outlasted the wait (a loaded machine): refused, naming it
        assert "another run (pid" in logs and "is writing to it" in logs, logs
    assert status(out) == "complete" and same_weights(weights(out), weights(finished[0]))


def test_pretraining_and_fine_tuning_share_one_lock():
    from ernie.training import distributed
    from ernie.utils import lock

    assert distributed.lock_output_dir is lock.lock_output_dir


# ------------------------------------------------------------------------------------ 3. interrupts and resume
def test_interrupted_run_is_recognised_and_resumed_exactly(files, finished, fault_log, tmp_path, capsys):
    out = tmp_path / "out"
    # killed inside the write of checkpoint-9 (fault points of a fresh run: those of fault_log after "replace")
    kill_at = point(fault_log, "checkpoint-9: model written") - len([n for n in fault_log if n.startswith("replace")])
    proc = run_process(argv(files, out), {"ERNIE_FAULT_KILL_AT": str(kill_at)})
    assert proc.returncode == -9, proc.stderr
    assert status(out) == "running"
    capsys.readouterr()
    results = run_main(argv(files, out))  # a plain rerun resumes
    log = capsys.readouterr().out
    assert "found an interrupted run" in log and "resuming from" in log, log
    assert results["train"]["resumed_from"].endswith("checkpoint-6")
    assert same_weights(weights(out), weights(finished[0]))  # bit-exact on CPU
    assert results["eval"] == finished[1]["eval"]
    with open(out / "checkpoint-12" / "trainer_state.json", encoding="utf-8") as f:
        resumed_log = json.load(f)["log_history"]
    with open(finished[0] / "checkpoint-12" / "trainer_state.json", encoding="utf-8") as f:
        assert resumed_log == json.load(f)["log_history"]


def test_interrupted_overwrite_without_checkpoint_keeps_the_previous_model(
    files, finished, fault_log, tmp_path, capsys
):
    out = copy_of(finished, tmp_path)
    old = weights(out)
    # killed after run_status.json said "running", before the first checkpoint
    kill_at = point(fault_log, "run_status.json") + 1
    proc = run_process(argv(files, out, "--overwrite_output_dir", seed=2), {"ERNIE_FAULT_KILL_AT": str(kill_at)})
    assert proc.returncode == -9 and status(out) == "running"
    err = run_cli(argv(files, out, seed=2), capsys)  # a plain rerun: nothing to resume, a model to protect
    assert "interrupted run" in err and "without a complete checkpoint" in err and "--overwrite_output_dir" in err
    assert same_weights(weights(out), old)


def test_resume_from_checkpoint_path_and_auto(files, finished, tmp_path, capsys):
    out = copy_of(finished, tmp_path)
    results = run_main(argv(files, out, "--resume_from_checkpoint", str(out / "checkpoint-9")))
    assert same_weights(weights(out), weights(finished[0])) and results["eval"] == finished[1]["eval"]
    err = run_cli(argv(files, tmp_path / "o2", "--resume_from_checkpoint", str(out / "missing")), capsys)
    assert "not a complete checkpoint" in err
    err = run_cli(argv(files, out, "--resume_from_checkpoint", "auto"), capsys)  # a complete run: nothing to resume
    assert "--overwrite_output_dir" in err


def test_half_written_checkpoint_is_never_taken_as_complete(files, fault_log, tmp_path):
    out = tmp_path / "out"
    # kill between writing the model and the optimizer of checkpoint-3 (inside its temporary directory)
    n = point(fault_log, "checkpoint-3: model written") - len([n for n in fault_log if n.startswith("replace")])
    proc = run_process(argv(files, out, steps=3), {"ERNIE_FAULT_KILL_AT": str(n)})
    assert proc.returncode == -9
    assert not os.path.exists(out / "checkpoint-3") and os.path.isdir(out / ".checkpoint-3.tmp")
    from ernie.finetune.outdir import complete_checkpoints

    assert complete_checkpoints(str(out)) == []
    run_main(argv(files, out, steps=3))  # starts over (nothing to resume, no final model), cleans the temporary
    assert status(out) == "complete" and not os.path.exists(out / ".checkpoint-3.tmp")


# ---------------------------------------------------------------------------------- 4. convert_checkpoint.py
def test_convert_refuses_output_equal_to_or_inside_input(files, finished, tmp_path, capsys):
    from ernie import convert

    model = copy_of(finished, tmp_path)
    link = tmp_path / "link"
    os.symlink(model, link)
    before = snapshot(model)
    for output in (model, str(model) + "/", model / "hf", link, link / "sub"):
        with pytest.raises(SystemExit) as exc:
            convert.main(["--input", str(model), "--output", str(output), "--to", "hf", "--overwrite"])
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip()
        assert "--input" in err and "choose another --output" in err and len(err.splitlines()) == 1, err
    assert snapshot(model) == before  # before the fix: turned into an HF folder in place
    convert.main(["--input", str(link), "--output", str(tmp_path / "hf"), "--to", "hf"])  # elsewhere: fine
    assert os.path.isfile(tmp_path / "hf" / "model.safetensors")


# ------------------------------------------------------------------------------------------ fault injection
@pytest.mark.slow
def test_killed_at_random_points_nothing_is_lost_and_the_rerun_equals_the_uninterrupted_run(
    files, finished, fault_log, tmp_path
):
    """An --overwrite_output_dir run (seed 2) over a complete run (seed 1), SIGKILLed at 12 points: 10 fault points
    (4 fixed: inside a checkpoint's write, between a checkpoint's rename and its rotation, in the middle of the
    final model's renames, before run_status.json; 6 drawn at random) and 2 after a random delay. After each kill a
    complete final model is there -- the previous one, or the new one (in ``.final_model`` when the kill cut its
    renames short, which the rerun finishes); the rerun (same flags + --resume_from_checkpoint auto) ends with the
    uninterrupted run's weights bit for bit, its dev figures and its checkpoints."""
    from ernie.finetune.outdir import FINAL_STAGE

    base = tmp_path / "base"
    shutil.copytree(finished[0], base)
    old = weights(base)
    reference = tmp_path / "reference"
    shutil.copytree(base, reference)
    ref_results = run_main(argv(files, reference, "--overwrite_output_dir", seed=2))
    new = weights(reference)
    assert not same_weights(new, old)
    ref_checkpoints = sorted(n for n in os.listdir(reference) if n.startswith("checkpoint-"))

    rng = random.Random(20)
    fixed = [
        point(fault_log, "checkpoint-9: model written"),
        point(fault_log, "checkpoint-12: renamed"),
        point(fault_log, "publish model_state.pdparams"),
        point(fault_log, "all_results.json"),
    ]
    drawn = rng.sample(sorted(set(range(1, len(fault_log) + 1)) - set(fixed)), 6)
    trials = [("point", n) for n in fixed + drawn] + [("delay", rng.uniform(1.0, 4.0)) for _ in range(2)]
    killed = 0
    for i, (kind, when) in enumerate(trials):
        out = tmp_path / f"trial{i}"
        shutil.copytree(base, out)
        args = argv(files, out, "--overwrite_output_dir", seed=2)
        if kind == "point":
            proc = run_process(args, {"ERNIE_FAULT_KILL_AT": str(when)})
            assert proc.returncode == -9, (when, fault_log[when - 1], proc.stderr[-2000:])
            killed += 1
        else:
            proc = subprocess.Popen(
                [sys.executable, os.path.join(ROOT, "scripts", "run_seq_cls.py"), *args],
                env=child_env(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(when)
            proc.kill()
            killed += proc.wait() == -9
        stage = out / FINAL_STAGE
        where = f"trial {i}: {kind} {when} ({fault_log[when - 1] if kind == 'point' else ''})"
        if os.path.isdir(stage):  # the new model was complete; its renames were cut short
            found = weights(stage if os.path.isfile(stage / "model_state.pdparams") else out)
            assert same_weights(found, new), where
        else:
            found = weights(out)
            assert same_weights(found, old) or same_weights(found, new), where
        results = run_main(args + ["--resume_from_checkpoint", "auto"])
        assert same_weights(weights(out), new), where
        assert results["eval"] == ref_results["eval"], where
        assert status(out) == "complete", where
        assert sorted(n for n in os.listdir(out) if n.startswith("checkpoint-")) == ref_checkpoints, where
        assert [n for n in os.listdir(out) if n.startswith(".")] == [".run.lock"], (where, os.listdir(out))
    assert killed >= 10
