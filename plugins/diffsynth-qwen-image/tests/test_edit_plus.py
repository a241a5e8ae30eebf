"""Qwen-Image-Edit-2509/2511 (Edit Plus) and Qwen-Image-2512 on their tiny presets: how each is
recognised, and the training inputs checked against diffusers' QwenImageEditPlusPipeline (the
"Picture N:" prompt with every reference at 384^2, one VAE grid per reference after the noisy
tokens, zero_cond_t from the 2511 config or --zero_cond_t)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import config, image, model_files, resolve
from diffsynth_qwen_image import FAMILY, plugin
from diffsynth_qwen_image.configs import infer_dit_config, is_edit_plus
from diffsynth_qwen_image.inputs import resize_edit_image, unpack

from diffsynth.models.checkpoints import identify
from diffsynth.types import ModelFiles, Sample

PROMPT = "put the cat from picture 1 on the sofa of picture 2"


def loaded(model_base, variant: str, **flags):
    pipe = plugin.load_pipeline(model_files(model_base, variant), config(edit=True, **flags))
    pipe.dtype, pipe.device = torch.float32, torch.device("cpu")  # what the core sets after loading
    return pipe


@pytest.fixture(scope="module")
def plus(model_base):
    return loaded(model_base, "edit-2509")


def references():
    return [image(1, 96, 32), image(2, 32, 64)]  # two aspect ratios: two different grids


def edit_sample(edit_image) -> Sample:
    return Sample(index=0, fields={"image": image(0, 64, 64), "prompt": PROMPT, "edit_image": edit_image})


def plus_pipeline(pipe):
    from diffusers import QwenImageEditPlusPipeline

    return QwenImageEditPlusPipeline(
        scheduler=None, vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer,
        processor=pipe.processor, transformer=pipe.dit,
    )  # fmt: skip


def diffusers_condition(ref, img):
    """The text encoder's picture as QwenImageEditPlusPipeline.__call__ makes it (CONDITION_IMAGE_SIZE)."""
    from diffusers.pipelines.qwenimage.pipeline_qwenimage_edit_plus import CONDITION_IMAGE_SIZE, calculate_dimensions

    width, height = calculate_dimensions(CONDITION_IMAGE_SIZE, img.width / img.height)
    return ref.image_processor.resize(img, height, width)


def test_variants_are_told_apart_by_model_index_and_config(model_base):
    index = {repo: json.loads((model_base / repo / "model_index.json").read_text())["_class_name"] for repo in (
        "Qwen/Qwen-Image-2512", "Qwen/Qwen-Image-Edit-2509", "Qwen/Qwen-Image-Edit-2511")}  # fmt: skip
    assert index == {
        "Qwen/Qwen-Image-2512": "QwenImagePipeline",
        "Qwen/Qwen-Image-Edit-2509": "QwenImageEditPlusPipeline",
        "Qwen/Qwen-Image-Edit-2511": "QwenImageEditPlusPipeline",
    }
    zero = {v: json.loads((model_base / v / "transformer" / "config.json").read_text())["zero_cond_t"]
            for v in ("Qwen/Qwen-Image-Edit-2509", "Qwen/Qwen-Image-Edit-2511")}  # fmt: skip
    assert zero == {"Qwen/Qwen-Image-Edit-2509": False, "Qwen/Qwen-Image-Edit-2511": True}
    plus = {v: is_edit_plus(model_files(model_base, v), zero_cond_t=False) for v in ("edit", "edit-2509", "edit-2511")}
    assert plus == {"edit": False, "edit-2509": True, "edit-2511": True}
    # an encoder-cache run loads no DiT: the processor's repo tells
    files = model_files(model_base, "edit-2509")
    no_dit = ModelFiles({k: v for k, v in files.components.items() if k != "dit"}, files.tokenizer_path, files.processor_path)
    assert is_edit_plus(no_dit, zero_cond_t=False)
    # 2512 is the base architecture: same components, same inferred DiT config
    base, new = (identify(FAMILY, *resolve(model_base, FAMILY.variant(v).model_sources[0])) for v in ("qwen-image", "2512"))
    assert new.component == "dit" and infer_dit_config(new.header) == infer_dit_config(base.header)


