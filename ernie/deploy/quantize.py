"""INT8 models for CPU serving: ``export_model.py --quantize int8`` writes ``model.int8.onnx`` beside the fp32 files.

``write_int8_onnx(model_dir) -> dict`` (called by ``ernie.deploy.export.export_model`` on its temporary directory):

1. the fp32 ONNX model: paddle2onnx on the exported program (``ernie.deploy.infer.convert_to_onnx``), also cached
   as ``model.onnx`` for the fp32 ONNX Runtime predictor;
2. ONNX Runtime's basic graph optimizations (constant folding, Identity elimination), saved: the model computes
   its fused q/k/v weight from the three parameters at run time (ernie/modeling.py), and paddle2onnx passes every
   weight through Identity nodes, so before folding no MatMul has a constant weight for the quantizer to see;
3. ``onnxruntime.quantization.quantize_dynamic`` (then the opset imports no node uses are dropped): every MatMul
   with a constant weight (q/k/v, attention output, both FFN GEMMs, pooler, classifier) becomes
   ``DynamicQuantizeLinear`` + ``MatMulInteger``: weights int8, one scale per output channel; activations uint8 with
   a scale computed per call from the tensor's own range.
   Attention's activation x activation MatMuls, LayerNorm, softmax and the embedding lookups stay fp32.
   ``reduce_range`` (7-bit weights) is used when the exporting CPU lacks VNNI (AVX-512 VNNI / AVX-VNNI): without
   VNNI the u8 x s8 AVX2 instruction can saturate (ONNX Runtime's quantization guide); with VNNI it is exact;
4. a check: ONNX Runtime loads the int8 model and its logits on random padded inputs are compared with fp32's;
   the largest difference is recorded in deploy_config.json (``int8.max_abs_logit_diff_random``).

Why dynamic quantization, and why only ONNX Runtime:

- ONNX Runtime recommends dynamic quantization for transformer models (static QDQ calibrates one activation
  range per tensor, which the long-tailed attention/FFN activations of BERT-style models do badly with; dynamic
  ranges need no calibration text and follow each input). Its u8 x s8 ``MatMulInteger`` uses VNNI.
  ``DynamicQuantizeLinear`` / ``MatMulInteger`` are standard ONNX ops (opset 11), so FastDeploy's bundled ONNX
  Runtime runs the same file (``fastdeploy_*_infer.py --backend onnx_runtime --precision int8``).
- Paddle Inference 3.3.1 (CPU) has no INT8 path for the program Paddle 3 exports (``model.json``, PIR):
  ``enable_onednn_int8`` on it changes nothing (identical logits, i.e. no int8 kernel runs). Paddle's own
  ``paddle.static.quantization.PostTrainingQuantization`` (PaddleSlim is not needed) does quantize the *legacy*
  ``model.pdmodel`` (traced in the Paddle 2.6 environment) and Paddle Inference then runs it with oneDNN int8
  (benchmarks/bench_infer.py measures it: row ``paddle_ptq_onednn_int8``), but that path needs the Paddle 2.6
  environment at export time, a calibration set, and its accuracy is unverified here (Paddle 2.x's oneDNN kernels
  gave wrong logits after input-shape changes, see ernie/deploy/fastdeploy_infer.py), so it is not exported.
  ``--backend paddle --precision int8`` is refused in one line, as are FastDeploy's paddle and openvino backends
  with int8 (OpenVINO picks bf16 by itself on CPUs that have it).
"""

from __future__ import annotations

import logging
import os
import tempfile

import numpy as np

from ernie.utils import UserError, atomic_write
from ernie.utils.machine import cpu_has_vnni

from .fastdeploy_infer import padded_random_feeds
from .infer import convert_to_onnx
from .layout import INT8_ONNX_FILE, ONNX_FILE

METHOD = (
    "onnxruntime dynamic quantization: MatMul weights int8 per output channel, activations uint8 with "
    "per-call ranges; attention scores, LayerNorm, softmax, embeddings fp32"
)


def _quantization_tools():
    try:
        import paddle2onnx  # noqa: F401 - the fp32 conversion (step 1)
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as e:
        raise UserError(
            f"--quantize int8 needs ONNX Runtime's quantization tools, which cannot be imported here "
            f"({e}); pip install 'onnxruntime>=1.16' ml_dtypes paddle2onnx (the toolkit's 'deploy' "
            f"extra)"
        ) from None
    return QuantType, quantize_dynamic


def _session(model, num_threads: int = 1, optimized_path: str | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads, options.log_severity_level = num_threads, 1, 3
    if optimized_path:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = optimized_path
    return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


def _keep_used_opsets(path: str) -> None:
    """Drop the opset imports no node uses: ONNX Runtime's saved optimized model declares every domain it knows
    (``ai.onnx.ml`` 5 ...), which older runtimes, e.g. FastDeploy 1.0.7's ONNX Runtime 1.12, refuse to load."""
    import onnx

    model = onnx.load(path)
    used = {node.domain for node in model.graph.node} | {""}
    kept = [o for o in model.opset_import if o.domain in used]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    onnx.save(model, path)


def write_int8_onnx(model_dir: str, vocab_size: int) -> dict:
    """Write ``model_dir/model.onnx`` (fp32, if absent) and ``model_dir/model.int8.onnx``; returns the
    deploy_config.json record ``{"model_file", "method", "reduce_range", "max_abs_logit_diff_random"}``."""
    QuantType, quantize_dynamic = _quantization_tools()
    fp32_path = os.path.join(model_dir, ONNX_FILE)
    if not os.path.isfile(fp32_path):
        onnx_bytes = convert_to_onnx(model_dir)
        with atomic_write(fp32_path) as f:
            f.write(onnx_bytes)
    reduce_range = not cpu_has_vnni()
    with tempfile.TemporaryDirectory(prefix="ernie-int8-") as tmp:
        folded = os.path.join(tmp, "folded.onnx")
        _session(fp32_path, optimized_path=folded)
        out = os.path.join(tmp, INT8_ONNX_FILE)
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # its "consider pre-processing" advice: step 2 is that pre-processing
        try:
            quantize_dynamic(
                folded,
                out,
                weight_type=QuantType.QInt8,
                per_channel=True,
                reduce_range=reduce_range,
                op_types_to_quantize=["MatMul"],
                extra_options={"MatMulConstBOnly": True},
            )
        finally:
            root.setLevel(level)
        _keep_used_opsets(out)
        feeds = padded_random_feeds(vocab_size, 4, 32)
        try:
            fp32 = _session(fp32_path).run(None, feeds)[0]
            int8 = _session(out).run(None, feeds)[0]
        except Exception as e:
            raise RuntimeError(f"the int8 model does not run in ONNX Runtime: {e}") from e
        with open(out, "rb") as src, atomic_write(os.path.join(model_dir, INT8_ONNX_FILE)) as dst:
            dst.write(src.read())
    return {
        "model_file": INT8_ONNX_FILE,
        "method": METHOD,
        "reduce_range": reduce_range,
        "max_abs_logit_diff_random": float(np.abs(fp32 - int8).max()),
    }
