"""Without `--variant`, the tokenizer/processor folders follow the repos a DiffSynth-Studio
command names (its commands name repos, not variants)."""

import pytest

from diffsynth.config import TrainConfig
from diffsynth.models.resolve import folders_variant
from diffsynth.plugins import load_registry


@pytest.mark.parametrize("family, sources, extra, expected", [
    ("flux2", "black-forest-labs/FLUX.2-dev:text_encoder/*.safetensors,black-forest-labs/FLUX.2-dev:transformer/*.safetensors", None, "dev"),
    ("flux2", "black-forest-labs/FLUX.2-klein-4B:transformer/*.safetensors", None, "klein-4b"),
    ("qwen-image", "Qwen/Qwen-Image-Edit-2509:transformer/*.safetensors,Qwen/Qwen-Image:text_encoder/*.safetensors", "edit_image", "edit-2509"),
    ("qwen-image", "Qwen/Qwen-Image-Edit:transformer/*.safetensors,Qwen/Qwen-Image:text_encoder/*.safetensors", "edit_image", "edit"),
    ("qwen-image", "Qwen/Qwen-Image:transformer/*.safetensors,Qwen/Qwen-Image:text_encoder/*.safetensors", None, "qwen-image"),
])  # fmt: skip
def test_folders_follow_the_named_repos(family, sources, extra, expected):
    config = TrainConfig(family=family, model_id_with_origin_paths=sources, extra_inputs=extra, lora_base_model="dit")
    assert folders_variant(load_registry().get(family), config).name == expected


def test_an_explicit_variant_wins():
    config = TrainConfig(family="flux2", variant="klein-9b", model_id_with_origin_paths="black-forest-labs/FLUX.2-dev:transformer/*.safetensors")
    assert folders_variant(load_registry().get("flux2"), config).name == "klein-9b"
