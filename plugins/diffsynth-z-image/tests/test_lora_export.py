"""The LoRA file `train` writes for Z-Image (the core's `diffusion_model.<module>` + `.alpha`
format) is one ComfyUI reads: every module name is a key of ComfyUI's Z-Image map
(comfy/utils.py `z_image_to_diffusers`, used by comfy/lora.py for Lumina2-type models with the
`diffusion_model.` prefix), and merging it by ComfyUI's rule (W += alpha / rank * B @ A, q/k/v as
slices of the fused qkv weight, which is the same sum) gives the trained output, for alpha != rank."""

from __future__ import annotations

import copy

import torch
from diffsynth_z_image import plugin
from diffsynth_z_image.spec import BASE_REPO, DEFAULT_LORA_TARGETS

from diffsynth.config import TrainConfig
from diffsynth.types import RunContext, TrainedWeights

RANK, ALPHA = 4, 8.0


def comfy_z_image_lora_modules(n_layers: int, n_refiner_layers: int) -> set[str]:
    """The diffusers module names ComfyUI's z_image_to_diffusers maps (its `.weight` keys)."""
    block = ["attention.to_q", "attention.to_k", "attention.to_v", "attention.to_out.0",
             "feed_forward.w1", "feed_forward.w2", "feed_forward.w3", "adaLN_modulation.0"]  # fmt: skip
    prefixes = [f"layers.{i}" for i in range(n_layers)]
    prefixes += [f"{name}.{i}" for name in ("context_refiner", "noise_refiner") for i in range(n_refiner_layers)]
    top = ["all_final_layer.2-1.linear", "all_final_layer.2-1.adaLN_modulation.1", "all_x_embedder.2-1",
           "cap_embedder.1", "t_embedder.mlp.0", "t_embedder.mlp.2"]  # fmt: skip
    return {f"{p}.{b}" for p in prefixes for b in block} | set(top)


def test_exported_lora_is_comfyui_z_image_format(model_base):
    from diffusers import ZImageTransformer2DModel
    from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model

    base = ZImageTransformer2DModel.from_pretrained(model_base / BASE_REPO / "transformer")
    g = torch.Generator().manual_seed(0)
    call = dict(x=[torch.randn(16, 1, 4, 4, generator=g)], t=torch.tensor([0.4]), cap_feats=[torch.randn(6, 32, generator=g)], return_dict=False)
    trained = inject_adapter_in_model(LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=list(DEFAULT_LORA_TARGETS)), copy.deepcopy(base))
    torch.manual_seed(1)
    for name, param in trained.named_parameters():
        if "lora_B" in name:
            param.data.normal_(0, 0.1)
    with torch.no_grad():
        base_out, trained_out = base(**call)[0][0], trained(**call)[0][0]
    context = RunContext.for_run(TrainConfig(dtype="fp32", family="z-image"))
    weights = TrainedWeights("lora", {"dit": get_peft_model_state_dict(trained)}, lora_rank=RANK, lora_alpha=ALPHA)
    (out,) = plugin._split_state_dict_hook(family="z-image", weights=weights, context=context)

    state = out.tensors
    modules = {k.removesuffix(".lora_A.weight") for k in state if k.endswith(".lora_A.weight")}
    cfg = base.config
    comfy = {f"diffusion_model.{m}" for m in comfy_z_image_lora_modules(cfg.n_layers, cfg.n_refiner_layers)}
    assert modules and modules <= comfy, sorted(modules - comfy)
    merged = copy.deepcopy(base)
    params = dict(merged.named_parameters())
    with torch.no_grad():
        for m in modules:
            a, b = state[f"{m}.lora_A.weight"], state[f"{m}.lora_B.weight"]
            params[m.removeprefix("diffusion_model.") + ".weight"] += state[f"{m}.alpha"].item() / a.shape[0] * (b @ a)
        comfy_out = merged(**call)[0][0]
    assert not torch.allclose(trained_out, base_out, atol=1e-4)
    torch.testing.assert_close(comfy_out, trained_out, atol=1e-5, rtol=1e-5)
