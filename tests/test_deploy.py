"""Export to a static inference model and the two deployment backends (Paddle Inference, ONNX Runtime)."""

from __future__ import annotations

import os

import numpy as np
import pytest

paddle = pytest.importorskip("paddle")

from ernie.configuration import ErnieConfig  # noqa: E402
from ernie.deploy import export as E  # noqa: E402
from ernie.deploy import infer as I  # noqa: E402
from ernie.finetune.runner import save_model_dir  # noqa: E402
from ernie.modeling import ErnieForSequenceClassification, ErnieForTokenClassification  # noqa: E402
from ernie.tokenizer import ErnieTokenizer, write_tokenizer_files  # noqa: E402
from ernie.utils import UserError  # noqa: E402

SPECIAL = {
    "unk_token": "[UNK]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
}
TEXTS = ["这本书很好看，推荐购买", "质量太差了", "房间干净，服务不错，下次还来住", "一般"]
LABELS = ["negative", "positive"]


def tiny_config(vocab_size: int, num_labels: int) -> ErnieConfig:
    return ErnieConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=160,
        num_labels=num_labels,
    )


@pytest.fixture(scope="module")
def toy_tokenizer(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("vocab"))
    chars = sorted(set("".join(TEXTS)) | set("的是了我不在人有这个上们来到时大地为子中你说生国年着就那和要"))
    write_tokenizer_files(d, ["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]", *chars], True, SPECIAL)
    return ErnieTokenizer.from_pretrained(d)


@pytest.fixture(scope="module")
def seq_cls_export(toy_tokenizer, tmp_path_factory):
    """A random-init seq_cls model saved as a fine-tuned dir and exported (PIR format)."""
    paddle.seed(7)
    model = ErnieForSequenceClassification(tiny_config(toy_tokenizer.vocab_size, 2))
    model.eval()
    root = tmp_path_factory.mktemp("seq_cls")
    save_model_dir(model, toy_tokenizer, LABELS, str(root / "model"))
    out = E.export_model(model, toy_tokenizer, LABELS, str(root / "export"))
    return model, out


def batch(tokenizer, texts, max_length=32):
    enc = tokenizer.batch_encode(texts, max_length=max_length, padding=True, truncation=True, return_tensors="np")
    return {name: enc[name] for name in E.INPUT_NAMES}


def dygraph_logits(model, feeds):
    with paddle.no_grad():
        return model(
            paddle.to_tensor(feeds["input_ids"]), token_type_ids=paddle.to_tensor(feeds["token_type_ids"])
        ).numpy()


def test_export_layout(seq_cls_export):
    _, out = seq_cls_export
    files = set(os.listdir(out))
    assert {
        "model.json",
        "model.pdiparams",
        "vocab.txt",
        "tokenizer_config.json",
        "label.txt",
        "deploy_config.json",
    } <= files
    with open(os.path.join(out, "label.txt"), encoding="utf-8") as f:
        assert f.read().split() == LABELS


def test_paddle_inference_matches_dygraph_and_onnxruntime(seq_cls_export, toy_tokenizer):
    tokenizer = toy_tokenizer
    model, out = seq_cls_export
    feeds = batch(tokenizer, TEXTS)  # padded rows: the mask must come out of the program
    ref = dygraph_logits(model, feeds)
    pd_logits = I.PaddleBackend(out).run(feeds)
    assert pd_logits.shape == (len(TEXTS), 2)
    assert np.abs(pd_logits - ref).max() <= 1e-5
    ort_logits = I.OnnxRuntimeBackend(out).run(feeds)
    assert np.abs(ort_logits - pd_logits).max() <= 1e-4
    assert os.path.isfile(os.path.join(out, "model.onnx"))  # cached for the next run
    # dynamic shapes: another batch size and sequence length through the same predictors
    feeds1 = batch(tokenizer, TEXTS[:1], max_length=8)
    assert np.abs(I.PaddleBackend(out).run(feeds1) - dygraph_logits(model, feeds1)).max() <= 1e-5
    assert np.abs(I.OnnxRuntimeBackend(out).run(feeds1) - dygraph_logits(model, feeds1)).max() <= 1e-4


def test_token_classification_export(toy_tokenizer, tmp_path):
    tokenizer = toy_tokenizer
    paddle.seed(3)
    model = ErnieForTokenClassification(tiny_config(tokenizer.vocab_size, 7))
    model.eval()
    out = E.export_model(model, tokenizer, [str(i) for i in range(7)], str(tmp_path / "ner"), task="ner")
    feeds = batch(tokenizer, TEXTS)
    ref = dygraph_logits(model, feeds)
    pd_logits = I.PaddleBackend(out).run(feeds)
    assert pd_logits.shape == ref.shape == (len(TEXTS), feeds["input_ids"].shape[1], 7)
    assert np.abs(pd_logits - ref).max() <= 1e-5
    assert np.abs(I.OnnxRuntimeBackend(out).run(feeds) - pd_logits).max() <= 1e-4


