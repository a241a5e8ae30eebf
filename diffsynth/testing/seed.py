"""DiffSynth-Studio's example `train` commands (examples/<family>/model_training/lora|full/*.sh),
as the families' seed-command tests paste them with smaller numbers, and what every such test
checks of the LoRA they write."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


def seed_train_command(
    family: str,
    output: str,
    sources: str,
    data: Path,
    metadata: str | Path | None = None,
    size: Iterable[str] = ("--max_pixels", "4096"),
    targets: str | None = None,
    extra: Iterable[str] = (),
) -> list[str]:
    """The seed's command shape: the dataset at `data` (`metadata`, else its metadata.csv) at
    `size`, one repeat, the `sources`, lr 1e-4, one epoch, the `pipe.dit.` prefix removed, written
    to `output`; with `targets`, a rank-32 LoRA on those modules of the DiT; then `extra`."""
    command = [
        "train", family,
        "--dataset_base_path", str(data),
        "--dataset_metadata_path", str(metadata if metadata is not None else data / "metadata.csv"),
        *size,
        "--dataset_repeat", "1",
        "--model_id_with_origin_paths", sources,
        "--learning_rate", "1e-4",
        "--num_epochs", "1",
        "--remove_prefix_in_ckpt", "pipe.dit.",
        "--output_path", output,
    ]  # fmt: skip
    if targets is not None:
        command += ["--lora_base_model", "dit", "--lora_target_modules", targets, "--lora_rank", "32"]
    return command + list(extra)


def assert_lora_trained(lora: Mapping[str, Any]) -> None:
    """Some LoRA B matrix is not zero any more (peft starts them at zero): it trained."""
    assert any(k.endswith("lora_B.weight") and v.abs().sum() > 0 for k, v in lora.items())


def assert_finite_loss_log(folder: Path, rows: int) -> None:
    """`folder`'s loss_log.jsonl has one finite loss for each of `rows` steps."""
    import json

    import torch

    log = [json.loads(line) for line in (folder / "loss_log.jsonl").read_text().splitlines()]
    assert len(log) == rows and all(torch.isfinite(torch.tensor(r["loss"])) for r in log)
