"""The ERNIE pretraining dataset: memory-mapped sentences → masked [CLS] A [SEP] B [SEP] samples with SOP labels.

Pipeline (PaddleNLP ernie-1.0 / Megatron BERT dataset, reorganised):

    input_dir ─ blending.parse_input_dir ─► prefixes + weights
    prefix ─ IndexedDataset ─ split_documents (--split, by documents) ─► document range per split
    document range ─ sample mapping (C++ build_mapping, cached by index_cache) ─► (start, end, target_len) rows
    row i + rng(seed, i) ─ ErnieDataset[i]: A/B cut, SOP swap, truncation, masking.mask_tokens, padding ─► sample

Sample ``i`` depends only on ``(seed, i)`` and the data: its random stream is ``np.random.default_rng([seed, i])``,
so workers, processes and restarts all see identical samples.
"""

from __future__ import annotations

import copy
import functools
import logging
import math
import os
from dataclasses import dataclass, field

import numpy as np

from ernie.utils import UserError

from . import index_cache
from .blending import BlendedDataset, parse_input_dir
from .indexed_dataset import IndexedDataset, check_same_vocab, check_vocab
from .masking import (
    MARKER_LEVELS,
    MARKER_STAGES,
    STRATEGIES,
    MaskingConfig,
    MaskingSchedule,
    VocabTables,
    mask_tokens,
    parse_knowledge_mix,
    sample_level,
)
from .sample_index import build_mapping, mapping_problem

logger = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "valid", "test")
SPECIAL_TOKENS_PER_PAIR = 3  # [CLS] A [SEP] B [SEP]
BLEND_MARGIN = 1.005  # per-dataset sample surplus so that blending never runs a dataset dry (as Megatron)


def _flag(default, help: str, **metadata):
    """A field of :class:`ErnieDatasetFlags`: a ``run_pretrain.py`` flag of the ``data`` section."""
    return field(default=default, metadata={"help": help, **metadata})


@dataclass
class ErnieDatasetFlags:
    """The pretraining-data options that are ``run_pretrain.py`` flags (same names, help and choices).

    Declared once, here: :class:`ErnieDatasetConfig` adds the options set by code, and
    ``ernie.training.args.DataArgs`` inherits these fields as the ``data`` section of the command line. They are
    checked once, in :meth:`ErnieDatasetConfig.validate`.
    """

    max_seq_len: int = _flag(512, "tokens per sample, [CLS]/[SEP] included")
    masked_lm_prob: float = _flag(0.15, "share of a sample's tokens to mask (the budget of every strategy)")
    short_seq_prob: float = _flag(0.1, "share of samples given a shorter random target length")
    binary_head: bool = _flag(True, "train the sentence-order (SOP) head")
    max_ngrams: int = _flag(3, "longest n-gram, in words, of --masking word")
    favor_longer_ngram: bool = _flag(False, "reverse the 1/n n-gram law of --masking word")
    masking: str = _flag(
        "word",
        "basic: tokens (BERT); word: whole words + n-grams (PaddleNLP); knowledge: ERNIE's "
        "basic / phrase / entity levels, one drawn per sample (needs the {P}_units.npy "
        "markers of create_pretraining_data.py --cn_seg_func lac_lexical)",
        choices=list(STRATEGIES),
    )
    masking_schedule: str | None = _flag(
        None,
        "staged masking (ERNIE 1.0's basic -> phrase -> entity training): 'name:steps,...', e.g. "
        "basic:5000,phrase:2500,entity:2500; names basic, word, phrase, entity, knowledge; lengths in optimizer "
        "steps, the last stage runs to the end (its length may be left out); replaces --masking "
        "(default: the one stage --masking)",
    )
    knowledge_mix: str = _flag(
        "1,1,1",
        "weights of the basic,phrase,entity levels drawn per sample by the knowledge "
        "strategy (normalised), e.g. 0.8,0.1,0.1",
    )
    split: str = _flag("949,50,1", "train,valid,test shares of the documents (fewer parts: the rest are 0)")
    share_folder: bool = _flag(
        False,
        "input_dir and output_dir are one shared folder across machines (index cache "
        "and checkpoints are then written by global rank 0 only; otherwise by the "
        "first rank of every machine)",
    )


