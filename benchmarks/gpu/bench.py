"""Figure 6: s/step and peak VRAM of a LoRA (rank 32) training step on real-size DiTs with
random weights, bf16 compute, at 1024x1024 (Wan: 480x832, 81 frames), for plain / FP8 storage
(`store_in_fp8`) / FP8 + gradient checkpointing. Runs only where CUDA exists.

    python -m benchmarks.gpu.bench [--models qwen-image,flux,wan] [--modes plain,fp8,fp8+ckpt] [--steps 5]
    python -m benchmarks.gpu.bench --swap 0,10,20,30,45 [--sync 30] [--models qwen-image] [--out FILE]

`--swap` (issue #13): FP8 + checkpointing with `--blocks_to_swap N` for each N, in one process
(the model is built once; each N swaps, runs, and restores): s/step, peak VRAM, host memory the
swap pins, and the slowdown against N = 0. `--sync N,...` adds the same N without the side-stream
prefetch (copies on the compute stream), to show what the overlap buys. Each case's result is
printed (and appended to `--out`) as soon as it is measured.

Each (model, mode) runs in its own process so one OOM does not poison the next; an OOM is
recorded as such. Weights are made on the GPU directly in bf16 (never a CPU/fp32 copy): the
20B Qwen-Image DiT needs ~41 GB for weights alone in bf16.

Next to each measured case, `diffsynth plan`'s simulation predicts the same step (the same
code: `build`, `prepare` and `train_step` below, on the meta device then fake tensors, with
plan's live-storage tracker, in a CPU-only process) and `gpu.<model>.<mode>.plan_vs_measured`
is predicted / `torch.cuda.max_memory_allocated` (steady state: after the warm-up steps).
Without CUDA (and in --quick) only the simulation runs, on a tiny config: the CPU side stays
exercised.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from benchmarks.common import Record, clean_env, in_subprocess

MODES = ("plain", "fp8", "fp8+ckpt")
# diffusers configs of the released checkpoints (config.json of each repo's transformer/)
CONFIGS = {
    "qwen-image": ("QwenImageTransformer2DModel", dict(
        patch_size=2, in_channels=64, out_channels=16, num_layers=60, attention_head_dim=128,
        num_attention_heads=24, joint_attention_dim=3584, guidance_embeds=False, axes_dims_rope=(16, 56, 56))),
    "flux": ("FluxTransformer2DModel", dict(
        patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
        num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
        axes_dims_rope=(16, 56, 56))),
    "wan": ("WanTransformer3DModel", dict(  # Wan2.1-T2V-1.3B
        patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16, out_channels=16,
        text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)),
}  # fmt: skip
PLUGINS = {"qwen-image": "diffsynth_qwen_image", "flux": "diffsynth_flux", "wan": "diffsynth_wan"}
TEXT_TOKENS = 512


#: --quick / no CUDA: the simulation alone, on a small Qwen-Image-architecture DiT (width 256)
TINY = ("QwenImageTransformer2DModel", dict(
    patch_size=2, in_channels=64, out_channels=16, num_layers=2, attention_head_dim=128, num_attention_heads=2,
    joint_attention_dim=256, guidance_embeds=False, axes_dims_rope=(16, 56, 56)))  # fmt: skip
#: (latent side in tokens, text tokens) of the small case: 256 image + 64 text tokens
TINY_SHAPE = (16, 64)


def random_module(cls_name: str, config: dict):
    """The architecture with N(0, 0.02) bf16 weights (norm scales 1) allocated on the GPU."""
    import diffusers
    import torch
    from accelerate import init_empty_weights
    from accelerate.utils import set_module_tensor_to_device

    with init_empty_weights(include_buffers=False):
        module = getattr(diffusers, cls_name)(**config)
    for name, p in list(module.named_parameters()):
        value = torch.empty(p.shape, dtype=torch.bfloat16, device="cuda")
        value.fill_(1.0) if p.ndim == 1 and "norm" in name else value.normal_(0, 0.02)
        set_module_tensor_to_device(module, name, "cuda", value=value, dtype=torch.bfloat16)  # else: the meta fp32
    return module.to("cuda")


def model_inputs(model: str, device: str = "cuda", tiny: bool = False) -> dict:
    import torch

    bf16 = dict(device=device, dtype=torch.bfloat16)
    text = TINY_SHAPE[1] if tiny else TEXT_TOKENS
    if model == "wan":  # 480x832, 81 frames -> latents 16 x 21 x 60 x 104
        return dict(hidden_states=torch.randn(1, 16, 21, 60, 104, **bf16), timestep=torch.tensor([500.0], device=device),
                    encoder_hidden_states=torch.randn(1, TEXT_TOKENS, 4096, **bf16))
    side = TINY_SHAPE[0] if tiny else 64  # 1024 px / 8 (VAE) / 2 (2x2 packing): 4096 image tokens
    common = dict(hidden_states=torch.randn(1, side * side, 64, **bf16), timestep=torch.tensor([0.5], **bf16))
    if model == "qwen-image":
        width = TINY[1]["joint_attention_dim"] if tiny else 3584
        return dict(common, encoder_hidden_states=torch.randn(1, text, width, **bf16), img_shapes=[[(1, side, side)]])
    rows, cols = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    img_ids = torch.stack([torch.zeros_like(rows), rows, cols], -1).reshape(-1, 3).to(device, torch.bfloat16)
    return dict(common, encoder_hidden_states=torch.randn(1, TEXT_TOKENS, 4096, **bf16),
                pooled_projections=torch.randn(1, 768, **bf16), guidance=torch.tensor([3.5], **bf16),
                img_ids=img_ids, txt_ids=torch.zeros(TEXT_TOKENS, 3, **bf16))  # fmt: skip


def prepare(dit, model: str, mode: str) -> list:
    """The mode in the trainer's order (precision.py: compute dtype -> layer-wise casting ->
    LoRA -> fp32 LoRA); returns the LoRA parameters."""
    import importlib

    import torch

    from diffsynth.training.lora import add_lora
    from diffsynth.training.precision import store_in_fp8
    from diffsynth.training.trainable import enable_gradient_checkpointing

    family = importlib.import_module(PLUGINS[model]).FAMILY
    if mode != "plain":
        store_in_fp8(dit, torch.bfloat16)
    add_lora(dit, "dit", family.expand_lora_targets(list(family.default_lora_targets)), 32, 32)
    params = [p for p in dit.parameters() if p.requires_grad]
    for p in params:
        p.data = p.data.float()
    dit.train()
    if mode == "fp8+ckpt":
        enable_gradient_checkpointing(dit)
    return params


def train_step(dit, inputs: dict, optimizer, before_step=None) -> None:
    import torch

    out = dit(**inputs, return_dict=False)[0]
    loss = torch.nn.functional.mse_loss(out.float(), torch.randn_like(out, dtype=torch.float32))
    loss.backward()
    if before_step is not None:
        before_step()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def predict_in_child(model: str, mode: str, tiny: bool = False, swap: int = 0) -> dict:
    """Child (CPU only): plan's simulation of `step_in_child`'s steady-state step: the DiT on the
    meta device, the same `prepare`, fake tensors, plan's tracker; AdamW as on CUDA (foreach)
    with its state made before the step, as from the second step on. `swap`: `--blocks_to_swap`
    (the trainer's `swap_blocks` on the fake model; its host copies are not device memory)."""
    import importlib
    import time

    import diffusers
    import torch

    from diffsynth.plan.fake import fake_mode, make_fake, tensor_attributes
    from diffsynth.plan.meta import empty_module
    from diffsynth.plan.simulate import state_without_gradients
    from diffsynth.plan.tracker import LiveMemory
    from diffsynth.training.block_swap import swap_blocks

    started = time.perf_counter()
    cls_name, config = TINY if tiny else CONFIGS[model]
    dit = empty_module(lambda: getattr(diffusers, cls_name)(**config), torch.bfloat16).requires_grad_(False)
    prepare(dit, model, mode)
    with fake_mode() as mode:
        make_fake(dit, torch.device("cpu"))
        paths = importlib.import_module(PLUGINS[model]).FAMILY.repeated_blocks
        on_host = swap_blocks(dit, paths, swap, torch.device("cpu"), model).host_parameters if swap else set()
        with LiveMemory() as memory:
            tables = tensor_attributes(dit, mode)  # held while simulating
            for t in [*(p for p in dit.parameters() if p not in on_host), *dit.buffers(), *tables]:
                memory.add(t)
            params = [p for p in dit.parameters() if p.requires_grad]
            optimizer = torch.optim.AdamW(params, lr=1e-4, foreach=True)
            for p in params:
                p.grad = torch.zeros_like(p)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            inputs = model_inputs(model, device="cpu", tiny=tiny)
            stale: list[int] = []  # AdamW state made for parameters the step gives no gradient (see plan)
            for t in inputs.values():
                if isinstance(t, torch.Tensor):
                    memory.add(t)
            train_step(dit, inputs, optimizer, before_step=lambda: stale.append(state_without_gradients(optimizer, params)))
    return {"peak_gb": (memory.peak - stale[0]) / 1e9, "seconds": time.perf_counter() - started}


def step_in_child(model: str, mode: str, steps: int, warmup: int = 2) -> dict:
    """Child: build, apply the mode in the trainer's order, time `steps` optimizer steps."""
    import torch

    cls_name, config = CONFIGS[model]
    try:
        dit = random_module(cls_name, config).requires_grad_(False)
        params = prepare(dit, model, mode)
        optimizer = torch.optim.AdamW(params, lr=1e-4)
        inputs = model_inputs(model)
        times = []
        for k in range(warmup + steps):
            if k == warmup:
                torch.cuda.reset_peak_memory_stats()
            torch.cuda.synchronize()
            t = time.perf_counter()
            train_step(dit, inputs, optimizer)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
        return {"s_per_step": statistics.median(times[warmup:]), "peak_gb": torch.cuda.max_memory_allocated() / 1e9,
                "params_b": sum(p.numel() for p in dit.parameters()) / 1e9, "oom": False}  # fmt: skip
    except torch.cuda.OutOfMemoryError:
        return {"s_per_step": None, "peak_gb": torch.cuda.max_memory_allocated() / 1e9, "oom": True}


def swap_sweep_in_child(model: str, cases: list, steps: int, out: str | None = None, warmup: int = 2, device: str = "cuda") -> dict:
    """Child: the real-size DiT with FP8 storage + checkpointing, built once; for each (N,
    prefetch) in `cases` swap N blocks, time `steps` steps after `warmup`, restore. Each result
    is also appended to `out` (a JSON line) as soon as it is measured. `device="cpu"`: the same
    on the small DiT (TINY with 4 blocks), timings and memory left out (the CPU test's path)."""
    import importlib
    import sys

    import torch

    from diffsynth.training.block_swap import swap_blocks

    cuda = device == "cuda"
    if cuda:
        dit = random_module(*CONFIGS[model])
    else:
        import diffusers

        dit = getattr(diffusers, TINY[0])(**{**TINY[1], "num_layers": 4}).to(torch.bfloat16)
    dit.requires_grad_(False)
    params = prepare(dit, model, "fp8+ckpt")
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    inputs = model_inputs(model, device=device, tiny=not cuda)
    paths = importlib.import_module(PLUGINS[model]).FAMILY.repeated_blocks
    results = []
    for count, prefetch in cases:
        result: dict = {"blocks_to_swap": count, "prefetch": prefetch}
        try:
            started = time.perf_counter()
            swap = swap_blocks(dit, paths, count, torch.device(device), model, prefetch=prefetch) if count else None
            result["swap_setup_s"] = round(time.perf_counter() - started, 2)
            result["pinned_gb"] = sum(h.numel() * h.element_size() for w in (swap.host.values() if swap else []) for _, h in w) / 1e9
            if cuda:
                torch.cuda.empty_cache()
            times = []
            for k in range(warmup + steps):
                if k == warmup and cuda:
                    torch.cuda.reset_peak_memory_stats()
                if cuda:
                    torch.cuda.synchronize()
                t = time.perf_counter()
                train_step(dit, inputs, optimizer)
                if cuda:
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - t)
            result["s_per_step"] = statistics.median(times[warmup:]) if cuda else None
            result["peak_gb"] = torch.cuda.max_memory_allocated() / 1e9 if cuda else None
            result["oom"] = False
            if swap is not None:
                result["copies_per_step"] = swap.copies / (warmup + steps)
                result["fetched_ahead"] = round(swap.used_ahead / max(swap.copies, 1), 3)
                swap.restore()
        except torch.cuda.OutOfMemoryError:
            result.update(s_per_step=None, peak_gb=torch.cuda.max_memory_allocated() / 1e9, oom=True)
            results.append(result)
            break
        except RuntimeError as exc:  # e.g. pinning refused: a result too, and the next case may still run
            result.update(s_per_step=None, peak_gb=None, oom=False, error=str(exc)[-300:])
        results.append(result)
        if out:
            with open(out, "a") as f:
                f.write(json.dumps({"model": model, **result}) + "\n")
        print(json.dumps(result), file=sys.stderr, flush=True)
    return {"cases": results}


