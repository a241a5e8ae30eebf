"""`diffsynth models list | info | init` and the light start-up they promise."""

import json
import subprocess
import sys

from tests.conftest import cli_env, run_cli, run_main

HEAVY = ("torch", "diffusers", "transformers", "peft", "accelerate")


def test_models_list_imports_no_heavy_module():
    code = (
        "import sys\n"
        "from diffsynth.cli import main\n"
        "try:\n    main(['models', 'list', '--json'])\nexcept SystemExit:\n    pass\n"
        f"print('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "HEAVY="
    assert "toy" in out.stdout


def test_models_list_json_names_plugin_and_version():
    out = run_main("models", "list", "--json")
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert rows["toy"]["status"] == "ok" and rows["toy"]["plugin"] == "toy_family:plugin"


def test_broken_plugin_is_reported_and_others_still_work():
    out = run_main("models", "list", "--json", DIFFSYNTH_PLUGINS="toy_family:plugin,no_such_plugin_module")
    assert out.returncode == 0, out.stderr
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert rows["no_such_plugin_module"]["status"] == "broken"
    assert "ModuleNotFoundError" in rows["no_such_plugin_module"]["description"]
    assert rows["toy"]["status"] == "ok"


def test_models_info_json_lists_sources_targets_presets():
    out = run_main("models", "info", "toy", "--json")
    info = json.loads(out.stdout)
    assert info["variants"][0]["model_sources"] == ["toy/Toy:dit/*.safetensors"]
    assert info["default_lora_targets"] == ["to_q", "to_out"]
    assert [p["name"] for p in info["presets"]] == ["tiny"]


def test_models_init_writes_identifiable_checkpoint(tmp_path):
    out = run_main("models", "init", "toy", str(tmp_path / "m"), "--preset", "tiny", "--seed", "3")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "m" / "dit" / "model.safetensors").stat().st_size > 0


def test_unknown_family_lists_registered_ones_in_one_line():
    out = run_main("models", "info", "nope")
    assert out.returncode == 2
    line = out.stderr.strip()
    assert line.startswith("error: unknown model family 'nope'; registered families: ")
    assert "toy" in line.split("registered families: ")[1].split(", ")
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_unknown_preset_is_one_line_error(tmp_path):
    out = run_main("models", "init", "toy", str(tmp_path), "--preset", "huge")
    assert out.returncode != 0
    assert out.stderr.strip() == "error: --preset: toy has no preset 'huge'; presets: tiny"


def test_python_dash_m_works():
    out = run_cli("--help")
    assert out.returncode == 0 and "models" in out.stdout and "train" in out.stdout
