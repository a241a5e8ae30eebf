"""`models init` writes the real repos' layout, our detectors identify it, and what training
computes is what diffusers' ZImagePipeline computes: the prompt embeddings, the latents' scale and
the flow (one Euler step of the pipeline from noise equals ours)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from diffsynth_z_image import FAMILY, plugin
from diffsynth_z_image.spec import BASE_REPO, TURBO_REPO

from diffsynth.config import TrainConfig
from diffsynth.models.checkpoints import identify
from diffsynth.testing.contract import offline_files, offline_model_files
from diffsynth.types import RunContext, Sample, TrainingInputs


def test_entry_module_is_light():
    code = "import sys, diffsynth_z_image; print(sorted(m for m in ('torch','diffusers','transformers','peft') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_real_layout_and_detectors(model_base):
    for repo, shift in ((BASE_REPO, 6.0), (TURBO_REPO, 3.0)):
        folder = model_base / repo
        index = json.loads((folder / "model_index.json").read_text())
        assert index["_class_name"] == "ZImagePipeline" and index["text_encoder"] == ["transformers", "Qwen3Model"]
        assert json.loads((folder / "scheduler" / "scheduler_config.json").read_text())["shift"] == shift
        for sub in ("transformer", "text_encoder"):
            assert len(list((folder / sub).glob("*-of-*.safetensors"))) > 1  # sharded + index, as the real repos
        assert json.loads((folder / "text_encoder" / "config.json").read_text())["architectures"] == ["Qwen3ForCausalLM"]
    for variant in FAMILY.variants:
        found = [identify(FAMILY, *offline_files(model_base, s)).component for s in variant.model_sources]
        assert found == ["dit", "text_encoder", "vae"]
        repo, sub = variant.tokenizer_source.rsplit(":", 1)
        assert (model_base / repo / sub / "tokenizer_config.json").is_file()
    with pytest.raises(Exception, match="tiny-turbo"):
        plugin.init_model("huge", model_base / "x", 0)


@pytest.fixture(scope="module")
def loaded(model_base):
    from diffusers import ZImagePipeline

    context = RunContext.for_run(TrainConfig(dtype="fp32", family="z-image"))
    ours = plugin.load_pipeline(offline_model_files(FAMILY, model_base, "turbo"), context)
    ours.dtype, ours.device = torch.float32, torch.device("cpu")
    return ours, ZImagePipeline.from_pretrained(model_base / TURBO_REPO), context


def test_prompt_embeddings_and_latents_are_the_pipelines(loaded):
    from PIL import Image

    ours, pipe, context = loaded
    image = Image.new("RGB", (48, 32), (200, 30, 30))
    with torch.no_grad():
        inputs = plugin.preprocess_inputs(ours, Sample(0, {"image": image, "prompt": "a red cat"}), context)
        (theirs,), _ = pipe.encode_prompt("a red cat", device="cpu", do_classifier_free_guidance=False)
        torch.testing.assert_close(inputs.conditioning.prompt_embeds[0], theirs)
        assert inputs.latents.shape == (1, 16, 4, 6)
        # the pipeline's decode inverts our encode's scaling: latents / scaling + shift
        raw = pipe.vae.encode(pipe.image_processor.preprocess(image)).latent_dist.mode()
        vae = pipe.vae.config
        torch.testing.assert_close(inputs.latents / vae.scaling_factor + vae.shift_factor, raw, atol=2e-4, rtol=1e-3)  # pixels: x/255*2-1 vs x/127.5-1


def test_one_pipeline_step_from_noise_is_our_flow(loaded):
    """ZImagePipeline with one step goes from sigma 1 to 0: x0 = noise - flow(noise, sigma=1)."""
    ours, pipe, context = loaded
    noise = torch.randn(1, 16, 4, 6, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        (embeds,), _ = pipe.encode_prompt("blue", device="cpu", do_classifier_free_guidance=False)
        cond = type(plugin.preprocess_inputs(ours, Sample(0, {"image": _img(), "prompt": "blue"}), context).conditioning)
        inputs = TrainingInputs(noise, cond(embeds[None], torch.ones(1, embeds.shape[0], dtype=torch.bool)))
        flow = plugin.predict_flow(ours, inputs, noise, torch.tensor([1.0]))
        x0 = pipe(prompt="blue", height=32, width=48, num_inference_steps=1, guidance_scale=0.0, latents=noise.clone(),
                  output_type="latent").images  # fmt: skip
    torch.testing.assert_close(x0, noise - flow, atol=1e-5, rtol=1e-4)


def _img():
    from PIL import Image

    return Image.new("RGB", (48, 32), (30, 30, 200))
