"""Docs stay true to the code: every hook has a section, every flag a row, every hook a test."""

import re
import sys
from pathlib import Path

import pytest

from diffsynth import hookspecs
from diffsynth.config import cli_fields

ROOT = Path(__file__).resolve().parents[1]
HOOKS = sorted(name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), "diffsynth_spec"))


def test_hook_list_is_the_documented_one():
    assert HOOKS == sorted(
        ["register_families", "init_model", "load_pipeline", "preprocess_inputs", "predict_flow",
         "compute_loss", "split_state_dict", "normalize_lora_state_dict"]
    )


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_section_in_the_plugin_guide(hook):
    assert f"### {hook}\n" in (ROOT / "docs" / "plugins.md").read_text()


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_exercised_by_a_test_plugin_or_the_core(hook):
    toy = (ROOT / "tests" / "plugins" / "toy_family.py").read_text()
    core_defaults = (ROOT / "diffsynth" / "default_hooks.py").read_text()
    assert f"def {hook}(" in toy or f"def {hook}(" in core_defaults


def test_every_train_flag_is_in_the_cli_reference():
    doc = (ROOT / "docs" / "cli.md").read_text()
    missing = [f.name for f in cli_fields() if not re.search(rf"`--{f.name}`", doc)]
    assert not missing, f"flags missing from docs/cli.md: {missing}"


def test_cli_reference_tables_match_the_flags_help_and_defaults():
    sys.path.insert(0, str(ROOT / "scripts"))
    from flag_tables import flag_tables

    assert flag_tables() in (ROOT / "docs" / "cli.md").read_text(), "regenerate with scripts/flag_tables.py"


def test_family_plugin_covers_every_per_family_hook():
    from diffsynth.family_plugin import PER_FAMILY_HOOKS, FamilyPlugin

    assert set(PER_FAMILY_HOOKS) | {"register_families"} == set(HOOKS)
    assert all(hasattr(FamilyPlugin, hook) for hook in HOOKS)
