"""Wan 2.1 / 2.2 family for diffsynth.

The entry-point module (`wan = "diffsynth_wan:plugin"`): the family object, whose methods import
their heavy modules on first use, so `diffsynth models list` loads no torch.
"""

from diffsynth.plugin import Family, LoraKeyFormat

from .spec import FAMILY, NAME


def original_module_name(name: str) -> str:
    """diffusers' Wan module name -> the original repo's (`blocks.0.attn1.to_q` -> `blocks.0.self_attn.q`)."""
    from .convert import dit_name_to_original

    return dit_name_to_original(name)


class Wan(Family):
    spec = FAMILY
    # original names: ComfyUI maps only those for Wan; diffusers converts them (lora_format.py)
    lora_key_format = LoraKeyFormat(
        rename=original_module_name, description="diffusion_model.<original Wan module>.lora_A/lora_B.weight + .alpha"
    )

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


plugin = Wan()

__all__ = ["FAMILY", "NAME", "Wan", "original_module_name", "plugin"]
