"""Split training checked end to end on a family's tiny preset (used by each plugin's tests):
the one-command cached run, then stage 1, the encoders' files deleted, stage 2; both LoRAs must
be equal bit for bit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from diffsynth.testing.cli import run_diffsynth


def with_flags(args: list[str], **flags: str | None) -> list[str]:
    """`args` with each `--name value` set (None: removed); flags not in `args` are appended."""
    out = list(args)
    for name, value in flags.items():
        flag = f"--{name}"
        if flag in out:
            i = out.index(flag)
            del out[i : i + 2]
            if value is not None:
                out[i:i] = [flag, value]
        elif value is not None:
            out += [flag, value]
    return out


def check_split_training(
    cwd: Path, command: list[str], denoiser_source: str, encoder_paths: list[Path], repeat: int = 2, batch_size: int = 1
) -> dict:
    """Run `command` (a `train FAMILY ...` seed command with --model_id_with_origin_paths) as
    the one-command cached run, then as DiffSynth-Studio's two stages with the encoders deleted
    in between (both with `--batch_size batch_size`, the rows all of one size); returns what the
    runs wrote (for further checks)."""
    import math

    from safetensors.torch import load_file

    command = with_flags(command, batch_size=str(batch_size)) if batch_size != 1 else command

    sources = command[command.index("--model_id_with_origin_paths") + 1]
    encoder_sources = ",".join(s for s in sources.split(",") if s != denoiser_source)
    assert encoder_sources != sources, "the denoiser source must be one of the sources"
    data = command[command.index("--dataset_base_path") + 1]

    one = run_diffsynth(*with_flags(command, output_path="./one", dataset_repeat=str(repeat), cache_dir="./one-cache"), cwd=cwd)
    assert one.returncode == 0, one.stderr
    stage1 = with_flags(command, output_path="./split-cache", dataset_repeat="1", model_id_with_origin_paths=encoder_sources, task="sft:data_process")
    first = run_diffsynth(*stage1, cwd=cwd)
    assert first.returncode == 0, first.stderr
    assert not (cwd / "split-cache" / "epoch-0.safetensors").exists()  # stage 1 trains nothing
    for path in encoder_paths:  # stage 2 must not need them
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    stage2 = with_flags(
        command, dataset_base_path="./split-cache", dataset_metadata_path=None, output_path="./split",
        dataset_repeat=str(repeat), model_id_with_origin_paths=denoiser_source, task="sft:train",
    )
    second = run_diffsynth(*stage2, cwd=cwd)
    assert second.returncode == 0, second.stderr
    split_lora, one_lora = load_file(cwd / "split/epoch-0.safetensors"), load_file(cwd / "one/epoch-0.safetensors")
    assert split_lora.keys() == one_lora.keys()
    assert all((split_lora[k] == one_lora[k]).all() for k in split_lora), "split training differs from the one-command cached run"
    assert any(k.endswith("lora_B.weight") and v.abs().sum() > 0 for k, v in split_lora.items())  # it trained
    rows = json.loads((cwd / "split-cache" / "index.json").read_text())["rows"]
    log = (cwd / "split" / "loss_log.jsonl").read_text().splitlines()
    assert len(log) == math.ceil(len(rows) / batch_size) * repeat
    return {"data": data, "rows": rows, "one": one, "stage1": first, "stage2": second}
