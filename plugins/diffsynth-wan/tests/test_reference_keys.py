"""The original key names of the tiny presets' umT5, CLIP and Wan2.1 / Wan2.2 VAE files, checked
against the code of the tools that read those files, and our converter's output against the names
those tools load into.

References (their code, read at the cited paths; the module layouts below are transcribed from
them, one key per parameter):
- Wan's own modules, which define the original names: Wan-Video/Wan2.1 `wan/modules/t5.py`
  (T5Encoder) and `wan/modules/clip.py` (XLMRobertaCLIP.visual, a VisionTransformer with
  pool_type="token", pre_norm=True).
- ComfyUI, which loads the original VAE files as they are: `comfy/ldm/wan/vae.py` (Wan2.1
  WanVAE) and `comfy/ldm/wan/vae2_2.py` (Wan2.2 WanVAE: Down_/Up_ResidualBlock); its VAE
  detection in `comfy/sd.py` (`decoder.middle.0.residual.0.gamma`, Wan2.2 by
  `decoder.upsamples.0.upsamples.0.residual.2.weight`). ComfyUI's text encoder and CLIP vision
  load transformers-named weights: `comfy/text_encoders/t5.py` (T5 built with
  model_type "umt5": a relative_attention_bias in every block) and `comfy/clip_vision.py`
  (`vision_model.encoder.layers.N.layer_norm1.weight` ...).
- diffusers: the installed `diffusers/loaders/single_file_utils.py` (CHECKPOINT_KEY_NAMES,
  convert_wan_vae_to_diffusers for the Wan2.1 VAE) and the repo's
  `scripts/convert_wan_to_diffusers.py` (convert_vae_22, the Wan2.2 VAE renaming; umT5 and CLIP
  are taken from google/umt5-xxl and laion/CLIP-ViT-H-14 as transformers models, so their names
  are transformers' UMT5EncoderModel / CLIPVisionModel ones).
"""

from __future__ import annotations

import torch
from conftest import REPOS
from diffsynth_wan import convert, tiny
from diffsynth_wan.spec import CLIP_FILE, T5_FILE, VAE21_FILE, VAE22_FILE

Keys = set[str]


def _load(model_base, variant: str, name: str) -> dict[str, torch.Tensor]:
    return torch.load(model_base / REPOS[variant][0] / name, weights_only=True, mmap=True)


# --- expected original names, from the reference modules ---------------------------------------


def _conv(prefix: str) -> Keys:  # CausalConv3d / Conv2d / Linear with a bias
    return {f"{prefix}.weight", f"{prefix}.bias"}


def _comfy_resblock(prefix: str, in_dim: int, out_dim: int) -> Keys:
    """ResidualBlock (comfy/ldm/wan/vae.py): residual = [RMS_norm, SiLU, CausalConv3d, RMS_norm,
    SiLU, Dropout, CausalConv3d]; shortcut = CausalConv3d(1) when in_dim != out_dim; RMS_norm has
    `gamma` and no bias."""
    keys = {f"{prefix}.residual.0.gamma", f"{prefix}.residual.3.gamma"}
    keys |= _conv(f"{prefix}.residual.2") | _conv(f"{prefix}.residual.6")
    return keys | (_conv(f"{prefix}.shortcut") if in_dim != out_dim else set())


def _comfy_resample(prefix: str, mode: str) -> Keys:
    """Resample: `resample` = [Upsample|ZeroPad2d, Conv2d] (index 1), `time_conv` in 3d modes."""
    return _conv(f"{prefix}.resample.1") | (_conv(f"{prefix}.time_conv") if mode.endswith("3d") else set())


def _comfy_middle_and_head(part: str, dim: int) -> Keys:
    keys = _comfy_resblock(f"{part}.middle.0", dim, dim) | _comfy_resblock(f"{part}.middle.2", dim, dim)
    keys |= {f"{part}.middle.1.norm.gamma"} | _conv(f"{part}.middle.1.to_qkv") | _conv(f"{part}.middle.1.proj")
    return keys | {f"{part}.head.0.gamma"} | _conv(f"{part}.head.2") | _conv(f"{part}.conv1")


