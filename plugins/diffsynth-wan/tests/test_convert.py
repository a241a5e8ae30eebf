"""Original-format load equals a diffusers/transformers build of the same weights: a module is
built in its library's layout, written with the original Wan key names, loaded back through the
plugin's loader, and both give the same outputs."""

from __future__ import annotations

import pytest
import torch
from diffsynth_wan import FAMILY, convert, pipeline, tiny
from safetensors.torch import save_file

from diffsynth.models.checkpoints import identify


def _load(path, loader):
    group = identify(FAMILY, str(path), [path])
    return loader(group, torch.float32)


@pytest.mark.parametrize("preset", ["tiny", "tiny-i2v", "tiny-ti2v"])
def test_dit_original_load_equals_diffusers_build(tmp_path, preset):
    torch.manual_seed(0)
    built = tiny.build_dit(tiny.PRESETS[preset]).eval()
    path = tmp_path / "dit.safetensors"
    save_file({k: v.contiguous() for k, v in convert.dit_to_original(built.state_dict()).items()}, str(path))
    (tmp_path / "config.json").write_text(f'{{"num_heads": {built.config.num_attention_heads}}}')
    loaded = _load(path, pipeline.load_dit)
    assert loaded.config.in_channels == built.config.in_channels
    g = torch.Generator().manual_seed(1)
    cfg = built.config
    kwargs = dict(
        hidden_states=torch.randn(1, cfg.in_channels, 2, 4, 4, generator=g),
        timestep=torch.tensor([500.0]),
        encoder_hidden_states=torch.randn(1, 7, cfg.text_dim, generator=g),
        encoder_hidden_states_image=torch.randn(1, 5, cfg.image_dim, generator=g) if cfg.image_dim else None,
        return_dict=False,
    )
    with torch.no_grad():
        torch.testing.assert_close(loaded(**kwargs)[0], built(**kwargs)[0])


@pytest.mark.parametrize("latent", [16, 48])
def test_vae_original_load_equals_diffusers_build(tmp_path, latent):
    torch.manual_seed(0)
    built = tiny.build_vae(latent).eval()
    path = tmp_path / "vae.pth"
    torch.save(convert.vae_to_original(built.state_dict(), residual=latent == 48), path)
    loaded = _load(path, pipeline.load_vae)
    assert loaded.config.z_dim == latent and loaded.config.is_residual == (latent == 48)
    video = torch.rand(1, 3, 5, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    with torch.no_grad():
        z = built.encode(video).latent_dist.mode()
        torch.testing.assert_close(loaded.encode(video).latent_dist.mode(), z)
        torch.testing.assert_close(loaded.decode(z).sample, built.decode(z).sample)


def test_umt5_original_load_equals_transformers_build(tmp_path):
    torch.manual_seed(0)
    built = tiny.build_t5(68).float().eval()
    path = tmp_path / "models_t5_umt5-xxl-enc-bf16.pth"
    torch.save(convert.t5_to_original(built.state_dict()), path)
    loaded = _load(path, pipeline.load_text_encoder)
    ids = torch.tensor([[4, 11, 17, 20, 1, 0, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids, mask).last_hidden_state, built(ids, mask).last_hidden_state)


def test_clip_original_load_equals_transformers_build(tmp_path):
    torch.manual_seed(0)
    built = tiny.build_clip().eval()
    path = tmp_path / "clip.pth"
    torch.save(convert.clip_to_original(built.state_dict()), path)
    loaded = _load(path, pipeline.load_image_encoder)
    assert loaded.config.image_size == 28 and loaded.config.num_attention_heads == 1
    pixels = torch.randn(1, 3, 28, 28, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ours = loaded(pixel_values=pixels, output_hidden_states=True).hidden_states[-2]
        torch.testing.assert_close(ours, built(pixel_values=pixels, output_hidden_states=True).hidden_states[-2])


def test_dit_keys_round_trip_through_diffusers_converter():
    torch.manual_seed(0)
    state = tiny.build_dit(tiny.PRESETS["tiny-i2v"]).state_dict()
    assert set(convert.dit_to_module(convert.dit_to_original(state))) == set(state)
