"""Typed values that cross the boundary between the core and a family plugin.

Import-light: torch appears only in annotations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diffsynth.errors import UserError

if TYPE_CHECKING:
    import torch

    from diffsynth.models.header import CheckpointHeader
    from diffsynth.training.flow_matching import FlowMatchSchedule


@dataclass(frozen=True)
class RunContext:
    """What a family's hooks know about the run: small, frozen, never the trainer's config.

    `dtype` is the compute dtype ("fp32", "bf16", "fp16"; `torch_dtype` gives the torch one);
    `extra_inputs` the extra dataset columns asked for; `options` the family's own options as a
    frozen dataclass (`FamilySpec.options`, read as `context.options.guidance`).
    """

    dtype: str = "fp32"
    extra_inputs: tuple[str, ...] = ()
    options: Any = None
    download_source: str | None = None
    #: The fraction of the noise schedule trained on, from the noisy end (min, max).
    timestep_boundaries: tuple[float, float] = (0.0, 1.0)
    #: How the core's loss draws sigmas (`--timestep_sampling`, diffsynth.training.timesteps).
    timestep_sampling: str = "uniform"
    discrete_flow_shift: float = 1.0
    sigmoid_scale: float = 1.0
    logit_mean: float = 0.0
    logit_std: float = 1.0
    #: The components this run loads (None: all the family's). The encoder cache loads the encoders
    #: alone to fill it (`--task sft:data_process`, `--cache_dir`) and the denoiser alone to train from
    #: it: `load_pipeline` builds what `models.components` holds and requires only what `needs` says.
    components: tuple[str, ...] | None = None

    def needs(self, component: str) -> bool:
        """Whether `load_pipeline` must have `component` (False: load it only if it is given)."""
        return self.components is None or component in self.components

    @property
    def torch_dtype(self) -> torch.dtype:
        from diffsynth.models.checkpoints import torch_dtype

        return torch_dtype(self.dtype)

    @classmethod
    def for_run(cls, config: Any, options: Any = None) -> RunContext:
        """From a `TrainConfig` (or anything with its field names) and the family's options."""
        return cls(
            dtype=config.dtype if config.dtype != "auto" else "fp32",
            extra_inputs=tuple(config.extra_input_names()),
            options=options,
            download_source=config.download_source,
            timestep_boundaries=(config.min_timestep_boundary, config.max_timestep_boundary),
            timestep_sampling=_timestep_sampling(getattr(config, "timestep_sampling", "uniform")),
            discrete_flow_shift=getattr(config, "discrete_flow_shift", 1.0),
            sigmoid_scale=getattr(config, "sigmoid_scale", 1.0),
            logit_mean=getattr(config, "logit_mean", 0.0),
            logit_std=getattr(config, "logit_std", 1.0),
        )


def _timestep_sampling(name: str) -> str:
    """The core's name of a `--timestep_sampling` given in another tool's spelling."""
    from diffsynth.config import TIMESTEP_SAMPLING_ALIASES

    return TIMESTEP_SAMPLING_ALIASES.get(name, name)


@dataclass(frozen=True)
class CheckpointGroup:
    """One checkpoint identified as a family component: its shard files and merged header."""

    component: str
    #: The user's spelling of where it came from (`repo/id:glob` or a path), for messages.
    source: str
    header: CheckpointHeader
    #: "fp8" when the core stores this component's layer weights in FP8 (`--fp8_models`):
    #: `build_module` then casts them while loading.
    storage: str | None = None

    @property
    def files(self) -> tuple[Path, ...]:
        return self.header.files

    def sibling_config(self) -> dict[str, Any] | None:
        """The `config.json` next to the checkpoint files, if there is one (diffusers layout)."""
        import json

        cfg = self.files[0].parent / "config.json"
        if cfg.is_file():
            return json.loads(cfg.read_text())
        return None

    def required_config(self, what: str, folder: str = "") -> dict[str, Any]:
        """`sibling_config()`, which `what` (the module, for the message) cannot do without: none is
        a one-line `UserError` pointing at the repo's `folder` ("text_encoder/"; "": its folder)."""
        found = self.sibling_config()
        if not found:
            where = f"{folder} folder" if folder else "folder"
            raise UserError(
                f"{self.source}: no config.json next to the {what}; use the repo's {where} (safetensors + config.json)"
            )
        return found


@dataclass(frozen=True)
class ModelFiles:
    """Resolved, identified model files handed to `load_pipeline`."""

    components: dict[str, CheckpointGroup]
    tokenizer_path: Path | None = None
    processor_path: Path | None = None


