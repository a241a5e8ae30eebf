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
        ["register_families", "init_model", "load_pipeline", "plan_pipeline", "preprocess_inputs", "predict_flow",
         "compute_loss", "split_state_dict", "normalize_lora_state_dict", "sample_images", "collate_inputs"]
    )


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_section_in_the_plugin_guide(hook):
    assert f"### {hook}\n" in (ROOT / "docs" / "plugins.md").read_text()


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_carried_by_the_family_base_class(hook):
    """`Family` answers every hook (its defaults are the core's), so a family is one subclass."""
    from diffsynth.family import Family

    impls = [getattr(Family, n) for n in dir(Family) if hasattr(getattr(Family, n), "diffsynth_impl")]
    assert hook in {f.diffsynth_impl.get("specname") or f.__name__ for f in impls}


def test_every_train_flag_is_in_the_cli_reference():
    doc = (ROOT / "docs" / "cli.md").read_text()
    missing = [f.name for f in cli_fields() if not re.search(rf"`--{f.name}`", doc)]
    assert not missing, f"flags missing from docs/cli.md: {missing}"


def test_cli_reference_tables_match_the_flags_help_and_defaults():
    sys.path.insert(0, str(ROOT / "scripts"))
    from flag_tables import flag_tables

    assert flag_tables() in (ROOT / "docs" / "cli.md").read_text(), "regenerate with scripts/flag_tables.py"


def test_the_toy_family_writes_every_required_method():
    from diffsynth.family import REQUIRED

    toy = (ROOT / "tests" / "plugins" / "toy_family.py").read_text()
    assert all(f"def {name}(self" in toy for name in REQUIRED)
