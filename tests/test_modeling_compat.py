"""Weights move both ways between PaddleNLP 2.8.1 and ernie.modeling with the same outputs (and gradients)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.compat

paddle = pytest.importorskip("paddle")
pnlp = pytest.importorskip("paddlenlp.transformers")

import paddle.nn.functional as F  # noqa: E402

import ernie  # noqa: E402

TOL = 1e-5
KW = dict(
    vocab_size=120,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=64,
    type_vocab_size=2,
    hidden_act="relu",
    pad_token_id=0,
)


def inputs():
    rs = np.random.RandomState(0)
    ids = rs.randint(1, KW["vocab_size"], (3, 20))
    ids[2, 13:] = 0
    seg = (np.arange(20)[None] >= 9).repeat(3, 0)
    pos = np.array([1, 4, 20 + 3, 20 + 11, 40 + 2, 40 + 7])
    return [paddle.to_tensor(a.astype("int64")) for a in (ids, seg, pos)]


def max_diff(a, b):
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


def paddlenlp_model(cls_name, **extra):
    paddle.seed(0)
    return getattr(pnlp, cls_name)(pnlp.ErnieConfig(**KW, **extra))


@pytest.mark.parametrize(
    "cls_name",
    [
        "ErnieForPretraining",
        "ErnieModel",
        "ErnieForSequenceClassification",
        "ErnieForTokenClassification",
        "ErnieForQuestionAnswering",
        "ErnieForMaskedLM",
    ],
)
def test_paddlenlp_checkpoint_to_ours_and_back(tmp_path, cls_name):
    ids, seg, pos = inputs()
    theirs = paddlenlp_model(cls_name)
    theirs.eval()
    theirs.save_pretrained(str(tmp_path / "pnlp"))
    ours = getattr(ernie, cls_name).from_pretrained(tmp_path / "pnlp")
    assert ours.load_report == {"missing": [], "unexpected": []}
    assert sorted(ours.state_dict()) == sorted(theirs.state_dict())
    extra = {"masked_positions": pos} if cls_name in ("ErnieForPretraining", "ErnieForMaskedLM") else {}

    def outs(m):
        o = m(ids, seg, **extra)
        return [o] if isinstance(o, paddle.Tensor) else list(o)

    ref = outs(theirs)
    assert max_diff(outs(ours), ref) <= TOL

    # ours -> PaddleNLP from_pretrained
    ours.save_pretrained(tmp_path / "ours")
    back = getattr(pnlp, cls_name).from_pretrained(str(tmp_path / "ours"))
    back.eval()
    assert max_diff(outs(back), ref) <= TOL


def test_trained_weights_and_gradients_match(tmp_path):
    """Train ours a step (changes every weight), load into PaddleNLP: same outputs; same gradients on a batch."""
    ids, seg, pos = inputs()
    labels = paddle.to_tensor([5, 6, 7, 8, 9, 10])
    nsp = paddle.to_tensor([0, 1, 0])
    paddle.seed(1)
    cfg = ernie.ErnieConfig(**KW, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    ours = ernie.ErnieForPretraining(cfg)
    opt = paddle.optimizer.AdamW(1e-2, parameters=ours.parameters())
    scores, sop = ours(ids, seg, masked_positions=pos)
    ernie.ErniePretrainingCriterion()(scores, sop, labels, nsp)[0].backward()
    opt.step()
    opt.clear_grad()
    ours.save_pretrained(tmp_path / "ours")
    theirs = pnlp.ErnieForPretraining.from_pretrained(
        str(tmp_path / "ours"), hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
    )
    theirs.train()
    ours.train()
    a = ours(ids, seg, masked_positions=pos)
    b = theirs(ids, seg, masked_positions=pos)
    assert max_diff(a, b) <= TOL
    ernie.ErniePretrainingCriterion()(*a, labels, nsp)[0].backward()
    (F.cross_entropy(b[0], labels.reshape([-1, 1])) + F.cross_entropy(b[1], nsp.reshape([-1, 1]))).backward()
    theirs_params = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), theirs_params[name].grad.numpy(), atol=TOL, err_msg=name)


def test_default_attention_mask_matches_paddlenlp(tmp_path):
    """PaddleNLP masks padding with -1e4, we with the dtype's lowest value: same fp32 outputs; 2-D masks too."""
    ids, seg, _ = inputs()
    theirs = paddlenlp_model("ErnieModel")
    theirs.eval()
    theirs.save_pretrained(str(tmp_path / "m"))
    ours = ernie.ErnieModel.from_pretrained(tmp_path / "m")
    mask = (ids != 0).astype("int64")
    assert max_diff(ours(ids, seg, attention_mask=mask), theirs(ids, seg, attention_mask=mask)) <= TOL
