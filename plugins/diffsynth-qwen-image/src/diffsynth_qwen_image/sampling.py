"""`Sampling`, the family's `sample_images`: diffusers' QwenImagePipeline (QwenImageEditPipeline
with an edit image; QwenImageEditPlusPipeline with Edit-2509/2511 or several edit images) built
around the modules `load_pipeline` loaded, LoRA files applied with its own `load_lora_weights`,
called as a diffusers user would."""

from __future__ import annotations

from diffsynth.plugin import RunContext, SampleRequest, SampleResult, UserError, generate_each_prompt, without_defaults

from .pipeline import QwenImageModules
from .tiny import SCHEDULER_CONFIG

# Qwen-Image's model card: true_cfg_scale 4.0 with the negative prompt " " (the pipeline runs
# classifier-free guidance only when a negative prompt is given).
DEFAULT_CFG_SCALE = 4.0
DEFAULT_NEGATIVE_PROMPT = " "


def diffusers_pipeline(pipe: QwenImageModules, edit: bool, plus: bool = False):
    """The real inference pipeline over our modules (no copy), with Qwen/Qwen-Image's scheduler:
    QwenImagePipeline, QwenImageEditPipeline (`edit`) or QwenImageEditPlusPipeline (`plus`)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, QwenImageEditPipeline, QwenImageEditPlusPipeline, QwenImagePipeline

    scheduler = FlowMatchEulerDiscreteScheduler.from_config(SCHEDULER_CONFIG)
    common = dict(scheduler=scheduler, vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, transformer=pipe.dit)
    if edit or plus:
        if pipe.processor is None:
            raise UserError("--edit_image needs the Qwen2-VL processor: pass --processor_path (e.g. Qwen/Qwen-Image-Edit:processor/)")
        return (QwenImageEditPlusPipeline if plus else QwenImageEditPipeline)(processor=pipe.processor, **common)
    return QwenImagePipeline(**common)


class Sampling:
    """The family's `sample_images`."""

    def sample_images(self, pipeline: QwenImageModules, request: SampleRequest, context: RunContext) -> SampleResult:
        edit_images = request.inputs.get("edit_image") or []
        # Edit-2509/2511 (or several --edit_image, which only the Edit Plus pipeline takes)
        plus = bool(edit_images) and (pipeline.edit_plus or len(edit_images) > 1)
        if request.guidance is not None:
            raise UserError("--guidance: Qwen-Image has no embedded guidance; use --cfg_scale")
        dp = diffusers_pipeline(pipeline, edit=bool(edit_images), plus=plus)
        cfg = DEFAULT_CFG_SCALE if request.cfg_scale is None else request.cfg_scale
        negative = DEFAULT_NEGATIVE_PROMPT if request.negative_prompt is None else request.negative_prompt
        kwargs = dict(
            negative_prompt=negative if cfg > 1 else None,
            true_cfg_scale=cfg,
            height=request.height,
            width=request.width,
            output_type="pil",
            **without_defaults({"num_inference_steps": request.steps}),
        )
        if edit_images:
            kwargs["image"] = edit_images if plus else edit_images[0]
        return SampleResult(frames=generate_each_prompt(dp, request, kwargs, lambda out: out.images[0]))
