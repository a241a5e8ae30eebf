"""`models init flux --preset tiny` writes the real FLUX.1-dev layout, the default source patterns
find it, and BFL single files and diffusers folders load to the very same weights."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import model_files
from diffsynth_flux import original_format
from diffsynth_flux.pipeline import dit_state, load_dit, load_vae, vae_state
from diffsynth_flux.spec import DEV_REPO

from diffsynth.errors import UserError

DIT_SHARDS = f"{DEV_REPO}:transformer/diffusion_pytorch_model*.safetensors"
VAE_FOLDER = f"{DEV_REPO}:vae/diffusion_pytorch_model.safetensors"
FAMILY_TEXT_SOURCES = (f"{DEV_REPO}:text_encoder/model.safetensors", f"{DEV_REPO}:text_encoder_2/")


def test_tiny_preset_has_the_real_repo_files_and_loads_in_diffusers(tiny_dir):
    from diffusers import FluxPipeline

    for name in ("flux1-dev.safetensors", "ae.safetensors", "model_index.json", "scheduler/scheduler_config.json",
                 "text_encoder/model.safetensors", "tokenizer/tokenizer_config.json", "tokenizer_2/tokenizer_config.json",
                 "vae/config.json", "transformer/config.json"):  # fmt: skip
        assert (tiny_dir / name).is_file(), name
    assert len(list((tiny_dir / "text_encoder_2").glob("model-*.safetensors"))) >= 2  # sharded, like T5-XXL
    assert len(list((tiny_dir / "transformer").glob("diffusion_pytorch_model-*.safetensors"))) >= 2
    pipe = FluxPipeline.from_pretrained(tiny_dir)
    assert pipe.transformer.config.guidance_embeds and pipe.vae.config.latent_channels == 16


def test_seed_patterns_identify_every_component(model_base):
    groups = model_files(model_base).components
    assert {g.component: g.files[0].name for g in groups.values()} == {
        "dit": "flux1-dev.safetensors",
        "text_encoder": "model.safetensors",
        "text_encoder_2": "model-00001-of-00002.safetensors",
        "vae": "ae.safetensors",
    }


def test_bfl_single_files_and_diffusers_folders_give_identical_weights(model_base):
    bfl = model_files(model_base).components
    diffusers = model_files(model_base, sources=(DIT_SHARDS, VAE_FOLDER) + FAMILY_TEXT_SOURCES).components
    for load in (load_dit, load_vae):
        name = "dit" if load is load_dit else "vae"
        a, b = load(bfl[name], torch.float32), load(diffusers[name], torch.float32)
        assert _plain(a.config) == _plain(b.config)
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        assert max((sa[k] - sb[k]).abs().max().item() for k in sa) == 0


def _plain(config) -> dict:
    """A module config as JSON data (tuples vs lists), without diffusers' private bookkeeping."""
    return {k: v for k, v in json.loads(json.dumps(dict(config))).items() if not k.startswith("_")}



def _row_ids(rows: int, cols: int) -> torch.Tensor:
    """A (rows, cols) tensor whose every row holds its index: free to allocate (expanded)."""
    return torch.arange(rows, dtype=torch.int16)[:, None].expand(rows, cols)