@dataclass
class ErnieDatasetConfig(ErnieDatasetFlags):
    """How samples are shaped: the one owner of every pretraining-data option.

    The flag fields come from :class:`ErnieDatasetFlags`; the fields below are set by code (``seed`` comes from
    ``--seed`` of the training section). Every field that changes the sample mapping is part of its cache name.
    ``max_predictions_per_seq=None`` leaves only the ``masked_lm_prob`` budget (PaddleNLP ernie-1.0 behaviour).
    ``cache_dir=None`` stores sample mappings next to the data.
    """

    max_predictions_per_seq: int | None = None
    geometric_dist: bool = False
    seed: int = 1234
    samples_per_step: int = 0  # the global batch size (set by the trainer): sample i is in step i // samples_per_step
    cache_dir: str | None = None
    cache_timeout: float = index_cache.DEFAULT_TIMEOUT

    def masking_config(self) -> MaskingConfig:
        cap = self.max_predictions_per_seq if self.max_predictions_per_seq is not None else self.max_seq_len
        return MaskingConfig(self.masked_lm_prob, cap, self.max_ngrams, self.favor_longer_ngram, self.geometric_dist)

    def schedule(self) -> MaskingSchedule:
        """The masking stages of the training split (``--masking_schedule``, else the one stage ``--masking``)."""
        return MaskingSchedule(self.masking_schedule if self.masking_schedule else self.masking, self.samples_per_step)

    def knowledge_weights(self) -> tuple[float, float, float]:
        return parse_knowledge_mix(self.knowledge_mix)

    def validate(self) -> None:
        """The one check of every option (errors name the run_pretrain.py flag)."""
        if not 16 <= self.max_seq_len <= 65536:
            raise UserError(f"--max_seq_len: {self.max_seq_len} must be in [16, 65536]")
        if not 0.0 < self.masked_lm_prob < 1.0:
            raise UserError(f"--masked_lm_prob: {self.masked_lm_prob} must be in (0, 1)")
        if not 0.0 <= self.short_seq_prob <= 1.0:
            raise UserError(f"--short_seq_prob: {self.short_seq_prob} must be in [0, 1]")
        if self.max_ngrams < 1:
            raise UserError(f"--max_ngrams: {self.max_ngrams} must be >= 1")
        if self.masking not in STRATEGIES:
            raise UserError(f"--masking: {self.masking!r} is not one of {', '.join(STRATEGIES)}")
        if self.masking_schedule is not None and not str(self.masking_schedule).strip():
            raise UserError("--masking_schedule: empty (leave it out to use --masking)")
        self.schedule()  # its errors name --masking_schedule
        self.knowledge_weights()  # and --knowledge_mix
        if parse_split(self.split)[0] == 0:
            raise UserError(f"--split: {self.split!r} gives the train split no share")


# ------------------------------------------------------------------------------------------------ splits


def parse_split(split: str) -> np.ndarray:
    """``"949,50,1"`` (or ``949/50/1``, fewer parts padded with 0) → float64 [3] shares summing to 1."""
    parts = [p for p in split.replace("/", ",").split(",") if p.strip()]
    try:
        weights = [float(p) for p in parts]
    except ValueError:
        raise UserError(f"--split: {split!r} is not a list of numbers like 949,50,1") from None
    if not 1 <= len(weights) <= 3 or min(weights) < 0 or sum(weights) <= 0:
        raise UserError(f"--split: {split!r} needs 1 to 3 non-negative numbers with a positive sum")
    weights += [0.0] * (3 - len(weights))
    return np.array(weights) / sum(weights)


