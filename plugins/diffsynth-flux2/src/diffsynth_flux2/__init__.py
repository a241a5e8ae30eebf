"""FLUX.2 [klein] family for diffsynth.

The entry-point module (`flux2 = "diffsynth_flux2:plugin"`): the family object, whose methods
import their heavy modules on first use, so `diffsynth models list` loads no torch.
"""

from diffsynth.plugin import Family

from .spec import FAMILY, NAME


class Flux2(Family):
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

    def split_state_dict(self, weights, context):
        # diffusers' FLUX.2 loader and ComfyUI read BFL's names (lora_format.py)
        from .lora_format import split

        return split(weights, self.spec.name, self.spec.denoiser)

    def normalize_lora_state_dict(self, state_dict, metadata):
        from .lora_format import normalize

        return normalize(state_dict, metadata)

    def sample_images(self, pipeline, request, context):
        from .sampling import sample

        return sample(pipeline, request, context)


plugin = Flux2()

__all__ = ["FAMILY", "NAME", "Flux2", "plugin"]