def test_edit_plus_inputs_match_qwen_image_edit_plus_pipeline(plus):
    """Two references of different shapes: the prompt embeddings, the references' latents and
    grids, and the flow are what QwenImageEditPlusPipeline computes for the same images."""
    assert plus.edit_plus and not plus.dit.config.zero_cond_t
    refs = references()
    with torch.no_grad():
        inputs = plugin.preprocess_inputs(plus, edit_sample(refs), config(edit=True))
    cond = inputs.conditioning
    ref = plus_pipeline(plus)
    with torch.no_grad():
        embeds, mask = ref.encode_prompt(PROMPT, image=[diffusers_condition(ref, r) for r in refs], device="cpu")
    assert mask is None and cond.prompt_mask.all()
    torch.testing.assert_close(cond.prompt_embeds, embeds)
    # one VAE grid per reference, each at its own aspect ratio
    sizes = [resize_edit_image(r, 64 * 64).size for r in refs]
    assert cond.edit_shapes == tuple((1, h // 16, w // 16) for w, h in sizes) and len(set(cond.edit_shapes)) == 2
    start = 0
    for r, (w, h), shape in zip(refs, sizes, cond.edit_shapes):
        pixels = ref.image_processor.preprocess(r, h, w).unsqueeze(2)
        expected = ref._encode_vae_image(pixels, generator=None)
        n = shape[1] * shape[2]
        torch.testing.assert_close(unpack(cond.edit_latents[:, start : start + n], h // 8, w // 8), expected, atol=1e-5, rtol=1e-5)
        start += n
    assert start == cond.edit_latents.shape[1]

    noisy = torch.randn_like(inputs.latents)
    with torch.no_grad():
        flow = plugin.predict_flow(plus, inputs, noisy, torch.tensor([0.3]))
        full = ref.transformer(
            hidden_states=torch.cat([noisy, cond.edit_latents], 1), timestep=torch.tensor([0.3]),
            encoder_hidden_states=embeds, encoder_hidden_states_mask=None,
            img_shapes=[[(1, 4, 4), (1, 2, 6), (1, 6, 2)]], return_dict=False,  # the pipeline's, 64x64 out
        )[0]  # fmt: skip
    torch.testing.assert_close(flow, full[:, : noisy.shape[1]])


def test_one_reference_on_edit_plus_and_a_list_on_edit(model_base, plus):
    """Edit-2509 with a single edit image still uses the "Picture 1:" prompt (its pipeline's);
    a list on the original Edit model does too (DiffSynth-Studio's rule), one image does not."""
    ref = plus_pipeline(plus)
    single = image(1, 48, 32)
    with torch.no_grad():
        inputs = plugin.preprocess_inputs(plus, edit_sample(single), config(edit=True))
        expected, _ = ref.encode_prompt(PROMPT, image=[diffusers_condition(ref, single)], device="cpu")
    torch.testing.assert_close(inputs.conditioning.prompt_embeds, expected)

    edit = loaded(model_base, "edit")
    assert not edit.edit_plus
    with torch.no_grad():
        as_list = plugin.preprocess_inputs(edit, edit_sample([single]), config(edit=True)).conditioning.prompt_embeds
        as_image = plugin.preprocess_inputs(edit, edit_sample(single), config(edit=True)).conditioning.prompt_embeds
        ours, _ = plus_pipeline(edit).encode_prompt(PROMPT, image=[diffusers_condition(ref, single)], device="cpu")
    torch.testing.assert_close(as_list, ours)
    assert as_image.shape != as_list.shape or not torch.allclose(as_image, as_list)


def test_zero_cond_t_from_the_2511_config_or_the_flag(model_base, plus):
    """2511's config turns diffusers' zero_cond_t on (the references' tokens are modulated at
    timestep 0); --zero_cond_t does the same for a model whose config does not say so."""
    edit_2511 = loaded(model_base, "edit-2511")
    assert edit_2511.dit.config.zero_cond_t and edit_2511.edit_plus
    flagged = loaded(model_base, "edit-2509", zero_cond_t=True)
    assert flagged.dit.config.zero_cond_t and all(b.zero_cond_t for b in flagged.dit.transformer_blocks)
    with torch.no_grad():
        inputs = plugin.preprocess_inputs(plus, edit_sample(references()), config(edit=True))
        noisy = torch.randn_like(inputs.latents)
        sigma = torch.tensor([0.6])
        off, on = plugin.predict_flow(plus, inputs, noisy, sigma), plugin.predict_flow(flagged, inputs, noisy, sigma)
        assert not torch.allclose(off, on, atol=1e-5)
        cond = inputs.conditioning
        zero_all = plus.dit(
            hidden_states=torch.cat([noisy, cond.edit_latents], 1), timestep=torch.zeros(1),
            encoder_hidden_states=cond.prompt_embeds, img_shapes=cond.img_shapes(1), return_dict=False,
        )[0][:, : noisy.shape[1]]  # fmt: skip
    assert not torch.allclose(on, zero_all, atol=1e-5)  # only the references are at 0, not the image


def test_a_batch_predicts_as_its_samples_and_unequal_references_are_refused(model_base):
    """--batch_size 2 on Edit-2511 (zero_cond_t's per-sample modulation index): the batched flow
    is each sample's; references of other grids cannot share a batch (one line naming them)."""
    from diffsynth.errors import UserError
    from diffsynth.training.batching import stack_inputs

    pipe = loaded(model_base, "edit-2511")
    with torch.no_grad():
        a, b = (
            plugin.preprocess_inputs(pipe, edit_sample(references()[:1] + [image(s, 32, 64)]), config(edit=True))
            for s in (3, 4)
        )
        batch = stack_inputs([a, b])
        noisy, sigmas = torch.randn_like(batch.latents), torch.tensor([0.2, 0.7])
        flow = plugin.predict_flow(pipe, batch, noisy, sigmas)
        for i, one in enumerate((a, b)):
            alone = plugin.predict_flow(pipe, one, noisy[i : i + 1], sigmas[i : i + 1])
            torch.testing.assert_close(flow[i : i + 1], alone, atol=1e-5, rtol=1e-4)
        other = plugin.preprocess_inputs(pipe, edit_sample(references()[:1]), config(edit=True))
    with pytest.raises(UserError, match=r"samples differ in conditioning.edit_shapes .*--batch_size 1"):
        stack_inputs([a, other])
