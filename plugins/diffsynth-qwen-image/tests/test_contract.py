"""The core's family contract, run against every tiny Qwen-Image preset (base, 2512, Edit,
Edit-2509, Edit-2511), with the exported LoRA loaded through the matching diffusers pipeline's own
`load_lora_weights` (QwenImagePipeline, QwenImageEditPipeline, QwenImageEditPlusPipeline)."""

from __future__ import annotations

import pytest
import torch

from diffsynth.testing.contract import FamilyContract


def dit_inputs(in_channels: int, text_dim: int) -> dict:
    g = torch.Generator().manual_seed(0)
    return dict(
        hidden_states=torch.randn(1, 4, in_channels, generator=g),
        encoder_hidden_states=torch.randn(1, 7, text_dim, generator=g),
        encoder_hidden_states_mask=None,
        timestep=torch.tensor([0.5]),
        img_shapes=[[(1, 2, 2)]],
        return_dict=False,
    )


class QwenContract(FamilyContract):
    family = "qwen-image"
    repo = "Qwen/Qwen-Image"
    variant: str | None = None  # None: the one --extra_inputs picks
    pipeline_class = "QwenImagePipeline"
    # the last block's text-stream output is discarded, so its query/output/MLP LoRAs stay idle
    # (this is why the seed's Qwen-Image command passes --find_unused_parameters)
    lora_params_without_gradient = (r"transformer_blocks\.1\.(attn\.add_q_proj|attn\.to_add_out|txt_mlp\.net\.2)\.",)

    @pytest.fixture(scope="class")
    @classmethod
    def config(cls, spec):
        """The core contract's run config, with `variant`."""
        config = FamilyContract.__dict__["config"].__wrapped__.__func__(cls, spec)
        config.variant = cls.variant
        return config

    def diffusers_pipeline(self, model_base, hooks, config):
        import diffusers

        transformer = diffusers.QwenImageTransformer2DModel.from_pretrained(model_base / self.repo / "transformer")
        components = dict(scheduler=None, vae=None, text_encoder=None, tokenizer=None, transformer=transformer)
        if self.pipeline_class != "QwenImagePipeline":
            components["processor"] = None
        return getattr(diffusers, self.pipeline_class)(**components)

    def dit_inputs(self, transformer) -> dict:
        return dit_inputs(transformer.config.in_channels, transformer.config.joint_attention_dim)


class TestQwenImageContract(QwenContract):
    preset = "tiny"


class TestQwenImageEditContract(QwenContract):
    preset = "tiny-edit"
    extra_inputs = ("edit_image",)
    repo = "Qwen/Qwen-Image-Edit"
    pipeline_class = "QwenImageEditPipeline"


class TestQwenImage2512Contract(QwenContract):
    preset, variant, repo = "tiny-2512", "2512", "Qwen/Qwen-Image-2512"


class TestQwenImageEdit2509Contract(TestQwenImageEditContract):
    """The Edit Plus model (found by its model_index.json) on one edit image: the "Picture 1:" prompt."""

    preset, variant, repo = "tiny-edit-2509", "edit-2509", "Qwen/Qwen-Image-Edit-2509"
    pipeline_class = "QwenImageEditPlusPipeline"


class TestQwenImageEdit2511Contract(TestQwenImageEdit2509Contract):
    """zero_cond_t from the 2511 config: the exported LoRA is checked in a zero_cond_t transformer."""

    preset, variant, repo = "tiny-edit-2511", "edit-2511", "Qwen/Qwen-Image-Edit-2511"

    def test_denoiser_uses_zero_cond_t(self, pipeline):
        assert pipeline.denoiser_module.config.zero_cond_t and pipeline.edit_plus
