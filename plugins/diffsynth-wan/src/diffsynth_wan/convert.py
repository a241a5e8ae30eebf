"""Key conversions between the original Wan checkpoints and the diffusers / transformers modules.

Each `*_to_module` turns an original state dict into the module's keys (what loading needs);
each `*_to_original` does the reverse (what `models init` writes and what the LoRA export names).
diffusers ships converters for the DiT and the Wan2.1 VAE; the Wan2.2 VAE, umT5 and CLIP ones
are written here. The tests check every pair round-trips on the tiny presets.
"""

from __future__ import annotations

import re

import torch

State = dict[str, torch.Tensor]

# --- DiT -------------------------------------------------------------------------------------

# diffusers name -> original name, applied in order to ".<name>." (the reverse of diffusers'
# convert_wan_transformer_to_diffusers, whose norm2/norm3 swap is undone by the placeholder).
_DIT_TO_ORIGINAL = (
    (".condition_embedder.time_embedder.linear_1.", ".time_embedding.0."),
    (".condition_embedder.time_embedder.linear_2.", ".time_embedding.2."),
    (".condition_embedder.text_embedder.linear_1.", ".text_embedding.0."),
    (".condition_embedder.text_embedder.linear_2.", ".text_embedding.2."),
    (".condition_embedder.time_proj.", ".time_projection.1."),
    (".condition_embedder.image_embedder.norm1.", ".img_emb.proj.0."),
    (".condition_embedder.image_embedder.ff.net.0.proj.", ".img_emb.proj.1."),
    (".condition_embedder.image_embedder.ff.net.2.", ".img_emb.proj.3."),
    (".condition_embedder.image_embedder.norm2.", ".img_emb.proj.4."),
    (".condition_embedder.image_embedder.pos_embed.", ".img_emb.emb_pos."),
    (".attn1.", ".self_attn."),
    (".attn2.", ".cross_attn."),
    (".to_out.0.", ".o."),
    (".to_q.", ".q."),
    (".to_k.", ".k."),
    (".to_v.", ".v."),
    (".add_k_proj.", ".k_img."),
    (".add_v_proj.", ".v_img."),
    (".norm_added_k.", ".norm_k_img."),
    (".ffn.net.0.proj.", ".ffn.0."),
    (".ffn.net.2.", ".ffn.2."),
    (".norm2.", ".norm__swap."),
    (".norm3.", ".norm2."),
    (".norm__swap.", ".norm3."),
    (".proj_out.", ".head.head."),
)


def _rename_parts(name: str, table: tuple[tuple[str, str], ...]) -> str:
    """`name` with each `.old.` run of dotted parts replaced by `.new.`, in the table's order."""
    s = f".{name}."
    for old, new in table:
        s = s.replace(old, new)
    return s[1:-1]


def dit_name_to_original(name: str) -> str:
    """`blocks.0.attn1.to_q.lora_A.weight` -> `blocks.0.self_attn.q.lora_A.weight` (keys or module names)."""
    s = _rename_parts(name, _DIT_TO_ORIGINAL)
    if s == "scale_shift_table":
        return "head.modulation"
    return re.sub(r"^(blocks\.\d+)\.scale_shift_table$", r"\1.modulation", s)


def dit_to_original(state: State) -> State:
    return {dit_name_to_original(k): v for k, v in state.items()}


def dit_to_module(state: State) -> State:
    """Original keys -> WanTransformer3DModel keys (diffusers' converter; keys already in diffusers
    layout pass through)."""
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    if any(k.startswith("blocks.0.attn1.") for k in state):
        return dict(state)
    return convert_wan_transformer_to_diffusers(dict(state))  # it pops from its input


# --- VAE (Wan2.1: 16 channels; Wan2.2: 48 channels, residual down/up blocks) ----------------

_RESNET = (("norm1.gamma", "residual.0.gamma"), ("conv1.", "residual.2."), ("norm2.gamma", "residual.3.gamma"),
           ("conv2.", "residual.6."), ("conv_shortcut.", "shortcut."))  # fmt: skip
_VAE_TOP = (("encoder.conv_in.", "encoder.conv1."), ("decoder.conv_in.", "decoder.conv1."),
            ("quant_conv.", "conv1."), ("post_quant_conv.", "conv2."),
            ("encoder.norm_out.", "encoder.head.0."), ("encoder.conv_out.", "encoder.head.2."),
            ("decoder.norm_out.", "decoder.head.0."), ("decoder.conv_out.", "decoder.head.2."))  # fmt: skip


