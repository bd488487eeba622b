"""benchmarks/bench_masking.py (issue 22's ablation): the settings' flags, the pretraining commands it would run
(one process, the config's global batch as micro batch), and a table written from whatever has finished, with the
no-context cloze floor as a row that is never fine-tuned."""

from __future__ import annotations

import importlib.util
import json
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_masking", os.path.join(REPO, "benchmarks", "bench_masking.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_setting_flags(bench):
    assert bench.setting_flags("basic", 2500) == ["--masking", "basic"]
    assert bench.setting_flags("staged", 2500) == ["--masking_schedule", "basic:1250,phrase:625,entity"]
    assert bench.setting_flags("staged", 10000) == ["--masking_schedule", "basic:5000,phrase:2500,entity"]
    assert bench.setting_flags("staged_basic_heavy", 10000) == ["--masking_schedule", "basic:7000,phrase:1500,entity"]
    assert "staged_basic_heavy = basic 70 % / phrase 15 % / entity the rest" in bench.staged_description()
    assert bench.setting_flags("knowledge_basic_heavy", 10) == [
        "--masking",
        "knowledge",
        "--knowledge_mix",
        "0.8,0.1,0.1",
    ]


def test_report_from_finished_runs_with_the_floor_row(bench, tmp_path):
    """A finished run's fine-tuning, cloze and valid figures fill its row; missing cells are dashes; the floor row
    has cloze figures only."""
    out = tmp_path / "work"
    run = out / "pretrain" / "basic@1x"
    run.mkdir(parents=True)
    (run / "train_log.jsonl").write_text(
        json.dumps({"event": "valid", "step": 2500, "lm_loss": 5.0, "basic_lm_loss": 5.5, "basic_lm_acc": 0.2}) + "\n"
    )
    for task, protocol in bench.demo.PROTOCOLS.items():
        for seed, x in ((1, 0.5), (2, 0.7)):
            d = out / "finetune" / "basic@1x" / f"{task}_seed{seed}"
            d.mkdir(parents=True)
            (d / "all_results.json").write_text(json.dumps({"test": {protocol.metric: x}}))
    (out / "cloze").mkdir()
    fig = {"items": 3, "chars": 3, "char_top1": 0.25, "char_top5": 0.5, "exact_match": 0.125}
    for name in ("basic@1x", "no-context"):
        (out / "cloze" / f"{name}.json").write_text(json.dumps({k: fig for k in ("char", "entity", "word")}))
    md = tmp_path / "table.md"
    rows = bench.main(
        ["--report_only", "--work_dir", str(out), "--budgets", "1", "--seeds", "1", "2", "--output", str(md)]
    )
    text = md.read_text(encoding="utf-8")
    assert rows["basic@1x"]["valid"] == {"step": 2500, "basic_lm_loss": 5.5, "basic_lm_acc": 0.2}
    line = next(x for x in text.splitlines() if x.startswith("| basic@1x |"))
    cells = "| 25.0 / 50.0 | 25.0 / 50.0 / 12.5 | 25.0 / 50.0 / 12.5 | 5.500 / 20.0 (step 2500) |"
    assert "60.0 ± 14.1" in line and cells in line
    assert next(x for x in text.splitlines() if x.startswith("| staged@1x |")).count("—") == 6
    floor = next(x for x in text.splitlines() if x.startswith("| no-context |"))
    assert floor.count("—") == 3 and "| 25.0 / 50.0 / 12.5 |" in floor  # no fine-tuning, no valid loss
    assert "commit" in text and (out / "results.json").exists()
