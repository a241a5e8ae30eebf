"""`models init`: the original repos' layout and formats, identified from contents (never names)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import REPOS, resolve
from diffsynth_wan import FAMILY, plugin
from diffsynth_wan.configs import dit_config
from diffsynth_wan.spec import CLIP_FILE, T5_FILE, VAE21_FILE, VAE22_FILE

from diffsynth.errors import UserError
from diffsynth.models.checkpoints import identify
from diffsynth.models.header import read_header


def test_entry_module_is_light():
    code = "import sys, diffsynth_wan; print(sorted(m for m in ('torch','diffusers','transformers','peft') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_original_layout_and_formats(model_base):
    t2v, i2v, ti2v = (model_base / repo for repo, _ in REPOS.values())
    assert (t2v / "diffusion_pytorch_model.safetensors").is_file()  # 1.3B: one file
    for sharded in (i2v, ti2v):
        assert (sharded / "diffusion_pytorch_model.safetensors.index.json").is_file()
        assert len(list(sharded.glob("diffusion_pytorch_model-*-of-*.safetensors"))) > 1
    for repo in (t2v, i2v, ti2v):
        assert json.loads((repo / "config.json").read_text())["_class_name"] == "WanModel"
        assert (repo / T5_FILE).is_file() and (repo / "google" / "umt5-xxl" / "tokenizer.json").is_file()
    assert (t2v / VAE21_FILE).is_file() and (ti2v / VAE22_FILE).is_file() and (i2v / CLIP_FILE).is_file()
    assert not (t2v / CLIP_FILE).exists()
    # plain state dicts of tensors, readable with weights_only
    t5 = torch.load(t2v / T5_FILE, weights_only=True, mmap=True)
    assert t5["blocks.0.ffn.gate.0.weight"].dtype == torch.bfloat16 and "token_embedding.weight" in t5
    size = sum(p.stat().st_size for p in t2v.rglob("*") if p.is_file())
    assert size < 6 * 2**20


def test_original_key_names(model_base):
    t2v, i2v, ti2v = (model_base / repo for repo, _ in REPOS.values())
    dit = read_header([t2v / "diffusion_pytorch_model.safetensors"])
    assert dit.has("blocks.0.self_attn.q.weight", "blocks.0.cross_attn.o.weight", "blocks.0.ffn.0.weight",
                   "blocks.0.norm3.weight", "blocks.0.modulation", "head.modulation", "head.head.weight",
                   "time_projection.1.weight", "text_embedding.0.weight")  # fmt: skip
    i2v_dit = read_header(sorted(i2v.glob("diffusion_pytorch_model-*.safetensors")))
    assert i2v_dit.has("blocks.0.cross_attn.k_img.weight", "blocks.0.cross_attn.norm_k_img.weight", "img_emb.proj.1.weight")
    vae21 = read_header([t2v / VAE21_FILE])
    assert vae21.has("encoder.downsamples.0.residual.0.gamma", "decoder.upsamples.3.resample.1.weight", "conv1.weight")
    vae22 = read_header([ti2v / VAE22_FILE])
    assert vae22.has("encoder.downsamples.0.downsamples.0.residual.0.gamma", "decoder.upsamples.0.upsamples.3.resample.1.weight")
    clip = read_header([i2v / CLIP_FILE])
    assert clip.has("visual.transformer.0.attn.to_qkv.weight", "visual.cls_embedding", "visual.pos_embedding")


@pytest.mark.parametrize(("variant", "in_channels", "image"), [("t2v", 16, False), ("i2v", 36, True), ("ti2v", 48, False)])
def test_variants_identified_from_contents_not_names(model_base, tmp_path, variant, in_channels, image):
    repo, _ = REPOS[variant]
    _, files = resolve(model_base, f"{repo}:diffusion_pytorch_model*.safetensors")
    group = identify(FAMILY, "dit", files)
    assert group.component == "dit"
    cfg = dit_config(group)  # shapes + num_heads from the root config.json
    assert cfg["in_channels"] == in_channels and (cfg["image_dim"] is not None) == image
    # a VAE .pth renamed to anything is still identified by its keys
    renamed = tmp_path / "weights.pth"
    renamed.write_bytes((model_base / repo / (VAE22_FILE if variant == "ti2v" else VAE21_FILE)).read_bytes())
    assert identify(FAMILY, "renamed", [renamed]).component == "vae"


def test_seed_patterns_match(model_base):
    for variant in ("t2v", "i2v", "ti2v"):
        spec = FAMILY.variant(variant)
        for source in spec.model_sources:
            assert resolve(model_base, source)[1], source
        repo, folder = spec.tokenizer_source.rsplit(":", 1)
        assert (model_base / repo / folder).is_dir()


def test_unknown_preset_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="unknown preset"):
        plugin.init_model("huge", tmp_path, 0)
    assert plugin._init_model_hook(family="flux", preset="tiny", directory=tmp_path, seed=0) is None
