"""A LoRA trained with peft, exported by the family, loads unchanged in diffusers'
Flux2KleinPipeline and, by ComfyUI's key rules, onto the original checkpoint's weights, with the
same output as the trained model, alpha == or != rank; and it reads back exactly."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import config
from diffsynth_flux2 import FAMILY, original_format, plugin
from diffsynth_flux2.spec import DEFAULT_LORA_TARGETS, ORIGINAL_FILES, KLEIN_4B
from safetensors.torch import load_file, save_file

from diffsynth.errors import UserError
from diffsynth.training.lora import add_lora
from diffsynth.types import TrainedWeights

RANK = 4


def split(weights, context):
    """The files `train` writes for `weights` (the family's split_state_dict hook)."""
    return plugin._split_state_dict_hook(family=plugin.spec.name, weights=weights, context=context)


def dit_inputs(transformer) -> dict:
    """One small call: 2x2 target tokens plus 2 reference tokens (t = 10), 7 text tokens."""
    g = torch.Generator().manual_seed(0)
    c = transformer.config
    img_ids = [[0, r, w, 0] for r in range(2) for w in range(2)] + [[10, 0, 0, 0], [10, 0, 1, 0]]
    return dict(
        hidden_states=torch.randn(1, 6, c.in_channels, generator=g),
        encoder_hidden_states=torch.randn(1, 7, c.joint_attention_dim, generator=g),
        timestep=torch.tensor([0.5]),
        img_ids=torch.tensor(img_ids),
        txt_ids=torch.tensor([[0, 0, 0, i] for i in range(7)]),
        return_dict=False,
    )


@pytest.fixture
def transformer(tiny_dir):
    from diffusers import Flux2Transformer2DModel

    return Flux2Transformer2DModel.from_pretrained(tiny_dir / "transformer")


def trained_lora(base, alpha: float, targets=DEFAULT_LORA_TARGETS):
    from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model

    trained = inject_adapter_in_model(LoraConfig(r=RANK, lora_alpha=alpha, target_modules=list(targets)), copy.deepcopy(base))
    torch.manual_seed(1)
    for name, param in trained.named_parameters():
        if "lora_B" in name:
            param.data.normal_(0, 0.1)  # peft initialises B to zero: make the LoRA do something
    return trained, get_peft_model_state_dict(trained)


@pytest.mark.parametrize("alpha", [8.0, 4.0])
def test_lora_loads_in_diffusers_and_by_comfyui_rules(transformer, tiny_dir, tmp_path, alpha):
    from diffusers import Flux2KleinPipeline

    base = copy.deepcopy(transformer)
    with torch.no_grad():
        base_out = base(**dit_inputs(base))[0]
    trained, peft_keys = trained_lora(base, alpha)
    with torch.no_grad():
        trained_out = trained(**dit_inputs(base))[0]
    assert not torch.allclose(trained_out, base_out, atol=1e-4)

    (out,) = split(TrainedWeights("lora", {"dit": peft_keys}, lora_rank=RANK, lora_alpha=alpha), config())
    path = tmp_path / "lora.safetensors"
    save_file(out.tensors, str(path), metadata=out.metadata)
    assert all(k.startswith("diffusion_model.") and ".lora_" in k for k in out.tensors)

    pipe = Flux2KleinPipeline(scheduler=None, vae=None, text_encoder=None, tokenizer=None, transformer=transformer)
    pipe.load_lora_weights(str(path))  # diffusers, from the file as written
    with torch.no_grad():
        loaded_out = pipe.transformer(**dit_inputs(base))[0]
    torch.testing.assert_close(loaded_out, trained_out, atol=1e-5, rtol=1e-5)

    # ComfyUI's rules (comfy/lora.py model_lora_keys_unet): `diffusion_model.<key>` names the
    # model's own weight `diffusion_model.<key>.weight` (original names, as in the BFL file);
    # without `.alpha` it adds B @ A at scale 1. Merge so into the original file, then load it.
    original = load_file(str(tiny_dir / ORIGINAL_FILES[KLEIN_4B]))
    comfy_keys = {f"diffusion_model.{k.removesuffix('.weight')}": k for k in original}
    state = load_file(str(path))
    modules = {k.removesuffix(".lora_A.weight") for k in state if k.endswith(".lora_A.weight")}
    assert modules <= set(comfy_keys), sorted(modules - set(comfy_keys))[:3]
    for m in modules:
        weight = comfy_keys[m]
        original[weight] = original[weight] + state[f"{m}.lora_B.weight"] @ state[f"{m}.lora_A.weight"]
    merged = copy.deepcopy(base)
    merged.load_state_dict(original_format.transformer_to_diffusers(original))
    with torch.no_grad():
        comfy_out = merged(**dit_inputs(base))[0]
    torch.testing.assert_close(comfy_out, trained_out, atol=1e-5, rtol=1e-5)


def test_exported_lora_reads_back_exactly_through_the_family_hook(transformer, tmp_path):
    """`--lora_checkpoint` path: our file -> normalize_lora_state_dict -> the same layers (the
    fused q/k/v un-fused), rank and scale."""
    from diffsynth.plugins import load_registry
    from diffsynth.training.family_hooks import FamilyHooks

    _, peft_keys = trained_lora(transformer, 8.0)
    (out,) = split(TrainedWeights("lora", {"dit": peft_keys}, lora_rank=RANK, lora_alpha=8.0), config())
    path = tmp_path / "lora.safetensors"
    save_file(out.tensors, str(path), metadata=out.metadata)
    registry = load_registry()
    read = FamilyHooks(registry, registry.get(FAMILY.name)).read_lora(str(path), "--lora_checkpoint", transformer)
    assert read.rank == RANK and read.alpha == RANK  # the scale 8/4 is in B
    assert set(read.layers) == {k.removesuffix(".lora_A.weight") for k in peft_keys if k.endswith(".lora_A.weight")}
    for name, (a, b) in read.layers.items():
        torch.testing.assert_close(a, peft_keys[f"{name}.lora_A.weight"])
        torch.testing.assert_close(b, peft_keys[f"{name}.lora_B.weight"] * 2.0)


def test_a_shared_a_fused_lora_splits_as_diffusers_does():
    """A foreign fused q/k/v LoRA (one A for the three) gives each part the whole A."""
    a, b = torch.randn(4, 32), torch.randn(96, 4)
    out = plugin.normalize_lora_state_dict({"diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight": a,
                     "diffusion_model.double_blocks.0.img_attn.qkv.lora_B.weight": b}, {})  # fmt: skip
    assert torch.equal(out["transformer_blocks.0.attn.to_k.lora_A.weight"], a)
    assert torch.equal(out["transformer_blocks.0.attn.to_k.lora_B.weight"], b[32:64])


def test_original_target_names_expand_to_diffusers_modules(transformer):
    original = "img_attn.qkv,txt_attn.qkv,img_attn.proj,txt_attn.proj,img_mlp.0,img_mlp.2,txt_mlp.0,txt_mlp.2,linear1,linear2"
    assert set(FAMILY.expand_lora_targets(original.split(","))) == set(DEFAULT_LORA_TARGETS)
    # linear2 wraps the single blocks' output only (2 blocks), not the double blocks' to_out.0
    assert add_lora(copy.deepcopy(transformer), "dit", FAMILY.expand_lora_targets(["linear2"]), 4, 4.0) == 2


def test_full_training_keeps_module_keys_and_unknown_lora_modules_are_refused():
    (out,) = split(TrainedWeights("full", {"dit": {"proj_out.weight": torch.ones(2, 2)}}), config())
    assert list(out.tensors) == ["proj_out.weight"] and out.metadata["diffsynth_kind"] == "full"
    with pytest.raises(UserError, match="no original FLUX.2 name for pos_embed.x"):
        split(TrainedWeights("lora", {"dit": {"pos_embed.x.lora_A.weight": torch.ones(1, 1)}}, lora_rank=1), config())
