"""Inference speed of an exported seq_cls model: latency at batch 1 and throughput at batch 32, seq 128.

Backends: Paddle Inference and ONNX Runtime (on the paddle2onnx conversion); the baseline, measured in the same run,
is the dygraph model under ``paddle.no_grad()``. Prints absolute numbers and ratios against the baseline, plus the
logit parity of each backend against dygraph.

    OMP_NUM_THREADS=1 python benchmarks/bench_infer.py                       # random-init ernie-tiny-cpu
    OMP_NUM_THREADS=1 python benchmarks/bench_infer.py --config ernie-1.0-base-zh --iters 5
    OMP_NUM_THREADS=1 python benchmarks/bench_infer.py --model_dir output/seq_cls   # a fine-tuned model dir
"""
from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np


def build_model(args, tmp: str):
    """(model, tokenizer) from a fine-tuned dir, or a random-init config with a placeholder vocab."""
    from ernie.configuration import ErnieConfig
    from ernie.modeling import ErnieForSequenceClassification
    from ernie.tokenizer import ErnieTokenizer, write_tokenizer_files

    if args.model_dir:
        return (ErnieForSequenceClassification.from_pretrained(args.model_dir),
                ErnieTokenizer.from_pretrained(args.model_dir))
    config = ErnieConfig.from_pretrained(args.config, num_labels=2)
    special = ["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]"]
    tokens = special + [f"[unused{i}]" for i in range(config.vocab_size - len(special))]
    write_tokenizer_files(tmp, tokens, True, dict(zip(("pad_token", "cls_token", "sep_token", "mask_token",
                                                       "unk_token"), special)))
    return ErnieForSequenceClassification(config), ErnieTokenizer.from_pretrained(tmp)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="ernie-tiny-cpu", help="configs/models name for a random-init model")
    p.add_argument("--model_dir", help="a fine-tuned model directory instead of --config")
    p.add_argument("--seq_len", type=int, default=128)
    p.add_argument("--batch_size", type=int, default=32, help="throughput batch")
    p.add_argument("--iters", type=int, default=20, help="timed calls per measurement (batch 1: 5x as many)")
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    args = p.parse_args()

    import paddle

    from ernie.deploy.export import export_model
    from ernie.deploy.infer import OnnxRuntimeBackend, PaddleBackend, median_seconds, random_feeds

    paddle.set_device("cpu")
    paddle.seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        model, tokenizer = build_model(args, os.path.join(tmp, "vocab"))
        model.eval()
        export_dir = export_model(model, tokenizer, ["0", "1"], os.path.join(tmp, "export"))
        vocab = model.config.vocab_size

        def dygraph(x):
            with paddle.no_grad():
                return model(paddle.to_tensor(x["input_ids"]),
                             token_type_ids=paddle.to_tensor(x["token_type_ids"])).numpy()

        backends = {"dygraph (baseline)": dygraph,
                    "paddle_inference": PaddleBackend(export_dir, num_threads=args.threads).run,
                    "onnxruntime": OnnxRuntimeBackend(export_dir, num_threads=args.threads).run}
        one = random_feeds(1, args.seq_len, vocab)
        many = random_feeds(args.batch_size, args.seq_len, vocab, seed=1)
        ref = dygraph(many)
        c = model.config
        print(f"model: {args.model_dir or args.config} ({c.num_hidden_layers} layers, hidden {c.hidden_size}, vocab "
              f"{vocab}); seq {args.seq_len}; threads {args.threads}; paddle {paddle.__version__}")
        print(f"{'backend':<20} {'latency b1 (ms)':>16} {'x baseline':>11} {'throughput b' + str(args.batch_size):>18}"
              f" {'x baseline':>11} {'max |logit diff| vs dygraph':>28}")
        base = None
        for name, fn in backends.items():
            latency = median_seconds(fn, one, iters=5 * args.iters)
            throughput = args.batch_size / median_seconds(fn, many, iters=args.iters)
            diff = float(np.abs(fn(many) - ref).max())
            base = base or (latency, throughput)
            print(f"{name:<20} {latency * 1e3:>16.2f} {base[0] / latency:>10.2f}x {throughput:>14.1f} /s "
                  f"{throughput / base[1]:>10.2f}x {diff:>28.2e}")


if __name__ == "__main__":
    main()
