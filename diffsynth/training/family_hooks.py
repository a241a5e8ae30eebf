"""One family's hooks, bound to its name, with the contract checked on every result.

The trainer, the sampler and the contract test-suite all call a family through this class,
so a plugin that returns nothing (or the wrong thing) fails with one clear `PluginError`, and
the core's defaults answer the optional hooks no plugin answered.
"""

from __future__ import annotations

from functools import partial

import torch

from diffsynth.errors import PluginError, UserError
from diffsynth.lora_format import DEFAULT_LORA_KEY_FORMAT
from diffsynth.plugins import FamilyRegistry
from diffsynth.spec import FamilySpec
from diffsynth.training import flow_matching as fm
from diffsynth.training.lora_export import lora_output_files
from diffsynth.training.lora_io import LoraLayers, normalize_lora_keys, read_lora_file
from diffsynth.types import FamilyPipeline, ModelFiles, OutputFile, RunContext, Sample, SampleRequest, SampleResult
from diffsynth.types import TrainedWeights, TrainingInputs


def flow_matching_loss(pipeline: FamilyPipeline, inputs: TrainingInputs, context: RunContext, predict) -> torch.Tensor:
    """The core's loss: noise the latents at a sigma drawn as `context.timestep_sampling` says
    (default: uniform on the family's schedule, within the context's timestep boundaries) and
    regress the prediction onto `noise - latents`."""
    from diffsynth.training.timesteps import sample_sigmas

    latents = inputs.latents
    # sigma then noise, sample by sample: a batch of N draws exactly what N accumulated
    # micro-batches would (and a batch of one what it always did); the noise filled in logical
    # order, as randn_like would fill a strided sample (a permuted view) in its memory order,
    # which torch.cat (batching) and the encoder cache do not keep
    draws = [(sample_sigmas(pipeline.schedule, one, context), torch.randn_like(one, memory_format=torch.contiguous_format))
             for one in latents.split(1)]  # fmt: skip
    sigmas = torch.cat([s for s, _ in draws]).to(latents.device)
    noise = torch.cat([n for _, n in draws])
    prediction = predict(fm.add_noise(latents, noise, sigmas), sigmas)
    return fm.flow_matching_loss(prediction, fm.flow_target(latents, noise), inputs.loss_mask)


