"""FastDeploy deployment of an exported model: sequence classification and token classification (NER).

Runs in the FastDeploy environment (Python 3.10 + ``fastdeploy-python==1.0.7`` + ``numpy<2``, no Paddle; create it
with ``bash scripts/setup_fastdeploy_env.sh``, which prints its interpreter)::

    FDPY=~/.cache/ernie-toolkit/fastdeploy/bin/python
    $FDPY scripts/fastdeploy_seq_cls_infer.py --model_dir output/seq_cls/export --backend paddle|onnx_runtime|openvino \
        --device cpu --cpu_threads 1 --batch_size 32 --max_length 128 [--input_file texts.txt]
    $FDPY scripts/fastdeploy_token_cls_infer.py --model_dir output/ner/export --backend openvino [--input_file ...]

FastDeploy loads ``model.pdmodel`` + ``model.pdiparams`` (the legacy program that export_model.py writes beside
Paddle 3's ``model.json``, see ernie/deploy/legacy_export.py) for all three backends: its Paddle Inference 2.x runs
the program, its ONNX Runtime and OpenVINO backends convert it themselves. Output lines are those of
``seq_cls_infer.py`` (``Data: <text> \\t Label: <label> \\t Confidence: <p>``) and, for NER,
``Data: <text> \\t Entities: <chars>/<type> ...``. Tokenization is the toolkit's ``ErnieTokenizer`` (pure Python).
The OpenVINO backend on the CPU says once (stderr) which precision it computes in: f32 in the toolkit's
environment; bf16 on a CPU with bf16 instructions in a FastDeploy install the toolkit did not set up
(ernie/deploy/openvino_precision.py).
``--backend onnx_runtime --precision int8`` loads ``model.int8.onnx`` (``export_model.py --quantize int8``) instead.

``python -m ernie.deploy.fastdeploy_infer --model_dir D --feeds in.npz --output out.npz --backends a,b`` is the
harness of tests/test_fastdeploy.py and benchmarks/bench_fastdeploy.py: logits (and optionally median latency) of
every backend on the same int64 feeds.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import numpy as np

from ernie.finetune.metrics import bio_entities
from ernie.utils import ArgumentParser, UserError, cli_main, require_positive

from .infer import (
    SeqClsPredictor,
    add_precision_flag,
    check_max_length,
    check_precision,
    check_task,
    predict_and_print,
    read_inputs,
)
from .layout import INPUT_NAMES, INT8_ONNX_FILE, MODEL_PREFIX, PARAMS_SUFFIX
from .openvino_precision import BF16_FLAGS, cpu_flags, cpu_precision, plugins_xml

BACKENDS = ("paddle", "onnx_runtime", "openvino")
LEGACY_PROGRAM = MODEL_PREFIX + ".pdmodel"
NER_EXAMPLE_TEXTS = ["北京市长王安顺在人民大会堂会见了日本首相", "中国共产党第十五次全国代表大会在北京召开"]


class FastDeployBackend:
    """A FastDeploy Runtime on ``model_dir/model.pdmodel`` + ``model.pdiparams`` (``precision="int8"``:
    ``model.int8.onnx``, onnx_runtime only); ``run(feeds) -> first output``."""

    def __init__(
        self,
        model_dir: str,
        backend: str = "paddle",
        device: str = "cpu",
        num_threads: int = 1,
        device_id: int = 0,
        precision: str = "fp32",
    ):
        try:
            import fastdeploy as fd
        except ImportError:
            raise UserError(
                "fastdeploy is not importable here: run this with the FastDeploy environment's Python "
                "(bash scripts/setup_fastdeploy_env.sh prints it)"
            ) from None
        if backend not in BACKENDS:
            raise UserError(f"--backend {backend}: choose one of {', '.join(BACKENDS)}")
        if not os.path.isdir(model_dir):
            raise UserError(f"--model_dir {model_dir}: no such directory")
        option = fd.RuntimeOption()
        if check_precision(model_dir, backend, precision, int8_backend="onnx_runtime") == "int8":
            program = os.path.join(model_dir, INT8_ONNX_FILE)
            option.set_model_path(program, "", fd.ModelFormat.ONNX)
        else:
            program = os.path.join(model_dir, LEGACY_PROGRAM)
            params = os.path.join(model_dir, MODEL_PREFIX + PARAMS_SUFFIX)
            for path in (program, params):
                if not os.path.isfile(path):
                    raise UserError(
                        f"--model_dir {model_dir}: no {os.path.basename(path)} (FastDeploy needs the "
                        f"legacy program: export with scripts/export_model.py, without "
                        f"ERNIE_NO_LEGACY_EXPORT)"
                    )
            option.set_model_path(program, params, fd.ModelFormat.PADDLE)
        if device == "gpu":
            option.use_gpu(device_id)
        else:
            option.use_cpu()
            option.set_cpu_thread_num(num_threads)
        {
            "paddle": option.use_paddle_infer_backend,
            "onnx_runtime": option.use_ort_backend,
            "openvino": option.use_openvino_backend,
        }[backend]()
        # Paddle Inference 2.x's oneDNN (MKLDNN) kernels give wrong logits on this program once the input shape
        # changes between calls (measured: batch 1 then batch 32 -> 0.07 off; with a per-shape primitive cache,
        # mkldnn_cache_size, still up to 1.6 off on some rows). Its plain CPU kernels (MKL GEMMs) are exact.
        option.paddle_infer_option.enable_mkldnn = False
        try:
            self.runtime = fd.Runtime(option)
        except Exception as e:  # noqa: BLE001 - a broken file is the user's input problem
            raise UserError(
                f"--model_dir {model_dir}: FastDeploy ({backend}) cannot load {os.path.basename(program)}: "
                f"{str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__}"
            ) from None
        self.name = backend
        self.compute_precision = "f32"
        if backend == "openvino" and device == "cpu":
            self.compute_precision = cpu_precision(plugins_xml(os.path.dirname(fd.__file__)))
            print(openvino_precision_line(self.compute_precision), file=sys.stderr, flush=True)
        self.input_names = [self.runtime.get_input_info(i).name for i in range(self.runtime.num_inputs())]
        if sorted(self.input_names) != sorted(INPUT_NAMES):
            raise UserError(f"--model_dir {model_dir}: inputs {self.input_names}, expected {list(INPUT_NAMES)}")

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return self.runtime.infer(
            {name: np.ascontiguousarray(feeds[name], dtype=np.int64) for name in self.input_names}
        )[0]


def openvino_precision_line(precision: str) -> str:
    """The one line the OpenVINO backend prints about its precision on this CPU."""
    if precision == "f32":
        return "FastDeploy openvino: OpenVINO's CPU plugin computes in f32"
    flags = "/".join(f for f in BF16_FLAGS if f in cpu_flags()) or "bf16"
    return (
        f"FastDeploy openvino: OpenVINO's CPU plugin computes in bf16 on this CPU ({flags}): "
        f"logits differ from f32 by ~1e-2; bash scripts/setup_fastdeploy_env.sh sets its environment to f32"
    )


def seq_cls_predictor(
    model_dir: str,
    backend: str = "paddle",
    device: str = "cpu",
    batch_size: int = 32,
    max_length: int = 128,
    num_threads: int = 1,
    precision: str = "fp32",
) -> SeqClsPredictor:
    """ernie.deploy.infer's predictor (same tokenization, softmax and output) on a FastDeploy runtime."""
    return SeqClsPredictor(
        model_dir,
        FastDeployBackend(model_dir, backend, device, num_threads, precision=precision),
        device,
        batch_size,
        max_length,
        num_threads,
    )


