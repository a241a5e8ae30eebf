"""DiffSynth-Studio's own Qwen-Image example commands, pasted unchanged (only smaller numbers for
CI), run offline as subprocesses against `models init` tiny presets in the real repos' layout."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import REPOS, write_multi_reference_dataset

from diffsynth.testing.cli import run_diffsynth
from diffsynth.testing.seed import assert_finite_loss_log, assert_lora_trained, seed_train_command

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "examples" / "data"
TARGETS = "to_q,to_k,to_v,add_q_proj,add_k_proj,add_v_proj,to_out.0,to_add_out,img_mlp.net.2,img_mod.1,txt_mlp.net.2,txt_mod.1"
BASE_SOURCES = (
    "Qwen/Qwen-Image:transformer/diffusion_pytorch_model*.safetensors,"
    "Qwen/Qwen-Image:text_encoder/model*.safetensors,"
    "Qwen/Qwen-Image:vae/diffusion_pytorch_model.safetensors"
)
EDIT_SOURCES = BASE_SOURCES.replace("Qwen/Qwen-Image:transformer", "Qwen/Qwen-Image-Edit:transformer")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, model_base) -> Path:
    """A working directory with ./models holding every tiny repo, as `models init` writes them
    (the variants' are copies of the session's presets: `models init` itself runs twice)."""
    root = tmp_path_factory.mktemp("seed")
    for repo, preset in REPOS.items():
        if preset in ("tiny", "tiny-edit"):
            out = run_diffsynth("models", "init", "qwen-image", f"models/{repo}", "--preset", preset, cwd=root)
            assert out.returncode == 0, out.stderr
        else:
            shutil.copytree(model_base / repo, root / "models" / repo)
    return root


def seed_lora_command(metadata: str, output: str, sources: str = BASE_SOURCES) -> list[str]:
    return seed_train_command(
        "qwen-image", output, sources, DATA, metadata, targets=TARGETS,
        extra=("--use_gradient_checkpointing", "--dataset_num_workers", "0", "--find_unused_parameters"),
    )


@pytest.mark.parametrize("metadata", ["metadata.csv", "metadata.json", "metadata.jsonl"])
def test_seed_lora_command_trains_and_exports(workdir, metadata):
    out_dir = f"./models/train/lora-{metadata}"
    result = run_diffsynth(*seed_lora_command(str(DATA / metadata), out_dir), cwd=workdir)
    assert result.returncode == 0, result.stderr
    lora = load_file(workdir / out_dir / "epoch-0.safetensors")
    assert_finite_loss_log(workdir / out_dir, rows=len((DATA / "metadata.jsonl").read_text().splitlines()))
    assert all(k.startswith("diffusion_model.transformer_blocks.") for k in lora)
    modules = {k.rsplit(".", 2)[0] for k in lora if k.endswith("lora_A.weight")}
    assert all(any(m.endswith("." + t) for m in modules) for t in TARGETS.split(","))  # every target wrapped
    assert_lora_trained(lora)  # it trained


def test_seed_lora_loads_in_diffusers_pipeline(workdir):
    from diffusers import QwenImagePipeline

    out_dir = "./models/train/lora-diffusers"
    result = run_diffsynth(*seed_lora_command(str(DATA / "metadata.csv"), out_dir), cwd=workdir)
    assert result.returncode == 0, result.stderr
    pipe = QwenImagePipeline.from_pretrained(workdir / "models/Qwen/Qwen-Image")
    pipe.load_lora_weights(str(workdir / out_dir / "epoch-0.safetensors"))
    assert pipe.get_list_adapters() == {"transformer": ["default_0"]}


def test_seed_full_dit_command(workdir):
    cmd = seed_lora_command(str(DATA / "metadata.csv"), "./models/train/full")
    cmd = cmd[: cmd.index("--lora_base_model")] + ["--trainable_models", "dit", "--use_gradient_checkpointing"]
    result = run_diffsynth(*cmd, cwd=workdir)
    assert result.returncode == 0, result.stderr
    from diffusers import QwenImageTransformer2DModel

    base = QwenImageTransformer2DModel.from_pretrained(workdir / "models/Qwen/Qwen-Image/transformer")
    trained = load_file(workdir / "models/train/full/epoch-0.safetensors")
    assert set(trained) == set(base.state_dict())
    base.load_state_dict(trained)  # loads back into the diffusers module as is
    assert any(not torch.equal(trained[k], v) for k, v in
               QwenImageTransformer2DModel.from_pretrained(workdir / "models/Qwen/Qwen-Image/transformer").state_dict().items())


def test_seed_edit_command(workdir):
    cmd = seed_lora_command(str(DATA / "edit" / "metadata.csv"), "./models/train/edit", EDIT_SOURCES)
    cmd[cmd.index("--dataset_base_path") + 1] = str(DATA / "edit")
    cmd += ["--data_file_keys", "image,edit_image", "--extra_inputs", "edit_image"]
    result = run_diffsynth(*cmd, cwd=workdir)
    assert result.returncode == 0, result.stderr
    lora = load_file(workdir / "models/train/edit/epoch-0.safetensors")
    assert_lora_trained(lora)


def dit_inputs(image_tokens: int) -> dict:
    """One DiT call of an image and a reference of 2x2 tokens each."""
    g = torch.Generator().manual_seed(0)
    return dict(
        hidden_states=torch.randn(1, 4 * image_tokens, 64, generator=g), encoder_hidden_states=torch.randn(1, 7, 32, generator=g),
        timestep=torch.tensor([0.5]), img_shapes=[[(1, 2, 2)] * image_tokens], return_dict=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("repo", "extra"),
    [
        ("Qwen/Qwen-Image-2512", []),
        ("Qwen/Qwen-Image-Edit-2509", ["--data_file_keys", "image,edit_image", "--extra_inputs", "edit_image"]),
        ("Qwen/Qwen-Image-Edit-2511", ["--data_file_keys", "image,edit_image", "--extra_inputs", "edit_image", "--zero_cond_t"]),
    ],
)
def test_seed_variant_lora_command_trains_and_loads_in_its_diffusers_pipeline(workdir, tmp_path, repo, extra):
    """DiffSynth-Studio's lora/Qwen-Image-2512.sh, Qwen-Image-Edit-2509.sh (metadata.json with a
    list of edit images) and Qwen-Image-Edit-2511.sh (+ --zero_cond_t), offline; the LoRA loads
    in the pipeline class of the repo's model_index.json and changes the transformer's output."""
    import diffusers

    edit = bool(extra)
    data = write_multi_reference_dataset(tmp_path) if edit else {"dataset_base_path": DATA}
    out_dir = f"./models/train/{repo.split('/')[1]}_lora"
    cmd = seed_lora_command(str(data.get("dataset_metadata_path", DATA / "metadata.csv")), out_dir, BASE_SOURCES.replace("Qwen/Qwen-Image:transformer", f"{repo}:transformer"))
    cmd[cmd.index("--dataset_base_path") + 1] = str(data["dataset_base_path"])
    result = run_diffsynth(*cmd, *extra, cwd=workdir)
    assert result.returncode == 0, result.stderr
    lora = workdir / out_dir / "epoch-0.safetensors"
    assert_lora_trained(load_file(lora))

    folder = workdir / "models" / repo
    pipeline_class = json.loads((folder / "model_index.json").read_text())["_class_name"]
    assert pipeline_class == ("QwenImageEditPlusPipeline" if edit else "QwenImagePipeline")
    transformer = diffusers.QwenImageTransformer2DModel.from_pretrained(folder / "transformer")
    assert transformer.config.zero_cond_t == repo.endswith("2511")
    components = dict(scheduler=None, vae=None, text_encoder=None, tokenizer=None, transformer=transformer)
    pipe = getattr(diffusers, pipeline_class)(**components, **({"processor": None} if edit else {}))
    kwargs = dit_inputs(2 if edit else 1)
    with torch.no_grad():
        before = pipe.transformer(**kwargs)[0]
        pipe.load_lora_weights(str(lora))
        after = pipe.transformer(**kwargs)[0]
    assert pipe.get_list_adapters() == {"transformer": ["default_0"]}
    assert (after - before).abs().max() > 1e-6
