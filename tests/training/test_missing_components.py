"""The core refuses, before the family's code, a run whose model files lack a component the
family needs (non-optional in its spec) and the run uses; one line naming them."""

import pytest

from diffsynth.config import TrainConfig
from diffsynth.errors import UserError
from diffsynth.plan.simulate import plan_context
from diffsynth.plugins import load_registry
from diffsynth.training.family_hooks import FamilyHooks
from diffsynth.types import ModelFiles


@pytest.mark.parametrize("family, missing", [("qwen-image", "dit, text_encoder, vae"), ("flux", "dit, text_encoder, text_encoder_2, vae")])
def test_missing_components_are_one_line(family, missing):
    registry = load_registry()
    spec = registry.get(family)
    context = plan_context(TrainConfig(family=family, lora_base_model="dit"), spec, "cpu")
    with pytest.raises(UserError, match=rf"^{family} needs checkpoints for: {missing} \(add them to --model_id_with_origin_paths"):
        FamilyHooks(registry, spec).load_pipeline(ModelFiles({}), context)
