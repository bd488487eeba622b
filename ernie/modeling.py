"""ERNIE 1.0 in Paddle: embeddings, post-LN Transformer encoder, pretraining heads (MLM + SOP) and task heads.

State-dict names are those of ``paddlenlp.transformers`` ErnieModel / ErnieForPretraining / task models, so
checkpoints move between the two libraries unchanged (see ``save_pretrained`` / ``from_pretrained``).

Shapes: B batch, S sequence length, H hidden size, N number of masked positions in the batch, V vocab size.

Layout follows HF's modeling_bert.py: embeddings -> self-attention -> encoder layer -> encoder -> pooler -> heads ->
pretrained base (checkpoints) -> ErnieModel -> pretraining / task models. The CPU fp32 kernels, dropout and attention-
bias helpers live in ernie/ops.py. Speed on CPU (measured by benchmarks/bench_model.py): the q/k/v projections run as
one GEMM on concatenated weights (parameters and names stay separate), with 1/sqrt(head_dim) folded into the q
weight, and identity dropouts (p = 0, eval) are skipped. Memory of a CPU training step: the concatenated q/k/v
weight and the dropped-out attention probabilities are computed again in the backward instead of being kept
(ernie.ops.linear's rebuild_weight, ernie.ops.dropout_matmul). All of it computes the same fp32 quantities as
PaddleNLP's model (tests/test_modeling_compat.py); off CPU-fp32 (GPU, AMP dtypes) the stock Paddle kernels are used.
Attention is the explicit matmul/softmax path with an additive bias everywhere (as PaddleNLP's ERNIE);
``config.attention`` "sdpa" / "flash" opts into F.scaled_dot_product_attention (ernie.ops.choose_attention: which
kernel, and the mask shape that kernel requires).
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Callable

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle.distributed.fleet.utils import recompute

from ernie import hub
from ernie.configuration import ErnieConfig
from ernie.ops import (
    KernelPlan,
    LayerNorm,
    Linear,
    add_broadcast,
    add_expanded,
    attention_bias,
    choose_attention,
    dropout,
    dropout_matmul,
    kernel_plan,
    linear,
    residual_layer_norm,
    sdpa_attention,
    sdpa_mask,
)
from ernie.utils import UserError, atomic_write
from ernie.utils.cpu_tuning import ensure_cpu_tuning, tune_cpu_math
from ernie.weights import HF_WEIGHT_FILES, WEIGHTS_NAME, is_hf_dir, read_hf_state  # WEIGHTS_NAME: also ernie.modeling.*

_ACTIVATIONS: dict[str, Callable[[paddle.Tensor], paddle.Tensor]] = {
    "gelu": F.gelu,
    "relu": F.relu,
    "tanh": paddle.tanh,
}


def _init_attr(config: ErnieConfig) -> paddle.ParamAttr:
    """Truncated normal(0, initializer_range), cut at two standard deviations."""
    std = config.initializer_range
    return paddle.ParamAttr(initializer=nn.initializer.TruncatedNormal(mean=0.0, std=std, a=-2 * std, b=2 * std))


def sinusoidal_positions(num_positions: int, hidden_size: int, rms: float) -> np.ndarray:
    """The Transformer's position table (Vaswani et al. 2017: sin on even, cos on odd dims, wavelengths 2pi to
    10000*2pi) scaled to root-mean-square ``rms``: [num_positions, hidden_size] float32.

    The dot product of two rows depends mostly on their distance, so attention to nearby positions is there to be
    found from the first step instead of having to emerge from random vectors.
    """
    pos = np.arange(num_positions, dtype=np.float64)[:, None]
    angle = pos / 10000.0 ** (np.arange(0, hidden_size, 2, dtype=np.float64) / hidden_size)
    table = np.zeros((num_positions, hidden_size), dtype=np.float64)
    table[:, 0::2] = np.sin(angle)
    table[:, 1::2] = np.cos(angle[:, : hidden_size // 2])
    return (table * (rms / np.sqrt(np.mean(table**2)))).astype(np.float32)


def _linear(config: ErnieConfig, d_in: int, d_out: int) -> nn.Linear:
    return Linear(d_in, d_out, weight_attr=_init_attr(config))


class ErnieEmbeddings(nn.Layer):
    """word + position + token type (+ task type) embeddings, then LayerNorm and dropout: [B, S] -> [B, S, H]."""

    def __init__(self, config: ErnieConfig):
        super().__init__()
        attr = _init_attr(config)
        H = config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, H, padding_idx=config.pad_token_id, weight_attr=attr)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, H, weight_attr=attr)
        self.type_vocab_size = config.type_vocab_size
        if self.type_vocab_size > 0:
            self.token_type_embeddings = nn.Embedding(config.type_vocab_size, H, weight_attr=attr)
        self.use_task_id = config.use_task_id
        self.task_id = config.task_id
        if self.use_task_id:
            self.task_type_embeddings = nn.Embedding(config.task_type_vocab_size, H, weight_attr=attr)
        self.layer_norm = LayerNorm(H, epsilon=config.layer_norm_eps)
        self.dropout_prob = config.hidden_dropout_prob
        rms = config.sinusoidal_position_rms()
        if rms is not None:  # drawn above all the same, so every other weight starts as with the normal init
            self.position_embeddings.weight.set_value(sinusoidal_positions(config.max_position_embeddings, H, rms))

    def forward(self, input_ids, token_type_ids=None, position_ids=None, task_type_ids=None):
        seq_len = input_ids.shape[1]
        x = self.word_embeddings(input_ids)
        # Default ids are the same for every row: look them up once ([S, H] or [H]) and broadcast over the batch.
        if position_ids is None:
            x = add_broadcast(x, self.position_embeddings.weight[:seq_len])
        else:
            x = x + self.position_embeddings(position_ids)
        if self.type_vocab_size > 0:
            if token_type_ids is None:
                x = add_broadcast(x, self.token_type_embeddings.weight[0])
            else:
                x = x + self.token_type_embeddings(token_type_ids)
        if self.use_task_id:
            if task_type_ids is None:
                x = add_broadcast(x, self.task_type_embeddings.weight[self.task_id])
            else:
                x = x + self.task_type_embeddings(task_type_ids)
        x = self.layer_norm(x)
        return dropout(x, self.dropout_prob, self.training)


class ErnieSelfAttention(nn.Layer):
    """Multi-head self-attention with PaddleNLP's parameter names (q_proj, k_proj, v_proj, out_proj).

    The three input projections run as one [B*S, H] x [H, 3H] GEMM on the concatenated weights.
    """

    def __init__(self, config: ErnieConfig):
        super().__init__()
        H = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.dropout_prob = config.attention_probs_dropout_prob
        # "eager" (default: matmul + softmax + additive bias, PaddleNLP's path), or the opt-in "sdpa" / "flash"
        # (F.scaled_dot_product_attention; the kernel that runs is decided by ernie.ops.choose_attention and logged)
        self.attention = config.attention
        self.q_proj = _linear(config, H, H)
        self.k_proj = _linear(config, H, H)
        self.v_proj = _linear(config, H, H)
        self.out_proj = _linear(config, H, H)

    def forward(self, x: paddle.Tensor, mask: paddle.Tensor | None, mask_cache: dict | None = None) -> paddle.Tensor:
        """x [B, S, H], mask: bool keep-mask or additive bias broadcastable to [B, heads, S, S] -> [B, S, H].
        ``mask_cache``: one dict per encoder forward, where the SDPA kernels' mask is built once for all layers."""
        # Shapes as 0 ("keep this dim") and static sizes, never a runtime B or S, and slices instead of unbind: the
        # exported program then converts with every Paddle -> ONNX / OpenVINO converter, old ones included
        # (ernie/deploy/legacy_export.py).
        H = self.num_heads * self.head_dim
        if self.attention != "eager" and paddle.in_dynamic_mode():
            qkv = linear(
                x,
                paddle.concat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight], axis=1),
                paddle.concat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias]),
            )
            q, k, v = qkv.reshape([0, 0, 3, self.num_heads, self.head_dim]).unbind(2)  # [B, S, heads, head_dim]
            p = self.dropout_prob if self.training else 0.0
            kernel = choose_attention(self.attention, q, k, v, p)
            if kernel != "eager":  # unscaled q, scale=None: the kernel applies 1/sqrt(head_dim) (flash needs None)
                bias = sdpa_mask(mask, kernel, q, k, mask_cache)
                return self.out_proj(sdpa_attention(q, k, v, bias, kernel, p, self.training).reshape([0, 0, H]))
        # eager: 1/sqrt(head_dim) is folded into the (small) q weight and bias instead of scaling q [B, heads, S, hd].
        scale = self.head_dim**-0.5

        def qkv_weight():  # [H, 3H]; computed again in the CPU backward rather than kept (ernie.ops.linear)
            return paddle.concat([self.q_proj.weight * scale, self.k_proj.weight, self.v_proj.weight], axis=1)

        bias = paddle.concat([self.q_proj.bias * scale, self.k_proj.bias, self.v_proj.bias])
        qkv = linear(x, qkv_weight(), bias, rebuild_weight=qkv_weight).reshape([0, 0, 3, self.num_heads, self.head_dim])
        if self.attention == "eager":
            choose_attention("eager", qkv, None, None, 0.0)  # the log line naming the kernel (once)
        qkv = qkv.transpose([2, 0, 3, 1, 4])
        # 3 x [B, heads, S, head_dim]. In dynamic mode unbind, whose backward writes the gradient once (stack), where
        # three slices each zero-fill and copy a full-size one (a visible share of a small model's CPU step); slices in
        # graphs.
        q, k, v = qkv.unbind(0) if paddle.in_dynamic_mode() else (qkv[0], qkv[1], qkv[2])
        scores = paddle.matmul(q, k, transpose_y=True)  # [B, heads, S, S]
        if mask is not None:
            scores = add_expanded(scores, attention_bias(mask, scores.dtype))
        context = dropout_matmul(F.softmax(scores, axis=-1), v, self.dropout_prob, self.training)
        context = context.transpose([0, 2, 1, 3]).reshape([0, 0, H])
        return self.out_proj(context)


