"""INT8 serving: ``export_model.py --quantize int8`` -> ``model.int8.onnx`` run by the ONNX Runtime predictors (and
FastDeploy's onnx_runtime backend), close to fp32; bad combinations are one error line.

Tolerance: INT8 rounds every GEMM's inputs to 8 bits, so logits move by up to a few percent of their spread. On
these tiny random-init models (classifier weights scaled so that logits spread over a few units) the int8 logits
must stay within 5 % of the fp32 logits' range, and the argmax must agree wherever fp32's top-2 margin exceeds
twice that.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

paddle = pytest.importorskip("paddle")
pytest.importorskip("onnxruntime.quantization")

from ernie.configuration import ErnieConfig  # noqa: E402
from ernie.deploy import export as E  # noqa: E402
from ernie.deploy import infer as I  # noqa: E402
from ernie.deploy.fastdeploy_infer import padded_random_feeds  # noqa: E402
from ernie.deploy.layout import INT8_ONNX_FILE, ONNX_FILE  # noqa: E402
from ernie.finetune.runner import save_model_dir  # noqa: E402
from ernie.modeling import ErnieForSequenceClassification, ErnieForTokenClassification  # noqa: E402
from ernie.tokenizer import ErnieTokenizer, write_tokenizer_files  # noqa: E402
from ernie.utils import UserError  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPECIAL = {
    "unk_token": "[UNK]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
}
TEXTS = ["这本书很好看，推荐购买", "质量太差了", "房间干净，服务不错，下次还来住", "一般", *I.EXAMPLE_TEXTS]
LABELS = ["negative", "neutral", "positive"]
REL_TOL = 0.05


def _tokenizer(directory: str) -> ErnieTokenizer:
    chars = sorted(set("".join(TEXTS)))
    write_tokenizer_files(directory, ["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]", *chars], True, SPECIAL)
    return ErnieTokenizer.from_pretrained(directory)


def _model(cls, vocab_size: int, num_labels: int):
    paddle.seed(3)
    config = ErnieConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=160,
        num_labels=num_labels,
    )
    model = cls(config)
    with paddle.no_grad():  # spread the logits over a few units, so that labels have clear margins
        model.classifier.weight.set_value(model.classifier.weight * 40.0)
    model.eval()
    return model


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """{"plain": fp32-only export, "int8": the same with --quantize int8} (both by export_model.py), model."""
    root = tmp_path_factory.mktemp("quant")
    tok = _tokenizer(str(root / "vocab"))
    model = _model(ErnieForSequenceClassification, tok.vocab_size, len(LABELS))
    save_model_dir(model, tok, LABELS, str(root / "model"))
    plain = E.main(["--model_path", str(root / "model"), "--output_path", str(root / "plain")])
    int8 = E.main(["--model_path", str(root / "model"), "--output_path", str(root / "int8"), "--quantize", "int8"])
    return {"plain": plain, "int8": int8, "root": root}, model


def _assert_close(fp32: np.ndarray, int8: np.ndarray) -> None:
    spread = float(fp32.max() - fp32.min())
    assert spread > 1.0, "logits too flat for a meaningful comparison"
    diff = float(np.abs(fp32 - int8).max())
    assert diff <= REL_TOL * spread, f"int8 logits {diff:.4f} off (fp32 range {spread:.3f})"
    top2 = np.sort(fp32, axis=-1)[..., -2:]
    clear = (top2[..., 1] - top2[..., 0]) > 2 * REL_TOL * spread
    assert clear.sum() >= 5, "too few clear-margin cases to compare labels"
    assert (fp32.argmax(-1) == int8.argmax(-1))[clear].all()


def test_int8_export_layout_and_fp32_files_unchanged(exports):
    dirs, _ = exports
    plain, int8 = dirs["plain"], dirs["int8"]
    assert INT8_ONNX_FILE not in os.listdir(plain) and ONNX_FILE not in os.listdir(plain)
    assert {INT8_ONNX_FILE, ONNX_FILE, "model.json", "model.pdiparams"} <= set(os.listdir(int8))
    with (
        open(os.path.join(plain, "model.pdiparams"), "rb") as a,
        open(os.path.join(int8, "model.pdiparams"), "rb") as b,
    ):
        assert a.read() == b.read()
    with open(os.path.join(plain, E.DEPLOY_CONFIG), encoding="utf-8") as f:
        cfg_plain = json.load(f)
    with open(os.path.join(int8, E.DEPLOY_CONFIG), encoding="utf-8") as f:
        cfg = json.load(f)
    assert cfg_plain["precisions"] == ["fp32"] and cfg_plain["int8"] is None
    assert cfg["precisions"] == ["fp32", "int8"] and cfg["int8"]["model_file"] == INT8_ONNX_FILE
    assert cfg["int8"]["max_abs_logit_diff_random"] > 0  # it is quantized, not a copy of the fp32 model


def test_int8_onnxruntime_close_to_fp32(exports):
    dirs, model = exports
    feeds = padded_random_feeds(model.config.vocab_size, 32, 48, seed=5)
    fp32 = I.OnnxRuntimeBackend(dirs["int8"]).run(feeds)
    ref = I.PaddleBackend(dirs["int8"]).run(feeds)
    assert np.abs(fp32 - ref).max() <= 1e-4  # the fp32 paths are untouched by --quantize
    int8 = I.OnnxRuntimeBackend(dirs["int8"], precision="int8").run(feeds)
    assert np.abs(fp32 - int8).max() > 0  # the int8 model, not the fp32 one
    _assert_close(fp32, int8)


def test_seq_cls_infer_precision_int8_labels(exports, capsys):
    dirs, _ = exports
    fp32 = I.SeqClsPredictor(dirs["int8"], "onnxruntime").predict(TEXTS)
    logits = I.SeqClsPredictor(dirs["int8"], "onnxruntime").logits(TEXTS)
    got = I.main(["--model_dir", dirs["int8"], "--backend", "onnxruntime", "--precision", "int8"])
    assert len(got) == len(I.EXAMPLE_TEXTS)
    assert "onnxruntime int8" in capsys.readouterr().err
    int8 = I.SeqClsPredictor(dirs["int8"], "onnxruntime", precision="int8").predict(TEXTS)
    top2 = np.sort(logits, -1)[:, -2:]
    for r32, r8, margin in zip(fp32, int8, top2[:, 1] - top2[:, 0]):
        if margin > 2 * REL_TOL * float(logits.max() - logits.min()):
            assert r32["label"] == r8["label"]


def test_int8_ner_export_close_to_fp32(tmp_path):
    tok = _tokenizer(str(tmp_path / "vocab"))
    model = _model(ErnieForTokenClassification, tok.vocab_size, 7)
    out = E.export_model(model, tok, [f"L{i}" for i in range(7)], str(tmp_path / "ner"), task="ner", quantize="int8")
    feeds = padded_random_feeds(tok.vocab_size, 4, 40, seed=2)
    fp32 = I.OnnxRuntimeBackend(out).run(feeds)
    int8 = I.OnnxRuntimeBackend(out, precision="int8").run(feeds)
    real = feeds["input_ids"] != 0  # padding positions are not compared
    _assert_close(fp32[real], int8[real])


def _one_error_line(argv: list[str], script: str = "seq_cls_infer.py") -> str:
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", script), *argv],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": REPO},
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return lines[0]


def test_bad_combinations_are_one_error_line(exports):
    dirs, _ = exports
    line = _one_error_line(["--model_dir", dirs["int8"], "--backend", "paddle", "--precision", "int8"])
    assert "--precision int8 --backend paddle" in line and "onnxruntime" in line
    line = _one_error_line(["--model_dir", dirs["plain"], "--backend", "onnxruntime", "--precision", "int8"])
    assert INT8_ONNX_FILE in line and "--quantize int8" in line
    with pytest.raises(UserError, match="--quantize int4"):
        E.export_model(None, None, [], str(dirs["root"] / "never"), quantize="int4")
    assert not (dirs["root"] / "never").exists()
    with pytest.raises(UserError, match="backend openvino"):
        I.check_precision(dirs["int8"], "openvino", "int8", int8_backend="onnx_runtime")


@pytest.mark.slow
def test_fastdeploy_onnx_runtime_runs_the_int8_model(exports, tmp_path):
    """FastDeploy 1.0.7's bundled ONNX Runtime runs model.int8.onnx (no legacy program needed) like ours."""
    from ernie.deploy import envs

    if envs.find_python("3.10") is None:
        pytest.skip("no Python 3.10 interpreter (fastdeploy-python 1.0.7 has wheels for CPython 3.8-3.10 only)")
    fd_python = envs.ensure_env("fastdeploy")
    dirs, model = exports
    feeds = padded_random_feeds(model.config.vocab_size, 8, 40, seed=9)
    np.savez(tmp_path / "feeds.npz", **{f"c/{k}": v for k, v in feeds.items()})
    proc = subprocess.run(
        [
            fd_python,
            "-m",
            "ernie.deploy.fastdeploy_infer",
            "--model_dir",
            dirs["int8"],
            "--feeds",
            str(tmp_path / "feeds.npz"),
            "--output",
            str(tmp_path / "out.npz"),
            "--backends",
            "onnx_runtime",
            "--precision",
            "int8",
        ],
        env=envs.child_env("fastdeploy"),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(tmp_path / "out.npz") as z:
        got = z["onnx_runtime/c"]
    fp32 = I.OnnxRuntimeBackend(dirs["int8"]).run(feeds)
    _assert_close(fp32, got)
    proc = subprocess.run(
        [
            fd_python,
            os.path.join(REPO, "scripts", "fastdeploy_seq_cls_infer.py"),
            "--model_dir",
            dirs["int8"],
            "--backend",
            "openvino",
            "--precision",
            "int8",
        ],
        env=envs.child_env("fastdeploy"),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and proc.stderr.count("error:") == 1, proc.stderr[-2000:]
    assert "--backend onnx_runtime" in proc.stderr
