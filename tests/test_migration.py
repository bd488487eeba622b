"""Resuming PaddleNLP's checkpoints (ernie.training.paddlenlp_checkpoint): both layouts are written by the pinned
PaddleNLP on a tiny model (its own Trainer for checkpoint-N/; run_pretrain.py's save_ckpt, step by step as its
source writes model_last/), read back into plain fields, and loaded into our model and a Paddle AdamW."""

from __future__ import annotations

import os

import numpy as np
import pytest
import yaml

pytestmark = pytest.mark.compat
paddle = pytest.importorskip("paddle")
pnlp = pytest.importorskip("paddlenlp.transformers")

from ernie.configuration import ErnieConfig  # noqa: E402
from ernie.modeling import ErnieForPretraining, ErnieForSequenceClassification  # noqa: E402
from ernie.training import paddlenlp_checkpoint as P  # noqa: E402

TINY = dict(
    vocab_size=64,
    hidden_size=16,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=32,
    max_position_embeddings=32,
    type_vocab_size=2,
)
VOCAB = ["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]"] + [f"t{i}" for i in range(59)]


def _opt_moments(optimizer, model) -> dict[str, np.ndarray]:
    """structured name -> moment1 held by ``optimizer`` for ``model``'s parameter."""
    state = optimizer.state_dict()
    return {n: state[f"{p.name}_moment1_0"].numpy() for n, p in model.named_parameters()}


def _check_adamw(ckpt, model, saved_opt: dict, saved_model) -> None:
    """Our AdamW takes the re-keyed state: the moments of each parameter are the ones saved for it."""
    optimizer = paddle.optimizer.AdamW(learning_rate=1e-3, parameters=model.parameters())
    optimizer.set_state_dict(ckpt.adamw_state_dict(model))
    ours = _opt_moments(optimizer, model)
    names = {n: t.name for n, t in saved_model.named_parameters()}
    for structured, moment in ours.items():
        np.testing.assert_array_equal(moment, saved_opt[f"{names[structured]}_moment1_0"].numpy())


def test_trainer_checkpoint(tmp_path):
    from paddlenlp.trainer import Trainer, TrainingArguments

    class Data(paddle.io.Dataset):
        def __len__(self):
            return 16

        def __getitem__(self, i):
            r = np.random.RandomState(i)
            return {"input_ids": r.randint(5, 64, size=8).astype("int64"), "labels": np.array(i % 2, dtype="int64")}

    paddle.seed(0)
    theirs = pnlp.ErnieForSequenceClassification(pnlp.ErnieConfig(**TINY))
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=3,
        save_steps=3,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        warmup_steps=1,
        logging_steps=1,
        seed=7,
        disable_tqdm=True,
        report_to=[],
        device="cpu",
    )
    Trainer(model=theirs, args=args, train_dataset=Data()).train()
    path = str(tmp_path / "out" / "checkpoint-3")
    assert P.detect_layout(path) == "paddlenlp-trainer"

    ckpt = P.read_checkpoint(path)
    assert (ckpt.global_step, ckpt.consumed_samples, ckpt.global_batch_size, ckpt.lr_step) == (3, 12, 4, 3)
    assert ckpt.lr_scheduler == paddle.load(os.path.join(path, "scheduler.pdparams"))
    assert ckpt.trainer_state["global_step"] == 3 and ckpt.best_metric is None
    assert ckpt.training_args["seed"] == 7 and ckpt.training_args["per_device_train_batch_size"] == 4
    assert {"python", "numpy", "cpu"} <= set(ckpt.rng_states[0]) and ckpt.loss_scale is None
    assert ckpt.notes == []

    ours = ErnieForSequenceClassification(ErnieConfig.from_pretrained(path))
    assert ours.load_weights(ckpt.model_state) == {"missing": [], "unexpected": []}
    _check_adamw(ckpt, ours, paddle.load(os.path.join(path, "optimizer.pdopt")), theirs)


