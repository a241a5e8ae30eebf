"""One training step of the real-size model under fake tensors -> a `Prediction`.

The same code as `diffsynth train` wherever it can be: `plan_training` / `apply_plan` (freeze,
FP8 storage, LoRA, gradient checkpointing), `FamilyHooks.preprocess` / `.loss` (the family's
preprocess and the core's loss), `backward`, AdamW. What differs, and why:
- the modules come from the family's `plan_pipeline` (meta device, no weights) and become fake;
- the planned device is a GPU unless `device="cpu"` (`diffsynth plan --device cpu`): `--dtype
  auto` is then bf16, as on a GPU (fp32 for a CPU, as `train` resolves it there);
- AdamW gets `foreach=True`, its default on CUDA (for a CPU its default, a loop per tensor), and
  its state exists before the measured step (the steady state from step 2 on);
- for a GPU, `--use_gradient_checkpointing_offload` moves saved tensors off the simulated device
  (the trainer's `save_on_cpu` would copy CPU to CPU here); for a CPU they stay, as they do;
- `--blocks_to_swap N`: the trainer's own `swap_blocks` runs on the fake model; the host copies
  are made before the tracker starts (host memory), the device copies while it runs (each block's
  weights while it runs, and the one fetched ahead);
- `--offload_models`: the trainer's own `offload` runs on the fake pipeline, and the encoders'
  device copies live only while they encode;
- for a CPU, a 3-D convolution (the VAEs of Qwen-Image and Wan are causal 3-D convolutions)
  holds its im2col buffer while it runs (`CpuConv3dWorkspace`); a kernel's workspace is no
  tensor, so the tracker would not see it otherwise.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from diffsynth.config import TrainConfig
from diffsynth.errors import UserError
from diffsynth.plan.fake import UnknownValuesAreOne, fake_mode, make_fake, tensor_attributes
from diffsynth.plan.sample import image_size, planned_sample
from diffsynth.plan.tracker import LiveMemory, storage_key
from torch.utils._pytree import tree_leaves
from diffsynth.plugins import FamilyRegistry
from diffsynth.spec import FamilySpec
from diffsynth.training.family_hooks import FamilyHooks
from diffsynth.training.offload import offload, offloaded_components
from diffsynth.training.trainable import TrainablePlan, apply_plan, plan_training
from diffsynth.types import FamilyPipeline, RunContext

TRAINABLE, GRADIENTS, OPTIMIZER = "trainable parameters", "gradients", "optimizer state"


def weights_label(component: str) -> str:
    return f"weights: {component}"


@dataclass
class Prediction:
    """Bytes: the step's peak, what was live at that moment, the weights by component and each
    phase's peak (`encoders`: preprocess; `denoiser`: loss, backward, optimizer step)."""

    family: str
    variant: str | None
    peak: int
    breakdown: dict[str, int]
    weights: dict[str, int]
    phases: dict[str, int]
    settings: dict[str, Any] = field(default_factory=dict)
    components: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: how many blocks `--blocks_to_swap` can choose from (0: the family declares none)
    repeated_blocks: int = 0


DEVICES = ("cuda", "cpu")


def resolve_plan_dtype(config: TrainConfig, device: str) -> None:
    """`--dtype auto` as `train` resolves it on `device`: bf16 on a GPU, fp32 on a CPU."""
    if device not in DEVICES:
        raise UserError(f"--device: expected cuda or cpu, got {device!r}")
    if config.dtype == "auto":
        config.dtype = "bf16" if device == "cuda" else "fp32"


def plan_context(config: TrainConfig, family: FamilySpec, device: str = "cuda") -> RunContext:
    """The run's context with the planned device's compute dtype (`auto` -> bf16 / fp32)."""
    resolve_plan_dtype(config, device)
    if config.dtype not in ("fp32", "bf16", "fp16"):
        raise UserError(f"--dtype: expected auto, fp32, bf16 or fp16, got {config.dtype!r}")
    return RunContext.for_run(config, family.options_value(config.family_options))


def plan_pipeline(registry: FamilyRegistry, family: FamilySpec, config: TrainConfig, context: RunContext) -> FamilyPipeline:
    pipeline = registry.hook.plan_pipeline(family=family.name, variant=config.variant, context=context)
    if pipeline is None:
        raise UserError(f"{family.name}: its plugin cannot plan (it does not implement plan_pipeline)")
    pipeline.dtype = context.torch_dtype
    pipeline.device = torch.device("cpu")
    return pipeline


