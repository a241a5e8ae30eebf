"""`--lora_type lokr|loha|dora`: each learns the toy's two-class problem, and its file loads
where docs/cli.md says: DoRA through diffusers' own `load_lora_adapter` (peft DoRA), LoKr and LoHa
with the arithmetic of ComfyUI's weight adapters (comfy/weight_adapter/lokr.py, loha.py), which
read LyCORIS names (`lokr_w1`, `hada_w1_a`, ... + `.alpha`) and scale by alpha / rank only for a
factor given as a product."""

from __future__ import annotations

import os
from unittest.mock import patch

import pytest
import torch
from safetensors.torch import load_file

from diffsynth.config import TrainConfig
from diffsynth.models.sources import MODEL_BASE_ENV, SKIP_DOWNLOAD_ENV
from diffsynth.plugins import load_registry
from diffsynth.testing.learns import train_and_sample, write_two_class_dataset
from tests.training.recipe_runs import train

KINDS = ["lokr", "loha", "dora"]


@pytest.mark.parametrize("kind", KINDS)
def test_adapter_kind_learns_red_vs_blue(toy_models, tmp_path, kind):
    with patch.dict(os.environ, {MODEL_BASE_ENV: str(toy_models), SKIP_DOWNLOAD_ENV: "True"}):
        config = TrainConfig(
            family="toy", dataset_base_path=str(write_two_class_dataset(tmp_path / "data")), lora_base_model="dit",
            lora_type=kind, lora_rank=4, learning_rate=1e-2, dataset_repeat=40, output_path=str(tmp_path / "out"), seed=1,
        )
        result = train_and_sample(load_registry(), config)
    assert result.fraction >= 0.9, f"{kind}: {result.correct}/{result.total} samples nearer their own class"
    assert (tmp_path / "out" / "epoch-0.safetensors").is_file()


def _trained_layers(trainer):
    """module name -> (base weight, merged weight) of every adapted Linear of the trained dit."""
    dit = trainer.pipeline.modules["dit"]
    out = {}
    for name, module in dit.named_modules():
        if hasattr(module, "get_delta_weight") and hasattr(module, "base_layer"):
            base = module.base_layer.weight.detach().clone()
            if hasattr(module, "lora_magnitude_vector") and module.use_dora.get("default"):
                module.merge(adapter_names=["default"])
                merged = module.base_layer.weight.detach().clone()
                module.unmerge()
            else:
                merged = base + module.get_delta_weight("default").detach()
            out[name] = (base, merged)
    return out


def comfy_lokr_delta(sd: dict, stem: str) -> torch.Tensor:
    """ComfyUI LoKrAdapter.calculate_weight's diff (strength 1)."""
    g = lambda k: sd.get(f"{stem}.{k}")  # noqa: E731
    dim = None
    w1 = g("lokr_w1")
    if w1 is None:
        dim = g("lokr_w1_b").shape[0]
        w1 = g("lokr_w1_a") @ g("lokr_w1_b")
    w2 = g("lokr_w2")
    if w2 is None:
        dim = g("lokr_w2_b").shape[0]
        w2 = g("lokr_w2_a") @ g("lokr_w2_b")
    alpha = float(g("alpha")) / dim if g("alpha") is not None and dim is not None else 1.0
    return torch.kron(w1, w2) * alpha


def comfy_loha_delta(sd: dict, stem: str) -> torch.Tensor:
    """ComfyUI LoHaAdapter.calculate_weight's diff (strength 1)."""
    g = lambda k: sd[f"{stem}.{k}"]  # noqa: E731
    dim = g("hada_w1_b").shape[0]
    alpha = float(g("alpha")) / dim
    return (g("hada_w1_a") @ g("hada_w1_b")) * (g("hada_w2_a") @ g("hada_w2_b")) * alpha


