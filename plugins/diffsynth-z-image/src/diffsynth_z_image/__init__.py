"""Z-Image (+ Turbo) family for diffsynth.

The entry-point module (`z-image = "diffsynth_z_image:plugin"`): the family object, whose
methods import their heavy modules on first use, so `diffsynth models list` loads no torch.
LoRA files use the core's default key format (`diffusion_model.<module>` + `.alpha`), which
diffusers' ZImagePipeline.load_lora_weights and ComfyUI's Z-Image (Lumina2) loader both read
(see tests/test_lora_export.py).
"""

from diffsynth.plugin import Family

from .spec import FAMILY, NAME


class ZImage(Family):
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
        from .pipeline import preprocess

        return preprocess(pipeline, sample, context)

    def predict_flow(self, pipeline, inputs, noisy_latents, sigmas):
        from .pipeline import predict

        return predict(pipeline, inputs, noisy_latents, sigmas)

    def sample_images(self, pipeline, request, context):
        from .sampling import sample

        return sample(pipeline, request, context)


plugin = ZImage()

__all__ = ["FAMILY", "NAME", "ZImage", "plugin"]
