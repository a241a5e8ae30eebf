"""Figure 3: dataset. `__getitem__` cost and RSS with `--dataset_repeat` 1 vs 10**12; reading a
1,000,000-row metadata file (csv / jsonl / json) in a fresh process; images/s through the
trainer's DataLoader set-up (RepeatShuffleSampler, batch 1) with 0 and 2 workers."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

from benchmarks.common import (
    EXAMPLE_DATA,
    MB,
    Context,
    PeakRss,
    Record,
    alternate,
    at_most,
    in_subprocess,
    median,
    rss_bytes,
)

HUGE = 10**12
ROWS = 1_000_000
LOAD_GOAL_S, LOAD_GOAL_MB = 2.0, 300
RSS_TOLERANCE_MB = 5  # "equal": within allocator noise


def training_dataset(repeat: int):
    from diffsynth.config import TrainConfig
    from diffsynth.data.dataset import DatasetOptions, TrainingDataset

    config = TrainConfig(dataset_base_path=str(EXAMPLE_DATA), dataset_repeat=repeat, height=64, width=64)
    return TrainingDataset(DatasetOptions.from_config(config, multiple=16))


def getitem_times(repeat: int, n: int) -> list[float]:
    """Seconds per item over the first n indices of the shuffled order (one sample per call)."""
    from diffsynth.data.sampler import RepeatShuffleSampler

    dataset = training_dataset(repeat)
    sampler = RepeatShuffleSampler(dataset.num_rows, repeat, seed=0)
    indices = list(itertools.islice(itertools.cycle(sampler), n))  # repeat 1: the 8 rows, again
    t = time.perf_counter()
    for i in indices:
        dataset[i]
    return [(time.perf_counter() - t) / n]


def repeat_rss(repeat: int, n: int) -> dict:
    """Child: RSS growth for building the dataset + sampler and loading its first n items."""
    import gc

    import diffsynth.data.dataset  # noqa: F401 (imports outside the measurement)

    gc.collect()
    before = rss_bytes()
    with PeakRss() as peak:
        getitem_times(repeat, n)
        gc.collect()
    return {"peak": peak.peak, "after": rss_bytes() - before}


def write_metadata(folder: Path, rows: int) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    records = [{"image": f"images/{i % 1000:03d}/{i:07d}.png", "prompt": f"a photo number {i} of a red cat on a mat"} for i in range(rows)]
    paths = {fmt: folder / f"metadata.{fmt}" for fmt in ("csv", "jsonl", "json")}
    with paths["csv"].open("w") as f:
        f.write("image,prompt\n")
        f.writelines(f"{r['image']},{r['prompt']}\n" for r in records)
    with paths["jsonl"].open("w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    paths["json"].write_text(json.dumps(records))
    return paths


def read_in_child(path: str) -> dict:
    """Child: seconds and peak RSS growth of `read_metadata(path)`."""
    from diffsynth.data import metadata

    with PeakRss() as peak:
        t = time.perf_counter()
        table = metadata.read_metadata(path)
        seconds = time.perf_counter() - t
    return {"seconds": seconds, "peak": peak.peak, "rows": len(table)}


def loader_images_per_s(workers: int, items: int) -> list[float]:
    import torch

    from diffsynth.data.dataset import first_item
    from diffsynth.data.sampler import RepeatShuffleSampler

    dataset = training_dataset(HUGE)
    sampler = RepeatShuffleSampler(dataset.num_rows, 1 + items // dataset.num_rows, seed=0)
    loader = torch.utils.data.DataLoader(dataset, batch_size=1, sampler=sampler, collate_fn=first_item, num_workers=workers)
    t = time.perf_counter()  # includes starting the workers, as a training epoch does
    for k, _ in enumerate(loader, 1):
        if k == items:
            break
    return [items / (time.perf_counter() - t)]


def run(ctx: Context) -> list[Record]:
    n = 50 if ctx.quick else 400
    rounds = 2 if ctx.quick else 7
    one, huge = alternate(lambda: getitem_times(1, n), lambda: getitem_times(HUGE, n), rounds)
    ratio = median(huge) / median(one)
    rss = {r: in_subprocess("benchmarks.dataset:repeat_rss", repeat=r, n=n) for r in (1, HUGE)}
    grow_mb = (rss[HUGE]["peak"] - rss[1]["peak"]) / MB
    records = [
        Record("dataset.getitem_us.repeat_1", round(median(one) * 1e6, 1), "us", details={"items": n, "image": "64x64"}),
        Record("dataset.getitem_ratio.repeat_1e12_vs_1", round(ratio, 3), "x", "equal (<= 1.05)", at_most(ratio, 1.05), {"rounds": rounds}),
        Record("dataset.rss_diff_mb.repeat_1e12_vs_1", round(grow_mb, 2), "MB", f"equal (<= {RSS_TOLERANCE_MB} MB)", at_most(grow_mb, RSS_TOLERANCE_MB),
               {f"peak_growth_mb.repeat_{'1e12' if r == HUGE else 1}": round(v["peak"] / MB, 2) for r, v in rss.items()}),
    ]  # fmt: skip
    rows = 20_000 if ctx.quick else ROWS
    for fmt, path in write_metadata(ctx.workdir / "metadata", rows).items():
        got = in_subprocess("benchmarks.dataset:read_in_child", path=str(path))
        size = {"rows": got["rows"], "file_mb": round(path.stat().st_size / MB, 1)}
        sized = not ctx.quick  # the goals are for 1,000,000 rows
        records += [
            Record(f"dataset.metadata_load_s.{fmt}", round(got["seconds"], 3), "s", f"<= {LOAD_GOAL_S} s (1M rows)",
                   at_most(got["seconds"], LOAD_GOAL_S) if sized else None, size),
            Record(f"dataset.metadata_rss_mb.{fmt}", round(got["peak"] / MB, 1), "MB", f"<= {LOAD_GOAL_MB} MB (1M rows)",
                   at_most(got["peak"] / MB, LOAD_GOAL_MB) if sized else None, size),
        ]  # fmt: skip
    items = 16 if ctx.quick else 200
    w0, w2 = alternate(lambda: loader_images_per_s(0, items), lambda: loader_images_per_s(2, items), 1 if ctx.quick else 3)
    for workers, values in ((0, w0), (2, w2)):
        records.append(Record(f"dataset.loader_images_per_s.workers_{workers}", round(median(values), 1), "images/s",
                              details={"items": items, "image": "64x64 from examples/data"}))  # fmt: skip
    return records
