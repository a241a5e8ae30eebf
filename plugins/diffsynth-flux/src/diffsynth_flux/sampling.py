"""`Sampling` (the family's `sample_images`): diffusers' FluxPipeline (or FluxKontextPipeline with a reference image)
built around the modules `load_pipeline` loaded, LoRA files applied with its own
`load_lora_weights`, called as a diffusers user would (embedded guidance 3.5 by default)."""

from __future__ import annotations

from diffsynth.plugin import RunContext, SampleRequest, SampleResult, UserError, flow_match_scheduler_config
from diffsynth.plugin import generate_each_prompt, without_defaults

from .inputs import KONTEXT, t5_length
from .pipeline import FluxModules


def diffusers_pipeline(pipe: FluxModules, kontext: bool):
    """The real inference pipeline over our modules (no copy), with FLUX.1-dev's scheduler."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxKontextPipeline, FluxPipeline

    cls = FluxKontextPipeline if kontext else FluxPipeline
    return cls(
        scheduler=FlowMatchEulerDiscreteScheduler.from_config(flow_match_scheduler_config()),
        vae=pipe.vae,
        text_encoder=pipe.modules["text_encoder"],
        tokenizer=pipe.tokenizer,
        text_encoder_2=pipe.modules["text_encoder_2"],
        tokenizer_2=pipe.tokenizer_2,
        transformer=pipe.dit,
    )


class Sampling:
    """The family's `sample_images`."""

    def sample_images(self, pipeline: FluxModules, request: SampleRequest, context: RunContext) -> SampleResult:
        references = request.inputs.get(KONTEXT) or []  # at most one: the core checks max_images
        if request.guidance is not None and not pipeline.dit.config.guidance_embeds:
            raise UserError("--guidance: this FLUX transformer has no guidance embedding (use --cfg_scale with --negative_prompt)")
        dp = diffusers_pipeline(pipeline, kontext=bool(references))
        kwargs = dict(height=request.height, width=request.width, max_sequence_length=t5_length(pipeline), output_type="pil")
        kwargs.update(without_defaults({"num_inference_steps": request.steps, "guidance_scale": request.guidance,
                                        "true_cfg_scale": request.cfg_scale, "negative_prompt": request.negative_prompt}))  # fmt: skip
        if references:
            kwargs["image"] = references[0]
            if request.height and request.width:  # Kontext generates max_area pixels at the asked aspect ratio
                kwargs["max_area"] = request.height * request.width
        return SampleResult(frames=generate_each_prompt(dp, request, kwargs, lambda out: out.images[0]))
