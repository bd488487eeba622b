"""Long runs stay healthy and bad inputs get one line (issue 14): evaluation does not leak DataLoader workers, a
rank killed mid-step is named, unreadable checkpoints / out-of-vocabulary token ids / bad blend weights / garbled
sample-index caches / unwritable outputs / too-long --max_length each end with one line naming the culprit."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from ernie.utils import UserError
from test_pretrain import REPO, SCRIPT, build_demo, flags, run, run_env

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


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return build_demo(str(tmp_path_factory.mktemp("robust_demo")))


@pytest.mark.slow
def test_frequent_evaluation_keeps_process_count_and_memory_flat(demo, tmp_path):
    """Each evaluation used to leave its DataLoader worker behind (2 -> 7 processes per rank in 300 steps)."""
    tracker, samples = tmp_path / "tracker.py", tmp_path / "samples.json"
    tracker.write_text(TRACKER)
    run([sys.executable, str(tracker), str(samples)]
        + flags(demo, str(tmp_path / "out"), max_steps=60, eval_freq=2, checkpoint_steps=20, num_workers=1), REPO)
    s = json.loads(samples.read_text())
    assert len(s) == 32  # step 0, every 2 steps, the test set at the end
    counts = [x["children"] for x in s]
    # the training loader's one worker; the evaluation's own worker has exited by the time evaluate returns
    assert max(counts) == min(counts) == 1, counts
    # a leaked worker is >= 30 MB of PSS each: 30 of them would be > 900 MB
    assert s[-1]["pss"] - s[1]["pss"] < 100e6, [round(x["pss"] / 1e6) for x in s]


KILLED_MID_STEP_TIMEOUT = 240


@pytest.mark.slow
def test_rank_killed_mid_step_is_named(demo, tmp_path):
    out = str(tmp_path / "out")
    launch = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
              "--log_dir", str(tmp_path / "log"), SCRIPT]
    proc = subprocess.Popen(launch + flags(demo, out, max_steps=100_000, checkpoint_steps=100_000,
                                           save_steps=100_000, eval_freq=100_000),
                            cwd=REPO, env=run_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        log = os.path.join(out, "train_log.jsonl")
        deadline = time.time() + KILLED_MID_STEP_TIMEOUT
        while not (os.path.exists(log) and sum(1 for _ in open(log)) > 20):  # well into training
            assert proc.poll() is None and time.time() < deadline, "the launch did not start training"
            time.sleep(0.2)
        rank1 = [p for p in psutil.Process(proc.pid).children()
                 if p.environ().get("PADDLE_TRAINER_ID") == "1"]
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