class Labels:
    """Storage key -> label of the tensors that are not activations (called at each new peak).

    Weights are labelled once, after they are made (`weights_done`), except those of layers with
    a diffusers hook (FP8 layer-wise casting): `Module.to` gives those a new storage every
    forward (the FP8 copy is made anew after the upcast one), so they are looked up again at
    each peak. An upcast weight that autograd keeps after its layer's forward is a temporary
    (`activations`)."""

    def __init__(self, pipeline: FamilyPipeline) -> None:
        self.pipeline = pipeline
        self.params: list[torch.nn.Parameter] = []
        self.optimizer: torch.optim.Optimizer | None = None
        self._weights: dict[int, str] = {}
        self._moving: list[tuple[str, torch.nn.Module, str]] = []
        #: `--blocks_to_swap`'s host-kept weights: on the device only as the copies a block runs on
        self.swapped: set[torch.nn.Parameter] = set()

    def weights_done(self, params: list[torch.nn.Parameter]) -> None:
        self.params = params
        for name, module in self.pipeline.modules.items():
            for sub in module.modules():
                moving = hasattr(sub, "_diffusers_hook")
                for attr, t in [*sub._buffers.items(), *sub._parameters.items()]:
                    if t is None:
                        continue
                    label = TRAINABLE if t.requires_grad else weights_label(name)
                    if (moving or t in self.swapped) and not t.requires_grad:
                        self._moving.append((label, sub, attr))
                    else:
                        self._weights[storage_key(t)] = label

    def __call__(self) -> dict[int, str]:
        out = dict(self._weights)
        for label, sub, attr in self._moving:
            t: torch.Tensor | None = sub._parameters.get(attr)
            if t is None:
                t = sub._buffers.get(attr)
            if t is not None:
                out[storage_key(t)] = label
        for p in self.params:
            if p.grad is not None:
                out[storage_key(p.grad)] = GRADIENTS
        if self.optimizer is not None:
            for state in self.optimizer.state.values():
                for value in state.values():
                    if isinstance(value, torch.Tensor):
                        out[storage_key(value)] = OPTIMIZER
        return out


@contextlib.contextmanager
def saved_tensors_off_device(enabled: bool):
    """What `save_on_cpu` does to the device: a saved tensor leaves it until backward needs it."""
    if not enabled:
        yield
        return

    def pack(t: torch.Tensor):
        return t.shape, t.stride(), t.dtype, t.device

    def unpack(saved) -> torch.Tensor:
        shape, stride, dtype, device = saved
        return torch.empty_strided(shape, stride, dtype=dtype, device=device)

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        yield


class CpuConv3dWorkspace(torch.utils._python_dispatch.TorchDispatchMode):
    """PyTorch computes a 3-D convolution on a CPU with `slow_conv3d`, which unfolds its input
    into a buffer of batch x (in_channels / groups x kernel volume) x output positions elements
    that lives while the op runs (measured with RSS: a Conv3d 8 -> 8, kernel 3, on 384x384 needs
    124 MB besides its 4.5 MB output; this formula gives 121.5). Enter it inside the tracker: the
    buffer is made (and counted) next to the output, then freed."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func is torch.ops.aten.convolution.default and args[0].dim() == 5 and not args[6] and out.device.type == "cpu":
            weight = args[1]
            columns = out.shape[0] * math.prod(weight.shape[1:]) * math.prod(out.shape[2:])
            workspace = torch.empty(columns, dtype=out.dtype, device=out.device)
            del workspace
        return out


def kernel_workspaces(device: str) -> contextlib.AbstractContextManager:
    """The kernels' own buffers that a planned device's memory holds (see `CpuConv3dWorkspace`);
    on a GPU, cuDNN's and cuBLAS's workspaces are not modelled."""
    return CpuConv3dWorkspace() if device == "cpu" else contextlib.nullcontext()


def settings(config: TrainConfig, family: FamilySpec, plan: TrainablePlan, device: str = "cuda") -> dict[str, Any]:
    width, height = image_size(config, family)
    video = "video" in family.default_data_file_keys
    return {
        "size": f"{width}x{height}" + (f"x{config.num_frames}" if video else ""),
        "dtype": config.dtype,
        "device": device,
        "lora": {"component": plan.lora_component, "rank": config.effective_lora_rank()} if plan.lora_component else None,
        "trainable_models": plan.full_components,
        "gradient_checkpointing": "offload" if config.use_gradient_checkpointing_offload else bool(config.use_gradient_checkpointing),
        "fp8_models": plan.fp8_components,
        "blocks_to_swap": config.blocks_to_swap,
    }


def state_without_gradients(optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter]) -> int:
    """Bytes of the optimizer state made (by the warm-up step) for parameters that the step's
    backward gave no gradient. A real optimizer never makes state for those (MMDiT families'
    last block leaves its text-stream LoRA without one), and the state lived unchanged through
    the whole simulated step, so the peak and each phase's peak hold exactly this much too many."""
    seen: set[int] = set()
    total = 0
    for p in params:
        if p.grad is None:
            for value in optimizer.state.get(p, {}).values():
                if isinstance(value, torch.Tensor) and storage_key(value) not in seen:
                    seen.add(storage_key(value))
                    total += value.untyped_storage().nbytes()
    return total


