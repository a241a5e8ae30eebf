"""DiffSynth-Studio's Wan example command, pasted unchanged (only smaller numbers for CI), run
offline as a subprocess against `models init` tiny presets in the original repos' layout; the
I2V and TI2V variants; and the Wan2.2 T2V A14B experts, each trained on its own timestep range."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import EXAMPLES
from diffsynth_wan import plugin
from diffsynth_wan.spec import A14B_BOUNDARY, A14B_REPO, I2V_REPO, TI2V_REPO
from safetensors.torch import load_file

from diffsynth.testing.cli import run_diffsynth
from diffsynth.testing.seed import assert_finite_loss_log, assert_lora_trained, seed_train_command

T2V_SOURCES = (
    "Wan-AI/Wan2.1-T2V-1.3B:diffusion_pytorch_model*.safetensors,"
    "Wan-AI/Wan2.1-T2V-1.3B:models_t5_umt5-xxl-enc-bf16.pth,"
    "Wan-AI/Wan2.1-T2V-1.3B:Wan2.1_VAE.pth"
)
I2V_SOURCES = T2V_SOURCES.replace("Wan2.1-T2V-1.3B", "Wan2.1-I2V-14B-480P") + (
    ",Wan-AI/Wan2.1-I2V-14B-480P:models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"
)
TI2V_SOURCES = T2V_SOURCES.replace("Wan2.1-T2V-1.3B", "Wan2.2-TI2V-5B").replace("Wan2.1_VAE", "Wan2.2_VAE")
# DiffSynth-Studio's lora/Wan2.2-T2V-A14B.sh: one expert's DiT, the shared umT5 and Wan2.1 VAE
A14B_SOURCES = {
    expert: f"Wan-AI/Wan2.2-T2V-A14B:{expert}/diffusion_pytorch_model*.safetensors,"
    "Wan-AI/Wan2.2-T2V-A14B:models_t5_umt5-xxl-enc-bf16.pth,Wan-AI/Wan2.2-T2V-A14B:Wan2.1_VAE.pth"
    for expert in ("high_noise_model", "low_noise_model")
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("seed")
    out = run_diffsynth("models", "init", "wan", "models/Wan-AI/Wan2.1-T2V-1.3B", "--preset", "tiny", cwd=root)
    assert out.returncode == 0, out.stderr
    plugin.init_model("tiny-i2v", root / "models" / I2V_REPO, 0)
    plugin.init_model("tiny-ti2v", root / "models" / TI2V_REPO, 0)
    plugin.init_model("tiny-a14b", root / "models" / A14B_REPO, 0)
    return root


def seed_command(output: str, sources: str = T2V_SOURCES, data: Path = EXAMPLES) -> list[str]:
    """examples/wanvideo/model_training/lora/Wan2.1-T2V-1.3B.sh, 480x832 -> 32x32, 5 -> 1 epoch."""
    return seed_train_command("wan", output, sources, data, size=("--height", "32", "--width", "32"), targets="q,k,v,o,ffn.0,ffn.2")


def check_lora(folder: Path, rows: int = 4) -> dict:
    lora = load_file(folder / "epoch-0.safetensors")
    assert_finite_loss_log(folder, rows)
    assert all(k.startswith("diffusion_model.blocks.") for k in lora)
    for name in ("self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o", "cross_attn.q", "ffn.0", "ffn.2"):
        assert f"diffusion_model.blocks.0.{name}.lora_A.weight" in lora, name
    assert_lora_trained(lora)  # it trained
    return lora


def test_seed_t2v_lora_command_on_example_videos(workdir):
    result = run_diffsynth(*seed_command("./models/train/Wan2.1-T2V-1.3B_lora"), cwd=workdir)
    assert result.returncode == 0, result.stderr
    lora = check_lora(workdir / "models/train/Wan2.1-T2V-1.3B_lora")
    assert lora["diffusion_model.blocks.0.self_attn.q.lora_A.weight"].shape[0] == 32


def test_seed_i2v_command(workdir):
    cmd = seed_command("./models/train/i2v", I2V_SOURCES, EXAMPLES / "i2v")
    cmd += ["--data_file_keys", "video,input_image", "--extra_inputs", "input_image"]
    result = run_diffsynth(*cmd, cwd=workdir)
    assert result.returncode == 0, result.stderr
    check_lora(workdir / "models/train/i2v")


def test_i2v_without_an_input_image_column_uses_each_video_first_frame(workdir):
    # DiffSynth's habit: metadata with only video,prompt; input_image is derived, not a column
    cmd = seed_command("./models/train/i2v-first-frame", I2V_SOURCES) + ["--extra_inputs", "input_image"]
    result = run_diffsynth(*cmd, cwd=workdir)
    assert result.returncode == 0, result.stderr
    check_lora(workdir / "models/train/i2v-first-frame")


def test_seed_ti2v_command_uses_the_first_frame(workdir):
    # input_image is not a file key here: the video's first frame is the given frame (DiffSynth's rule)
    cmd = seed_command("./models/train/ti2v", TI2V_SOURCES, EXAMPLES / "i2v") + ["--extra_inputs", "input_image"]
    result = run_diffsynth(*cmd, cwd=workdir)
    assert result.returncode == 0, result.stderr
    check_lora(workdir / "models/train/ti2v")


@pytest.mark.parametrize(
    ("expert", "boundaries"),
    [("high_noise_model", ("--max_timestep_boundary", "0.417", "--min_timestep_boundary", "0")),
     ("low_noise_model", ("--max_timestep_boundary", "1", "--min_timestep_boundary", "0.417"))],
)  # fmt: skip
def test_seed_a14b_expert_commands(workdir, expert, boundaries):
    """lora/Wan2.2-T2V-A14B.sh, both experts, each trained separately on its timestep range."""
    output = f"./models/train/Wan2.2-T2V-A14B_{expert}_lora"
    result = run_diffsynth(*seed_command(output, A14B_SOURCES[expert]), *boundaries, cwd=workdir)
    assert result.returncode == 0, result.stderr
    check_lora(workdir / output)


@pytest.mark.parametrize(("expert", "low", "high"), [("high_noise_model", 0.0, A14B_BOUNDARY), ("low_noise_model", A14B_BOUNDARY, 1.0)])
def test_a14b_expert_boundaries_bound_the_sampled_timesteps(workdir, monkeypatch, expert, low, high):
    """DiffSynth's Wan2.2-T2V-A14B commands: the high-noise expert with --max_timestep_boundary
    0.417, the low-noise one with --min_timestep_boundary 0.417; index fractions from the noisy end."""
    from diffsynth.config import TrainConfig
    from diffsynth.models.sources import MODEL_BASE_ENV, SKIP_DOWNLOAD_ENV
    from diffsynth.plugins import load_registry
    from diffsynth.training.flow_matching import FlowMatchSchedule
    from diffsynth.training.trainer import Trainer

    sampled: list[torch.Tensor] = []
    original = FlowMatchSchedule.sample_training_sigmas

    def record(self, *args, **kwargs):
        sigmas = original(self, *args, **kwargs)
        sampled.append(sigmas)
        return sigmas

    monkeypatch.setattr(FlowMatchSchedule, "sample_training_sigmas", record)
    monkeypatch.setenv(MODEL_BASE_ENV, str(workdir / "models"))
    monkeypatch.setenv(SKIP_DOWNLOAD_ENV, "True")
    config = TrainConfig(
        family="wan", dataset_base_path=str(EXAMPLES), height=32, width=32, num_frames=5, dataset_repeat=8,
        model_id_with_origin_paths=A14B_SOURCES[expert], lora_base_model="dit", lora_target_modules="q,k,v,o,ffn.0,ffn.2",
        lora_rank=4, output_path=str(workdir / f"a14b-{expert}"), min_timestep_boundary=low, max_timestep_boundary=high,
    )  # fmt: skip
    Trainer(load_registry(), config).run()
    sigmas = torch.cat(sampled)
    assert len(sigmas) == 32
    grid = FlowMatchSchedule(shift=5.0).training_sigmas()  # index 0 = the noisiest
    allowed = grid[int(low * 1000) : int(high * 1000)]
    assert all(s in allowed for s in sigmas.tolist())
    boundary = float(grid[417])  # ~0.875: Wan2.2's expert switch at t = 875 under shift 5
    assert boundary == pytest.approx(0.875, abs=1e-3)
    assert (sigmas > boundary).all() if low == 0.0 else (sigmas <= boundary).all()
