"""`Sampling` (the family's `sample_images`): diffusers' WanPipeline (text-to-video) or WanImageToVideoPipeline (Wan2.1
I2V with its CLIP image encoder, Wan2.2 TI2V-5B given a first frame) built around the modules
`load_pipeline` loaded, LoRA files applied with its own `load_lora_weights`, called as a
diffusers user would, with the scheduler of the Wan-AI *-Diffusers repos."""

from __future__ import annotations

from diffsynth.plugin import RunContext, SampleRequest, SampleResult, UserError, generate_each_prompt, without_defaults

from .inputs import CLIP_MEAN, CLIP_STD
from .pipeline import WanModules, boundary_ratio

INPUT = "input_image"
# diffusers' Wan default: UniPC on flow sigmas, shift 3.0 (480P: Wan2.1 T2V-1.3B, I2V-480P);
# Wan2.2 TI2V-5B generates 720P with shift 5.0.
FLOW_SHIFT = {"wan2.1": 3.0, "wan2.2": 5.0}
FPS = {"wan2.1": 16, "wan2.2": 24}


def generation(pipe: WanModules) -> str:
    """Wan2.2 (the residual 48-channel VAE, TI2V-5B) or Wan2.1."""
    return "wan2.2" if pipe.vae.config.is_residual else "wan2.1"


def scheduler(pipe: WanModules):
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000, flow_shift=FLOW_SHIFT[generation(pipe)]
    )


def clip_image_processor(pipe: WanModules):
    """The I2V repos' image_processor/ (CLIPImageProcessor, bicubic, CLIP mean/std) at the size of
    the loaded image encoder."""
    from transformers import CLIPImageProcessor

    size = pipe.modules["image_encoder"].config.image_size
    return CLIPImageProcessor(
        do_resize=True, size={"shortest_edge": size}, resample=3, do_center_crop=True,
        crop_size={"height": size, "width": size}, image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD),
    )  # fmt: skip


def diffusers_pipeline(pipe: WanModules, image_to_video: bool):
    """The real inference pipeline over our modules (no copy)."""
    from diffusers import WanImageToVideoPipeline, WanPipeline

    common = dict(
        tokenizer=pipe.tokenizer, text_encoder=pipe.modules["text_encoder"], vae=pipe.vae, scheduler=scheduler(pipe),
        transformer=pipe.dit, expand_timesteps=generation(pipe) == "wan2.2",
    )  # fmt: skip
    if "dit_2" in pipe.modules:  # both A14B experts: the pipeline switches at the boundary, as Wan-AI's
        common.update(transformer_2=pipe.modules["dit_2"], boundary_ratio=boundary_ratio(pipe.mode))
    if not image_to_video:
        return WanPipeline(**common)
    encoder = pipe.modules.get("image_encoder")
    processor = clip_image_processor(pipe) if encoder is not None else None
    return WanImageToVideoPipeline(image_processor=processor, image_encoder=encoder, **common)


class Sampling:
    """The family's `sample_images`."""

    def sample_images(self, pipeline: WanModules, request: SampleRequest, context: RunContext) -> SampleResult:
        images = request.inputs.get(INPUT) or []  # the core refuses other inputs and a second frame
        if request.guidance is not None:
            raise UserError("--guidance: Wan has no embedded guidance; use --cfg_scale")
        if pipeline.mode == "i2v" and not images:
            raise UserError(f"this is an image-to-video Wan DiT: pass --{INPUT}")
        if images and pipeline.mode not in ("i2v", "ti2v"):
            raise UserError(
                f"--{INPUT} needs an image-to-video Wan (Wan2.1 I2V, or Wan2.2 TI2V-5B with --variant ti2v)"
            )
        dp = diffusers_pipeline(pipeline, image_to_video=bool(images))
        kwargs = dict(max_sequence_length=pipeline.text_len, output_type="np")
        kwargs.update(without_defaults({
            "height": request.height, "width": request.width, "num_frames": request.num_frames,
            "num_inference_steps": request.steps, "guidance_scale": request.cfg_scale, "negative_prompt": request.negative_prompt,
        }))  # fmt: skip
        if images:
            kwargs["image"] = images[0]
        arguments = lambda p: prompt_arguments(dp, p, kwargs)
        frames = generate_each_prompt(dp, request, kwargs, lambda out: out.frames[0], arguments)
        return SampleResult(frames=frames, fps=FPS[generation(pipeline)])


def prompt_arguments(dp, prompt: str, kwargs: dict) -> dict:
    """`prompt=`, or, where diffusers' WanImageToVideoPipeline would fail for want of `ftfy`
    (0.42 cleans prompts with it unguarded; WanPipeline checks `is_ftfy_available`), the same
    umT5 embeddings computed by WanPipeline.encode_prompt over the same modules."""
    from diffusers import WanImageToVideoPipeline, WanPipeline
    from diffusers.utils import is_ftfy_available

    if is_ftfy_available() or not isinstance(dp, WanImageToVideoPipeline):
        return {"prompt": prompt}
    text = WanPipeline(tokenizer=dp.tokenizer, text_encoder=dp.text_encoder, vae=None, scheduler=None)
    cfg = kwargs.get("guidance_scale", 5.0) > 1  # the pipelines' default guidance_scale is 5.0
    positive, negative = text.encode_prompt(
        prompt, negative_prompt=kwargs.pop("negative_prompt", None), do_classifier_free_guidance=cfg,
        max_sequence_length=kwargs["max_sequence_length"], device=dp._execution_device, dtype=dp.text_encoder.dtype,
    )  # fmt: skip
    return {"prompt_embeds": positive, "negative_prompt_embeds": negative}
