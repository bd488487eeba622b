"""Python deployment of an exported model: Paddle Inference, or ONNX Runtime on a paddle2onnx conversion.

``SeqClsPredictor`` here and ``ernie.deploy.qa_infer.QaPredictor`` (span-extraction QA) share these backends; each
task names its predictor (``Task.predictor``).

    python scripts/seq_cls_infer.py --model_dir output/seq_cls/export --backend paddle --device cpu \
        --batch_size 32 --max_length 128 [--input_file texts.txt]

prints one ``Data: <text> \\t Label: <label> \\t Confidence: <p>`` line per input. The ONNX model is converted on
first use and cached as ``model_dir/model.onnx`` (in memory only when ``model_dir`` is read-only); paddle2onnx's
polygraphy post-pass (which tries to pip-install packages) is never used.

``--precision int8`` (``precision="int8"``) serves ``model.int8.onnx`` (``export_model.py --quantize int8``) with
ONNX Runtime; the default is fp32. INT8 with the paddle backend, or an export without the INT8 model, is one
``UserError`` line (why: ernie/deploy/quantize.py).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

import numpy as np

from ernie.tokenizer import ErnieTokenizer
from ernie.utils import (
    LABEL_FILE,
    ArgumentParser,
    UserError,
    atomic_write,
    cli_main,
    read_label_file,
    require_positive,
)
from ernie.utils.cpu_tuning import ensure_cpu_tuning

from .layout import (
    DEPLOY_CONFIG,
    INPUT_NAMES,
    INT8_ONNX_FILE,
    MODEL_PREFIX,
    ONNX_FILE,
    PARAMS_SUFFIX,
    PRECISIONS,
    PROGRAM_SUFFIXES,
    program_file,
)

ONNX_OPSET = 13
BACKENDS = ("paddle", "onnxruntime")
EXAMPLE_TEXTS = [
    "这个宾馆比较陈旧了，特价的房间也很一般。总体来说一般",
    "怀着十分激动的心情放映，可是看着看着发现，在放映完毕后，出现一集米老鼠的动画片",
    "作为老的四星酒店，房间依然很整洁，相当不错。机场接机服务很好，可以在车上办理入住手续，节省时间。",
]


def model_files(model_dir: str) -> tuple[str, str]:
    """(program file, params file) of an exported model; a missing piece is a ``UserError`` naming the dir."""
    if not os.path.isdir(model_dir):
        raise UserError(
            f"--model_dir {model_dir}: no such directory (export one with scripts/export_model.py or "
            f"run_seq_cls.py --do_export)"
        )
    program = program_file(model_dir)
    params = os.path.join(model_dir, MODEL_PREFIX + PARAMS_SUFFIX)
    if program is None:
        raise UserError(
            f"--model_dir {model_dir}: no {' or '.join(MODEL_PREFIX + s for s in PROGRAM_SUFFIXES)} "
            f"(not an exported inference model; see scripts/export_model.py)"
        )
    if not os.path.isfile(params):
        raise UserError(f"--model_dir {model_dir}: {os.path.basename(program)} but no {MODEL_PREFIX + PARAMS_SUFFIX}")
    return program, params


class PaddleBackend:
    """Paddle Inference predictor; ``run(feeds) -> logits``."""

    name = "paddle"

    def __init__(self, model_dir: str, device: str = "cpu", num_threads: int = 1, precision: str = "fp32"):
        import paddle.inference as pi

        ensure_cpu_tuning(device)  # before the predictor's first GEMM (MKL's code path on AMD CPUs)
        check_precision(model_dir, "paddle", precision)

        program, params = model_files(model_dir)
        config = pi.Config(program, params)
        if device == "gpu":
            config.enable_use_gpu(256, 0)
        else:
            config.disable_gpu()
            config.set_cpu_math_library_num_threads(num_threads)
        config.disable_glog_info()
        try:
            self.predictor = pi.create_predictor(config)
        except Exception as e:  # noqa: BLE001 - a broken file is the user's input problem
            raise UserError(
                f"--model_dir {model_dir}: cannot load the inference model "
                f"({type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''})"
            ) from None
        self.input_names = self.predictor.get_input_names()
        if sorted(self.input_names) != sorted(INPUT_NAMES):
            raise UserError(f"--model_dir {model_dir}: inputs {self.input_names}, expected {list(INPUT_NAMES)}")
        self.outputs = [self.predictor.get_output_handle(n) for n in self.predictor.get_output_names()]

    def run_all(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Every output of the program, in its order (e.g. start and end logits for QA)."""
        for name in self.input_names:
            handle = self.predictor.get_input_handle(name)
            handle.reshape(feeds[name].shape)
            handle.copy_from_cpu(feeds[name])
        self.predictor.run()
        return [h.copy_to_cpu() for h in self.outputs]

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """The first output (the logits of a classifier)."""
        return self.run_all(feeds)[0]