class ErnieEncoderLayer(nn.Layer):
    """Post-LN Transformer layer: x = LN(x + Attn(x)); x = LN(x + FFN(x)). Names as paddle's TransformerEncoderLayer."""

    def __init__(self, config: ErnieConfig):
        super().__init__()
        self.self_attn = ErnieSelfAttention(config)
        self.linear1 = _linear(config, config.hidden_size, config.intermediate_size)
        self.linear2 = _linear(config, config.intermediate_size, config.hidden_size)
        self.norm1 = LayerNorm(config.hidden_size, epsilon=config.layer_norm_eps)
        self.norm2 = LayerNorm(config.hidden_size, epsilon=config.layer_norm_eps)
        self.activation = _ACTIVATIONS[config.hidden_act]
        self.dropout_prob = config.hidden_dropout_prob
        # None: the kernels ernie.ops.kernel_plan picks for the device/dtype; a KernelPlan forces one (tests).
        self.kernels: KernelPlan | None = None

    def forward(
        self, x: paddle.Tensor, mask: paddle.Tensor | None = None, mask_cache: dict | None = None
    ) -> paddle.Tensor:
        h = self.self_attn(x, mask, mask_cache)
        plan = self.kernels or kernel_plan(h)
        x = residual_layer_norm(h, x, self.norm1, self.dropout_prob, self.training, plan)
        ffn = self.linear2(self.activation(self.linear1(x)))
        return residual_layer_norm(ffn, x, self.norm2, self.dropout_prob, self.training, plan)