def measure_swap(model: str, counts: list[int], sync: list[int], steps: int, out: str | None, timeout: float) -> list[Record]:
    """Records of `swap_sweep_in_child`, with each case's slowdown against N = 0."""
    cases = [(n, True) for n in counts] + [(n, False) for n in sync if n]
    try:
        r = in_subprocess("benchmarks.gpu.bench:swap_sweep_in_child", timeout=timeout, env=clean_env(), model=model,
                          cases=cases, steps=steps, out=out)["cases"]  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - a crashed or timed-out child is a result too
        return [Record(f"gpu.{model}.swap", None, "-", details={"error": str(exc)[-500:]})]
    base = next((c["s_per_step"] for c in r if c["blocks_to_swap"] == 0), None)
    records = []
    for c in r:
        name = f"gpu.{model}.fp8+ckpt.swap{c['blocks_to_swap']}" + ("" if c["prefetch"] else ".sync")
        details = {k: v for k, v in c.items() if k not in ("s_per_step",)}
        records.append(Record(f"{name}.s_per_step", c["s_per_step"], "s/step", details=details))
        records.append(Record(f"{name}.peak_vram_gb", c["peak_gb"], "GB", details=details))
        if base and c["s_per_step"]:
            records.append(Record(f"{name}.slowdown", round(c["s_per_step"] / base, 3), "x N=0", "<= 1.5 where it fits 16 GB"))
    return records


