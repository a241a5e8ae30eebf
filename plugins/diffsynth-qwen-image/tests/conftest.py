"""Shared fixtures: the tiny presets written once per session in the real repos' layout under a
model base path (`<base>/Qwen/Qwen-Image`, `<base>/Qwen/Qwen-Image-Edit`)."""

from __future__ import annotations

import os

# One intra-op thread, set before torch loads: tiny models run ~30x faster so on 2 shared cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path

import pytest
from diffsynth_qwen_image import FAMILY, plugin
from diffsynth_qwen_image.spec import NAME

from diffsynth.config import TrainConfig
from diffsynth.types import RunContext
from diffsynth.testing.contract import offline_files, offline_model_files
from diffsynth.testing.fixtures import model_base_fixture, random_image
from diffsynth.types import ModelFiles, Sample


#: every variant's transformer repo and the preset `models init` writes there
REPOS = {
    "Qwen/Qwen-Image": "tiny",
    "Qwen/Qwen-Image-Edit": "tiny-edit",
    "Qwen/Qwen-Image-2512": "tiny-2512",
    "Qwen/Qwen-Image-Edit-2509": "tiny-edit-2509",
    "Qwen/Qwen-Image-Edit-2511": "tiny-edit-2511",
}


model_base = model_base_fixture(plugin.init_model, REPOS)


@pytest.fixture(scope="session")
def tiny_dir(model_base) -> Path:
    return model_base / "Qwen" / "Qwen-Image"


@pytest.fixture(scope="session")
def tiny_edit_dir(model_base) -> Path:
    return model_base / "Qwen" / "Qwen-Image-Edit"


resolve = offline_files  # (source, files) of one repo:glob, by the core's rules

def model_files(base: Path, variant: str) -> ModelFiles:
    """What `train` resolves offline under `base` for the variant's default sources."""
    return offline_model_files(FAMILY, base, variant)


def config(edit: bool = False, zero_cond_t: bool = False) -> RunContext:
    """What the family's hooks get for a run with these flags."""
    run = TrainConfig(dtype="fp32", extra_inputs="edit_image" if edit else None, family=NAME)
    return RunContext.for_run(run, FAMILY.options_value({"zero_cond_t": zero_cond_t}))


image = random_image


def sample(edit: bool = False) -> Sample:
    fields = {"image": image(0), "prompt": "a red cat"}
    if edit:
        fields["edit_image"] = image(1, 48, 32)
    return Sample(index=0, fields=fields)


EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "data"


def write_multi_reference_dataset(folder: Path) -> dict:
    """DiffSynth-Studio's Edit-2509 dataset shape from the repo's edit examples: metadata.json
    whose `edit_image` is a list (the picture to edit, then a colour reference); returns the
    TrainConfig fields (and flags) of its seed command."""
    import json
    import shutil

    shutil.copytree(EXAMPLES / "edit" / "images", folder / "images", dirs_exist_ok=True)
    rows = json.loads((EXAMPLES / "edit" / "metadata.json").read_text())
    for row in rows:
        colour = row["image"].split("/")[-1].split("_")[0]
        reference = next(p.name for p in sorted((folder / "images").glob(f"{colour}_*")) if p.name not in row["image"])
        row["edit_image"] = [row["edit_image"], f"images/{reference}"]
        row["prompt"] = "make picture 1 the colour of picture 2"
    (folder / "metadata.json").write_text(json.dumps(rows, indent=2))
    return {
        "dataset_base_path": folder, "dataset_metadata_path": folder / "metadata.json", "max_pixels": 4096,
        "data_file_keys": "image,edit_image", "extra_inputs": "edit_image",
    }  # fmt: skip
