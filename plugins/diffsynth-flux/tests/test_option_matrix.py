"""Every generic train option on FLUX.1-dev and FLUX.1-Kontext (diffsynth.testing.matrix)."""

import csv
from pathlib import Path

from diffsynth.testing.matrix import MatrixCase, OptionMatrix, image_options

DATA = Path(__file__).resolve().parents[3] / "examples" / "data"


def kontext_dataset(folder: Path) -> dict:
    """The edit examples with the reference image in Kontext's `kontext_images` column."""
    with open(folder / "metadata.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "kontext_images", "prompt"])
        for row in csv.DictReader(open(DATA / "edit" / "metadata.csv")):
            writer.writerow([str(DATA / "edit" / row["image"]), str(DATA / "edit" / row["edit_image"]), row["prompt"]])
    return {"dataset_base_path": folder, "data_file_keys": "image,kontext_images", "extra_inputs": "kontext_images"}


class TestFluxOptions(OptionMatrix):
    family = "flux"
    cases = (
        MatrixCase("tiny", options=image_options(DATA)),
        MatrixCase("tiny-kontext", variant="kontext", options={"max_pixels": 4096}, make_dataset=kontext_dataset),
    )
