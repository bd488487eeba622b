"""ErnieConfig + the model: shapes, masks, heads, checkpoints, fast CPU kernels, recompute, low-precision paths."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

paddle = pytest.importorskip("paddle")
import paddle.nn as nn  # noqa: E402
import paddle.nn.functional as F  # noqa: E402

from ernie import (  # noqa: E402
    ErnieConfig,
    ErnieForMaskedLM,
    ErnieForPretraining,
    ErnieForQuestionAnswering,
    ErnieForSequenceClassification,
    ErnieForTokenClassification,
    ErnieModel,
    ErniePretrainingCriterion,
    modeling,
    ops,
)
from ernie.utils import UserError  # noqa: E402

V, S, B = 64, 12, 3


def tiny_config(**kw) -> ErnieConfig:
    base = dict(
        vocab_size=V,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        hidden_act="gelu",
    )
    base.update(kw)
    return ErnieConfig(**base)


def batch(seed=0, pad_from=8):
    rs = np.random.RandomState(seed)
    ids = rs.randint(1, V, (B, S))
    ids[-1, pad_from:] = 0
    seg = (np.arange(S)[None] >= S // 2).repeat(B, 0)
    positions = np.array([1, 3, S + 2, S + 5, 2 * S + 1, 0])  # last one is padding (label -1)
    labels = np.array([5, 6, 7, 8, 9, -1])
    nsp = np.array([0, 1, 1])
    return {
        k: paddle.to_tensor(v.astype("int64"))
        for k, v in dict(ids=ids, seg=seg, pos=positions, labels=labels, nsp=nsp).items()
    }


# ---- config ---------------------------------------------------------------------------------------------------------
def test_config_shipped_names_and_roundtrip(tmp_path):
    base = ErnieConfig.from_pretrained("ernie-1.0-base-zh")
    assert (base.num_hidden_layers, base.hidden_size, base.num_attention_heads) == (12, 768, 12)
    assert (base.vocab_size, base.max_position_embeddings, base.type_vocab_size) == (18000, 513, 2)
    large = ErnieConfig.from_pretrained("ernie-1.0-large-zh")
    assert (large.num_hidden_layers, large.hidden_size, large.num_attention_heads) == (24, 1024, 16)
    tiny = ErnieConfig.from_pretrained("ernie-tiny-cpu", vocab_size=1234)
    assert (tiny.num_hidden_layers, tiny.hidden_size, tiny.vocab_size) == (4, 256, 1234)
    tiny.save_pretrained(tmp_path)
    d = json.loads((tmp_path / "config.json").read_text())
    assert d["hidden_size"] == 256 and d["layer_norm_eps"] == 1e-12 and d["model_type"] == "ernie"
    assert ErnieConfig.from_pretrained(tmp_path) == tiny
    assert ErnieConfig.from_file(tmp_path / "model_config.json") == tiny


def test_config_errors_and_legacy_format(tmp_path):
    with pytest.raises(UserError, match="not a checkpoint directory"):
        ErnieConfig.from_pretrained(tmp_path / "nope")
    with pytest.raises(UserError, match="no config.json"):
        ErnieConfig.from_pretrained(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "hidden_size": 16,\n  oops\n}')
    with pytest.raises(UserError, match=r"bad.json:3"):
        ErnieConfig.from_file(bad)
    bad.write_text('{"hidden_size": "big"}')
    with pytest.raises(UserError, match="hidden_size"):
        ErnieConfig.from_file(bad)
    with pytest.raises(UserError, match="multiple of num_attention_heads"):
        ErnieConfig(hidden_size=10, num_attention_heads=3)
    legacy = tmp_path / "model_config.json"
    legacy.write_text(
        json.dumps(
            {
                "init_class": "ErnieForPretraining",
                "init_args": [
                    {"init_class": "ErnieModel", "vocab_size": 99, "hidden_size": 16, "num_attention_heads": 2}
                ],
            }
        )
    )
    cfg = ErnieConfig.from_pretrained(tmp_path)
    assert (cfg.vocab_size, cfg.hidden_size) == (99, 16)


# ---- model ----------------------------------------------------------------------------------------------------------
def test_heads_shapes_and_init():
    paddle.seed(1)
    cfg = tiny_config(num_labels=5)
    b = batch()
    model = ErnieForPretraining(cfg)
    model.eval()
    scores, sop = model(b["ids"], b["seg"], masked_positions=b["pos"])
    assert scores.shape == [6, V] and sop.shape == [B, 2]
    full = ErnieForMaskedLM(cfg)
    assert full(b["ids"]).shape == [B, S, V]
    assert ErnieForSequenceClassification(cfg)(b["ids"]).shape == [B, 5]
    assert ErnieForTokenClassification(cfg)(b["ids"]).shape == [B, S, 5]
    start, end = ErnieForQuestionAnswering(cfg)(b["ids"])
    assert start.shape == [B, S] and end.shape == [B, S]
    seq, pooled = ErnieModel(cfg)(b["ids"])
    assert seq.shape == [B, S, 16] and pooled.shape == [B, 16]
    # decoder tied to the word embeddings; LayerNorm eps 1e-12; truncated-normal(0.02) init
    assert model.cls.predictions.decoder.weight is model.ernie.embeddings.word_embeddings.weight
    assert all(ln._epsilon == 1e-12 for ln in model.sublayers() if isinstance(ln, nn.LayerNorm))
    w = model.ernie.encoder.layers[0].linear1.weight.numpy()
    assert abs(w.std() - 0.02) < 0.006 and np.abs(w).max() <= 0.04 + 1e-6


def test_sinusoidal_position_init(tmp_path):
    """position_embedding_init "sinusoidal[:RMS]": the sin/cos table at that root-mean-square as the starting position
    embeddings, every other weight drawn exactly as with the normal init; kept in config.json; bad values refused."""
    paddle.seed(3)
    normal = ErnieModel(tiny_config())
    paddle.seed(3)
    sin = ErnieModel(tiny_config(position_embedding_init="sinusoidal"))
    table = sin.embeddings.position_embeddings.weight.numpy()
    assert table.shape == (32, 16) and abs(np.sqrt(np.mean(table**2)) - 0.1) < 1e-6
    # the Transformer's table (Vaswani et al.): PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(the same)
    p, i = 5, 3
    ratio = 0.1 / np.sqrt(0.5)  # each column pair (sin^2 + cos^2 = 1) has mean square 1/2
    assert np.isclose(table[p, 2 * i], ratio * np.sin(p / 10000 ** (2 * i / 16)), atol=1e-6)
    assert np.isclose(table[p, 2 * i + 1], ratio * np.cos(p / 10000 ** (2 * i / 16)), atol=1e-6)
    # rows nearer each other are more alike: the locality an attention head can use from step one
    wide = modeling.sinusoidal_positions(64, 128, 0.1)  # the demo model's width
    dots = [float(wide[10] @ wide[10 + d]) for d in range(4)]
    assert dots == sorted(dots, reverse=True) and dots[3] > max(float(wide[10] @ wide[j]) for j in range(30, 64))
    others = {k: v.numpy() for k, v in sin.state_dict().items() if "position_embeddings" not in k}
    assert all(np.array_equal(v, normal.state_dict()[k].numpy()) for k, v in others.items())
    assert not np.allclose(normal.embeddings.position_embeddings.weight.numpy(), table)
    scaled = ErnieModel(tiny_config(position_embedding_init="sinusoidal:0.5")).embeddings.position_embeddings.weight
    assert np.allclose(scaled.numpy(), 5 * table, atol=1e-6)
    cfg = tiny_config(position_embedding_init="sinusoidal:0.5")
    cfg.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["position_embedding_init"] == "sinusoidal:0.5"
    assert ErnieConfig.from_pretrained(tmp_path) == cfg
    for bad in ("sine", "sinusoidal:", "sinusoidal:0", "sinusoidal:-1", "sinusoidal:nan", "normal:0.1"):
        with pytest.raises(UserError, match="position_embedding_init"):
            tiny_config(position_embedding_init=bad)


def test_masks_equivalent_and_padding_invariant():
    paddle.seed(2)
    model = ErnieModel(tiny_config())
    model.eval()
    b = batch()
    ref, _ = model(b["ids"], b["seg"])
    two_d = (b["ids"] != 0).astype("int64")
    out2, _ = model(b["ids"], b["seg"], attention_mask=two_d)
    bias = ((1.0 - two_d.astype("float32")) * -1e4).unsqueeze([1, 2])
    out4, _ = model(b["ids"], b["seg"], attention_mask=bias)
    np.testing.assert_allclose(out2.numpy(), ref.numpy(), atol=1e-6)
    np.testing.assert_allclose(out4.numpy(), ref.numpy(), atol=1e-6)
    # appending padding changes nothing at the real positions
    ids = paddle.concat([b["ids"], paddle.zeros([B, 4], dtype="int64")], axis=1)
    seg = paddle.concat([b["seg"], paddle.zeros([B, 4], dtype="int64")], axis=1)
    longer, _ = model(ids, seg)
    np.testing.assert_allclose(longer.numpy()[0, :S], ref.numpy()[0], atol=1e-5)
    # a fully masked row stays finite (lowest finite value, not -inf)
    out, _ = model(b["ids"], attention_mask=paddle.zeros([B, S], dtype="int64"))
    assert np.isfinite(out.numpy()).all()


def test_criterion_ignores_minus_one_and_binary_head_off():
    scores = paddle.to_tensor(np.random.RandomState(0).randn(4, V).astype("float32"))
    sop = paddle.to_tensor(np.random.RandomState(1).randn(2, 2).astype("float32"))
    labels = paddle.to_tensor([3, -1, 7, -1])
    nsp = paddle.to_tensor([1, 0])
    loss, lm, so = ErniePretrainingCriterion()(scores, sop, labels, nsp)
    expect_lm = F.cross_entropy(paddle.gather(scores, paddle.to_tensor([0, 2])), paddle.to_tensor([[3], [7]]))
    assert abs(float(lm) - float(expect_lm)) < 1e-6
    assert abs(float(loss) - float(lm) - float(so)) < 1e-6
    loss2, lm2, so2 = ErniePretrainingCriterion(with_nsp_loss=False)(scores, sop, labels)
    assert float(loss2) == float(lm2) == float(lm) and float(so2) == 0.0


def test_task_losses():
    paddle.seed(3)
    cfg = tiny_config(num_labels=3)
    b = batch()
    loss, logits = ErnieForSequenceClassification(cfg)(b["ids"], labels=paddle.to_tensor([0, 2, 1]))
    assert loss.shape == [] or loss.shape == [1]
    tags = paddle.to_tensor(np.where(b["ids"].numpy() == 0, -100, 1))
    loss, _ = ErnieForTokenClassification(cfg)(b["ids"], labels=tags)
    assert np.isfinite(float(loss))


# ---- checkpoints ----------------------------------------------------------------------------------------------------
def test_save_load_roundtrip_and_reports(tmp_path):
    paddle.seed(4)
    cfg = tiny_config()
    model = ErnieForPretraining(cfg)
    model.eval()
    b = batch()
    ref = model(b["ids"], b["seg"], masked_positions=b["pos"])[0].numpy()
    model.save_pretrained(tmp_path / "ck")
    assert sorted(os.listdir(tmp_path / "ck")) == ["config.json", "model_config.json", "model_state.pdparams"]
    names = set(paddle.load(str(tmp_path / "ck" / "model_state.pdparams")))
    assert {
        "cls.predictions.decoder_bias",
        "cls.predictions.decoder.weight",
        "ernie.encoder.layers.1.self_attn.q_proj.weight",
        "ernie.encoder.layers.0.norm2.bias",
    } <= names
    loaded = ErnieForPretraining.from_pretrained(tmp_path / "ck")
    assert loaded.load_report == {"missing": [], "unexpected": []}
    np.testing.assert_array_equal(loaded(b["ids"], b["seg"], masked_positions=b["pos"])[0].numpy(), ref)

    # pretraining checkpoint -> task model: heads reported by name, encoder shared
    with pytest.warns(UserWarning, match="classifier.weight"):
        cls_model = ErnieForSequenceClassification.from_pretrained(tmp_path / "ck", num_labels=4)
    assert "cls.seq_relationship.weight" in cls_model.load_report["unexpected"]
    np.testing.assert_array_equal(cls_model.ernie.pooler.dense.weight.numpy(), model.ernie.pooler.dense.weight.numpy())
    # bare ErnieModel loads it too (prefix stripped)
    bare = ErnieModel.from_pretrained(tmp_path / "ck")
    np.testing.assert_array_equal(
        bare.embeddings.word_embeddings.weight.numpy(), model.ernie.embeddings.word_embeddings.weight.numpy()
    )

    with pytest.raises(UserError, match="word_embeddings.weight: checkpoint"):
        ErnieForPretraining.from_pretrained(tmp_path / "ck", vocab_size=V + 1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no config.json"):
        ErnieForPretraining.from_pretrained(tmp_path / "empty")
    cfg.save_pretrained(tmp_path / "cfg_only")
    with pytest.raises(UserError, match="no model_state.pdparams"):
        ErnieForPretraining.from_pretrained(tmp_path / "cfg_only")
    fresh = ErnieForPretraining.from_pretrained("ernie-mini-cpu", vocab_size=V)  # a shipped name: fresh init
    assert fresh.config.hidden_size == 128


# ---- fast CPU kernels, recompute, training ------------------------------------------------------------------------
def test_fast_kernels_match_stock_ops():
    rs = np.random.RandomState(0)
    x0 = rs.randn(2, 5, 8).astype("float32")
    w0 = rs.randn(8, 6).astype("float32")
    b0 = rs.randn(6).astype("float32")
    g0 = rs.randn(2, 5, 6).astype("float32")

    def run(fn, transpose=False):
        x, w, b = (paddle.to_tensor(a, stop_gradient=False) for a in (x0, w0.T.copy() if transpose else w0, b0))
        y = fn(x, w, b)
        y.backward(paddle.to_tensor(g0))
        return y.numpy(), x.grad.numpy(), w.grad.numpy(), b.grad.numpy()

    ref = run(lambda x, w, b: F.linear(x, w, b))
    for got, exp in zip(run(modeling.linear), ref):
        np.testing.assert_allclose(got, exp, rtol=1e-5, atol=1e-5)
    got_t = run(lambda x, w, b: modeling.linear(x, w, b, transpose_w=True), transpose=True)
    np.testing.assert_allclose(got_t[2], ref[2].T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_t[3], ref[3], rtol=1e-5, atol=1e-5)

    r = paddle.to_tensor(rs.randn(5, 8).astype("float32"), stop_gradient=False)
    x = paddle.to_tensor(x0, stop_gradient=False)
    modeling.add_broadcast(x, r).sum().backward()
    np.testing.assert_allclose(r.grad.numpy(), np.full((5, 8), 2.0), atol=1e-6)

    bias = paddle.to_tensor(rs.randn(2, 1, 8).astype("float32"))  # an attention-bias-like broadcast in the middle
    np.testing.assert_array_equal(modeling.add_expanded(x, bias).numpy(), (x + bias).numpy())


def test_layer_norm_fast_backward_matches_stock():
    """ops.LayerNorm: Paddle's forward, the GEMV/elementwise backward; same output and gradients as nn.LayerNorm,
    same parameter names, and the stock op wherever the fast path does not apply (eval output is the same too)."""
    rs = np.random.RandomState(1)
    x0 = (rs.randn(3, 7, 32) * 3 + 1).astype("float32")
    g0 = rs.randn(3, 7, 32).astype("float32")
    w0, b0 = (rs.rand(32) + 0.5).astype("float32"), rs.randn(32).astype("float32")

    def run(layer):
        layer.weight.set_value(w0)
        layer.bias.set_value(b0)
        x = paddle.to_tensor(x0, stop_gradient=False)
        y = layer(x)
        y.backward(paddle.to_tensor(g0))
        return y.numpy(), x.grad.numpy(), layer.weight.grad.numpy(), layer.bias.grad.numpy()

    fast, stock = modeling.LayerNorm(32, epsilon=1e-12), nn.LayerNorm(32, epsilon=1e-12)
    assert [n for n, _ in fast.named_parameters()] == [n for n, _ in stock.named_parameters()]
    for got, exp, name in zip(run(fast), run(stock), ("y", "dx", "dweight", "dbias")):
        np.testing.assert_allclose(got, exp, rtol=1e-4, atol=1e-5, err_msg=name)


def test_dropout_rate_scale_and_seed():
    x = paddle.ones([200, 500])
    x.stop_gradient = False
    paddle.seed(7)
    a = modeling.dropout(x, 0.1, training=True).numpy()
    paddle.seed(7)
    b = modeling.dropout(x, 0.1, training=True).numpy()
    np.testing.assert_array_equal(a, b)
    assert abs((a == 0).mean() - 0.1) < 0.005
    np.testing.assert_allclose(np.unique(a), [0.0, 1 / 0.9], rtol=1e-6)
    assert modeling.dropout(x, 0.1, training=False) is x


def test_dropout_gradient_is_the_mask():
    """The CPU dropout keeps only a bool mask for its backward: the gradient is keep / (1 - p), exactly."""
    x = paddle.randn([64, 96])
    x.stop_gradient = False
    y = modeling.dropout(x, 0.25, training=True)
    y.sum().backward()
    mask = np.where(y.numpy() != 0, np.float32(1 / 0.75), np.float32(0))
    np.testing.assert_array_equal(x.grad.numpy(), mask)
    np.testing.assert_array_equal(y.numpy(), x.numpy() * mask)


def _held_mb(fn):
    """(fn's outputs, MB of Paddle tensors still held once it returned: outputs and what their backward keeps)."""
    from paddle.base import core

    before = core.host_memory_stat_current_value("Allocated", 0)
    out = fn()
    return out, (core.host_memory_stat_current_value("Allocated", 0) - before) / 2**20


def _out_and_grads(fn, inputs, g):
    out, held = _held_mb(lambda: fn(*inputs))
    out.backward(g)
    return [out.numpy()] + [t.grad.numpy() for t in inputs], held


def test_dropout_matmul_is_dropout_then_matmul_keeping_less():
    """The attention's dropout into its matmul with the values: the same mask, output and gradients, bit for bit, as
    modeling.dropout then matmul; the dropped-out probabilities are not held for the backward."""
    rs = np.random.RandomState(3)
    x0, v0 = rs.rand(2, 4, 64, 64).astype("float32"), rs.randn(2, 4, 64, 16).astype("float32")
    g = paddle.to_tensor(rs.randn(2, 4, 64, 16).astype("float32"))
    runs = []
    for fn in (
        lambda x, v: ops.dropout_matmul(x, v, 0.1, True),
        lambda x, v: paddle.matmul(ops.dropout(x, 0.1, True), v),
    ):
        paddle.seed(11)
        x, v = paddle.to_tensor(x0, stop_gradient=False), paddle.to_tensor(v0, stop_gradient=False)
        runs.append(_out_and_grads(fn, (x, v), g))
    (fused, fused_mb), (plain, plain_mb) = runs
    for a, b in zip(fused, plain):
        np.testing.assert_array_equal(a, b)
    assert plain_mb - fused_mb >= 0.99 * x0.nbytes / 2**20  # one [B, heads, S, S] fp32 tensor less
    paddle.seed(11)
    eval_out = ops.dropout_matmul(paddle.to_tensor(x0), paddle.to_tensor(v0), 0.1, False)  # eval: plain matmul
    np.testing.assert_array_equal(eval_out.numpy(), paddle.matmul(paddle.to_tensor(x0), paddle.to_tensor(v0)).numpy())


def test_linear_rebuild_weight_same_gradients_keeping_less():
    """linear with a computed weight and rebuild_weight (the attention's concatenated q/k/v weight): the same output
    and gradients, bit for bit, reaching the parameters the weight is computed from; the weight is not held."""
    rs = np.random.RandomState(4)
    x0, a0, b0 = rs.randn(4, 32, 64).astype("float32"), rs.randn(64, 64).astype("float32"), rs.randn(64, 64)
    bias0 = rs.randn(128).astype("float32")
    g = paddle.to_tensor(rs.randn(4, 32, 128).astype("float32"))
    runs = []
    for rebuild in (True, False):
        x, a = paddle.to_tensor(x0, stop_gradient=False), paddle.to_tensor(a0, stop_gradient=False)
        b, bias = (
            paddle.to_tensor(b0.astype("float32"), stop_gradient=False),
            paddle.to_tensor(bias0, stop_gradient=False),
        )

        def weight(a=a, b=b):
            return paddle.concat([a * 0.125, b], axis=1)

        runs.append(
            _out_and_grads(
                lambda x, a, b, bias, r=(weight if rebuild else None): ops.linear(x, weight(), bias, rebuild_weight=r),
                (x, a, b, bias),
                g,
            )
        )
    (rebuilt, rebuilt_mb), (kept, kept_mb) = runs
    for got, exp in zip(rebuilt, kept):
        np.testing.assert_array_equal(got, exp)
    assert kept_mb - rebuilt_mb >= 0.99 * (a0.nbytes + a0.nbytes) / 2**20  # the [64, 128] weight is not held


def _grads(model, b, seed):
    paddle.seed(seed)
    scores, sop = model(b["ids"], b["seg"], masked_positions=b["pos"])
    loss = ErniePretrainingCriterion()(scores, sop, b["labels"], b["nsp"])[0]
    loss.backward()
    out = {n: p.grad.numpy().copy() for n, p in model.named_parameters() if p.grad is not None}
    model.clear_gradients()
    return float(loss), out


def test_recompute_gradients_equal_plain():
    paddle.seed(5)
    cfg = tiny_config()  # dropout on: recompute must replay the same masks
    plain = ErnieForPretraining(cfg)
    plain.train()
    rec = ErnieForPretraining(cfg.replace(use_recompute=True))
    rec.set_state_dict(plain.state_dict())
    rec.train()
    b = batch()
    loss_p, gp = _grads(plain, b, seed=11)
    loss_r, gr = _grads(rec, b, seed=11)
    assert loss_p == pytest.approx(loss_r, abs=1e-6)
    assert gp.keys() == gr.keys()
    for n in gp:
        np.testing.assert_allclose(gr[n], gp[n], rtol=1e-5, atol=1e-6, err_msg=n)


def test_frozen_parameters_get_no_gradient_and_leave_the_others_unchanged():
    """Freezing weights (embeddings, a LayerNorm scale, a dense weight) works on the CPU fast path, whose PyLayers
    must return None for inputs that need no gradient; the other gradients are those of the unfrozen model."""
    paddle.seed(5)
    cfg = tiny_config()
    full = ErnieForPretraining(cfg)
    full.train()
    part = ErnieForPretraining(cfg)
    part.set_state_dict(full.state_dict())
    part.train()
    frozen = {
        "ernie.embeddings.word_embeddings.weight",
        "ernie.embeddings.position_embeddings.weight",
        "ernie.embeddings.token_type_embeddings.weight",
        "ernie.embeddings.layer_norm.weight",
        "ernie.encoder.layers.0.norm1.weight",
        "ernie.encoder.layers.1.linear1.weight",
    }
    for name, p in part.named_parameters():
        p.stop_gradient = name in frozen
    b = batch()
    _, g_full = _grads(full, b, seed=11)
    _, g_part = _grads(part, b, seed=11)
    assert frozen & set(g_part) == set() and frozen < set(g_full)
    assert set(g_part) == set(g_full) - frozen - {"cls.predictions.decoder.weight"}  # tied to the word embeddings
    for n in g_part:
        np.testing.assert_allclose(g_part[n], g_full[n], rtol=1e-5, atol=1e-6, err_msg=n)


def test_trains_a_few_steps():
    paddle.seed(6)
    model = ErnieForPretraining(tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    model.train()
    opt = paddle.optimizer.AdamW(1e-2, parameters=model.parameters(), weight_decay=0.01)
    crit = ErniePretrainingCriterion()
    b = batch()
    losses = []
    for _ in range(15):
        scores, sop = model(b["ids"], b["seg"], masked_positions=b["pos"])
        loss = crit(scores, sop, b["labels"], b["nsp"])[0]
        loss.backward()
        opt.step()
        opt.clear_grad()
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0]


# ---- low precision ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_attention_bias_uses_dtype_lowest(dtype):
    keep = paddle.to_tensor([[True, False]])
    bias = modeling.attention_bias(keep, dtype).astype("float32").numpy()
    assert bias[0, 0] == 0.0
    assert np.isfinite(bias[0, 1]) and bias[0, 1] == pytest.approx(float(paddle.finfo(getattr(paddle, dtype)).min))


@pytest.mark.parametrize("level", ["O1", "O2"])
def test_amp_bf16_api_path_on_cpu(level):
    """auto_cast + decorate (bf16) forward/backward. Paddle 3.3 makes both no-ops on CPU (and registers no CPU
    bf16 kernels for add/matmul/softmax/layer_norm), so on CPU this exercises the AMP API path and the fp32 loss
    upcast; on a GPU the same test runs the real bf16 kernels (hence the bf16 tolerance)."""
    paddle.seed(8)
    cfg = tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    ref_model = ErnieForPretraining(cfg)
    model = ErnieForPretraining(cfg)
    model.set_state_dict(ref_model.state_dict())
    opt = paddle.optimizer.AdamW(1e-3, parameters=model.parameters(), multi_precision=True)
    model, opt = paddle.amp.decorate(model, opt, level=level, dtype="bfloat16")
    b = batch()
    ref_loss = ErniePretrainingCriterion()(
        *ref_model(b["ids"], b["seg"], masked_positions=b["pos"]), b["labels"], b["nsp"]
    )[0]
    with paddle.amp.auto_cast(level=level, dtype="bfloat16"):
        scores, sop = model(b["ids"], b["seg"], masked_positions=b["pos"])
        loss, lm, so = ErniePretrainingCriterion()(scores, sop, b["labels"], b["nsp"])
    assert loss.dtype == paddle.float32
    loss.backward()
    opt.step()
    assert float(loss) == pytest.approx(float(ref_loss), rel=3e-2)
    assert all(np.isfinite(p.numpy().astype("float32")).all() for p in model.parameters())


def test_bf16_rounded_weights_stay_close():
    """Stand-in for bf16 numerics on CPU: weights rounded to bf16 (O2 storage) change outputs only at bf16 scale."""
    paddle.seed(9)
    model = ErnieForPretraining(tiny_config())
    model.eval()
    b = batch()
    ref = model(b["ids"], b["seg"], masked_positions=b["pos"])[0].numpy()
    for p in model.parameters():
        p.set_value(p.astype("bfloat16").astype("float32"))
    got = model(b["ids"], b["seg"], masked_positions=b["pos"])[0].numpy()
    assert np.abs(got - ref).max() < 0.05 * np.abs(ref).max()


def test_sdpa_attention_path_matches_explicit():
    """--attention sdpa (F.scaled_dot_product_attention, scale=None, unscaled q) gives the eager outputs.

    In eval mode, with padding.
    """
    paddle.seed(10)
    model = ErnieModel(tiny_config())
    model.eval()
    b = batch()
    ref, _ = model(b["ids"], b["seg"])
    for layer in model.encoder.layers:
        layer.self_attn.attention = "sdpa"
    try:
        got, _ = model(b["ids"], b["seg"])
    except (RuntimeError, ValueError, NotImplementedError) as e:  # no CPU kernel in this Paddle build
        pytest.skip(f"scaled_dot_product_attention unavailable on CPU: {e}")
    np.testing.assert_allclose(got.numpy(), ref.numpy(), atol=1e-5)