class ErnieEncoder(nn.Layer):
    """A stack of encoder layers (``layers.{i}``), each optionally recomputed in backward (``use_recompute``)."""

    def __init__(self, config: ErnieConfig):
        super().__init__()
        self.layers = nn.LayerList([ErnieEncoderLayer(config) for _ in range(config.num_hidden_layers)])
        self.use_recompute = config.use_recompute

    def forward(self, x: paddle.Tensor, mask: paddle.Tensor | None) -> paddle.Tensor:
        mask_cache: dict = {}  # the SDPA kernels' mask, built by the first layer for all (ernie.ops.sdpa_mask)
        for layer in self.layers:
            if self.use_recompute and self.training and not x.stop_gradient:
                x = recompute(layer, x, mask, mask_cache)
            else:
                x = layer(x, mask, mask_cache)
        return x


class ErniePooler(nn.Layer):
    """tanh(dense(hidden state of [CLS])): [B, S, H] -> [B, H]."""

    def __init__(self, config: ErnieConfig):
        super().__init__()
        self.dense = _linear(config, config.hidden_size, config.hidden_size)

    def forward(self, hidden_states: paddle.Tensor) -> paddle.Tensor:
        return paddle.tanh(self.dense(hidden_states[:, 0]))


class TiedDecoder(nn.Layer):
    """Output projection sharing the word-embedding matrix ([V, H]) plus its own bias: [N, H] -> [N, V]."""

    def __init__(self, embedding_weight: paddle.Tensor, vocab_size: int):
        super().__init__()
        self.weight = embedding_weight
        self.bias = self.create_parameter([vocab_size], is_bias=True)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return linear(x, self.weight, self.bias, transpose_w=True)


