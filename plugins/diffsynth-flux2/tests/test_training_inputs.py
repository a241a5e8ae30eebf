"""Training inputs are what diffusers' Flux2KleinPipeline feeds the transformer: the same prompt
embeddings and text ids, normalised patchified latents and ids, reference tokens and their ids,
and the same transformer call."""

from __future__ import annotations

import pytest
import torch
from conftest import config, image, model_files, pixels, sample
from diffsynth_flux2 import FAMILY, plugin
from diffsynth_flux2.inputs import pack, unpack
from diffsynth_flux2.spec import EDIT
from diffsynth_flux2.tiny import TINY_MAX_LENGTH

from diffsynth.errors import UserError
from diffsynth.testing.tokens import predict_flow_seeing_lengths
from diffsynth.types import Sample


@pytest.fixture(scope="module")
def pipe(model_base):
    return plugin.load_pipeline(model_files(model_base), config(edit=True))


@pytest.fixture(scope="module")
def diffusers_pipe(tiny_dir):
    from diffusers import Flux2KleinPipeline

    return Flux2KleinPipeline.from_pretrained(tiny_dir)


def test_inputs_match_flux2_klein_pipeline(pipe, diffusers_pipe):
    s = sample()
    inputs = plugin.preprocess_inputs(pipe, s, config())
    embeds, text_ids = diffusers_pipe.encode_prompt(s.prompt, max_sequence_length=TINY_MAX_LENGTH)
    cond = inputs.conditioning
    torch.testing.assert_close(cond.prompt_embeds, embeds)
    torch.testing.assert_close(cond.text_ids, text_ids[0])
    image_latents = diffusers_pipe._encode_vae_image(pixels(s.fields["image"]), None)  # (1, 128, 2, 2)
    torch.testing.assert_close(inputs.latents, diffusers_pipe._pack_latents(image_latents))
    torch.testing.assert_close(unpack(inputs.latents, 2, 2), image_latents)
    torch.testing.assert_close(cond.image_ids, diffusers_pipe._prepare_latent_ids(image_latents)[0])
    assert cond.reference_latents is None and inputs.latents.shape == (1, 4, 128)


def test_reference_images_are_the_pipelines_condition_tokens(pipe, diffusers_pipe):
    """Two references (64x64, 80x64): their tokens follow the target's with t = 10, 20, as
    Flux2KleinPipeline.prepare_image_latents builds them from its own image processor."""
    s = sample(references=2)
    inputs = plugin.preprocess_inputs(pipe, s, config(edit=True))
    cond = inputs.conditioning
    processed = [diffusers_pipe.image_processor.preprocess(img, height=img.height, width=img.width, resize_mode="crop")
                 for img in s.fields[EDIT]]  # fmt: skip
    latents, ids = diffusers_pipe.prepare_image_latents(processed, 1, None, "cpu", torch.float32)
    torch.testing.assert_close(cond.reference_latents, latents)
    assert cond.image_ids.shape == (4 + 16 + 20, 4)
    torch.testing.assert_close(cond.image_ids[4:], ids[0])
    assert sorted(set(cond.image_ids[:, 0].tolist())) == [0, 10, 20]
    out, seen = predict_flow_seeing_lengths(plugin, pipe, inputs, pipe.dit.x_embedder)
    assert seen == [4 + 16 + 20] and out.shape == inputs.latents.shape


def test_prediction_is_the_pipelines_transformer_call(pipe, diffusers_pipe):
    inputs = plugin.preprocess_inputs(pipe, sample(), config())
    cond = inputs.conditioning
    noisy = torch.randn_like(inputs.latents)
    with torch.no_grad():
        ours = plugin.predict_flow(pipe, inputs, noisy, torch.tensor([0.7]))
        t = torch.tensor([700.0])  # the pipeline's timestep on the 0..1000 scale, passed as t / 1000
        theirs = diffusers_pipe.transformer(
            hidden_states=noisy, timestep=t / 1000, guidance=None, encoder_hidden_states=cond.prompt_embeds,
            txt_ids=cond.text_ids[None], img_ids=cond.image_ids[None], return_dict=False,
        )[0]  # fmt: skip
    torch.testing.assert_close(ours, theirs)


def test_pack_is_the_pipelines(diffusers_pipe):
    x = torch.randn(1, 128, 3, 2)
    torch.testing.assert_close(pack(x), diffusers_pipe._pack_latents(x))


def test_missing_reference_column_names_it(pipe):
    with pytest.raises(UserError, match=f"column '{EDIT}'"):
        plugin.preprocess_inputs(pipe, Sample(index=3, fields={"image": sample().fields["image"], "prompt": "x"}), config(edit=True))


def test_a_batch_of_two_has_the_loss_of_the_two_samples_one_by_one(pipe):
    """Collated inputs draw the noise and sigmas the two samples draw alone (the latents are a
    permuted view, as the pipeline packs them, and stay so only unbatched)."""
    from diffsynth.plugins import load_registry
    from diffsynth.training.family_hooks import FamilyHooks

    hooks = FamilyHooks(load_registry(), FAMILY)
    samples = [plugin.preprocess_inputs(pipe, Sample(index=i, fields={"image": image(i), "prompt": p}), config())
               for i, p in enumerate(("a red cat", "a blue dog"))]  # fmt: skip
    assert not samples[0].latents.is_contiguous()
    with torch.no_grad():
        torch.manual_seed(0)
        batched = hooks.loss(pipe, hooks.collate(samples), config())
        torch.manual_seed(0)
        alone = [hooks.loss(pipe, s, config()) for s in samples]
    torch.testing.assert_close(batched, sum(alone) / 2)