def comfy_wan21_vae_keys(dim: int, dim_mult=(1, 2, 4, 4), num_res_blocks=2, temperal_downsample=(False, True, True)) -> Keys:
    """comfy/ldm/wan/vae.py WanVAE(dim, ...) with attn_scales=[]: flat `downsamples` / `upsamples`."""
    keys = _conv("conv1") | _conv("conv2")
    dims = [dim * u for u in (1, *dim_mult)]
    index = 0
    for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
        for _ in range(num_res_blocks):
            keys |= _comfy_resblock(f"encoder.downsamples.{index}", in_dim, out_dim)
            in_dim, index = out_dim, index + 1
        if i != len(dim_mult) - 1:
            keys |= _comfy_resample(f"encoder.downsamples.{index}", "downsample3d" if temperal_downsample[i] else "downsample2d")
            index += 1
    keys |= _comfy_middle_and_head("encoder", dims[-1])
    dims = [dim * u for u in (dim_mult[-1], *dim_mult[::-1])]
    temperal_upsample = temperal_downsample[::-1]
    index = 0
    for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
        if i in (1, 2, 3):
            in_dim //= 2  # the previous upsampler halves the channels
        for _ in range(num_res_blocks + 1):
            keys |= _comfy_resblock(f"decoder.upsamples.{index}", in_dim, out_dim)
            in_dim, index = out_dim, index + 1
        if i != len(dim_mult) - 1:
            keys |= _comfy_resample(f"decoder.upsamples.{index}", "upsample3d" if temperal_upsample[i] else "upsample2d")
            index += 1
    return keys | _comfy_middle_and_head("decoder", dims[0])


def comfy_wan22_vae_keys(dim: int, dec_dim: int, dim_mult=(1, 2, 4, 4), num_res_blocks=2,
                         temperal_downsample=(False, True, True)) -> Keys:  # fmt: skip
    """comfy/ldm/wan/vae2_2.py WanVAE(dim, dec_dim, ...): `downsamples.I` are Down_ResidualBlocks
    holding `downsamples.J` (num_res_blocks resnets, then the Resample unless last);
    `upsamples.I` are Up_ResidualBlocks holding `upsamples.J` (num_res_blocks + 1 resnets, then
    the Resample unless last). Their AvgDown3D / DupUp3D shortcuts have no parameters."""
    keys = _conv("conv1") | _conv("conv2")
    dims = [dim * u for u in (1, *dim_mult)]
    for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
        block = f"encoder.downsamples.{i}.downsamples"
        for j in range(num_res_blocks):
            keys |= _comfy_resblock(f"{block}.{j}", in_dim, out_dim)
            in_dim = out_dim
        if i != len(dim_mult) - 1:
            mode = "downsample3d" if temperal_downsample[i] else "downsample2d"
            keys |= _comfy_resample(f"{block}.{num_res_blocks}", mode)
    keys |= _comfy_middle_and_head("encoder", dims[-1])
    dims = [dec_dim * u for u in (dim_mult[-1], *dim_mult[::-1])]
    temperal_upsample = temperal_downsample[::-1]
    for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
        block = f"decoder.upsamples.{i}.upsamples"
        for j in range(num_res_blocks + 1):
            keys |= _comfy_resblock(f"{block}.{j}", in_dim, out_dim)
            in_dim = out_dim
        if i != len(dim_mult) - 1:
            keys |= _comfy_resample(f"{block}.{num_res_blocks + 1}", "upsample3d" if temperal_upsample[i] else "upsample2d")
    return keys | _comfy_middle_and_head("decoder", dims[0])


def wan_umt5_encoder_keys(num_layers: int) -> Keys:
    """Wan-Video/Wan2.1 wan/modules/t5.py T5Encoder (umT5: shared_pos=False, so each block has its
    own T5RelativeEmbedding `pos_embedding.embedding`; T5FeedForward: gate = [Linear, GELU], fc1, fc2)."""
    keys = {"token_embedding.weight", "norm.weight"}
    for n in range(num_layers):
        b = f"blocks.{n}"
        keys |= {f"{b}.norm1.weight", f"{b}.norm2.weight", f"{b}.pos_embedding.embedding.weight"}
        keys |= {f"{b}.attn.{p}.weight" for p in "qkvo"}
        keys |= {f"{b}.ffn.gate.0.weight", f"{b}.ffn.fc1.weight", f"{b}.ffn.fc2.weight"}
    return keys


def comfy_umt5_keys(num_layers: int) -> Keys:
    """comfy/text_encoders/t5.py T5(model_type="umt5") (= transformers' UMT5EncoderModel names):
    `shared`, `encoder.block.N.layer.0.SelfAttention.{q,k,v,o,relative_attention_bias}`, the gated
    `layer.1.DenseReluDense.{wi_0,wi_1,wo}`, layer norms and `encoder.final_layer_norm`."""
    keys = {"shared.weight", "encoder.final_layer_norm.weight"}
    for n in range(num_layers):
        b = f"encoder.block.{n}.layer"
        keys |= {f"{b}.0.SelfAttention.{p}.weight" for p in ("q", "k", "v", "o", "relative_attention_bias")}
        keys |= {f"{b}.0.layer_norm.weight", f"{b}.1.layer_norm.weight"}
        keys |= {f"{b}.1.DenseReluDense.{p}.weight" for p in ("wi_0", "wi_1", "wo")}
    return keys


