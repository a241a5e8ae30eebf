"""Image loading errors, dynamic/fixed training sizes, and cover-resize + center-crop."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from PIL import Image

from diffsynth.data.media import load_image, resize_and_crop, target_size
from diffsynth.errors import UserError


def test_dynamic_size_scales_down_keeping_aspect_and_rounds_to_multiple() -> None:
    w, h = target_size(1920, 1080, fixed=None, max_pixels=1024 * 1024, multiple=16)
    assert (w, h) == (1360, 768)  # 1365.3 x 768 before rounding down to 16
    assert w * h <= 1024 * 1024
    assert abs(w / h - 1920 / 1080) < 0.01


def test_dynamic_size_never_upscales() -> None:
    assert target_size(100, 50, fixed=None, max_pixels=10**6, multiple=16) == (96, 48)
    assert target_size(8, 8, fixed=None, max_pixels=10**6, multiple=16) == (16, 16)  # at least one multiple


def test_dynamic_size_fits_the_budget_for_many_shapes() -> None:
    rng = random.Random(0)
    for _ in range(2000):
        w, h, budget = rng.randint(16, 9000), rng.randint(16, 9000), rng.randint(256, 4 * 10**6)
        tw, th = target_size(w, h, fixed=None, max_pixels=budget, multiple=16)
        assert tw % 16 == 0 and th % 16 == 0
        if min(tw, th) > 16:  # a side clamped up to one multiple may exceed the budget, by design
            assert tw * th <= budget
        assert tw <= max(w, 16) and th <= max(h, 16)


def test_fixed_size_and_its_errors() -> None:
    assert target_size(1920, 1080, fixed=(512, 768), max_pixels=1, multiple=16) == (768, 512)
    with pytest.raises(UserError, match=r"^--height 500: expected a positive multiple of 16"):
        target_size(10, 10, fixed=(500, 512), max_pixels=1, multiple=16)
    with pytest.raises(UserError, match=r"^--width 100: expected a positive multiple of 32"):
        target_size(10, 10, fixed=(512, 100), max_pixels=1, multiple=32)


def _stripes(widths_colours: list[tuple[int, tuple[int, int, int]]], height: int) -> Image.Image:
    img = Image.new("RGB", (sum(w for w, _ in widths_colours), height))
    x = 0
    for w, colour in widths_colours:
        img.paste(colour, (x, 0, x + w, height))
        x += w
    return img


RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def test_crop_is_centered_without_resize() -> None:
    img = _stripes([(25, RED), (50, GREEN), (25, BLUE)], height=50)  # 100x50
    out = resize_and_crop(img, 50, 50)
    assert out.size == (50, 50)
    assert out.getcolors() == [(50 * 50, GREEN)]


def test_resize_covers_then_crops_center() -> None:
    img = _stripes([(100, RED), (200, GREEN), (100, BLUE)], height=400)  # 400x400 -> cover 64x64
    out = resize_and_crop(img.crop((0, 100, 400, 300)), 32, 32)  # 400x200 -> 64x32 -> middle 32
    assert out.size == (32, 32)
    assert out.getpixel((16, 16)) == GREEN and out.getpixel((1, 16))[1] > 200 and out.getpixel((30, 16))[1] > 200
    tall = resize_and_crop(Image.new("RGB", (30, 90), RED), 16, 32)  # aspect 1:3 -> covers 16x48 -> crop
    assert tall.size == (16, 32)


def _png(path: Path, size=(8, 8)) -> Path:
    Image.new("RGB", size, RED).save(path)
    return path


def test_loads_rgb(tmp_path: Path) -> None:
    p = tmp_path / "a.png"
    Image.new("RGBA", (8, 4), (1, 2, 3, 255)).save(p)
    img = load_image(p)
    assert img.mode == "RGB" and img.size == (8, 4) and img.getpixel((0, 0)) == (1, 2, 3)


def test_image_errors_name_the_file(tmp_path: Path) -> None:
    zero = tmp_path / "zero.png"
    zero.write_bytes(b"")
    text = tmp_path / "notes.png"
    text.write_text("hello, not a png")
    full = _png(tmp_path / "full.png", (64, 64)).read_bytes()
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(full[: len(full) // 2])
    cases = {
        tmp_path / "missing.png": "image file not found",
        zero: r"image file is empty \(0 bytes\)",
        text: "not an image PIL can read",
        truncated: "corrupt or truncated image",
    }
    for path, message in cases.items():
        with pytest.raises(UserError, match=rf"^{path}: {message}") as info:
            load_image(path)
        assert "\n" not in str(info.value)


def test_decompression_bomb_is_a_user_error(tmp_path: Path) -> None:
    p = _png(tmp_path / "big.png", (64, 64))
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = 64 * 64 // 3  # PIL raises above 2x the limit
    try:
        with pytest.raises(UserError, match=rf"^{p}: image has more pixels than PIL's limit"):
            load_image(p)
    finally:
        Image.MAX_IMAGE_PIXELS = limit
