"""A LoRA trained with peft, exported by split_state_dict, loads unchanged in diffusers (and,
by ComfyUI's rules, in ComfyUI) with the same output, for alpha == rank and alpha != rank."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import config
from diffsynth_qwen_image import plugin
from diffsynth_qwen_image.spec import DEFAULT_LORA_TARGETS
from safetensors.torch import load_file, save_file

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
    from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model

    base = copy.deepcopy(pipe.transformer)  # pristine, for peft and for the ComfyUI-style merge
    with torch.no_grad():
        base_out = base(**dit_inputs())[0]
    trained = inject_adapter_in_model(
        LoraConfig(r=RANK, lora_alpha=alpha, target_modules=list(DEFAULT_LORA_TARGETS)), copy.deepcopy(base)
    )
    torch.manual_seed(1)
    for name, param in trained.named_parameters():
        if "lora_B" in name:
            param.data.normal_(0, 0.1)  # peft initialises B to zero: make the LoRA do something
    with torch.no_grad():
        trained_out = trained(**dit_inputs())[0]
    peft_keys = get_peft_model_state_dict(trained)
    assert all(".default." not in k for k in peft_keys)

    weights = TrainedWeights("lora", {"dit": peft_keys}, lora_rank=RANK, lora_alpha=alpha)
    (out,) = split(weights, config())
    path = tmp_path / "lora.safetensors"
    save_file(out.tensors, str(path), metadata=out.metadata)

    # diffusers, from the file as written
    pipe.load_lora_weights(str(path), adapter_name="exported")
    try:
        with torch.no_grad():
            loaded_out = pipe.transformer(**dit_inputs())[0]
    finally:
        pipe.delete_adapters("exported")
    assert not torch.allclose(trained_out, base_out, atol=1e-4)
    torch.testing.assert_close(loaded_out, trained_out, atol=1e-5, rtol=1e-5)

    # ComfyUI's rules (comfy/lora.py): `diffusion_model.<name>` -> weight `<name>.weight`,
    # W += (alpha / rank) * B @ A with alpha read from `<name>.alpha`
    state = load_file(str(path))
    merged = copy.deepcopy(base)
    params = dict(merged.named_parameters())
    modules = {k.removesuffix(".lora_A.weight") for k in state if k.endswith(".lora_A.weight")}
    assert len(modules) == len(peft_keys) // 2
    with torch.no_grad():
        for m in modules:
            a, b = state[f"{m}.lora_A.weight"], state[f"{m}.lora_B.weight"]
            scale = state[f"{m}.alpha"].item() / a.shape[0]
            params[m.removeprefix("diffusion_model.") + ".weight"] += scale * (b @ a)
        comfy_out = merged(**dit_inputs())[0]
    torch.testing.assert_close(comfy_out, trained_out, atol=1e-5, rtol=1e-5)


def test_full_training_keeps_module_keys_and_other_families_are_left_alone():
    import torch

    (out,) = split(TrainedWeights("full", {"dit": {"proj_out.weight": torch.ones(2, 2)}}), config())
    assert list(out.tensors) == ["proj_out.weight"] and out.metadata["diffsynth_kind"] == "full"
    assert plugin._split_state_dict_hook(family="flux", weights=TrainedWeights("lora", {"dit": {}}), context=config()) is None
