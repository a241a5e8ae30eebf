"""Split training (DiffSynth-Studio's --task sft:data_process / sft:train) on the real FLUX.1-dev
tiny preset: stage 2 runs with the encoders' files deleted and writes the same LoRA, bit for bit,
as the one-command --cache_dir run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from diffsynth.cache.testing import check_split_training
from diffsynth.testing.inprocess import run_cli_in_process

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "examples" / "data"
REPO = "black-forest-labs/FLUX.1-dev"
DIT = f"{REPO}:flux1-dev.safetensors"
SOURCES = f"{DIT},{REPO}:text_encoder/model.safetensors,{REPO}:text_encoder_2/,{REPO}:ae.safetensors"


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> Path:
    """./models as `diffsynth models init flux models/<repo> --preset tiny` writes it (once; each
    test deletes the encoders of its own copy)."""
    root = tmp_path_factory.mktemp("init")
    out = run_cli_in_process("models", "init", "flux", f"models/{REPO}", "--preset", "tiny", cwd=root)
    assert out.returncode == 0, out.stderr
    return root / "models"


@pytest.mark.parametrize("batch_size", [1, 2])
def test_split_training_without_encoders_equals_one_command_run(tmp_path, tiny_models, batch_size):
    shutil.copytree(tiny_models, tmp_path / "models")
    command = [
        "train", "flux", "--dataset_base_path", str(DATA), "--dataset_metadata_path", str(DATA / "metadata.csv"),
        "--max_pixels", "4096", "--dataset_repeat", "1", "--model_id_with_origin_paths", SOURCES,
        "--learning_rate", "1e-4", "--num_epochs", "1", "--output_path", "./out",
        "--lora_base_model", "dit", "--lora_rank", "4", "--align_to_opensource_format",
    ]  # fmt: skip
    repo = tmp_path / "models" / REPO
    encoders = [repo / "text_encoder", repo / "text_encoder_2", repo / "ae.safetensors", repo / "tokenizer", repo / "tokenizer_2"]
    runs = check_split_training(tmp_path, command, DIT, encoders, batch_size=batch_size)
    assert "encoding 8 of 8 rows" in runs["stage1"].stderr