def convert_to_onnx(model_dir: str) -> bytes:
    """paddle2onnx conversion of the exported model (bytes of the ONNX model)."""
    import paddle2onnx

    program, params = model_files(model_dir)
    logging.getLogger("paddle2onnx").setLevel(logging.WARNING)
    try:
        onnx_bytes = paddle2onnx.export(
            program, params, save_file=None, opset_version=ONNX_OPSET, enable_onnx_checker=True, verbose=False
        )
    except (Exception, SystemExit) as e:  # noqa: BLE001 - paddle2onnx's logger calls sys.exit(-1) on errors
        raise UserError(
            f"--model_dir {model_dir}: paddle2onnx could not convert {os.path.basename(program)} "
            f"(see the error above; {type(e).__name__}: {e})"
        ) from None
    if not onnx_bytes:
        raise UserError(f"--model_dir {model_dir}: paddle2onnx could not convert the model (see the log above)")
    return onnx_bytes


def cached_onnx(model_dir: str) -> str | None:
    """``model_dir/model.onnx`` if it exists and is newer than the params it was converted from."""
    path = os.path.join(model_dir, ONNX_FILE)
    _, params = model_files(model_dir)
    return path if os.path.isfile(path) and os.path.getmtime(path) >= os.path.getmtime(params) else None


