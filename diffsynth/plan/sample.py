"""The training sample a plan runs: images (or a clip) of the run's size and a prompt.

Size: `--height`/`--width` when given, else the largest square within `--max_pixels`, sides
rounded down to the family's `resolution_multiple` (what the dataset would make of a large
square image). A video family (one whose default file columns include `video`) gets a clip of
`--num_frames` frames. Extra inputs that are images (`edit_image`, `input_image`, ...) get an
image of the same size. The prompt is `PROMPT_WORDS` words; families that pad the text to a
fixed length (T5 in FLUX and Wan: 512) use that length whatever the prompt.
"""

from __future__ import annotations

import math

from diffsynth.config import TrainConfig
from diffsynth.errors import UserError
from diffsynth.spec import FamilySpec
from diffsynth.types import Sample

#: The planned prompt: this many one-token words (a long caption; real prompts are shorter).
PROMPT_WORDS = 256
PROMPT = " ".join(["a"] * PROMPT_WORDS)


def image_size(config: TrainConfig, family: FamilySpec) -> tuple[int, int]:
    """(width, height) of the planned images."""
    multiple = family.resolution_multiple
    if (config.height is None) != (config.width is None):
        raise UserError("--height and --width go together (give both, or neither for --max_pixels)")
    if config.height is not None:
        width, height = config.width, config.height
    else:
        width = height = math.isqrt(config.max_pixels)
    width, height = width // multiple * multiple, height // multiple * multiple
    if width < multiple or height < multiple:
        raise UserError(f"image size {width}x{height}: each side must be at least {multiple} for {family.name}")
    return width, height


def planned_sample(config: TrainConfig, family: FamilySpec) -> Sample:
    from PIL import Image

    width, height = image_size(config, family)
    image = Image.new("RGB", (width, height), (128, 96, 64))
    fields: dict = {"prompt": PROMPT}
    if "video" in family.default_data_file_keys:
        if config.num_frames < 1:
            raise UserError(f"--num_frames: expected a positive integer, got {config.num_frames}")
        fields["video"] = [image] * config.num_frames
    else:
        fields["image"] = image
    for name in config.extra_input_names():
        fields[name] = [image] if name.endswith("images") else image
    return Sample(index=0, fields=fields)