def measure(models=tuple(CONFIGS), modes=MODES, steps: int = 5, timeout: float = 600, with_plan: bool = True):
    """Records of each (model, mode), yielded as each is measured (a timed-out run keeps what it printed)."""
    for model in models:
        for mode in modes:
            try:
                r = in_subprocess("benchmarks.gpu.bench:step_in_child", timeout=timeout, env=clean_env(), model=model, mode=mode, steps=steps)
            except Exception as exc:  # noqa: BLE001 - a crashed or timed-out child is a result too
                r = {"s_per_step": None, "peak_gb": None, "oom": False, "error": str(exc)[-1500:]}
            shape = "480x832x81" if model == "wan" else "1024x1024"
            details = {"lora_rank": 32, "dtype": "bf16", "size": shape, **{k: v for k, v in r.items() if k not in ("s_per_step", "peak_gb")}}
            yield Record(f"gpu.{model}.{mode}.s_per_step", r["s_per_step"], "s/step", details=details)
            yield Record(f"gpu.{model}.{mode}.peak_vram_gb", r["peak_gb"], "GB", details=details)
            if with_plan:
                yield plan_record(model, mode, r["peak_gb"] if not r.get("oom") else None, timeout)


def plan_record(model: str, mode: str, measured_gb: float | None, timeout: float = 600, tiny: bool = False) -> Record:
    """plan's prediction of the case (CPU-only child) and its ratio to the measured peak."""
    env = clean_env(CUDA_VISIBLE_DEVICES="")
    try:
        p = in_subprocess("benchmarks.gpu.bench:predict_in_child", timeout=timeout, env=env, model=model, mode=mode, tiny=tiny)
    except Exception as exc:  # noqa: BLE001 - a failed prediction is a result too
        return Record(f"gpu.{model}.{mode}.plan_vs_measured", None, "x measured", details={"error": str(exc)[-300:]})
    ratio = None if measured_gb is None else round(p["peak_gb"] / measured_gb, 3)
    name = f"gpu.{model}.{mode}.plan_vs_measured" if not tiny else f"gpu.plan_simulation.{model}.{mode}.tiny"
    details = {"predicted_gb": round(p["peak_gb"], 4), "measured_gb": measured_gb, "plan_seconds": round(p["seconds"], 1)}
    return Record(name, ratio, "x measured", "within 10%" if measured_gb else None,
                  None if ratio is None else abs(ratio - 1) <= 0.10, details=details)  # fmt: skip


