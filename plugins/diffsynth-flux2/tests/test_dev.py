"""FLUX.2-dev (`--variant dev`, preset `tiny-dev`): the real repo's layout, found by the variant's
default sources and told from klein by its headers; training inputs, guidance and the
transformer call exactly as diffusers' Flux2Pipeline makes them; an exported LoRA loaded by
`Flux2Pipeline.load_lora_weights` gives the trained model's output.

Flux2Pipeline is built from the repo's folders with the processor folder's tokenizer as its
`tokenizer`: PixtralProcessor needs torchvision, not installed here (so `from_pretrained` cannot
check the class model_index.json names), and for text the pipeline only calls
`apply_chat_template`."""

from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pytest
import torch
from conftest import config, model_files, pixels, sample
from diffusers.pipelines.flux2.pipeline_flux2 import format_input
from diffsynth_flux2 import FAMILY, plugin
from diffsynth_flux2.pipeline import MISTRAL3, load_dit
from diffsynth_flux2.spec import DEV, ORIGINAL_FILES, is_mistral3, is_qwen3
from diffsynth_flux2.tiny import TINY_MAX_LENGTH
from safetensors.torch import load_file, save_file
from test_lora_export import RANK, dit_inputs, split, trained_lora
from test_seed_commands import DATA, diffsynth

from diffsynth.cli import main
from diffsynth.errors import UserError
from diffsynth.models.header import read_header
from diffsynth.models.sources import MODEL_BASE_ENV, SKIP_DOWNLOAD_ENV
from diffsynth.testing.sample import read_frames
from diffsynth.types import TrainedWeights


@pytest.fixture(scope="module")
def dev_dir(model_base):
    return model_base / DEV


@pytest.fixture(scope="module")
def pipe(model_base):
    return plugin.load_pipeline(model_files(model_base, "dev"), config(edit=True, guidance=2.5))


def flux2_pipeline(repo, tokenizer):
    """Flux2Pipeline from the repo's folders (what `from_pretrained(repo, tokenizer=...)` loads)."""
    from diffusers import AutoencoderKLFlux2, FlowMatchEulerDiscreteScheduler, Flux2Pipeline, Flux2Transformer2DModel
    from transformers import Mistral3ForConditionalGeneration

    return Flux2Pipeline(
        scheduler=FlowMatchEulerDiscreteScheduler.from_pretrained(repo / "scheduler"),
        vae=AutoencoderKLFlux2.from_pretrained(repo / "vae"),
        text_encoder=Mistral3ForConditionalGeneration.from_pretrained(repo / "text_encoder"),
        tokenizer=tokenizer,
        transformer=Flux2Transformer2DModel.from_pretrained(repo / "transformer"),
    )


@pytest.fixture(scope="module")
def diffusers_pipe(dev_dir, pipe):
    return flux2_pipeline(dev_dir, pipe.tokenizer)