def _resnet(rest: str, to_original: bool) -> str:
    for module, original in _RESNET:
        a, b = (module, original) if to_original else (original, module)
        if rest.startswith(a):
            return b + rest[len(a) :]
    return rest


def is_vae22(state_keys) -> bool:
    """Wan2.2's VAE nests `downsamples.I.downsamples.J` (residual down blocks); Wan2.1's is flat."""
    return any(k.startswith("encoder.downsamples.0.downsamples.") for k in state_keys)


def vae_to_module(state: State) -> State:
    """Original Wan2.1 / Wan2.2 VAE keys -> AutoencoderKLWan keys."""
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    if not is_vae22(state):
        return convert_wan_vae_to_diffusers(dict(state))
    out: State = {}
    rest: State = {}
    for key, value in state.items():
        m = re.match(r"(encoder|decoder)\.(down|up)samples\.(\d+)\.(?:down|up)samples\.(\d+)\.(.*)$", key)
        if not m:
            rest[key] = value
            continue
        part, kind, i, j, tail = m.groups()
        if tail.startswith(("resample.", "time_conv.")):
            out[f"{part}.{kind}_blocks.{i}.{kind}sampler.{tail}"] = value
        else:
            out[f"{part}.{kind}_blocks.{i}.resnets.{j}.{_resnet(tail, False)}"] = value
    out.update(convert_wan_vae_to_diffusers(rest))  # middle, heads, conv1/conv2 are shared with 2.1
    return out


def vae_to_original(state: State, residual: bool) -> State:
    """AutoencoderKLWan keys -> original keys (Wan2.2 layout when `residual`)."""
    resnets = {}  # (part, block) -> number of resnets, the index of its resampler in the original
    for key in state:
        if m := re.match(r"(encoder|decoder)\.(?:down|up)_blocks\.(\d+)\.resnets\.(\d+)\.", key):
            block = (m.group(1), int(m.group(2)))
            resnets[block] = max(resnets.get(block, 0), int(m.group(3)) + 1)
    return {_vae_key_to_original(k, residual, resnets): v for k, v in state.items()}


def _vae_key_to_original(key: str, residual: bool, resnets: dict) -> str:
    for module, original in _VAE_TOP:
        if key.startswith(module):
            return original + key[len(module) :]
    if m := re.match(r"(encoder|decoder)\.mid_block\.(resnets|attentions)\.(\d+)\.(.*)$", key):
        part, kind, i, tail = m.groups()
        index = 1 if kind == "attentions" else 2 * int(i)
        return f"{part}.middle.{index}.{_resnet(tail, True) if kind == 'resnets' else tail}"
    m = re.match(r"(encoder|decoder)\.(down|up)_blocks\.(\d+)\.(.*)$", key)
    if not m:
        return key
    part, kind, i, tail = m.groups()
    if residual:  # Wan2.2: blocks hold `<kind>samples.J` (resnets first, then the resampler)
        if r := re.match(r"resnets\.(\d+)\.(.*)$", tail):
            return f"{part}.{kind}samples.{i}.{kind}samples.{r.group(1)}.{_resnet(r.group(2), True)}"
        sampler = re.sub(r"^(down|up)sampler(s\.0)?\.", "", tail)
        return f"{part}.{kind}samples.{i}.{kind}samples.{resnets[(part, int(i))]}.{sampler}"
    if kind == "down":  # Wan2.1 encoder: one flat list, already the module's
        return f"encoder.downsamples.{i}.{_resnet(tail, True)}"
    per_block = resnets[(part, int(i))] + 1  # Wan2.1 decoder: flat list of resnets + upsampler per block
    if r := re.match(r"resnets\.(\d+)\.(.*)$", tail):
        return f"decoder.upsamples.{int(i) * per_block + int(r.group(1))}.{_resnet(r.group(2), True)}"
    sampler = tail.removeprefix("upsamplers.0.")
    return f"decoder.upsamples.{int(i) * per_block + per_block - 1}.{sampler}"


# --- umT5 text encoder -----------------------------------------------------------------------

_T5_BLOCK = (
    ("norm1.weight", "layer.0.layer_norm.weight"),
    ("attn.q.weight", "layer.0.SelfAttention.q.weight"),
    ("attn.k.weight", "layer.0.SelfAttention.k.weight"),
    ("attn.v.weight", "layer.0.SelfAttention.v.weight"),
    ("attn.o.weight", "layer.0.SelfAttention.o.weight"),
    ("pos_embedding.embedding.weight", "layer.0.SelfAttention.relative_attention_bias.weight"),
    ("norm2.weight", "layer.1.layer_norm.weight"),
    ("ffn.gate.0.weight", "layer.1.DenseReluDense.wi_0.weight"),  # gelu branch
    ("ffn.fc1.weight", "layer.1.DenseReluDense.wi_1.weight"),  # linear branch
    ("ffn.fc2.weight", "layer.1.DenseReluDense.wo.weight"),
)


