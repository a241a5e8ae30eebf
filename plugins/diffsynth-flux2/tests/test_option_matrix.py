"""Every generic train option on FLUX.2 klein text-to-image (diffsynth.testing.matrix).

Open (see the report in docs/flux2.md): a batch of two rows trains a different LoRA than the same
two rows accumulated, and with reference images (`--extra_inputs edit_image`) gradient
checkpointing, block swap and two processes do not reproduce the plain run's LoRA; that case
is left out until they do, and the batch cell is a strict expected failure so a fix shows."""

from pathlib import Path

import pytest

from diffsynth.testing.matrix import MatrixCase, OptionMatrix

DATA = Path(__file__).resolve().parents[3] / "examples" / "data"


class TestFlux2Options(OptionMatrix):
    family = "flux2"
    cases = (MatrixCase("tiny", options={"dataset_base_path": DATA, "max_pixels": 4096}),)

    @pytest.mark.xfail(strict=True, reason="open: batched and accumulated LoRAs differ (losses 3.2796 vs 3.2751)")
    def test_batch_of_two_equals_two_accumulated_samples(self, workspace, case) -> None:
        super().test_batch_of_two_equals_two_accumulated_samples(workspace, case)
