"""Issue-5 behaviours on the real Qwen-Image family: two trained modules -> two files, each
loading back into its module; and two processes (DDP over gloo) on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from safetensors.torch import load_file

from diffsynth.config import TrainConfig
from diffsynth.models.sources import MODEL_BASE_ENV, SKIP_DOWNLOAD_ENV
from diffsynth.plugins import load_registry
from diffsynth.training.trainer import Trainer

DATA = Path(__file__).resolve().parents[3] / "examples" / "data"


def test_lora_plus_full_text_encoder_split_into_two_loadable_files(tmp_path, model_base, monkeypatch):
    monkeypatch.setenv(MODEL_BASE_ENV, str(model_base))
    monkeypatch.setenv(SKIP_DOWNLOAD_ENV, "True")
    config = TrainConfig(family="qwen-image", dataset_base_path=str(DATA), max_pixels=4096, lora_base_model="dit",
                         lora_rank=4, trainable_models="text_encoder", learning_rate=1e-3, output_path=str(tmp_path))
    trainer = Trainer(load_registry(), config)
    result = trainer.run()
    assert sorted(p.name for p in result.files) == ["epoch-0-dit.safetensors", "epoch-0-text_encoder.safetensors"]

    text_encoder = load_file(tmp_path / "epoch-0-text_encoder.safetensors")
    module = trainer.pipeline.modules["text_encoder"]
    assert set(text_encoder) == set(module.state_dict())
    assert all(text_encoder[k].equal(v) for k, v in module.state_dict().items())  # loads back exactly

    from diffusers import QwenImagePipeline

    pipe = QwenImagePipeline.from_pretrained(model_base / "Qwen" / "Qwen-Image")
    pipe.load_lora_weights(str(tmp_path / "epoch-0-dit.safetensors"))
    ours = dict(trainer.pipeline.modules["dit"].named_parameters())
    theirs = dict(pipe.transformer.named_parameters())
    lora_a = [n for n in ours if n.endswith("lora_A.default.weight")]
    assert lora_a and all(ours[n].equal(theirs[n.replace(".default.", ".default_0.")]) for n in lora_a)


def test_two_processes_on_cpu(tmp_path, model_base):
    out, dump = tmp_path / "out", tmp_path / "ranks"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "diffsynth.testing.rank_dump", str(dump), "train", "qwen-image",
           "--dataset_base_path", str(DATA), "--max_pixels", "4096", "--lora_base_model", "dit", "--lora_rank", "4",
           "--learning_rate", "1e-3", "--output_path", str(out), "--find_unused_parameters"]
    env = dict(os.environ, DIFFSYNTH_MODEL_BASE_PATH=str(model_base), DIFFSYNTH_SKIP_DOWNLOAD="True",
               OMP_NUM_THREADS="1")
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 process(es)" in result.stdout and (dump / "rank-1.safetensors").is_file()  # both ranks trained
    assert len((out / "loss_log.jsonl").read_text().splitlines()) == 4  # 8 rows over 2 ranks
    rank1 = {k.removeprefix("dit.").replace(".default.", "."): v for k, v in load_file(dump / "rank-1.safetensors").items()}
    saved = {k.removeprefix("diffusion_model."): v for k, v in load_file(out / "epoch-0.safetensors").items() if not k.endswith(".alpha")}
    assert saved.keys() == rank1.keys() and all(saved[k].equal(rank1[k]) for k in saved)
    assert json.loads((out / "training_args.json").read_text())["lora_rank"] == 4
    assert any(v.abs().sum() > 0 for k, v in saved.items() if "lora_B" in k)  # it trained
