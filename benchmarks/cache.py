"""Encoder cache (issue 14): step time of `Trainer.run()` trained from the cache vs encoding
every step, alternated in one process on the same tiny Qwen-Image config; and the start-up of
split training's stage 2 (`--task sft:train`, the DiT alone) vs the same run loading every
model, each a fresh `python -m diffsynth` process, to its first optimizer step.

    python -m benchmarks.cache [--quick]      # prints one JSON object
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import EXAMPLE_DATA, alternate, machine_info, median, trainer_step_seconds
from benchmarks.models import SOURCES, write_tiny

DIT = SOURCES.split(",")[0]


def _config(out: Path, steps: int, size: int, **extra):
    from diffsynth.config import TrainConfig

    return TrainConfig(
        dataset_base_path=str(EXAMPLE_DATA), dataset_metadata_path=str(EXAMPLE_DATA / "metadata.csv"),
        height=size, width=size, dataset_repeat=1000, model_id_with_origin_paths=SOURCES,
        lora_base_model="dit", lora_rank=32, dtype="fp32", max_steps=steps, output_path=str(out),
        family="qwen-image", **extra,
    )  # fmt: skip


def step_times(out: Path, steps: int, size: int, **extra) -> list[float]:
    from diffsynth.plugins import load_registry

    return trainer_step_seconds(load_registry(), _config(out, steps, size, **extra))


def first_step_seconds(cwd: Path, args: list[str], env: dict[str, str]) -> float:
    """Wall time of a fresh `python -m diffsynth train ... --max_steps 1` until it exits."""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "diffsynth", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    opts = parser.parse_args()
    rounds, steps, size = (1, 4, 64) if opts.quick else (5, 12, 64)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = write_tiny(tmp / "models")
        os.environ["DIFFSYNTH_MODEL_BASE_PATH"] = str(base)
        os.environ.setdefault("DIFFSYNTH_SKIP_DOWNLOAD", "True")
        cache = tmp / "cache"
        step_times(tmp / "warm", 2, size, cache_dir=str(cache))  # builds the cache once
        counter = itertools.count()
        plain, cached = alternate(
            lambda: step_times(tmp / f"p{next(counter)}", steps, size),
            lambda: step_times(tmp / f"c{next(counter)}", steps, size, cache_dir=str(cache)),
            rounds,
        )
        # start-up: stage 2 (DiT alone, from the cache) vs the uncached run (every model), fresh processes
        common = ["train", "qwen-image", "--height", str(size), "--width", str(size), "--lora_base_model", "dit",
                  "--lora_rank", "32", "--dtype", "fp32", "--max_steps", "1"]  # fmt: skip
        full = common + ["--dataset_base_path", str(EXAMPLE_DATA), "--dataset_metadata_path", str(EXAMPLE_DATA / "metadata.csv"),
                         "--model_id_with_origin_paths", SOURCES]  # fmt: skip
        stage2 = common + ["--dataset_base_path", str(cache), "--task", "sft:train", "--model_id_with_origin_paths", DIT]
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        s_full, s_stage2 = alternate(
            lambda: [first_step_seconds(tmp, full + ["--output_path", f"s{next(counter)}"], env)],
            lambda: [first_step_seconds(tmp, stage2 + ["--output_path", f"s{next(counter)}"], env)],
            max(1, rounds - 2),
        )
    result = {
        "name": "cache.step_time_ratio",
        "figure": round(median(cached) / median(plain), 3),
        "unit": "cached / uncached s per step",
        "details": {
            "uncached_ms": round(1000 * median(plain), 2), "cached_ms": round(1000 * median(cached), 2),
            "steps": len(plain), "size": size,
            "startup_uncached_s": round(median(s_full), 2), "startup_stage2_s": round(median(s_stage2), 2),
        },
        "machine": machine_info(),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
