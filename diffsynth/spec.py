"""What a model family declares about itself: plain, torch-free data.

A plugin builds a `FamilySpec` in its light module and hands it to the core through the
`register_families` hook. Everything here must stay importable without torch, because
`diffsynth models list` and `--help` read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, make_dataclass
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from diffsynth.models.header import CheckpointHeader

#: Predicate over a checkpoint's safetensors header (key names + shapes): "is this my component?"
Detector = Callable[["CheckpointHeader"], bool]


@dataclass(frozen=True)
class ComponentSpec:
    """One module of a family's pipeline that is loaded from checkpoint files (dit, vae, ...)."""

    name: str
    description: str
    detect: Detector
    #: Component class, for humans (`models info`), e.g. "diffusers.SomeTransformer2DModel".
    module_class: str = ""
    #: Only some variants have it (e.g. an image encoder for image-to-video only).
    optional: bool = False
    #: It reads token ids: when it is loaded the run needs a tokenizer folder (`--tokenizer_path`
    #: or the variant's), which the core checks before `load_pipeline`.
    tokenized: bool = False


@dataclass(frozen=True)
class VariantSpec:
    """A named set of default sources (e.g. a base model and its Edit fine-tune).

    Sources use the seed's `repo/id:glob` spelling; `tokenizer`/`processor` name folders.
    """

    name: str
    description: str
    model_sources: tuple[str, ...]
    tokenizer_source: str | None = None
    processor_source: str | None = None


@dataclass(frozen=True)
class ExtraInputSpec:
    """A dataset column a family can consume beyond `image` and `prompt` (`--extra_inputs`)."""

    name: str
    description: str
    #: Variant whose default sources fit this input (e.g. an Edit checkpoint for `edit_image`).
    variant: str | None = None
    #: False when the family can derive the input without its own column (e.g. a video's first
    #: frame): the metadata then need not have the column.
    column_required: bool = True
    #: At most this many images per sample or prompt (None: any number); `diffsynth sample`
    #: refuses more.
    max_images: int | None = None


@dataclass(frozen=True)
class PresetSpec:
    """A `diffsynth models init FAMILY DIR --preset NAME` recipe."""

    name: str
    description: str


@dataclass(frozen=True)
class ExpertSpec:
    """One of several denoisers that split the noise schedule between them (timestep experts: the
    first expert denoises the noisiest range, the next one the range below, ...).

    A model of the family loads its experts as the components named here, in this order: the
    n-th checkpoint the denoiser's detector matches becomes the n-th expert's component, so the
    first expert's component is the family's `denoiser`. Which sigmas each expert owns depends on
    the loaded model (the family's `load_pipeline` fills `FamilyPipeline.experts`).
    `--train_experts` names experts by `name`; each expert's LoRA file is `<stem><file_suffix>`.
    """

    name: str
    component: str
    description: str
    file_suffix: str


@dataclass(frozen=True)
class FamilyOption:
    """A family-only CLI option; it appears in its own `--help` panel.

    `name` uses underscores (`guidance`); the CLI accepts it dashed as well.
    """

    name: str
    type: type
    default: Any
    help: str


@dataclass
class FamilySpec:
    """Everything the core needs to know about a family before importing any heavy module."""

    name: str
    description: str
    components: tuple[ComponentSpec, ...]
    variants: tuple[VariantSpec, ...]
    default_lora_targets: tuple[str, ...]
    #: Other tools' names for LoRA targets -> this family's module-name suffixes, so users can
    #: paste e.g. DiffSynth-Studio's or the original repo's names into --lora_target_modules.
    lora_target_aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: The component that is denoised and that LoRA attaches to by default.
    denoiser: str = "dit"
    extra_inputs: tuple[ExtraInputSpec, ...] = ()
    presets: tuple[PresetSpec, ...] = ()
    options: tuple[FamilyOption, ...] = ()
    #: Image height/width are rounded down to a multiple of this (VAE factor x patch size).
    resolution_multiple: int = 16
    #: Where the denoiser's repeated blocks are: names of its `ModuleList`s, in running order
    #: (`--blocks_to_swap` keeps the last N of them in host memory).
    repeated_blocks: tuple[str, ...] = ()
    #: File columns loaded when --data_file_keys is not given; those absent from the metadata
    #: are skipped (DiffSynth-Studio's video trainers default to "image,video").
    default_data_file_keys: tuple[str, ...] = ("image",)
    #: Version of what `preprocess_inputs` computes: raise it when the same sample and encoders
    #: would give other TrainingInputs, so encoder caches built before are not used
    #: (diffsynth.cache keys every entry with it).
    preprocess_version: str = "1"
    #: Timestep experts (`ExpertSpec`), noisiest first; empty for a single denoiser.
    experts: tuple[ExpertSpec, ...] = ()
    #: Filled in by the core at registration: distribution name and version of the plugin.
    plugin: str = ""
    plugin_version: str = ""
    aliases: tuple[str, ...] = field(default=())

    def variant(self, name: str | None) -> VariantSpec:
        if name is None:
            return self.variants[0]
        for var in self.variants:
            if var.name == name:
                return var
        raise KeyError(name)

    def expert_component(self, component: str, taken: Any) -> str | None:
        """Where a further checkpoint of `component` goes when `taken` (a container of component
        names) already holds it: the next expert's component, or None (not an expert family, or
        every expert taken)."""
        if not self.experts or component != self.experts[0].component:
            return None
        return next((e.component for e in self.experts if e.component not in taken), None)

    def expand_lora_targets(self, names: list[str]) -> list[str]:
        """Replace aliases by the module names they stand for (order kept, no duplicates)."""
        expanded = [t for name in names for t in self.lora_target_aliases.get(name, (name,))]
        return list(dict.fromkeys(expanded))

    @property
    def makes_videos(self) -> bool:
        """A family that trains on videos (its default file columns name one) generates videos."""
        return "video" in self.default_data_file_keys

    def option_defaults(self) -> dict[str, Any]:
        return {opt.name: opt.default for opt in self.options}

    def options_value(self, values: dict[str, Any] | None = None) -> Any:
        """The family's options as a frozen dataclass (`options.guidance`), defaults filled in."""
        cls = make_dataclass(
            f"{self.name.title().replace('-', '')}Options",
            [(o.name, o.type, field(default=o.default)) for o in self.options],
            frozen=True,
        )
        return cls(**{**self.option_defaults(), **(values or {})})
