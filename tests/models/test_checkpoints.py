"""Checkpoint identification from headers, and loading without a second copy."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from diffsynth.errors import UserError
from diffsynth.models.checkpoints import build_module, identify, load_state_dict
from diffsynth.models.header import read_header
from diffsynth.plugins import load_registry


@pytest.fixture
def toy():
    return load_registry().get("toy")


def test_header_reads_keys_shapes_and_merges_shards(tmp_path):
    save_file({"a.weight": torch.zeros(2, 3)}, str(tmp_path / "1.safetensors"), metadata={"k": "v"})
    save_file({"blocks.4.w": torch.zeros(5, dtype=torch.bfloat16)}, str(tmp_path / "2.safetensors"))
    header = read_header([tmp_path / "1.safetensors", tmp_path / "2.safetensors"])
    assert header.shape("a.weight") == (2, 3) and header.tensors["blocks.4.w"].dtype == "BF16"
    assert header.count_indexed(r"blocks\.(\d+)\.") == 5 and header.metadata == {"k": "v"}


def test_non_safetensors_bytes_are_a_user_error(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00notjs")
    with pytest.raises(UserError, match="bad.safetensors: not a safetensors file"):
        read_header([bad])


def test_identify_names_component_or_explains(tmp_path, toy):
    save_file({"in_proj.weight": torch.zeros(2, 2), "text_embed.weight": torch.zeros(2, 2)}, str(tmp_path / "d.safetensors"))
    assert identify(toy, "d", [tmp_path / "d.safetensors"]).component == "dit"
    save_file({"encoder.layers.0.weight": torch.zeros(1)}, str(tmp_path / "e.safetensors"))
    with pytest.raises(UserError, match=r"e: matches no component of toy \(dit\); its keys start: encoder.layers.0.weight"):
        identify(toy, "e", [tmp_path / "e.safetensors"])


EXAMPLE_DATA = Path(__file__).resolve().parents[2] / "examples" / "data"
# a second family, which recognises a checkpoint the toy family does not
OTHER_FAMILY = """
import dataclasses
from diffsynth.plugin import ComponentSpec
from toy_family import SPEC, Toy

class Other(Toy):
    spec = dataclasses.replace(SPEC, name="other", components=(
        ComponentSpec("dit", "an encoder-shaped denoiser", lambda header: header.has("encoder.layers.0.weight")),))

plugin = Other()
"""


def test_a_checkpoint_another_family_recognises_is_named_in_the_error(tmp_path, monkeypatch):
    from tests.conftest import run_main

    (tmp_path / "other_family.py").write_text(OTHER_FAMILY)
    monkeypatch.syspath_prepend(str(tmp_path))
    save_file({"encoder.layers.0.weight": torch.zeros(1)}, str(tmp_path / "e.safetensors"))
    result = run_main(
        "train", "toy", "--model_paths", f'["{tmp_path / "e.safetensors"}"]', "--dataset_base_path", str(EXAMPLE_DATA),
        DIFFSYNTH_PLUGINS="toy_family:plugin,other_family:plugin",
    )  # fmt: skip
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "matches no component of toy (dit)" in result.stderr
    assert result.stderr.rstrip().endswith("; other recognises it as its dit")


class PickledObject:
    """Anything not a tensor: unpickling it could run code, so it must be refused."""


def test_pth_with_pickled_object_is_refused(tmp_path):
    torch.save({"w": torch.zeros(1), "obj": PickledObject()}, tmp_path / "m.pth")
    with pytest.raises(UserError, match="m.pth: refused: it holds pickled Python objects"):
        read_header([tmp_path / "m.pth"])


def test_build_module_assigns_loaded_tensors_without_copy(tmp_path):
    save_file({"weight": torch.randn(4, 3), "bias": torch.randn(4)}, str(tmp_path / "l.safetensors"))
    state = load_state_dict([tmp_path / "l.safetensors"])
    module = build_module(lambda: torch.nn.Linear(3, 4), state)
    assert module.weight.data_ptr() == state["weight"].data_ptr()  # assigned, not copied
    assert torch.equal(module.bias, state["bias"])


def test_build_module_reports_missing_and_unexpected_keys(tmp_path):
    with pytest.raises(UserError, match=r"1 missing \(e.g. bias\); 1 unexpected \(e.g. extra\)"):
        build_module(lambda: torch.nn.Linear(3, 4), {"weight": torch.zeros(4, 3), "extra": torch.zeros(1)}, "src")
