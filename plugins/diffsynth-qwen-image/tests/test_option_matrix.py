"""Every generic train option on Qwen-Image and Qwen-Image-Edit (diffsynth.testing.matrix); the
2512, Edit-2509 (list-valued edit_image) and Edit-2511 presets run their FP8 cell on the DiT in
CI and every cell with DIFFSYNTH_FULL_MATRIX=1."""

from pathlib import Path

from conftest import write_multi_reference_dataset

from diffsynth.testing.matrix import MatrixCase, OptionMatrix, image_options

DATA = Path(__file__).resolve().parents[3] / "examples" / "data"


class TestQwenImageOptions(OptionMatrix):
    family = "qwen-image"
    cases = (
        MatrixCase("tiny", options=image_options(DATA)),
        MatrixCase("tiny-edit", variant="edit", options=image_options(DATA, "edit_image")),
        MatrixCase("tiny-2512", variant="2512", options=image_options(DATA), components=("dit",), second_trained="text_encoder"),
        MatrixCase("tiny-edit-2509", variant="edit-2509", make_dataset=write_multi_reference_dataset, components=("dit",), second_trained="text_encoder"),
        MatrixCase("tiny-edit-2511", variant="edit-2511", make_dataset=write_multi_reference_dataset, components=("dit",), second_trained="text_encoder"),
    )
