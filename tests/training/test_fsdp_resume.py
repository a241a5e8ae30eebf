"""FSDP2 (accelerate `fsdp_version: 2`, torch `fully_shard`) on two CPU processes over gloo:
a sharded run resumes a training-state checkpoint and continues bit-equal to an uninterrupted
run, and writes whole LoRA files and checkpoints, equal to DDP's.

accelerate runs an FSDP launch on CPU-only machines as DDP, so the FSDP launch goes through
`diffsynth.testing.fsdp_on_cpu`, which keeps accelerate's FSDP on CPU (see its docstring). Two
launches (each ~20 s, mostly start-up): DDP trains 8 steps uninterrupted, with checkpoints at
steps 4 and 8; FSDP resumes from DDP's step-4 checkpoint and must reproduce steps 5-8 exactly.
On this toy run FSDP and DDP do the same arithmetic (gradients averaged over 2 ranks, element-wise
AdamW on each shard), so equality is exact; a checkpoint is the same file whichever wrote it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from tests.conftest import EXAMPLE_DATA, ROOT, cli_env

LAUNCH = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--num_machines", "1",
          "--mixed_precision", "no", "--dynamo_backend", "no"]
ARGS = ["train", "toy", "--dataset_base_path", str(EXAMPLE_DATA), "--lora_base_model", "dit", "--lora_rank", "4",
        "--learning_rate", "1e-2", "--dataset_repeat", "2", "--checkpointing_steps", "4"]


def launch(cmd: list[str], models: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, env=cli_env(DIFFSYNTH_MODEL_BASE_PATH=str(models)), cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def losses(out: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "loss_log.jsonl").read_text().splitlines()]


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and a, (sorted(a), sorted(b))
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_fsdp_resumes_a_checkpoint_bit_equal_and_writes_what_ddp_writes(tmp_path, toy_models):
    ddp, fsdp = tmp_path / "ddp", tmp_path / "fsdp"
    launch([*LAUNCH, "--multi_gpu", "-m", "diffsynth", *ARGS, "--find_unused_parameters", "--output_path", str(ddp)],
           toy_models)
    step4 = ddp / "checkpoints" / "step-4"
    result = launch([*LAUNCH, "--config_file", str(ROOT / "examples" / "accelerate" / "fsdp.yaml"),
                     "-m", "diffsynth.testing.fsdp_on_cpu", *ARGS, "--output_path", str(fsdp),
                     "--resume_from_checkpoint", str(step4)], toy_models)
    # really sharded: each of the 2 processes holds half of every trainable tensor
    assert "rank 0: FSDP, holds 512 of 1024 trainable values" in result.stdout, result.stdout
    assert "rank 1: FSDP, holds 512 of 1024 trainable values" in result.stdout
    assert "resumed" in result.stdout  # (at step 4; the line may wrap)
    # steps 5-8 after the resume are the uninterrupted run's, bit for bit
    assert len(losses(ddp)) == 8 and losses(fsdp) == losses(ddp)[4:]
    assert_same_tensors(load_file(fsdp / "epoch-0.safetensors"), load_file(ddp / "epoch-0.safetensors"))  # whole
    # the checkpoint FSDP wrote (gathered from the shards) is the one DDP wrote
    mine, theirs = fsdp / "checkpoints" / "step-8", ddp / "checkpoints" / "step-8"
    assert_same_tensors(load_file(mine / "trainable.safetensors"), load_file(theirs / "trainable.safetensors"))
    assert_same_tensors(load_file(mine / "rng.safetensors"), load_file(theirs / "rng.safetensors"))  # every rank's
    a, b = torch.load(mine / "optimizer.pt", weights_only=True), torch.load(theirs / "optimizer.pt", weights_only=True)
    assert a["state"].keys() == b["state"].keys() and len(a["state"]) == 8
    for index in a["state"]:
        assert_same_tensors(a["state"][index], b["state"][index])
