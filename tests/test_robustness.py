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


# ------------------------------------------------------------------------------------------ unreadable checkpoints


@pytest.fixture(scope="module")
def trained(demo, tmp_path_factory):
    """An output_dir with model_2, model_4 and model_last (step 4) of a 1-rank run."""
    out = str(tmp_path_factory.mktemp("trained") / "out")
    run([sys.executable, SCRIPT] + flags(demo, out, max_steps=4, save_steps=2, checkpoint_steps=2, eval_freq=100,
                                         eval_iters=0, test_iters=0), REPO)
    return out


def _corrupt(path: str, how: str) -> None:
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write({"truncated": data[:len(data) // 2], "empty": b"", "garbage": os.urandom(777)}[how])


def _main_error(argv, capsys) -> str:
    from ernie.training import trainer

    with pytest.raises(SystemExit) as exc:
        trainer.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    errors = [line for line in err.splitlines() if not line.startswith("warning: ")]
    assert "Traceback" not in err and len(errors) == 1 and errors[0].startswith("error: "), err
    return errors[0]


@pytest.mark.parametrize("name, how", [("model_state.pdparams", "truncated"), ("model_state.pdparams", "empty"),
                                       ("model_state.pdparams", "garbage"), ("rng_state.pkl", "truncated"),
                                       ("model_state.pdopt", "garbage"), ("trainer_state.json", "garbage"),
                                       ("args.yaml", "empty")])
def test_unreadable_model_last_names_the_file_and_a_checkpoint_to_resume_from(demo, trained, tmp_path, capsys,
                                                                              name, how):
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


# --------------------------------------------------------------------------------- token ids beyond the vocabulary


def _corpus(prefix: str, docs: list[list[int]]) -> None:
    from data_tools.indexed_dataset import make_builder

    with make_builder(prefix) as b:
        for doc in docs:
            b.add_item(doc[: len(doc) // 2])
            b.add_item(doc[len(doc) // 2:])
            b.end_document()
        b.finalize()


@pytest.mark.parametrize("dense", [False, True])
def test_token_ids_beyond_the_vocabulary_are_refused_when_the_corpus_opens(tmp_path, tokenizer, dense):
    from data_tools.ernie_dataset import ErnieDatasetConfig, build_train_valid_test_datasets

    vocab = tokenizer.vocab_size
    docs = [[10 + (d * 7 + i) % 500 for i in range(40)] for d in range(50)]
    if dense:
        docs = [[t + vocab for t in doc] for doc in docs]
    else:
        docs[31][5:105] = [vocab + 3] * 100
    prefix = str(tmp_path / "c")
    _corpus(prefix, docs)
    with pytest.raises(UserError, match=rf"c_ids.npy: token id {vocab + (10 if dense else 3)} \(document "
                                        rf"{0 if dense else 31}, .* outside the vocabulary of {vocab} tokens"):
        build_train_valid_test_datasets(prefix, tokenizer, ErnieDatasetConfig(max_seq_len=32), (10, 0, 0))
    _corpus(str(tmp_path / "ok"), [[10 + i for i in range(40)]] * 5)
    from data_tools.indexed_dataset import IndexedDataset

    IndexedDataset(str(tmp_path / "ok")).check_token_ids(vocab)  # in range: no error


# ------------------------------------------------------------------------------------------------ blend weights


@pytest.mark.parametrize("weight", ["nan", "inf", "-inf", "0", "-1"])
def test_bad_blend_weight_is_one_line(tmp_path, weight):
    from data_tools.blending import parse_input_dir

    _corpus(str(tmp_path / "news"), [[10 + i for i in range(40)]] * 5)
    _corpus(str(tmp_path / "reviews"), [[10 + i for i in range(40)]] * 5)
    with pytest.raises(UserError, match=rf"--input_dir: the weight of {tmp_path}/news is .*positive finite"):
        parse_input_dir(f"{weight} {tmp_path}/news 1 {tmp_path}/reviews")
    prefixes, weights = parse_input_dir(f"3 {tmp_path}/news 1 {tmp_path}/reviews")
    assert weights.tolist() == [0.75, 0.25]


# -------------------------------------------------------------------------------------- garbled sample-index cache


def test_garbled_sample_index_cache_of_the_right_size_is_rebuilt(tmp_path, tokenizer, caplog):
    import glob

    import numpy as np

    from data_tools.ernie_dataset import ErnieDatasetConfig, build_train_valid_test_datasets

    prefix = str(tmp_path / "c")
    _corpus(prefix, [[10 + (d * 7 + i) % 500 for i in range(40)] for d in range(50)])
    config = ErnieDatasetConfig(max_seq_len=32, split="1,0,0")
    train, _, _ = build_train_valid_test_datasets(prefix, tokenizer, config, (100, 0, 0))
    expected = [train[i]["input_ids"] for i in range(len(train))]
    (cache,) = glob.glob(str(tmp_path / "*indexmap*.npy"))
    size = os.path.getsize(cache)
    header = size - np.load(cache).nbytes
    with open(cache, "r+b") as f:  # same size, same header, garbage rows
        f.seek(header)
        f.write(np.random.default_rng(0).integers(0, 2**32, (size - header) // 4, dtype=np.uint32).tobytes())
    with caplog.at_level("WARNING"):
        train, _, _ = build_train_valid_test_datasets(prefix, tokenizer, config, (100, 0, 0))
    assert f"{cache}: garbled sample-index cache" in caplog.text
    assert all((train[i]["input_ids"] == x).all() for i, x in enumerate(expected))


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
    jsonl.write_text(json.dumps({"text": "今天天气很好。我们去公园散步。"}, ensure_ascii=False) + "\n", encoding="utf-8")
    out = str(blocker / "out")
    cases = {
        "trans_to_json.py": ["--input_path", str(txt), "--output_path", out],
        "build_vocab.py": ["--input_path", str(txt), "--output_dir", out, "--vocab_size", "100"],
        "words_segmentation.py": ["--input_path", str(txt / "a.txt"), "--output_path", out, "--cn_seg_func", "char"],
        "create_pretraining_data.py": ["--model_name", demo["vocab"], "--input_path", str(jsonl), "--output_prefix",
                                       out, "--cn_seg_func", "char", "--split_sentences", "--chinese",
                                       "--cn_whole_word_segment"],
        "merge.py": ["--input", f"{demo['data']}/pd", f"{demo['data']}/pd", "--output_prefix", out],
        "run_pretrain.py": flags(demo, out, max_steps=2),
    }
    for script, args in cases.items():
        proc = _cli(script, args)
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, (script, proc.stderr[-2000:])
        assert len(errors) == 1 and "cannot write" in errors[0] and str(blocker) in errors[0], (script, errors)


def test_unwritable_output_helpers(tmp_path, monkeypatch):
    """The shared helpers every writer goes through (including export_model's atomic_dir): read-only file systems
    and directories this user may not write are named as such."""
    from ernie.utils import atomic_dir, atomic_write, check_output_path

    blocker = tmp_path / "f"
    blocker.write_text("")
    for helper in (atomic_dir, atomic_write):
        with pytest.raises(UserError, match=f"cannot write {blocker}/x/y"):
            with helper(str(blocker / "x" / "y")):
                pass
    ro = tmp_path / "ro"
    ro.mkdir()

    class ReadOnly:
        f_flag = os.ST_RDONLY

    monkeypatch.setattr(os, "access", lambda p, mode: not str(p).startswith(str(ro)))
    monkeypatch.setattr(os, "statvfs", lambda p: ReadOnly())
    with pytest.raises(UserError, match=f"cannot write {ro}/sub/out.txt: {ro} is on a read-only file system"):
        check_output_path(str(ro / "sub" / "out.txt"))


def test_words_segmentation_refuses_empty_input_like_the_other_entry_points(tmp_path):
    for name, content in (("empty.txt", ""), ("blank.txt", "\n \n\n")):
        (tmp_path / name).write_text(content)
        for script, args in (("words_segmentation.py", ["--output_path", str(tmp_path / f"{name}.seg"),
                                                        "--cn_seg_func", "char"]),
                             ("trans_to_json.py", ["--output_path", str(tmp_path / f"{name}.jsonl")])):
            proc = _cli(script, ["--input_path", str(tmp_path / name)] + args)
            assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith("error: --input_path"), \
                (script, proc.stderr)
        assert not os.path.exists(tmp_path / f"{name}.seg")


def test_seq_cls_infer_max_length_beyond_the_model_positions_is_one_line(tmp_path, tokenizer):
    import paddle

    from ernie.configuration import ErnieConfig
    from ernie.deploy import export, infer
    from ernie.modeling import ErnieForSequenceClassification

    paddle.seed(1)
    config = ErnieConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64, num_labels=2)
    out = export.export_model(ErnieForSequenceClassification(config), tokenizer, ["neg", "pos"], str(tmp_path / "e"))
    with pytest.raises(UserError, match=r"--max_length 65 exceeds the model's 64 positions"):
        infer.main.__wrapped__(["--model_dir", out, "--max_length", "65"])
    assert len(infer.main.__wrapped__(["--model_dir", out, "--max_length", "64"])) == 3