def test_bfl_mapping_matches_diffusers_converter_at_real_width():
    """At FLUX.1's real width (3072, where diffusers' converter is right by construction) our
    shape-agnostic mapping puts every row where diffusers does; one block of each kind."""
    from diffusers.loaders.single_file_utils import (
        convert_flux_transformer_checkpoint_to_diffusers,
    )

    width, mlp = 3072, 4 * 3072
    shapes = {
        "img_in": (width, 64), "txt_in": (width, 4096), "time_in.in_layer": (width, 256), "time_in.out_layer": (width, width),
        "vector_in.in_layer": (width, 768), "vector_in.out_layer": (width, width), "guidance_in.in_layer": (width, 256),
        "guidance_in.out_layer": (width, width), "final_layer.linear": (64, width),
        "final_layer.adaLN_modulation.1": (2 * width, width), "double_blocks.0.img_mod.lin": (6 * width, width),
        "double_blocks.0.txt_mod.lin": (6 * width, width), "double_blocks.0.img_attn.qkv": (3 * width, width),
        "double_blocks.0.txt_attn.qkv": (3 * width, width), "double_blocks.0.img_attn.proj": (width, width),
        "double_blocks.0.txt_attn.proj": (width, width), "double_blocks.0.img_mlp.0": (mlp, width),
        "double_blocks.0.img_mlp.2": (width, mlp), "double_blocks.0.txt_mlp.0": (mlp, width),
        "double_blocks.0.txt_mlp.2": (width, mlp), "single_blocks.0.modulation.lin": (3 * width, width),
        "single_blocks.0.linear1": (3 * width + mlp, width), "single_blocks.0.linear2": (width, width + mlp),
    }  # fmt: skip
    state = {}
    for name, (rows, cols) in shapes.items():
        state[f"{name}.weight"] = _row_ids(rows, cols)
        state[f"{name}.bias"] = torch.arange(rows, dtype=torch.int16)
    for prefix in ("double_blocks.0.img_attn.norm", "double_blocks.0.txt_attn.norm", "single_blocks.0.norm"):
        for norm in ("query_norm", "key_norm"):
            state[f"{prefix}.{norm}.scale"] = torch.arange(128, dtype=torch.int16)
    ours = original_format.transformer_to_diffusers(dict(state))
    theirs = convert_flux_transformer_checkpoint_to_diffusers(dict(state))
    assert ours.keys() == theirs.keys()
    for key in theirs:
        assert ours[key].shape == theirs[key].shape and torch.equal(ours[key][:, :1] if ours[key].dim() == 2 else ours[key],
                                                                    theirs[key][:, :1] if theirs[key].dim() == 2 else theirs[key]), key


def test_vae_mapping_matches_diffusers_ldm_converter(tiny_dir):
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint
    from safetensors.torch import load_file

    original = load_file(str(tiny_dir / "ae.safetensors"))
    config = dict(AutoencoderKL.load_config(tiny_dir / "vae"))
    theirs = convert_ldm_vae_checkpoint(dict(original), config)
    ours = original_format.vae_to_diffusers(original)
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k].reshape(ours[k].shape)) for k in ours)
    assert original_format.vae_to_original(ours).keys() == original.keys()


def test_dit_config_is_inferred_from_bfl_keys(model_base):
    group = model_files(model_base).components["dit"]
    state = dit_state(group, None)
    from diffsynth_flux.configs import dit_config

    cfg = dit_config(group, state)
    assert cfg["guidance_embeds"] and cfg["num_layers"] == 2 and cfg["num_single_layers"] == 2
    assert cfg["num_attention_heads"] * cfg["attention_head_dim"] == 64 and cfg["axes_dims_rope"] == [4, 6, 6]
    assert vae_state(model_files(model_base).components["vae"], None)["encoder.conv_in.weight"].dim() == 4


def test_incomplete_bfl_checkpoint_is_a_user_error():
    with pytest.raises(UserError, match="lacks"):
        original_format.transformer_to_diffusers({"img_in.weight": torch.zeros(4, 4), "double_blocks.0.x": torch.zeros(1)})


def test_a_flux2_bfl_file_is_not_a_flux1_dit(tiny_dir):
    """FLUX.2's BFL files share FLUX.1's block names; without a CLIP they have no `vector_in`
    (and they have FLUX.2's shared `single_stream_modulation`)."""
    from dataclasses import replace

    from diffsynth_flux.spec import is_dit

    from diffsynth.models.header import read_header

    flux1 = read_header([tiny_dir / "flux1-dev.safetensors"])
    tensors = {k: v for k, v in flux1.tensors.items() if not k.startswith("vector_in.")}
    tensors["single_stream_modulation.lin.weight"] = flux1.tensors["img_in.weight"]
    assert is_dit(flux1) and not is_dit(replace(flux1, tensors=tensors))
