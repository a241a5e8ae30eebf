"""FLUX.1-dev (+ Kontext) family for diffsynth.

The entry-point module (`flux = "diffsynth_flux:plugin"`): the family object, whose methods
import their heavy modules on first use, so `diffsynth models list` loads no torch.
"""

from diffsynth.plugin import Family, LoraKeyFormat

from .spec import FAMILY, NAME


class Flux(Family):
    spec = FAMILY
    # diffusers' FLUX loader keeps only `transformer.*` keys; ComfyUI maps them onto its fused
    # weights (see lora_format.py and tests/test_lora_export.py)
    lora_key_format = LoraKeyFormat("transformer.", description="transformer.<module>.lora_A/lora_B.weight + .alpha")

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

    def normalize_lora_state_dict(self, state_dict, metadata):
        from .lora_format import normalize

        return normalize(state_dict, metadata)

    def sample_images(self, pipeline, request, context):
        from .sampling import sample

        return sample(pipeline, request, context)


plugin = Flux()

__all__ = ["FAMILY", "NAME", "Flux", "plugin"]
