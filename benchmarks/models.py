"""Models the benchmarks train or load: the Qwen-Image tiny preset (written by the plugin's
`models init`), and medium DiT configs of the same architecture with random weights."""

from __future__ import annotations

import shutil
from pathlib import Path

REPO = "Qwen/Qwen-Image"
SOURCES = (
    f"{REPO}:transformer/diffusion_pytorch_model*.safetensors,"
    f"{REPO}:text_encoder/model*.safetensors,"
    f"{REPO}:vae/diffusion_pytorch_model.safetensors"
)

_BASE = dict(patch_size=2, in_channels=64, out_channels=16, guidance_embeds=False)
#: Step-time config (figure 1): width 512, 4 blocks, ~38M parameters; text width of the tiny
#: text encoder so it drops into the tiny preset.
STEP_DIT = dict(_BASE, num_layers=4, attention_head_dim=64, num_attention_heads=8, joint_attention_dim=32, axes_dims_rope=(8, 28, 28))
#: Weights config (figures 4 and 5): width 1024, 7 blocks, ~260M parameters, ~1.0 GB in fp32.
WEIGHTS_DIT = dict(_BASE, num_layers=7, attention_head_dim=128, num_attention_heads=8, joint_attention_dim=1024, axes_dims_rope=(16, 56, 56))
WEIGHTS_DIT_QUICK = dict(_BASE, num_layers=1, attention_head_dim=64, num_attention_heads=4, joint_attention_dim=256, axes_dims_rope=(8, 28, 28))
#: Activation config (figure 4): width 256, 8 blocks; activations dominate the weights.
ACTIVATION_DIT = dict(_BASE, num_layers=8, attention_head_dim=64, num_attention_heads=4, joint_attention_dim=256, axes_dims_rope=(8, 28, 28))
ACTIVATION_DIT_QUICK = dict(ACTIVATION_DIT, num_layers=2)


def dit_class():
    from diffusers import QwenImageTransformer2DModel

    return QwenImageTransformer2DModel


def write_tiny(base: Path) -> Path:
    """`models init qwen-image <base>/Qwen/Qwen-Image --preset tiny`; returns the model base path."""
    import subprocess
    import sys

    from benchmarks.common import clean_env

    cmd = [sys.executable, "-m", "diffsynth", "models", "init", "qwen-image", str(base / REPO), "--preset", "tiny"]
    subprocess.run(cmd, check=True, capture_output=True, env=clean_env(), timeout=300)
    return base


def write_with_dit(tiny_base: Path, base: Path, config: dict) -> Path:
    """The tiny preset with its transformer replaced by a random DiT of `config`."""
    import torch

    shutil.copytree(tiny_base / REPO, base / REPO)
    shutil.rmtree(base / REPO / "transformer")
    torch.manual_seed(0)
    dit_class()(**config).save_pretrained(base / REPO / "transformer")
    return base


def write_dit_checkpoint(folder: Path, config: dict, shard: str = "400MB", dtype: str = "float32") -> list[Path]:
    """A random DiT of `config` saved like the real repo's transformer/ (sharded safetensors +
    index + config.json) in `dtype` (the real repos ship bfloat16); returns the shard files."""
    import torch

    torch.manual_seed(0)
    dit_class()(**config).to(getattr(torch, dtype)).save_pretrained(folder, max_shard_size=shard)
    return sorted(folder.glob("diffusion_pytorch_model*.safetensors"))
