"""Aspect buckets: batches hold one training size, the order is the unbatched order's when every
row shares a size, every process gets the same number of batches, and a resume skips exactly."""

import pytest

from diffsynth.data.buckets import BucketBatchSampler
from diffsynth.data.sampler import RepeatShuffleSampler


def test_batch_size_one_is_the_unbatched_order():
    batches = list(BucketBatchSampler([(64, 64)] * 7, batch_size=1, repeat=3, seed=5, epoch=2))
    plain = list(RepeatShuffleSampler(7, 3, seed=5, epoch=2))
    assert [b for [b] in batches] == plain


def test_each_batch_holds_one_size_and_every_row_appears_once_per_block():
    sizes = [(64, 64), (48, 80), (64, 64), (64, 64), (48, 80), (80, 48), (64, 64)]
    sampler = BucketBatchSampler(sizes, batch_size=2, repeat=2, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 2 * (2 + 1 + 1)  # per block: ceil(4/2) + ceil(2/2) + ceil(1/2)
    for batch in batches:
        assert len({sizes[i % 7] for i in batch}) == 1
    for block in range(2):
        rows = sorted(i for batch in batches for i in batch if i // 7 == block)
        assert rows == [block * 7 + r for r in range(7)]


@pytest.mark.parametrize("world_size", [2, 3])
def test_processes_get_equal_batch_counts_and_share_out_every_batch(world_size):
    sizes = [(64, 64)] * 5 + [(48, 80)] * 3
    per_rank = [list(BucketBatchSampler(sizes, 2, repeat=1, seed=1, rank=r, world_size=world_size)) for r in range(world_size)]
    assert len({len(b) for b in per_rank}) == 1
    everything = list(BucketBatchSampler(sizes, 2, repeat=1, seed=1))
    dealt = [batch for k in range(len(per_rank[0])) for rank in per_rank for batch in rank[k:k + 1]]
    assert all(batch in dealt for batch in everything)


def test_skip_resumes_at_the_same_batch():
    sizes = [(64, 64), (48, 80)] * 6
    full = list(BucketBatchSampler(sizes, 3, repeat=4, seed=9, epoch=1))
    resumed = BucketBatchSampler(sizes, 3, repeat=4, seed=9, epoch=1, skip=5)
    assert list(resumed) == full[5:]
