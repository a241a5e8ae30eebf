"""Masked loss: a `mask` column's white pixels count, placed on the latents generically from
their layout (grid or packed row-major tokens)."""

from __future__ import annotations

import csv
import shutil

import pytest
import torch
from PIL import Image

from diffsynth.data.mask import apply_mask, mask_grid
from diffsynth.errors import UserError
from diffsynth.training.flow_matching import flow_matching_loss
from diffsynth.types import Sample, TrainingInputs
from tests.conftest import EXAMPLE_DATA
from tests.training.recipe_runs import losses, train, weights


def half_mask(width: int = 64, height: int = 32) -> Image.Image:
    """Left half white, right half black."""
    image = Image.new("L", (width, height), 0)
    image.paste(255, (0, 0, width // 2, height))
    return image.convert("RGB")


def test_mask_is_placed_on_grid_and_packed_layouts():
    image = half_mask()  # 64 x 32
    grid = mask_grid(image, torch.zeros(1, 16, 4, 8))  # (B, C, h, w) at 1/8
    assert grid.shape == (1, 1, 4, 8) and torch.equal(grid[0, 0, :, :4], torch.ones(4, 4)) and grid[0, 0, :, 4:].sum() == 0
    video = mask_grid(image, torch.zeros(1, 16, 3, 4, 8))  # (B, C, T, h, w): same mask every frame
    assert video.shape == (1, 1, 1, 4, 8) and torch.equal(video[0, 0, 0], grid[0, 0])
    packed = mask_grid(image, torch.zeros(1, 8, 64))  # FLUX/Qwen packing: 2 x 4 tokens, row-major
    assert packed.shape == (1, 8, 1)
    assert packed.flatten().tolist() == [1, 1, 0, 0, 1, 1, 0, 0]
    grey = mask_grid(Image.new("RGB", (16, 16), (128, 128, 128)), torch.zeros(1, 4, 3))
    assert torch.allclose(grey, torch.full_like(grey, 128 / 255))
    with pytest.raises(UserError, match="are not a grid"):
        mask_grid(image, torch.zeros(1, 7, 3))


def test_the_loss_counts_only_the_white_pixels():
    latents = torch.zeros(1, 8, 3)
    inputs = TrainingInputs(latents=latents, conditioning=None)
    apply_mask(inputs, Sample(index=0, fields={"mask": half_mask()}))
    prediction, target = torch.zeros(1, 8, 3), torch.zeros(1, 8, 3)
    target[:, [2, 3, 6, 7]] = 5.0  # error only under the black half
    assert flow_matching_loss(prediction, target, inputs.loss_mask) == 0
    target[:, 0] = 1.0  # one white token, 3 channels, error 1 each
    assert flow_matching_loss(prediction, target, inputs.loss_mask) == pytest.approx(3 / 12)
    # a family's own mask is multiplied in
    own = TrainingInputs(latents=latents, conditioning=None, loss_mask=torch.tensor([0, 1, 1, 1, 1, 1, 1, 1.0])[None, :, None].expand(1, 8, 3))
    apply_mask(own, Sample(index=0, fields={"mask": half_mask()}))
    assert own.loss_mask[0, :, 0].tolist() == [0, 1, 0, 0, 1, 1, 0, 0]


def _dataset_with_masks(folder, colour: int):
    shutil.copytree(EXAMPLE_DATA / "images", folder / "images")
    (folder / "masks").mkdir()
    with open(EXAMPLE_DATA / "metadata.csv") as fh:
        rows = list(csv.DictReader(fh))
    for i, row in enumerate(rows):
        Image.new("RGB", Image.open(EXAMPLE_DATA / row["image"]).size, (colour,) * 3).save(folder / "masks" / f"{i}.png")
        row["mask"] = f"masks/{i}.png"
    with open(folder / "metadata.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["image", "prompt", "mask"])
        writer.writeheader()
        writer.writerows(rows)
    return folder


def test_a_training_run_reads_the_mask_column(toy_models, tmp_path):
    plain = tmp_path / "plain"
    train(toy_models, plain, trainable_models="dit", lora_base_model=None, weight_decay=0.0)
    white = tmp_path / "white"
    train(toy_models, white, trainable_models="dit", lora_base_model=None, weight_decay=0.0,
          dataset_base_path=str(_dataset_with_masks(tmp_path / "white-data", 255)))
    black = tmp_path / "black"
    train(toy_models, black, trainable_models="dit", lora_base_model=None, weight_decay=0.0,
          dataset_base_path=str(_dataset_with_masks(tmp_path / "black-data", 0)))
    # all white: every position counts, as without a mask
    assert [r["loss"] for r in losses(white)] == pytest.approx([r["loss"] for r in losses(plain)], rel=1e-5)
    # all black: nothing counts; the loss is 0 and the weights stay the model's
    assert all(r["loss"] == 0 for r in losses(black))
    from safetensors.torch import load_file

    initial = load_file(str(toy_models / "toy/Toy/dit/model.safetensors"))
    trained = weights(black / "epoch-0.safetensors")
    assert all(torch.equal(trained[k], initial[k]) for k in initial)
