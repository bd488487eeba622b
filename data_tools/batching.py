"""Batches for the pretraining loop: a collate in the model's layout and a data-parallel batch sampler.

The sample stream is the dataset in index order (the sample mapping is already shuffled). A global step reads
``micro_batch_size * world_size`` consecutive indices; rank ``r`` takes the ``r``-th slice of
``micro_batch_size``. The union over ranks is therefore exactly the single-process stream, and resuming from
``consumed_samples`` (a count of samples over all ranks) continues where training stopped.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ernie.utils import UserError

MASKED_POSITIONS_MULTIPLE = 8  # padded so that the gathered [N, H] matrix has a GEMM-friendly row count
IGNORE_INDEX = -1


def collate(samples: list[dict]) -> dict[str, np.ndarray]:
    """Stack samples of :class:`~data_tools.ernie_dataset.ErnieDataset` into one batch.

    Returns (B samples of length S, N masked tokens padded to a multiple of 8):
        input_ids, segment_ids, input_mask: int64 [B, S]
        masked_lm_positions: int64 [N], flat ``row * S + pos`` (padding entries point at 0)
        masked_lm_labels:    int64 [N], -1 on padding entries (ignored by the loss)
        next_sentence_labels: int64 [B]
    """
    if not samples:
        raise ValueError("collate() needs at least one sample")
    batch = {
        k: np.stack([s[k] for s in samples]) for k in ("input_ids", "segment_ids", "input_mask", "next_sentence_labels")
    }
    seq_len = batch["input_ids"].shape[1]
    counts = np.array([s["masked_lm_positions"].size for s in samples])
    rows = np.repeat(np.arange(len(samples), dtype=np.int64), counts)
    flat = rows * seq_len + np.concatenate([s["masked_lm_positions"] for s in samples]).astype(np.int64)
    labels = np.concatenate([s["masked_lm_labels"] for s in samples]).astype(np.int64)
    total = -(-flat.size // MASKED_POSITIONS_MULTIPLE) * MASKED_POSITIONS_MULTIPLE
    batch["masked_lm_positions"] = np.zeros(total, dtype=np.int64)
    batch["masked_lm_positions"][: flat.size] = flat
    batch["masked_lm_labels"] = np.full(total, IGNORE_INDEX, dtype=np.int64)
    batch["masked_lm_labels"][: labels.size] = labels
    return batch


class DistributedBatchSampler:
    """Index batches for rank ``rank`` of ``world_size`` data-parallel processes.

    Yields lists of ``micro_batch_size`` dataset indices, starting after ``consumed_samples`` samples of the
    global stream. With ``drop_last=False`` the final incomplete global step is shared out in rank order (a rank
    may get a short batch or none).
    """

    def __init__(
        self,
        num_samples: int,
        micro_batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        consumed_samples: int = 0,
        drop_last: bool = True,
    ):
        if micro_batch_size <= 0:
            raise UserError(f"--micro_batch_size: must be positive, got {micro_batch_size}")
        if not 0 <= rank < world_size:
            raise UserError(f"rank {rank} is out of range for {world_size} processes")
        if consumed_samples < 0 or consumed_samples > num_samples:
            raise UserError(
                f"consumed_samples {consumed_samples} is outside the {num_samples} samples of the "
                "dataset (resuming a run with different data or max_steps?)"
            )
        self.num_samples = num_samples
        self.micro_batch_size = micro_batch_size
        self.rank = rank
        self.world_size = world_size
        self.consumed_samples = consumed_samples
        self.drop_last = drop_last

    @property
    def global_batch(self) -> int:
        return self.micro_batch_size * self.world_size

    def __iter__(self) -> Iterator[list[int]]:
        lo = self.rank * self.micro_batch_size
        for step_start in range(self.consumed_samples, self.num_samples, self.global_batch):
            step_end = min(step_start + self.global_batch, self.num_samples)
            if step_end - step_start < self.global_batch and self.drop_last:
                return
            batch = list(range(step_start + lo, min(step_start + lo + self.micro_batch_size, step_end)))
            if batch:
                yield batch

    def __len__(self) -> int:
        remaining = self.num_samples - self.consumed_samples
        full, rest = divmod(remaining, self.global_batch)
        if self.drop_last or rest <= self.rank * self.micro_batch_size:
            return full
        return full + 1
