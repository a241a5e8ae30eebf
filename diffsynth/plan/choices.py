"""The standard alternatives to a run's memory options, and `--vram`: the fastest that fits.

An option set is (gradient checkpointing: off / on / offload, FP8 for the denoiser, FP8 for the
frozen encoders, the frozen encoders offloaded to host memory between steps); the run's own
flags are the floor (an option it asked for stays on). Speed order, cheapest first, by an
additive cost: FP8 encoders 1 (they run once a step, without grad), FP8 denoiser 2 (an upcast
per layer per forward), offloaded encoders 3 (their weights cross PCIe twice a step: for a 7B
text encoder about a fifth of a 20B DiT's step), checkpointing 4 (a second forward of the
denoiser), checkpointing offload 12 (plus a transfer of every saved tensor). A set fits when its predicted
peak plus `MARGIN` of it plus `RESERVED` (CUDA context, allocator fragmentation) is at most the
card's memory. When no such set fits, `--blocks_to_swap N` on top of the last (every option on)
is the way out: the fewest swapped blocks that fit (`fewest_swapped`), slower the more are swapped.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from diffsynth.config import TrainConfig, split_list
from diffsynth.errors import UserError
from diffsynth.plan import GIB
from diffsynth.plan.simulate import Prediction

MARGIN = 0.10
RESERVED = 1 * GIB
CHECKPOINTING = ("off", "on", "offload")


@dataclass(frozen=True)
class Options:
    checkpointing: str = "off"
    fp8_denoiser: bool = False
    fp8_encoders: bool = False
    #: `--blocks_to_swap`: after every other option (it needs checkpointing), so not in `cost`
    blocks_to_swap: int = 0
    #: `--offload_models` naming every frozen encoder
    offload_encoders: bool = False

    @property
    def cost(self) -> int:
        checkpointing = {"off": 0, "on": 4, "offload": 12}[self.checkpointing]
        return self.fp8_encoders + 2 * self.fp8_denoiser + 3 * self.offload_encoders + checkpointing

    def label(self) -> str:
        parts = [] if self.checkpointing == "off" else ["checkpointing" if self.checkpointing == "on" else "checkpointing offload"]
        parts += ["FP8 denoiser"] * self.fp8_denoiser + ["FP8 encoders"] * self.fp8_encoders
        parts += ["encoders offloaded"] * self.offload_encoders
        parts += [f"{self.blocks_to_swap} blocks swapped"] * bool(self.blocks_to_swap)
        return " + ".join(parts) or "none"


def given_options(config: TrainConfig, denoiser: str, encoders: list[str]) -> Options:
    fp8 = set(config.fp8_model_names())
    level = "offload" if config.use_gradient_checkpointing_offload else "on" if config.use_gradient_checkpointing else "off"
    offloaded = can_offload_encoders(config, encoders) and set(encoders) <= set(split_list(config.offload_models))
    return Options(level, denoiser in fp8, bool(encoders) and set(encoders) <= fp8, config.blocks_to_swap, offloaded)


def can_offload_encoders(config: TrainConfig, encoders: list[str]) -> bool:
    """`--offload_models` keeps encoders in host memory between steps in a plain run only: with
    the encoder cache they are not loaded while training, and split training gives the flag its
    own meaning."""
    return bool(encoders) and config.task == "sft" and not (config.cache_dir or config.cache)


def frozen_encoders(config: TrainConfig, components: list[str], denoiser: str) -> list[str]:
    """Components FP8 may store: not the denoiser, not trained in full."""
    return [c for c in components if c != denoiser and c not in config.trainable_model_names()]


def with_options(config: TrainConfig, options: Options, denoiser: str, encoders: list[str]) -> TrainConfig:
    """A copy of `config` with `options` switched on (the flags `train` would get)."""
    out = copy.deepcopy(config)
    out.use_gradient_checkpointing = options.checkpointing != "off" or config.use_gradient_checkpointing
    out.use_gradient_checkpointing_offload = options.checkpointing == "offload" or config.use_gradient_checkpointing_offload
    fp8 = list(config.fp8_model_names())
    if options.fp8_denoiser and denoiser not in config.trainable_model_names():
        fp8.append(denoiser)
    if options.fp8_encoders:
        fp8 += encoders
    out.fp8_models = ",".join(dict.fromkeys(fp8)) or None
    out.blocks_to_swap = options.blocks_to_swap
    if options.offload_encoders:
        out.offload_models = ",".join(dict.fromkeys([*split_list(config.offload_models), *encoders]))
    return out


def flags(options: Options, denoiser: str, encoders: list[str]) -> str:
    """The `train` flags that switch `options` on."""
    out = []
    if options.checkpointing == "on":
        out.append("--use_gradient_checkpointing")
    if options.checkpointing == "offload":
        out.append("--use_gradient_checkpointing_offload")
    fp8 = [denoiser] * options.fp8_denoiser + (encoders if options.fp8_encoders else [])
    if fp8:
        out.append(f"--fp8_models {','.join(fp8)}")
    if options.offload_encoders:
        out.append(f"--offload_models {','.join(encoders)}")
    if options.blocks_to_swap:
        out.append(f"--blocks_to_swap {options.blocks_to_swap}")
    return " ".join(out)


def _at_least(given: bool, possible: bool) -> set[bool]:
    return {True} if given else {False, possible}


def candidates(floor: Options, can_fp8_denoiser: bool, has_encoders: bool, can_offload: bool = False) -> list[Options]:
    """Every option set at or above `floor`, cheapest first."""
    levels = CHECKPOINTING[CHECKPOINTING.index(floor.checkpointing):]
    found = {
        Options(level, d, e, floor.blocks_to_swap, o)
        for level in levels
        for d in _at_least(floor.fp8_denoiser, can_fp8_denoiser)
        for e in _at_least(floor.fp8_encoders, has_encoders)
        for o in _at_least(floor.offload_encoders, can_offload)
    }
    return sorted(found, key=lambda o: (o.cost, o.label()))


def standard(floor: Options, can_fp8_denoiser: bool, has_encoders: bool, can_offload: bool = False) -> list[Options]:
    """The table's rows: as given, each option alone on top, and all of them."""
    checkpointing = "on" if floor.checkpointing == "off" else floor.checkpointing
    rows = [floor, dataclasses.replace(floor, checkpointing=checkpointing)]
    if can_fp8_denoiser:
        rows.append(dataclasses.replace(floor, fp8_denoiser=True))
    if has_encoders:
        rows.append(dataclasses.replace(floor, fp8_encoders=True))
    if can_offload:
        rows.append(dataclasses.replace(floor, offload_encoders=True))
    rows.append(Options(
        checkpointing, floor.fp8_denoiser or can_fp8_denoiser, floor.fp8_encoders or has_encoders, floor.blocks_to_swap,
        floor.offload_encoders or can_offload,
    ))  # fmt: skip
    return list(dict.fromkeys(rows))


