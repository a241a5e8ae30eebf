"""Accuracy of `diffsynth plan`: its predicted peak vs a real training run's measured peak, on CPU.

A medium Qwen-Image-architecture DiT (width 1024, 4 blocks, ~150M parameters, ~0.6 GB in fp32,
random weights) written in the real repo's layout (transformer/ with config.json) next to the
tiny preset's text encoder and VAE, so that `plan` reads the files' configs (a family's
`plan_pipeline` uses `$DIFFSYNTH_MODEL_BASE_PATH/<repo>/<folder>/config.json` when present).

- measured: `diffsynth train qwen-image ... --dtype fp32 --max_steps 2` (LoRA rank 32 on the
  default targets, AdamW, one 384x384 image and plan's 256-word prompt) in a fresh process:
  the highest RSS (anonymous + mapped file pages, sampled every ms by `common.PeakRss`, glibc
  returning freed blocks at once) from the first step's start to the end, above the RSS before
  `train` was called. Two steps, because plan predicts the steady state (AdamW's state exists
  from step 2 on). Before it, the same process runs the tiny preset once: a process's first run
  imports and initialises libraries (~70 MB of RSS, half of it code pages), a one-off host cost
  that is not the step's (and not on a GPU). Loading's transients are reported apart
  (`load_peak_rss_mb`): on a GPU the trainer loads on the CPU and then moves the modules.
- predicted: `diffsynth plan qwen-image` with the same flags and `--device cpu`, in another
  fresh process.
- diagnosis (full mode): the same real run under plan's live-storage tracker with real tensors
  (`tracked_tensors_mb`): what the tensors alone hold, without kernels' workspaces.

Cases: LoRA alone, + gradient checkpointing, + FP8 DiT, + both (--quick: a 1-block DiT at 64x64,
LoRA alone, a smoke run whose ratio means nothing: fixed costs dominate).
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

from benchmarks.common import MB, Context, PeakRss, Record, in_subprocess, rss_parts
from benchmarks.models import SOURCES, write_tiny, write_with_dit

GOAL = 0.10  # |predicted / measured - 1|
_BASE = dict(patch_size=2, in_channels=64, out_channels=16, guidance_embeds=False, joint_attention_dim=32)
#: width 1024 (8 heads of 128), 4 blocks: ~150M parameters, ~0.6 GB in fp32
PLAN_DIT = dict(_BASE, num_layers=4, attention_head_dim=128, num_attention_heads=8, axes_dims_rope=(16, 56, 56))
PLAN_DIT_QUICK = dict(_BASE, num_layers=1, attention_head_dim=64, num_attention_heads=4, axes_dims_rope=(8, 28, 28))
SIZE, SIZE_QUICK = 384, 64
CASES = {
    "off": [],
    "checkpointing": ["--use_gradient_checkpointing"],
    "fp8": ["--fp8_models", "dit"],
    "fp8+checkpointing": ["--fp8_models", "dit", "--use_gradient_checkpointing"],
}


def write_dataset(folder: Path, size: int) -> Path:
    """One image of `size` x `size` with the prompt plan uses; returns the metadata file."""
    from PIL import Image

    from diffsynth.plan.sample import PROMPT

    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), (128, 96, 64)).save(folder / "image.png")
    path = folder / "metadata.csv"
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([["image", "prompt"], ["image.png", PROMPT]])
    return path


def flags(size: int, extra: list[str]) -> list[str]:
    return ["--lora_base_model", "dit", "--lora_rank", "32", "--height", str(size), "--width", str(size),
            "--dtype", "fp32", *extra]  # fmt: skip


def train_argv(dataset: str, out: str, size: int, extra: list[str]) -> list[str]:
    return ["train", "qwen-image", "--dataset_base_path", str(Path(dataset).parent), "--dataset_metadata_path", dataset,
            "--dataset_repeat", "2", "--max_steps", "2", "--output_path", out, "--overwrite",
            "--model_id_with_origin_paths", SOURCES, *flags(size, extra)]  # fmt: skip


class StepPeakRss(PeakRss):
    """`PeakRss` whose peak restarts at `mark()` (the base stays): the peak of what follows."""

    def mark(self) -> None:
        for _ in range(2):  # again after the sampler's next read: it may have held the old maximum
            parts = rss_parts()
            self._max, self._max_anon = parts["RssAnon"] + parts["RssFile"], parts["RssAnon"]
            time.sleep(3 * self.interval)


def train_in_child(base: str, dataset: str, out: str, size: int, extra: list[str], warmup: dict, track: bool = False) -> dict:
    """Child: `diffsynth train` for 2 steps. `peak`: the highest RSS from the first step's start
    to the end above the RSS before `train` was called (loading's transients excluded: on a GPU
    the trainer loads on the CPU, then moves the modules), `load_peak` the same before the first
    step; with `track`, the live-storage tracker's figures over the same run (real tensors).

    `warmup` (base, dataset, size) is a tiny run of the same command first, in this process: the
    first run of a process imports and initialises libraries on first use (~70 MB of RSS here,
    half of it code pages), a one-off host cost that is not the step's memory (and not on a
    GPU); `first_run` reports its peak."""
    import gc
    import os

    from diffsynth.cli import main
    from diffsynth.plan.tracker import LiveMemory
    from diffsynth.training.family_hooks import FamilyHooks

    os.environ["DIFFSYNTH_MODEL_BASE_PATH"] = warmup["base"]
    with PeakRss() as first:
        _main(main, train_argv(warmup["dataset"], out, warmup["size"], extra))
    os.environ["DIFFSYNTH_MODEL_BASE_PATH"] = base
    argv = train_argv(dataset, out, size, extra)
    gc.collect()
    meter = LiveMemory() if track else StepPeakRss()
    marks: list[int] = []
    preprocess = FamilyHooks.preprocess

    def first_step_starts(self, pipeline, *args, **kwargs):  # instrumentation only: calls the original
        if not marks:
            if track:
                for module in pipeline.modules.values():  # weights read from the file outside any op
                    for t in [*module.parameters(), *module.buffers()]:
                        meter.add(t)
                marks.append(meter.peak)
                meter.peak = meter.now
            else:
                marks.append(meter._max - meter._base)
                meter.mark()
        return preprocess(self, pipeline, *args, **kwargs)

    FamilyHooks.preprocess = first_step_starts
    try:
        with meter:
            _main(main, argv)
    finally:
        FamilyHooks.preprocess = preprocess
    if track:
        return {"peak": meter.peak, "load_peak": marks[0]}
    return {"peak": meter.peak, "peak_anon": meter.peak_anon, "load_peak": marks[0], "first_run": first.peak}


def _main(main, argv: list[str]) -> None:
    try:
        main(argv)
    except SystemExit as exc:
        if exc.code:
            raise


def plan_in_child(base: str, size: int, extra: list[str]) -> dict:
    """Child: `diffsynth plan qwen-image` with the run's flags for a CPU; its JSON object."""
    import contextlib
    import io
    import json
    import os

    os.environ["DIFFSYNTH_MODEL_BASE_PATH"] = base
    from diffsynth.cli import main

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        _main(main, ["plan", "qwen-image", *flags(size, extra), "--device", "cpu", "--json", "--no-compare"])
    return json.loads(buffer.getvalue().strip().splitlines()[-1])