class TokenClsPredictor(SeqClsPredictor):
    """Character BIO tagging as run_ner.py trains it: ``[CLS] chars [SEP]``, one token per character (its first
    WordPiece, [UNK] when it has none), tags -> entities. ``backend`` as for :class:`SeqClsPredictor`."""

    def encode(self, items: list[str], text_pairs=None) -> dict[str, np.ndarray]:
        tok, keep = self.tokenizer, self.max_length - 2
        rows = []
        for text in items:
            ids = []
            for ch in text[:keep]:
                pieces = tok.tokenize(ch)
                ids.append(tok.convert_tokens_to_ids(pieces[0]) if pieces else tok.unk_token_id)
            rows.append([tok.cls_token_id, *ids, tok.sep_token_id])
        width = max(len(r) for r in rows)
        input_ids = np.full((len(rows), width), tok.pad_token_id, dtype=np.int64)
        for i, r in enumerate(rows):
            input_ids[i, : len(r)] = r
        return {"input_ids": input_ids, "token_type_ids": np.zeros_like(input_ids)}

    def predict(self, texts: list[str], text_pairs: list[str | None] | None = None) -> list[dict]:
        if text_pairs is not None and any(p is not None for p in text_pairs):
            raise UserError("token classification takes one text per input, not text pairs")

        out = []
        for start in range(0, len(texts), self.batch_size):
            batch = texts[start : start + self.batch_size]
            for text, row in zip(batch, self.backend.run(self.encode(batch)).argmax(-1)):
                n = min(len(text), self.max_length - 2)
                tags = [self.labels[int(t)] if self.labels else str(int(t)) for t in row[1 : 1 + n]]
                tags += ["O"] * (len(text) - n)
                ents = sorted(bio_entities(tags), key=lambda e: e[1])
                out.append({"tags": tags, "entities": [(text[s:e], kind, s, e) for kind, s, e in ents]})
        return out