@dataclass
class FamilyPipeline:
    """What `load_pipeline` returns. Families subclass it to add tokenizers, processors, ...

    `modules` holds every `torch.nn.Module` by component name ("dit", "vae", ...), each also an
    attribute (`pipe.vae`); the core applies LoRA, freezing, dtype and gradient checkpointing to
    them.
    """

    modules: dict[str, torch.nn.Module]
    schedule: FlowMatchSchedule
    denoiser: str = "dit"
    #: Set by the core after `load_pipeline`: the dtype the family computes in (cast inputs and
    #: embeddings to it) and the device the modules run on. A family never reads them off a
    #: parameter: with FP8 storage a weight's dtype is not the compute dtype.
    dtype: torch.dtype | None = None
    device: torch.device | None = None
    #: Timestep experts loaded (`FamilySpec.experts`; empty for a single denoiser): expert name ->
    #: (lowest, highest) sigma it denoises, as the model's inference pipeline splits the schedule.
    #: An expert owns sigma when lowest <= sigma < highest (the noisiest one also sigma = highest).
    experts: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def denoiser_module(self) -> torch.nn.Module:
        return self.modules[self.denoiser]

    def __getattr__(self, name: str) -> torch.nn.Module:
        # a component is an attribute too: `pipe.vae` is `pipe.modules["vae"]` (called only for
        # names that are no field or property)
        modules = self.__dict__.get("modules") or {}
        if name in modules:
            return modules[name]
        raise AttributeError(f"{type(self).__name__} has no attribute or module {name!r}")


@dataclass
class Sample:
    """One dataset item: the metadata row with its file columns loaded (PIL images, ...)."""

    index: int
    fields: dict[str, Any]

    @property
    def prompt(self) -> str:
        return str(self.fields.get("prompt", ""))


@dataclass
class TrainingInputs:
    """Model inputs for one sample: the clean latents to denoise and the conditioning.

    `conditioning` is the family's own typed dataclass (text embeddings, reference latents, ...);
    the core never looks inside it. `loss_mask` (same shape as `latents`, 1 = counts) lets a
    family exclude positions (e.g. a given first frame) from the loss.
    """

    latents: torch.Tensor
    conditioning: Any
    loss_mask: torch.Tensor | None = None


@dataclass
class TrainedWeights:
    """Trained parameters handed to `split_state_dict`, per component.

    For LoRA, keys are peft's names with the adapter name dropped
    (`transformer_blocks.0.attn.to_q.lora_A.weight`); for full training, the module's own
    `state_dict()` keys.
    """

    kind: str  # "lora" or "full"
    tensors: dict[str, dict[str, torch.Tensor]]
    lora_rank: int | None = None
    lora_alpha: float | None = None
    lora_target_modules: tuple[str, ...] = ()
    #: Timestep experts trained in one run (`--train_experts`): component -> the suffix of its file
    #: (`FamilySpec.experts`); each is written like the denoiser (the family's LoRA key format).
    expert_suffixes: dict[str, str] = field(default_factory=dict)


@dataclass
class OutputFile:
    """One safetensors file to write: `<stem><suffix>.safetensors` with header metadata."""

    suffix: str
    tensors: dict[str, torch.Tensor]
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LoraFile:
    """A LoRA file to apply for sampling, with the scale of its adapter (1.0 = as trained)."""

    path: str
    scale: float = 1.0


@dataclass(frozen=True)
class SampleRequest:
    """What to generate through a family's inference pipeline (`sample_images`).

    None means "the family's (the real pipeline's) default". `inputs` holds the extra inputs by
    their `ExtraInputSpec` names (`edit_image`, `kontext_images`, `input_image`) as lists of RGB
    PIL images; `loras` are LoRA files the family applies with the pipeline's own
    `load_lora_weights` (the code path users have). Every prompt is generated from `seed`, so a
    prompt's image does not depend on its position in the list.
    """

    prompts: tuple[str, ...]
    negative_prompt: str | None = None
    height: int | None = None
    width: int | None = None
    #: Video families: frames to generate (e.g. 1 + 4k for Wan).
    num_frames: int | None = None
    steps: int | None = None
    #: Embedded (distilled) guidance, e.g. FLUX.1-dev's `guidance_scale`.
    guidance: float | None = None
    #: Classifier-free guidance scale (Qwen-Image's `true_cfg_scale`, Wan's `guidance_scale`).
    cfg_scale: float | None = None
    seed: int = 0
    inputs: dict[str, list[Any]] = field(default_factory=dict)
    loras: tuple[LoraFile, ...] = ()


@dataclass
class SampleResult:
    """What `sample_images` returns: for each prompt of the request, in order, its frames (RGB
    PIL images: one for an image, several for a video) and, for a video, its frame rate."""

    frames: list[list[Any]]
    fps: int | None = None

    @property
    def is_video(self) -> bool:
        return self.fps is not None
