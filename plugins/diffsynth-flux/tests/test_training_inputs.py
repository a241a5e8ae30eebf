"""Training inputs are what diffusers' FluxPipeline / FluxKontextPipeline feed the transformer:
same prompt embeddings, packed latents, ids, guidance and timestep scaling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import config, model_files, sample
from diffsynth_flux import plugin
from diffsynth_flux.inputs import pack, unpack
from diffsynth_flux.tiny import T5_TINY_LENGTH

from diffsynth.testing.tokens import predict_flow_seeing_lengths


@pytest.fixture(scope="module")
def pipe(model_base):
    return plugin.load_pipeline(model_files(model_base), config())


@pytest.fixture(scope="module")
def kontext_pipe(model_base):
    return plugin.load_pipeline(model_files(model_base, "kontext"), config(kontext=True))


@pytest.fixture(scope="module")
def diffusers_pipe(tiny_dir):
    from diffusers import FluxPipeline

    return FluxPipeline.from_pretrained(tiny_dir)


def _pixels(img) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)[None]


def test_inputs_match_flux_pipeline(pipe, diffusers_pipe):
    s = sample()
    inputs = plugin.preprocess_inputs(pipe, s, config(guidance=3.5))
    embeds, pooled, text_ids = diffusers_pipe.encode_prompt(s.prompt, prompt_2=None, max_sequence_length=T5_TINY_LENGTH)
    cond = inputs.conditioning
    torch.testing.assert_close(cond.prompt_embeds, embeds, atol=1e-4, rtol=1e-4)  # attention kernels differ
    torch.testing.assert_close(cond.pooled_embeds, pooled)
    torch.testing.assert_close(cond.text_ids, text_ids)
    vae = diffusers_pipe.vae
    latents = (vae.encode(_pixels(s.fields["image"])).latent_dist.mode() - vae.config.shift_factor) * vae.config.scaling_factor
    torch.testing.assert_close(inputs.latents, diffusers_pipe._pack_latents(latents, 1, 16, 4, 4))
    torch.testing.assert_close(unpack(inputs.latents, 4, 4), latents)
    torch.testing.assert_close(cond.image_ids, diffusers_pipe._prepare_latent_image_ids(1, 2, 2, "cpu", torch.float32))
    assert cond.guidance == 3.5 and cond.reference_latents is None


def test_prediction_is_the_pipelines_transformer_call(pipe, diffusers_pipe):
    inputs = plugin.preprocess_inputs(pipe, sample(), config(guidance=3.5))
    cond = inputs.conditioning
    noisy = torch.randn_like(inputs.latents)
    with torch.no_grad():
        ours = plugin.predict_flow(pipe, inputs, noisy, torch.tensor([0.7]))
        t = torch.tensor([700.0])  # the pipeline's timestep on the 0..1000 scale, passed as t / 1000
        theirs = diffusers_pipe.transformer(
            hidden_states=noisy, timestep=t / 1000, guidance=torch.full([1], 3.5), pooled_projections=cond.pooled_embeds,
            encoder_hidden_states=cond.prompt_embeds, txt_ids=cond.text_ids, img_ids=cond.image_ids, return_dict=False,
        )[0]  # fmt: skip
    torch.testing.assert_close(ours, theirs)


def test_pack_is_flux_pipelines(diffusers_pipe):
    x = torch.randn(1, 16, 6, 4)
    torch.testing.assert_close(pack(x), diffusers_pipe._pack_latents(x, 1, 16, 6, 4))


def test_kontext_reference_tokens_reach_the_transformer(kontext_pipe, tiny_kontext_dir):
    """The sequence grows by the reference's tokens, whose ids are FluxKontextPipeline's (dim 0 = 1)."""
    from diffusers import FluxKontextPipeline

    s = sample(kontext=True)
    inputs = plugin.preprocess_inputs(kontext_pipe, s, config(kontext=True))
    cond = inputs.conditioning
    target_tokens, ref_tokens = 4, 6  # 32x32 -> 2x2 packed; 48x32 -> 3x2 packed
    assert inputs.latents.shape[1] == target_tokens and cond.reference_latents.shape[1] == ref_tokens
    out, seen = predict_flow_seeing_lengths(plugin, kontext_pipe, inputs, kontext_pipe.dit.x_embedder)
    assert seen == [target_tokens + ref_tokens] and out.shape == inputs.latents.shape
    reference = FluxKontextPipeline.from_pretrained(tiny_kontext_dir)
    ref_pixels = _pixels(s.fields["kontext_images"])
    _, image_latents, latent_ids, image_ids = reference.prepare_latents(
        ref_pixels, 1, 16, 32, 32, torch.float32, torch.device("cpu"), torch.Generator().manual_seed(0)
    )
    torch.testing.assert_close(cond.reference_latents, image_latents)
    torch.testing.assert_close(cond.image_ids, torch.cat([latent_ids, image_ids]))