def test_tiny_dev_has_the_real_repo_files_and_is_found_by_its_headers(model_base, dev_dir):
    for name in (ORIGINAL_FILES[DEV], "model_index.json", "scheduler/scheduler_config.json", "vae/config.json",
                 "transformer/config.json", "text_encoder/config.json", "tokenizer/tokenizer.json",
                 "tokenizer/chat_template.jinja", "tokenizer/processor_config.json", "tokenizer/preprocessor_config.json"):  # fmt: skip
        assert (dev_dir / name).is_file(), name
    index = json.loads((dev_dir / "model_index.json").read_text())
    assert index["_class_name"] == "Flux2Pipeline" and index["tokenizer"] == ["transformers", "PixtralProcessor"]
    assert json.loads((dev_dir / "transformer/config.json").read_text())["guidance_embeds"] is True
    groups = model_files(model_base, "dev").components
    assert all(DEV + "/" in str(g.files[0]) for g in groups.values())
    te = read_header(groups["text_encoder"].files)
    assert is_mistral3(te) and not is_qwen3(te) and te.has_prefix("vision_tower.")  # the Pixtral tower is kept
    klein_te = read_header(model_files(model_base).components["text_encoder"].files)
    assert is_qwen3(klein_te) and not is_mistral3(klein_te)
    # BFL's flux2-dev.safetensors (guidance_in.*) loads to the folder's weights
    original = model_files(model_base, sources=(f"{DEV}:{ORIGINAL_FILES[DEV]}",)).components["dit"]
    a, b = load_dit(original, torch.float32), load_dit(groups["dit"], torch.float32)
    assert a.config.guidance_embeds and all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_inputs_match_flux2_pipeline(pipe, diffusers_pipe):
    assert pipe.text_encoder_kind == MISTRAL3 and pipe.guidance == 2.5
    s = sample()
    inputs = plugin.preprocess_inputs(pipe, s, config())
    cond = inputs.conditioning
    # the whole Mistral3ForConditionalGeneration, the system message, layers 10/20/30, as the pipeline
    embeds, text_ids = diffusers_pipe.encode_prompt(s.prompt, max_sequence_length=TINY_MAX_LENGTH)
    torch.testing.assert_close(cond.prompt_embeds, embeds)
    torch.testing.assert_close(cond.text_ids, text_ids[0])
    image_latents = diffusers_pipe._encode_vae_image(pixels(s.fields["image"]), None)
    torch.testing.assert_close(inputs.latents, diffusers_pipe._pack_latents(image_latents))
    torch.testing.assert_close(cond.image_ids, diffusers_pipe._prepare_latent_ids(image_latents)[0])
    # not truncated: the system message and the prompt fit in the tiny preset's 64 tokens
    ids = pipe.tokenizer.apply_chat_template(format_input([s.prompt]), tokenize=True, return_dict=True)["input_ids"][0]
    assert len(ids) < TINY_MAX_LENGTH and ids[-1] == pipe.tokenizer.convert_tokens_to_ids("[/INST]")


def test_prediction_is_the_pipelines_transformer_call_with_its_guidance(pipe, diffusers_pipe):
    inputs = plugin.preprocess_inputs(pipe, sample(references=1), config(edit=True))
    cond = inputs.conditioning
    noisy = torch.randn_like(inputs.latents)
    seen = []
    hook = pipe.dit.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["guidance"]), with_kwargs=True)
    try:
        with torch.no_grad():
            ours = plugin.predict_flow(pipe, inputs, noisy, torch.tensor([0.7]))
    finally:
        hook.remove()
    assert seen[0].dtype == torch.float32 and seen[0].tolist() == [2.5]
    hidden = torch.cat([noisy, cond.reference_latents], dim=1)
    with torch.no_grad():  # Flux2Pipeline.__call__'s call: guidance = torch.full([1], 2.5, float32).expand(B)
        theirs = diffusers_pipe.transformer(
            hidden_states=hidden, timestep=torch.tensor([700.0]) / 1000, guidance=torch.full([1], 2.5).expand(1),
            encoder_hidden_states=cond.prompt_embeds, txt_ids=cond.text_ids[None], img_ids=cond.image_ids[None],
            return_dict=False,
        )[0][:, : noisy.shape[1]]  # fmt: skip
    torch.testing.assert_close(ours, theirs)


def test_lora_loads_in_flux2_pipeline(dev_dir, tmp_path):
    from diffusers import Flux2Pipeline, Flux2Transformer2DModel

    transformer = Flux2Transformer2DModel.from_pretrained(dev_dir / "transformer")
    base = copy.deepcopy(transformer)
    call = dict(dit_inputs(base), guidance=torch.full([1], 4.0))
    trained, peft_keys = trained_lora(base, 8.0)
    with torch.no_grad():
        base_out, trained_out = base(**call)[0], trained(**call)[0]
    assert not torch.allclose(trained_out, base_out, atol=1e-4)
    (out,) = split(TrainedWeights("lora", {"dit": peft_keys}, lora_rank=RANK, lora_alpha=8.0), config())
    path = tmp_path / "lora.safetensors"
    save_file(out.tensors, str(path), metadata=out.metadata)
    pipe = Flux2Pipeline(scheduler=None, vae=None, text_encoder=None, tokenizer=None, transformer=transformer)
    pipe.load_lora_weights(str(path))
    with torch.no_grad():
        torch.testing.assert_close(pipe.transformer(**call)[0], trained_out, atol=1e-5, rtol=1e-5)


