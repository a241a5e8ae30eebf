"""`models init flux2 --preset tiny` writes the real FLUX.2-klein-4B layout, the default sources
find it, and BFL's single transformer file loads to the very weights of the diffusers folder, by
a mapping that agrees with diffusers' own single-file converter."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import model_files
from diffsynth_flux2 import original_format, plugin
from diffsynth_flux2.pipeline import dit_config, dit_state, load_dit
from diffsynth_flux2.spec import KLEIN_4B, KLEIN_BASE_4B, ORIGINAL_FILES

from diffsynth.errors import UserError

BFL_FILE = f"{KLEIN_4B}:{ORIGINAL_FILES[KLEIN_4B]}"


def test_tiny_preset_has_the_real_repo_files(tiny_dir):
    for name in (ORIGINAL_FILES[KLEIN_4B], "model_index.json", "scheduler/scheduler_config.json", "vae/config.json",
                 "vae/diffusion_pytorch_model.safetensors", "transformer/config.json", "text_encoder/config.json",
                 "tokenizer/tokenizer_config.json"):  # fmt: skip
        assert (tiny_dir / name).is_file(), name
    assert len(list((tiny_dir / "text_encoder").glob("model-*-of-*.safetensors"))) >= 2  # sharded, like Qwen3-4B
    assert len(list((tiny_dir / "transformer").glob("diffusion_pytorch_model-*.safetensors"))) >= 2
    index = json.loads((tiny_dir / "model_index.json").read_text())
    assert index["_class_name"] == "Flux2KleinPipeline" and index["is_distilled"] is True


def test_default_sources_identify_every_component_and_base_shares_the_encoders(model_base):
    groups = model_files(model_base).components
    assert {name: g.files[0].parent.name for name, g in groups.items()} == {
        "dit": "transformer", "text_encoder": "text_encoder", "vae": "vae"
    }  # fmt: skip
    base = model_files(model_base, "klein-base-4b").components
    assert KLEIN_BASE_4B in str(base["dit"].files[0]) and KLEIN_4B + "/" in str(base["vae"].files[0])
    assert json.loads((model_base / KLEIN_BASE_4B / "model_index.json").read_text())["is_distilled"] is False


def test_bfl_single_file_and_diffusers_folder_give_identical_weights(model_base):
    original = model_files(model_base, sources=(BFL_FILE,)).components["dit"]
    folder = model_files(model_base).components["dit"]
    a, b = load_dit(original, torch.float32), load_dit(folder, torch.float32)
    assert {k: v for k, v in a.config.items() if not k.startswith("_")} == {k: v for k, v in b.config.items() if not k.startswith("_")}
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert dit_config(original, dit_state(original))["axes_dims_rope"] == [4, 4, 4, 4]


def test_original_mapping_matches_diffusers_single_file_converter(tiny_dir):
    from diffusers.loaders.single_file_utils import convert_flux2_transformer_checkpoint_to_diffusers
    from safetensors.torch import load_file

    state = load_file(str(tiny_dir / ORIGINAL_FILES[KLEIN_4B]))
    theirs = convert_flux2_transformer_checkpoint_to_diffusers(dict(state))
    ours = original_format.transformer_to_diffusers(dict(state))
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert original_format.transformer_to_original(ours).keys() == state.keys()


def test_pipeline_knows_distilled_from_base(model_base):
    from conftest import config

    assert plugin.load_pipeline(model_files(model_base), config()).is_distilled
    assert not plugin.load_pipeline(model_files(model_base, "klein-base-4b"), config()).is_distilled


def test_incomplete_original_checkpoint_is_a_user_error():
    with pytest.raises(UserError, match="lacks"):
        original_format.transformer_to_diffusers({"img_in.weight": torch.zeros(4, 4), "single_stream_modulation.lin.weight": torch.zeros(1)})