def split_documents(split: str, num_docs: int) -> np.ndarray:
    """Document boundaries of train/valid/test: int64 [4], split ``s`` is documents ``[b[s], b[s+1])``."""
    shares = parse_split(split)
    bounds = np.concatenate(([0], np.round(np.cumsum(shares) * num_docs))).astype(np.int64)
    bounds[-1] = num_docs
    return np.maximum.accumulate(bounds)


def train_valid_test_num_samples(
    max_steps: int, global_batch_size: int, eval_iters: int, test_iters: int
) -> tuple[int, int, int]:
    """Samples each split must provide for a run: ``max_steps`` global batches of training data, ``eval_iters``
    of validation data (every evaluation reads the same first batches, so valid losses are comparable) and
    ``test_iters`` of test data."""
    return max_steps * global_batch_size, eval_iters * global_batch_size, test_iters * global_batch_size


# ---------------------------------------------------------------------------------------------- sample map


def mapping_cache_path(
    prefix: str, name: str, doc_range: tuple[int, int], num_samples: int, config: ErnieDatasetConfig
) -> str:
    """``<prefix>_<split>_indexmap_...npy``: every parameter that shapes the mapping is in the name."""
    base = prefix if config.cache_dir is None else os.path.join(config.cache_dir, os.path.basename(prefix))
    return (
        f"{base}_{name}_indexmap_{doc_range[0]}-{doc_range[1]}docs_{num_samples}mns_{config.max_seq_len}msl_"
        f"{config.short_seq_prob:g}ssp_{config.seed}s_{int(config.binary_head)}bh.npy"
    )


def sample_mapping(
    indexed, prefix: str, name: str, doc_range: tuple[int, int], num_samples: int, config: ErnieDatasetConfig
) -> np.ndarray:
    """(N, 3) rows ``(first sentence, end sentence, target length)`` over documents ``doc_range``, shuffled.

    Built by the C++ ``build_mapping`` over as many epochs as needed for ``num_samples``; cached on disk.
    """
    d0, d1 = doc_range
    docs = np.ascontiguousarray(indexed.doc_idx[d0 : d1 + 1], dtype=np.int64)
    sizes = np.ascontiguousarray(indexed.sizes, dtype=np.int32)
    min_sentences = 2 if config.binary_head else 1

    def build() -> np.ndarray:
        try:
            mapping = build_mapping(
                docs,
                sizes,
                np.iinfo(np.int32).max - 1,
                num_samples,
                config.max_seq_len - SPECIAL_TOKENS_PER_PAIR,
                config.short_seq_prob,
                config.seed,
                False,
                min_sentences,
            )
            reason = "no document can make a sample"
        except ValueError as e:  # data_tools.helpers explains why no sample can be made
            mapping, reason = np.zeros((0, 3), dtype=np.uint32), str(e)
        if len(mapping) == 0:
            need = "at least 2 sentences a document (binary_head)" if config.binary_head else "non-empty documents"
            raise UserError(
                f"{prefix}: the {name} split (documents {d0}..{d1 - 1}) yields no samples ({reason}); "
                f"it needs {need}: change --split or add data"
            )
        return mapping

    path = mapping_cache_path(prefix, name, doc_range, num_samples, config)
    fingerprint = index_cache.data_fingerprint(
        indexed.index_path, num_sentences=len(indexed.sizes), num_docs=len(indexed.doc_idx) - 1
    )
    max_target = config.max_seq_len - SPECIAL_TOKENS_PER_PAIR
    check = functools.partial(
        mapping_problem, first_sentence=int(docs[0]), end_sentence=int(docs[-1]), max_target=max_target
    )
    return index_cache.cached_array(path, build, fingerprint, config.share_folder, config.cache_timeout, check)


