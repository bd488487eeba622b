"""Collate layout, data-parallel batch sampling, exact resume, determinism across DataLoader workers."""

from __future__ import annotations

import os

import numpy as np
import pytest
from fixtures import write_peoples_daily_token_files

from data_tools.batching import DistributedBatchSampler, collate
from data_tools.ernie_dataset import ErnieDatasetConfig, build_train_valid_test_datasets
from ernie.utils import UserError


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, tokenizer):
    out = str(tmp_path_factory.mktemp("batching"))
    prefix = write_peoples_daily_token_files(os.path.join(out, "pd"), tokenizer, num_paragraphs=300)
    config = ErnieDatasetConfig(max_seq_len=64, seed=11, cache_dir=out)
    return build_train_valid_test_datasets(prefix, tokenizer, config, (400, 0, 0))[0]


def stream(num_samples, micro, world, consumed=0, drop_last=True):
    per_rank = [list(DistributedBatchSampler(num_samples, micro, r, world, consumed, drop_last)) for r in range(world)]
    return per_rank


def test_collate_layout(dataset):
    samples = [dataset[i] for i in range(5)]
    batch = collate(samples)
    seq_len = 64
    assert batch["input_ids"].shape == (5, seq_len) and batch["next_sentence_labels"].shape == (5,)
    assert all(v.dtype == np.int64 for v in batch.values())
    n = sum(s["masked_lm_positions"].size for s in samples)
    pos, lab = batch["masked_lm_positions"], batch["masked_lm_labels"]
    assert pos.size % 8 == 0 and n <= pos.size < n + 8
    assert (lab[n:] == -1).all() and (pos[n:] == 0).all() and (lab[:n] >= 0).all()
    k = 0
    for row, s in enumerate(samples):
        for p, label in zip(s["masked_lm_positions"], s["masked_lm_labels"]):
            assert pos[k] == row * seq_len + p and lab[k] == label
            assert batch["input_ids"].reshape(-1)[pos[k]] == s["input_ids"][p]
            k += 1


@pytest.mark.parametrize("num_samples,micro,world", [(100, 4, 1), (100, 4, 2), (103, 3, 4), (64, 8, 8)])
def test_rank_slices_union_to_the_single_stream(num_samples, micro, world):
    per_rank = stream(num_samples, micro, world)
    single = [i for b in stream(num_samples, micro * world, 1)[0] for i in b]
    steps = len(per_rank[0])
    assert all(
        len(p) == steps == len(DistributedBatchSampler(num_samples, micro, r, world)) for r, p in enumerate(per_rank)
    )
    merged = [i for step in range(steps) for r in range(world) for i in per_rank[r][step]]
    assert merged == single == list(range(steps * micro * world))
    assert all(len(b) == micro for p in per_rank for b in p)


def test_last_partial_step_without_drop_last():
    per_rank = stream(10, 2, 3, drop_last=False)
    assert [b for p in per_rank for b in p] == [[0, 1], [6, 7], [2, 3], [8, 9], [4, 5]]
    assert [len(DistributedBatchSampler(10, 2, r, 3, drop_last=False)) for r in range(3)] == [2, 2, 1]


def test_resume_continues_exactly():
    full = stream(200, 4, 2)
    for steps_done in (0, 1, 7, 24):
        resumed = stream(200, 4, 2, consumed=steps_done * 8)
        assert resumed == [p[steps_done:] for p in full]
    with pytest.raises(UserError, match="consumed_samples"):
        DistributedBatchSampler(10, 2, 0, 1, consumed_samples=12)


def test_resume_gives_identical_batches(dataset):
    def sampler(consumed):
        return DistributedBatchSampler(len(dataset), 4, 1, 2, consumed)

    full = [collate([dataset[i] for i in b]) for b in sampler(0)][:6]
    resumed = [collate([dataset[i] for i in b]) for b in sampler(3 * 8)][:3]
    for a, b in zip(full[3:], resumed):
        assert all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("workers", [1, 2])
def test_dataloader_worker_count_does_not_change_batches(dataset, workers):
    paddle = pytest.importorskip("paddle")
    sampler = DistributedBatchSampler(64, 8, 0, 1)

    def batches(num_workers):
        loader = paddle.io.DataLoader(
            dataset, batch_sampler=sampler, collate_fn=collate, num_workers=num_workers, return_list=True
        )
        return [{k: np.asarray(v) for k, v in b.items()} for b in loader]

    reference = [collate([dataset[i] for i in b]) for b in sampler]
    got = batches(workers)
    assert len(got) == len(reference) == 8
    for a, b in zip(reference, got):
        assert all(np.array_equal(a[k], b[k]) for k in a)
