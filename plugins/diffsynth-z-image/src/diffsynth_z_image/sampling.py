"""`sample_images`: diffusers' ZImagePipeline built around the modules `load_pipeline` loaded,
with the repo's scheduler config, LoRA files applied with its own `load_lora_weights`."""

from __future__ import annotations

from diffsynth.plugin import RunContext, SampleRequest, SampleResult, UserError, generate_each_prompt, without_defaults

from .pipeline import ZImageModules

#: The model cards' settings, by the scheduler shift that tells the two repos apart:
#: Z-Image-Turbo 9 steps (8 DiT calls) without CFG; Z-Image 50 steps, guidance_scale 4.
CARD_DEFAULTS = {3.0: {"num_inference_steps": 9, "guidance_scale": 0.0}, 6.0: {"num_inference_steps": 50, "guidance_scale": 4.0}}


def diffusers_pipeline(pipe: ZImageModules):
    """The real inference pipeline over our modules (no copy)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, ZImagePipeline

    scheduler = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler_config)
    modules = pipe.modules
    return ZImagePipeline(
        scheduler=scheduler, vae=modules["vae"], text_encoder=modules["text_encoder"], tokenizer=pipe.tokenizer,
        transformer=modules["dit"],
    )


class Sampling:
    """The family's `sample_images`."""

    def sample_images(self, pipeline: ZImageModules, request: SampleRequest, context: RunContext) -> SampleResult:
        if request.guidance is not None:
            raise UserError("--guidance: Z-Image has no embedded guidance; use --cfg_scale (ZImagePipeline's guidance_scale)")
        if request.num_frames is not None:
            raise UserError("--num_frames: Z-Image generates images")
        defaults = CARD_DEFAULTS.get(float(pipeline.scheduler_config.get("shift", 3.0)), {})
        kwargs = dict(
            defaults,
            height=request.height,
            width=request.width,
            output_type="pil",
            **without_defaults(
                {"num_inference_steps": request.steps, "guidance_scale": request.cfg_scale, "negative_prompt": request.negative_prompt}
            ),
        )
        return SampleResult(frames=generate_each_prompt(diffusers_pipeline(pipeline), request, kwargs, lambda out: out.images[0]))
