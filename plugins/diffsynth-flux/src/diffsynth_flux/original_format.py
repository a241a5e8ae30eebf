"""Black Forest Labs' original checkpoint keys <-> diffusers keys, for any width.

`flux1-dev.safetensors` fuses q/k/v (`img_attn.qkv`) and, in single blocks, q/k/v + MLP-in
(`linear1`); `ae.safetensors` uses the LDM autoencoder names. diffusers' own converter
hard-codes FLUX.1's width (3072); here every split size is read off the tensors, so a tiny
checkpoint and the real one take the same path. Both directions are given: loading uses
`*_to_diffusers`, `models init` writes the BFL files with `*_to_original`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from diffsynth.plugin import UserError


@dataclass(frozen=True)
class KeyRule:
    """One original tensor and the diffusers tensor(s) it holds."""

    original: str
    #: Several names: concatenated along dim 0 in the original; all but the last are `width` rows.
    diffusers: tuple[str, ...]
    #: BFL's final modulation is (shift, scale); diffusers' AdaLayerNormContinuous wants (scale, shift).
    swap_halves: bool = False


def _linear(original: str, *diffusers: str, swap: bool = False) -> list[KeyRule]:
    return [KeyRule(f"{original}.{p}", tuple(f"{d}.{p}" for d in diffusers), swap) for p in ("weight", "bias")]


def transformer_rules(num_double: int, num_single: int, guidance: bool) -> list[KeyRule]:
    """Every tensor of a FluxTransformer2DModel with `num_double` + `num_single` blocks."""
    rules = _linear("time_in.in_layer", "time_text_embed.timestep_embedder.linear_1")
    rules += _linear("time_in.out_layer", "time_text_embed.timestep_embedder.linear_2")
    rules += _linear("vector_in.in_layer", "time_text_embed.text_embedder.linear_1")
    rules += _linear("vector_in.out_layer", "time_text_embed.text_embedder.linear_2")
    if guidance:
        rules += _linear("guidance_in.in_layer", "time_text_embed.guidance_embedder.linear_1")
        rules += _linear("guidance_in.out_layer", "time_text_embed.guidance_embedder.linear_2")
    rules += _linear("txt_in", "context_embedder") + _linear("img_in", "x_embedder")
    for i in range(num_double):
        o, d = f"double_blocks.{i}", f"transformer_blocks.{i}"
        rules += _linear(f"{o}.img_mod.lin", f"{d}.norm1.linear")
        rules += _linear(f"{o}.txt_mod.lin", f"{d}.norm1_context.linear")
        rules += _linear(f"{o}.img_attn.qkv", f"{d}.attn.to_q", f"{d}.attn.to_k", f"{d}.attn.to_v")
        rules += _linear(f"{o}.txt_attn.qkv", f"{d}.attn.add_q_proj", f"{d}.attn.add_k_proj", f"{d}.attn.add_v_proj")
        rules += _linear(f"{o}.img_attn.proj", f"{d}.attn.to_out.0")
        rules += _linear(f"{o}.txt_attn.proj", f"{d}.attn.to_add_out")
        rules += _linear(f"{o}.img_mlp.0", f"{d}.ff.net.0.proj") + _linear(f"{o}.img_mlp.2", f"{d}.ff.net.2")
        rules += _linear(f"{o}.txt_mlp.0", f"{d}.ff_context.net.0.proj")
        rules += _linear(f"{o}.txt_mlp.2", f"{d}.ff_context.net.2")
        for stream, q, k in (("img", "norm_q", "norm_k"), ("txt", "norm_added_q", "norm_added_k")):
            rules.append(KeyRule(f"{o}.{stream}_attn.norm.query_norm.scale", (f"{d}.attn.{q}.weight",)))
            rules.append(KeyRule(f"{o}.{stream}_attn.norm.key_norm.scale", (f"{d}.attn.{k}.weight",)))
    for i in range(num_single):
        o, d = f"single_blocks.{i}", f"single_transformer_blocks.{i}"
        rules += _linear(f"{o}.modulation.lin", f"{d}.norm.linear")
        rules += _linear(f"{o}.linear1", f"{d}.attn.to_q", f"{d}.attn.to_k", f"{d}.attn.to_v", f"{d}.proj_mlp")
        rules += _linear(f"{o}.linear2", f"{d}.proj_out")
        rules.append(KeyRule(f"{o}.norm.query_norm.scale", (f"{d}.attn.norm_q.weight",)))
        rules.append(KeyRule(f"{o}.norm.key_norm.scale", (f"{d}.attn.norm_k.weight",)))
    rules += _linear("final_layer.linear", "proj_out")
    rules += _linear("final_layer.adaLN_modulation.1", "norm_out.linear", swap=True)
    return rules


def is_original_transformer(keys) -> bool:
    return "img_in.weight" in keys and "x_embedder.weight" not in keys


def block_count(keys, prefix: str) -> int:
    """How many numbered blocks `prefix.N.` the keys hold (0 if none)."""
    found = {int(m.group(1)) for k in keys if (m := re.match(rf"{re.escape(prefix)}\.(\d+)\.", k))}
    return max(found) + 1 if found else 0


def _swap(t: torch.Tensor) -> torch.Tensor:
    first, second = t.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


def transformer_to_diffusers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """BFL keys -> diffusers keys. Widths come from `img_in` (the model width), not constants."""
    state = {k.removeprefix("model.diffusion_model."): v for k, v in state.items()}  # ComfyUI's saved prefix
    width = state["img_in.weight"].shape[0]
    rules = transformer_rules(block_count(state, "double_blocks"), block_count(state, "single_blocks"), "guidance_in.in_layer.weight" in state)
    missing = [r.original for r in rules if r.original not in state]
    if missing:
        raise UserError(f"BFL FLUX checkpoint lacks {len(missing)} tensors (e.g. {', '.join(missing[:3])})")
    out: dict[str, torch.Tensor] = {}
    for rule in rules:
        tensor = state[rule.original]
        if rule.swap_halves:
            tensor = _swap(tensor)
        if len(rule.diffusers) == 1:
            out[rule.diffusers[0]] = tensor
            continue
        sizes = [width] * (len(rule.diffusers) - 1)
        parts = tensor.split([*sizes, tensor.shape[0] - sum(sizes)], dim=0)
        out.update({name: part.contiguous() for name, part in zip(rule.diffusers, parts)})
    return out


def transformer_to_original(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers keys -> BFL keys (what `flux1-dev.safetensors` holds)."""
    rules = transformer_rules(
        block_count(state, "transformer_blocks"),
        block_count(state, "single_transformer_blocks"),
        "time_text_embed.guidance_embedder.linear_1.weight" in state,
    )
    out = {}
    for rule in rules:
        tensor = torch.cat([state[name] for name in rule.diffusers], dim=0)
        out[rule.original] = _swap(tensor) if rule.swap_halves else tensor.contiguous()
    return out


