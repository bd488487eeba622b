"""FastDeploy 1.0.7 runs our exports: the legacy model.pdmodel (Paddle 2.6 env) through FastDeploy's Paddle
Inference, ONNX Runtime and OpenVINO backends (Python 3.10 env) gives the logits of dygraph, Paddle Inference 3 and
ONNX Runtime, for seq_cls and NER, batch 1 and 32, lengths 8 and 128 (1e-4 for every backend, OpenVINO included:
the toolkit's environment sets its CPU plugin to f32, which it would otherwise leave at bf16 on CPUs with bf16
instructions; tests/test_openvino_precision.py covers that switch on both kinds of CPU).

The two environments are created once under the toolkit's cache dir (~/.cache/ernie-toolkit; ~1 min for Paddle 2.6,
~1.5 min for FastDeploy with a warm pip cache) and reused by later runs.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

paddle = pytest.importorskip("paddle")

from ernie.configuration import ErnieConfig  # noqa: E402
from ernie.deploy import envs  # noqa: E402
from ernie.deploy import export as E  # noqa: E402
from ernie.deploy import infer as I  # noqa: E402
from ernie.deploy.fastdeploy_infer import BACKENDS, NER_EXAMPLE_TEXTS, padded_random_feeds  # noqa: E402
from ernie.modeling import ErnieForSequenceClassification, ErnieForTokenClassification  # noqa: E402
from ernie.tokenizer import ErnieTokenizer, write_tokenizer_files  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPECIAL = {
    "unk_token": "[UNK]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
}
POS = ["这本书很好看，推荐购买", "房间干净，服务不错，下次还来住", "作为老的四星酒店，房间依然很整洁，相当不错。"]
NEG = ["质量太差了", "这个宾馆比较陈旧了，特价的房间也很一般。", "怀着十分激动的心情放映，可是看着看着发现不好看"]
NER_LABELS = ["B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "O"]
CASES = [(1, 8), (32, 8), (1, 128), (32, 128)]
TOL = 1e-4


class _Matmul(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.lin = paddle.nn.Linear(4, 4)

    def forward(self, x):
        return paddle.matmul(self.lin(x), x, transpose_y=True)


def test_paddle3_cannot_build_a_legacy_program_with_matmul(tmp_path):
    """Why model.pdmodel comes from a Paddle 2.6 environment (ernie/deploy/legacy_export.py)."""
    spec = [paddle.static.InputSpec([None, 4], "float32", "x")]
    layer = _Matmul()  # built in dygraph (as a fine-tuned model is); traced under the legacy IR
    with pytest.raises(TypeError, match="must be Value, but got Variable"):
        with paddle.pir_utils.OldIrGuard():
            paddle.jit.save(paddle.jit.to_static(layer, input_spec=spec, full_graph=True), str(tmp_path / "m"))
    assert not (tmp_path / "m.pdmodel").exists()


@pytest.fixture(scope="module")
def fd_python():
    if envs.find_python("3.10") is None:
        pytest.skip("no Python 3.10 interpreter (fastdeploy-python 1.0.7 has wheels for CPython 3.8-3.10 only)")
    envs.ensure_env("paddle26")
    return envs.ensure_env("fastdeploy")


def _tokenizer(directory: str) -> ErnieTokenizer:
    chars = sorted(set("".join(POS + NEG + NER_EXAMPLE_TEXTS + I.EXAMPLE_TEXTS)))
    write_tokenizer_files(directory, ["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]", *chars], True, SPECIAL)
    return ErnieTokenizer.from_pretrained(directory)


def _finetune(model, feeds: dict, labels: np.ndarray, steps: int = 30):
    """A few Adam steps so the logits are those of a trained model (clear margins), not of a random init."""
    model.train()
    opt = paddle.optimizer.AdamW(learning_rate=3e-3, parameters=model.parameters())
    for _ in range(steps):
        loss, _ = model(
            paddle.to_tensor(feeds["input_ids"]),
            token_type_ids=paddle.to_tensor(feeds["token_type_ids"]),
            labels=paddle.to_tensor(labels),
        )
        loss.backward()
        opt.step()
        opt.clear_grad()
    model.eval()
    return float(loss)


@pytest.fixture(scope="module")
def exports(fd_python, tmp_path_factory):
    """A briefly fine-tuned seq_cls and NER model, exported with the legacy program (the user's default)."""
    root = tmp_path_factory.mktemp("fd")
    tok = _tokenizer(str(root / "vocab"))

    def config(n):
        return ErnieConfig(
            vocab_size=tok.vocab_size,
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=128,
            max_position_embeddings=160,
            num_labels=n,
        )

    paddle.seed(11)
    texts = POS + NEG
    enc = tok.batch_encode(texts, max_length=64, padding=True, truncation=True, return_tensors="np")
    feeds = {k: enc[k] for k in E.INPUT_NAMES}
    seq_cls = ErnieForSequenceClassification(config(2))
    _finetune(seq_cls, feeds, np.array([1] * len(POS) + [0] * len(NEG)))
    ner = ErnieForTokenClassification(config(len(NER_LABELS)))
    tags = np.full(feeds["input_ids"].shape, NER_LABELS.index("O"))
    tags[:, 1:3] = [NER_LABELS.index("B-LOC"), NER_LABELS.index("I-LOC")]
    tags[feeds["input_ids"] == 0] = -100
    _finetune(ner, feeds, tags)
    mp = pytest.MonkeyPatch()
    mp.delenv("ERNIE_NO_LEGACY_EXPORT", raising=False)
    try:
        out = {
            "seq_cls": (seq_cls, E.export_model(seq_cls, tok, ["negative", "positive"], str(root / "seq_cls"))),
            "ner": (ner, E.export_model(ner, tok, NER_LABELS, str(root / "ner"), task="ner")),
        }
    finally:
        mp.undo()
    return out, tok


def _fastdeploy_logits(fd_python, model_dir: str, cases: dict, tmp_path) -> dict:
    feeds_file, out_file = tmp_path / "feeds.npz", tmp_path / "out.npz"
    np.savez(feeds_file, **{f"{case}/{k}": v for case, f in cases.items() for k, v in f.items()})
    proc = subprocess.run(
        [
            fd_python,
            "-m",
            "ernie.deploy.fastdeploy_infer",
            "--model_dir",
            model_dir,
            "--feeds",
            str(feeds_file),
            "--output",
            str(out_file),
        ],
        env=envs.child_env("fastdeploy"),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert proc.stderr.count("FastDeploy openvino: OpenVINO's CPU plugin computes in f32\n") == 1, proc.stderr[-3000:]
    with np.load(out_file) as z:
        return {k: z[k] for k in z.files}


def _assert_same_labels(ref: np.ndarray, got: np.ndarray, what: str) -> None:
    """Same argmax wherever the reference's top-2 margin exceeds what the tolerance could flip."""
    top2 = np.sort(ref, axis=-1)[..., -2:]
    clear = (top2[..., 1] - top2[..., 0]) > 2 * TOL
    assert clear.mean() > 0.9, f"{what}: too many near-ties to compare labels"
    assert (ref.argmax(-1) == got.argmax(-1))[clear].all(), what


@pytest.mark.slow
@pytest.mark.parametrize("task", ["seq_cls", "ner"])
def test_every_backend_gives_the_same_logits(exports, fd_python, task, tmp_path):
    (model, out), tok = exports[0][task], exports[1]
    files = set(os.listdir(out))
    assert {"model.json", "model.pdmodel", "model.pdiparams"} <= files and "model.legacy.pdiparams" not in files
    cases = {f"b{b}_s{s}": padded_random_feeds(tok.vocab_size, b, s, seed=b * 1000 + s) for b, s in CASES}
    fd = _fastdeploy_logits(fd_python, out, cases, tmp_path)
    pi3, ort = I.PaddleBackend(out), I.OnnxRuntimeBackend(out)
    for case, feeds in cases.items():
        with paddle.no_grad():
            ref = model(
                paddle.to_tensor(feeds["input_ids"]), token_type_ids=paddle.to_tensor(feeds["token_type_ids"])
            ).numpy()
        results = {
            "paddle_inference_3": pi3.run(feeds),
            "onnxruntime": ort.run(feeds),
            **{f"fastdeploy_{b}": fd[f"{b}/{case}"] for b in BACKENDS},
        }
        for name, got in results.items():
            what = f"{task} {case} {name}"
            assert got.shape == ref.shape, what
            assert np.abs(got - ref).max() <= TOL, f"{what}: max diff {np.abs(got - ref).max():.2e}"
            _assert_same_labels(ref, got, what)


@pytest.mark.slow
def test_deployment_scripts_print_what_seq_cls_infer_prints(exports, fd_python, tmp_path):
    """The user's view: scripts/fastdeploy_seq_cls_infer.py on every backend prints the lines of
    scripts/seq_cls_infer.py; the token-classification script prints one line per input."""
    (_, seq_out), (_, ner_out) = exports[0]["seq_cls"], exports[0]["ner"]
    inputs = tmp_path / "in.txt"
    inputs.write_text("\n".join(POS + NEG) + "\n", encoding="utf-8")
    common = ["--batch_size", "4", "--max_length", "32", "--input_file", str(inputs)]
    ref = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "seq_cls_infer.py"), "--model_dir", seq_out, *common],
        capture_output=True,
        text=True,
    )
    assert ref.returncode == 0, ref.stderr[-2000:]
    ref_lines = [ln for ln in ref.stdout.splitlines() if ln.startswith("Data: ")]
    assert len(ref_lines) == len(POS + NEG)
    assert [ln.split("Label: ")[1].split()[0] for ln in ref_lines] == ["positive"] * len(POS) + ["negative"] * len(NEG)
    for backend in BACKENDS:
        proc = subprocess.run(
            [
                fd_python,
                os.path.join(REPO, "scripts", "fastdeploy_seq_cls_infer.py"),
                "--model_dir",
                seq_out,
                "--backend",
                backend,
                *common,
            ],
            env=envs.child_env("fastdeploy"),
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert [ln for ln in proc.stdout.splitlines() if ln.startswith("Data: ")] == ref_lines, backend
    proc = subprocess.run(
        [
            fd_python,
            os.path.join(REPO, "scripts", "fastdeploy_token_cls_infer.py"),
            "--model_dir",
            ner_out,
            "--backend",
            "openvino",
        ],
        env=envs.child_env("fastdeploy"),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr.count("computes in f32") == 1, proc.stderr[-2000:]  # said once, and f32 on any CPU
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("Data: ")]
    assert [ln.split(" \t ")[0][len("Data: ") :] for ln in lines] == NER_EXAMPLE_TEXTS
    assert all("/LOC" in ln for ln in lines)  # the model learnt: the first two characters are a LOC entity


@pytest.mark.slow
def test_missing_legacy_program_or_wrong_task_is_one_clear_error(exports, fd_python, tmp_path):
    (_, out) = exports[0]["seq_cls"]
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("model.json", "model.pdiparams", "vocab.txt", "tokenizer_config.json", "label.txt"):
        (bare / name).write_bytes(open(os.path.join(out, name), "rb").read())
    proc = subprocess.run(
        [fd_python, os.path.join(REPO, "scripts", "fastdeploy_seq_cls_infer.py"), "--model_dir", str(bare)],
        env=envs.child_env("fastdeploy"),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: --model_dir") and "model.pdmodel" in proc.stderr
    proc = subprocess.run(
        [fd_python, os.path.join(REPO, "scripts", "fastdeploy_token_cls_infer.py"), "--model_dir", out],
        env=envs.child_env("fastdeploy"),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "a seq_cls export" in proc.stderr.strip().splitlines()[-1]
