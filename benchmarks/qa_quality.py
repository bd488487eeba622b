"""Learning quality of run_qa.py on the built-in cloze QA set: random init vs a small pretrained model.

Protocol (the same for both sides): the pretraining corpus is People's Daily 1998-01 *without* the articles of the QA
dev and test splits (``data_tools.corpus.peoples_daily_article_splits``), gold-word token files, vocabulary built from
that text only; ernie-mini-cpu (2 layers, hidden 128) pretrained with configs/pretrain/ernie-mini-cpu-demo.yaml in one
process (``--max_steps`` below). Both sides fine-tune with identical, fixed flags (chosen before looking at test;
nothing is tuned) on the first ``--train_samples`` training questions for each seed; dev and test are scored in full
with CMRC 2018 EM/F1. Prints a table of mean (and per-seed) figures.

    python benchmarks/qa_quality.py --work_dir output/qa_quality [--pretrain_steps 800] [--seeds 1 2]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from ernie.utils import ArgumentParser, cli_main  # noqa: E402


def sh(args: list[str], log: str) -> None:
    print("$ " + " ".join(args), flush=True)
    with open(log, "a", encoding="utf-8") as f:
        if subprocess.call(args, stdout=f, stderr=subprocess.STDOUT, cwd=REPO) != 0:
            raise SystemExit(f"failed: see {log}")


def prepare(w: str, steps: int) -> str:
    """Vocab + token files of the train-split articles, then pretraining -> the model_last dir."""
    from data_tools.corpus import peoples_daily_article_splits as article_splits
    from data_tools.corpus import peoples_daily_text
    from data_tools.vocab import VocabConfig, build_vocab
    from ernie.tokenizer import ErnieTokenizer
    from tests.fixtures import write_peoples_daily_token_files

    keep = [i for name, span in article_splits() if name == "train" for i in span]
    if not os.path.isfile(f"{w}/vocab/vocab.txt"):
        os.makedirs(w, exist_ok=True)
        text = peoples_daily_text()
        with open(f"{w}/train_articles.txt", "w", encoding="utf-8") as f:
            f.write("".join(text[i] + "\n" for i in keep))
        build_vocab(f"{w}/train_articles.txt", f"{w}/vocab", VocabConfig(vocab_size=18000))
    if not os.path.isdir(f"{w}/data"):
        os.makedirs(f"{w}/data")
        write_peoples_daily_token_files(f"{w}/data/pd", ErnieTokenizer.from_pretrained(f"{w}/vocab"), indices=keep)
    last = f"{w}/pretrain/model_last"
    if not os.path.isfile(f"{w}/pretrain/model_{steps}/model_state.pdparams"):
        sh(
            [
                sys.executable,
                "scripts/run_pretrain.py",
                "--config",
                "configs/pretrain/ernie-mini-cpu-demo.yaml",
                "--tokenizer_name_or_path",
                f"{w}/vocab",
                "--input_dir",
                f"{w}/data",
                "--output_dir",
                f"{w}/pretrain",
                "--max_steps",
                str(steps),
                "--micro_batch_size",
                "16",
                "--global_batch_size",
                "16",
                "--max_seq_len",
                "128",
                "--save_steps",
                str(steps),
                "--checkpoint_steps",
                "200",
                "--eval_freq",
                "200",
                "--split",
                "90,8,2",
            ],
            f"{w}/pretrain.log",
        )
    return f"{w}/pretrain/model_{steps}" if os.path.isdir(f"{w}/pretrain/model_{steps}") else last


def finetune(w: str, name: str, model: str, seed: int, train_samples: int) -> dict:
    out = f"{w}/qa_{name}_seed{seed}"
    if os.path.isfile(f"{out}/all_results.json"):
        with open(f"{out}/all_results.json", encoding="utf-8") as f:
            return json.load(f)
    sh(
        [
            sys.executable,
            "scripts/run_qa.py",
            "--dataset",
            "peoples_daily_qa",
            "--model_name_or_path",
            model,
            "--tokenizer_name_or_path",
            f"{w}/vocab",
            "--output_dir",
            out,
            "--overwrite_output_dir",
            "--max_train_samples",
            str(train_samples),
            "--max_seq_length",
            "192",
            "--doc_stride",
            "128",
            "--max_query_length",
            "64",
            "--batch_size",
            "16",
            "--num_train_epochs",
            "2",
            "--learning_rate",
            "5e-4",
            "--warmup_ratio",
            "0.1",
            "--logging_steps",
            "50",
            "--seed",
            str(seed),
            "--device",
            "cpu",
            "--do_train",
            "--do_eval",
            "--do_predict",
        ],
        f"{out}.log",
    )
    with open(f"{out}/all_results.json", encoding="utf-8") as f:
        return json.load(f)


@cli_main
def main(argv: list[str] | None = None) -> None:
    p = ArgumentParser(description="run_qa.py on peoples_daily_qa: random init vs pretrained")
    p.add_argument("--work_dir", default="output/qa_quality")
    p.add_argument("--pretrain_steps", type=int, default=800)
    p.add_argument("--train_samples", type=int, default=1000)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    p.add_argument(
        "--results", default=None, help="where to record the output (default docs/results/qa_quality.md; '' = nowhere)"
    )
    a = p.parse_args(argv)
    from bench_report import default_path, recorded  # benchmarks/ is on sys.path

    with recorded("qa_quality", default_path("qa_quality") if a.results is None else a.results):
        w = os.path.abspath(a.work_dir)
        pretrained = prepare(w, a.pretrain_steps)
        rows = {}
        for seed in a.seeds:
            for name, model in (("random", "ernie-mini-cpu"), ("pretrained", pretrained)):
                r = finetune(w, name, model, seed, a.train_samples)
                rows.setdefault(name, []).append(
                    (r["eval"]["exact_match"], r["eval"]["f1"], r["test"]["exact_match"], r["test"]["f1"])
                )
        print(
            f"\npeoples_daily_qa, {a.train_samples} training questions, seeds {a.seeds}; pretraining "
            f"{a.pretrain_steps} steps (dev/test articles excluded)"
        )
        print(f"{'init':<11} {'dev EM':>7} {'dev F1':>7} {'test EM':>8} {'test F1':>8}   per seed (test EM/F1)")
        for name, vals in rows.items():
            m = np.mean(vals, axis=0)
            seeds = ", ".join(f"{v[2]:.1f}/{v[3]:.1f}" for v in vals)
            print(f"{name:<11} {m[0]:7.2f} {m[1]:7.2f} {m[2]:8.2f} {m[3]:8.2f}   {seeds}")


if __name__ == "__main__":
    main()