def fits(peak: int, vram: int) -> bool:
    return peak * (1 + MARGIN) + RESERVED <= vram


def fastest_fitting(
    order: list[Options], vram: int, predict: Callable[[Options], Prediction], blocks: int = 0
) -> tuple[Options, Prediction]:
    """Predict in speed order (the run's own options first) and stop at the first that fits
    (after checking that the last, every option on, does); then, with `blocks` repeated blocks,
    the fewest swapped blocks on top of every option but offloaded encoders (unless the run asked
    for them); none: a one-line `UserError`."""
    smallest: tuple[Options, Prediction] | None = None
    # with swapped blocks, offloaded encoders cost their whole weights' transfer each step to save a
    # few blocks' (Qwen-Image 1024^2 on 24 GB: 34 swapped blocks + the 7.7 GB FP8 text encoder
    # moved each step, or 36 swapped blocks)
    swap_top = dataclasses.replace(order[-1], offload_encoders=order[0].offload_encoders)
    if not fits(predict(order[-1]).peak, vram):
        order = order[-1:]  # every option on saves the most: when it does not fit, no cheaper set does
    for options in order:
        prediction = predict(options)
        if fits(prediction.peak, vram):
            return options, prediction
        if smallest is None or prediction.peak < smallest[1].peak:
            smallest = (options, prediction)
    assert smallest is not None
    if blocks > 1 and swap_top.checkpointing != "off":
        found = fewest_swapped(swap_top, blocks, vram, predict)
        if found[1].peak < smallest[1].peak:
            smallest = found
        if fits(found[1].peak, vram):
            return found
    options, prediction = smallest
    raise UserError(
        f"--vram {vram / GIB:.1f} GiB: nothing fits; the smallest predicted peak is {prediction.peak / GIB:.2f} GiB "
        f"({options.label()}), which needs {(prediction.peak * (1 + MARGIN) + RESERVED) / GIB:.2f} GiB with the margin"
    )


def fewest_swapped(top: Options, blocks: int, vram: int, predict: Callable[[Options], Prediction]) -> tuple[Options, Prediction]:
    """The fewest `--blocks_to_swap` on top of `top` whose peak fits (or the most there can be,
    when none fits). The peak falls by about one block's weights per swapped block, so the count
    is interpolated between none and the most, then checked (a few predictions, not one per N)."""
    most = dataclasses.replace(top, blocks_to_swap=blocks - 1)
    high = predict(most)
    if not fits(high.peak, vram):
        return most, high
    low = predict(dataclasses.replace(top, blocks_to_swap=0))
    per_block = max((low.peak - high.peak) / (blocks - 1), 1.0)
    allowed = (vram - RESERVED) / (1 + MARGIN)
    least = max(1, top.blocks_to_swap)  # the run's own --blocks_to_swap stays the floor
    count = min(max(math.ceil((low.peak - allowed) / per_block), least), blocks - 1)
    best = (most, high)
    while count < blocks - 1:  # up until it fits
        options = dataclasses.replace(top, blocks_to_swap=count)
        prediction = predict(options)
        if fits(prediction.peak, vram):
            best = (options, prediction)
            break
        count += 1
    while best[0].blocks_to_swap > least:  # and down while one fewer still fits
        options = dataclasses.replace(top, blocks_to_swap=best[0].blocks_to_swap - 1)
        prediction = predict(options)
        if not fits(prediction.peak, vram):
            break
        best = (options, prediction)
    return best


def parse_vram(value: str) -> int:
    """`24`, `24G`, `24GB`, `24GiB` (all GiB, as nvidia-smi's MiB / 1024), `81559MiB`, or `auto`
    (the first CUDA device's memory)."""
    text = value.strip().lower()
    if text == "auto":
        import torch

        if not torch.cuda.is_available():
            raise UserError("--vram auto: no CUDA device here; give the card's memory, e.g. --vram 24GB")
        return int(torch.cuda.get_device_properties(0).total_memory)
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(g|gb|gib|m|mb|mib)?", text)
    if not match or float(match.group(1)) <= 0:
        raise UserError(f"--vram: expected a size such as 24GB, 80, 81559MiB or auto, got {value!r}")
    unit = (match.group(2) or "g")[0]
    return int(float(match.group(1)) * (GIB if unit == "g" else 1024**2))
