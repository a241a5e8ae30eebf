"""Training inputs equal what diffusers' Wan pipelines build from the same modules: umT5 context,
latents, I2V mask + first-frame condition, TI2V first latent frame and per-token timesteps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import clip_frames, config, load, sample
from diffsynth_wan import plugin
from diffsynth_wan.inputs import encode_prompt

from diffsynth.errors import UserError
from diffsynth.types import Sample


@pytest.fixture(scope="module")
def t2v(model_base):
    return load(model_base, "t2v")


@pytest.fixture(scope="module")
def i2v(model_base):
    return load(model_base, "i2v")


@pytest.fixture(scope="module")
def ti2v(model_base):
    return load(model_base, "ti2v")


def diffusers_i2v(pipe, expand_timesteps=False):
    from diffusers import FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline

    m = pipe.modules
    return WanImageToVideoPipeline(
        tokenizer=pipe.tokenizer, text_encoder=m["text_encoder"], vae=m["vae"], scheduler=FlowMatchEulerDiscreteScheduler(),
        image_encoder=m.get("image_encoder"), transformer=m["dit"], expand_timesteps=expand_timesteps,
    )  # fmt: skip


def image_tensor(frame):
    return torch.from_numpy(np.asarray(frame, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)[None]


def test_modes_are_read_from_the_checkpoints(t2v, i2v, ti2v):
    assert (t2v.mode, i2v.mode, ti2v.mode) == ("t2v", "i2v", "ti2v")
    assert "image_encoder" in i2v.modules and "image_encoder" not in ti2v.modules


def test_i2v_dit_without_input_image_is_a_user_error(model_base):
    from conftest import model_files
    with pytest.raises(UserError, match="--extra_inputs input_image"):
        plugin.load_pipeline(model_files(model_base, "i2v"), config("t2v"))


def test_t2v_inputs_match_wan_pipeline(t2v):
    from diffusers import WanPipeline

    inputs = plugin.preprocess_inputs(t2v, sample(), config())
    assert inputs.latents.shape == (1, 16, 2, 4, 4) and inputs.loss_mask is None
    pipe = WanPipeline(tokenizer=t2v.tokenizer, text_encoder=t2v.modules["text_encoder"], vae=t2v.vae,
                       scheduler=None, transformer=t2v.dit)  # fmt: skip
    embeds, _ = pipe.encode_prompt("a red circle sliding right", do_classifier_free_guidance=False, max_sequence_length=t2v.text_len)
    torch.testing.assert_close(inputs.conditioning.prompt_embeds, embeds)
    # an image column trains as a 1-frame clip
    still = plugin.preprocess_inputs(t2v, Sample(0, {"image": clip_frames(1)[0], "prompt": "red"}), config())
    assert still.latents.shape == (1, 16, 1, 4, 4)
    torch.testing.assert_close(still.latents[:, :, 0], inputs.latents[:, :, 0])  # causal VAE: frame 0 alone


def test_i2v_condition_matches_wan_image_to_video_pipeline(i2v):
    inputs = plugin.preprocess_inputs(i2v, sample(), config("i2v"))
    cond = inputs.conditioning
    first = clip_frames()[0]
    _, condition = diffusers_i2v(i2v).prepare_latents(image_tensor(first), 1, 16, 32, 32, 5, torch.float32, "cpu")
    torch.testing.assert_close(cond.condition, condition)
    assert cond.condition.shape == (1, 20, 2, 4, 4)
    assert cond.image_embeds.shape == (1, 5, 80)  # CLIP penultimate layer: cls + 2x2 patches
    flow = plugin.predict_flow(i2v, inputs, torch.randn_like(inputs.latents), torch.tensor([0.5]))
    assert flow.shape == inputs.latents.shape


def test_ti2v_first_frame_is_given_and_out_of_the_loss(ti2v):
    inputs = plugin.preprocess_inputs(ti2v, sample(), config("ti2v"))
    cond = inputs.conditioning
    assert inputs.latents.shape == (1, 48, 2, 2, 2)  # 16x spatial VAE
    first = clip_frames()[0]
    pipe = diffusers_i2v(ti2v, expand_timesteps=True)
    _, condition, mask = pipe.prepare_latents(image_tensor(first), 1, 48, 32, 32, 5, torch.float32, "cpu")
    torch.testing.assert_close(cond.first_latent, condition)
    torch.testing.assert_close(inputs.loss_mask, mask.expand_as(inputs.latents))
    # the DiT sees the given first frame at timestep 0, whatever the noise there
    noisy = torch.randn_like(inputs.latents)
    other = noisy.clone()
    other[:, :, 0] = 100.0
    sigma = torch.tensor([0.7])
    flows = [plugin.predict_flow(ti2v, inputs, latents, sigma) for latents in (noisy, other)]
    torch.testing.assert_close(*flows)


def test_prompt_embeds_are_zero_past_the_prompt(t2v):
    embeds = encode_prompt(t2v, "red")
    assert t2v.text_len == 8  # the tiny repo's config.json (the real ones say 512)
    assert embeds.shape == (1, 8, 32)
    n = len(t2v.tokenizer("red").input_ids)
    assert embeds[0, :n].abs().sum() > 0 and embeds[0, n:].abs().sum() == 0
