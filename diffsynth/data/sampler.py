"""Shuffled order over a repeated dataset, in O(rows) memory however large the repeat."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch.utils.data


class RepeatShuffleSampler(torch.utils.data.Sampler[int]):
    """Indices into a dataset of `num_rows * repeat` items, shuffled block by block.

    The global order is `repeat` blocks; block b is `b * num_rows + permutation_b(num_rows)`, the
    permutation drawn from a generator seeded by (seed, epoch, b) and made only when reached. With
    `world_size > 1`, rank r takes global positions r, r + world_size, ...; like
    DistributedSampler, every rank gets ceil(total / world_size) indices, the last few wrapping
    around to the start so ranks stay in step. `skip` starts at that many of this rank's indices
    (for resuming) in O(1).
    """

    def __init__(
        self, num_rows: int, repeat: int, seed: int, epoch: int = 0, rank: int = 0, world_size: int = 1, skip: int = 0
    ) -> None:
        if num_rows < 1 or repeat < 1:
            raise ValueError(f"num_rows and repeat must be >= 1, got {num_rows} and {repeat}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        self.num_rows, self.repeat, self.seed = num_rows, repeat, seed
        self.rank, self.world_size = rank, world_size
        self.total = num_rows * repeat
        self.num_samples = math.ceil(self.total / world_size)  # per rank
        self.set_epoch(epoch, skip)

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Use epoch `epoch`'s order from now on, starting `skip` indices in."""
        if not 0 <= skip <= self.num_samples:
            raise ValueError(f"skip {skip} is not in [0, {self.num_samples}]")
        self.epoch, self.skip = epoch, skip

    def __len__(self) -> int:
        return self.num_samples - self.skip

    def permutation(self, block: int) -> np.ndarray:
        """Row order of repeat block `block` in this epoch (a permutation of range(num_rows))."""
        # SeedSequence mixes the three numbers; it takes only non-negative integers.
        rng = np.random.default_rng([self.seed % 2**64, self.epoch, block])
        return rng.permutation(self.num_rows)

    def __iter__(self) -> Iterator[int]:
        rows, world, total = self.num_rows, self.world_size, self.total
        block, perm = -1, None
        for k in range(self.skip, self.num_samples):
            position = (self.rank + k * world) % total  # wraps only in the padding tail
            b, offset = divmod(position, rows)
            if b != block:
                block, perm = b, self.permutation(b)
            yield b * rows + int(perm[offset])
