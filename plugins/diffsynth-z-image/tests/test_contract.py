"""The core's family contract, run against the tiny Z-Image and Z-Image-Turbo presets, with the
exported LoRA loaded through diffusers' own `ZImagePipeline.load_lora_weights`."""

from __future__ import annotations

import torch

from diffsynth.testing.contract import FamilyContract


def dit_inputs(in_channels: int, text_dim: int) -> dict:
    """One ZImagePipeline-style DiT call: a list of (C, 1, h, w) latents, t = 1 - sigma, a list of
    prompts' hidden states."""
    g = torch.Generator().manual_seed(0)
    return dict(
        x=[torch.randn(in_channels, 1, 4, 6, generator=g)],
        t=torch.tensor([0.3]),
        cap_feats=[torch.randn(7, text_dim, generator=g)],
        return_dict=False,
    )


class ZImageContract(FamilyContract):
    family = "z-image"
    repo = "Tongyi-MAI/Z-Image"

    def diffusers_pipeline(self, model_base, hooks, config):
        from diffusers import ZImagePipeline, ZImageTransformer2DModel

        transformer = ZImageTransformer2DModel.from_pretrained(model_base / self.repo / "transformer")
        return ZImagePipeline(scheduler=None, vae=None, text_encoder=None, tokenizer=None, transformer=transformer)

    def dit_inputs(self, transformer) -> dict:
        return dit_inputs(transformer.config.in_channels, transformer.config.cap_feat_dim)

    def check_exported_lora(self, model_base, lora_file, pipeline, hooks, config) -> None:
        """The core's check returns `transformer(...)[0]` as a tensor; ZImageTransformer2DModel
        returns a list of per-image tensors, so compare the first image here."""
        pipe = self.diffusers_pipeline(model_base, hooks, config)
        kwargs = self.dit_inputs(pipe.transformer)
        with torch.no_grad():
            base_out = pipe.transformer(**kwargs)[0][0]
            ours = pipeline.denoiser_module(**kwargs)[0][0]
        pipe.load_lora_weights(str(lora_file))
        with torch.no_grad():
            loaded = pipe.transformer(**kwargs)[0][0]
        assert not torch.allclose(loaded, base_out, atol=1e-4), "the LoRA changed nothing"
        torch.testing.assert_close(loaded, ours, atol=1e-5, rtol=1e-4)


class TestZImageContract(ZImageContract):
    preset = "tiny"