class FamilyHooks:
    def __init__(self, registry: FamilyRegistry, family: FamilySpec) -> None:
        self.family = family
        self.registry = registry
        self._hook = registry.hook

    def _required(self, name: str, result):
        if result is None:
            raise PluginError(f"no plugin implements {name} for family {self.family.name}")
        return result

    def load_pipeline(self, models: ModelFiles, context: RunContext) -> FamilyPipeline:
        missing = [c.name for c in self.family.components
                   if not c.optional and c.name not in models.components and context.needs(c.name)]  # fmt: skip
        if missing:  # before the family's code: it may index any component it needs
            raise UserError(f"{self.family.name} needs checkpoints for: {', '.join(missing)} "
                            "(add them to --model_id_with_origin_paths or --model_paths)")  # fmt: skip
        tokenized = [c.name for c in self.family.components if c.tokenized and c.name in models.components]
        if tokenized and models.tokenizer_path is None:
            example = next((f" (e.g. {v.tokenizer_source})" for v in self.family.variants if v.tokenizer_source), "")
            raise UserError(f"{self.family.name}: its {', '.join(tokenized)} needs a tokenizer folder: pass "
                            f"--tokenizer_path{example}")  # fmt: skip
        pipeline = self._hook.load_pipeline(family=self.family.name, models=models, context=context)
        pipeline = self._required("load_pipeline", pipeline)
        if pipeline.denoiser not in pipeline.modules and context.needs(pipeline.denoiser):
            raise PluginError(f"{self.family.name}: load_pipeline has no module {pipeline.denoiser!r} (its denoiser)")
        # the core owns where and in what the family computes (see FamilyPipeline.dtype)
        pipeline.dtype = context.torch_dtype
        pipeline.device = torch.device("cpu")
        return pipeline

    def preprocess(
        self, pipeline: FamilyPipeline, sample: Sample, context: RunContext, with_grad: bool = False
    ) -> TrainingInputs:
        with torch.set_grad_enabled(with_grad):
            inputs = self._hook.preprocess_inputs(
                family=self.family.name, pipeline=pipeline, sample=sample, context=context
            )
        return self._required("preprocess_inputs", inputs)

    def predict(
        self, pipeline: FamilyPipeline, inputs: TrainingInputs, noisy_latents: torch.Tensor, sigmas: torch.Tensor
    ) -> torch.Tensor:
        out = self._hook.predict_flow(
            family=self.family.name, pipeline=pipeline, inputs=inputs, noisy_latents=noisy_latents, sigmas=sigmas
        )
        out = self._required("predict_flow", out)
        if out.shape != noisy_latents.shape:
            raise PluginError(
                f"{self.family.name}: predict_flow returned shape {tuple(out.shape)}, expected {tuple(noisy_latents.shape)}"
            )
        return out

    def collate(self, batch: list[TrainingInputs]) -> TrainingInputs:
        """Several samples' inputs as one batch: the family's `collate_inputs`, else the core's."""
        from diffsynth.training.batching import stack_inputs

        joined = self._hook.collate_inputs(family=self.family.name, inputs=batch)
        return joined if joined is not None else stack_inputs(batch)

    def loss(self, pipeline: FamilyPipeline, inputs: TrainingInputs, context: RunContext) -> torch.Tensor:
        predict = partial(self.predict, pipeline, inputs)
        loss = self._hook.compute_loss(
            family=self.family.name, pipeline=pipeline, inputs=inputs, context=context, predict=predict
        )
        return loss if loss is not None else flow_matching_loss(pipeline, inputs, context, predict)

    def split(self, weights: TrainedWeights, context: RunContext) -> list[OutputFile]:
        files = self._hook.split_state_dict(family=self.family.name, weights=weights, context=context)
        if files is None:
            files = lora_output_files(weights, self.family.name, self.family.denoiser, DEFAULT_LORA_KEY_FORMAT)
        return files

    def read_lora(self, path: str, flag: str, module: torch.nn.Module) -> LoraLayers:
        """A LoRA file in any supported format, named after `module`'s sub-modules."""
        state, metadata = read_lora_file(path, flag)
        normalized = self._hook.normalize_lora_state_dict(family=self.family.name, state_dict=state, metadata=metadata)
        return normalize_lora_keys(normalized if normalized is not None else state, metadata, module, f"{flag} {path}")

    def sample_images(self, pipeline: FamilyPipeline, request: SampleRequest, context: RunContext) -> SampleResult:
        """The family's inference pipeline on `request` (`sample_images`), checked."""
        accepted = {e.name: e for e in self.family.extra_inputs}
        unknown = sorted(set(request.inputs) - set(accepted))
        if unknown:
            takes = ", ".join(f"--{name}" for name in accepted) or "none"
            raise UserError(f"{self.family.name} takes no {', '.join('--' + u for u in unknown)} (extra inputs: {takes})")
        for name, images in request.inputs.items():
            limit = accepted[name].max_images
            if limit is not None and len(images) > limit:
                raise UserError(f"--{name}: {self.family.name} takes at most {limit} image(s), got {len(images)}")
        result = self._hook.sample_images(family=self.family.name, pipeline=pipeline, request=request, context=context)
        if result is None:
            raise UserError(f"{self.family.name} cannot be sampled: its plugin does not implement sample_images")
        if not isinstance(result, SampleResult) or len(result.frames) != len(request.prompts):
            raise PluginError(
                f"{self.family.name}: sample_images must return a SampleResult with frames for each of the "
                f"{len(request.prompts)} prompt(s)"
            )
        return result

    def sample(
        self, pipeline: FamilyPipeline, inputs: TrainingInputs, num_steps: int = 20, seed: int = 0
    ) -> torch.Tensor:
        """Generate latents shaped like `inputs.latents` with `inputs.conditioning` (Euler)."""
        gen = torch.Generator().manual_seed(seed)
        noise = torch.randn(inputs.latents.shape, generator=gen).to(inputs.latents)
        return fm.euler_sample(partial(self.predict, pipeline, inputs), pipeline.schedule, noise, num_steps)
