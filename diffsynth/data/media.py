"""Load images and fit them to a training resolution (fixed, or dynamic under a pixel budget)."""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from diffsynth.errors import UserError


def load_image(path: str | Path) -> Image.Image:
    """Open `path` as an RGB PIL image, fully decoded (EXIF rotation applied).

    Raises UserError naming the file when it is missing, empty, truncated, not an image, or larger
    than PIL's decompression-bomb limit (`PIL.Image.MAX_IMAGE_PIXELS`).
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise UserError(f"{path}: image file is empty (0 bytes)")
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            return img.convert("RGB")
    except FileNotFoundError:
        raise UserError(f"{path}: image file not found") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder, expected an image file") from None
    except UnidentifiedImageError:
        raise UserError(f"{path}: not an image PIL can read") from None
    except Image.DecompressionBombError:
        raise UserError(
            f"{path}: image has more pixels than PIL's limit (PIL.Image.MAX_IMAGE_PIXELS={Image.MAX_IMAGE_PIXELS}); "
            "raise the limit if you trust it"
        ) from None
    except (OSError, SyntaxError, ValueError) as e:
        # PIL reports truncated/corrupt data as OSError ("image file is truncated ...") or SyntaxError.
        raise UserError(f"{path}: corrupt or truncated image ({e})") from None


def check_fixed_size(height: int | None, width: int | None, multiple: int) -> tuple[int, int] | None:
    """Validate `--height/--width`: both or neither, positive multiples of `multiple`. Returns (h, w) or None."""
    if height is None and width is None:
        return None
    if height is None or width is None:
        given, missing = ("--height", "--width") if width is None else ("--width", "--height")
        raise UserError(f"{given} needs {missing} too (or give neither for dynamic resolution)")
    for flag, value in (("--height", height), ("--width", width)):
        if value <= 0 or value % multiple:
            raise UserError(f"{flag} {value}: expected a positive multiple of {multiple} (this family's resolution multiple)")
    return height, width


def target_size(
    width: int, height: int, *, fixed: tuple[int, int] | None, max_pixels: int, multiple: int
) -> tuple[int, int]:
    """The (width, height) to train an image of `width`x`height` at.

    `fixed` is (height, width) from `--height/--width`. Otherwise scale down (never up), keeping the
    aspect ratio, until width*height <= max_pixels, then round each side down to a multiple of
    `multiple` (at least `multiple`).
    """
    if fixed is not None:
        h, w = check_fixed_size(*fixed, multiple)  # type: ignore[misc]
        return w, h
    if max_pixels <= 0:
        raise UserError(f"--max_pixels {max_pixels}: expected a positive number of pixels")
    if width * height > max_pixels:
        scale = math.sqrt(max_pixels / (width * height))
        width, height = int(width * scale), int(height * scale)
    return max(multiple, width // multiple * multiple), max(multiple, height // multiple * multiple)


def resize_and_crop(img: Image.Image, width: int, height: int) -> Image.Image:
    """Resize `img` to cover `width`x`height` keeping its aspect ratio, then center-crop to exactly that."""
    if img.size == (width, height):
        return img
    scale = max(width / img.width, height / img.height)
    # round() can land one pixel short of covering; max() keeps both sides >= the target.
    cover = (max(width, round(img.width * scale)), max(height, round(img.height * scale)))
    if cover != img.size:
        img = img.resize(cover, Image.Resampling.LANCZOS, reducing_gap=3.0)
    left, top = (cover[0] - width) // 2, (cover[1] - height) // 2
    return img.crop((left, top, left + width, top + height))