class _ToyClassifier(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.emb = paddle.nn.Embedding(50, 8)
        self.out = paddle.nn.Linear(8, 2)

    def forward(self, input_ids, token_type_ids):
        return self.out((self.emb(input_ids) + self.emb(token_type_ids)).mean(1))


def test_legacy_pdmodel_export_is_loaded_by_both_backends(tmp_path):
    """A Paddle 2.x-style export (model.pdmodel + model.pdiparams) loads as well as Paddle 3's model.json."""
    paddle.seed(1)
    toy = _ToyClassifier()
    toy.eval()
    spec = [paddle.static.InputSpec([None, None], "int64", n) for n in E.INPUT_NAMES]
    with paddle.pir_utils.OldIrGuard():
        paddle.jit.save(paddle.jit.to_static(toy, input_spec=spec, full_graph=True), str(tmp_path / "model"))
    assert E.program_file(str(tmp_path)).endswith("model.pdmodel")
    feeds = {"input_ids": np.array([[1, 5, 9, 2], [1, 7, 2, 0]], dtype=np.int64)}
    feeds["token_type_ids"] = np.zeros_like(feeds["input_ids"])
    with paddle.no_grad():
        ref = toy(paddle.to_tensor(feeds["input_ids"]), paddle.to_tensor(feeds["token_type_ids"])).numpy()
    assert np.abs(I.PaddleBackend(str(tmp_path)).run(feeds) - ref).max() <= 1e-5
    assert np.abs(I.OnnxRuntimeBackend(str(tmp_path)).run(feeds) - ref).max() <= 1e-4


@pytest.mark.parametrize("backend", ["paddle", "onnxruntime"])
def test_seq_cls_infer_cli(seq_cls_export, tmp_path, capsys, backend):
    model, out = seq_cls_export
    inputs = tmp_path / "in.txt"
    inputs.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    results = I.main(
        [
            "--model_dir",
            out,
            "--backend",
            backend,
            "--batch_size",
            "3",
            "--max_length",
            "32",
            "--input_file",
            str(inputs),
        ]
    )
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("Data: ")]
    assert len(lines) == len(TEXTS) == len(results)
    for text, line, r in zip(TEXTS, lines, results):
        assert line == f"Data: {text} \t Label: {r['label']} \t Confidence: {r['confidence']:.4f}"
        assert r["label"] in LABELS and 0.5 <= r["confidence"] <= 1.0
    probs = np.exp(dygraph_logits(model, batch(tokenizer_of(out), TEXTS)))
    assert [r["label_id"] for r in results] == list(probs.argmax(-1))


def tokenizer_of(model_dir):
    return ErnieTokenizer.from_pretrained(model_dir)


def test_export_model_cli_refuses_existing_output(seq_cls_export, tmp_path, capsys):
    model_dir = os.path.join(os.path.dirname(seq_cls_export[1]), "model")
    out = str(tmp_path / "exp")
    E.main(["--model_path", model_dir, "--output_path", out])
    assert E.program_file(out) is not None
    with pytest.raises(SystemExit) as exc:
        E.main(["--model_path", model_dir, "--output_path", out])
    assert exc.value.code == 2 and "--overwrite" in capsys.readouterr().err
    E.main(["--model_path", model_dir, "--output_path", out, "--overwrite"])


@pytest.mark.parametrize("backend", ["paddle", "onnxruntime"])
def test_missing_or_corrupt_model_dir_is_a_clear_error(seq_cls_export, tmp_path, backend):
    _, out = seq_cls_export
    with pytest.raises(UserError, match="no such directory"):
        I.make_backend(str(tmp_path / "nope"), backend)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="model.json or model.pdmodel"):
        I.make_backend(str(empty), backend)
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    for name in ("model.json", "vocab.txt"):
        (truncated / name).write_bytes(open(os.path.join(out, name), "rb").read())
    (truncated / "model.pdiparams").write_bytes(open(os.path.join(out, "model.pdiparams"), "rb").read()[:1000])
    with pytest.raises(UserError, match="--model_dir"):
        I.make_backend(str(truncated), backend)
    assert not (truncated / "model.onnx").exists()  # a broken conversion is never cached
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "model.json").write_text("{garbage", encoding="utf-8")
    (garbage / "model.pdiparams").write_bytes(b"\0" * 64)
    with pytest.raises(UserError, match="--model_dir"):
        I.make_backend(str(garbage), backend)
