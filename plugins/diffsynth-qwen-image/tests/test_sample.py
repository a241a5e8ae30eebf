"""`diffsynth sample qwen-image` on the tiny presets, through diffusers' QwenImagePipeline /
QwenImageEditPipeline: the asked size, the same pixels twice, a trained LoRA changes them (scale 0
does not), several prompts, the edit image; and the learns LoRA sampled through the same pipeline
lands on its class."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from diffsynth.testing.sample import read_frames, run_in_process, sampler, tiny_lora_fixture

SIZE = ("--height", "32", "--width", "48", "--steps", "3")


lora = tiny_lora_fixture("qwen-image")
sample = sampler("qwen-image", *SIZE)


def test_writes_the_asked_size_and_the_same_pixels_twice(model_base, tmp_path):
    first, second = sample(model_base, tmp_path, "a.png"), sample(model_base, tmp_path, "b.png")
    assert first.shape == (1, 32, 48, 3) and first.std() > 0
    assert np.array_equal(first, second)
    assert not np.array_equal(first, sample(model_base, tmp_path, "c.png", "--seed", "1"))


def test_a_trained_lora_changes_the_pixels_and_scale_zero_does_not(model_base, tmp_path, lora):
    base = sample(model_base, tmp_path, "base.png")
    with_lora = sample(model_base, tmp_path, "lora.png", "--lora", lora)
    assert (with_lora != base).mean() > 0.01  # the random tiny VAE shrinks any change to a few levels
    assert np.array_equal(sample(model_base, tmp_path, "again.png", "--lora", lora), with_lora)
    off = sample(model_base, tmp_path, "off.png", "--lora", lora, "--lora_scale", "0")
    assert np.abs(off.astype(int) - base).max() <= 1


def test_several_prompts_write_one_file_each_from_the_same_seed(model_base, tmp_path):
    run_in_process(model_base, tmp_path, "sample", "qwen-image", "--prompt", "red", "--prompt", "blue", *SIZE, "--output", "s.png")
    assert np.array_equal(read_frames(tmp_path / "s-0.png"), sample(model_base, tmp_path, "red.png"))
    assert np.array_equal(read_frames(tmp_path / "s-1.png"), sample(model_base, tmp_path, "blue.png", prompt="blue"))


def test_edit_image_samples_qwen_image_edit(model_base, tmp_path):
    Image.new("RGB", (40, 24), (200, 20, 20)).save(tmp_path / "edit.png")
    out = sample(model_base, tmp_path, "edit-out.png", "--edit_image", tmp_path / "edit.png", prompt="make it blue")
    assert out.shape == (1, 32, 48, 3) and out.std() > 0


def test_flags_qwen_image_does_not_use_fail_in_one_line(model_base, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        sample(model_base, tmp_path, "x.png", "--guidance", "3.5")
    assert exit.value.code != 0
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: --guidance: Qwen-Image has no embedded guidance; use --cfg_scale"
    )


def test_the_learns_model_sampled_through_the_pipeline_lands_on_its_class(model_base, tmp_path):
    """The learns check's model (the DiT fully trained on red vs blue, lr 1e-3, 240 steps), put in
    the QwenImagePipeline that `diffsynth sample` builds and sampled by the pipeline's own
    scheduler loop (dynamic-shift sigmas, output_type="latent"), lands nearer its prompt's class
    mean latent for >= 90% of seeds: the pipeline is the same maths as training. (In pixels the
    tiny preset cannot show it: its random VAE decodes solid red and solid blue to the same grey,
    mean RGB (144, 146, 132) vs (145, 146, 131).)"""
    import torch
    from diffsynth_qwen_image.inputs import encode_image, pack
    from diffsynth_qwen_image.sampling import diffusers_pipeline
    from safetensors.torch import load_file

    from diffsynth.config import TrainConfig
    from diffsynth.models.resolve import resolve_model_files
    from diffsynth.models.sources import DownloadSettings
    from diffsynth.plugins import load_registry
    from diffsynth.sampling import generator
    from diffsynth.testing.learns import write_two_class_dataset
    from diffsynth.training.family_hooks import FamilyHooks
    from diffsynth.types import RunContext

    data = write_two_class_dataset(tmp_path / "data")
    run_in_process(
        model_base, tmp_path, "train", "qwen-image", "--dataset_base_path", data, "--height", "32", "--width", "32",
        "--trainable_models", "dit", "--learning_rate", "1e-3", "--dataset_repeat", "30", "--output_path", "full",
    )  # fmt: skip
    registry = load_registry()
    family = registry.get("qwen-image")
    pipe = FamilyHooks(registry, family).load_pipeline(
        resolve_model_files(family, TrainConfig(), DownloadSettings.offline(model_base)), RunContext()
    )
    pipe.dit.load_state_dict(load_file(str(tmp_path / "full" / "epoch-0.safetensors")))
    with torch.no_grad():
        means = {
            c: torch.stack([pack(encode_image(pipe, Image.open(data / f"{c}_{i}.png"))) for i in range(4)]).mean(0)
            for c in ("red", "blue")
        }
        dp = diffusers_pipeline(pipe, edit=False)
        correct = total = 0
        for c in means:
            for seed in range(10):
                latents = dp(prompt=c, height=32, width=32, num_inference_steps=20, true_cfg_scale=1.0,
                             generator=generator(seed), output_type="latent").images  # fmt: skip
                dist = {k: (latents - m).pow(2).mean().item() for k, m in means.items()}
                correct += min(dist, key=dist.get) == c
                total += 1
    assert correct >= 0.9 * total, f"{correct}/{total}"


def test_edit_2509_samples_qwen_image_edit_plus_with_several_images(model_base, tmp_path):
    """`--variant edit-2509` with two `--edit_image`: QwenImageEditPlusPipeline (which VAE-encodes
    each reference at 1024^2, the slow part: two steps, no CFG) writes the asked size."""
    Image.new("RGB", (40, 24), (200, 20, 20)).save(tmp_path / "first.png")
    Image.new("RGB", (24, 40), (20, 20, 200)).save(tmp_path / "second.png")
    args = ("--variant", "edit-2509", "--steps", "2", "--cfg_scale", "1", "--edit_image", tmp_path / "first.png")
    out = sample(model_base, tmp_path, "plus.png", *args, "--edit_image", tmp_path / "second.png", prompt="picture 2's colour")
    assert out.shape == (1, 32, 48, 3) and out.std() > 0
