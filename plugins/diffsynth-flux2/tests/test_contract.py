"""The core's family contract, run against the tiny FLUX.2-klein-4B preset (text-to-image and
with reference images), the exported LoRA loaded through diffusers' own
`Flux2KleinPipeline.load_lora_weights`."""

from __future__ import annotations

import pytest
from test_lora_export import dit_inputs

from diffsynth.testing.contract import FamilyContract


class Flux2Contract(FamilyContract):
    family = "flux2"
    repo = "black-forest-labs/FLUX.2-klein-4B"
    # no exceptions: the text stream feeds the single blocks, so every LoRA gets a gradient

    @pytest.fixture(scope="class")
    @classmethod
    def model_base(cls, model_base):
        """The session's presets (conftest.py, written by the same `init_model` into the same
        repo folders), read-only here: not written again for each class."""
        return model_base

    def diffusers_pipeline(self, model_base, hooks, config):
        from diffusers import Flux2KleinPipeline, Flux2Transformer2DModel

        transformer = Flux2Transformer2DModel.from_pretrained(model_base / self.repo / "transformer")
        return Flux2KleinPipeline(scheduler=None, vae=None, text_encoder=None, tokenizer=None, transformer=transformer)

    def dit_inputs(self, transformer) -> dict:
        return dit_inputs(transformer)


class TestFlux2KleinContract(Flux2Contract):
    preset = "tiny"


class TestFlux2KleinReferenceContract(Flux2Contract):
    preset = "tiny"
    extra_inputs = ("edit_image",)
