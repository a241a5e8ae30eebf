"""The core's family contract, run against the tiny FLUX.1-dev and FLUX.1-Kontext-dev presets,
with the exported LoRA loaded through diffusers' own `FluxPipeline.load_lora_weights`."""

from __future__ import annotations

from test_lora_export import dit_inputs

from diffsynth.testing.contract import FamilyContract


class FluxContract(FamilyContract):
    family = "flux"
    repo = "black-forest-labs/FLUX.1-dev"
    pipeline_class = "FluxPipeline"
    # no exceptions: the text stream feeds the single blocks, so every LoRA gets a gradient

    def diffusers_pipeline(self, model_base, hooks, config):
        import diffusers

        return getattr(diffusers, self.pipeline_class).from_pretrained(model_base / self.repo)

    def dit_inputs(self, transformer) -> dict:
        return dit_inputs()


class TestFluxContract(FluxContract):
    preset = "tiny"


class TestFluxKontextContract(FluxContract):
    preset = "tiny-kontext"
    extra_inputs = ("kontext_images",)
    repo = "black-forest-labs/FLUX.1-Kontext-dev"
    pipeline_class = "FluxKontextPipeline"
