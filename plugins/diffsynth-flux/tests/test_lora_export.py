"""A LoRA trained with peft, exported by split_state_dict, loads unchanged in diffusers'
FluxPipeline (and, by ComfyUI's rules, in ComfyUI) with the same output, alpha == or != rank."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import config
from diffsynth_flux import FAMILY, plugin
from diffsynth_flux.spec import DEFAULT_LORA_TARGETS
from safetensors.torch import save_file

from diffsynth.errors import UserError
from diffsynth.testing.lora_export import check_peft_lora_export
from diffsynth.training.lora import add_lora
from diffsynth.types import TrainedWeights


def split(weights, context):
    """The files `train` writes for `weights` (the family's split, or the core's with its key format)."""
    return plugin._split_state_dict_hook(family=plugin.spec.name, weights=weights, context=context)

RANK = 4


def dit_inputs() -> dict:
    g = torch.Generator().manual_seed(0)
    return dict(
        hidden_states=torch.randn(1, 4, 64, generator=g),
        encoder_hidden_states=torch.randn(1, 7, 32, generator=g),
        pooled_projections=torch.randn(1, 32, generator=g),
        timestep=torch.tensor([0.5]),
        guidance=torch.tensor([1.0]),
        txt_ids=torch.zeros(7, 3),
        img_ids=torch.tensor([[0, r, c] for r in range(2) for c in range(2)], dtype=torch.float32),
        return_dict=False,
    )


@pytest.fixture  # fresh per test: load_lora_weights leaves peft wrappers in the transformer
def pipe(tiny_dir):
    from diffusers import FluxPipeline

    return FluxPipeline.from_pretrained(tiny_dir)


@pytest.mark.parametrize("alpha", [8.0, 4.0])
def test_lora_loads_in_diffusers_and_comfy(pipe, tmp_path, alpha):
    # ComfyUI's rules (comfy/lora.py + utils.flux_to_diffusers): `transformer.<name>` -> that
    # module's rows of the fused BFL weight, W += (alpha / rank) * B @ A with `<name>.alpha`
    check_peft_lora_export(
        pipe, dit_inputs, DEFAULT_LORA_TARGETS, lambda weights: split(weights, config()), "transformer.", tmp_path, RANK, alpha
    )


def test_seed_and_bfl_target_names_expand_to_diffusers_modules(pipe):
    seed = "a_to_qkv,b_to_qkv,ff_a.0,ff_a.2,ff_b.0,ff_b.2,a_to_out,b_to_out,proj_out,norm.linear,norm1_a.linear,norm1_b.linear,to_qkv_mlp"
    assert set(FAMILY.expand_lora_targets(seed.split(","))) == set(DEFAULT_LORA_TARGETS)
    bfl = "img_attn.qkv,txt_attn.qkv,img_attn.proj,txt_attn.proj,img_mlp.0,img_mlp.2,txt_mlp.0,txt_mlp.2,img_mod.lin,txt_mod.lin,linear1,linear2,modulation.lin"
    assert set(FAMILY.expand_lora_targets(bfl.split(","))) == set(DEFAULT_LORA_TARGETS)
    wrapped = add_lora(copy.deepcopy(pipe.transformer), "dit", FAMILY.expand_lora_targets(["linear1"]), 4, 4.0)
    # suffix matching: the single blocks' to_q/k/v + proj_mlp (2 x 4), and the double blocks'
    # attn.to_q/k/v too (2 x 3), which diffusers names alike (documented in docs/flux.md)
    assert wrapped == 2 * 4 + 2 * 3


def test_targets_matching_nothing_list_the_module_names(pipe):
    with pytest.raises(UserError, match=r"matches no module of dit; Linear layers it has: .*add_q_proj"):
        add_lora(copy.deepcopy(pipe.transformer), "dit", FAMILY.expand_lora_targets(["to_qkv"]), 4, 4.0)


def test_full_training_keeps_module_keys_and_other_families_are_left_alone():
    import torch

    (out,) = split(TrainedWeights("full", {"dit": {"proj_out.weight": torch.ones(2, 2)}}), config())
    assert list(out.tensors) == ["proj_out.weight"] and out.metadata["diffsynth_kind"] == "full"
    assert plugin._split_state_dict_hook(family="qwen-image", weights=TrainedWeights("lora", {"dit": {}}), context=config()) is None


def test_exported_lora_reads_back_through_the_family_hook(tmp_path):
    """`--lora_checkpoint` path: our FLUX file -> diffusers' converter (hook) -> same layers, alpha."""
    from diffsynth_flux.spec import NAME
    from diffsynth_flux.tiny import build_dit

    from diffsynth.plugins import load_registry
    from diffsynth.training.family_hooks import FamilyHooks

    registry = load_registry()
    dit = build_dit()
    layers = {"transformer_blocks.0.attn.to_q": (torch.randn(RANK, dit.transformer_blocks[0].attn.to_q.in_features),
                                                 torch.randn(dit.transformer_blocks[0].attn.to_q.out_features, RANK))}
    peft_keys = {f"{m}.lora_A.weight": a for m, (a, _) in layers.items()} | {f"{m}.lora_B.weight": b for m, (_, b) in layers.items()}
    (out,) = split(TrainedWeights("lora", {"dit": peft_keys}, lora_rank=RANK, lora_alpha=8.0), config())
    path = tmp_path / "lora.safetensors"
    save_file(out.tensors, str(path))
    read = FamilyHooks(registry, registry.get(NAME)).read_lora(str(path), "--lora_checkpoint", dit)
    assert read.rank == RANK and read.alpha == 8.0 and set(read.layers) == set(layers)
    a, b = read.layers["transformer_blocks.0.attn.to_q"]
    assert a.equal(layers["transformer_blocks.0.attn.to_q"][0]) and b.equal(layers["transformer_blocks.0.attn.to_q"][1])