# --- autoencoder: LDM names (ae.safetensors) <-> diffusers AutoencoderKL -----------------------

# (LDM name, diffusers name) of each autoencoder tensor group; fields: `{up}` a decoder level (LDM
# counts from the lowest resolution, diffusers from the highest), `{mid}` a mid-block resnet (from 1
# in LDM, from 0 in diffusers), `{attn}` a mid-block attention layer (_ATTN's names); `{rest}`, `{i}`,
# `{j}` and `{coder}` (encoder or decoder) are the same on both sides.
_VAE_NAMES = (
    ("encoder.down.{i}.block.{j}.{rest}", "encoder.down_blocks.{i}.resnets.{j}.{rest}"),
    ("decoder.up.{up}.block.{j}.{rest}", "decoder.up_blocks.{up}.resnets.{j}.{rest}"),
    ("encoder.down.{i}.downsample.conv.{rest}", "encoder.down_blocks.{i}.downsamplers.0.conv.{rest}"),
    ("decoder.up.{up}.upsample.conv.{rest}", "decoder.up_blocks.{up}.upsamplers.0.conv.{rest}"),
    ("{coder}.mid.block_{mid}.{rest}", "{coder}.mid_block.resnets.{mid}.{rest}"),
    ("{coder}.mid.attn_1.{attn}.{rest}", "{coder}.mid_block.attentions.0.{attn}.{rest}"),
    ("{coder}.norm_out.{rest}", "{coder}.conv_norm_out.{rest}"),
)
_ATTN = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}
_SHORTCUT = ("nin_shortcut", "conv_shortcut")  # anywhere in a resnet's names


def _vae_pattern(template: str, attn_names) -> re.Pattern[str]:
    number = r"\d+"
    fields = {"coder": "encoder|decoder", "attn": "|".join(map(re.escape, attn_names)), "rest": ".+"}
    parts = re.split(r"\{(\w+)\}", template)  # literal, field, literal, ...
    return re.compile("".join(re.escape(p) if n % 2 == 0 else f"(?P<{p}>{fields.get(p, number)})" for n, p in enumerate(parts)))


# direction (to diffusers?) -> (pattern of a source name, target template) per group
_VAE_RULES = {
    True: [(_vae_pattern(original, _ATTN), diffusers) for original, diffusers in _VAE_NAMES],
    False: [(_vae_pattern(diffusers, _ATTN.values()), original) for original, diffusers in _VAE_NAMES],
}


def _vae_key(key: str, levels: int, to_diffusers: bool) -> str:
    """One autoencoder key renamed from LDM to diffusers names (or back)."""
    attn = _ATTN if to_diffusers else {v: k for k, v in _ATTN.items()}
    convert = {
        "up": lambda v: str(levels - 1 - int(v)),
        "mid": lambda v: str(int(v) - 1 if to_diffusers else int(v) + 1),
        "attn": attn.__getitem__,
    }
    for pattern, target in _VAE_RULES[to_diffusers]:
        if m := pattern.fullmatch(key):
            key = target.format(**{k: convert.get(k, str)(v) for k, v in m.groupdict().items()})
            break
    old, new = _SHORTCUT if to_diffusers else _SHORTCUT[::-1]
    return key.replace(old, new)


def _is_attn_matrix(original_key: str) -> bool:
    # LDM attention projections are 1x1 convolutions; diffusers' are Linear layers
    return bool(re.fullmatch(r"(encoder|decoder)\.mid\.attn_1\.(q|k|v|proj_out)\.weight", original_key))


def is_original_vae(keys) -> bool:
    return any(k.startswith("encoder.down.") for k in keys)


def vae_to_diffusers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    levels = block_count(state, "encoder.down")
    out = {}
    for key, tensor in state.items():
        if _is_attn_matrix(key) and tensor.dim() == 4:
            tensor = tensor[:, :, 0, 0]
        out[_vae_key(key, levels, to_diffusers=True)] = tensor
    return out


def vae_to_original(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    levels = block_count(state, "encoder.down_blocks")
    out = {}
    for key, tensor in state.items():
        original = _vae_key(key, levels, to_diffusers=False)
        out[original] = tensor[:, :, None, None].contiguous() if _is_attn_matrix(original) else tensor.contiguous()
    return out
