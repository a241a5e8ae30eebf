"""Qwen-Image (+ Edit) family for diffsynth.

The entry-point module (`qwen-image = "diffsynth_qwen_image:plugin"`): the family object, whose
methods import their heavy modules on first use, so `diffsynth models list` loads no torch.
LoRA files use the core's default key format (`diffusion_model.<module>` + `.alpha`), which
diffusers' Qwen-Image loader and ComfyUI both read (see tests/test_lora_export.py).
"""

from diffsynth.plugin import Family

from .spec import FAMILY, NAME


class QwenImage(Family):
    spec = FAMILY

    def init_model(self, preset, directory, seed):
        from .tiny import write_preset

        write_preset(preset, directory, seed)

    def load_pipeline(self, models, context):
        from .pipeline import load

        return load(models, context)

    def plan_pipeline(self, variant, context):
        from .real_configs import plan_pipeline

        return plan_pipeline(variant, context)

    def preprocess_inputs(self, pipeline, sample, context):
        from .inputs import preprocess

        return preprocess(pipeline, sample, context)

    def predict_flow(self, pipeline, inputs, noisy_latents, sigmas):
        from .inputs import predict

        return predict(pipeline, inputs, noisy_latents, sigmas)

    def sample_images(self, pipeline, request, context):
        from .sampling import sample

        return sample(pipeline, request, context)


plugin = QwenImage()

__all__ = ["FAMILY", "NAME", "QwenImage", "plugin"]