class ErnieLMPredictionHead(nn.Layer):
    """MLM head on the gathered masked positions: dense -> act -> LayerNorm -> tied decoder (+ bias).

    sequence_output [B, S, H], masked_positions [N] flat ``row * S + pos`` -> scores [N, V]
    (all positions, [B, S, V], when masked_positions is None).
    """

    def __init__(self, config: ErnieConfig, embedding_weight: paddle.Tensor):
        super().__init__()
        self.transform = _linear(config, config.hidden_size, config.hidden_size)
        self.activation = _ACTIVATIONS[config.hidden_act]
        self.layer_norm = LayerNorm(config.hidden_size, epsilon=config.layer_norm_eps)
        self.decoder = TiedDecoder(embedding_weight, config.vocab_size)
        self.decoder_bias = self.decoder.bias  # second name for the bias, as in PaddleNLP's state dict

    def forward(self, sequence_output, masked_positions=None):
        h = sequence_output
        if masked_positions is not None:
            h = paddle.gather(h.reshape([-1, h.shape[-1]]), masked_positions.reshape([-1]))
        h = self.layer_norm(self.activation(self.transform(h)))
        return self.decoder(h)


class ErniePretrainingHeads(nn.Layer):
    def __init__(self, config: ErnieConfig, embedding_weight: paddle.Tensor):
        super().__init__()
        self.predictions = ErnieLMPredictionHead(config, embedding_weight)
        self.seq_relationship = _linear(config, config.hidden_size, 2)

    def forward(self, sequence_output, pooled_output, masked_positions=None):
        return self.predictions(sequence_output, masked_positions), self.seq_relationship(pooled_output)


class ErnieOnlyMLMHead(nn.Layer):
    def __init__(self, config: ErnieConfig, embedding_weight: paddle.Tensor):
        super().__init__()
        self.predictions = ErnieLMPredictionHead(config, embedding_weight)

    def forward(self, sequence_output, masked_positions=None):
        return self.predictions(sequence_output, masked_positions)


