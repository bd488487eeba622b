"""Fill-mask: what a pretrained ERNIE predicts for masked characters (HF's ``fill-mask`` pipeline, plus whole spans).

Contract:

* ``FillMask(model_dir, device=None)``: ``model_dir`` is a directory with an MLM head — a pretraining checkpoint of
  ours (``model_last``), a PaddleNLP ERNIE dir (ErnieForPretraining / ErnieForMaskedLM) or an HF transformers ERNIE dir
  (``config.json`` + ``model.safetensors``; converted on load by :mod:`ernie.weights`), with ``vocab.txt``. A dir
  without the MLM head (a fine-tuned classifier) is a :class:`UserError` naming it.
* ``fill(text, top_k=5, beam_size=5, mask_spans=None) -> FillResult``: ``text`` holds runs of ``[MASK]`` (one
  ``[MASK]`` per masked token: one per Chinese character), or ``mask_spans=[(start, end), ...]`` character offsets
  whose characters are replaced by one ``[MASK]`` each (the original characters are then reported beside the
  fillings). ``__call__(texts, ...)`` runs ``fill`` over a list.
* ``FillResult``: ``positions`` — per masked token, its top-k ``(token, probability)`` from one pass with every mask
  in place (what HF's pipeline gives); ``spans`` — per ``[MASK]`` run, ``SpanFilling(start, end, filling, original,
  log_prob, tokens)`` of the best joint filling; ``filled`` — the text with the best joint filling. The joint filling
  is a beam search over the masked tokens, left to right: each step scores every beam with one forward pass (the tokens
  chosen so far in place, the rest still ``[MASK]``) and keeps the ``beam_size`` best sums of log-probabilities.
  ``beam_size=1`` is greedy left-to-right decoding.
* Candidates are ordinary tokens only: no specials / ``[unusedN]`` slots and no ``##`` continuation pieces (the model
  never learnt to predict them: pretraining restores ``##X`` to ``X`` in its labels).
* ``main(argv)`` = scripts/fill_mask.py / ``ernie-fill-mask``: sentences as arguments or ``--input_file`` (one a
  line), ``--mask_span start:end`` (one per sentence, or one for all), ``--top_k``, ``--beam_size``, ``--json``.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from ernie.tokenizer import ErnieTokenizer
from ernie.utils import ArgumentParser, UserError, cli_main
from ernie.utils.cpu_tuning import tune_cpu_math

MASK = "[MASK]"
PREDICTION_HEAD = "cls.predictions."


@dataclass
class SpanFilling:
    start: int  # first masked token of the run (index among the text's tokens, [CLS] excluded)
    end: int  # one past its last
    filling: str  # the best joint filling of the run
    original: str | None  # the characters that were masked (with mask_spans), else None
    log_prob: float  # sum of the log-probabilities of the filling's tokens under the beam search
    tokens: list[str] = field(default_factory=list)  # the filling's tokens, one per [MASK]


@dataclass
class FillResult:
    text: str  # the input, with the masked runs written as [MASK]s
    filled: str  # the input with the best joint filling
    positions: list[list[tuple[str, float]]] = field(default_factory=list)
    spans: list[SpanFilling] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def apply_mask_spans(text: str, spans: list[tuple[int, int]]) -> tuple[str, list[str]]:
    """``text`` with every character of each ``[start, end)`` replaced by a ``[MASK]``; the masked substrings."""
    out, originals, last = [], [], 0
    for start, end in sorted(spans):
        if not 0 <= start < end <= len(text) or start < last:
            raise UserError(
                f"--mask_span: {start}:{end} is not a non-empty, non-overlapping range of the "
                f"{len(text)} characters of {text[:40]!r}"
            )
        if any(ch.isspace() for ch in text[start:end]):
            raise UserError(f"--mask_span: {start}:{end} covers whitespace ({text[start:end]!r}); mask characters")
        out.append(text[last:start] + MASK * (end - start))
        originals.append(text[start:end])
        last = end
    out.append(text[last:])
    return "".join(out), originals


def parse_span(text: str) -> tuple[int, int]:
    try:
        start, end = (int(x) for x in text.split(":"))
    except ValueError:
        raise UserError(f"--mask_span: {text!r} is not start:end (character offsets, end excluded)") from None
    return start, end


class FillMask:
    """Masked-token prediction with a pretrained ERNIE (see the module docstring)."""

    def __init__(self, model_dir: str, device: str | None = None):
        import paddle

        from ernie.modeling import ErnieForMaskedLM  # delays Paddle: --help and bad input fail before it loads

        if not os.path.isdir(model_dir):
            raise UserError(f"--model_dir: {model_dir} is not a directory")
        if device:
            paddle.set_device(device)
        self.paddle = paddle
        self.tokenizer = ErnieTokenizer.from_pretrained(model_dir)
        with warnings.catch_warnings():  # the SOP head / pooler of a pretraining checkpoint are not needed here
            warnings.simplefilter("ignore")
            self.model = ErnieForMaskedLM.from_pretrained(model_dir)
        missing = [k for k in (self.model.load_report or {}).get("missing", []) if k.startswith(PREDICTION_HEAD)]
        if missing or self.model.load_report is None:
            raise UserError(
                f"--model_dir: {model_dir} has no MLM head ({', '.join(missing) or 'no weights'}): give "
                "a pretraining checkpoint (model_last), a PaddleNLP ErnieForPretraining/ErnieForMaskedLM "
                "dir or an HF ErnieForMaskedLM/ErnieForPreTraining dir"
            )
        self.model.eval()
        tok = self.tokenizer
        self.max_length = int(self.model.config.max_position_embeddings)
        tokens = tok.convert_ids_to_tokens(list(range(tok.vocab_size)))
        allowed = np.array([not (t.startswith("##") or (t.startswith("[") and t.endswith("]"))) for t in tokens])
        rows = int(self.model.config.vocab_size)
        self._blocked = np.full(rows, -np.inf, dtype=np.float32)  # added to the log-probs: -inf on non-candidates
        self._blocked[: tok.vocab_size][allowed] = 0.0
        self._tokens = tokens

    # ------------------------------------------------------------------------------------------------ internals
    def _log_probs(self, ids: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """log-softmax over the candidates at ``positions`` (flat row * S + pos) of ``ids`` [B, S]: [N, V]."""
        paddle = self.paddle
        with paddle.no_grad():
            scores = self.model(
                paddle.to_tensor(ids),
                paddle.zeros(ids.shape, dtype="int64"),
                attention_mask=paddle.to_tensor((ids != self.tokenizer.pad_token_id).astype("int64")),
                masked_positions=paddle.to_tensor(positions.astype("int64")),
            )
        logits = scores.astype("float32").numpy() + self._blocked
        logits -= logits.max(axis=-1, keepdims=True)
        return logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))

    def encode(self, text: str) -> np.ndarray:
        ids = self.tokenizer(text)["input_ids"]
        if len(ids) > self.max_length:
            raise UserError(f"{text[:40]!r}...: {len(ids)} tokens, the model takes at most {self.max_length}")
        return np.asarray(ids, dtype=np.int64)

    def top_k(self, ids: np.ndarray, positions: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k token ids and probabilities [P, k] at ``positions`` of one sequence (all masks in place)."""
        log_probs = self._log_probs(ids[None], positions)
        best = np.argsort(-log_probs, axis=-1, kind="stable")[:, :k]
        return best, np.exp(np.take_along_axis(log_probs, best, axis=-1))

    def beam(self, ids: np.ndarray, positions: np.ndarray, beam_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Best joint filling of ``positions`` of one sequence: (token ids [P], their log-probs [P])."""
        beams: list[tuple[float, np.ndarray, list[float]]] = [(0.0, ids.copy(), [])]  # (score, ids, log-probs)
        for p in positions.tolist():
            batch = np.stack([b[1] for b in beams])
            flat = np.arange(len(beams)) * batch.shape[1] + p
            log_probs = self._log_probs(batch, flat)
            candidates = []
            for b, (score, _, _) in enumerate(beams):
                best = np.argpartition(-log_probs[b], min(beam_size, log_probs.shape[1] - 1))[:beam_size]
                candidates += [(score + float(log_probs[b, t]), b, int(t)) for t in best]
            candidates.sort(key=lambda c: -c[0])
            new = []
            for score, b, t in candidates[:beam_size]:
                seq = beams[b][1].copy()
                seq[p] = t
                new.append((score, seq, beams[b][2] + [float(log_probs[b, t])]))
            beams = new
        score, seq, steps = beams[0]
        return seq[positions], np.array(steps)

    # -------------------------------------------------------------------------------------------------- the API
    def fill(
        self, text: str, top_k: int = 5, beam_size: int = 5, mask_spans: list[tuple[int, int]] | None = None
    ) -> FillResult:
        originals = None
        if mask_spans:
            text, originals = apply_mask_spans(text, mask_spans)
        ids = self.encode(text)
        masked = np.flatnonzero(ids == self.tokenizer.mask_token_id)
        if masked.size == 0:
            raise UserError(
                f"{text[:60]!r}: no {MASK} in the text (write [MASK] per masked character, or give --mask_span)"
            )
        best, probs = self.top_k(ids, masked, top_k)
        if masked.size == 1:  # one masked token: the beam's best is the one-pass top-1
            filling, steps = best[:, 0], np.log(probs[:, 0])
        else:
            filling, steps = self.beam(ids, masked, max(1, beam_size))
        runs = np.split(np.arange(masked.size), np.flatnonzero(np.diff(masked) > 1) + 1)
        if originals is not None and len(originals) != len(runs):  # adjacent spans merged into one run
            originals = None
        spans = []
        for r, run in enumerate(runs):
            words = self._tokens_to_text(filling[run])
            spans.append(
                SpanFilling(
                    int(masked[run[0]]) - 1,
                    int(masked[run[-1]]),
                    words,
                    originals[r] if originals is not None else None,
                    float(steps[run].sum()),
                    [self._tokens[int(t)] for t in filling[run]],
                )
            )
        filled = text
        for span in spans:
            filled = filled.replace(MASK * (span.end - span.start), span.filling, 1)
        positions = [
            [(self._tokens[int(t)], float(p)) for t, p in zip(row_t, row_p)] for row_t, row_p in zip(best, probs)
        ]
        return FillResult(text, filled, positions, spans)

    def __call__(
        self,
        texts: list[str],
        top_k: int = 5,
        beam_size: int = 5,
        mask_spans: Sequence[list[tuple[int, int]] | None] | None = None,
    ) -> list[FillResult]:
        spans = mask_spans or [None] * len(texts)
        return [self.fill(t, top_k, beam_size, s) for t, s in zip(texts, spans)]

    def _tokens_to_text(self, ids) -> str:
        """Tokens joined as text: a space only between two ASCII words (``new york``), none around CJK chars or
        punctuation."""

        def word_char(ch: str) -> bool:
            return ch.isascii() and ch.isalnum()

        out = ""
        for t in (self._tokens[int(i)] for i in ids):
            if out and word_char(out[-1]) and word_char(t[0]):
                out += " "
            out += t
        return out


# ------------------------------------------------------------------------------------------------------ the CLI


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        allow_abbrev=False,
        prog="fill_mask.py",
        description="Top-k fillings of [MASK]ed characters and the best filling "
        "of each masked span, with a pretrained ERNIE.",
    )
    p.add_argument("texts", nargs="*", help="sentences with [MASK] runs (one [MASK] per masked character)")
    p.add_argument(
        "--model_dir",
        required=True,
        help="a pretraining checkpoint (model_last), a PaddleNLP or an HF transformers ERNIE dir",
    )
    p.add_argument("--input_file", help="more sentences, one a line")
    p.add_argument(
        "--mask_span",
        action="append",
        default=[],
        metavar="START:END",
        help="mask characters [START, END) of the sentence instead of writing [MASK]s: once for every "
        "sentence, or once per sentence in order",
    )
    p.add_argument("--top_k", type=int, default=5)
    p.add_argument("--beam_size", type=int, default=5, help="beams of the whole-span filling (1: greedy)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="one JSON object per sentence instead of text")
    return p


@cli_main
def main(argv: list[str] | None = None) -> list[FillResult]:
    args = build_parser().parse_args(argv)
    texts = list(args.texts)
    if args.input_file:
        if not os.path.isfile(args.input_file):
            raise UserError(f"--input_file: {args.input_file} does not exist")
        with open(args.input_file, encoding="utf-8") as f:
            texts += [line.rstrip("\n") for line in f if line.strip()]
    if not texts:
        raise UserError("no sentences: give them as arguments or with --input_file")
    if args.top_k < 1 or args.beam_size < 1:
        raise UserError("--top_k and --beam_size must be >= 1")
    spans = [parse_span(s) for s in args.mask_span]
    if spans and len(spans) not in (1, len(texts)):
        raise UserError(
            f"--mask_span: given {len(spans)} times for {len(texts)} sentences (give it once, or once per sentence)"
        )
    per_text = [[spans[0]] if len(spans) == 1 else [spans[i]] for i in range(len(texts))] if spans else None
    for i, text in enumerate(texts):  # bad input before the model loads
        if per_text:
            apply_mask_spans(text, per_text[i])
        elif MASK not in text:
            raise UserError(
                f"{text[:60]!r}: no {MASK} in the text (write [MASK] per masked character, or give --mask_span)"
            )
    tune_cpu_math(args.device)
    results = FillMask(args.model_dir, args.device)(texts, args.top_k, args.beam_size, per_text)
    for r in results:
        if args.json:
            print(json.dumps(r.to_dict(), ensure_ascii=False))
            continue
        print(r.text)
        for i, cands in enumerate(r.positions):
            print(f"  [MASK] {i + 1}: " + "  ".join(f"{t} {p:.3f}" for t, p in cands))
        for s in r.spans:
            gold = f" (masked: {s.original})" if s.original is not None else ""
            print(
                f"  span {s.start}-{s.end}: {s.filling}{gold}  log-prob {s.log_prob:.3f} "
                f"(per token {s.log_prob / max(1, s.end - s.start):.3f})"
            )
        print(f"  => {r.filled}")
    sys.stdout.flush()
    return results


__all__ = ["FillMask", "FillResult", "SpanFilling", "apply_mask_spans", "main"]