def padded_random_feeds(vocab_size: int, batch: int, seq: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Feeds for equality checks: ``[CLS] random ids [SEP]`` then padding, rows of different lengths (row 0 full),
    token types 1 on the second half of each row's tokens (the padding mask must come out of the program)."""
    rng = np.random.default_rng(seed)
    ids = np.zeros((batch, seq), dtype=np.int64)
    for i in range(batch):
        n = seq if i == 0 else int(rng.integers(3, seq + 1))
        ids[i, :n] = rng.integers(5, vocab_size, size=n)
        ids[i, 0], ids[i, n - 1] = 1, 2
    types = np.zeros_like(ids)
    types[:, seq // 2 :] = ids[:, seq // 2 :] != 0
    return {"input_ids": ids, "token_type_ids": types}


def _parser(prog: str, description: str) -> ArgumentParser:
    p = ArgumentParser(allow_abbrev=False, prog=prog, description=description)
    p.add_argument("--model_dir", required=True, help="exported model directory (export_model.py / --do_export)")
    p.add_argument("--backend", choices=BACKENDS, default="paddle", help="FastDeploy runtime backend")
    p.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    p.add_argument("--device_id", type=int, default=0, help="GPU id with --device gpu")
    p.add_argument("--cpu_threads", type=int, default=1, help="threads with --device cpu")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--max_length", type=int, default=128, help="tokens per input incl. [CLS]/[SEP]")
    p.add_argument("--input_file", help="one text a line; default: built-in examples")
    add_precision_flag(p)
    return p


def _check_sizes(a) -> None:
    require_positive(a, ("batch_size", "max_length", "cpu_threads"))
    if a.max_length < 3:
        raise UserError("--max_length must be >= 3 ([CLS] text [SEP])")


@cli_main
def seq_cls_main(argv: list[str] | None = None) -> list[dict]:
    """scripts/fastdeploy_seq_cls_infer.py; returns the predictions."""
    a = _parser("fastdeploy_seq_cls_infer.py", "Sequence classification with FastDeploy.").parse_args(argv)
    _check_sizes(a)
    check_task(a.model_dir, "seq_cls", "fastdeploy_seq_cls_infer.py")
    check_max_length(a.model_dir, a.max_length)
    predictor = seq_cls_predictor(
        a.model_dir, a.backend, a.device, a.batch_size, a.max_length, a.cpu_threads, a.precision
    )
    return predict_and_print(predictor, a, f"FastDeploy {a.backend} {a.precision}")


@cli_main
def token_cls_main(argv: list[str] | None = None) -> list[dict]:
    """scripts/fastdeploy_token_cls_infer.py; returns the predictions."""
    a = _parser("fastdeploy_token_cls_infer.py", "Token classification (NER) with FastDeploy.").parse_args(argv)
    _check_sizes(a)
    check_task(a.model_dir, "ner", "fastdeploy_token_cls_infer.py")
    check_max_length(a.model_dir, a.max_length)
    texts = read_inputs(a.input_file)[0] if a.input_file else NER_EXAMPLE_TEXTS
    backend = FastDeployBackend(a.model_dir, a.backend, a.device, a.cpu_threads, precision=a.precision)
    predictor = TokenClsPredictor(a.model_dir, backend, a.device, a.batch_size, a.max_length, a.cpu_threads)
    t0 = time.perf_counter()
    results = predictor.predict(texts)
    elapsed = time.perf_counter() - t0
    for text, r in zip(texts, results):
        ents = " ".join(f"{chars}/{kind}" for chars, kind, _, _ in r["entities"])
        print(f"Data: {text} \t Entities: {ents}")
    print(
        f"{len(texts)} inputs in {elapsed * 1000:.1f} ms with FastDeploy {a.backend} on {a.device} "
        f"(batch {a.batch_size}, max_length {a.max_length})",
        file=sys.stderr,
    )
    return results


def _harness(argv: list[str] | None = None) -> None:
    """Logits of each backend on the feeds of an .npz (keys ``<case>/input_ids``, ``<case>/token_type_ids``) into
    ``--output`` (keys ``<backend>/<case>``); with ``--time_iters N`` also ``<backend>/<case>/seconds`` (median of
    N runs after 2 warm-up runs)."""
    p = argparse.ArgumentParser(allow_abbrev=False, prog="python -m ernie.deploy.fastdeploy_infer")
    p.add_argument("--model_dir", required=True)
    p.add_argument("--feeds", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--backends", default=",".join(BACKENDS))
    p.add_argument("--cpu_threads", type=int, default=1)
    p.add_argument("--time_iters", type=int, default=0)
    p.add_argument("--precision", default="fp32")
    a = p.parse_args(argv)
    with np.load(a.feeds) as z:
        cases: dict[str, dict[str, np.ndarray]] = {}
        for key in z.files:
            case, _, name = key.rpartition("/")
            cases.setdefault(case, {})[name] = z[key]
    out: dict[str, Any] = {}
    for backend in a.backends.split(","):
        runner = FastDeployBackend(a.model_dir, backend, "cpu", a.cpu_threads, precision=a.precision)
        for case, feeds in cases.items():
            out[f"{backend}/{case}"] = runner.run(feeds)
            if a.time_iters:
                for _ in range(2):
                    runner.run(feeds)
                times = []
                for _ in range(a.time_iters):
                    t0 = time.perf_counter()
                    runner.run(feeds)
                    times.append(time.perf_counter() - t0)
                out[f"{backend}/{case}/seconds"] = np.asarray(np.median(times))
        del runner
    np.savez(a.output, **out)


if __name__ == "__main__":
    _harness()