@pytest.mark.parametrize("kind,factor", [("lokr", -1), ("lokr", 4), ("loha", -1)])
def test_lokr_and_loha_files_give_comfyuis_delta(toy_models, tmp_path, kind, factor):
    trainer = train(toy_models, tmp_path, lora_type=kind, lokr_factor=factor, lora_rank=2, lora_alpha=3.0, max_steps=6)
    sd = load_file(str(tmp_path / "epoch-0.safetensors"))
    layers = _trained_layers(trainer)
    assert layers and all(k.startswith("diffusion_model.") for k in sd)
    model_keys = {k.removesuffix(".weight") for k in load_file(str(toy_models / "toy/Toy/dit/model.safetensors"))}
    delta = comfy_lokr_delta if kind == "lokr" else comfy_loha_delta
    for name, (base, merged) in layers.items():
        stem = f"diffusion_model.{name}"
        assert name in model_keys  # ComfyUI maps diffusion_model.<weight name> onto the model's weight
        assert torch.allclose(base + delta(sd, stem).reshape(base.shape), merged, atol=1e-6), name
        assert (merged - base).abs().max() > 0  # it trained
    assert "not diffusers" in (tmp_path / "README.md").read_text()


def test_dora_file_loads_with_diffusers_load_lora_adapter(toy_models, tmp_path):
    from diffusers import ModelMixin
    from diffusers.loaders.peft import PeftAdapterMixin

    import toy_family

    trainer = train(toy_models, tmp_path, lora_type="dora", lora_rank=2, lora_alpha=4.0, max_steps=6)
    sd = load_file(str(tmp_path / "epoch-0.safetensors"))
    assert any(k.endswith(".lora_magnitude_vector") for k in sd)

    class DiffusersToy(ModelMixin, PeftAdapterMixin):
        def __init__(self) -> None:
            super().__init__()
            self.net = toy_family._modules()()

        def forward(self, *args):
            return self.net(*args)

    fresh = DiffusersToy()
    base = load_file(str(toy_models / "toy/Toy/dit/model.safetensors"))
    fresh.net.load_state_dict(base)
    # what diffusers' lora_state_dict does with `.alpha` keys: network alphas by module (the test
    # model nests the toy denoiser as `net`)
    alphas = {k.removesuffix(".alpha").replace("diffusion_model.", "diffusion_model.net.", 1): float(v)
              for k, v in sd.items() if k.endswith(".alpha")}
    tensors = {k.replace("diffusion_model.", "diffusion_model.net.", 1): v for k, v in sd.items() if not k.endswith(".alpha")}
    fresh.load_lora_adapter(tensors, prefix="diffusion_model", network_alphas=alphas, adapter_name="file")
    assert fresh.peft_config["file"].use_dora and fresh.peft_config["file"].lora_alpha == 4.0
    torch.manual_seed(0)
    tokens, sigmas, text = torch.randn(1, 16, 3), torch.rand(1), torch.randint(0, 255, (1, 5))
    trained = trainer.pipeline.modules["dit"].eval()
    with torch.no_grad():
        assert torch.allclose(fresh(tokens, sigmas, text), trained(tokens, sigmas, text), atol=1e-5)
    assert "not ComfyUI" in (tmp_path / "README.md").read_text()


def test_plain_lora_export_is_unchanged(toy_models, tmp_path):
    train(toy_models, tmp_path, max_steps=2)
    sd = load_file(str(tmp_path / "epoch-0.safetensors"))
    suffixes = {k.rsplit(".", 2)[-2] + "." + k.rsplit(".", 1)[-1] if not k.endswith(".alpha") else "alpha" for k in sd}
    assert suffixes == {"lora_A.weight", "lora_B.weight", "alpha"}


def test_other_kinds_refuse_continuing_a_lora_file(tmp_path):
    from tests.conftest import EXAMPLE_DATA, run_main

    (tmp_path / "x.safetensors").write_bytes(b"")
    result = run_main("train", "toy", "--dataset_base_path", str(EXAMPLE_DATA), "--lora_base_model", "dit",
                     "--lora_type", "lokr", "--lora_checkpoint", str(tmp_path / "x.safetensors"), "--output_path", str(tmp_path / "o"))
    assert result.returncode == 2 and "--lora_checkpoint: continuing a LoRA file works for --lora_type lora only" in result.stderr
    bad = run_main("train", "toy", "--dataset_base_path", str(EXAMPLE_DATA), "--lora_base_model", "dit", "--lora_type", "lycoris",
                  "--output_path", str(tmp_path / "o"))
    assert bad.returncode == 2 and bad.stderr == "error: --lora_type: expected one of lora, lokr, loha, dora, got 'lycoris'\n"
