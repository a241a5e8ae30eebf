"""Figure 2: start-up. Cold `diffsynth models list` (a fresh interpreter each time) and which
heavy libraries it imports (`-X importtime`); and `diffsynth train` on the tiny preset from
process start to the first optimizer step, split into phases by timestamps taken in the child
(wrapping `FamilyHooks.load_pipeline`, `Trainer._prepare` and the first loss-log write)."""

from __future__ import annotations

import subprocess
import sys
import time

from benchmarks.common import (
    EXAMPLE_DATA,
    Context,
    Record,
    at_most,
    clean_env,
    in_subprocess,
    median,
)
from benchmarks.models import SOURCES, write_tiny

GOAL_S = 0.3
HEAVY = ("torch", "diffusers", "transformers", "peft", "accelerate")


def _wall(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=clean_env(), timeout=120)
    return time.perf_counter() - t


def heavy_imports(cmd: list[str]) -> list[str]:
    """Top-level packages among HEAVY that `cmd` (a python command) imports."""
    proc = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], check=False, capture_output=True, text=True, env=clean_env(), timeout=120)
    names = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in proc.stderr.splitlines() if line.startswith("import time:")}
    return sorted(names & set(HEAVY))


def models_list(ctx: Context) -> list[Record]:
    cmd = [sys.executable, "-m", "diffsynth", "models", "list"]
    runs = 2 if ctx.quick else 7
    _wall(cmd)  # page cache warm: "cold" here means a fresh interpreter, not a cold disk
    times, bare = [], []
    for _ in range(runs):  # alternate with a bare interpreter for scale
        times.append(_wall(cmd))
        bare.append(_wall([sys.executable, "-c", "pass"]))
    seconds = median(times)
    heavy = heavy_imports(cmd)
    return [
        Record("startup.models_list", round(seconds, 3), "s", f"<= {GOAL_S}", at_most(seconds, GOAL_S),
               {"runs": runs, "bare_python_s": round(median(bare), 3)}),
        Record("startup.models_list_heavy_imports", len(heavy), "packages", "0 (none of torch, diffusers, transformers, peft)",
               not heavy, {"imported": heavy}),
    ]  # fmt: skip


def train_phases(base: str, out: str, spawned: float) -> dict[str, float]:
    """Child: run `diffsynth train qwen-image ... --max_steps 1` in-process with timestamps."""
    import os

    os.environ["DIFFSYNTH_MODEL_BASE_PATH"] = base
    # everything the run imports, imported up front so the "import" phase holds all of it
    import diffusers  # noqa: F401
    import peft  # noqa: F401
    import transformers  # noqa: F401
    from accelerate import Accelerator  # noqa: F401
    from diffusers import AutoencoderKLQwenImage, QwenImageTransformer2DModel  # noqa: F401
    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2Tokenizer  # noqa: F401

    from diffsynth.cli import main
    from diffsynth.training.family_hooks import FamilyHooks
    from diffsynth.training.outputs import RunOutputs
    from diffsynth.training.trainer import Trainer

    stamps = {"spawn": spawned, "imported": time.time()}

    def stamp(cls, name, key, after=False):
        original = getattr(cls, name)

        def wrapped(*args, **kwargs):
            if not after:
                stamps.setdefault(key, time.time())
            result = original(*args, **kwargs)
            if after:
                stamps.setdefault(key, time.time())
            return result

        setattr(cls, name, wrapped)

    stamp(FamilyHooks, "load_pipeline", "load_start")
    stamp(Trainer, "_prepare", "prepared", after=True)
    stamp(RunOutputs, "append_loss", "first_step")
    main([
        "train", "qwen-image", "--dataset_base_path", str(EXAMPLE_DATA), "--max_pixels", "4096",
        "--model_id_with_origin_paths", SOURCES, "--lora_base_model", "dit", "--lora_rank", "32",
        "--max_steps", "1", "--output_path", out,
    ])  # fmt: skip
    return stamps


def train_first_step(ctx: Context) -> list[Record]:
    base = ctx.once("tiny_models", lambda: write_tiny(ctx.workdir / "models-tiny"))
    s = in_subprocess("benchmarks.startup:train_phases", base=str(base), out=str(ctx.workdir / "train-startup"), spawned=time.time())
    phases = {
        "import": ("interpreter + every library the run imports", s["imported"] - s["spawn"]),
        "setup": ("CLI, dataset check, model sources, accelerate", s["load_start"] - s["imported"]),
        "model_load": ("weights, LoRA, optimizer", s["prepared"] - s["load_start"]),
        "first_batch": ("DataLoader, image, preprocess, first step", s["first_step"] - s["prepared"]),
    }
    total = s["first_step"] - s["spawn"]
    records = [Record("startup.train_to_first_step", round(total, 3), "s", details={"family": "qwen-image tiny"})]
    for key, (what, seconds) in phases.items():
        records.append(Record(f"startup.train_to_first_step.{key}", round(seconds, 3), "s", details={"phase": what}))
    return records


def run(ctx: Context) -> list[Record]:
    return models_list(ctx) + train_first_step(ctx)
