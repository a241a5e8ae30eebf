"""A LoRA trained with peft, exported by split_state_dict, loads unchanged in diffusers (and,
by ComfyUI's rules, in ComfyUI) with the same output, for alpha == rank and alpha != rank."""

from __future__ import annotations

import pytest
import torch
from conftest import config
from diffsynth_qwen_image import plugin
from diffsynth_qwen_image.spec import DEFAULT_LORA_TARGETS

from diffsynth.testing.lora_export import check_peft_lora_export
from diffsynth.types import TrainedWeights


def split(weights, context):
    """The files `train` writes for `weights` (the family's split, or the core's with its key format)."""
    return plugin._split_state_dict_hook(family=plugin.spec.name, weights=weights, context=context)

RANK = 4


def dit_inputs():
    g = torch.Generator().manual_seed(0)
    return dict(
        hidden_states=torch.randn(1, 4, 64, generator=g),
        encoder_hidden_states=torch.randn(1, 7, 32, generator=g),
        encoder_hidden_states_mask=None,
        timestep=torch.tensor([0.5]),
        img_shapes=[[(1, 2, 2)]],
        return_dict=False,
    )


@pytest.fixture  # fresh per test: load_lora_weights leaves peft wrappers in the transformer
def pipe(tiny_dir):
    from diffusers import QwenImagePipeline

    return QwenImagePipeline.from_pretrained(tiny_dir)


@pytest.mark.parametrize("alpha", [8.0, 4.0])
def test_lora_loads_in_diffusers_and_comfy(pipe, tmp_path, alpha):
    # ComfyUI's rules (comfy/lora.py): `diffusion_model.<name>` -> weight `<name>.weight`
    check_peft_lora_export(
        pipe, dit_inputs, DEFAULT_LORA_TARGETS, lambda weights: split(weights, config()), "diffusion_model.", tmp_path, RANK, alpha,
        adapter_name="exported",
    )


def test_full_training_keeps_module_keys_and_other_families_are_left_alone():
    import torch

    (out,) = split(TrainedWeights("full", {"dit": {"proj_out.weight": torch.ones(2, 2)}}), config())
    assert list(out.tensors) == ["proj_out.weight"] and out.metadata["diffsynth_kind"] == "full"
    assert plugin._split_state_dict_hook(family="flux", weights=TrainedWeights("lora", {"dit": {}}), context=config()) is None
