"""Every generic train option on Wan 2.1 T2V/I2V, Wan 2.2 TI2V and both A14B experts
(diffsynth.testing.matrix)."""

from pathlib import Path

from diffsynth.testing.matrix import MatrixCase, OptionMatrix

VIDEO = Path(__file__).resolve().parents[3] / "examples" / "data" / "video"
CLIP = {"dataset_base_path": VIDEO, "height": 32, "width": 32, "num_frames": 5}


class TestWanOptions(OptionMatrix):
    family = "wan"
    cases = (
        MatrixCase("tiny", variant="t2v", options=CLIP),
        MatrixCase("tiny-i2v", variant="i2v", options={**CLIP, "extra_inputs": "input_image"},
                   components=("dit", "text_encoder", "vae", "image_encoder")),
        # the Wan2.2 VAE (16x) with 2x2 patches: preprocess crops sides to 32 (inputs.py)
        MatrixCase("tiny-ti2v", variant="ti2v", options={**CLIP, "extra_inputs": "input_image"}, resolution_multiple=32),
        MatrixCase("tiny-a14b", variant="a14b-high", options={**CLIP, "max_timestep_boundary": 0.417}, name="tiny-a14b-high"),
        MatrixCase("tiny-a14b", variant="a14b-low", options={**CLIP, "min_timestep_boundary": 0.417}, name="tiny-a14b-low"),
    )
