"""The check that a LoRA trained with peft, exported by a family's split (the files `train`
writes), loads unchanged in diffusers and, by ComfyUI's rules, in ComfyUI: both give the trained
model's output. The family gives its pipeline, its DiT call, its target modules, its split and
the key prefix ComfyUI strips."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any


def check_peft_lora_export(
    pipe: Any,
    dit_inputs: Callable[[], dict],
    targets: Iterable[str],
    split: Callable[[Any], Any],
    comfy_prefix: str,
    folder: Path,
    rank: int,
    alpha: float,
    adapter_name: str | None = None,
) -> None:
    """Train nothing, but make a peft LoRA of `rank`/`alpha` on `targets` of `pipe.transformer`
    do something; export it through `split(TrainedWeights)` (one file); then
    - diffusers' `pipe.load_lora_weights` of the file gives the peft model's output (under
      `adapter_name`, deleted afterwards, when given: a pipe the caller reuses stays clean);
    - ComfyUI's merge (`<comfy_prefix><name>` -> `<name>.weight`, W += (alpha / rank) * B @ A
      with alpha read from `<name>.alpha`) gives it too."""
    import torch
    from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model
    from safetensors.torch import load_file, save_file

    from diffsynth.types import TrainedWeights

    base = copy.deepcopy(pipe.transformer)  # pristine, for peft and for the ComfyUI-style merge
    with torch.no_grad():
        base_out = base(**dit_inputs())[0]
    trained = inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(targets)), copy.deepcopy(base))
    torch.manual_seed(1)
    for name, param in trained.named_parameters():
        if "lora_B" in name:
            param.data.normal_(0, 0.1)  # peft initialises B to zero: make the LoRA do something
    with torch.no_grad():
        trained_out = trained(**dit_inputs())[0]
    peft_keys = get_peft_model_state_dict(trained)
    assert all(".default." not in k for k in peft_keys)

    (out,) = split(TrainedWeights("lora", {"dit": peft_keys}, lora_rank=rank, lora_alpha=alpha))
    path = folder / "lora.safetensors"
    save_file(out.tensors, str(path), metadata=out.metadata)

    # diffusers, from the file as written
    pipe.load_lora_weights(str(path), **({"adapter_name": adapter_name} if adapter_name else {}))
    try:
        with torch.no_grad():
            loaded_out = pipe.transformer(**dit_inputs())[0]
    finally:
        if adapter_name:
            pipe.delete_adapters(adapter_name)
    assert not torch.allclose(trained_out, base_out, atol=1e-4)
    torch.testing.assert_close(loaded_out, trained_out, atol=1e-5, rtol=1e-5)

    # ComfyUI's rules (comfy/lora.py)
    state = load_file(str(path))
    merged = copy.deepcopy(base)
    params = dict(merged.named_parameters())
    modules = {k.removesuffix(".lora_A.weight") for k in state if k.endswith(".lora_A.weight")}
    assert len(modules) == len(peft_keys) // 2 and all(m.startswith(comfy_prefix) for m in modules)
    with torch.no_grad():
        for m in modules:
            a, b = state[f"{m}.lora_A.weight"], state[f"{m}.lora_B.weight"]
            params[m.removeprefix(comfy_prefix) + ".weight"] += state[f"{m}.alpha"].item() / a.shape[0] * (b @ a)
        comfy_out = merged(**dit_inputs())[0]
    torch.testing.assert_close(comfy_out, trained_out, atol=1e-5, rtol=1e-5)
