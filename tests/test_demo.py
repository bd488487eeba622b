"""The demo's fine-tuning protocol: one command per task, identical for every init apart from the weights, and the
runner that skips finished jobs and collects their figures."""

from __future__ import annotations

import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # examples/ is outside the installed library: import it from the checkout
from examples import demo  # noqa: E402


def test_protocol_is_the_same_for_both_inits():
    inits = demo.inits("W")  # the random init is built from the pretrained checkpoint's own config
    assert inits == {"pretrained": "W/pretrain/model_last", "random_init": "W/pretrain/model_last/config.json"}
    for protocol in demo.PROTOCOLS.values():
        pre = protocol.command(inits["pretrained"], "W/vocab", "OUT/a", seed=1)
        rnd = protocol.command(inits["random_init"], "W/vocab", "OUT/a", seed=1)
        diff = [(a, b) for a, b in zip(pre, rnd) if a != b]
        assert len(pre) == len(rnd) and diff == [(inits["pretrained"], inits["random_init"])]
        flags = {pre[i]: pre[i + 1] for i in range(len(pre) - 1)}
        assert flags["--hidden_dropout_prob"] == str(protocol.dropout)  # explicit: checkpoints carry their own
        assert flags["--max_eval_samples"] == str(protocol.dev_samples) and "--max_predict_samples" not in pre


def test_finetune_all_skips_finished_jobs_and_returns_their_results(tmp_path, capsys):
    protocol = demo.PROTOCOLS["ner"]
    jobs = []
    for seed in (1, 2):
        out = tmp_path / "ft" / f"random_init_seed{seed}"
        os.makedirs(out)
        (out / "all_results.json").write_text(json.dumps({"eval": {"f1": 0.1 * seed}, "test": {"f1": 0.2 * seed}}))
        jobs.append(demo.FinetuneJob(protocol, "ernie-mini-cpu", str(tmp_path / "vocab"), str(out), seed))
    results = demo.finetune_all(jobs, parallel=2)
    assert [r["test"]["f1"] for r in results] == [0.2, 0.4]
    assert "test f1 0.4000" in capsys.readouterr().out


def test_results_record_names_the_machine_and_commit(tmp_path, capsys):
    """docs/results/demo.md is written by the demo itself: dated, the command, the machine and commit, the table."""
    record = demo.start_record()
    path = tmp_path / "demo.md"
    demo.write_record(str(path), record, "| result | value |\n|---|---|\n| x | **0.5** |\n", ["--seeds", "1"])
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# demo\n") and "`bash scripts/demo.sh --seeds 1`" in text and record["start"] in text
    assert "- CPU: " in text and "- commit " in text and text.endswith("| x | **0.5** |\n")


def test_results_table_puts_the_no_context_floor_beside_the_cloze(tmp_path, capsys):
    """The cloze rows show the model's figures and, in brackets, those of a guess that ignores the sentence."""
    (tmp_path / "pretrain").mkdir()
    (tmp_path / "pretrain" / "train_log.jsonl").write_text(
        '{"event": "valid", "step": 0, "lm_loss": 9.0}\n{"event": "valid", "step": 9, "lm_loss": 5.0}\n'
    )
    f = {"items": 3, "chars": 3, "char_top1": 0.1, "char_top5": 0.2, "exact_match": 0.0}
    floor = {"items": 3, "chars": 3, "char_top1": 0.02, "char_top5": 0.08, "exact_match": 0.09}
    scores = {task: {"pretrained": [0.5], "random_init": [0.4]} for task in demo.PROTOCOLS}
    table = demo.results_table(
        str(tmp_path), scores, {}, (1,), {"char": f, "entity": f, "no-context": {"char": floor, "entity": floor}}
    )
    assert "| 10.0 % / 20.0 % (2.0 % / 8.0 %) |" in table
    assert "| 10.0 % / 20.0 % / 0.0 % (2.0 % / 8.0 % / 9.0 %) |" in table
    assert "9.000 -> 5.000" in table and "**+10.0**" in table


def test_a_work_dir_pretrained_with_another_recipe_is_named(tmp_path):
    """A rerun that reuses a finished pretraining of an earlier demo version says which config settings that model
    was not trained with, in the log and in the results record (the demo's own --max_steps is not one of them)."""
    import yaml

    with open(os.path.join(REPO, demo.PRETRAIN_CONFIG), encoding="utf-8") as f:
        args = yaml.safe_load(f)
    args["training"]["max_steps"] = 10000  # the demo's flag
    last = tmp_path / "pretrain" / "model_last"
    last.mkdir(parents=True)
    (last / "args.yaml").write_text(yaml.safe_dump(args))
    assert demo.config_differences(demo.pretrained_args(str(tmp_path))) == []
    assert "position embeddings from sinusoidal)" in demo.pretraining_summary(str(tmp_path))
    del args["model"]["position_embedding_init"]  # written before the setting existed
    args["optimizer"]["max_lr"] = 5e-4
    (last / "args.yaml").write_text(yaml.safe_dump(args))
    differences = demo.config_differences(demo.pretrained_args(str(tmp_path)))
    assert differences == [
        "model.position_embedding_init (not set) (config: sinusoidal)",
        "optimizer.max_lr 0.0005 (config: 0.001)",
    ]
    assert "position embeddings from normal; not the config's: model.position_embedding_init" in (
        demo.pretraining_summary(str(tmp_path))
    )
    assert demo.pretrained_args(str(tmp_path / "nothing_here")) is None and demo.config_differences(None) == []
