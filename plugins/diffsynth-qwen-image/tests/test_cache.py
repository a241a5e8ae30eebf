"""The encoder cache on the real Qwen-Image family (tiny preset, real files, the real CLI):
split training equals the one-command cached run bit for bit with the encoders deleted before
stage 2; a changed image or prompt is re-encoded and nothing else; an interrupted build resumes;
the runs the cache would make wrong are refused in one line."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file

from diffsynth.cache.testing import check_split_training, with_flags
from diffsynth.testing.cli import run_diffsynth

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "examples" / "data"
DIT = "Qwen/Qwen-Image:transformer/diffusion_pytorch_model*.safetensors"
SOURCES = f"{DIT},Qwen/Qwen-Image:text_encoder/model*.safetensors,Qwen/Qwen-Image:vae/diffusion_pytorch_model.safetensors"


def command(data: Path, output: str = "./out") -> list[str]:
    return [
        "train", "qwen-image", "--dataset_base_path", str(data), "--dataset_metadata_path", str(data / "metadata.csv"),
        "--max_pixels", "4096", "--dataset_repeat", "1", "--model_id_with_origin_paths", SOURCES,
        "--learning_rate", "1e-4", "--num_epochs", "1", "--remove_prefix_in_ckpt", "pipe.dit.", "--output_path", output,
        "--lora_base_model", "dit", "--lora_target_modules", "to_q,to_k,to_v,to_out.0", "--lora_rank", "4",
    ]  # fmt: skip


def init(root: Path, seed: int = 0) -> None:
    from diffsynth_qwen_image import plugin

    plugin.init_model("tiny", root / "models" / "Qwen" / "Qwen-Image", seed)


@pytest.fixture()
def workdir(tmp_path) -> Path:
    init(tmp_path)
    return tmp_path


@pytest.fixture()
def data(tmp_path) -> Path:
    """A copy of the example dataset that tests may change."""
    out = tmp_path / "data"
    shutil.copytree(DATA / "images", out / "images")
    shutil.copy(DATA / "metadata.csv", out / "metadata.csv")
    return out


def test_split_training_without_encoders_equals_one_command_run(workdir):
    repo = workdir / "models" / "Qwen" / "Qwen-Image"
    runs = check_split_training(
        workdir, command(DATA), DIT, [repo / "text_encoder", repo / "vae", repo / "tokenizer"]
    )
    assert "encoding 8 of 8 rows" in runs["stage1"].stderr
    assert not (repo / "text_encoder").exists()


def errors(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def test_changed_image_and_prompt_are_reencoded_and_nothing_else(workdir, data):
    cmd = with_flags(command(data), cache_dir="./cache", max_steps="1")
    first = run_diffsynth(*cmd, cwd=workdir)
    assert first.returncode == 0, first.stderr
    assert "encoding 8 of 8 rows" in first.stderr
    before = json.loads((workdir / "cache" / "index.json").read_text())["rows"]

    # the same run again: everything cached, no encoder loaded
    again = run_diffsynth(*with_flags(cmd, output_path="./out2"), cwd=workdir)
    assert again.returncode == 0, again.stderr
    assert "encoding" not in again.stderr

    # row 1: other pixels under the same name; row 2: another prompt
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(data / before[0]["files"]["image"])
    lines = (data / "metadata.csv").read_text().splitlines()
    lines[2] = lines[2].rsplit(",", 1)[0] + ",a changed prompt"
    (data / "metadata.csv").write_text("\n".join(lines) + "\n")
    third = run_diffsynth(*with_flags(cmd, output_path="./out3"), cwd=workdir)
    assert third.returncode == 0, third.stderr
    assert "encoding 2 of 8 rows" in third.stderr
    after = json.loads((workdir / "cache" / "index.json").read_text())["rows"]
    changed = [b["row"] for b, a in zip(before, after) if b["key"] != a["key"]]
    assert changed == [0, 1]
    old = load_file(workdir / "cache" / "entries" / before[0]["key"][:2] / f"{before[0]['key']}.safetensors")
    new = load_file(workdir / "cache" / "entries" / after[0]["key"][:2] / f"{after[0]['key']}.safetensors")
    assert not (old["latents"] == new["latents"]).all()  # the new pixels were encoded
    assert after[1]["fields"]["prompt"] == "a changed prompt"


def test_interrupted_build_resumes(workdir, data):
    stage1 = with_flags(
        command(data), output_path="./cache", task="sft:data_process",
        model_id_with_origin_paths=SOURCES.replace(DIT + ",", ""),
    )
    full = run_diffsynth(*stage1, cwd=workdir)
    assert full.returncode == 0, full.stderr
    rows = json.loads((workdir / "cache" / "index.json").read_text())["rows"]
    entries = {r["key"]: workdir / "cache" / "entries" / r["key"][:2] / f"{r['key']}.safetensors" for r in rows}
    complete = {k: p.read_bytes() for k, p in entries.items()}
    # the state a build killed mid-way leaves: 3 entries written, a half-written temporary file, no index
    keep = [r["key"] for r in rows[:3]]
    for key, path in entries.items():
        if key not in keep:
            path.unlink()
    (workdir / "cache" / "index.json").unlink()
    partial = entries[rows[5]["key"]].with_name(f".{rows[5]['key']}.safetensors.999.tmp")
    partial.write_bytes(complete[rows[5]["key"]][:100])
    kept_mtimes = {k: entries[k].stat().st_mtime_ns for k in keep}

    resumed = run_diffsynth(*stage1, cwd=workdir)
    assert resumed.returncode == 0, resumed.stderr
    assert "encoding 5 of 8 rows" in resumed.stderr
    assert not partial.exists()
    assert {k: entries[k].stat().st_mtime_ns for k in keep} == kept_mtimes  # what was written is kept
    assert {k: p.read_bytes() for k, p in entries.items()} == complete  # and the rest is what a full build writes
    assert json.loads((workdir / "cache" / "index.json").read_text())["rows"] == rows


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"lora_base_model": "text_encoder", "lora_target_modules": "q_proj", "cache": ""}, "text_encoder is trained"),
        ({"trainable_models": "vae", "cache_dir": "./c"}, "vae is trained"),
        ({"caption_dropout_rate": "0.1", "cache_dir": "./c"}, "--caption_dropout_rate 0.1 changes the prompt"),
        ({"task": "sft:train"}, "drop --dataset_metadata_path"),
        ({"validation_metadata_path": str(DATA / "metadata.csv"), "cache_dir": "./c"}, "--validation_metadata_path is not supported"),
        ({"task": "sft:pretrain"}, "--task: expected one of sft, sft:data_process, sft:train"),
    ],
)
def test_refused_in_one_line(workdir, flags, message):
    cmd = command(DATA)
    if "cache" in flags:
        flags.pop("cache")
        cmd.append("--cache")
    result = run_diffsynth(*with_flags(cmd, **flags), cwd=workdir)
    assert result.returncode != 0
    assert len(errors(result)) == 1 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_cache_of_other_model_or_family_or_no_cache_refused(workdir, tmp_path):
    cmd = with_flags(command(DATA), cache_dir="./cache", max_steps="1")
    assert run_diffsynth(*cmd, cwd=workdir).returncode == 0
    other = tmp_path / "other"  # the same preset with other weights: another model
    init(other, seed=1)
    result = run_diffsynth(*with_flags(cmd, cache_dir=str(workdir / "cache")), cwd=other)
    assert result.returncode != 0 and len(errors(result)) == 1
    assert "built with other encoder files (text_encoder, vae differ)" in result.stderr, result.stderr

    manifest = workdir / "cache" / "cache.json"
    manifest.write_text(manifest.read_text().replace('"qwen-image"', '"flux"'))
    result = run_diffsynth(*with_flags(cmd, output_path="./o2"), cwd=workdir)
    assert result.returncode != 0 and len(errors(result)) == 1
    assert "built for family flux, not qwen-image" in result.stderr, result.stderr

    stage2 = with_flags(
        command(DATA, "./o3"), dataset_base_path=str(DATA), dataset_metadata_path=None, task="sft:train", model_id_with_origin_paths=DIT
    )
    result = run_diffsynth(*stage2, cwd=workdir)
    assert result.returncode != 0 and len(errors(result)) == 1
    assert "not an encoder cache" in result.stderr, result.stderr


def test_two_processes_build_the_cache_in_parallel(workdir):
    """`accelerate launch` with 2 processes: rows are split by rank (4 each), and the cache equals
    the one a single process builds, entry for entry."""
    import subprocess
    import sys

    stage1 = with_flags(
        command(DATA), output_path="./cache2", task="sft:data_process",
        model_id_with_origin_paths=SOURCES.replace(DIT + ",", ""),
    )
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "diffsynth", *stage1]  # fmt: skip
    env = dict(os.environ, DIFFSYNTH_SKIP_DOWNLOAD="True", OMP_NUM_THREADS="1")
    env.pop("DIFFSYNTH_MODEL_BASE_PATH", None)
    parallel = subprocess.run(launch, cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
    assert parallel.returncode == 0, parallel.stderr
    assert "encoding 4 of 8 rows" in parallel.stderr and "(2 process(es))" in parallel.stderr
    single = run_diffsynth(*with_flags(stage1, output_path="./cache1"), cwd=workdir)
    assert single.returncode == 0, single.stderr
    index = lambda name: json.loads((workdir / name / "index.json").read_text())["rows"]  # noqa: E731
    assert index("cache2") == index("cache1")
    for row in index("cache1"):
        rel = Path("entries") / row["key"][:2] / f"{row['key']}.safetensors"
        assert (workdir / "cache2" / rel).read_bytes() == (workdir / "cache1" / rel).read_bytes()


def test_batches_from_the_cache_train_as_batches_from_the_images(workdir):
    """--batch_size 2 with the cache: buckets from the cached latents' shapes, the same update."""
    plain = run_diffsynth(*command(DATA, "./plain"), "--batch_size", "2", cwd=workdir)
    cached = run_diffsynth(*command(DATA, "./cached"), "--batch_size", "2", "--cache", cwd=workdir)
    assert plain.returncode == 0 and cached.returncode == 0, plain.stderr + cached.stderr
    a, b = load_file(workdir / "plain" / "epoch-0.safetensors"), load_file(workdir / "cached" / "epoch-0.safetensors")
    assert a.keys() == b.keys()
    assert all(np.allclose(a[k].numpy(), b[k].numpy(), rtol=1e-4, atol=1e-6) for k in a)
    steps = [json.loads(line) for line in (workdir / "cached" / "loss_log.jsonl").read_text().splitlines()]
    assert len(steps) == 4 and all(len(s["rows"]) == 2 for s in steps)  # 8 rows in batches of 2
