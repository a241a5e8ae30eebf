"""Every generic train option on Qwen-Image and Qwen-Image-Edit (diffsynth.testing.matrix)."""

from pathlib import Path

from diffsynth.testing.matrix import MatrixCase, OptionMatrix

DATA = Path(__file__).resolve().parents[3] / "examples" / "data"


class TestQwenImageOptions(OptionMatrix):
    family = "qwen-image"
    cases = (
        MatrixCase("tiny", options={"dataset_base_path": DATA, "max_pixels": 4096}),
        MatrixCase("tiny-edit", variant="edit", options={
            "dataset_base_path": DATA / "edit", "max_pixels": 4096,
            "data_file_keys": "image,edit_image", "extra_inputs": "edit_image",
        }),
    )