def wan_clip_visual_keys(num_layers: int) -> Keys:
    """Wan-Video/Wan2.1 wan/modules/clip.py VisionTransformer(pool_type="token", pre_norm=True):
    a bias-free patch_embedding, cls/pos embeddings, pre_norm, AttentionBlocks (norm1,
    attn.to_qkv, attn.proj, norm2, mlp = [Linear, GELU, Linear, Dropout]), post_norm, `head`."""
    keys = {"visual.patch_embedding.weight", "visual.cls_embedding", "visual.pos_embedding", "visual.head"}
    keys |= _conv("visual.pre_norm") | _conv("visual.post_norm")
    for n in range(num_layers):
        b = f"visual.transformer.{n}"
        for sub in ("norm1", "attn.to_qkv", "attn.proj", "norm2", "mlp.0", "mlp.2"):
            keys |= _conv(f"{b}.{sub}")
    return keys


def transformers_clip_vision_keys(num_layers: int) -> Keys:
    """The names ComfyUI's comfy/clip_vision.py loads (`vision_model.*`, transformers'
    CLIPVisionModel; its `convert_to_transformers` maps open-clip files onto them) and diffusers'
    WanImageToVideoPipeline's image_encoder has."""
    v = "vision_model"
    keys = {f"{v}.embeddings.class_embedding", f"{v}.embeddings.patch_embedding.weight", f"{v}.embeddings.position_embedding.weight"}
    keys |= _conv(f"{v}.pre_layrnorm") | _conv(f"{v}.post_layernorm")
    for n in range(num_layers):
        b = f"{v}.encoder.layers.{n}"
        for sub in ("layer_norm1", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj",
                    "layer_norm2", "mlp.fc1", "mlp.fc2"):  # fmt: skip
            keys |= _conv(f"{b}.{sub}")
    return keys


def diffusers_script_vae22_key(key: str) -> str:
    """scripts/convert_wan_to_diffusers.py convert_vae_22's renaming, one key (its middle / attention
    / head / quant tables are convert_wan_vae_to_diffusers' ones, applied to the shared keys)."""
    for part, kind in (("encoder", "down"), ("decoder", "up")):
        if not key.startswith(f"{part}.{kind}samples."):
            continue
        new = key.replace(f"{part}.{kind}samples.", f"{part}.{kind}_blocks.", 1)
        if "residual" in new or "shortcut" in new:
            new = new.replace(f".{kind}samples.", ".resnets.")
            for old, rep in ((".residual.0.gamma", ".norm1.gamma"), (".residual.2.", ".conv1."),
                             (".residual.3.gamma", ".norm2.gamma"), (".residual.6.", ".conv2."),
                             (".shortcut.", ".conv_shortcut.")):  # fmt: skip
                new = new.replace(old, rep)
        elif "resample" in new or "time_conv" in new:
            parts = new.split(".")
            if parts[3] == f"{kind}samples":
                new = ".".join(parts[:3] + [f"{kind}sampler"] + parts[5:])
        return new
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    return next(iter(convert_wan_vae_to_diffusers({key: None})))


# --- the tiny presets' files carry exactly those names -----------------------------------------


def test_wan22_vae_file_has_comfyui_vae2_2_keys(model_base):
    state = _load(model_base, "ti2v", VAE22_FILE)
    expected = comfy_wan22_vae_keys(dim=state["encoder.conv1.weight"].shape[0], dec_dim=state["decoder.head.2.weight"].shape[1])
    assert set(state) == expected
    assert state["conv2.weight"].shape[0] == 48 and state["encoder.conv1.weight"].shape[1] == 12  # 3 x 2 x 2 patches
    # comfy/sd.py's VAE detection: a Wan VAE, the 2.2 kind
    assert "decoder.middle.0.residual.0.gamma" in state and "decoder.upsamples.0.upsamples.0.residual.2.weight" in state


def test_wan21_vae_files_have_comfyui_vae_keys(model_base):
    for variant in ("t2v", "i2v"):
        state = _load(model_base, variant, VAE21_FILE)
        assert set(state) == comfy_wan21_vae_keys(dim=state["encoder.conv1.weight"].shape[0])
        assert "decoder.upsamples.0.upsamples.0.residual.2.weight" not in state  # not read as a 2.2 VAE


def test_vae_files_are_detected_by_diffusers_single_file(model_base):
    from diffusers.loaders.single_file_utils import CHECKPOINT_KEY_NAMES

    for variant, name in (("t2v", VAE21_FILE), ("ti2v", VAE22_FILE)):
        assert CHECKPOINT_KEY_NAMES["wan_vae"] in _load(model_base, variant, name)


def test_umt5_file_has_wan_t5_encoder_keys(model_base):
    for variant in REPOS:
        state = _load(model_base, variant, T5_FILE)
        assert set(state) == wan_umt5_encoder_keys(tiny.TINY_T5["num_layers"])


