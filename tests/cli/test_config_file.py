"""`--config run.toml`, `--print_config`, and the CLI hygiene items: --version, -h, completion,
switches shown as switches. Through the real CLI entry point, in-process (run_main)."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from diffsynth import __version__
from tests.conftest import EXAMPLE_DATA, run_main

FLAGS = [
    "--dataset_base_path", str(EXAMPLE_DATA), "--max_pixels", "4096", "--lora_base_model", "dit",
    "--lora-rank", "4", "--dataset_repeat", "2", "--learning_rate", "2e-3", "--lora_target_modules", "to_q,to_out",
    "--timestep_sampling", "shift", "--discrete_flow_shift", "2.5", "--caption_dropout_rate", "0.25",
    "--optimizer_args", "betas=0.8,0.95", "--use_gradient_checkpointing", "--seed", "3",
]
TOML = f"""
dataset_base_path = "{EXAMPLE_DATA}"
max-pixels = 4096
lora_base_model = "dit"
lora_rank = 4
dataset_repeat = 2

[recipe]
learning_rate = 2e-3
lora_target_modules = ["to_q", "to_out"]
timestep_sampling = "shift"
discrete_flow_shift = 2.5
caption_dropout_rate = 0.25
optimizer_args = ["betas=0.8,0.95"]
use_gradient_checkpointing = true
seed = 3
"""


def _trained(out):
    return load_file(str(out / "epoch-0.safetensors")), [json.loads(x)["loss"] for x in (out / "loss_log.jsonl").read_text().splitlines()]


def test_a_toml_run_equals_the_cli_run_bit_for_bit(toy_models, tmp_path):
    env = {"DIFFSYNTH_MODEL_BASE_PATH": str(toy_models)}
    cli = run_main("train", "toy", *FLAGS, "--output_path", str(tmp_path / "cli"), **env)
    assert cli.returncode == 0, cli.stderr
    (tmp_path / "run.toml").write_text(TOML)
    toml = run_main("train", "toy", "--config", str(tmp_path / "run.toml"), "--output_path", str(tmp_path / "toml"), **env)
    assert toml.returncode == 0, toml.stderr
    (a, la), (b, lb) = _trained(tmp_path / "cli"), _trained(tmp_path / "toml")
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert la == lb
    args = [json.loads((tmp_path / d / "training_args.json").read_text()) for d in ("cli", "toml")]
    assert {k: v for k, v in args[0].items() if k != "output_path"} == {k: v for k, v in args[1].items() if k != "output_path"}


def test_print_config_round_trips_and_the_command_line_wins(tmp_path):
    (tmp_path / "run.toml").write_text(TOML)
    first = run_main("train", "toy", "--config", str(tmp_path / "run.toml"), "--seed", "9", "--print_config")
    assert first.returncode == 0, first.stderr
    assert "seed = 9\n" in first.stdout and "discrete_flow_shift = 2.5\n" in first.stdout
    assert 'lora_target_modules = "to_q,to_out"\n' in first.stdout
    (tmp_path / "effective.toml").write_text(first.stdout)
    again = run_main("train", "toy", "--config", str(tmp_path / "effective.toml"), "--print_config")
    assert again.stdout == first.stdout
    direct = run_main("train", "toy", *FLAGS, "--seed", "9", "--print_config")
    assert direct.stdout == first.stdout  # the same options, whether from the file or the flags


def test_bad_config_files_fail_with_one_line(tmp_path):
    cases = {
        'lora_rank = "four"\n': "--config: {p}: lora_rank = 'four': expected an integer",
        "lora_rnak = 4\n": "--config: {p}: lora_rnak is not an option of diffsynth train toy",
        "lora_rank = 4\nlora-rank = 5\n": "--config: {p}: option lora_rank is given twice",
        "lora_rank = \n": "--config: {p} is not valid TOML",
        "use_gradient_checkpointing = 1\n": "--config: {p}: use_gradient_checkpointing = 1: expected true or false",
    }
    for i, (text, message) in enumerate(cases.items()):
        path = tmp_path / f"bad{i}.toml"
        path.write_text(text)
        result = run_main("train", "toy", "--config", str(path))
        assert result.returncode == 2
        assert result.stderr.startswith("error: " + message.format(p=path)), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    missing = run_main("train", "toy", "--config", str(tmp_path / "nope.toml"))
    assert missing.returncode == 2 and missing.stderr == f"error: --config: file not found: {tmp_path / 'nope.toml'}\n"


def test_version_short_help_and_completion():
    version = run_main("--version")
    assert version.returncode == 0 and version.stdout == f"diffsynth {__version__}\n"
    for args in (["-h"], ["train", "toy", "-h"], ["models", "-h"]):
        result = run_main(*args)
        assert result.returncode == 0 and "Usage: diffsynth" in result.stdout, (args, result.stderr)
    root = run_main("--help").stdout
    assert "--install-completion" in root and "--show-completion" in root
    script = run_main("--show-completion", "bash")
    assert script.returncode == 0 and "_DIFFSYNTH_COMPLETE" in script.stdout


def test_switches_render_as_switches_and_work_without_a_value(tmp_path):
    text = run_main("train", "toy", "--help", COLUMNS="200").stdout
    line = next(x for x in text.splitlines() if "--use-gradient-checkpointing " in x)
    assert "<bool>" not in line and "Recompute activations" in line
    assert "--lora-rank" in text and "<int>" in text  # options that take a value still show it
    printed = run_main("train", "toy", "--use_gradient_checkpointing", "--overwrite", "--print_config").stdout
    assert "use_gradient_checkpointing = true" in printed and "overwrite = true" in printed