def read_state_dict(directory: str) -> tuple[dict, str]:
    """Weights of a model directory under our names: ``model_state.pdparams`` (ours / PaddleNLP) as it is, else HF
    weights converted (``ernie.weights``). A built-in model name that is not a directory gives PaddleNLP's
    published weights (its cache, else downloaded: :func:`ernie.hub.model_file`). Returns (state dict, file read)."""
    directory = str(directory)
    if not os.path.isdir(directory) and hub.model_spec(directory) is not None:
        paddle_file = hub.model_file(directory, "weights")
    else:
        paddle_file = os.path.join(directory, WEIGHTS_NAME)
    if os.path.isfile(paddle_file):
        try:
            return paddle.load(paddle_file), paddle_file
        except Exception as e:  # noqa: BLE001 - any unreadable file is the user's input problem
            raise UserError(f"{paddle_file}: cannot read weights ({type(e).__name__}: {e})") from None
    if not is_hf_dir(directory):
        raise UserError(
            f"{directory}: no {WEIGHTS_NAME} (ours / PaddleNLP) or {' / '.join(HF_WEIGHT_FILES)} (HF "
            "transformers) in this directory"
        )
    return read_hf_state(directory)


class ErniePretrainedModel(nn.Layer):
    """Base class: holds the config, and reads/writes PaddleNLP-compatible checkpoint directories. The first model
    built in a process applies the process-level CPU settings (``ernie.utils.cpu_tuning.ensure_cpu_tuning``, for
    Paddle's current device) before any of its math runs."""

    base_model_prefix = "ernie"

    def __init__(self, config: ErnieConfig):
        ensure_cpu_tuning()
        super().__init__()
        if not isinstance(config, ErnieConfig):
            raise TypeError(f"config must be an ErnieConfig, got {type(config).__name__}")
        self.config = config
        self.load_report: dict[str, list[str]] | None = None  # set by from_pretrained when weights were read

    # ---- checkpoints ---------------------------------------------------------------------------------------------
    def save_pretrained(self, save_dir: str | os.PathLike, state_dict: dict | None = None) -> None:
        """Write ``model_state.pdparams`` + ``config.json`` + ``model_config.json`` into ``save_dir``.

        ``state_dict``: the weights to write instead of ``self.state_dict()`` (the trainer passes the fp32 master
        weights under AMP O2). Each file is written atomically; wrap the call in ``ernie.utils.atomic_dir`` to
        replace a whole directory.
        """
        save_dir = str(save_dir)
        os.makedirs(save_dir, exist_ok=True)
        buf = io.BytesIO()
        paddle.save(self.state_dict() if state_dict is None else state_dict, buf)
        with atomic_write(os.path.join(save_dir, WEIGHTS_NAME)) as f:
            f.write(buf.getvalue())
        # PaddleNLP reads "architectures" to pick the class in AutoModel; harmless elsewhere.
        cfg = self.config.replace()
        cfg.extra = {**cfg.extra, "architectures": [type(self).__name__]}
        cfg.save_pretrained(save_dir)

    @classmethod
    def from_pretrained(cls, name_or_dir: str | os.PathLike, config: ErnieConfig | None = None, **overrides):
        """Build the model from a checkpoint directory (weights + config; ours, PaddleNLP's or HF transformers'),
        from a PaddleNLP model name, or from a shipped config name.

        A PaddleNLP name with published weights (``ernie-1.0-base-zh``, ``ernie-3.0-medium-zh`` ...:
        :data:`ernie.hub.MODELS`) loads them as PaddleNLP's ``from_pretrained`` does (its download cache, else
        downloaded into it). Any other name in ``configs/models`` (``ernie-tiny-cpu``; ``ernie-1.0-large-zh``, with a
        warning: no weights are published under it) or a JSON file gives a freshly initialised model. ``overrides``
        replace config fields (``use_recompute=True``, ``num_labels=3`` ...). Missing and unexpected weights are
        reported by name (``warnings``; also in ``model.load_report``); shape mismatches raise :class:`UserError`.
        The model is returned in eval mode (call ``.train()`` to train it).
        """
        path = str(name_or_dir)
        if config is None:
            config = ErnieConfig.from_pretrained(path)
        if overrides:
            config = config.replace(**overrides)
        spec = None if os.path.isdir(path) else hub.model_spec(path)
        model = cls(config)
        if spec is not None and spec.weights_url is None:
            warnings.warn(f"{path}: {spec.note}; the model is a random initialisation", stacklevel=2)
        elif os.path.isdir(path) or spec is not None:  # ours / PaddleNLP's weights, or HF weights converted on load
            state, weights = read_state_dict(path)
            model.load_report = model.load_weights(state, source=weights)
        model.eval()
        return model

    def load_weights(self, state: dict, source: str = "state dict") -> dict[str, list[str]]:
        """Load a PaddleNLP-named state dict; returns ``{"missing": [...], "unexpected": [...]}``.

        A checkpoint of the bare ErnieModel (no ``ernie.`` prefix) loads into a task model and vice versa. Aliases of
        one parameter (tied decoder weight, ``decoder_bias``) may be absent.
        """
        # the parameters themselves: after paddle.amp.decorate(save_dtype=...) state_dict() returns cast copies, and
        # set_value on those would change nothing
        own = self.state_dict(use_hook=False)
        state = _adapt_prefix(state, own, self.base_model_prefix)
        aliases = _aliases(self)
        mismatched = [
            f"{k}: checkpoint {list(v.shape)} vs model {list(own[k].shape)}"
            for k, v in state.items()
            if k in own and list(v.shape) != list(own[k].shape)
        ]
        if mismatched:  # one line: the first few, the count, and what to do (a rerun with another model size)
            more = f" (and {len(mismatched) - 2} more)" if len(mismatched) > 2 else ""
            raise UserError(
                f"{source}: the weights do not fit this model: {'; '.join(mismatched[:2])}{more}; these weights are "
                "of another model size: use the config they were trained with, or start a new --output_dir"
            )
        present = set(state)
        missing = [k for k in own if k not in present and not (aliases.get(k, set()) & present)]
        unexpected = [k for k in state if k not in own]
        to_load = {k: v for k, v in state.items() if k in own}
        for k, others in aliases.items():  # fill an absent alias from a present one
            if k not in to_load:
                src = next((o for o in others if o in to_load), None)
                if src is not None:
                    to_load[k] = to_load[src]
        for k, v in to_load.items():
            target = own[k]
            value = v if isinstance(v, paddle.Tensor) else paddle.to_tensor(v)
            target.set_value(value.astype(target.dtype))
        if missing:
            warnings.warn(
                f"{source}: weights not in the checkpoint (left initialised): {', '.join(missing)}", stacklevel=2
            )
        if unexpected:
            warnings.warn(
                f"{source}: checkpoint weights not used by {type(self).__name__}: {', '.join(unexpected)}",
                stacklevel=2,
            )
        return {"missing": missing, "unexpected": unexpected}


