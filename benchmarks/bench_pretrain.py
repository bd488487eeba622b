"""Pretraining throughput on CPU: our whole training run (scripts/run_pretrain.py) beside the same loop with
PaddleNLP's ErnieForPretraining + ErniePretrainingCriterion swapped in (the baseline), same config, data, threads.

    python benchmarks/bench_pretrain.py [--model ernie-mini-cpu] [--steps 100] [--threads 2] [--repeats 2]

Each run is a fresh process (``OMP_NUM_THREADS`` fixed); steps/s is measured over the logging windows after the
first (warm-up) one, from the run's train_log.jsonl, and shown for the early steps (6-10) beside the last 20: a run
slows as its values go subnormal unless denormals are flushed (the toolkit's default; the stock side runs without
any of the toolkit's CPU settings, the flush included: docs/cpu.md). Prints absolute numbers and the ours / baseline
ratio. Needs paddlenlp (the compat extra) for the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # tests.fixtures (the pretraining data made from the built-in corpus)

# The baseline driver: the trainer of this repo with PaddleNLP's model and criterion (PaddleNLP's own names and
# layout: its ErnieModel builds the attention bias from the 2-D mask, its criterion returns (lm, sop)).
# With BENCH_STOCK_MKL=1 it also runs without the trainer's process-level CPU settings
# (ernie.utils.cpu_tuning.tune_cpu_math: denormals flushed, MKL's AVX2 path on AMD CPUs, malloc thresholds), as
# PaddleNLP's run_pretrain.py does; without it it gets them.
BASELINE_DRIVER = r"""
import os
import sys
import paddle
from paddlenlp.transformers import ErnieConfig as NLPConfig, ErnieForPretraining as NLPModel
from paddlenlp.transformers import ErniePretrainingCriterion as NLPCriterion
if os.environ.get("BENCH_STOCK_MKL"):  # trainer.main then skips tune_cpu_math
    os.environ["ERNIE_NO_CPU_TUNING"] = "1"
from ernie.configuration import ErnieConfig
from ernie.training import trainer

def build_model(args, tokenizer):
    m = args.model
    cfg = ErnieConfig.from_pretrained(m.model_name_or_path, hidden_dropout_prob=m.hidden_dropout_prob,
                                      attention_probs_dropout_prob=m.attention_probs_dropout_prob).to_dict()
    keys = ("vocab_size hidden_size num_hidden_layers num_attention_heads intermediate_size hidden_act "
            "hidden_dropout_prob attention_probs_dropout_prob max_position_embeddings type_vocab_size "
            "initializer_range pad_token_id").split()
    return NLPModel(NLPConfig(**{k: cfg[k] for k in keys}))

class Criterion(paddle.nn.Layer):
    def __init__(self, with_nsp_loss=True):
        super().__init__()
        self.inner = NLPCriterion(with_nsp_loss)
    def forward(self, scores, sop_scores, labels, sop_labels):
        lm, sop = self.inner(scores, sop_scores, labels.reshape([-1, 1]), sop_labels.reshape([-1, 1]))
        return lm + sop, lm, sop

trainer.build_model = build_model
trainer.ErniePretrainingCriterion = Criterion
trainer.main(sys.argv[1:])
"""


def build_corpus(out_dir: str, num_paragraphs: int) -> tuple[str, str]:
    """vocab dir + npy token files of the first People's Daily paragraphs (whole words as char + ##chars)."""
    from tests.fixtures import write_peoples_daily_pretraining_data

    vocab_dir, data_dir = write_peoples_daily_pretraining_data(out_dir, num_paragraphs)
    return vocab_dir, data_dir


