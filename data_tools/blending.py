"""Weighted blending of several pretraining corpora (Megatron's BlendedDataset, with PaddleNLP's --input_dir).

``--input_dir`` is one of:
  * a folder: every corpus prefix in it (``P_ids.npy``+``P_idx.npz`` or ``P.bin``+``P.idx``), equal weights;
  * a prefix: that one corpus;
  * ``"w1 prefix1 w2 prefix2 ..."``: the listed corpora with the given (relative) weights.

Blended sample ``i`` is sample ``sample_index[i]`` of corpus ``dataset_index[i]``; the C++
``build_blending_indices`` interleaves the corpora so that every prefix of the stream follows the weights as
closely as possible.
"""

from __future__ import annotations

import copy
import logging
import os

import numpy as np

from ernie.utils import UserError

from .indexed_dataset import detect_impl
from .sample_index import build_blending_indices

logger = logging.getLogger(__name__)

_SUFFIXES = ("_ids.npy", "_idx.npz", ".bin", ".idx")


def find_prefixes(folder: str) -> list[str]:
    """Every complete corpus prefix in ``folder`` (sorted)."""
    candidates = set()
    for fn in os.listdir(folder):
        for suffix in _SUFFIXES:
            if fn.endswith(suffix) and not fn.startswith("."):
                candidates.add(os.path.join(folder, fn[: -len(suffix)]))
    return sorted(p for p in candidates if detect_impl(p) is not None)


def parse_input_dir(input_dir: str) -> tuple[list[str], np.ndarray]:
    """(prefixes, float64 weights summing to 1) named by ``--input_dir``."""
    fields = input_dir.split()
    if len(fields) == 1:
        path = fields[0]
        if os.path.isdir(path):
            prefixes = find_prefixes(path)
            if not prefixes:
                raise UserError(f"--input_dir: {path} holds no token files (*_ids.npy + *_idx.npz or *.bin + *.idx)")
            return prefixes, np.full(len(prefixes), 1.0 / len(prefixes))
        _check_prefix(path)
        return [path], np.ones(1)
    if len(fields) % 2:
        raise UserError(f"--input_dir: {input_dir!r}: expected a folder, a prefix, or pairs 'weight prefix ...'")
    try:
        weights = np.array([float(w) for w in fields[0::2]])
    except ValueError:
        raise UserError(
            f"--input_dir: {input_dir!r}: expected pairs 'weight prefix ...' with numeric weights"
        ) from None
    prefixes = fields[1::2]
    for w, p in zip(weights, prefixes):
        if not (np.isfinite(w) and w > 0):
            raise UserError(
                f"--input_dir: the weight of {p} is {w:g}: weights must be positive finite numbers "
                "(leave a corpus out of the list to skip it)"
            )
    for p in prefixes:
        _check_prefix(p)
    return prefixes, weights / weights.sum()


def _check_prefix(prefix: str) -> None:
    if detect_impl(prefix) is None:
        raise UserError(
            f"--input_dir: {prefix}: no such folder or corpus prefix (expected {prefix}_ids.npy + "
            f"{prefix}_idx.npz or {prefix}.bin + {prefix}.idx)"
        )


class BlendedDataset:
    """``size`` samples drawn from ``datasets`` in proportion to ``weights`` (deterministic interleaving)."""

    def __init__(self, datasets: list, weights: np.ndarray, size: int, name: str = ""):
        if len(datasets) > 255:
            raise UserError(f"--input_dir: at most 255 corpora can be blended, got {len(datasets)}")
        self.datasets = datasets
        self.weights = np.asarray(weights, dtype=np.float64)
        self.dataset_index = np.zeros(size, dtype=np.uint8)
        self.sample_index = np.zeros(size, dtype=np.int64)
        build_blending_indices(self.dataset_index, self.sample_index, self.weights, len(datasets), size, False)
        counts = np.bincount(self.dataset_index, minlength=len(datasets))
        for d, ds in enumerate(datasets):
            if counts[d] and int(self.sample_index[self.dataset_index == d].max()) >= len(ds):
                raise UserError(
                    f"{getattr(ds, 'prefix', d)}: {len(ds)} {name} samples are too few for weight "
                    f"{self.weights[d]:.4f} of {size}"
                )
        for d, ds in enumerate(datasets):
            logger.info(
                "blend %s %s: weight %.4f, share %.4f (%d samples)",
                name,
                getattr(ds, "prefix", d),
                self.weights[d],
                counts[d] / max(size, 1),
                counts[d],
            )
        self.shares = counts / max(size, 1)

    def __len__(self) -> int:
        return len(self.dataset_index)

    def __getitem__(self, idx: int):
        ds = self.datasets[self.dataset_index[idx]]
        j = int(self.sample_index[idx])
        if hasattr(ds, "masking_at"):  # a masking stage is a span of the blended stream (its steps), not of ds's own
            return ds.sample(j, ds.masking_at(idx))
        return ds[j]

    def with_masking(self, strategy: str) -> BlendedDataset:
        """The same blend with every corpus masked with ``strategy`` (``ErnieDataset.with_masking``)."""
        other = copy.copy(self)
        other.datasets = [ds.with_masking(strategy) for ds in self.datasets]
        return other
