"""Every generic train option on FLUX.2 klein (diffsynth.testing.matrix): text-to-image, and with
reference images (`--extra_inputs edit_image`; its own case name, since both cases use the `tiny`
preset and the matrix keys its cached runs and output folders by case name). In CI the
reference case runs FP8 on the DiT only (the frozen text encoder and VAE load and run as in the
text-to-image case); its second trained module is the text encoder. FLUX.2-dev (`tiny-dev`,
`--variant dev`) runs its FP8 cells in CI: the DiT with its guidance embedding and the Mistral 3
text encoder."""

from pathlib import Path

from diffsynth.testing.matrix import MatrixCase, OptionMatrix, image_options

DATA = Path(__file__).resolve().parents[3] / "examples" / "data"


class TestFlux2Options(OptionMatrix):
    family = "flux2"
    cases = (
        MatrixCase("tiny", options=image_options(DATA)),
        MatrixCase("tiny", name="tiny-edit", options=image_options(DATA, "edit_image"), components=("dit",), second_trained="text_encoder"),
        MatrixCase("tiny-dev", variant="dev", options=image_options(DATA),
                   components=("dit", "text_encoder")),
    )  # fmt: skip