def epochs_covered(mapping: np.ndarray, pointers: np.ndarray, tokens_in_split: int) -> float:
    """How many passes over the split's tokens the mapping makes."""
    if tokens_in_split == 0:
        return 0.0
    covered = pointers[mapping[:, 1].astype(np.int64)] - pointers[mapping[:, 0].astype(np.int64)]
    return float(covered.sum()) / tokens_in_split


# ------------------------------------------------------------------------------------------------- dataset


def truncation_amounts(len_a: int, len_b: int, max_tokens: int) -> tuple[int, int]:
    """Tokens removed from A and B when the longer one is trimmed one token at a time (ties trim B) until
    ``len_a + len_b <= max_tokens`` — the closed form of BERT's ``truncate_seq_pair`` loop."""
    excess = len_a + len_b - max_tokens
    if excess <= 0:
        return 0, 0
    gap = len_a - len_b
    first = min(abs(gap), excess)
    rest = excess - first
    cut_a = rest // 2 + (first if gap > 0 else 0)
    cut_b = rest - rest // 2 + (first if gap < 0 else 0)
    return cut_a, cut_b


class ErnieDataset:
    """Masked-LM + SOP samples over a range of documents of one token corpus.

    ``ds[i]`` → dict of numpy arrays (S = max_seq_len, P = masked tokens):
        input_ids [S] int64, segment_ids [S] int64, input_mask [S] int64 (1 token / 0 pad),
        masked_lm_positions [P] int64 (sorted), masked_lm_labels [P] int64 (plain ids, ``##`` restored),
        next_sentence_labels [] int64 (1 when A and B were swapped).
    """

    def __init__(
        self,
        name: str,
        indexed,
        prefix: str,
        doc_range: tuple[int, int],
        num_samples: int,
        tables: VocabTables,
        config: ErnieDatasetConfig,
    ):
        self.name = name
        self.indexed = indexed
        self.prefix = prefix
        self.tables = tables
        self.config = config
        self.mask_config = config.masking_config()
        self.schedule = config.schedule()
        self.mix = config.knowledge_weights()
        self.fixed_masking: str | None = None  # with_masking(): one strategy for every sample, whatever the schedule
        needs_markers = [n for n in self.schedule.names if n in MARKER_STAGES]
        if needs_markers and indexed.units is None:
            flag = (
                f"--masking {config.masking}"
                if not config.masking_schedule
                else f"--masking_schedule {config.masking_schedule}"
            )
            raise UserError(
                f"{flag}: {prefix} has no unit markers ({indexed.units_path}); build the "
                "corpus with create_pretraining_data.py --cn_seg_func lac_lexical, or use --masking word"
            )
        self.mapping = sample_mapping(indexed, prefix, name, doc_range, num_samples, config)
        self._open_views()
        d0, d1 = doc_range
        pointers = indexed.pointers
        split_tokens = int(pointers[indexed.doc_idx[d1]] - pointers[indexed.doc_idx[d0]])
        logger.info(
            "%s %s: %d documents, %d samples (%d asked), %.2f epochs",
            os.path.basename(prefix),
            name,
            d1 - d0,
            len(self.mapping),
            num_samples,
            epochs_covered(self.mapping, pointers, split_tokens),
        )

    def _open_views(self) -> None:
        # plain-ndarray views of the memory maps: np.memmap's Python-level __getitem__ costs microseconds a call
        self._rows = np.asarray(self.mapping)
        self._tokens = np.asarray(self.indexed.tokens)
        self._pointers = np.asarray(self.indexed.pointers)
        markers = any(n in MARKER_STAGES for n in self.schedule.names) and self.indexed.units is not None
        self._units = np.asarray(self.indexed.units) if markers else None

    def __len__(self) -> int:
        return len(self.mapping)

    def masking_at(self, idx: int) -> str:
        """The strategy (stage name) of sample ``idx`` of the stream this dataset is read as (for a blend: the
        blended index, see ``BlendedDataset``)."""
        if self.fixed_masking is not None:
            return self.fixed_masking
        return self.schedule.stage_at_sample(idx).name

    def with_masking(self, strategy: str) -> ErnieDataset:
        """The same samples (same rows and random streams) masked with ``strategy`` throughout: held-out sets are
        evaluated with the current stage's masking and, for a comparable figure, with ``basic``."""
        if strategy in MARKER_STAGES and self._units is None:
            raise UserError(f"masking {strategy}: {self.prefix} has no unit markers ({self.indexed.units_path})")
        other = copy.copy(self)
        other.fixed_masking = strategy
        return other

    def __getitem__(self, idx: int) -> dict[str, np.ndarray]:
        return self.sample(idx, self.masking_at(idx))

    def sample(self, idx: int, strategy: str) -> dict[str, np.ndarray]:
        """Sample ``idx`` of this corpus masked with ``strategy`` (a stage name): depends only on (seed, idx,
        strategy)."""
        idx = int(idx)
        start, end, target = self._rows[idx].tolist()
        rng = np.random.default_rng([self.config.seed, idx])
        base, stop = self._pointers[[start, end]].tolist()
        # A and B as [lo, hi) ranges of the span base:stop (the same ranges cut the unit markers)
        if self.config.binary_head:
            u_cut, u_swap = rng.random(2).tolist()
            cut = int(self._pointers[start + 1 + int(u_cut * (end - start - 1))]) - base  # A: 1..n-1 sentences
            a, b = [0, cut], [cut, stop - base]
            swapped = u_swap < 0.5
            if swapped:
                a, b = b, a
        else:
            a, b, swapped = [0, stop - base], [0, 0], False
        cut_a, cut_b = truncation_amounts(a[1] - a[0], b[1] - b[0], target)
        if cut_a:
            front = int(rng.binomial(cut_a, 0.5))
            a = [a[0] + front, a[1] - (cut_a - front)]
        if cut_b:
            front = int(rng.binomial(cut_b, 0.5))
            b = [b[0] + front, b[1] - (cut_b - front)]
        return self._build_sample(base, a, b, swapped, rng, strategy)

    def _build_sample(
        self, base: int, a_range: list[int], b_range: list[int], swapped: bool, rng: np.random.Generator, strategy: str
    ) -> dict:
        """[CLS] a [SEP] (b [SEP]), masked and padded to max_seq_len."""
        t = self.tables
        a = self._tokens[base + a_range[0] : base + a_range[1]]
        b = self._tokens[base + b_range[0] : base + b_range[1]]
        n = a.size + b.size + (3 if self.config.binary_head else 2)
        tokens = np.empty(n, dtype=np.int64)
        tokens[0] = t.cls_id
        tokens[1 : a.size + 1] = a
        tokens[a.size + 1] = t.sep_id
        if self.config.binary_head:
            tokens[a.size + 2 : n - 1] = b
            tokens[n - 1] = t.sep_id
        level = sample_level(strategy, rng, self.mix)
        units = None
        if level in MARKER_LEVELS:
            assert self._units is not None  # a marker level is drawn only when the corpus has markers (checked above)
            units = np.zeros(n, dtype=np.uint8)  # 0 at [CLS]/[SEP]
            units[1 : a.size + 1] = self._units[base + a_range[0] : base + a_range[1]]
            units[a.size + 2 : a.size + 2 + b.size] = self._units[base + b_range[0] : base + b_range[1]]
        inputs, positions, labels = mask_tokens(tokens, rng, t, self.mask_config, level, units)
        seq_len = self.config.max_seq_len
        input_ids = np.full(seq_len, t.pad_id, dtype=np.int64)
        input_ids[:n] = inputs
        segment_ids = np.zeros(seq_len, dtype=np.int64)
        segment_ids[a.size + 2 : n] = 1
        input_mask = np.zeros(seq_len, dtype=np.int64)
        input_mask[:n] = 1
        return {
            "input_ids": input_ids,
            "segment_ids": segment_ids,
            "input_mask": input_mask,
            "masked_lm_positions": positions,
            "masked_lm_labels": labels,
            "next_sentence_labels": np.array(int(swapped), dtype=np.int64),
        }

    def __getstate__(self):
        # worker processes re-open the memory maps instead of receiving copies
        state = {k: v for k, v in self.__dict__.items() if k not in ("_rows", "_tokens", "_pointers", "_units")}
        if isinstance(self.mapping, np.memmap):
            state["mapping"] = self.mapping.filename
        return state

    def __setstate__(self, state):
        if isinstance(state["mapping"], str):
            state["mapping"] = np.load(state["mapping"], mmap_mode="r")
        self.__dict__.update(state)
        self._open_views()


