"""The core's family contract, run against the tiny FLUX.1-dev and FLUX.1-Kontext-dev presets,
with the exported LoRA loaded through diffusers' own `FluxPipeline.load_lora_weights`."""

from __future__ import annotations

import torch
from test_lora_export import dit_inputs

from diffsynth.testing.contract import FamilyContract


class FluxContract(FamilyContract):
    family = "flux"
    repo = "black-forest-labs/FLUX.1-dev"
    pipeline_class = "FluxPipeline"
    # no exceptions: the text stream feeds the single blocks, so every LoRA gets a gradient

    def check_exported_lora(self, model_base, lora_file, pipeline, hooks, config) -> None:
        import diffusers

        pipe = getattr(diffusers, self.pipeline_class).from_pretrained(model_base / self.repo)
        with torch.no_grad():
            base_out = pipe.transformer(**dit_inputs())[0]
            ours = pipeline.denoiser_module(**dit_inputs())[0]
        pipe.load_lora_weights(str(lora_file))
        with torch.no_grad():
            loaded = pipe.transformer(**dit_inputs())[0]
        assert not torch.allclose(loaded, base_out, atol=1e-4), "the LoRA changed nothing"
        torch.testing.assert_close(loaded, ours, atol=1e-5, rtol=1e-4)


class TestFluxContract(FluxContract):
    preset = "tiny"


class TestFluxKontextContract(FluxContract):
    preset = "tiny-kontext"
    extra_inputs = ("kontext_images",)
    repo = "black-forest-labs/FLUX.1-Kontext-dev"
    pipeline_class = "FluxKontextPipeline"
