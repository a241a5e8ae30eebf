"""A family split by concern and registered with `LazyFamily`: the entry point stays light, the
class loads on the first hook call (checked, mixins included), and its mistakes are one line."""

import json
import sys

import pytest

from diffsynth.errors import PluginError
from diffsynth.family import Family, FamilyDefinitionError, LazyFamily
from diffsynth.plugins import load_registry
from tests.conftest import run_main

# a two-module family: the mixin holds the real methods (here: the toy family's), family.py composes
ENTRY = '''
import dataclasses
from diffsynth.plugin import LazyFamily
from toy_family import SPEC
SPEC = dataclasses.replace(SPEC, name="lazy-toy")

def _family():
    from .family import LazyToy
    return LazyToy

plugin = LazyFamily(SPEC, _family)
'''
FAMILY = '''
from diffsynth.plugin import Family
from toy_family import Toy
from . import SPEC

class Training:
    def predict_flow(self, pipeline, inputs, noisy_latents, sigmas):
        return Toy.predict_flow(self, pipeline, inputs, noisy_latents, sigmas)

class LazyToy(Training, Toy, Family):
    spec = SPEC
'''


@pytest.fixture
def lazy_package(tmp_path, monkeypatch):
    """Writes package `name` (entry module + family.py) under tmp_path, importable."""

    def write(name: str, family_code: str) -> str:
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(ENTRY)
        (tmp_path / name / "family.py").write_text(family_code)
        return name

    monkeypatch.syspath_prepend(str(tmp_path))
    yield write
    for module in [m for m in sys.modules if m.startswith("lazy_pkg")]:
        del sys.modules[module]


def test_registration_reads_the_spec_alone_and_the_first_call_loads_the_class(lazy_package, tmp_path):
    name = lazy_package("lazy_pkg_ok", FAMILY)
    registry = load_registry(extra_plugins=(__import__(name).plugin,), use_entry_points=False)
    assert "lazy-toy" in registry.families and not registry.broken
    assert f"{name}.family" not in sys.modules  # registering did not import the class
    registry.hook.init_model(family="lazy-toy", preset="tiny", directory=tmp_path / "m", seed=0)
    assert f"{name}.family" in sys.modules and (tmp_path / "m").is_dir()
    plugin = sys.modules[name].plugin
    assert type(plugin._impl()).__name__ == "LazyToy" and plugin._impl() is plugin._impl()
    # the registry sees what the loaded class overrides, not the LazyFamily's forwarders (which
    # override every method)
    assert registry.implements("lazy-toy", "init_model") and not registry.implements("lazy-toy", "sample_images")


def test_a_typo_in_the_lazily_loaded_class_is_one_line_before_anything_runs(lazy_package, tmp_path):
    name = lazy_package("lazy_pkg_typo", FAMILY.replace("def predict_flow(", "def predict_flwo("))
    env = {"DIFFSYNTH_PLUGINS": f"toy_family:plugin,{name}:plugin"}
    listed = run_main("models", "list", **env)
    assert listed.returncode == 0 and "lazy-toy" in listed.stdout
    checked = run_main("models", "list", "--check", "--json", **env)
    assert checked.returncode == 1
    rows = {row["name"]: row for row in json.loads(checked.stdout)}
    assert rows["toy"]["status"] == "ok" and "lazy-toy" not in rows
    assert "Training.predict_flwo is not a family hook" in rows[f"{name}:plugin"]["description"]
    result = run_main("models", "init", "lazy-toy", str(tmp_path / "out"), "--preset", "tiny", **env)
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert "family lazy-toy: its class does not load: Training.predict_flwo is not a family hook" in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_mixin_with_other_parameters_fails_when_the_class_is_composed():
    class Inputs:
        def preprocess_inputs(self, pipeline, sample):
            return None

    with pytest.raises(FamilyDefinitionError, match=r"Inputs.preprocess_inputs\(self, pipeline, sample\): expected"):
        type("Composed", (Inputs, Family), {})


def test_a_load_that_returns_another_family_is_refused():
    import dataclasses

    from toy_family import SPEC, Toy

    lazy = LazyFamily(dataclasses.replace(SPEC, name="other"), lambda: Toy)
    with pytest.raises(PluginError, match="Toy.spec is not the spec it registered"):
        lazy.collate_inputs([])
