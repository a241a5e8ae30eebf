"""Small helpers a family uses from `diffsynth.plugin`: they do what their names promise."""

import copy
import json

import pytest
import torch

from diffsynth.plugin import FamilyPipeline, FlowMatchSchedule, flow_match_scheduler_config, write_json


def test_a_pipelines_modules_are_its_attributes_and_nothing_else_is():
    vae = torch.nn.Identity()
    pipe = FamilyPipeline(modules={"dit": torch.nn.Linear(1, 1), "vae": vae}, schedule=FlowMatchSchedule())
    assert pipe.vae is vae and pipe.dit is pipe.denoiser_module
    with pytest.raises(AttributeError, match="has no attribute or module 'text_encoder'"):
        _ = pipe.text_encoder
    assert copy.copy(pipe).vae is vae  # copying (no `modules` yet while it is built) does not recurse


def test_the_scheduler_config_shifts_as_the_cores_resolution_shift_sampling():
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    from diffsynth.training.timesteps import resolution_mu

    config = flow_match_scheduler_config(shift=1.0)
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(config)
    assert scheduler.config.use_dynamic_shifting and scheduler.config.shift == 1.0
    for tokens in (256, 1024, 4096, 6000):
        mu = calculate_shift(
            tokens, config["base_image_seq_len"], config["max_image_seq_len"], config["base_shift"], config["max_shift"]
        )
        assert mu == pytest.approx(resolution_mu(tokens))


def test_write_json_makes_the_folders(tmp_path):
    write_json(tmp_path / "a" / "b" / "config.json", {"x": 1})
    assert json.loads((tmp_path / "a" / "b" / "config.json").read_text()) == {"x": 1}
