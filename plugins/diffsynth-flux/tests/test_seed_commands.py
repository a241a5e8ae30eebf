"""DiffSynth-Studio's own FLUX example commands (examples/flux/model_training/lora|full/*.sh),
pasted unchanged but for smaller numbers, run offline through the CLI's entry point (in-process,
as a subprocess would run them: diffsynth.testing.inprocess) against `models init` tiny presets in
the real repos' layout, from a working directory holding ./models as the commands expect."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from diffsynth.testing.inprocess import run_cli_in_process
from diffsynth.testing.seed import assert_lora_trained, seed_train_command

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "examples" / "data"
TARGETS = "a_to_qkv,b_to_qkv,ff_a.0,ff_a.2,ff_b.0,ff_b.2,a_to_out,b_to_out,proj_out,norm.linear,norm1_a.linear,norm1_b.linear,to_qkv_mlp"
SOURCES = (
    "black-forest-labs/FLUX.1-dev:flux1-dev.safetensors,black-forest-labs/FLUX.1-dev:text_encoder/model.safetensors,"
    "black-forest-labs/FLUX.1-dev:text_encoder_2/,black-forest-labs/FLUX.1-dev:ae.safetensors"
)
KONTEXT_SOURCES = SOURCES.replace(
    "black-forest-labs/FLUX.1-dev:flux1-dev.safetensors", "black-forest-labs/FLUX.1-Kontext-dev:flux1-kontext-dev.safetensors"
)


def run_diffsynth(*args: str, cwd: Path):
    """`diffsynth ARGS` in `cwd` as the seed's shell runs it: offline, models under ./models."""
    return run_cli_in_process(*args, cwd=cwd, env={"DIFFSYNTH_SKIP_DOWNLOAD": "True"}, unset=["DIFFSYNTH_MODEL_BASE_PATH"])


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A working directory with ./models holding both tiny repos, as `models init` writes them
    (the CLI for FLUX.1-dev; the same writer directly for Kontext)."""
    from diffsynth_flux import plugin

    root = tmp_path_factory.mktemp("seed")
    out = run_diffsynth("models", "init", "flux", "models/black-forest-labs/FLUX.1-dev", "--preset", "tiny", cwd=root)
    assert out.returncode == 0, out.stderr
    plugin.init_model("tiny-kontext", root / "models/black-forest-labs/FLUX.1-Kontext-dev", 0)
    return root


def seed_lora_command(output: str, sources: str = SOURCES, data: Path = DATA) -> list[str]:
    return seed_train_command(
        "flux", output, sources, data, targets=TARGETS, extra=("--align_to_opensource_format", "--use_gradient_checkpointing")
    )


def test_seed_lora_command_trains_and_loads_in_flux_pipeline(workdir):
    from diffusers import FluxPipeline

    out_dir = "./models/train/FLUX.1-dev_lora"
    result = run_diffsynth(*seed_lora_command(out_dir), cwd=workdir)
    assert result.returncode == 0, result.stderr
    lora = load_file(workdir / out_dir / "epoch-0.safetensors")
    assert all(k.startswith("transformer.") for k in lora)
    assert_lora_trained(lora)  # it trained
    assert {v.item() for k, v in lora.items() if k.endswith(".alpha")} == {32.0}
    pipe = FluxPipeline.from_pretrained(workdir / "models/black-forest-labs/FLUX.1-dev")
    pipe.load_lora_weights(str(workdir / out_dir / "epoch-0.safetensors"))
    assert pipe.get_list_adapters() == {"transformer": ["default_0"]}


def test_seed_full_dit_command(workdir):
    from diffusers import FluxTransformer2DModel

    cmd = seed_lora_command("./models/train/full")
    cmd = cmd[: cmd.index("--lora_base_model")] + ["--trainable_models", "dit", "--use_gradient_checkpointing"]
    result = run_diffsynth(*cmd, cwd=workdir)
    assert result.returncode == 0, result.stderr
    base = FluxTransformer2DModel.from_pretrained(workdir / "models/black-forest-labs/FLUX.1-dev/transformer")
    trained = load_file(workdir / "models/train/full/epoch-0.safetensors")
    assert set(trained) == set(base.state_dict())
    assert any(not torch.equal(trained[k], v) for k, v in base.state_dict().items())
    base.load_state_dict(trained)  # loads back into the diffusers module as is


def test_seed_kontext_command(workdir, tmp_path):
    """The Kontext example: `--data_file_keys image,kontext_images --extra_inputs kontext_images`."""
    with open(tmp_path / "metadata.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "kontext_images", "prompt"])
        for row in list(csv.DictReader(open(DATA / "edit" / "metadata.csv")))[:4]:
            writer.writerow([str(DATA / "edit" / row["image"]), str(DATA / "edit" / row["edit_image"]), row["prompt"]])
    cmd = seed_lora_command("./models/train/kontext", KONTEXT_SOURCES, tmp_path)
    cmd += ["--data_file_keys", "image,kontext_images", "--extra_inputs", "kontext_images"]
    result = run_diffsynth(*cmd, cwd=workdir)
    assert result.returncode == 0, result.stderr
    lora = load_file(workdir / "models/train/kontext/epoch-0.safetensors")
    assert_lora_trained(lora)
