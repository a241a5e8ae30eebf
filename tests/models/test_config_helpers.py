"""The config helpers plugins share: `init_args` and `CheckpointGroup.required_config`."""

import json

import pytest
import torch
from safetensors.torch import save_file

from diffsynth.errors import UserError
from diffsynth.models.header import read_header
from diffsynth.plugin import init_args
from diffsynth.types import CheckpointGroup


def test_init_args_keeps_what_the_constructor_takes():
    from diffusers import AutoencoderKL

    config = {"_class_name": "AutoencoderKL", "_diffusers_version": "0.30.0", "latent_channels": 8,
              "block_out_channels": [32, 64], "not_an_argument": 1}  # fmt: skip
    assert init_args(AutoencoderKL, config) == {"latent_channels": 8, "block_out_channels": [32, 64]}


def group_in(folder, config=None) -> CheckpointGroup:
    folder.mkdir()
    save_file({"w": torch.zeros(2)}, str(folder / "model.safetensors"))
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    return CheckpointGroup("text_encoder", f"repo:{folder.name}", read_header([folder / "model.safetensors"]))


def test_required_config_reads_the_sibling_config_json(tmp_path):
    assert group_in(tmp_path / "text_encoder", {"hidden_size": 4}).required_config("text encoder") == {"hidden_size": 4}


def test_a_missing_config_json_is_a_one_line_user_error(tmp_path):
    bare = group_in(tmp_path / "bare")
    assert bare.sibling_config() is None
    with pytest.raises(UserError) as caught:
        bare.required_config("Qwen3 text encoder", "text_encoder/")
    assert str(caught.value) == (
        "repo:bare: no config.json next to the Qwen3 text encoder; "
        "use the repo's text_encoder/ folder (safetensors + config.json)"
    )
    with pytest.raises(UserError, match=r"the autoencoder; use the repo's folder \(safetensors"):
        bare.required_config("autoencoder")