def predict(registry: FamilyRegistry, config: TrainConfig, device: str = "cuda") -> Prediction:
    """Simulate one training step of `config` (flags as for `train`) on `device` (cuda or cpu);
    nothing is allocated."""
    started = time.perf_counter()
    family = registry.get(config.family)
    hooks = FamilyHooks(registry, family)
    context = plan_context(config, family, device)
    sample = planned_sample(config, family)
    pipeline = plan_pipeline(registry, family, config, context)
    plan = plan_training(family, config, pipeline)
    apply_plan(plan, pipeline, config)  # on the meta device: the trainer's order and code
    labels = Labels(pipeline)
    cached = runs_from_cache(config)
    train_preprocess = any(n != pipeline.denoiser for n in plan.components)
    with fake_mode() as mode, UnknownValuesAreOne():
        done: dict[int, torch.Tensor] = {}
        for module in pipeline.modules.values():
            make_fake(module, pipeline.device, done)
        on_host = labels.swapped = swapped_weights(config, family, pipeline)  # before the tracker: host memory
        offloaded = None
        if config.offload_models and not cached:  # --offload_models: encoders on the device only while encoding
            offloaded = offload(pipeline, offloaded_components(config, pipeline, None, plan.components), pipeline.device)
            on_host |= offloaded.parameters  # the same set as labels.swapped
        tables = {name: tensor_attributes(module, mode) for name, module in pipeline.modules.items()}  # held: see tensor_attributes

        def add_weights(memory: LiveMemory, names: list[str]) -> dict[str, int]:
            weights = {}
            for name in names:
                frozen = [t for t in pipeline.modules[name].parameters() if not t.requires_grad and t not in on_host]
                frozen += list(pipeline.modules[name].buffers()) + tables[name]
                for t in frozen:
                    memory.add(t)
                weights[weights_label(name)] = memory.live_bytes(frozen)
            return weights

        encoders = [n for n in pipeline.modules if n != pipeline.denoiser]
        encoding = None
        if cached:  # the encoders run alone (the cache is built, or was), then leave the device
            labels.weights_done([])
            with LiveMemory(labels=labels) as encoding, kernel_workspaces(device):
                cache_weights = add_weights(encoding, encoders)
                with encoding.phase("encoders"):
                    inputs = hooks.preprocess(pipeline, sample, context, with_grad=False)
                encoding.finish()
        with LiveMemory(labels=labels) as memory, kernel_workspaces(device):
            weights = add_weights(memory, [pipeline.denoiser] if cached else list(pipeline.modules))
            params = [p for name in plan.components for p in pipeline.modules[name].parameters() if p.requires_grad]
            for p in params:
                memory.add(p)
            weights[TRAINABLE] = memory.live_bytes(params)
            labels.weights_done(params)
            optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay, foreach=device == "cuda")
            labels.optimizer = optimizer
            for p in params:  # the optimizer's state as it is from the second step on
                p.grad = torch.zeros_like(p)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            with saved_tensors_off_device(config.use_gradient_checkpointing_offload and device == "cuda"):
                if cached:
                    for t in tree_leaves(inputs):  # read from the cache onto the device
                        if isinstance(t, torch.Tensor):
                            memory.add(t)
                else:
                    with memory.phase("encoders"), offloaded.on_device() if offloaded else contextlib.nullcontext():
                        inputs = hooks.preprocess(pipeline, sample, context, with_grad=train_preprocess)
                with memory.phase("denoiser"):
                    loss = hooks.loss(pipeline, inputs, context)
                    loss.backward()
                    stale = state_without_gradients(optimizer, params)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
            memory.finish()
    peak, breakdown = memory.peak - stale, dict(memory.at_peak)
    if stale:
        breakdown[OPTIMIZER] -= stale
    phases = {name: phase.peak - stale for name, phase in memory.phases.items()}
    if encoding is not None:  # a cached run: the cache build's peak is its own
        phases = {**{name: phase.peak for name, phase in encoding.phases.items()}, **phases}
        weights = {**cache_weights, **weights}
        if encoding.peak > peak:
            peak, breakdown = encoding.peak, dict(encoding.at_peak)
    return Prediction(
        family=family.name,
        variant=config.variant,
        peak=peak,
        breakdown=dict(sorted(breakdown.items())),
        weights=weights,
        phases=phases,
        settings={**settings(config, family, plan, device), "cached": cached},
        components=list(pipeline.modules),
        seconds=time.perf_counter() - started,
        repeated_blocks=count_blocks(family, pipeline),
    )


def runs_from_cache(config: TrainConfig) -> bool:
    """`--cache`, `--cache_dir`, `--task sft:train`: the encoders are on the device only while
    the cache is built, the denoiser trains on cached inputs."""
    from diffsynth.cache.stage import DATA_PROCESS, cache_folder

    return config.task != DATA_PROCESS and cache_folder(config) is not None


def count_blocks(family: FamilySpec, pipeline: FamilyPipeline) -> int:
    from diffsynth.training.block_swap import repeated_blocks

    if not family.repeated_blocks:
        return 0
    return len(repeated_blocks(pipeline.modules[pipeline.denoiser], family.repeated_blocks, family.name))


def swapped_weights(config: TrainConfig, family: FamilySpec, pipeline: FamilyPipeline) -> set[torch.nn.Parameter]:
    """`--blocks_to_swap`: the parameters whose weights the run keeps in host memory."""
    if not config.blocks_to_swap:
        return set()
    from diffsynth.training.block_swap import swap_blocks

    module = pipeline.modules[pipeline.denoiser]
    return swap_blocks(module, family.repeated_blocks, config.blocks_to_swap, pipeline.device, family.name).host_parameters
