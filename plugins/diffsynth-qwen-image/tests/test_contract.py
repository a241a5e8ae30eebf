"""The core's family contract, run against the tiny Qwen-Image and Qwen-Image-Edit presets, with
the exported LoRA loaded through diffusers' own `QwenImagePipeline.load_lora_weights`."""

from __future__ import annotations

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
    # the last block's text-stream output is discarded, so its query/output/MLP LoRAs stay idle
    # (this is why the seed's Qwen-Image command passes --find_unused_parameters)
    lora_params_without_gradient = (r"transformer_blocks\.1\.(attn\.add_q_proj|attn\.to_add_out|txt_mlp\.net\.2)\.",)

    def diffusers_pipeline(self, model_base, hooks, config):
        from diffusers import QwenImagePipeline, QwenImageTransformer2DModel

        transformer = QwenImageTransformer2DModel.from_pretrained(model_base / self.repo / "transformer")
        return QwenImagePipeline(scheduler=None, vae=None, text_encoder=None, tokenizer=None, transformer=transformer)

    def dit_inputs(self, transformer) -> dict:
        return dit_inputs(transformer.config.in_channels, transformer.config.joint_attention_dim)


class TestQwenImageContract(QwenContract):
    preset = "tiny"


class TestQwenImageEditContract(QwenContract):
    preset = "tiny-edit"
    extra_inputs = ("edit_image",)
    repo = "Qwen/Qwen-Image-Edit"
