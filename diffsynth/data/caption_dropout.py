"""`--caption_dropout_rate`: which samples train with the empty prompt.

The decision is a pure function of (seed, epoch, process rank, position of the micro-batch in
that process's epoch), hashed to a uniform number in [0, 1); no RNG state is consumed, so a run
resumed from a checkpoint drops exactly the prompts the uninterrupted run drops, and the choice
does not change the noise or timesteps any other sample gets.
"""

from __future__ import annotations

import hashlib

from diffsynth.types import Sample

EMPTY_PROMPT = ""


def dropout_draw(seed: int, epoch: int, rank: int, position: int) -> float:
    """A uniform number in [0, 1) determined by its arguments."""
    digest = hashlib.blake2b(f"caption-dropout:{seed}:{epoch}:{rank}:{position}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def drops_caption(rate: float, seed: int, epoch: int, rank: int, position: int) -> bool:
    return rate > 0 and dropout_draw(seed, epoch, rank, position) < rate


def with_caption_dropout(sample: Sample, rate: float, seed: int, epoch: int, rank: int, position: int) -> Sample:
    """`sample` with its prompt replaced by the empty prompt when the draw says so (in place)."""
    if drops_caption(rate, seed, epoch, rank, position):
        sample.fields["prompt"] = EMPTY_PROMPT
    return sample