def _aliases(model: nn.Layer) -> dict[str, set[str]]:
    """State-dict names that refer to one and the same parameter (tied or re-registered weights)."""
    by_id: dict[int, list[str]] = {}
    for name, p in model.state_dict(use_hook=False).items():
        by_id.setdefault(id(p), []).append(name)
    return {n: set(names) - {n} for names in by_id.values() if len(names) > 1 for n in names}


def _adapt_prefix(state: dict, own: dict, prefix: str) -> dict:
    """Add or strip the base-model prefix so that a bare-model checkpoint fits a task model and vice versa."""
    p = prefix + "."
    own_prefixed = any(k.startswith(p) for k in own)
    ckpt_prefixed = any(k.startswith(p) for k in state)
    if own_prefixed and not ckpt_prefixed:
        return {p + k: v for k, v in state.items()}
    if ckpt_prefixed and not own_prefixed:
        return {(k[len(p) :] if k.startswith(p) else k): v for k, v in state.items()}
    return state


def _build_mask(input_ids, attention_mask, pad_token_id):
    """Normalise the attention mask to a bool keep-mask [B, 1, 1|S, S] or an additive bias (4-D float)."""
    if attention_mask is None:
        return (input_ids != pad_token_id).unsqueeze([1, 2])
    if attention_mask.ndim == 2:  # [B, S], 1 = attend, 0 = padding
        return attention_mask.astype(paddle.bool).unsqueeze([1, 2])
    if attention_mask.ndim == 3:  # [B, S, S]
        attention_mask = attention_mask.unsqueeze(1)
    if attention_mask.dtype in (paddle.bool, paddle.int32, paddle.int64):
        return attention_mask.astype(paddle.bool)
    return attention_mask  # additive float bias, broadcastable to [B, heads, S, S]