def t5_to_module(state: State) -> State:
    """Wan's umT5 encoder keys -> transformers UMT5EncoderModel keys."""
    table = dict(_T5_BLOCK)
    out: State = {}
    for key, value in state.items():
        if key == "token_embedding.weight":
            out["shared.weight"] = out["encoder.embed_tokens.weight"] = value
        elif key == "norm.weight":
            out["encoder.final_layer_norm.weight"] = value
        elif (m := re.match(r"blocks\.(\d+)\.(.*)$", key)) and m.group(2) in table:
            out[f"encoder.block.{m.group(1)}.{table[m.group(2)]}"] = value
        else:
            out[key] = value  # left for build_module to report
    return out


def t5_to_original(state: State) -> State:
    table = {module: original for original, module in _T5_BLOCK}
    out: State = {}
    for key, value in state.items():
        if key == "shared.weight":
            out["token_embedding.weight"] = value
        elif key == "encoder.final_layer_norm.weight":
            out["norm.weight"] = value
        elif m := re.match(r"encoder\.block\.(\d+)\.(.*)$", key):
            out[f"blocks.{m.group(1)}.{table[m.group(2)]}"] = value
    return out


# --- CLIP visual tower -----------------------------------------------------------------------

# CLIPVisionModel name (below `vision_model.`) -> open-clip's (below `visual.`), renamed part by
# part as the DiT's; the fused `attn.to_qkv` is split into / joined from q_proj, k_proj, v_proj.
_CLIP_TO_ORIGINAL = (
    (".embeddings.patch_embedding.", ".patch_embedding."),
    (".embeddings.class_embedding.", ".cls_embedding."),
    (".embeddings.position_embedding.weight.", ".pos_embedding."),
    (".pre_layrnorm.", ".pre_norm."),
    (".post_layernorm.", ".post_norm."),
    (".encoder.layers.", ".transformer."),
    (".layer_norm1.", ".norm1."),
    (".layer_norm2.", ".norm2."),
    (".self_attn.out_proj.", ".attn.proj."),
    (".mlp.fc1.", ".mlp.0."),
    (".mlp.fc2.", ".mlp.2."),
)
_CLIP_TO_MODULE = tuple((original, module) for module, original in _CLIP_TO_ORIGINAL)
_QKV = ("q_proj", "k_proj", "v_proj")
# open-clip keeps these with leading unit axes, (1, 1, D) and (1, N, D): the module's rank
_CLIP_EMBEDDING_RANK = {"cls_embedding": 1, "pos_embedding": 2}


def clip_to_module(state: State) -> State:
    """open-clip `visual.*` keys -> CLIPVisionModel keys (the text tower and head are dropped)."""
    out: State = {}
    for key, value in state.items():
        name = key.removeprefix("visual.")
        renamed = _rename_parts(name, _CLIP_TO_MODULE)
        if name == key or renamed == name:
            continue  # the text tower, `log_scale`, the visual projection `head`
        if ".attn.to_qkv." in renamed:
            for proj, part in zip(_QKV, value.chunk(3, dim=0)):
                out["vision_model." + renamed.replace(".attn.to_qkv.", f".self_attn.{proj}.")] = part
        elif name in _CLIP_EMBEDDING_RANK:
            out["vision_model." + renamed] = value.reshape(value.shape[-_CLIP_EMBEDDING_RANK[name] :])
        else:
            out["vision_model." + renamed] = value
    return out


def clip_to_original(state: State) -> State:
    """CLIPVisionModel keys (with or without `vision_model.`) -> open-clip `visual.*` keys."""
    state = {k.removeprefix("vision_model."): v for k, v in state.items()}
    out: State = {}
    for key, value in state.items():
        name = _rename_parts(key, _CLIP_TO_ORIGINAL)
        if name in _CLIP_EMBEDDING_RANK:
            value = value.reshape((1,) * (3 - value.dim()) + tuple(value.shape))
        elif ".self_attn.q_proj." in name:  # k_proj and v_proj join it
            name = name.replace(".self_attn.q_proj.", ".attn.to_qkv.")
            value = torch.cat([state[key.replace(".q_proj.", f".{proj}.")] for proj in _QKV])
        if name != key and ".self_attn." not in name:
            out["visual." + name] = value
    return out