def run(ctx) -> list[Record]:
    """The runner's `gpu` group: skipped cleanly without CUDA (and in --quick mode)."""
    import torch

    if ctx.quick or not torch.cuda.is_available():
        why = "--quick" if ctx.quick else "no CUDA device"
        # the CPU side still runs: plan's simulation of the bench's own step, tiny config
        return [Record("gpu", None, "-", details={"skipped": why}), plan_record("qwen-image", "fp8", None, tiny=True)]
    return list(measure())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(CONFIGS))
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=600, help="seconds per (model, mode) process")
    parser.add_argument("--swap", help="comma-separated N for --blocks_to_swap N with FP8 + checkpointing (the sweep alone)")
    parser.add_argument("--sync", default="", help="with --swap: these N again without prefetch")
    parser.add_argument("--out", help="with --swap: append each case's result here (a JSON line) as it is measured")
    parser.add_argument("--no-plan", action="store_true", help="skip plan's CPU simulation of each case (run it on another machine)")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: nothing to run")
    from benchmarks.common import machine_info

    machine = machine_info()
    if args.swap:
        counts, sync = [int(n) for n in args.swap.split(",")], [int(n) for n in args.sync.split(",") if n]
        found = [r for m in args.models.split(",") for r in measure_swap(m, counts, sync, args.steps, args.out, args.timeout)]
    else:
        found = measure(args.models.split(","), args.modes.split(","), args.steps, args.timeout, not args.no_plan)
    for record in found:
        record.machine = machine
        print(json.dumps(record.to_dict()), flush=True)
