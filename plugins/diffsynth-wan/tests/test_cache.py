"""Split training (DiffSynth-Studio's --task sft:data_process / sft:train) on the real Wan2.1
T2V tiny preset (videos): stage 2 runs with the encoders' files deleted and writes the same LoRA,
bit for bit, as the one-command --cache_dir run."""

from __future__ import annotations

from pathlib import Path

import pytest

from diffsynth.cache.testing import check_split_training
from diffsynth.testing.cli import run_diffsynth

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "examples" / "data" / "video"
REPO = "Wan-AI/Wan2.1-T2V-1.3B"
DIT = f"{REPO}:diffusion_pytorch_model*.safetensors"
SOURCES = f"{DIT},{REPO}:models_t5_umt5-xxl-enc-bf16.pth,{REPO}:Wan2.1_VAE.pth"


@pytest.mark.parametrize("batch_size", [1, 2])
def test_split_training_without_encoders_equals_one_command_run(tmp_path, batch_size):
    out = run_diffsynth("models", "init", "wan", f"models/{REPO}", "--preset", "tiny", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    command = [
        "train", "wan", "--dataset_base_path", str(DATA), "--dataset_metadata_path", str(DATA / "metadata.csv"),
        "--height", "32", "--width", "32", "--num_frames", "5", "--dataset_repeat", "1",
        "--model_id_with_origin_paths", SOURCES, "--learning_rate", "1e-4", "--num_epochs", "1",
        "--output_path", "./out", "--lora_base_model", "dit", "--lora_target_modules", "q,k,v,o,ffn.0,ffn.2", "--lora_rank", "4",
    ]  # fmt: skip
    repo = tmp_path / "models" / REPO
    encoders = [repo / "models_t5_umt5-xxl-enc-bf16.pth", repo / "Wan2.1_VAE.pth", repo / "google"]
    runs = check_split_training(tmp_path, command, DIT, encoders, batch_size=batch_size)
    assert f"encoding {len(runs['rows'])} of {len(runs['rows'])} rows" in runs["stage1"].stderr
