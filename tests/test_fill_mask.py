"""Fill-mask (ernie.fill_mask, scripts/fill_mask.py): the same predictions from our, PaddleNLP's and an HF dir of the
same weights; the whole-span filling's score is the sum of its tokens' log-probabilities (re-scored step by step);
only ordinary tokens are proposed; the cloze benchmark's predictions are a plain forward pass's; bad input is one
line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

paddle = pytest.importorskip("paddle")

from ernie import convert, modeling  # noqa: E402
from ernie.configuration import ErnieConfig  # noqa: E402
from ernie.fill_mask import FillMask, apply_mask_spans  # noqa: E402
from ernie.utils import UserError  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KW = dict(
    vocab_size=10000,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=64,
    type_vocab_size=2,
    hidden_act="gelu",
    pad_token_id=0,
)
TEXTS = ["中国人民[MASK][MASK]了新的胜利。", "他在[MASK]京工作，住在[MASK][MASK]区。"]


def save(model, directory: str, vocab_dir: str) -> str:
    model.save_pretrained(directory)
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(os.path.join(vocab_dir, name), directory)
    return directory


@pytest.fixture(scope="module")
def ours(vocab_dir, tmp_path_factory):
    paddle.seed(3)
    model = modeling.ErnieForPretraining(ErnieConfig(**KW))
    with paddle.no_grad():  # a peaked output distribution, so that top-k orders are not near-ties
        model.cls.predictions.decoder_bias.set_value(paddle.randn([KW["vocab_size"]]) * 3)
    return save(model, str(tmp_path_factory.mktemp("fill") / "ours"), vocab_dir)


def test_same_predictions_from_ours_paddlenlp_and_hf_dirs(ours, tmp_path):
    pytest.importorskip("safetensors")
    hf = str(tmp_path / "hf")
    convert.to_hf(ours, hf)
    dirs = {"ours": ours, "hf": hf}
    try:  # PaddleNLP's own classes write its layout (test extra; skipped cleanly without it)
        import paddlenlp.transformers as pnlp
    except ImportError:
        pnlp = None
    if pnlp is not None:
        theirs = pnlp.ErnieForMaskedLM.from_pretrained(ours)
        dirs["paddlenlp"] = save(theirs, str(tmp_path / "pnlp"), ours)
        assert os.path.isfile(os.path.join(dirs["paddlenlp"], "model_state.pdparams"))
    results = {name: FillMask(d)(TEXTS, top_k=5, beam_size=3) for name, d in dirs.items()}
    ref = results["ours"]
    for name, res in results.items():
        for a, b in zip(res, ref):
            assert [[t for t, _ in pos] for pos in a.positions] == [[t for t, _ in pos] for pos in b.positions], name
            np.testing.assert_allclose(
                [[p for _, p in pos] for pos in a.positions],
                [[p for _, p in pos] for pos in b.positions],
                rtol=1e-4,
                atol=1e-6,
            )
            assert a.filled == b.filled and [s.filling for s in a.spans] == [s.filling for s in b.spans], name
    if pnlp is None:
        pytest.skip("paddlenlp not installed: ours and HF compared only")


def test_span_filling_is_the_beams_best_and_scores_add_up(ours):
    fm = FillMask(ours)
    result = fm.fill(TEXTS[1], top_k=3, beam_size=4)
    assert [s.end - s.start for s in result.spans] == [1, 2] and "[MASK]" not in result.filled
    assert len(result.positions) == 3 and all(len(p) == 3 for p in result.positions)
    for pos in result.positions:  # probabilities, best first, ordinary tokens only
        probs = [p for _, p in pos]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
        assert all(not t.startswith("##") and not t.startswith("[") for t, _ in pos)
    # re-score the chosen filling token by token, left to right: the sum is the reported log-prob
    ids = fm.encode(result.text)
    masked = np.flatnonzero(ids == fm.tokenizer.mask_token_id)
    chosen = fm.tokenizer.convert_tokens_to_ids([t for s in result.spans for t in s.tokens])
    total, seq = 0.0, ids.copy()
    for p, t in zip(masked, chosen):
        total += float(fm._log_probs(seq[None], np.array([p]))[0, t])
        seq[p] = t
    assert sum(s.log_prob for s in result.spans) == pytest.approx(total, abs=1e-4)
    # a wider beam never finds a worse joint filling; greedy (beam 1) is left-to-right argmax
    wide = fm.fill(TEXTS[1], beam_size=8)
    assert sum(s.log_prob for s in wide.spans) >= sum(s.log_prob for s in result.spans) - 1e-5
    greedy = fm.fill(TEXTS[1], beam_size=1)
    seq = ids.copy()
    for p in masked:
        seq[p] = int(np.argmax(fm._log_probs(seq[None], np.array([p]))[0]))
    assert fm.tokenizer.convert_tokens_to_ids([t for s in greedy.spans for t in s.tokens]) == seq[masked].tolist()


def test_mask_spans_and_bad_input(ours, vocab_dir, tmp_path):
    assert apply_mask_spans("人民日报社", [(2, 4)]) == ("人民[MASK][MASK]社", ["日报"])
    fm = FillMask(ours)
    r = fm.fill("人民日报社论", mask_spans=[(2, 4)], beam_size=2)
    assert r.spans[0].original == "日报" and r.spans[0].filling and r.text == "人民[MASK][MASK]社论"
    with pytest.raises(UserError, match="--mask_span: 4:9"):
        fm.fill("人民日报社论", mask_spans=[(4, 9)])
    with pytest.raises(UserError, match="no \\[MASK\\]"):
        fm.fill("人民日报社论")
    paddle.seed(0)
    classifier = save(
        modeling.ErnieForSequenceClassification(ErnieConfig(**KW, num_labels=2)), str(tmp_path / "cls"), vocab_dir
    )
    with pytest.raises(UserError, match="has no MLM head"):
        FillMask(classifier)


def test_cli_prints_and_writes_json(ours, tmp_path):
    env = {**os.environ, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1"}
    script = os.path.join(REPO, "scripts", "fill_mask.py")
    proc = subprocess.run(
        [sys.executable, script, "--model_dir", ours, "--json", "--top_k", "2", TEXTS[0], "人民日报社论"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: ") and "no [MASK]" in proc.stderr
    proc = subprocess.run(
        [sys.executable, script, "--model_dir", ours, "--json", "--top_k", "2", "--mask_span", "2:4", "人民日报社论"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    assert record["spans"][0]["original"] == "日报" and len(record["positions"]) == 2
    assert all(len(p) == 2 for p in record["positions"])


def test_cloze_char_figures_match_a_direct_forward_pass(ours):
    """The cloze benchmark's one-masked-char predictions are those of a plain forward pass written here (the model's
    own classes, eval mode, [CLS] chars [SEP], one [MASK], ordinary tokens only): no framing, offset, mask id, dropout
    or candidate-set difference between ``ernie.cloze`` / ``FillMask`` and the model."""
    from ernie import cloze
    from ernie.tokenizer import ErnieTokenizer

    tok = ErnieTokenizer.from_pretrained(ours)
    model = modeling.ErnieForPretraining.from_pretrained(ours)
    model.eval()
    assert model.config.hidden_dropout_prob > 0  # a model left in train mode would give other predictions
    vocab = tok.convert_ids_to_tokens(list(range(tok.vocab_size)))
    plain = np.array([not (t.startswith("##") or (t.startswith("[") and t.endswith("]"))) for t in vocab])
    items = cloze.cloze_items("char", 12, seed=4, max_chars=40)
    fill_mask = FillMask(ours)
    top1 = top5 = 0
    for item in items:  # the context on each side tokenized on its own, the masked char's id replaced by [MASK]
        left = tok(item.text[: item.start])["input_ids"][:-1]
        right = tok(item.text[item.end :])["input_ids"][1:]
        ids, pos = [*left, tok.mask_token_id, *right], len(left)
        with paddle.no_grad():
            scores, _ = model(paddle.to_tensor([ids]), paddle.zeros([1, len(ids)], dtype="int64"))
        row = np.where(plain, scores.numpy()[0, pos, : tok.vocab_size], -np.inf)
        expected = [vocab[t] for t in np.argsort(-row, kind="stable")[:5]]
        got = [t for t, _ in fill_mask.fill(item.text, top_k=5, mask_spans=[(item.start, item.end)]).positions[0]]
        assert got == expected, item
        top1 += expected[0] == item.gold
        top5 += item.gold in expected
    figures = cloze.evaluate(fill_mask, items)
    assert figures["chars"] == len(items) == 12
    assert figures["char_top1"] == top1 / 12 and figures["char_top5"] == top5 / 12
