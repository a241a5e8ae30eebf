"""The core's family contract, run against each tiny Wan preset, with the exported LoRA loaded
through diffusers' own `WanPipeline.load_lora_weights`."""

from __future__ import annotations

import pytest
import torch

from test_lora_export import dit_inputs

from diffsynth.testing.contract import FamilyContract


class WanContract(FamilyContract):
    family = "wan"
    variant: str | None = None

    @pytest.fixture(scope="class")
    @classmethod
    def config(cls, spec):
        from diffsynth.config import TrainConfig

        cfg = TrainConfig(family=spec.name, dtype="fp32", lora_base_model="dit", lora_rank=cls.lora_rank, variant=cls.variant)
        cfg.extra_inputs = ",".join(cls.extra_inputs) or None
        return cfg

    def test_image_encoder_is_loaded_exactly_for_i2v(self, pipeline) -> None:
        # the CLIP image encoder (an optional component) exists only in Wan2.1 I2V repos
        assert ("image_encoder" in pipeline.modules) == (self.preset == "tiny-i2v")

    def diffusers_pipeline(self, model_base, hooks, config):
        from diffsynth_wan.pipeline import load_dit
        from diffusers import WanPipeline

        from diffsynth.models.resolve import resolve_model_files
        from diffsynth.models.sources import DownloadSettings

        files = resolve_model_files(hooks.family, config, DownloadSettings.offline(model_base))
        fresh = load_dit(files.components["dit"], torch.float32)
        return WanPipeline(tokenizer=None, text_encoder=None, vae=None, scheduler=None, transformer=fresh)

    def dit_inputs(self, transformer) -> dict:
        return dit_inputs(transformer.config)


class TestWanT2VContract(WanContract):
    preset = "tiny"


class TestWanI2VContract(WanContract):
    preset = "tiny-i2v"
    extra_inputs = ("input_image",)


class TestWanTI2VContract(WanContract):
    preset = "tiny-ti2v"
    extra_inputs = ("input_image",)
    variant = "ti2v"
