"""Every deployment backend on the same export: logit equality (seq_cls and NER; batch 1 / 32 x length 8 / 128) and
latency at batch 1 / throughput at batch 32 (seq_cls, length 128).

Backends: dygraph (the baseline), Paddle Inference 3 on ``model.json``, ONNX Runtime on the paddle2onnx conversion,
and FastDeploy 1.0.7's paddle / onnx_runtime / openvino backends on ``model.pdmodel`` (in the Python 3.10
FastDeploy environment, created on first use). Timings are interleaved: each round measures every backend once (the
FastDeploy ones in one subprocess per round), and the best round counts; ratios are against the baseline of the
same run.

    OMP_NUM_THREADS=1 python benchmarks/bench_fastdeploy.py                    # random-init ernie-tiny-cpu
    OMP_NUM_THREADS=1 python benchmarks/bench_fastdeploy.py --config ernie-mini-cpu --rounds 5
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile

import numpy as np

NER_LABELS = ["B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "O"]
EQUALITY_CASES = [(1, 8), (32, 8), (1, 128), (32, 128)]


def fastdeploy_run(model_dir: str, cases: dict, work: str, time_iters: int, threads: int) -> dict:
    """The FastDeploy harness (ernie/deploy/fastdeploy_infer.py) on ``cases`` in the FastDeploy environment."""
    from ernie.deploy import envs

    feeds, out = os.path.join(work, "feeds.npz"), os.path.join(work, "out.npz")
    np.savez(feeds, **{f"{c}/{k}": v for c, f in cases.items() for k, v in f.items()})
    envs.run_in_env(
        "fastdeploy",
        [
            "-m",
            "ernie.deploy.fastdeploy_infer",
            "--model_dir",
            model_dir,
            "--feeds",
            feeds,
            "--output",
            out,
            "--time_iters",
            str(time_iters),
            "--cpu_threads",
            str(threads),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    with np.load(out) as z:
        return {k: z[k] for k in z.files}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="ernie-tiny-cpu", help="configs/models name for the random-init models")
    p.add_argument("--seq_len", type=int, default=128)
    p.add_argument("--batch_size", type=int, default=32, help="throughput batch")
    p.add_argument("--iters", type=int, default=10, help="timed calls per measurement (batch 1: 5x as many)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the best one counts")
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    p.add_argument(
        "--results",
        default=None,
        help="where to record the output (default docs/results/bench_fastdeploy.md; '' = nowhere)",
    )
    args = p.parse_args()
    from bench_report import default_path, recorded  # benchmarks/ is on sys.path

    with recorded("bench_fastdeploy", default_path("bench_fastdeploy") if args.results is None else args.results):
        os.environ.pop("ERNIE_NO_LEGACY_EXPORT", None)

        import paddle

        from ernie.configuration import ErnieConfig
        from ernie.deploy.export import export_model
        from ernie.deploy.fastdeploy_infer import BACKENDS, padded_random_feeds
        from ernie.deploy.infer import OnnxRuntimeBackend, PaddleBackend, median_seconds, random_feeds
        from ernie.modeling import ErnieForSequenceClassification, ErnieForTokenClassification
        from ernie.tokenizer import ErnieTokenizer, write_tokenizer_files

        paddle.set_device("cpu")
        paddle.seed(0)
        with tempfile.TemporaryDirectory() as tmp:
            special = ["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]"]
            config = ErnieConfig.from_pretrained(args.config)
            tokens = special + [f"[unused{i}]" for i in range(config.vocab_size - len(special))]
            write_tokenizer_files(
                os.path.join(tmp, "vocab"),
                tokens,
                True,
                dict(zip(("pad_token", "cls_token", "sep_token", "mask_token", "unk_token"), special)),
            )
            tokenizer = ErnieTokenizer.from_pretrained(os.path.join(tmp, "vocab"))
            models = {
                "seq_cls": ErnieForSequenceClassification(config.replace(num_labels=2)),
                "ner": ErnieForTokenClassification(config.replace(num_labels=len(NER_LABELS))),
            }
            exports = {}
            for task, model in models.items():
                model.eval()
                labels = ["negative", "positive"] if task == "seq_cls" else NER_LABELS
                exports[task] = export_model(model, tokenizer, labels, os.path.join(tmp, task), task=task)

            def dygraph_of(model):
                def run(x):
                    with paddle.no_grad():
                        return model(
                            paddle.to_tensor(x["input_ids"]), token_type_ids=paddle.to_tensor(x["token_type_ids"])
                        ).numpy()

                return run

            c = config
            print(
                f"model: random-init {args.config} ({c.num_hidden_layers} layers, hidden {c.hidden_size}, vocab "
                f"{c.vocab_size}); threads {args.threads}; paddle {paddle.__version__}; FastDeploy 1.0.7 (Python 3.10)"
            )

            # ---- equality
            names = ["paddle_inference_3", "onnxruntime"] + [f"fastdeploy_{b}" for b in BACKENDS]
            print("\nmax |logit - dygraph logit| (same argmax everywhere: yes/no)")
            print(f"{'task':<8} {'batch x len':<12}" + "".join(f" {n:>22}" for n in names))
            for task, model in models.items():
                cases = {
                    f"b{b}_s{s}": padded_random_feeds(c.vocab_size, b, s, seed=b * 1000 + s) for b, s in EQUALITY_CASES
                }
                fd = fastdeploy_run(exports[task], cases, tmp, 0, args.threads)
                local = {
                    "paddle_inference_3": PaddleBackend(exports[task], num_threads=args.threads).run,
                    "onnxruntime": OnnxRuntimeBackend(exports[task], num_threads=args.threads).run,
                }
                for (b, s), (case, feeds) in zip(EQUALITY_CASES, cases.items()):
                    ref = dygraph_of(model)(feeds)
                    got = {
                        **{n: fn(feeds) for n, fn in local.items()},
                        **{f"fastdeploy_{be}": fd[f"{be}/{case}"] for be in BACKENDS},
                    }
                    cells = [
                        f"{np.abs(got[n] - ref).max():.1e} "
                        f"{'yes' if (got[n].argmax(-1) == ref.argmax(-1)).all() else 'no':>3}"
                        for n in names
                    ]
                    print(f"{task:<8} {f'{b} x {s}':<12}" + "".join(f" {cell:>22}" for cell in cells))

            # ---- speed (seq_cls)
            export_dir, model = exports["seq_cls"], models["seq_cls"]
            one = random_feeds(1, args.seq_len, c.vocab_size)
            many = random_feeds(args.batch_size, args.seq_len, c.vocab_size, seed=1)
            local = {
                "dygraph (baseline)": dygraph_of(model),
                "paddle_inference_3": PaddleBackend(export_dir, num_threads=args.threads).run,
                "onnxruntime": OnnxRuntimeBackend(export_dir, num_threads=args.threads).run,
            }
            best: dict[str, list[float]] = {}
            for _ in range(args.rounds):
                for name, fn in local.items():
                    t = (median_seconds(fn, one, iters=5 * args.iters), median_seconds(fn, many, iters=args.iters))
                    best[name] = [min(a, b) for a, b in zip(best.get(name, t), t)]
                fd = fastdeploy_run(export_dir, {"one": one, "many": many}, tmp, args.iters, args.threads)
                for be in BACKENDS:
                    t = (float(fd[f"{be}/one/seconds"]), float(fd[f"{be}/many/seconds"]))
                    name = f"fastdeploy_{be}"
                    best[name] = [min(a, b) for a, b in zip(best.get(name, t), t)]
            base = best["dygraph (baseline)"]
            print(
                f"\nseq_cls, seq {args.seq_len}, best of {args.rounds} interleaved rounds "
                f"(median of {5 * args.iters} / {args.iters} calls each)"
            )
            print(
                f"{'backend':<22} {'latency b1 (ms)':>16} {'x baseline':>11} "
                f"{'throughput b' + str(args.batch_size):>18} {'x baseline':>11}"
            )
            for name, (lat, per_batch) in best.items():
                print(
                    f"{name:<22} {lat * 1e3:>16.2f} {base[0] / lat:>10.2f}x {args.batch_size / per_batch:>14.1f} /s "
                    f"{base[1] / per_batch:>10.2f}x"
                )


if __name__ == "__main__":
    main()
