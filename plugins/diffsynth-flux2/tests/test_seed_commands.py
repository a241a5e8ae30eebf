"""DiffSynth-Studio's FLUX.2-klein LoRA example command (examples/flux2/model_training/lora/
FLUX.2-klein-4B.sh), pasted unchanged but for smaller numbers, run offline through the CLI's
entry point (`diffsynth.cli.main`, in this process: a subprocess would only add the start-up the
core's own CLI tests cover) against the tiny preset at the default `./models` base path; the LoRA
it writes loads in Flux2KleinPipeline and changes the image."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
from diffsynth_flux2.spec import KLEIN_4B
from safetensors.torch import load_file

from diffsynth.cli import main
from diffsynth.models.sources import MODEL_BASE_ENV, SKIP_DOWNLOAD_ENV
from diffsynth.testing.seed import assert_lora_trained, seed_train_command

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "examples" / "data"
REPO = KLEIN_4B
SOURCES = f"{REPO}:text_encoder/*.safetensors,{REPO}:transformer/*.safetensors,{REPO}:vae/diffusion_pytorch_model.safetensors"
# the real command names single_transformer_blocks.0..19.attn.to_out (FLUX.2-klein-4B's 20 single
# blocks); the tiny preset has 2, and a named target that matches nothing is an error
SINGLE_OUTPUTS = ",".join(f"single_transformer_blocks.{i}.attn.to_out" for i in range(2))
TARGETS = "to_q,to_k,to_v,to_out.0,add_q_proj,add_k_proj,add_v_proj,to_add_out,linear_in,linear_out,to_qkv_mlp_proj," + SINGLE_OUTPUTS


def diffsynth(*args: str) -> None:
    """`diffsynth ARGS` as the shell runs it; a non-zero exit fails the test."""
    try:
        main(list(args))
    except SystemExit as exc:
        assert exc.code in (None, 0), f"diffsynth exited with {exc.code}"


def test_seed_lora_command_trains_and_changes_flux2_klein_pipeline_output(tmp_path, model_base, monkeypatch):
    from diffusers import Flux2KleinPipeline

    # ./models/<repo> as `models init flux2 ... --preset tiny` writes it (the session's copy)
    shutil.copytree(model_base / REPO, tmp_path / "models" / REPO)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(MODEL_BASE_ENV, raising=False)  # the default base path, ./models
    monkeypatch.setenv(SKIP_DOWNLOAD_ENV, "True")
    monkeypatch.delenv("DIFFSYNTH_DEBUG", raising=False)
    output = "./models/train/FLUX.2-klein-4B_lora"
    diffsynth(*seed_train_command(
        "flux2", output, SOURCES, DATA, targets=TARGETS,
        extra=("--tokenizer_path", f"{REPO}:tokenizer/", "--use_gradient_checkpointing"),
    ))
    path = tmp_path / output / "epoch-0.safetensors"
    lora = load_file(path)
    assert all(k.startswith("diffusion_model.") for k in lora)
    assert "diffusion_model.single_blocks.1.linear2.lora_B.weight" in lora  # the single blocks' outputs are trained
    assert_lora_trained(lora)  # it trained

    pipe = Flux2KleinPipeline.from_pretrained(tmp_path / "models" / REPO)
    call = dict(prompt="a red square", height=32, width=32, num_inference_steps=2, max_sequence_length=64, output_type="np")
    before = pipe(generator=torch.Generator().manual_seed(0), **call).images
    pipe.load_lora_weights(str(path))
    assert pipe.get_list_adapters() == {"transformer": ["default_0"]}
    after = pipe(generator=torch.Generator().manual_seed(0), **call).images
    assert np.abs(after - before).max() > 1e-4