class ErnieModel(ErniePretrainedModel):
    """The bare encoder: (input_ids [B, S], ...) -> (sequence_output [B, S, H], pooled_output [B, H]).

    ``attention_mask``: None (pad tokens masked), a 0/1 or bool [B, S] mask, or a 4-D additive float mask.
    """

    def __init__(self, config: ErnieConfig):
        super().__init__(config)
        self.pad_token_id = config.pad_token_id
        self.embeddings = ErnieEmbeddings(config)
        self.encoder = ErnieEncoder(config)
        self.pooler = ErniePooler(config)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def forward(self, input_ids, token_type_ids=None, position_ids=None, attention_mask=None, task_type_ids=None):
        mask = _build_mask(input_ids, attention_mask, self.pad_token_id)
        mask.stop_gradient = True
        x = self.embeddings(input_ids, token_type_ids, position_ids, task_type_ids)
        sequence_output = self.encoder(x, mask)
        return sequence_output, self.pooler(sequence_output)


class ErnieForPretraining(ErniePretrainedModel):
    """ERNIE with the MLM head (on masked positions) and the sentence-order (SOP) head.

    forward(input_ids [B, S], token_type_ids, position_ids, attention_mask, masked_positions [N])
    -> (prediction_scores [N, V], seq_relationship_score [B, 2]).
    """

    def __init__(self, config: ErnieConfig):
        super().__init__(config)
        self.ernie = ErnieModel(config)
        self.cls = ErniePretrainingHeads(config, self.ernie.embeddings.word_embeddings.weight)

    def forward(self, input_ids, token_type_ids=None, position_ids=None, attention_mask=None, masked_positions=None):
        sequence_output, pooled_output = self.ernie(input_ids, token_type_ids, position_ids, attention_mask)
        return self.cls(sequence_output, pooled_output, masked_positions)


class ErniePretrainingCriterion(nn.Layer):
    """(prediction_scores [N, V], seq_relationship_score [B, 2], masked_lm_labels [N], next_sentence_labels [B])
    -> (loss, lm_loss, sop_loss), losses in float32.

    lm_loss is the mean over the labels != -1 (PaddleNLP's criterion divides by all N, padding included, so the two
    differ when a batch has padded masked positions). With ``with_nsp_loss=False`` (binary_head off) loss == lm_loss and
    sop_loss is a 0 scalar.
    """

    def __init__(self, with_nsp_loss: bool = True):
        super().__init__()
        self.with_nsp_loss = with_nsp_loss

    def forward(self, prediction_scores, seq_relationship_score, masked_lm_labels, next_sentence_labels=None):
        labels = masked_lm_labels.reshape([-1, 1]).astype("int64")
        per_token = F.cross_entropy(prediction_scores.astype("float32"), labels, ignore_index=-1, reduction="none")
        num_targets = (labels != -1).astype("float32").sum().clip(min=1.0)
        lm_loss = per_token.sum() / num_targets
        if not self.with_nsp_loss:
            return lm_loss, lm_loss, paddle.zeros([], dtype="float32")
        sop_labels = next_sentence_labels.reshape([-1, 1]).astype("int64")
        sop_loss = F.cross_entropy(seq_relationship_score.astype("float32"), sop_labels, reduction="mean")
        return lm_loss + sop_loss, lm_loss, sop_loss


