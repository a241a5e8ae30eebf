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


def _toy_with(**changes):
    import dataclasses

    from toy_family import SPEC

    registry = load_registry(use_entry_points=False)
    return FamilyHooks(registry, dataclasses.replace(SPEC, **changes))


def test_a_tokenized_component_without_a_tokenizer_folder_is_one_line():
    from diffsynth.spec import ComponentSpec, VariantSpec
    from diffsynth.types import CheckpointGroup

    hooks = _toy_with(
        components=(ComponentSpec("dit", "denoiser", lambda h: True), ComponentSpec("text", "encoder", lambda h: True, tokenized=True)),
        variants=(VariantSpec("base", "b", ("toy/Toy:*.safetensors",), tokenizer_source="toy/Toy:tokenizer/"),),
    )
    files = {name: CheckpointGroup(name, f"toy/Toy:{name}", header=None) for name in ("dit", "text")}
    context = plan_context(TrainConfig(family="toy", lora_base_model="dit"), hooks.family, "cpu")
    with pytest.raises(UserError, match=r"^toy: its text needs a tokenizer folder: pass --tokenizer_path \(e.g. toy/Toy:tokenizer/\)$"):
        hooks.load_pipeline(ModelFiles(files), context)


def test_a_sample_request_with_undeclared_or_too_many_images_is_one_line():
    from diffsynth.spec import ExtraInputSpec
    from diffsynth.types import RunContext, SampleRequest

    hooks = _toy_with(extra_inputs=(ExtraInputSpec("reference", "one reference image", max_images=1),))
    with pytest.raises(UserError, match=r"^toy takes no --edit_image \(extra inputs: --reference\)$"):
        hooks.sample_images(None, SampleRequest(("a",), inputs={"edit_image": [object()]}), RunContext())
    with pytest.raises(UserError, match=r"^--reference: toy takes at most 1 image\(s\), got 2$"):
        hooks.sample_images(None, SampleRequest(("a",), inputs={"reference": [object(), object()]}), RunContext())