def run(
    name: str,
    cmd: list[str],
    threads: int,
    output_dir: str,
    log_every: int,
    tokens_per_step: int,
    seqs_per_step: int,
    extra_env: dict[str, str],
) -> dict[str, float]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), **extra_env}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{name} failed:\n{proc.stderr[-3000:]}")
    with open(os.path.join(output_dir, "train_log.jsonl"), encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    windows = [r for r in records if r["event"] == "train" and r["step"] % log_every == 0][1:]  # skip warm-up
    steps_per_s = log_every * len(windows) / sum(log_every / r["steps_per_second"] for r in windows)
    last = windows[-max(1, 20 // log_every) :]
    return {
        "early_steps_per_s": windows[0]["steps_per_second"],
        "last_steps_per_s": len(last) / sum(1 / r["steps_per_second"] for r in last),
        "steps_per_s": steps_per_s,
        "seqs_per_s": steps_per_s * seqs_per_step,
        "tokens_per_s": steps_per_s * tokens_per_step,
        "loss": windows[-1]["loss"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="ernie-mini-cpu", help="a config in configs/models (vocab_size is reset)")
    p.add_argument("--steps", type=int, default=100, help="steps of every run (the last 20 are the steady state)")
    p.add_argument("--micro_batch_size", type=int, default=16)
    p.add_argument("--max_seq_len", type=int, default=128)
    p.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of every run")
    p.add_argument("--repeats", type=int, default=2, help="alternating runs per side; the best one counts")
    p.add_argument(
        "--results",
        default=None,
        help="where to record the output (default docs/results/bench_pretrain.md; '' = nowhere)",
    )
    a = p.parse_args()
    from bench_report import default_path, recorded  # benchmarks/ is on sys.path

    with recorded("bench_pretrain", default_path("bench_pretrain") if a.results is None else a.results):
        log_every = 5

        from ernie.configuration import ErnieConfig

        with tempfile.TemporaryDirectory() as tmp:
            vocab_dir, data_dir = build_corpus(tmp, 3000)
            vocab_size = sum(1 for _ in open(os.path.join(vocab_dir, "vocab.txt"), encoding="utf-8"))
            model_json = os.path.join(tmp, "model.json")
            cfg = ErnieConfig.from_pretrained(a.model, vocab_size=vocab_size)
            with open(model_json, "w") as f:
                json.dump(cfg.to_dict(), f)
            driver = os.path.join(tmp, "baseline_driver.py")
            with open(driver, "w") as f:
                f.write(BASELINE_DRIVER)

            def flags(out: str) -> list[str]:
                return [
                    "--model_name_or_path",
                    model_json,
                    "--tokenizer_name_or_path",
                    vocab_dir,
                    "--input_dir",
                    data_dir,
                    "--output_dir",
                    out,
                    "--device",
                    "cpu",
                    "--max_seq_len",
                    str(a.max_seq_len),
                    "--micro_batch_size",
                    str(a.micro_batch_size),
                    "--max_steps",
                    str(a.steps),
                    "--checkpoint_steps",
                    str(10 * a.steps),
                    "--save_steps",
                    str(10 * a.steps),
                    "--eval_freq",
                    str(10 * a.steps),
                    "--eval_iters",
                    "0",
                    "--test_iters",
                    "0",
                    "--logging_freq",
                    str(log_every),
                    "--num_workers",
                    "1",
                    "--max_lr",
                    "1e-3",
                ]

            sides = {
                "stock": ("baseline: PaddleNLP, stock (no flush)", driver, {"BENCH_STOCK_MKL": "1"}),
                "tuned": ("baseline: PaddleNLP, toolkit CPU settings", driver, {}),
                "ours": ("ours: ernie.modeling", os.path.join(REPO, "scripts", "run_pretrain.py"), {}),
            }
            results: dict[str, list[dict]] = {k: [] for k in sides}
            for r in range(a.repeats):
                for key, (_, script, extra_env) in sides.items():
                    out = os.path.join(tmp, f"{key}{r}")
                    results[key].append(
                        run(
                            key,
                            [sys.executable, script] + flags(out),
                            a.threads,
                            out,
                            log_every,
                            a.micro_batch_size * a.max_seq_len,
                            a.micro_batch_size,
                            extra_env,
                        )
                    )
            best = {k: max(v, key=lambda x: x["steps_per_s"]) for k, v in results.items()}

        print(
            f"pretraining {a.model} (vocab {vocab_size}), seq {a.max_seq_len}, micro batch {a.micro_batch_size}, "
            f"{a.steps} steps, OMP_NUM_THREADS={a.threads}, 1 process, fp32 CPU; best of {a.repeats}"
        )
        print(f"{'':40}{'steps/s':>9}{'seqs/s':>9}{'tokens/s':>10}{'last loss':>11}{'steps 6-10':>12}{'last 20':>9}")
        for key, (label, _, _) in sides.items():
            b = best[key]
            print(
                f"{label:40}{b['steps_per_s']:9.2f}{b['seqs_per_s']:9.1f}{b['tokens_per_s']:10.0f}{b['loss']:11.3f}"
                f"{b['early_steps_per_s']:12.2f}{b['last_steps_per_s']:9.2f}"
            )
        for key in ("stock", "tuned"):
            print(
                f"ratio ours / {sides[key][0]}: steps/s x{best['ours']['steps_per_s'] / best[key]['steps_per_s']:.2f}, "
                f"tokens/s x{best['ours']['tokens_per_s'] / best[key]['tokens_per_s']:.2f}"
            )


if __name__ == "__main__":
    main()
