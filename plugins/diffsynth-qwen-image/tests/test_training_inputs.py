"""load_pipeline -> preprocess_inputs -> predict_flow on the tiny presets, checked against what
diffusers' own QwenImagePipeline / QwenImageEditPipeline compute for the same inputs."""

from __future__ import annotations

import diffsynth_qwen_image
import pluggy
import pytest
import torch
from conftest import config, model_files, sample
from diffsynth_qwen_image.inputs import QwenImageConditioning, unpack
from diffsynth_qwen_image.pipeline import QwenImageModules
from diffsynth_qwen_image.spec import NAME

import diffsynth.hookspecs
from diffsynth.errors import UserError
from diffsynth.types import ModelFiles, TrainingInputs


@pytest.fixture(scope="module")
def hooks():
    pm = pluggy.PluginManager(diffsynth.hookspecs.PROJECT)
    pm.add_hookspecs(diffsynth.hookspecs)
    pm.register(diffsynth_qwen_image.plugin)
    pm.check_pending()
    return pm.hook


@pytest.fixture(scope="module")
def t2i(hooks, model_base):
    return hooks.load_pipeline(family=NAME, models=model_files(model_base, "qwen-image"), context=config())


@pytest.fixture(scope="module")
def edit(hooks, model_base):
    return hooks.load_pipeline(family=NAME, models=model_files(model_base, "edit"), context=config(edit=True))


def test_registers(hooks):
    found = []
    hooks.register_families(register=found.append)
    assert [f.name for f in found] == [NAME]
    assert hooks.load_pipeline(family="flux", models=None, context=None) is None


def test_load_pipeline(t2i):
    assert isinstance(t2i, QwenImageModules)
    assert set(t2i.modules) == {"dit", "text_encoder", "vae"}
    assert t2i.denoiser == "dit" and t2i.schedule.exponential_mu == 0.8 and t2i.schedule.shift_terminal == 0.02
    assert t2i.processor is None
    assert all(p.dtype == torch.float32 and p.device.type == "cpu" for p in t2i.dit.parameters())


def test_missing_tokenizer_is_a_user_error(model_base):
    from diffsynth.plugins import load_registry
    from diffsynth.training.family_hooks import FamilyHooks

    files = model_files(model_base, "qwen-image")
    core = FamilyHooks(load_registry(), diffsynth_qwen_image.FAMILY)  # the core checks the tokenizer folder
    with pytest.raises(UserError, match="its text_encoder needs a tokenizer folder: pass --tokenizer_path"):
        core.load_pipeline(ModelFiles(files.components), config())
    with pytest.raises(UserError, match="--processor_path"):
        no_processor = ModelFiles(files.components, tokenizer_path=files.tokenizer_path)
        diffsynth_qwen_image.plugin.load_pipeline(no_processor, config(edit=True))


def test_t2i_inputs_and_flow(hooks, t2i, tiny_dir):
    from diffusers import QwenImagePipeline

    inputs = hooks.preprocess_inputs(family=NAME, pipeline=t2i, sample=sample(), context=config())
    assert isinstance(inputs, TrainingInputs) and isinstance(inputs.conditioning, QwenImageConditioning)
    assert inputs.latents.shape == (1, 4, 64)  # 32x32 px -> 4x4 latents -> 2x2 packed tokens of 16*4
    assert torch.isfinite(inputs.latents).all()
    # Same prompt embeddings and latents as diffusers' pipeline computes.
    ref = QwenImagePipeline.from_pretrained(tiny_dir)
    embeds, mask = ref.encode_prompt("a red cat", device="cpu")
    torch.testing.assert_close(inputs.conditioning.prompt_embeds, embeds)
    assert mask is None and inputs.conditioning.prompt_mask.all()
    from diffsynth_qwen_image.inputs import encode_image

    torch.testing.assert_close(unpack(inputs.latents, 4, 4), encode_image(t2i, sample().fields["image"]))

    noisy = torch.randn_like(inputs.latents)
    sigmas = torch.tensor([0.7])
    flow = hooks.predict_flow(family=NAME, pipeline=t2i, inputs=inputs, noisy_latents=noisy, sigmas=sigmas)
    assert flow.shape == inputs.latents.shape and torch.isfinite(flow).all()
    # The denoising loop's call: timestep = t / 1000 with t = 1000 * sigma.
    with torch.no_grad():
        expected = ref.transformer(
            hidden_states=noisy, timestep=sigmas * 1000 / 1000, encoder_hidden_states=embeds,
            encoder_hidden_states_mask=None, img_shapes=[[(1, 2, 2)]], return_dict=False,
        )[0]  # fmt: skip
    torch.testing.assert_close(flow.detach(), expected)


def test_edit_inputs_and_flow(hooks, t2i, edit, tiny_edit_dir):
    from diffsynth_qwen_image.inputs import resize_edit_image
    from diffusers import QwenImageEditPipeline

    plain = hooks.preprocess_inputs(family=NAME, pipeline=t2i, sample=sample(), context=config())
    inputs = hooks.preprocess_inputs(family=NAME, pipeline=edit, sample=sample(edit=True), context=config(edit=True))
    cond = inputs.conditioning
    assert inputs.latents.shape == plain.latents.shape
    assert cond.edit_latents is not None and torch.isfinite(cond.edit_latents).all()
    assert len(cond.edit_shapes) == 1 and cond.img_shapes(1) == [[(1, 2, 2), *cond.edit_shapes]]
    # 48x32 edit image at the 32x32 target's area -> 32x32 (rounded to 32) -> 2x2 tokens
    assert cond.edit_latents.shape == (1, cond.edit_shapes[0][1] * cond.edit_shapes[0][2], 64)

    ref = QwenImageEditPipeline.from_pretrained(tiny_edit_dir, processor=edit.processor)
    edit_image = resize_edit_image(sample(edit=True).fields["edit_image"], 32 * 32)
    embeds, _ = ref.encode_prompt("a red cat", image=edit_image, device="cpu")
    torch.testing.assert_close(cond.prompt_embeds, embeds)
    pixels = ref.image_processor.preprocess(edit_image, edit_image.height, edit_image.width).unsqueeze(2)
    ref_latents = ref._encode_vae_image(pixels, generator=None)
    torch.testing.assert_close(unpack(cond.edit_latents, *ref_latents.shape[-2:]), ref_latents, atol=1e-5, rtol=1e-5)

    noisy = torch.randn_like(inputs.latents)
    flow = hooks.predict_flow(family=NAME, pipeline=edit, inputs=inputs, noisy_latents=noisy, sigmas=torch.tensor([0.3]))
    assert flow.shape == inputs.latents.shape and torch.isfinite(flow).all()
    with torch.no_grad():
        full = ref.transformer(
            hidden_states=torch.cat([noisy, cond.edit_latents], 1), timestep=torch.tensor([0.3]),
            encoder_hidden_states=embeds, encoder_hidden_states_mask=None, img_shapes=cond.img_shapes(1), return_dict=False,
        )[0]  # fmt: skip
    assert full.shape[1] > flow.shape[1]
    torch.testing.assert_close(flow.detach(), full[:, : noisy.shape[1]])
