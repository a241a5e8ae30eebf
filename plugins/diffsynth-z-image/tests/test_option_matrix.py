"""Every generic train option on Z-Image (diffsynth.testing.matrix)."""

from pathlib import Path

from diffsynth.testing.matrix import MatrixCase, OptionMatrix, image_options

DATA = Path(__file__).resolve().parents[3] / "examples" / "data"


class TestZImageOptions(OptionMatrix):
    family = "z-image"
    cases = (
        MatrixCase("tiny", options=image_options(DATA)),
        MatrixCase("tiny-turbo", variant="turbo", options=image_options(DATA)),
    )
