"""`sample_images`: diffusers' Flux2KleinPipeline (klein) or Flux2Pipeline (dev) built around
the modules `load_pipeline` loaded, LoRA files applied with its own `load_lora_weights`,
reference images passed as its `image=`, called as a diffusers user would.

Flux2Pipeline gets the loaded MistralModel as its text encoder: it calls it as
`text_encoder(input_ids=, attention_mask=, output_hidden_states=True, use_cache=False)` and reads
`hidden_states`, which the text model of Mistral3ForConditionalGeneration computes alike."""

from __future__ import annotations

from diffsynth.plugin import RunContext, SampleRequest, SampleResult, UserError
from diffsynth.plugin import generate_each_prompt, without_defaults

from .inputs import max_length
from .pipeline import MISTRAL3, Flux2Modules
from .spec import EDIT
from .tiny import SCHEDULER_CONFIG


def diffusers_pipeline(pipe: Flux2Modules):
    """The real inference pipeline over our modules (no copy), with FLUX.2's scheduler."""
    from diffusers import FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline, Flux2Pipeline

    modules = dict(
        scheduler=FlowMatchEulerDiscreteScheduler.from_config(SCHEDULER_CONFIG),
        vae=pipe.vae,
        text_encoder=pipe.text_encoder,
        tokenizer=pipe.tokenizer,
        transformer=pipe.dit,
    )
    if pipe.text_encoder_kind == MISTRAL3:
        return Flux2Pipeline(**modules)
    return Flux2KleinPipeline(**modules, is_distilled=pipe.is_distilled)


class Sampling:
    """The family's `sample_images`."""

    def sample_images(self, pipeline: Flux2Modules, request: SampleRequest, context: RunContext) -> SampleResult:
        if request.num_frames not in (None, 1):
            raise UserError("--num_frames: flux2 generates images")
        dev = pipeline.text_encoder_kind == MISTRAL3
        if dev and (request.cfg_scale is not None or request.negative_prompt is not None):
            raise UserError("--cfg_scale/--negative_prompt: FLUX.2-dev's Flux2Pipeline has no classifier-free guidance (use --guidance)")
        if not dev and request.guidance is not None:
            raise UserError("--guidance: FLUX.2 [klein] has no embedded guidance (use --cfg_scale on a base model)")
        dp = diffusers_pipeline(pipeline)
        length = max_length(pipeline)
        kwargs = dict(height=request.height, width=request.width, max_sequence_length=length, output_type="pil")
        # Flux2Pipeline's guidance_scale is the embedded guidance (default 4.0); Flux2KleinPipeline's is CFG
        kwargs.update(without_defaults({"num_inference_steps": request.steps, "guidance_scale": request.guidance if dev else request.cfg_scale}))
        if request.negative_prompt is not None:  # the pipeline's negative prompt is "" unless given as embeddings
            kwargs["negative_prompt_embeds"] = dp.encode_prompt(request.negative_prompt, max_sequence_length=length)[0]
        if request.inputs.get(EDIT):
            kwargs["image"] = list(request.inputs[EDIT])
        return SampleResult(frames=generate_each_prompt(dp, request, kwargs, lambda out: out.images[0]))
