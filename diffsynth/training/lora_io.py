"""Read a LoRA file in any common format; continue training it or merge it into the base.

Formats understood (a family may convert its original-format names first through the
`normalize_lora_state_dict` hook): our own output (`diffusion_model.` / `transformer.` prefix,
`.alpha` tensors or `lora_alpha` metadata), peft (`base_model.model.` prefix), DiffSynth-Studio's
bare keys with the adapter name (`...lora_A.default.weight`), and kohya (`lora_unet_<name with
underscores>.lora_down/.lora_up.weight` + `.alpha`) or dotted `lora_down/lora_up` names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

from diffsynth.errors import UserError
from diffsynth.training.lora import ADAPTER

PREFIXES = ("base_model.model.", "model.diffusion_model.", "diffusion_model.", "transformer.", "unet.")
KOHYA_PREFIX = re.compile(r"^lora_(unet|transformer|te\d?)_")


@dataclass
class LoraLayers:
    """A LoRA as (A, B) per module name of the target module, with one rank and alpha."""

    layers: dict[str, tuple[torch.Tensor, torch.Tensor]]
    rank: int
    alpha: float
    source: str

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


def read_lora_file(path: str | Path, flag: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and header metadata of a LoRA file (.safetensors, or .pth/.bin weights only)."""
    from diffsynth.models.header import load_torch_state

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{flag}: file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), "pt") as fh:
                return {k: fh.get_tensor(k) for k in fh.keys()}, dict(fh.metadata() or {})
        except SafetensorError as exc:
            raise UserError(f"{flag}: {path} is not a readable safetensors file ({exc})") from exc
    state = load_torch_state(path)
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}, {}


def _strip_prefix(key: str) -> str:
    for prefix in PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def normalize_lora_keys(
    state: dict[str, torch.Tensor], metadata: dict[str, str], module: torch.nn.Module, source: str
) -> LoraLayers:
    """Any supported format -> `LoraLayers` named after `module`'s sub-modules."""
    kohya_names = {name.replace(".", "_"): name for name, _ in module.named_modules() if name}
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        key = key.replace(f".lora_A.{ADAPTER}.", ".lora_A.").replace(f".lora_B.{ADAPTER}.", ".lora_B.")
        key = key.replace(".lora_down.", ".lora_A.").replace(".lora_up.", ".lora_B.")
        if KOHYA_PREFIX.match(key):
            stem, _, rest = KOHYA_PREFIX.sub("", key).partition(".")
            key = f"{kohya_names.get(stem, stem)}.{rest}"
        key = _strip_prefix(key)
        for part in ("lora_A", "lora_B", "alpha"):
            suffix = f".{part}.weight" if part != "alpha" else ".alpha"
            if key.endswith(suffix):
                pairs.setdefault(key[: -len(suffix)], {})[part] = tensor
    layers = {name: p for name, p in pairs.items() if "lora_A" in p and "lora_B" in p}
    if not layers:
        raise UserError(f"{source}: no LoRA layers found (expected lora_A/lora_B or lora_down/lora_up keys)")
    ranks = {p["lora_A"].shape[0] for p in layers.values()}
    if len(ranks) != 1:
        raise UserError(f"{source}: layers have different ranks ({sorted(ranks)}); expected one rank")
    rank = ranks.pop()
    alphas = {float(p["alpha"]) for p in layers.values() if "alpha" in p}
    folded = {}
    if len(alphas) > 1:  # per-layer alphas: fold each into B, leaving scale alpha/rank = 1
        for name, p in layers.items():
            scale = float(p.get("alpha", rank)) / rank
            folded[name] = (p["lora_A"], p["lora_B"] * scale)
        return LoraLayers(folded, rank, float(rank), source)
    alpha = alphas.pop() if alphas else float(metadata.get("lora_alpha", rank))
    return LoraLayers({n: (p["lora_A"], p["lora_B"]) for n, p in layers.items()}, rank, alpha, source)


