"""The DataLoader the trainer iterates: one sample at a time (or a bucket's batch with
`--batch_size`), in the run's sampler's order, loading errors as values."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from diffsynth.data.dataset import TrainingDataset, first_item
from diffsynth.data.buckets import BucketBatchSampler
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


def make_loader(dataset: TrainingDataset, sampler: RepeatShuffleSampler | BucketBatchSampler, num_workers: int, seed: int):
    """Samples in the sampler's order: one at a time, or (a `BucketBatchSampler`) each item the
    list of one batch's samples. The loader gets its own generator: by default a DataLoader draws
    a seed from the global RNG per epoch, which would make a resumed run's noise differ from an
    uninterrupted one's."""
    generator = torch.Generator().manual_seed(seed)
    if isinstance(sampler, BucketBatchSampler):
        return torch.utils.data.DataLoader(LoadErrorsAsValues(dataset), batch_sampler=sampler, collate_fn=list,
                                           num_workers=num_workers, generator=generator)  # fmt: skip
    return torch.utils.data.DataLoader(LoadErrorsAsValues(dataset), batch_size=1, sampler=sampler, collate_fn=first_item,
                                       num_workers=num_workers, generator=generator)  # fmt: skip


def run_sampler(config, dataset, rank: int, world_size: int) -> RepeatShuffleSampler | BucketBatchSampler:
    """The data order of a run (`config` a TrainConfig): one row at a time, or with --batch_size
    batches of rows that train at one size (aspect buckets), dealt equally to the processes."""
    if config.batch_size == 1:
        return RepeatShuffleSampler(dataset.num_rows, config.dataset_repeat, seed=config.seed, rank=rank, world_size=world_size)
    sizes = [dataset.training_size(row) for row in range(dataset.num_rows)]  # headers only
    return BucketBatchSampler(sizes, config.batch_size, config.dataset_repeat, config.seed, rank=rank, world_size=world_size)