class ErnieForMaskedLM(ErniePretrainedModel):
    """ERNIE with the MLM head only: -> scores [N, V] (masked_positions given) or [B, S, V]."""

    def __init__(self, config: ErnieConfig):
        super().__init__(config)
        self.ernie = ErnieModel(config)
        self.cls = ErnieOnlyMLMHead(config, self.ernie.embeddings.word_embeddings.weight)

    def forward(self, input_ids, token_type_ids=None, position_ids=None, attention_mask=None, masked_positions=None):
        sequence_output, _ = self.ernie(input_ids, token_type_ids, position_ids, attention_mask)
        return self.cls(sequence_output, masked_positions)


class _ErnieWithClassifier(ErniePretrainedModel):
    """ERNIE + dropout + linear classifier (``config.num_labels`` outputs)."""

    def __init__(self, config: ErnieConfig, num_outputs: int):
        super().__init__(config)
        self.ernie = ErnieModel(config)
        p = config.classifier_dropout
        self.dropout_prob = config.hidden_dropout_prob if p is None else p
        self.classifier = _linear(config, config.hidden_size, num_outputs)
        self.num_labels = num_outputs


class ErnieForSequenceClassification(_ErnieWithClassifier):
    """-> logits [B, num_labels] from the pooled [CLS]; with ``labels`` [B]: (loss, logits)."""

    def __init__(self, config: ErnieConfig):
        super().__init__(config, config.num_labels)

    def forward(self, input_ids, token_type_ids=None, position_ids=None, attention_mask=None, labels=None):
        _, pooled = self.ernie(input_ids, token_type_ids, position_ids, attention_mask)
        logits = self.classifier(dropout(pooled, self.dropout_prob, self.training))
        if labels is None:
            return logits
        return F.cross_entropy(logits.astype("float32"), labels.reshape([-1, 1]).astype("int64")), logits


class ErnieForTokenClassification(_ErnieWithClassifier):
    """-> logits [B, S, num_labels]; with ``labels`` [B, S] (-100 ignored): (loss, logits)."""

    def __init__(self, config: ErnieConfig):
        super().__init__(config, config.num_labels)

    def forward(self, input_ids, token_type_ids=None, position_ids=None, attention_mask=None, labels=None):
        sequence_output, _ = self.ernie(input_ids, token_type_ids, position_ids, attention_mask)
        logits = self.classifier(dropout(sequence_output, self.dropout_prob, self.training))
        if labels is None:
            return logits
        loss = F.cross_entropy(
            logits.reshape([-1, self.num_labels]).astype("float32"),
            labels.reshape([-1, 1]).astype("int64"),
            ignore_index=-100,
        )
        return loss, logits


class ErnieForQuestionAnswering(ErniePretrainedModel):
    """-> (start_logits [B, S], end_logits [B, S])."""

    def __init__(self, config: ErnieConfig):
        super().__init__(config)
        self.ernie = ErnieModel(config)
        self.classifier = _linear(config, config.hidden_size, 2)

    def forward(self, input_ids, token_type_ids=None, position_ids=None, attention_mask=None):
        sequence_output, _ = self.ernie(input_ids, token_type_ids, position_ids, attention_mask)
        logits = self.classifier(sequence_output)
        return logits[:, :, 0], logits[:, :, 1]


__all__ = [
    "ErnieConfig",
    "ErnieEmbeddings",
    "ErnieModel",
    "ErniePretrainedModel",
    "ErnieForPretraining",
    "ErniePretrainingCriterion",
    "ErnieForMaskedLM",
    "ErnieForSequenceClassification",
    "ErnieForTokenClassification",
    "ErnieForQuestionAnswering",
    "tune_cpu_math",
    "attention_bias",
]