class OnnxRuntimeBackend:
    """ONNX Runtime session on the paddle2onnx conversion; ``run(feeds) -> logits``.

    Uses the cached ``model.onnx`` when fresh; otherwise converts, checks that ONNX Runtime loads the result, and
    only then caches it (skipped when ``model_dir`` is read-only).
    """

    name = "onnxruntime"

    def __init__(self, model_dir: str, device: str = "cpu", num_threads: int = 1, precision: str = "fp32"):
        import onnxruntime as ort

        int8 = check_precision(model_dir, "onnxruntime", precision) == "int8"

        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "gpu" else ["CPUExecutionProvider"]
        cached = os.path.join(model_dir, INT8_ONNX_FILE) if int8 else cached_onnx(model_dir)
        model = cached or convert_to_onnx(model_dir)
        try:
            self.session = ort.InferenceSession(model, sess_options=options, providers=providers)
        except Exception as e:  # noqa: BLE001
            what = (
                os.path.basename(cached)
                if cached
                else f"the ONNX conversion (is {MODEL_PREFIX + PARAMS_SUFFIX} complete?)"
            )
            raise UserError(
                f"--model_dir {model_dir}: ONNX Runtime cannot load {what}: {str(e).strip().splitlines()[0]}"
            ) from None
        if not cached and os.access(model_dir, os.W_OK):
            with atomic_write(os.path.join(model_dir, ONNX_FILE)) as f:
                f.write(model)
        self.input_names = [i.name for i in self.session.get_inputs()]

    def run_all(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return list(self.session.run(None, {name: feeds[name] for name in self.input_names}))

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return self.run_all(feeds)[0]


def check_precision(model_dir: str, backend: str, precision: str, int8_backend: str = "onnxruntime") -> str:
    """The one check of ``--precision`` for every predictor (the toolkit's and FastDeploy's, whose ONNX Runtime
    backend is ``int8_backend``): fp32 always; int8 only on ONNX Runtime, with an export holding
    ``model.int8.onnx``. Returns ``precision``."""
    if precision not in PRECISIONS:
        raise UserError(f"--precision {precision}: choose one of {', '.join(PRECISIONS)}")
    if precision == "int8":
        if backend != int8_backend:
            raise UserError(
                f"--precision int8 --backend {backend}: INT8 models run on ONNX Runtime only (--backend "
                f"{int8_backend}); ernie/deploy/quantize.py says why"
            )
        if not os.path.isfile(os.path.join(model_dir, INT8_ONNX_FILE)):
            raise UserError(
                f"--precision int8: {model_dir} has no {INT8_ONNX_FILE}; export it with "
                f"scripts/export_model.py --quantize int8"
            )
    return precision


def make_backend(
    model_dir: str, backend: str = "paddle", device: str = "cpu", num_threads: int = 1, precision: str = "fp32"
):
    if backend not in BACKENDS:
        raise UserError(f"--backend {backend}: choose one of {', '.join(BACKENDS)}")
    cls = PaddleBackend if backend == "paddle" else OnnxRuntimeBackend
    return cls(model_dir, device=device, num_threads=num_threads, precision=precision)


def read_labels(model_dir: str, num_labels: int | None = None) -> list[str]:
    """The export's label names: ``label.txt``, else deploy_config.json's ``labels``; without either, the class ids
    (``"0"``, ``"1"``, ... for ``num_labels``) and one warning line saying so, never silently."""
    labels = read_label_file(model_dir)
    if labels:
        return labels
    recorded = read_deploy_config(model_dir).get("labels")
    if isinstance(recorded, list) and recorded and all(isinstance(x, str) for x in recorded):
        return list(recorded)
    print(
        f"warning: {model_dir} has no {LABEL_FILE} (nor labels in {DEPLOY_CONFIG}): predictions are printed as class "
        f"ids; copy the fine-tuned model's {LABEL_FILE} into it to get the label names",
        file=sys.stderr,
        flush=True,
    )
    return [str(i) for i in range(num_labels or 0)]


def read_deploy_config(model_dir: str) -> dict:
    """``model_dir/deploy_config.json`` (written by export_model.py), or {} when it is missing or unreadable (an
    older export: the checks that need it are skipped)."""

    try:
        with open(os.path.join(model_dir, DEPLOY_CONFIG), encoding="utf-8") as f:
            found = json.load(f)
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def check_task(model_dir: str, task: str, script: str) -> None:
    """An export of another task (``deploy_config.json``'s ``task``) is one clear error, not wrong output."""
    found = read_deploy_config(model_dir).get("task")
    if found and found != task:
        raise UserError(f"--model_dir {model_dir}: a {found} export; {script} serves {task} exports")


def model_positions(model_dir: str) -> int | None:
    """The exported model's ``max_position_embeddings`` (deploy_config.json), or None when not recorded."""
    limit = read_deploy_config(model_dir).get("max_position_embeddings")
    return limit if isinstance(limit, int) and not isinstance(limit, bool) else None


def check_max_length(model_dir: str, max_length: int, flag: str = "--max_length") -> None:
    """``UserError`` when ``flag``'s value exceeds the positions of the exported model (recorded by
    export_model.py in deploy_config.json; exports without the record are not checked)."""

    limit = model_positions(model_dir)
    if limit is not None and max_length > limit:
        raise UserError(
            f"{flag} {max_length} exceeds the model's {limit} positions (max_position_embeddings in "
            f"{os.path.join(model_dir, DEPLOY_CONFIG)}); pass {flag} {limit} or less"
        )


class SeqClsPredictor:
    """Tokenize -> backend -> softmax over labels, in batches of ``batch_size``. ``backend``: a name of
    :data:`BACKENDS`, or any object with ``run(feeds) -> logits`` (e.g. ``fastdeploy_infer.FastDeployBackend``)."""

    def __init__(
        self,
        model_dir: str,
        backend="paddle",
        device: str = "cpu",
        batch_size: int = 32,
        max_length: int = 128,
        num_threads: int = 1,
        precision: str = "fp32",
    ):
        self.backend = (
            make_backend(model_dir, backend, device, num_threads, precision) if isinstance(backend, str) else backend
        )
        self.tokenizer = ErnieTokenizer.from_pretrained(model_dir)
        self.model_dir = model_dir
        self.labels = read_labels(model_dir)
        self.batch_size, self.max_length = batch_size, max_length

    def encode(self, texts: list[str], text_pairs: list[str | None] | None = None) -> dict[str, np.ndarray]:
        """Padded int64 feeds [B, longest] for one batch."""
        items = texts if text_pairs is None else [t if p is None else (t, p) for t, p in zip(texts, text_pairs)]
        enc = self.tokenizer.batch_encode(
            items, max_length=self.max_length, padding=True, truncation=True, return_tensors="np"
        )
        return {name: enc[name] for name in INPUT_NAMES}

    def logits(self, texts: list[str], text_pairs: list[str | None] | None = None) -> np.ndarray:
        out = []
        for i in range(0, len(texts), self.batch_size):
            pairs = None if text_pairs is None else text_pairs[i : i + self.batch_size]
            out.append(self.backend.run(self.encode(texts[i : i + self.batch_size], pairs)))
        return np.concatenate(out)

    def predict(self, texts: list[str], text_pairs: list[str | None] | None = None) -> list[dict]:
        """``[{"label", "label_id", "confidence", "all_unk"}]``, one per text, in order. An empty text (and pair)
        gets the explicit empty result (``label``, ``label_id`` and ``confidence`` None); ``all_unk`` marks a
        text whose every token is [UNK] to this vocabulary (its label means nothing)."""
        pairs = text_pairs if text_pairs is not None else [None] * len(texts)
        keep = [i for i, (t, p) in enumerate(zip(texts, pairs)) if t.strip() or (p or "").strip()]
        out: list[dict[str, Any]] = [
            {"label": None, "label_id": None, "confidence": None, "all_unk": False} for _ in texts
        ]
        if not keep:
            return out
        logits = self.logits([texts[i] for i in keep], None if text_pairs is None else [pairs[i] for i in keep])
        z = np.exp(logits - logits.max(-1, keepdims=True))
        probs = z / z.sum(-1, keepdims=True)
        names = self.labels or [str(i) for i in range(logits.shape[-1])]
        if len(names) != logits.shape[-1]:
            raise UserError(
                f"{self.model_dir}: {LABEL_FILE} holds {len(names)} labels but the model has {logits.shape[-1]} "
                "classes: it is not this model's label file"
            )
        for i, p in zip(keep, probs):
            k = int(p.argmax())
            out[i] = {
                "label": names[k],
                "label_id": k,
                "confidence": float(p[k]),
                "all_unk": self.all_unk(texts[i]) and self.all_unk(pairs[i] or ""),
            }
        return out

    def all_unk(self, text: str) -> bool:
        """True when every token of ``text`` is [UNK] (an empty text counts as such)."""
        unk = self.tokenizer.unk_token
        return all(t == unk for t in self.tokenizer.tokenize(text))


def random_feeds(batch_size: int, seq_len: int, vocab_size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Unpadded random token ids (above the 5 special ids) [batch_size, seq_len], for timing."""
    rng = np.random.default_rng(seed)
    return {
        "input_ids": rng.integers(5, vocab_size, size=(batch_size, seq_len), dtype=np.int64),
        "token_type_ids": np.zeros((batch_size, seq_len), dtype=np.int64),
    }


def median_seconds(fn, x, iters: int, warmup: int = 2) -> float:
    """Median wall time of ``fn(x)`` over ``iters`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn(x)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def measure_speed(
    model_dir: str,
    backend: str = "paddle",
    seq_len: int = 128,
    batch_size: int = 32,
    iters: int = 20,
    num_threads: int = 1,
    precision: str = "fp32",
) -> dict[str, float]:
    """``{"latency_ms"}`` at batch 1 (median of ``5 * iters`` calls) and ``{"throughput"}`` (sequences/s) at
    ``batch_size`` for an exported model: the figures of benchmarks/bench_infer.py, for scripts and the demo."""
    run = make_backend(model_dir, backend, "cpu", num_threads, precision).run
    vocab = ErnieTokenizer.from_pretrained(model_dir).vocab_size
    latency = median_seconds(run, random_feeds(1, seq_len, vocab), iters=5 * iters)
    per_batch = median_seconds(run, random_feeds(batch_size, seq_len, vocab, seed=1), iters=iters)
    return {"latency_ms": latency * 1e3, "throughput": batch_size / per_batch}


def read_inputs(path: str) -> tuple[list[str], list[str | None]]:
    """One input a line: ``text`` or ``text<TAB>text_pair``; ``.jsonl`` lines may hold ``{"text", "text_pair"}``. A
    blank line is an empty input (its result is empty), so the outputs stay line for line with the file."""
    texts, pairs = [], []
    try:
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                line = line.rstrip("\r\n")
                if not line.strip():
                    text, pair = "", None
                elif path.endswith(".jsonl"):
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise UserError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
                    text, pair = rec.get("text"), rec.get("text_pair")
                    if not isinstance(text, str):
                        raise UserError(f'{path}:{lineno}: no "text" field')
                else:
                    text, _, pair = line.partition("\t")
                texts.append(text)
                pairs.append(pair or None)
    except OSError as e:
        raise UserError(f"--input_file {path}: cannot read ({e.strerror})") from None
    except UnicodeDecodeError:
        raise UserError(f"--input_file {path}: not UTF-8 text") from None
    if not any(t.strip() or (p or "").strip() for t, p in zip(texts, pairs)):
        raise UserError(f"--input_file {path}: no inputs")
    return texts, pairs


def print_seq_cls_results(texts: list[str], pairs: list[str | None], results: list[dict]) -> None:
    """One ``Data: <text> \\t Label: <label> \\t Confidence: <p>`` line per input (also the FastDeploy script's);
    an empty input prints ``Label: (empty input)``; a warning on stderr names the inputs that are all [UNK]."""
    for text, pair, r in zip(texts, pairs, results):
        data = text if pair is None else f"{text} ||| {pair}"
        if r["label"] is None:
            print(f"Data: {data} \t Label: (empty input) \t Confidence: -")
        else:
            print(f"Data: {data} \t Label: {r['label']} \t Confidence: {r['confidence']:.4f}")
    unknown = [i + 1 for i, r in enumerate(results) if r.get("all_unk")]
    if unknown:
        print(
            f"warning: {len(unknown)} of {len(results)} inputs are all [UNK] to the model's vocabulary (first: input "
            f"{unknown[0]}); their labels carry no information",
            file=sys.stderr,
            flush=True,
        )


@cli_main
def main(argv: list[str] | None = None) -> list[dict]:
    """scripts/seq_cls_infer.py; returns the predictions."""
    p = ArgumentParser(
        allow_abbrev=False, prog="seq_cls_infer.py", description="Sequence classification with an exported ERNIE model."
    )
    p.add_argument("--model_dir", required=True, help="exported model directory (export_model.py / --do_export)")
    p.add_argument("--backend", choices=BACKENDS, default="paddle")
    p.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--max_length", type=int, default=128, help="tokens per input incl. [CLS]/[SEP]")
    p.add_argument("--cpu_threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    add_precision_flag(p)
    p.add_argument("--input_file", help="one text a line (text<TAB>text_pair for pairs); default: three examples")
    a = p.parse_args(argv)
    require_positive(a, ("batch_size", "max_length", "cpu_threads"))
    if a.max_length < 3:
        raise UserError(f"--max_length: must be >= 3 ([CLS] text [SEP]), got {a.max_length}")
    check_task(a.model_dir, "seq_cls", "seq_cls_infer.py")
    check_max_length(a.model_dir, a.max_length)
    predictor = SeqClsPredictor(
        a.model_dir, a.backend, a.device, a.batch_size, a.max_length, a.cpu_threads, a.precision
    )
    return predict_and_print(predictor, a, f"{a.backend} {a.precision}")


def add_precision_flag(p) -> None:
    """``--precision`` of every inference script (the one declaration; checked by :func:`check_precision`)."""
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="int8: model.int8.onnx (export_model.py --quantize int8), ONNX Runtime backends only",
    )


def predict_and_print(predictor, a, backend_name: str) -> list[dict]:
    """The seq_cls inference scripts' body: ``a.input_file`` (or the built-in examples) through ``predictor``, the
    ``Data/Label/Confidence`` lines on stdout and the timing on stderr; returns the predictions."""
    no_pairs: list[str | None] = [None] * len(EXAMPLE_TEXTS)
    texts, pairs = read_inputs(a.input_file) if a.input_file else (EXAMPLE_TEXTS, no_pairs)
    t0 = time.perf_counter()
    results = predictor.predict(texts, pairs)
    elapsed = time.perf_counter() - t0
    print_seq_cls_results(texts, pairs, results)
    print(
        f"{len(texts)} inputs in {elapsed * 1000:.1f} ms with {backend_name} on {a.device} "
        f"(batch {a.batch_size}, max_length {a.max_length})",
        file=sys.stderr,
    )
    return results
