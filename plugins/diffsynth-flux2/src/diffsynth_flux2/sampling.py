"""`sample_images`: diffusers' Flux2KleinPipeline built around the modules `load_pipeline`
loaded, LoRA files applied with its own `load_lora_weights`, reference images passed as its
`image=`, called as a diffusers user would."""

from __future__ import annotations

from diffsynth.plugin import (
    RunContext,
    SampleRequest,
    SampleResult,
    UserError,
    generate_each_prompt,
    without_defaults,
)

from .inputs import max_length
from .pipeline import Flux2Modules
from .spec import EDIT
from .tiny import SCHEDULER_CONFIG


def diffusers_pipeline(pipe: Flux2Modules):
    """The real inference pipeline over our modules (no copy), with FLUX.2's scheduler."""
    from diffusers import FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline

    return Flux2KleinPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler.from_config(SCHEDULER_CONFIG),
        vae=pipe.vae,
        text_encoder=pipe.modules["text_encoder"],
        tokenizer=pipe.tokenizer,
        transformer=pipe.dit,
        is_distilled=pipe.is_distilled,
    )


def sample(pipe: Flux2Modules, request: SampleRequest, context: RunContext) -> SampleResult:
    unknown = sorted(set(request.inputs) - {EDIT})
    if unknown:
        raise UserError(f"flux2 takes no {', '.join('--' + u for u in unknown)} (extra input: --{EDIT})")
    if request.guidance is not None:
        raise UserError("--guidance: FLUX.2 [klein] has no embedded guidance (use --cfg_scale on a base model)")
    if request.num_frames not in (None, 1):
        raise UserError("--num_frames: flux2 generates images")
    dp = diffusers_pipeline(pipe)
    length = max_length(pipe)
    kwargs = dict(height=request.height, width=request.width, max_sequence_length=length, output_type="pil")
    kwargs.update(without_defaults({"num_inference_steps": request.steps, "guidance_scale": request.cfg_scale}))
    if request.negative_prompt is not None:  # the pipeline's negative prompt is "" unless given as embeddings
        kwargs["negative_prompt_embeds"] = dp.encode_prompt(request.negative_prompt, max_sequence_length=length)[0]
    if request.inputs.get(EDIT):
        kwargs["image"] = list(request.inputs[EDIT])
    return SampleResult(frames=generate_each_prompt(dp, request, kwargs, lambda out: out.images[0]))
