"""docs/plugins.md is true: its one-page family is at most 30 lines of Python, registers, trains
through the real trainer, and the mistakes the guide promises to catch fail at definition."""

import re
import sys
from pathlib import Path

import pytest

from diffsynth.config import TrainConfig
from diffsynth.family import Family, FamilyDefinitionError
from diffsynth.plugins import load_registry

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def guide_family(tmp_path_factory):
    """The guide's first Python block, written to a module and imported (as a plugin would be)."""
    code = re.search(r"```python\n(.*?)```", (ROOT / "docs" / "plugins.md").read_text(), re.S).group(1)
    folder = tmp_path_factory.mktemp("guide")
    (folder / "my_family.py").write_text(code)
    sys.path.insert(0, str(folder))
    try:
        import my_family

        yield my_family, code
    finally:
        sys.path.remove(str(folder))


def test_the_guide_family_is_at_most_30_lines_of_python(guide_family):
    _, code = guide_family
    lines = [line for line in code.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert len(lines) <= 30, len(lines)


def test_the_guide_family_registers_and_trains(guide_family, tmp_path, monkeypatch):
    import torch
    from safetensors.torch import load_file, save_file

    module, _ = guide_family
    registry = load_registry(extra_plugins=(module.plugin,), use_entry_points=False)
    assert "my-family" in registry.families
    torch.manual_seed(0)
    repo = tmp_path / "models" / "me" / "my-model"
    repo.mkdir(parents=True)
    save_file(module.make_denoiser().state_dict(), str(repo / "model.safetensors"))
    monkeypatch.setenv("DIFFSYNTH_MODEL_BASE_PATH", str(tmp_path / "models"))
    monkeypatch.setenv("DIFFSYNTH_SKIP_DOWNLOAD", "True")
    config = TrainConfig(family="my-family", dataset_base_path=str(ROOT / "examples" / "data"), height=16, width=16,
                         lora_base_model="dit", lora_rank=4, learning_rate=1e-2, output_path=str(tmp_path / "out"))
    from diffsynth.training.trainer import Trainer

    result = Trainer(registry, config).run()
    lora = load_file(str(result.files[0]))
    assert any(k.startswith("diffusion_model.") and k.endswith("lora_B.weight") and v.abs().sum() > 0 for k, v in lora.items())
    assert all(torch.isfinite(torch.tensor(result.losses)))


def test_a_misspelled_hook_fails_when_the_class_is_defined(guide_family):
    module, _ = guide_family
    with pytest.raises(FamilyDefinitionError, match=r"preprocess_input is not a family hook"):
        type("Typo", (Family,), {"spec": module.MyFamily.spec, "preprocess_input": lambda self, p, s, c: None})


def test_a_wrong_signature_fails_when_the_class_is_defined(guide_family):
    module, _ = guide_family
    with pytest.raises(FamilyDefinitionError, match=r"predict_flow\(self, pipeline, inputs\): expected"):
        type("Wrong", (module.MyFamily,), {"predict_flow": lambda self, pipeline, inputs: None})


def test_a_missing_required_hook_fails_when_the_class_is_defined(guide_family):
    module, _ = guide_family
    with pytest.raises(FamilyDefinitionError, match=r"does not write predict_flow"):
        type("Missing", (Family,), {"spec": module.MyFamily.spec, "load_pipeline": module.MyFamily.load_pipeline,
                                    "preprocess_inputs": module.MyFamily.preprocess_inputs})


def test_a_broken_plugin_is_one_row_and_the_others_keep_working(tmp_path, monkeypatch):
    (tmp_path / "exits_on_import.py").write_text("import sys\nsys.exit(3)\n")
    (tmp_path / "typo_family.py").write_text(
        "from toy_family import SPEC\nfrom diffsynth.plugin import Family\n"
        "class T(Family):\n    spec = SPEC\n    def preprocess_input(self, a, b, c): pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("DIFFSYNTH_PLUGINS", "toy_family:plugin,exits_on_import,typo_family,toy_family:plugin")
    registry = load_registry(use_entry_points=False)
    assert list(registry.families) == ["toy"]
    broken = {b.name: b.error for b in registry.broken}
    assert "SystemExit" in broken["exits_on_import"]
    assert "preprocess_input is not a family hook" in broken["typo_family"]
    assert "already registered" in broken["toy_family:plugin"]