def load_into_lora(module: torch.nn.Module, lora: LoraLayers, component: str) -> int:
    """Copy the layers into `module`'s injected LoRA; returns how many matched (0 is an error)."""
    params = dict(module.named_parameters())
    matched, missing = 0, []
    with torch.no_grad():
        for name, (a, b) in lora.layers.items():
            target_a, target_b = params.get(f"{name}.lora_A.{ADAPTER}.weight"), params.get(f"{name}.lora_B.{ADAPTER}.weight")
            if target_a is None or target_b is None:
                missing.append(name)
                continue
            if target_a.shape != a.shape or target_b.shape != b.shape:
                raise UserError(
                    f"--lora_checkpoint: {lora.source}: layer {name} has shapes {tuple(a.shape)}/{tuple(b.shape)}, "
                    f"{component} expects {tuple(target_a.shape)}/{tuple(target_b.shape)}"
                )
            target_a.copy_(a)
            target_b.copy_(b)
            matched += 1
    if not matched:
        sample = ", ".join(sorted(lora.layers)[:3])
        raise UserError(f"--lora_checkpoint: {lora.source}: none of its {len(lora.layers)} layers is a LoRA layer of {component} (e.g. {sample})")
    if missing:
        raise UserError(
            f"--lora_checkpoint: {lora.source}: {len(missing)} of {len(lora.layers)} layers are not LoRA "
            f"targets of {component} (e.g. {', '.join(missing[:3])}); pass matching --lora_target_modules"
        )
    return matched


def merge_lora(module: torch.nn.Module, lora: LoraLayers, component: str) -> int:
    """Fuse `W += alpha/rank * B @ A` into `module`'s Linear weights, one layer at a time (so no
    second copy of the model is ever held). Returns the number of layers merged."""
    merged, missing = 0, []
    for name, (a, b) in lora.layers.items():
        try:
            layer = module.get_submodule(name)
        except AttributeError:
            missing.append(name)
            continue
        weight = layer.weight
        with torch.no_grad():
            delta = (b.float() @ a.float()) * lora.scale
            if delta.shape != weight.shape:
                raise UserError(f"--preset_lora_path: {lora.source}: layer {name} is {tuple(delta.shape)}, {component} has {tuple(weight.shape)}")
            weight.copy_((weight.float() + delta.to(weight.device)).to(weight.dtype))
        merged += 1
    if missing:
        raise UserError(
            f"--preset_lora_path: {lora.source}: {len(missing)} of {len(lora.layers)} layers are not modules of "
            f"{component} (e.g. {', '.join(missing[:3])})"
        )
    return merged


# -- export of the other adapter kinds (--lora_type lokr / loha / dora) ---------------------------

#: Where each kind's file loads, for the model card and docs/recipes.md.
WHERE_IT_LOADS = {
    "lora": "diffusers (`pipe.load_lora_weights`) and ComfyUI's LoRA loader",
    "lokr": "ComfyUI's LoRA loader and LyCORIS/kohya tools (LyCORIS `lokr_w1`/`lokr_w2` keys); "
    "not diffusers, whose LoRA loader reads LoRA keys only",
    "loha": "ComfyUI's LoRA loader and LyCORIS/kohya tools (LyCORIS `hada_w1_a`... keys); "
    "not diffusers, whose LoRA loader reads LoRA keys only",
    "dora": "diffusers (peft DoRA: `lora_magnitude_vector` keys turn on use_dora) and peft; "
    "not ComfyUI, whose DoRA (`dora_scale`) normalises the other axis of the weight",
}

_PROBE_PARTS = (".lora_A.weight", ".lora_B.weight")