def test_clip_file_has_wan_visual_tower_keys(model_base):
    state = _load(model_base, "i2v", CLIP_FILE)
    visual = {k for k in state if k.startswith("visual.")}
    assert visual == wan_clip_visual_keys(tiny.TINY_CLIP["num_hidden_layers"])
    assert "visual.patch_embedding.bias" not in state  # pre_norm=True: no patch bias
    assert state["visual.transformer.0.attn.to_qkv.weight"].shape[0] == 3 * state["visual.cls_embedding"].shape[-1]


# --- our converter maps them to the names the tools load ---------------------------------------


def test_vae22_conversion_equals_diffusers_script(model_base):
    from diffusers import AutoencoderKLWan
    from diffsynth_wan.configs import vae_config

    from diffsynth.models.header import read_header

    path = model_base / REPOS["ti2v"][0] / VAE22_FILE
    state = _load(model_base, "ti2v", VAE22_FILE)
    ours = convert.vae_to_module(state)
    reference = {diffusers_script_vae22_key(k): k for k in state}
    assert len(reference) == len(state)
    assert set(ours) == set(reference)
    for new, old in reference.items():
        assert ours[new] is state[old], (old, new)
    # ... and those are AutoencoderKLWan's parameters, one for one
    module = AutoencoderKLWan(**vae_config(read_header([path])))
    assert set(module.state_dict()) == set(ours)


def test_vae21_conversion_is_diffusers_single_file_converter(model_base):
    from diffusers import AutoencoderKLWan
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    state = _load(model_base, "t2v", VAE21_FILE)
    reference = convert_wan_vae_to_diffusers(dict(state))
    ours = convert.vae_to_module(state)
    assert set(ours) == set(reference) == set(AutoencoderKLWan(base_dim=state["encoder.conv1.weight"].shape[0], z_dim=16).state_dict())


def test_umt5_conversion_gives_comfyui_t5_names(model_base):
    state = _load(model_base, "t2v", T5_FILE)
    ours = convert.t5_to_module(state)
    layers = tiny.TINY_T5["num_layers"]
    # transformers' UMT5EncoderModel also names the tied input embedding `encoder.embed_tokens`
    assert set(ours) - {"encoder.embed_tokens.weight"} == comfy_umt5_keys(layers)
    assert ours["encoder.embed_tokens.weight"] is ours["shared.weight"] is state["token_embedding.weight"]
    # gated GELU: Wan's `fc1(x) * gate(x)` with gate = [Linear, GELU] is ComfyUI / transformers'
    # `act(wi_0(x)) * wi_1(x)`: the activated branch is gate.0 -> wi_0, the linear one fc1 -> wi_1
    block = "encoder.block.1.layer."
    assert ours[f"{block}1.DenseReluDense.wi_0.weight"] is state["blocks.1.ffn.gate.0.weight"]
    assert ours[f"{block}1.DenseReluDense.wi_1.weight"] is state["blocks.1.ffn.fc1.weight"]
    assert ours[f"{block}1.DenseReluDense.wo.weight"] is state["blocks.1.ffn.fc2.weight"]
    # umT5: every block has its own relative position bias (ComfyUI: relative_attention=False -> each block)
    assert ours[f"{block}0.SelfAttention.relative_attention_bias.weight"] is state["blocks.1.pos_embedding.embedding.weight"]
    assert ours[f"{block}0.layer_norm.weight"] is state["blocks.1.norm1.weight"]
    assert ours[f"{block}1.layer_norm.weight"] is state["blocks.1.norm2.weight"]


def test_clip_conversion_gives_transformers_clip_vision_names(model_base):
    state = _load(model_base, "i2v", CLIP_FILE)
    ours = convert.clip_to_module(state)
    layers = tiny.TINY_CLIP["num_hidden_layers"]
    assert set(ours) == transformers_clip_vision_keys(layers)
    qkv = state["visual.transformer.1.attn.to_qkv.weight"]  # Wan: to_qkv(x).view(b, s, 3, n, d): q, k, v in order
    for i, name in enumerate(("q_proj", "k_proj", "v_proj")):
        torch.testing.assert_close(ours[f"vision_model.encoder.layers.1.self_attn.{name}.weight"], qkv.chunk(3)[i])
    assert ours["vision_model.encoder.layers.1.self_attn.out_proj.weight"] is state["visual.transformer.1.attn.proj.weight"]
    assert ours["vision_model.encoder.layers.1.mlp.fc1.weight"] is state["visual.transformer.1.mlp.0.weight"]
    assert ours["vision_model.pre_layrnorm.weight"] is state["visual.pre_norm.weight"]
    assert ours["vision_model.embeddings.class_embedding"].shape == (tiny.CLIP_DIM,)
