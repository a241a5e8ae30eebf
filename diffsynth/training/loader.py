"""The DataLoader the trainer iterates: one sample at a time (or a bucket's batch with
`--batch_size`), in the run's sampler's order, loading errors as values."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from diffsynth.data.dataset import TrainingDataset, first_item
from diffsynth.data.sampler import RepeatShuffleSampler
from diffsynth.errors import UserError


@dataclass
class LoadFailure:
    """A sample that could not be loaded; carried to the main process as a value, because an
    exception raised in a DataLoader worker arrives with the worker's traceback in its text."""

    index: int
    message: str


class LoadErrorsAsValues(torch.utils.data.Dataset):
    """Wraps the dataset so a `UserError` while loading becomes a `LoadFailure` item."""

    def __init__(self, dataset: TrainingDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        try:
            return self.dataset[index]
        except UserError as exc:
            return LoadFailure(index, str(exc))


def make_loader(dataset: TrainingDataset, sampler: RepeatShuffleSampler, num_workers: int, seed: int):
    """Samples one at a time in the sampler's order. The loader gets its own generator: by default
    a DataLoader draws a seed from the global RNG per epoch, which would make a resumed run's
    noise differ from an uninterrupted one's."""
    return torch.utils.data.DataLoader(
        LoadErrorsAsValues(dataset), batch_size=1, sampler=sampler, collate_fn=first_item,
        num_workers=num_workers, generator=torch.Generator().manual_seed(seed),
    )


def make_batch_loader(dataset: TrainingDataset, batch_sampler, num_workers: int, seed: int):
    """`make_loader` for `--batch_size` > 1: each item is the list of one batch's samples."""
    return torch.utils.data.DataLoader(
        LoadErrorsAsValues(dataset), batch_sampler=batch_sampler, collate_fn=list,
        num_workers=num_workers, generator=torch.Generator().manual_seed(seed),
    )
