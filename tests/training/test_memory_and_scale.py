"""FP8 storage, activation offload, and multi-process training on CPU (toy family)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from diffsynth.config import TrainConfig
from diffsynth.errors import UserError
from diffsynth.plugins import load_registry
from diffsynth.training.precision import FP8
from diffsynth.training.trainer import Trainer
from tests.conftest import EXAMPLE_DATA, ROOT, cli_env


@pytest.fixture
def offline(toy_models, monkeypatch):
    monkeypatch.setenv("DIFFSYNTH_MODEL_BASE_PATH", str(toy_models))
    monkeypatch.setenv("DIFFSYNTH_SKIP_DOWNLOAD", "True")


def toy_config(tmp_path: Path, **kw) -> TrainConfig:
    base = dict(family="toy", dataset_base_path=str(EXAMPLE_DATA), lora_base_model="dit", lora_rank=4,
                learning_rate=1e-2, output_path=str(tmp_path / "out"), dataset_repeat=2)
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize("name", ["dit", "toy/Toy:dit/*.safetensors"])
def test_fp8_lora_base_trains_with_weights_stored_in_fp8(tmp_path, offline, name):
    trainer = Trainer(load_registry(), toy_config(tmp_path, fp8_models=name))
    result = trainer.run()
    dit = trainer.pipeline.modules["dit"]
    stored = {n: p.dtype for n, p in dit.named_parameters() if "lora_" not in n and p.dim() == 2}
    assert stored and all(dtype == FP8 for dtype in stored.values()), stored
    assert all(p.dtype == torch.float32 for n, p in dit.named_parameters() if "lora_" in n)
    assert all(torch.isfinite(torch.tensor(result.losses)))
    lora = load_file(result.files[0])
    assert any(k.endswith("lora_B.weight") and v.abs().sum() > 0 for k, v in lora.items())  # it learned


def test_fp8_model_cannot_be_trained_in_full(tmp_path, offline):
    config = toy_config(tmp_path, lora_base_model=None, trainable_models="dit", fp8_models="dit")
    with pytest.raises(UserError, match="--fp8_models: dit is also in --trainable_models"):
        Trainer(load_registry(), config).run()


def test_unknown_fp8_name_lists_components_and_sources(tmp_path, offline):
    with pytest.raises(UserError, match=r"--fp8_models: 'vae' is neither a component \(dit\) nor one of the model sources"):
        Trainer(load_registry(), toy_config(tmp_path, fp8_models="vae")).run()


def test_checkpoint_offload_gives_the_same_losses(tmp_path, offline):
    plain = Trainer(load_registry(), toy_config(tmp_path / "a", use_gradient_checkpointing=True)).run()
    offload = Trainer(load_registry(), toy_config(tmp_path / "b", use_gradient_checkpointing_offload=True)).run()
    assert len(plain.losses) == len(offload.losses) == 16
    assert offload.losses == pytest.approx(plain.losses, rel=1e-5, abs=1e-6)


def test_two_processes_train_one_model_and_write_one_set_of_files(tmp_path, toy_models):
    out, dump = tmp_path / "out", tmp_path / "ranks"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "diffsynth.testing.rank_dump", str(dump), "train", "toy",
           "--dataset_base_path", str(EXAMPLE_DATA), "--lora_base_model", "dit", "--lora_rank", "4",
           "--learning_rate", "1e-2", "--dataset_repeat", "2", "--output_path", str(out), "--find_unused_parameters"]
    env = cli_env(DIFFSYNTH_MODEL_BASE_PATH=str(toy_models))
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "2 process(es)" in result.stdout
    # each rank saw half the 16 samples: 8 optimizer steps, logged once (by rank 0)
    log = [json.loads(line) for line in (out / "loss_log.jsonl").read_text().splitlines()]
    assert len(log) == 8
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "epoch-0.safetensors", "loss.png", "loss_log.jsonl", "training_args.json"]
    saved = {k.removeprefix("diffusion_model."): v for k, v in load_file(out / "epoch-0.safetensors").items() if not k.endswith(".alpha")}
    rank0, rank1 = load_file(dump / "rank-0.safetensors"), load_file(dump / "rank-1.safetensors")
    assert rank0.keys() == rank1.keys() and all(rank0[k].equal(rank1[k]) for k in rank0)  # DDP kept them in sync
    on_rank1 = {k.removeprefix("dit.").replace(".default.", "."): v for k, v in rank1.items()}
    assert saved.keys() == on_rank1.keys() and all(saved[k].equal(on_rank1[k]) for k in saved)
    assert any(v.abs().sum() > 0 for k, v in saved.items() if "lora_B" in k)


@pytest.mark.parametrize("config", sorted((ROOT / "examples" / "accelerate").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_accelerate_configs_load(config):
    from accelerate.commands.config.config_args import load_config_from_file

    cluster = load_config_from_file(str(config))
    assert cluster.num_machines == 1 and cluster.num_processes >= 1
