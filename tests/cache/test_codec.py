"""The cache entry format: TrainingInputs round-trip through safetensors + JSON (no pickle), and
a file cannot make the reader import anything but a dataclass of the allowed packages."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch
from safetensors.torch import load_file, save_file

from diffsynth.cache.codec import METADATA_KEY, CacheFormatError, read_entry, read_info, write_entry
from diffsynth.errors import UserError
from diffsynth.types import TrainingInputs


@dataclass
class Inner:
    ids: torch.Tensor
    scale: float


@dataclass
class Conditioning:
    embeds: torch.Tensor
    shape: tuple[int, int, int]
    extra: torch.Tensor | None
    inner: Inner
    names: list[str]
    weight: float = float("inf")


def inputs() -> TrainingInputs:
    embeds = torch.randn(1, 5, 8)
    cond = Conditioning(embeds[:, 1:], (1, 2, 3), None, Inner(torch.arange(6).view(2, 3), 0.5), ["a", "b"])
    return TrainingInputs(torch.randn(1, 4, 16), cond, torch.ones(1, 4, 16))


def test_round_trip_keeps_types_values_and_dtypes(tmp_path):
    original = inputs()
    path = tmp_path / "e.safetensors"
    write_entry(path, original, {"row": 3})
    back = read_entry(path, allowed_packages=("tests",))
    assert read_info(path)["row"] == 3
    assert torch.equal(back.latents, original.latents) and torch.equal(back.loss_mask, original.loss_mask)
    c = back.conditioning
    assert type(c) is Conditioning and type(c.inner) is Inner
    assert torch.equal(c.embeds, original.conditioning.embeds) and c.inner.ids.dtype == torch.int64
    assert c.shape == (1, 2, 3) and isinstance(c.shape, tuple) and c.extra is None and c.names == ["a", "b"]
    assert c.inner.scale == 0.5 and c.weight == float("inf")
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temporary file, renamed


def test_class_outside_the_family_package_is_refused(tmp_path):
    path = tmp_path / "e.safetensors"
    write_entry(path, inputs(), {})
    with pytest.raises(CacheFormatError, match="not from this family's package"):
        read_entry(path, allowed_packages=("diffsynth_qwen_image",))


def test_a_file_naming_a_non_dataclass_is_refused(tmp_path):
    path = tmp_path / "e.safetensors"
    write_entry(path, inputs(), {})
    info = read_info(path)
    info["inputs"]["conditioning"]["dataclass"] = "os:system"  # what a hostile file would try
    save_file(load_file(path), str(path), metadata={METADATA_KEY: json.dumps(info)})
    with pytest.raises(CacheFormatError, match="not from this family's package"):
        read_entry(path, allowed_packages=("tests",))
    info["inputs"]["conditioning"]["dataclass"] = "tests.cache.test_codec:inputs"
    save_file(load_file(path), str(path), metadata={METADATA_KEY: json.dumps(info)})
    with pytest.raises(CacheFormatError, match="is not a dataclass"):
        read_entry(path, allowed_packages=("tests",))


def test_unstorable_value_is_one_clear_error(tmp_path):
    bad = TrainingInputs(torch.zeros(1), {1: object()})
    with pytest.raises(UserError, match="cannot store conditioning"):
        write_entry(tmp_path / "e.safetensors", bad, {})
