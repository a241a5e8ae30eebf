"""RepeatShuffleSampler: a fresh permutation per repeat block, deterministic, sharded, O(1) len."""

from __future__ import annotations

import itertools
import time
import tracemalloc

import pytest

from diffsynth.data.sampler import RepeatShuffleSampler


def test_each_block_is_a_permutation_of_the_rows() -> None:
    order = list(RepeatShuffleSampler(10, 4, seed=0))
    assert len(order) == 40
    for b in range(4):
        assert sorted(order[b * 10 : (b + 1) * 10]) == list(range(b * 10, (b + 1) * 10))
    rows = [[i % 10 for i in order[b * 10 : (b + 1) * 10]] for b in range(4)]
    assert len({tuple(r) for r in rows}) == 4  # fresh order per block


def test_deterministic_per_seed_and_epoch() -> None:
    assert list(RepeatShuffleSampler(50, 3, seed=1)) == list(RepeatShuffleSampler(50, 3, seed=1))
    assert list(RepeatShuffleSampler(50, 3, seed=1)) != list(RepeatShuffleSampler(50, 3, seed=2))
    s = RepeatShuffleSampler(50, 3, seed=1)
    first = list(s)
    s.set_epoch(1)
    assert list(s) != first and sorted(s) == sorted(first)


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_take_disjoint_interleaved_shards(world_size: int) -> None:
    full = list(RepeatShuffleSampler(12, 2, seed=3))
    shards = [list(RepeatShuffleSampler(12, 2, seed=3, rank=r, world_size=world_size)) for r in range(world_size)]
    for r, shard in enumerate(shards):
        assert shard == full[r::world_size]
    assert sorted(itertools.chain(*shards)) == sorted(full)


def test_uneven_shards_pad_by_wrapping_so_ranks_stay_in_step() -> None:
    shards = [list(RepeatShuffleSampler(5, 1, seed=0, rank=r, world_size=2)) for r in range(2)]
    assert [len(s) for s in shards] == [3, 3]
    full = list(RepeatShuffleSampler(5, 1, seed=0))
    assert shards[1][-1] == full[0]


def test_skip_resumes_at_the_same_place_in_o1() -> None:
    full = list(RepeatShuffleSampler(7, 3, seed=5, rank=1, world_size=2))
    resumed = RepeatShuffleSampler(7, 3, seed=5, rank=1, world_size=2, skip=4)
    assert len(resumed) == len(full) - 4 and list(resumed) == full[4:]
    huge = RepeatShuffleSampler(7, 10**12, seed=5, skip=7 * 10**12 - 2)
    start = time.perf_counter()
    assert len(list(huge)) == 2
    assert time.perf_counter() - start < 0.05


def _peak_bytes_for_first(sampler: RepeatShuffleSampler, n: int) -> int:
    tracemalloc.start()
    assert len(set(itertools.islice(sampler, n))) == n
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_repeat_1e12_len_is_instant_and_memory_is_o_rows() -> None:
    start = time.perf_counter()
    huge = RepeatShuffleSampler(1000, 10**12, seed=0, world_size=3, rank=2)
    assert len(huge) == -(-1000 * 10**12 // 3)
    assert time.perf_counter() - start < 0.01
    small = RepeatShuffleSampler(1000, 9, seed=0, world_size=3, rank=2)
    _peak_bytes_for_first(small, 10)  # warm up numpy's generator machinery
    # 2500 indices cross several blocks; the same work must cost the same however large the repeat
    assert abs(_peak_bytes_for_first(huge, 2500) - _peak_bytes_for_first(small, 2500)) < 4096