def test_a_klein_tokenizer_for_the_dev_encoder_is_refused_in_one_line(model_base):
    from diffsynth.config import TrainConfig
    from diffsynth.models.resolve import resolve_model_files
    from diffsynth.models.sources import DownloadSettings

    sources = ",".join(FAMILY.variant("dev").model_sources)
    klein = FAMILY.variant("klein-4b").tokenizer_source
    flags = TrainConfig(model_id_with_origin_paths=sources, tokenizer_path=klein)
    files = resolve_model_files(FAMILY, flags, DownloadSettings.offline(model_base))
    with pytest.raises(UserError, match="pass --variant dev"):
        plugin.load_pipeline(files, config())


# DiffSynth-Studio's examples/flux2/model_training/lora/FLUX.2-dev.sh: split training, the
# encoders' pass (stage 1) then the DiT's from its cache (stage 2), pasted but for smaller numbers
# and no --dataset_num_workers; the tokenizer folder follows the FLUX.2-dev repo the sources name.
DEV_TARGETS = "to_q,to_k,to_v,add_q_proj,add_k_proj,add_v_proj,to_qkv_mlp_proj"
DEV_COMMON = (
    "--max_pixels", "4096", "--learning_rate", "1e-4", "--num_epochs", "1", "--remove_prefix_in_ckpt", "pipe.dit.",
    "--lora_base_model", "dit", "--lora_target_modules", DEV_TARGETS, "--lora_rank", "32", "--use_gradient_checkpointing",
)  # fmt: skip
DEV_STAGE_1 = (
    "train", "flux2", "--dataset_base_path", str(DATA), "--dataset_metadata_path", str(DATA / "metadata.csv"),
    "--dataset_repeat", "1",
    "--model_id_with_origin_paths", f"{DEV}:text_encoder/*.safetensors,{DEV}:vae/diffusion_pytorch_model.safetensors",
    "--output_path", "./models/train/FLUX.2-dev-LoRA-splited-cache", *DEV_COMMON, "--task", "sft:data_process",
)  # fmt: skip
DEV_STAGE_2 = (
    "train", "flux2", "--dataset_base_path", "./models/train/FLUX.2-dev-LoRA-splited-cache", "--dataset_repeat", "1",
    "--model_id_with_origin_paths", f"{DEV}:transformer/*.safetensors",
    "--output_path", "./models/train/FLUX.2-dev-LoRA-splited", *DEV_COMMON, "--task", "sft:train",
)  # fmt: skip


def test_seed_split_lora_command_and_diffsynth_sample_through_flux2_pipeline(model_base, tmp_path, monkeypatch):
    shutil.copytree(model_base / DEV, tmp_path / "models" / DEV)  # ./models, the default base path
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(MODEL_BASE_ENV, raising=False)
    monkeypatch.setenv(SKIP_DOWNLOAD_ENV, "True")
    monkeypatch.delenv("DIFFSYNTH_DEBUG", raising=False)
    diffsynth(*DEV_STAGE_1)
    diffsynth(*DEV_STAGE_2)
    path = tmp_path / "models/train/FLUX.2-dev-LoRA-splited/epoch-0.safetensors"
    lora = load_file(path)
    assert "diffusion_model.double_blocks.0.txt_attn.qkv.lora_B.weight" in lora and "diffusion_model.single_blocks.1.linear1.lora_A.weight" in lora
    assert any(k.endswith("lora_B.weight") and v.abs().sum() > 0 for k, v in lora.items())

    # `diffsynth sample flux2 --variant dev` runs Flux2Pipeline: its embedded guidance counts, and the
    # LoRA, loaded by Flux2Pipeline.load_lora_weights, changes the image
    args = ("sample", "flux2", "--variant", "dev", "--prompt", "a red square", "--height", "32", "--width", "32", "--steps", "2")
    outputs = {}
    for name, extra in {"base": (), "guidance": ("--guidance", "1.5"), "lora": ("--lora", str(path))}.items():
        diffsynth(*args, "--output", f"{name}.png", *extra)
        outputs[name] = read_frames(tmp_path / f"{name}.png")
    assert outputs["base"].shape == (1, 32, 32, 3) and outputs["base"].std() > 0
    assert not np.array_equal(outputs["guidance"], outputs["base"]) and not np.array_equal(outputs["lora"], outputs["base"])
    with pytest.raises(SystemExit) as refused:  # Flux2Pipeline has no CFG
        main([*args, "--cfg_scale", "3"])
    assert refused.value.code not in (None, 0)
