"""`diffsynth train FAMILY`: flag spellings, one-line user errors, and full runs on the toy family."""

import json

import pytest
from safetensors import safe_open

from diffsynth.cli import main as cli_main
from diffsynth.cli import train_cmd
from tests.conftest import EXAMPLE_DATA, run_main


def parsed_config(monkeypatch, *args):
    """Parse `train toy ARGS` through the real CLI and return the TrainConfig it would run."""
    seen = []
    monkeypatch.setattr(train_cmd, "run_training", lambda registry, config: seen.append(config))
    cli_main(["train", "toy", *args])
    return seen[0]


def test_underscore_and_dashed_flags_give_the_same_config(monkeypatch):
    under = parsed_config(
        monkeypatch, "--dataset_base_path", "d", "--lora_rank", "8", "--lora_base_model", "dit",
        "--use_gradient_checkpointing", "--model_id_with_origin_paths", "a/b:c*.safetensors", "--max_pixels", "4096",
    )
    dashed = parsed_config(
        monkeypatch, "--dataset-base-path", "d", "--lora-rank", "8", "--lora-base-model", "dit",
        "--use-gradient-checkpointing", "--model-id-with-origin-paths", "a/b:c*.safetensors", "--max-pixels", "4096",
    )
    assert under == dashed
    assert under.lora_rank == 8 and under.use_gradient_checkpointing and under.max_pixels == 4096


def one_line_error(result):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def train(tmp_path, models, *args, **env):
    return run_main(
        "train", "toy", "--dataset_base_path", str(EXAMPLE_DATA), "--output_path", str(tmp_path / "out"),
        *args, DIFFSYNTH_MODEL_BASE_PATH=str(models), **env,
    )


def test_malformed_model_paths_json(tmp_path, toy_models):
    line = one_line_error(train(tmp_path, toy_models, "--lora_base_model", "dit", "--model_paths", "[oops"))
    assert line.startswith("error: --model_paths: not valid JSON")


def test_missing_data_file_key_column(tmp_path, toy_models):
    line = one_line_error(train(tmp_path, toy_models, "--lora_base_model", "dit", "--data_file_keys", "image,edit_image"))
    assert "no column 'edit_image'" in line and "--data_file_keys" in line


def test_lora_targets_matching_nothing_list_what_exists(tmp_path, toy_models):
    line = one_line_error(train(tmp_path, toy_models, "--lora_base_model", "dit", "--lora_target_modules", "to_v"))
    assert line.startswith("error: --lora_target_modules: to_v matches no module of dit")
    assert "to_q" in line and "to_out" in line


def test_nothing_to_train_is_an_error(tmp_path, toy_models):
    line = one_line_error(train(tmp_path, toy_models))
    assert "--lora_base_model" in line and "--trainable_models" in line


def test_missing_model_files_with_downloads_disabled(tmp_path):
    line = one_line_error(train(tmp_path, tmp_path / "empty", "--lora_base_model", "dit"))
    assert "toy/Toy:dit/*.safetensors: no file matches" in line and "DIFFSYNTH_SKIP_DOWNLOAD=True" in line


def test_debug_shows_the_traceback(tmp_path, toy_models):
    out = train(tmp_path, toy_models, "--lora_base_model", "dit", "--model_paths", "[oops", "--debug")
    assert out.returncode != 0 and "Traceback" in out.stderr


def read_safetensors(path):
    with safe_open(str(path), "pt") as fh:
        return {k: fh.get_tensor(k) for k in fh.keys()}, fh.metadata()


@pytest.mark.parametrize("metadata", ["metadata.csv", "metadata.json", "metadata.jsonl"])
def test_lora_run_writes_weights_args_log_and_card(tmp_path, toy_models, metadata):
    out = train(
        tmp_path, toy_models, "--lora_base_model", "dit", "--lora_rank", "4", "--lora_alpha", "8",
        "--dataset_metadata_path", str(EXAMPLE_DATA / metadata), "--dataset_repeat", "3",
        "--gradient_accumulation_steps", "2", "--save_steps", "5", "--learning_rate", "1e-3",
    )
    assert out.returncode == 0, out.stderr
    folder = tmp_path / "out"
    rows = len(open(EXAMPLE_DATA / "metadata.jsonl").read().splitlines())
    steps = -(-rows * 3 // 2)  # optimizer steps = ceil(micro-batches / accumulation)
    log = [json.loads(line) for line in (folder / "loss_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, steps + 1))
    assert all(r["lr"] == 1e-3 for r in log)  # constant LR from the first step
    assert [len(r["rows"]) for r in log[:-1]] == [2] * (steps - 1)  # two micro-batches per step
    saved = sorted(p.name for p in folder.glob("step-*.safetensors"))
    expected = sorted({f"step-{s}.safetensors" for s in range(5, steps + 1, 5)} | {f"step-{steps}.safetensors"})
    assert saved == expected
    tensors, meta = read_safetensors(folder / f"step-{steps}.safetensors")
    assert any(k.endswith("lora_B.weight") and v.abs().sum() > 0 for k, v in tensors.items())
    assert meta["lora_rank"] == "4" and meta["lora_alpha"] == "8.0"
    args = json.loads((folder / "training_args.json").read_text())
    assert args["lora_rank"] == 4 and args["family"] == "toy"
    assert "rank 4, alpha 8" in (folder / "README.md").read_text()


def test_full_training_saves_per_epoch_with_module_keys(tmp_path, toy_models):
    out = train(tmp_path, toy_models, "--trainable_models", "dit", "--num_epochs", "2", "--remove_prefix_in_ckpt", "pipe.dit.")
    assert out.returncode == 0, out.stderr
    e0, _ = read_safetensors(tmp_path / "out" / "epoch-0.safetensors")
    e1, _ = read_safetensors(tmp_path / "out" / "epoch-1.safetensors")
    base, _ = read_safetensors(toy_models / "toy" / "Toy" / "dit" / "model.safetensors")
    assert set(e1) == set(base)
    assert any(not e1[k].equal(base[k]) for k in base) and any(not e1[k].equal(e0[k]) for k in base)


def test_bad_dataset_fails_before_any_model_is_resolved(tmp_path):
    # no models exist at all: the dataset error must come first (seconds, not after a model load)
    line = one_line_error(train(tmp_path, tmp_path / "no-models", "--lora_base_model", "dit", "--data_file_keys", "photo"))
    assert "no column 'photo'" in line


def test_report_to_tensorboard_writes_event_files(tmp_path, toy_models):
    out = train(tmp_path, toy_models, "--lora_base_model", "dit", "--report_to", "tensorboard", "--max_steps", "3")
    assert out.returncode == 0, out.stderr
    events = list((tmp_path / "out").rglob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
