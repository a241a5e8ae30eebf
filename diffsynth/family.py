"""`Family`: the base class every model family subclasses (see docs/plugins.md).

A family is an object, as llm's models are: its spec (plain data) plus typed methods that do one
step each. The base class carries the pluggy hook implementations, so the hook specs stay the
contract and a third-party plugin can still override one step of an existing family with its own
`@hookimpl(tryfirst=True)`. Mistakes fail when the class is defined (so at `models list`, as a
broken plugin): a method name that is no hook, a hook with other parameters than the base's, a
required hook left out.

Import-light: nothing here imports torch; put heavy imports inside the methods, or register a
`LazyFamily` whose class lives in a module imported on the first hook call.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from diffsynth.hookspecs import hookimpl
from diffsynth.lora_format import DEFAULT_LORA_KEY_FORMAT, LoraKeyFormat
from diffsynth.spec import FamilySpec

if TYPE_CHECKING:
    import torch

    from diffsynth.types import FamilyPipeline, ModelFiles, OutputFile, RunContext, Sample, SampleRequest, SampleResult
    from diffsynth.types import TrainedWeights, TrainingInputs

#: Methods a family must write.
REQUIRED = ("load_pipeline", "preprocess_inputs", "predict_flow")
#: Methods with a default a family may replace.
OPTIONAL = (
    "init_model", "plan_pipeline", "collate_inputs", "compute_loss", "split_state_dict", "normalize_lora_state_dict",
    "sample_images",
)


class FamilyDefinitionError(TypeError):
    """A family class that does not fit the contract (raised when the class is defined)."""


class Family:
    """Subclass, set `spec`, write the three required methods; register an instance as the
    entry point (`my-family = "my_package:plugin"` with `plugin = MyFamily()`)."""

    spec: ClassVar[FamilySpec]
    #: How the denoiser's LoRA keys are written (default: ComfyUI's `diffusion_model.` + alpha).
    lora_key_format: ClassVar[LoraKeyFormat] = DEFAULT_LORA_KEY_FORMAT

    # -- what a family writes ------------------------------------------------------------------

    def load_pipeline(self, models: ModelFiles, context: RunContext) -> FamilyPipeline:
        """Build the modules from the identified checkpoint files, on CPU, in `context.dtype`."""
        raise NotImplementedError

    def preprocess_inputs(self, pipeline: FamilyPipeline, sample: Sample, context: RunContext) -> TrainingInputs:
        """A raw sample (PIL images, prompt, extra inputs) -> clean latents + conditioning,
        computed on `pipeline.device` in `pipeline.dtype`."""
        raise NotImplementedError

    def predict_flow(
        self, pipeline: FamilyPipeline, inputs: TrainingInputs, noisy_latents: torch.Tensor, sigmas: torch.Tensor
    ) -> torch.Tensor:
        """The denoiser's prediction of `noise - latents` at noise level `sigmas` (B,)."""
        raise NotImplementedError

    def init_model(self, preset: str, directory: Path, seed: int) -> None:
        """Write a random model of `preset` to `directory` in the real repo's on-disk layout."""
        from diffsynth.errors import UserError

        raise UserError(f"{self.spec.name} has no presets to write")

    def plan_pipeline(self, variant: str | None, context: RunContext) -> FamilyPipeline | None:
        """The real-size modules of `variant` on the meta device (no weights), for `diffsynth
        plan`; None: the family cannot be planned."""
        return None

    def collate_inputs(self, inputs: list[TrainingInputs]) -> TrainingInputs | None:
        """Samples' inputs as one batch for `--batch_size` (None: the core's padding join)."""
        return None

    def compute_loss(
        self, pipeline: FamilyPipeline, inputs: TrainingInputs, context: RunContext, predict: Callable
    ) -> torch.Tensor | None:
        """A different objective than the core's flow-matching MSE (None: the core's)."""
        return None

    def split_state_dict(self, weights: TrainedWeights, context: RunContext) -> list[OutputFile] | None:
        """Files to write (None: the core's, with `lora_key_format`)."""
        return None

    def normalize_lora_state_dict(
        self, state_dict: dict[str, torch.Tensor], metadata: dict[str, str]
    ) -> dict[str, torch.Tensor]:
        """A LoRA file in the family's original names -> the denoiser's module names."""
        return state_dict

    def sample_images(self, pipeline: FamilyPipeline, request: SampleRequest, context: RunContext) -> SampleResult | None:
        """Generate `request.prompts` through the family's real inference pipeline built around
        `pipeline.modules`, with `request.loras` applied by its own LoRA loader, for `diffsynth
        sample`; None: the family cannot be sampled."""
        return None

    # -- checked when a subclass is defined ---------------------------------------------------

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "spec" in cls.__dict__ and not isinstance(cls.spec, FamilySpec):
            raise FamilyDefinitionError(f"{cls.__name__}.spec must be a FamilySpec")
        # the class's own methods and those of the mixins it is composed of (a family may group
        # its methods by concern in classes that live next to their helpers)
        for owner in cls.__mro__:
            if owner not in Family.__mro__:
                _check_methods(owner)
        if "spec" in cls.__dict__:
            missing = [n for n in REQUIRED if getattr(cls, n) is getattr(Family, n)]
            if missing:
                raise FamilyDefinitionError(f"{cls.__name__} does not write {', '.join(missing)}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec.name!r})"

    # -- the pluggy hook implementations (filtered on the family's name) ----------------------

    def _mine(self, family: str) -> bool:
        return family == self.spec.name

    def _impl(self) -> Family:
        """The object whose methods answer (a `LazyFamily` imports it on first use)."""
        return self

    @hookimpl
    def register_families(self, register: Callable[[FamilySpec], None]) -> None:
        register(self.spec)

    @hookimpl(specname="init_model")
    def _init_model_hook(self, family, preset, directory, seed):
        if not self._mine(family):
            return None
        self.init_model(preset, Path(directory), seed)
        return True

    @hookimpl(specname="load_pipeline")
    def _load_pipeline_hook(self, family, models, context):
        return self.load_pipeline(models, context) if self._mine(family) else None

    @hookimpl(specname="plan_pipeline")
    def _plan_pipeline_hook(self, family, variant, context):
        return self.plan_pipeline(variant, context) if self._mine(family) else None

    @hookimpl(specname="collate_inputs")
    def _collate_inputs_hook(self, family, inputs):
        return self.collate_inputs(inputs) if self._mine(family) else None

    @hookimpl(specname="preprocess_inputs")
    def _preprocess_inputs_hook(self, family, pipeline, sample, context):
        return self.preprocess_inputs(pipeline, sample, context) if self._mine(family) else None

    @hookimpl(specname="predict_flow")
    def _predict_flow_hook(self, family, pipeline, inputs, noisy_latents, sigmas):
        return self.predict_flow(pipeline, inputs, noisy_latents, sigmas) if self._mine(family) else None

    @hookimpl(specname="compute_loss")
    def _compute_loss_hook(self, family, pipeline, inputs, context, predict):
        return self.compute_loss(pipeline, inputs, context, predict) if self._mine(family) else None

    @hookimpl(specname="split_state_dict")
    def _split_state_dict_hook(self, family, weights, context):
        if not self._mine(family):
            return None
        files = self.split_state_dict(weights, context)
        if files is not None:
            return files
        from diffsynth.training.lora_export import lora_output_files

        return lora_output_files(weights, self.spec.name, self.spec.denoiser, self.lora_key_format)

    @hookimpl(specname="sample_images")
    def _sample_images_hook(self, family, pipeline, request, context):
        return self.sample_images(pipeline, request, context) if self._mine(family) else None

    @hookimpl(specname="normalize_lora_state_dict")
    def _normalize_lora_state_dict_hook(self, family, state_dict, metadata):
        return self.normalize_lora_state_dict(state_dict, metadata) if self._mine(family) else None


def _check_methods(owner: type) -> None:
    """Every public method of `owner` is a hook with the base class's parameters."""
    hooks = set(REQUIRED + OPTIONAL)
    for name, value in owner.__dict__.items():
        if name.startswith("_") or not callable(value) or isinstance(value, (staticmethod, classmethod, type)):
            continue
        if name not in hooks:
            raise FamilyDefinitionError(
                f"{owner.__name__}.{name} is not a family hook (hooks: {', '.join(REQUIRED + OPTIONAL)}); "
                "name helpers with a leading underscore or move them to a module"
            )
        expected = list(inspect.signature(getattr(Family, name)).parameters)
        given = list(inspect.signature(value).parameters)
        if given != expected:
            raise FamilyDefinitionError(f"{owner.__name__}.{name}({', '.join(given)}): expected ({', '.join(expected)})")


class LazyFamily(Family):
    """A family registered by its spec alone; its class is imported on the first hook call.

    For a family whose methods live in modules that import torch: the entry point stays light
    (`models list` reads only the spec), and the class, checked as any `Family` subclass, is
    loaded once something runs. `load` returns the class:

        def _family():
            from .family import MyFamily
            return MyFamily

        plugin = LazyFamily(SPEC, _family)
    """

    def __init__(self, spec: FamilySpec, load: Callable[[], type[Family]]) -> None:
        if not isinstance(spec, FamilySpec):
            raise FamilyDefinitionError("LazyFamily(spec, load): spec must be a FamilySpec")
        self.spec = spec  # type: ignore[misc]  # an instance's spec, where a Family's is its class's
        self._load = load
        self._family: Family | None = None

    def _impl(self) -> Family:
        if self._family is None:
            from diffsynth.errors import PluginError

            try:
                family_class = self._load()
            except (ImportError, FamilyDefinitionError) as exc:
                raise PluginError(f"family {self.spec.name}: its class does not load: {exc}") from exc
            if not (isinstance(family_class, type) and issubclass(family_class, Family)):
                raise PluginError(f"family {self.spec.name}: LazyFamily's load returned {family_class!r}, not a Family class")
            if family_class.spec is not self.spec:
                raise PluginError(f"family {self.spec.name}: {family_class.__name__}.spec is not the spec it registered")
            self._family = family_class()
        return self._family

    def __repr__(self) -> str:
        return f"LazyFamily({self.spec.name!r})"

    # -- every method answers as the loaded class's (so `plugin.load_pipeline(...)` works) --------

    @property
    def lora_key_format(self) -> LoraKeyFormat:  # type: ignore[override]
        return self._impl().lora_key_format

    def load_pipeline(self, models, context):
        return self._impl().load_pipeline(models, context)

    def preprocess_inputs(self, pipeline, sample, context):
        return self._impl().preprocess_inputs(pipeline, sample, context)

    def predict_flow(self, pipeline, inputs, noisy_latents, sigmas):
        return self._impl().predict_flow(pipeline, inputs, noisy_latents, sigmas)

    def init_model(self, preset, directory, seed):
        return self._impl().init_model(preset, directory, seed)

    def plan_pipeline(self, variant, context):
        return self._impl().plan_pipeline(variant, context)

    def collate_inputs(self, inputs):
        return self._impl().collate_inputs(inputs)

    def compute_loss(self, pipeline, inputs, context, predict):
        return self._impl().compute_loss(pipeline, inputs, context, predict)

    def split_state_dict(self, weights, context):
        return self._impl().split_state_dict(weights, context)

    def normalize_lora_state_dict(self, state_dict, metadata):
        return self._impl().normalize_lora_state_dict(state_dict, metadata)

    def sample_images(self, pipeline, request, context):
        return self._impl().sample_images(pipeline, request, context)
