"""Every generic train option on Z-Image (diffsynth.testing.matrix)."""

from pathlib import Path

from diffsynth.testing.matrix import MatrixCase, OptionMatrix

DATA = Path(__file__).resolve().parents[3] / "examples" / "data"


class TestZImageOptions(OptionMatrix):
    family = "z-image"
    cases = (
        MatrixCase("tiny", options={"dataset_base_path": DATA, "max_pixels": 4096}),
        MatrixCase("tiny-turbo", variant="turbo", options={"dataset_base_path": DATA, "max_pixels": 4096}),
    )