def _pretrain_steps(model, optimizer, steps: int) -> None:
    criterion = pnlp.ErniePretrainingCriterion()
    r = np.random.RandomState(0)
    for _ in range(steps):
        ids = paddle.to_tensor(r.randint(5, 64, size=(2, 8)).astype("int64"))
        positions = paddle.to_tensor(np.array([1, 3, 9, 12], dtype="int64"))
        scores, sop = model(ids, masked_positions=positions)
        labels = paddle.to_tensor(r.randint(5, 64, size=(4, 1)).astype("int64"))
        lm, so = criterion(scores, sop, labels, paddle.to_tensor(np.array([[0], [1]], dtype="int64")))
        (lm + so).backward()
        optimizer.step()
        optimizer.clear_grad()


def _save_ckpt(out: str, model, tokenizer, optimizer, scaler, global_step: int, gbs: int, cast: bool) -> None:
    """run_pretrain.py's save_ckpt (model_zoo/ernie-1.0), with its fp16 branch's cast when ``cast``."""
    step_config = {
        "model_name": "ernie-1.0-base-zh",
        "global_step": global_step,
        "global_batch_size": gbs,
        "consumed_samples": global_step * gbs,
    }
    tokenizer.save_pretrained(out)
    model.save_model_config(out)
    model_dict = model.state_dict()
    if scaler is not None:
        paddle.save(scaler, os.path.join(out, "scaler.pdparams"))
    if cast:  # run_pretrain casts fp16 weights to float32: new tensors, whose names are not the parameters'
        model_dict = {k: paddle.to_tensor(v.numpy()) for k, v in model_dict.items()}
    paddle.save(model_dict, os.path.join(out, "model_state.pdparams"))
    paddle.save(optimizer.state_dict(), os.path.join(out, "model_state.pdopt"))
    with open(os.path.join(out, "config.yml"), "w") as f:
        yaml.dump(step_config, f, encoding="utf-8", allow_unicode=True)


@pytest.mark.parametrize("cast", [False, True], ids=["fp32", "cast"])
def test_run_pretrain_model_last(tmp_path, cast):
    out = tmp_path / "model_last"
    out.mkdir()
    (tmp_path / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    tokenizer = pnlp.ErnieTokenizer(str(tmp_path / "vocab.txt"))
    paddle.seed(1)
    theirs = pnlp.ErnieForPretraining(pnlp.ErnieConfig(**TINY))
    schedule = pnlp.LinearAnnealingWithWarmupDecay(1e-3, 1e-5, warmup_step=1, decay_step=10)
    decay = [p.name for n, p in theirs.named_parameters() if not any(nd in n for nd in ["bias", "norm"])]
    optimizer = paddle.optimizer.AdamW(
        learning_rate=schedule,
        parameters=theirs.parameters(),
        weight_decay=0.01,
        apply_decay_param_fun=decay.__contains__,
    )
    _pretrain_steps(theirs, optimizer, 2)
    for _ in range(2):
        schedule.step()
    scaler = {"scale": np.array([32768.0], dtype="float32"), "incr_count": 0, "decr_count": 0}  # GradScaler.state_dict
    _save_ckpt(str(out), theirs, tokenizer, optimizer, scaler, global_step=2, gbs=16, cast=cast)
    assert P.detect_layout(str(out)) == "paddlenlp-pretrain"

    ckpt = P.read_checkpoint(str(out))
    assert (ckpt.global_step, ckpt.consumed_samples, ckpt.global_batch_size, ckpt.lr_step) == (2, 32, 16, 2)
    assert ckpt.loss_scale == 32768.0 and ckpt.model_name == "ernie-1.0-base-zh" and ckpt.rng_states is None
    assert bool(ckpt.notes) == cast  # cast weights: the moments are matched by position, and it says so

    ours = ErnieForPretraining(ErnieConfig.from_pretrained(str(out)))
    report = ours.load_weights(ckpt.model_state)
    assert report["missing"] == [] and report["unexpected"] == []
    _check_adamw(ckpt, ours, paddle.load(str(out / "model_state.pdopt")), theirs)


def test_detect_layout(tmp_path):
    assert P.detect_layout(str(tmp_path / "missing")) is None
    assert P.detect_layout(str(tmp_path)) is None
    (tmp_path / "model_state.pdparams").write_bytes(b"")
    (tmp_path / "rng_state.pkl").write_bytes(b"")
    assert P.detect_layout(str(tmp_path)) == "ernie-toolkit"
    with pytest.raises(P.UserError, match="not a PaddleNLP checkpoint"):
        P.read_checkpoint(str(tmp_path))
