"""An exported LoRA uses the original Wan names with `diffusion_model.`, converts through
diffusers' Wan LoRA loader into non-empty `transformer.*` keys and reproduces the trained output
(alpha == rank and alpha != rank), and merges by ComfyUI's rules onto the original weights."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import config, load
from diffsynth_wan import FAMILY, convert, plugin
from diffsynth_wan.spec import DEFAULT_LORA_TARGETS, NAME
from safetensors.torch import load_file, save_file

from diffsynth.types import TrainedWeights


def split(weights, context):
    """The files `train` writes for `weights` (the family's split, or the core's with its key format)."""
    return plugin._split_state_dict_hook(family=plugin.spec.name, weights=weights, context=context)

RANK = 4


def dit_inputs(cfg) -> dict:
    g = torch.Generator().manual_seed(0)
    return dict(
        hidden_states=torch.randn(1, cfg.in_channels, 2, 4, 4, generator=g),
        timestep=torch.tensor([500.0]),
        encoder_hidden_states=torch.randn(1, 7, cfg.text_dim, generator=g),
        encoder_hidden_states_image=torch.randn(1, 5, cfg.image_dim, generator=g) if cfg.image_dim else None,
        return_dict=False,
    )


def test_dit_lora_aliases_expand_to_diffusers_names():
    assert FAMILY.expand_lora_targets("q,k,v,o,ffn.0,ffn.2".split(",")) == list(DEFAULT_LORA_TARGETS)


@pytest.mark.parametrize(("variant", "alpha"), [("t2v", 8.0), ("i2v", 4.0)])
def test_lora_loads_in_diffusers_and_comfy(model_base, tmp_path, variant, alpha):
    from diffusers import WanPipeline
    from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model

    base = load(model_base, variant).dit
    kwargs = dit_inputs(base.config)
    targets = list(DEFAULT_LORA_TARGETS) + (["add_k_proj", "add_v_proj"] if variant == "i2v" else [])
    trained = inject_adapter_in_model(LoraConfig(r=RANK, lora_alpha=alpha, target_modules=targets), copy.deepcopy(base))
    torch.manual_seed(1)
    for name, param in trained.named_parameters():
        if "lora_B" in name:
            param.data.normal_(0, 0.1)
    with torch.no_grad():
        base_out, trained_out = base(**kwargs)[0], trained(**kwargs)[0]
    weights = TrainedWeights("lora", {"dit": get_peft_model_state_dict(trained)}, lora_rank=RANK, lora_alpha=alpha)
    (out,) = split(weights, config(variant))
    path = tmp_path / "lora.safetensors"
    save_file(out.tensors, str(path), metadata=out.metadata)

    keys = list(out.tensors)
    assert "diffusion_model.blocks.0.self_attn.q.lora_A.weight" in keys
    assert "diffusion_model.blocks.1.cross_attn.o.lora_B.weight" in keys
    assert "diffusion_model.blocks.0.ffn.2.alpha" in keys
    assert variant != "i2v" or "diffusion_model.blocks.0.cross_attn.k_img.lora_A.weight" in keys

    # diffusers: the Wan converter turns the file into transformer.* keys, and they load
    converted = WanPipeline.lora_state_dict(str(path))
    converted = converted[0] if isinstance(converted, tuple) else converted
    assert converted and all(k.startswith("transformer.") for k in converted)
    pipe = WanPipeline(tokenizer=None, text_encoder=None, vae=None, scheduler=None, transformer=copy.deepcopy(base))
    pipe.load_lora_weights(str(path))
    with torch.no_grad():
        loaded_out = pipe.transformer(**kwargs)[0]
    assert not torch.allclose(loaded_out, base_out, atol=1e-4)
    torch.testing.assert_close(loaded_out, trained_out, atol=1e-5, rtol=1e-5)

    # ComfyUI's rules (comfy/lora.py): `diffusion_model.<name>` -> the original checkpoint's
    # `<name>.weight`, W += (alpha / rank) * B @ A
    state = load_file(str(path))
    original = convert.dit_to_original(copy.deepcopy(base).state_dict())
    modules = {k.removesuffix(".lora_A.weight") for k in state if k.endswith(".lora_A.weight")}
    for m in modules:
        a, b = state[f"{m}.lora_A.weight"], state[f"{m}.lora_B.weight"]
        original[m.removeprefix("diffusion_model.") + ".weight"] += state[f"{m}.alpha"].item() / a.shape[0] * (b @ a)
    merged = copy.deepcopy(base)
    merged.load_state_dict(convert.dit_to_module(original))
    with torch.no_grad():
        torch.testing.assert_close(merged(**kwargs)[0], trained_out, atol=1e-5, rtol=1e-5)


def test_full_training_keeps_module_keys_and_other_families_are_left_alone():
    import torch

    (out,) = split(TrainedWeights("full", {"dit": {"proj_out.weight": torch.ones(2, 2)}}), config())
    assert list(out.tensors) == ["proj_out.weight"] and out.metadata["diffsynth_kind"] == "full"
    assert plugin._split_state_dict_hook(family="qwen-image", weights=TrainedWeights("lora", {"dit": {}}), context=config()) is None


def test_exported_lora_reads_back_through_the_family_hook(model_base, tmp_path):
    """`--lora_checkpoint` path: our original-name Wan file -> diffusers' Wan converter (hook) ->
    layers of the diffusers module whose scaled product equals the trained one."""
    from diffsynth.plugins import load_registry
    from diffsynth.training.family_hooks import FamilyHooks

    dit = load(model_base, "t2v").dit
    target = "blocks.0.attn1.to_q"
    layer = dit.get_submodule(target)
    a, b = torch.randn(RANK, layer.in_features), torch.randn(layer.out_features, RANK)
    (out,) = split(TrainedWeights("lora", {"dit": {f"{target}.lora_A.weight": a, f"{target}.lora_B.weight": b}},
                                  lora_rank=RANK, lora_alpha=8.0), config())
    path = tmp_path / "lora.safetensors"
    save_file(out.tensors, str(path))
    registry = load_registry()
    read = FamilyHooks(registry, registry.get(NAME)).read_lora(str(path), "--lora_checkpoint", dit)
    assert set(read.layers) == {target} and read.rank == RANK
    got_a, got_b = read.layers[target]
    torch.testing.assert_close(read.scale * got_b @ got_a, (8.0 / RANK) * b @ a)