def _split_by_module(tensors: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """`blocks.0.to_q.lokr_w1` -> {"blocks.0.to_q": {"lokr_w1": ...}} (DoRA's `lora_A.weight` too)."""
    out: dict[str, dict[str, torch.Tensor]] = {}
    pattern = re.compile(r"^(.*)\.((?:lora_|lokr_|hada_)[A-Za-z0-9_]+(?:\.weight)?)$")
    for key, value in tensors.items():
        match = pattern.match(key)
        if match is None:
            raise UserError(f"unexpected adapter tensor {key!r}")
        out.setdefault(match.group(1), {})[match.group(2)] = value
    return out


def _kind_tensors(lora_type: str, parts: dict[str, torch.Tensor], rank: int, alpha: float) -> dict[str, torch.Tensor]:
    """One module's tensors in the file's names (suffixes after `<prefix><module>.`), so that the
    loaders' delta equals peft's (scale alpha / rank)."""
    scalar = lambda v: torch.tensor(float(v), dtype=torch.float32)  # noqa: E731
    if lora_type == "dora":
        return {
            "lora_A.weight": parts["lora_A.weight"], "lora_B.weight": parts["lora_B.weight"],
            "lora_magnitude_vector": parts["lora_magnitude_vector.weight"], "alpha": scalar(alpha),
        }
    if lora_type == "loha":  # ComfyUI/LyCORIS: (w1a @ w1b) * (w2a @ w2b) * alpha / rank, as peft
        return {**parts, "alpha": scalar(alpha)}
    # lokr: ComfyUI/LyCORIS scale a factor given as a product (w*_a @ w*_b) by alpha / rank, full
    # factors by 1; peft scales kron(w1, w2) by alpha / rank always. With no product factor the
    # scale is folded into w1 and alpha written as the rank (scale 1 for every alpha/rank reader).
    out = dict(parts)
    if any(k in parts for k in ("lokr_w1_a", "lokr_w2_a")):
        out["alpha"] = scalar(alpha)
    else:
        out["lokr_w1"] = parts["lokr_w1"] * (alpha / rank)
        out["alpha"] = scalar(rank)
    return {k: v.contiguous() for k, v in out.items()}


def adapter_output_files(split, weights, lora_type: str) -> list:
    """The files of a trained adapter. Plain LoRA: the family's split, unchanged. LoKr, LoHa,
    DoRA: the family's split decides the files and each module's name in them (its prefix and
    renaming, learnt by sending it one numbered LoRA pair per module), then the adapter's own
    tensors are written under those names with their kind's suffixes."""
    from dataclasses import replace

    if lora_type == "lora" or weights.kind != "lora":
        return split(weights)
    component = next(c for c, t in weights.tensors.items() if any(re.search(r"\.(lora_|lokr_|hada_)", k) for k in t))
    modules = _split_by_module(weights.tensors[component])
    names = sorted(modules)
    probe = {}
    for i, name in enumerate(names):
        probe[f"{name}.lora_A.weight"] = torch.full((1, 1), float(i))
        probe[f"{name}.lora_B.weight"] = torch.full((1, 1), float(i))
    files = split(replace(weights, tensors={**weights.tensors, component: probe}))
    rank, alpha = int(weights.lora_rank or 1), float(weights.lora_alpha if weights.lora_alpha is not None else weights.lora_rank or 1)
    for out in files:
        stems = {k[: -len(".lora_A.weight")]: int(v.flatten()[0].item()) for k, v in out.tensors.items() if k.endswith(".lora_A.weight") and v.numel() == 1}
        if len(stems) != len(names) or sorted(stems.values()) != list(range(len(names))):
            continue
        tensors = {k: v for k, v in out.tensors.items() if not any(k.startswith(f"{s}.") for s in stems)}
        for stem, i in stems.items():
            for suffix, tensor in _kind_tensors(lora_type, modules[names[i]], rank, alpha).items():
                tensors[f"{stem}.{suffix}"] = tensor
        out.tensors = tensors
        out.metadata = {**out.metadata, "lora_type": lora_type,
                        "lora_key_format": f"<prefix><module>.<{lora_type} tensors> + .alpha"}
        return files
    raise UserError(f"--lora_type {lora_type}: the family's split_state_dict does not write one key per LoRA module; "
                    "this family can export plain LoRA only")
