"""DiffSynth-Studio's own Z-Image LoRA command (examples/z_image/model_training/lora/Z-Image.sh),
pasted unchanged but for smaller numbers, run offline through the CLI's entry point (in process: a
subprocess would double the test's time) against the tiny presets in the real repos' layout under
./models; the LoRA it writes loads unchanged in diffusers'
ZImagePipeline and changes its output."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from diffsynth.testing.sample import run_in_process
from diffsynth.testing.seed import assert_finite_loss_log, assert_lora_trained, seed_train_command

DATA = Path(__file__).resolve().parents[3] / "examples" / "data"
TARGETS = "to_q,to_k,to_v,to_out.0,w1,w2,w3"
SOURCES = (
    "Tongyi-MAI/Z-Image:transformer/*.safetensors,"
    "Tongyi-MAI/Z-Image-Turbo:text_encoder/*.safetensors,"
    "Tongyi-MAI/Z-Image-Turbo:vae/diffusion_pytorch_model.safetensors"
)


def seed_lora_command(output: str, targets: str = TARGETS) -> list[str]:
    return seed_train_command(
        "z-image", output, SOURCES, DATA, targets=targets, extra=("--use_gradient_checkpointing", "--dataset_num_workers", "0")
    )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, model_base) -> Path:
    root = tmp_path_factory.mktemp("seed")
    (root / "models").symlink_to(model_base)  # the seed's ./models holding both tiny repos
    return root


def test_seed_lora_command_trains_and_loads_in_diffusers(workdir):
    from diffusers import ZImagePipeline

    run_in_process(workdir / "models", workdir, *seed_lora_command("./models/train/Z-Image_lora"))
    out = workdir / "models/train/Z-Image_lora"
    lora = load_file(out / "epoch-0.safetensors")
    assert_finite_loss_log(out, rows=len((DATA / "metadata.jsonl").read_text().splitlines()))
    modules = {k.rsplit(".", 2)[0] for k in lora if k.endswith("lora_A.weight")}
    assert all(k.startswith("diffusion_model.") for k in lora)
    assert all(any(m.endswith("." + t) for m in modules) for t in TARGETS.split(","))  # every target wrapped
    assert any(m.startswith("diffusion_model.noise_refiner.") for m in modules)  # refiners too, as peft matches
    assert_lora_trained(lora)  # it trained

    pipe = ZImagePipeline.from_pretrained(workdir / "models/Tongyi-MAI/Z-Image")
    x = [torch.randn(16, 1, 4, 4, generator=torch.Generator().manual_seed(0))]
    cap = [torch.randn(5, 32, generator=torch.Generator().manual_seed(1))]
    with torch.no_grad():
        before = pipe.transformer(x, torch.tensor([0.5]), cap, return_dict=False)[0][0]
        pipe.load_lora_weights(str(out / "epoch-0.safetensors"))
        after = pipe.transformer(x, torch.tensor([0.5]), cap, return_dict=False)[0][0]
    assert pipe.get_list_adapters() == {"transformer": ["default_0"]}
    assert not torch.allclose(before, after, atol=1e-6)


def test_turbo_example_targets_that_z_image_lacks_are_refused_in_one_line(model_base, tmp_path, capsys):
    """DiffSynth-Studio's Z-Image-Turbo example names add_q_proj/add_k_proj/add_v_proj, which no
    Z-Image module has (DiffSynth-Studio ignores them silently); diffsynth says so."""
    cmd = seed_lora_command(str(tmp_path / "out"), "to_q,to_k,to_v,add_q_proj,add_k_proj,add_v_proj")
    cmd[cmd.index("--model_id_with_origin_paths") + 1] = SOURCES.replace("Z-Image:transformer", "Z-Image-Turbo:transformer")
    with pytest.raises(SystemExit):
        run_in_process(model_base, tmp_path, *cmd)
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("error: --lora_target_modules: add_q_proj,add_k_proj,add_v_proj matches no module of dit")
