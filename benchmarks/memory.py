"""Figure 4: memory, each measurement in a fresh process (RSS sampled every ms; glibc set to
return freed blocks at once, see common.MALLOC_ENV).

Weights: the medium DiT, saved in bf16 as the real repos ship it, loaded the way a family loads
it (`load_state_dict` + `build_module`) in fp32, in bf16, and straight into FP8 (the checkpoint
marked for FP8 storage, as `--fp8_models` does): `weight_bytes`, RSS held afterwards, and peak
RSS while loading: total and anonymous (file pages of the memory-mapped checkpoint count in the
total but are page cache the kernel can drop; anonymous memory is what can run a host out of
memory). Activations: one LoRA forward+backward of a DiT with
long sequences, gradient checkpointing off / on / offload (`torch.autograd.graph.save_on_cpu`):
peak RSS above the RSS before the step (weights excluded, LoRA gradients included).
"""

from __future__ import annotations

from benchmarks.common import (
    MB,
    Context,
    PeakRss,
    Record,
    at_most,
    in_subprocess,
    rss_bytes,
    touch,
)
from benchmarks.models import (
    ACTIVATION_DIT,
    ACTIVATION_DIT_QUICK,
    WEIGHTS_DIT,
    WEIGHTS_DIT_QUICK,
    write_dit_checkpoint,
)

FP8_GOAL = 0.55
CHECKPOINTING_GOAL = 0.5


def weights_in_child(files: list[str], config: dict, mode: str) -> dict:
    import gc
    from pathlib import Path

    import torch

    from benchmarks.models import dit_class
    from diffsynth.models.checkpoints import build_module, load_state_dict
    from diffsynth.models.header import read_header
    from diffsynth.training.precision import weight_bytes
    from diffsynth.types import CheckpointGroup

    cls = dit_class()
    paths = [Path(f) for f in files]
    group = CheckpointGroup("dit", "medium", read_header(paths), storage="fp8" if mode == "fp8" else None)
    gc.collect()
    before = rss_bytes()
    with PeakRss() as peak:
        dtype = torch.float32 if mode == "fp32" else torch.bfloat16
        module = build_module(lambda: cls(**config), load_state_dict(group), group, dtype)
        touch(module)
        gc.collect()
    return {"weight_bytes": weight_bytes(module), "held": rss_bytes() - before, "peak": peak.peak,
            "peak_anon": peak.peak_anon}


def activations_in_child(config: dict, side: int, text: int, mode: str) -> dict:
    import contextlib
    import gc

    import torch
    from diffsynth_qwen_image import FAMILY

    from benchmarks.models import dit_class
    from diffsynth.training.lora import add_lora
    from diffsynth.training.trainable import enable_gradient_checkpointing

    torch.manual_seed(0)
    dit = dit_class()(**config).requires_grad_(False)
    add_lora(dit, "dit", FAMILY.expand_lora_targets(list(FAMILY.default_lora_targets)), 32, 32)
    dit.train()
    if mode == "on":
        enable_gradient_checkpointing(dit)
    hidden = torch.randn(1, side * side, config["in_channels"])
    text_states = torch.randn(1, text, config["joint_attention_dim"])

    def step() -> None:
        saving = torch.autograd.graph.save_on_cpu() if mode == "offload" else contextlib.nullcontext()
        with saving:
            out = dit(hidden_states=hidden, timestep=torch.tensor([0.5]), encoder_hidden_states=text_states,
                      img_shapes=[[(1, side, side)]], return_dict=False)[0]  # fmt: skip
        out.pow(2).mean().backward()
        for p in dit.parameters():
            p.grad = None

    step()  # warm-up: thread pools, allocator, lazily built buffers
    gc.collect()
    with PeakRss() as peak:
        step()
    return {"peak": peak.peak}


def weights(ctx: Context) -> list[Record]:
    config = WEIGHTS_DIT_QUICK if ctx.quick else WEIGHTS_DIT
    files = ctx.once("weights_checkpoint_bf16", lambda: write_dit_checkpoint(ctx.workdir / "medium-bf16" / "transformer", config, dtype="bfloat16"))
    got = {m: in_subprocess("benchmarks.memory:weights_in_child", files=[str(f) for f in files], config=config, mode=m)
           for m in (("bf16", "fp8") if ctx.quick else ("fp32", "bf16", "fp8"))}  # a child costs ~8 s of imports
    records = []
    for mode, r in got.items():
        records.append(Record(f"memory.weight_mb.{mode}", round(r["weight_bytes"] / MB, 1), "MB",
                              details={"held_rss_mb": round(r["held"] / MB, 1), "peak_rss_mb": round(r["peak"] / MB, 1),
                                       "peak_anon_mb": round(r["peak_anon"] / MB, 1)}))  # fmt: skip
    for key, label in (("weight_bytes", "weight_bytes"), ("held", "held_rss"), ("peak_anon", "peak_anon_rss")):
        ratio = got["fp8"][key] / got["bf16"]["weight_bytes"]  # against what bf16 weights cost
        records.append(Record(f"memory.fp8_vs_bf16.{label}", round(ratio, 3), "x bf16", f"<= {FP8_GOAL}", at_most(ratio, FP8_GOAL)))
    ratio = got["fp8"]["peak"] / got["bf16"]["weight_bytes"]
    records.append(Record("memory.fp8_vs_bf16.peak_rss", round(ratio, 3), "x bf16",
                          details={"note": "includes the memory-mapped checkpoint's file pages (page cache)"}))
    return records


def activations(ctx: Context) -> list[Record]:
    config, side, text = (ACTIVATION_DIT_QUICK, 16, 32) if ctx.quick else (ACTIVATION_DIT, 32, 64)
    got = {m: in_subprocess("benchmarks.memory:activations_in_child", config=config, side=side, text=text, mode=m)["peak"]
           for m in (("off", "on") if ctx.quick else ("off", "on", "offload"))}
    shape = {"image_tokens": side * side, "text_tokens": text, "blocks": config["num_layers"]}
    records = [Record(f"memory.activation_peak_mb.{m}", round(v / MB, 1), "MB", details=shape) for m, v in got.items()]
    ratio = got["on"] / got["off"]
    records.append(Record("memory.checkpointing_on_vs_off", round(ratio, 3), "x off", f"<= {CHECKPOINTING_GOAL}", at_most(ratio, CHECKPOINTING_GOAL)))
    if "offload" in got:
        records.append(Record("memory.offload_vs_off", round(got["offload"] / got["off"], 3), "x off",
                              details={"note": "on CPU, save_on_cpu keeps tensors where they are: no saving expected"}))  # fmt: skip
    return records


def run(ctx: Context) -> list[Record]:
    return weights(ctx) + activations(ctx)