def measure_case(base: Path, dataset: Path, size: int, extra: list[str], warmup: dict, out: Path, track: bool) -> dict:
    """Predicted and measured bytes of one case, each in fresh processes."""
    predicted = in_subprocess("benchmarks.plan_accuracy:plan_in_child", base=str(base), size=size, extra=extra)
    run = dict(base=str(base), dataset=str(dataset), out=str(out), size=size, extra=extra, warmup=warmup)
    measured = in_subprocess("benchmarks.plan_accuracy:train_in_child", **run)
    tracked = in_subprocess("benchmarks.plan_accuracy:train_in_child", **run, track=True) if track else None
    return {"predicted": predicted, "measured": measured, "tracked": tracked}


def run(ctx: Context) -> list[Record]:
    config, size = (PLAN_DIT_QUICK, SIZE_QUICK) if ctx.quick else (PLAN_DIT, SIZE)
    tiny = ctx.once("tiny_models", lambda: write_tiny(ctx.workdir / "models-tiny"))
    base = write_with_dit(tiny, ctx.workdir / "plan-accuracy-models", config)
    dataset = write_dataset(ctx.workdir / "plan-accuracy-data", size)
    warmup = {"base": str(tiny), "dataset": str(write_dataset(ctx.workdir / "plan-accuracy-warmup", SIZE_QUICK)), "size": SIZE_QUICK}
    cases = {"off": CASES["off"]} if ctx.quick else CASES
    records = []
    for name, extra in cases.items():
        got = measure_case(base, dataset, size, extra, warmup, ctx.workdir / "plan-accuracy-run", track=not ctx.quick)
        predicted, measured = got["predicted"], got["measured"]
        details = {
            "size": f"{size}x{size}", "dit": {k: config[k] for k in ("num_layers", "num_attention_heads", "attention_head_dim")},
            "flags": " ".join(flags(size, extra)), "predicted_mb": round(predicted["peak_bytes"] / MB, 1),
            "measured_rss_mb": round(measured["peak"] / MB, 1), "measured_anon_mb": round(measured["peak_anon"] / MB, 1),
            "load_peak_rss_mb": round(measured["load_peak"] / MB, 1), "first_run_peak_rss_mb": round(measured["first_run"] / MB, 1),
            "predicted_breakdown_gib": predicted["breakdown"], "predicted_phases_gib": predicted["phases"],
        }  # fmt: skip
        if got["tracked"]:
            details["tracked_tensors_mb"] = round(got["tracked"]["peak"] / MB, 1)
        ratio = predicted["peak_bytes"] / measured["peak"]
        goal = f"within {GOAL:.0%} (0.9-1.1)"
        records.append(Record(f"plan_accuracy.{name}", round(ratio, 3), "x measured", goal, abs(ratio - 1) <= GOAL, details=details))
    return records