# --------------------------------------------------------------------------------------------- entry point


def build_train_valid_test_datasets(
    input_dir: str, tokenizer, config: ErnieDatasetConfig, train_valid_test_num_samples: tuple[int, int, int]
):
    """(train, valid, test) datasets over ``input_dir`` (a folder, a prefix, or ``"w1 prefix1 w2 prefix2"``).

    A split is ``None`` when its ``--split`` share or its requested sample count is 0. Several prefixes are
    blended by weight; each split of each prefix gets ``ceil(n * weight * 1.005)`` samples.
    """
    config.validate()
    if len(config.schedule().stages) > 1 and config.samples_per_step <= 0:
        raise ValueError("a multi-stage --masking_schedule needs config.samples_per_step (the global batch size)")
    prefixes, weights = parse_input_dir(input_dir)
    tables = VocabTables.from_tokenizer(tokenizer)
    corpora = [IndexedDataset(p) for p in prefixes]
    if len(prefixes) > 1:  # a blend of corpora built with different vocabularies mixes meanings of the ids
        check_same_vocab(prefixes, flag="--input_dir")
    for prefix, corpus in zip(prefixes, corpora):
        if isinstance(getattr(tokenizer, "vocab", None), dict):
            check_vocab(prefix, tokenizer)  # the recorded vocabulary (a corpus built before it was recorded: none)
        corpus.check_token_ids(tokenizer.vocab_size)
    shares = parse_split(config.split)
    result: list[ErnieDataset | BlendedDataset | None] = []
    for s, name in enumerate(SPLIT_NAMES):
        num_samples = int(train_valid_test_num_samples[s])
        if shares[s] == 0 or num_samples <= 0:
            result.append(None)
            continue
        parts = []
        for prefix, weight, indexed in zip(prefixes, weights, corpora):
            num_docs = len(indexed.doc_idx) - 1
            bounds = split_documents(config.split, num_docs)
            doc_range = (int(bounds[s]), int(bounds[s + 1]))
            if doc_range[0] == doc_range[1]:
                raise UserError(
                    f"--split {config.split}: the {name} split of {prefix} is empty ({num_docs} "
                    f"documents in all); give it a larger share, set it to 0, or add data"
                )
            wanted = num_samples if len(prefixes) == 1 else math.ceil(num_samples * weight * BLEND_MARGIN)
            parts.append(ErnieDataset(name, indexed, prefix, doc_range, wanted, tables, config))
        dataset: ErnieDataset | BlendedDataset = (
            parts[0] if len(parts) == 1 else BlendedDataset(parts, weights, num_samples, name)
        )
        if name != "train":  # held-out sets: the last stage's masking (the trainer picks the current one)
            dataset = dataset.with_masking(config.schedule().stages[-1].name)
        result.append(dataset)
    return tuple(result)


__all__ = [
    "ErnieDatasetFlags",
    "ErnieDatasetConfig",
    "ErnieDataset",
    "build_train_valid_test_datasets",
    "parse_split",
    "split_documents",
    "train_valid_test_num_samples",
    "truncation_amounts",
    "sample_mapping",
    "mapping_cache_path",
]
