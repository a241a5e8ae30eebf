"""Batches of samples that share a training size (aspect-ratio buckets), in O(rows) memory.

Each repeat block of an epoch is the same permutation of the rows as `RepeatShuffleSampler`
draws; walking it, a row joins the open batch of its bucket (its training width x height), and
a batch is emitted when it holds `batch_size` rows; the partial batches left at the end of a
block are emitted in the order their buckets were first seen. So every block yields the same
number of batches, `sum over buckets of ceil(rows in bucket / batch_size)`, and the length of an
epoch is known without walking it. Batches are dealt to processes round-robin (batch j to
process j mod world_size, the last ones wrapping around like DistributedSampler), so every
process takes the same number of optimizer steps whatever the buckets.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterator, Sequence

import numpy as np
import torch.utils.data


class BucketBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Lists of dataset indices (`block * num_rows + row`), each list one bucket's batch."""

    def __init__(
        self, bucket_of_row: Sequence[Hashable], batch_size: int, repeat: int, seed: int,
        epoch: int = 0, rank: int = 0, world_size: int = 1, skip: int = 0,
    ) -> None:  # fmt: skip
        if batch_size < 1 or repeat < 1 or not bucket_of_row:
            raise ValueError(f"need rows, batch_size >= 1 and repeat >= 1, got {len(bucket_of_row)}, {batch_size}, {repeat}")
        self.buckets = list(bucket_of_row)
        self.num_rows, self.batch_size, self.repeat, self.seed = len(self.buckets), batch_size, repeat, seed
        self.rank, self.world_size = rank, world_size
        counts: dict[Hashable, int] = {}
        for bucket in self.buckets:
            counts[bucket] = counts.get(bucket, 0) + 1
        self.per_block = sum(math.ceil(n / batch_size) for n in counts.values())
        self.total = self.per_block * repeat  # batches per epoch, all processes together
        self.num_batches = math.ceil(self.total / world_size)  # per process
        self._block: tuple[int, list[list[int]]] | None = None
        self.set_epoch(epoch, skip)

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Use epoch `epoch`'s order from now on, starting `skip` of this process's batches in."""
        if not 0 <= skip <= self.num_batches:
            raise ValueError(f"skip {skip} is not in [0, {self.num_batches}]")
        self.epoch, self.skip, self._block = epoch, skip, None

    def __len__(self) -> int:
        return self.num_batches - self.skip

    def block_batches(self, block: int) -> list[list[int]]:
        """The batches of repeat block `block` in this epoch (rows as dataset indices)."""
        if self._block is not None and self._block[0] == block:
            return self._block[1]
        order = np.random.default_rng([self.seed % 2**64, self.epoch, block]).permutation(self.num_rows)
        open_batches: dict[Hashable, list[int]] = {}
        batches: list[list[int]] = []
        for row in order.tolist():
            batch = open_batches.setdefault(self.buckets[row], [])
            batch.append(block * self.num_rows + row)
            if len(batch) == self.batch_size:
                batches.append(batch)
                open_batches[self.buckets[row]] = []
        batches += [batch for batch in open_batches.values() if batch]  # dicts keep first-seen order
        self._block = (block, batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        for k in range(self.skip, self.num_batches):
            position = (self.rank + k * self.world_size) % self.total  # wraps only in the padding tail
            block, offset = divmod(position, self.per_block)
            yield self.block_batches(block)[offset]
