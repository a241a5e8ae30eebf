"""The tiny Wan2.2 T2V A14B preset: Wan-AI/Wan2.2-T2V-A14B's layout (two expert folders, each a
sharded original-key DiT with its own config.json; umT5, Wan2.1 VAE and tokenizer at the root),
both experts loaded through the `a14b-high` / `a14b-low` variants as different modules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import config as train_config
from conftest import model_files, resolve
from diffsynth_wan import FAMILY, plugin
from diffsynth_wan.spec import A14B_EXPERTS, A14B_REPO, CLIP_FILE, T5_FILE, VAE21_FILE, VAE22_FILE
from safetensors.torch import load_file
from test_contract import WanContract

from diffsynth.models.header import read_header
from diffsynth.testing.cli import run_diffsynth


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """Written by the CLI, as a user would: `diffsynth models init wan DIR --preset tiny-a14b`."""
    root = tmp_path_factory.mktemp("a14b")
    out = run_diffsynth("models", "init", "wan", str(root / A14B_REPO), "--preset", "tiny-a14b", cwd=root)
    assert out.returncode == 0, out.stderr
    return root


def _expert_state(repo: Path, expert: str) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for shard in sorted((repo / expert).glob("diffusion_pytorch_model-*-of-*.safetensors")):
        state.update(load_file(shard))
    return state


def test_original_a14b_layout(base):
    repo = base / A14B_REPO
    for expert in A14B_EXPERTS:
        folder = repo / expert
        cfg = json.loads((folder / "config.json").read_text())
        assert cfg["_class_name"] == "WanModel" and cfg["model_type"] == "t2v" and cfg["in_dim"] == cfg["out_dim"] == 16
        index = json.loads((folder / "diffusion_pytorch_model.safetensors.index.json").read_text())
        shards = sorted(folder.glob("diffusion_pytorch_model-*-of-*.safetensors"))
        assert len(shards) > 1 and {s.name for s in shards} == set(index["weight_map"].values())
    # the root holds no DiT of its own, only the shared files (A14B uses the 16-channel Wan2.1 VAE)
    assert not list(repo.glob("diffusion_pytorch_model*")) and not (repo / "config.json").exists()
    assert (repo / T5_FILE).is_file() and (repo / "google" / "umt5-xxl" / "tokenizer.json").is_file()
    assert (repo / VAE21_FILE).is_file() and not (repo / VAE22_FILE).exists() and not (repo / CLIP_FILE).exists()
    assert read_header([repo / VAE21_FILE]).shape("conv2.weight")[0] == 16
    assert json.loads((repo / "configuration.json").read_text())["task"] == "text-to-video"


def test_experts_have_the_same_keys_and_different_weights(base):
    high, low = (_expert_state(base / A14B_REPO, e) for e in A14B_EXPERTS)
    assert set(high) == set(low) and "blocks.0.self_attn.q.weight" in high and "head.head.weight" in high
    differing = [k for k in high if not torch.equal(high[k], low[k])]
    # every randomly initialised tensor differs (norm weights start at ones, biases at zeros in both)
    assert "patch_embedding.weight" in differing and "blocks.0.self_attn.q.weight" in differing
    assert "blocks.2.ffn.0.weight" in differing and "head.head.weight" in differing


@pytest.mark.parametrize(("variant", "expert"), [("a14b-high", A14B_EXPERTS[0]), ("a14b-low", A14B_EXPERTS[1])])
def test_variant_sources_pick_one_expert(base, variant, expert):
    spec = FAMILY.variant(variant)
    dit_source = spec.model_sources[0]
    _, files = resolve(base, dit_source)
    assert files and all(f.parent.name == expert for f in files)
    for source in spec.model_sources[1:]:
        assert resolve(base, source)[1], source
    assert (base / A14B_REPO / spec.tokenizer_source.rsplit(":", 1)[1]).is_dir()


def test_both_experts_load_as_different_modules(base):
    high = plugin.load_pipeline(model_files(base, "a14b-high"), train_config())
    low = plugin.load_pipeline(model_files(base, "a14b-low"), train_config())
    assert high.mode == low.mode == "t2v" and high.text_len == low.text_len == 8  # the expert's own config.json
    assert high.vae.config.z_dim == 16 and not high.vae.config.is_residual
    assert high.dit is not low.dit
    high_state, low_state = high.dit.state_dict(), low.dit.state_dict()
    assert set(high_state) == set(low_state)
    assert not torch.equal(high_state["blocks.0.attn1.to_q.weight"], low_state["blocks.0.attn1.to_q.weight"])
    # each module holds its own folder's weights
    for pipe, expert in ((high, A14B_EXPERTS[0]), (low, A14B_EXPERTS[1])):
        original = _expert_state(base / A14B_REPO, expert)
        torch.testing.assert_close(pipe.dit.state_dict()["patch_embedding.weight"], original["patch_embedding.weight"])
        torch.testing.assert_close(pipe.dit.state_dict()["proj_out.weight"], original["head.head.weight"])


class TestWanA14BHighContract(WanContract):
    """The core's family contract on the high-noise expert (`models init` of tiny-a14b into the
    variant's repo; the DiT from `high_noise_model/`)."""

    preset = "tiny-a14b"
    variant = "a14b-high"
