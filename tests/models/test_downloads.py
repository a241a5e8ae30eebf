"""Real ModelScope / Hugging Face clients against the local hub in tests/hub/server.py:
files arrive once, later runs cost no request, cut downloads resume, hub errors are one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE_DATA, cli_env, run_cli, run_main
from tests.hub.server import HubServer

SOURCES = ["modelscope", "huggingface"]
QWEN = "Qwen/Qwen-Image"
TOY = "toy/Toy"


@pytest.fixture(scope="module")
def qwen_repo(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hub") / QWEN
    result = run_main("models", "init", "qwen-image", str(folder), "--preset", "tiny")
    assert result.returncode == 0, result.stderr
    return folder


@pytest.fixture
def hub(toy_models, qwen_repo):
    with HubServer(max_requests=500, lifetime=120) as server:
        server.add_repo(TOY, toy_models / TOY)
        server.add_repo(QWEN, qwen_repo)
        yield server


def hub_cli(hub: HubServer, tmp_path: Path, *args: str, skip: bool = False, **env: str):
    """`diffsynth ARGS` with both client endpoints on the test hub and every cache in tmp_path."""
    return run_cli(
        *args,
        cwd=tmp_path,
        **hub.env(tmp_path),
        DIFFSYNTH_MODEL_BASE_PATH=str(tmp_path / "models"),
        DIFFSYNTH_SKIP_DOWNLOAD="True" if skip else "",
        **env,
    )


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
            and ".cache" not in p.parts}


def assert_one_line_error(result, *needles: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize("source", SOURCES)
def test_download_family_then_train_fetches_each_file_once(hub, tmp_path, qwen_repo, source):
    result = hub_cli(hub, tmp_path, "download", "qwen-image", "--download_source", source)
    assert result.returncode == 0, result.stderr
    # weights of the default sources, the json files beside them (configs, shard indexes), tokenizer/
    expected = {p for p in files_of(qwen_repo) if p.startswith(("transformer/", "text_encoder/", "vae/", "tokenizer/"))}
    fetched = [path for protocol, repo, path in hub.file_fetches() if protocol == source and repo == QWEN]
    assert sorted(fetched) == sorted(expected)  # each file once, nothing else
    local = tmp_path / "models" / QWEN
    assert {p: b for p, b in files_of(local).items()} == {p: files_of(qwen_repo)[p] for p in expected}
    assert f"in {tmp_path / 'models'} (from {source})" in result.stdout and "5.4 MB" in result.stdout

    hub.clear_log()
    again = hub_cli(hub, tmp_path, "download", "qwen-image", "--download_source", source)
    assert again.returncode == 0, again.stderr
    assert hub.log == []  # complete patterns are recorded: no request, no re-hash

    out = tmp_path / "lora"
    train = hub_cli(
        hub, tmp_path, "train", "qwen-image", "--dataset_base_path", str(EXAMPLE_DATA), "--max_pixels", "4096",
        "--dataset_repeat", "1", "--lora_base_model", "dit", "--lora_rank", "4", "--output_path", str(out),
        skip=source == "huggingface", DIFFSYNTH_DOWNLOAD_SOURCE=source,
    )
    assert train.returncode == 0, train.stderr
    assert (out / "epoch-0.safetensors").is_file()
    assert hub.log == []  # default sources found complete (with and without DIFFSYNTH_SKIP_DOWNLOAD)


@pytest.mark.parametrize("source", SOURCES)
def test_partly_present_shards_fetch_only_the_missing_one(hub, tmp_path, source):
    pattern = f"{QWEN}:transformer/diffusion_pytorch_model*.safetensors"
    assert hub_cli(hub, tmp_path, "download", pattern, "--download_source", source).returncode == 0
    shards = sorted((tmp_path / "models" / QWEN / "transformer").glob("*.safetensors"))
    assert len(shards) == 5
    shards[-1].unlink()
    hub.clear_log()
    result = hub_cli(hub, tmp_path, "download", pattern, "--download_source", source)
    assert result.returncode == 0, result.stderr
    assert [path for _, _, path in hub.file_fetches()] == [f"transformer/{shards[-1].name}"]


def test_files_present_without_a_record_are_checked_not_fetched(hub, tmp_path, toy_models):
    """Files put there by hand (or `models init`): one listing request, no file fetched."""
    base = tmp_path / "models"
    (base / TOY).mkdir(parents=True)
    for path, data in files_of(toy_models / TOY).items():
        (base / TOY / path).parent.mkdir(parents=True, exist_ok=True)
        (base / TOY / path).write_bytes(data)
    result = hub_cli(hub, tmp_path, "download", "toy")
    assert result.returncode == 0, result.stderr
    assert hub.file_fetches() == [] and len(hub.log) == 1


def test_skip_download_makes_no_request(hub, tmp_path):
    result = hub_cli(hub, tmp_path, "download", "toy", skip=True)
    assert_one_line_error(result, "downloads are disabled (DIFFSYNTH_SKIP_DOWNLOAD=True)", "toy/Toy/dit/*.safetensors")
    train = hub_cli(hub, tmp_path, "train", "toy", "--dataset_base_path", str(EXAMPLE_DATA), skip=True)
    assert_one_line_error(train, "downloads are disabled")
    assert hub.log == []


@pytest.mark.parametrize("source", SOURCES)
def test_connection_cut_mid_file_resumes_byte_identical(hub, tmp_path, source):
    # huggingface_hub writes in 10 MB chunks and resumes from the last whole chunk
    folder = tmp_path / "big"
    (folder / "w").mkdir(parents=True)
    data = os.urandom(11 * 1024 * 1024)
    (folder / "w" / "big.safetensors").write_bytes(data)
    hub.add_repo("org/big", folder)
    hub.cut("org/big", "w/big.safetensors", after=len(data) - 100_000)
    result = hub_cli(hub, tmp_path, "download", "org/big:w/*", "--download_source", source)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "models/org/big/w/big.safetensors").read_bytes() == data
    ranges = [r.range for r in hub.log if r.method == "GET" and r.range]
    assert len(hub.file_fetches()) == 2 and len(ranges) == 1
    assert ranges[0].startswith("bytes=") and int(ranges[0][6:-1]) > 0  # resumed, not restarted


def test_modelscope_resumes_a_killed_download_on_the_next_run(hub, tmp_path):
    """modelscope keeps `<file>.incomplete`; the next run asks for the rest with a Range request
    (huggingface_hub 2.x deletes its partial file instead, see docs/downloads.md)."""
    folder = tmp_path / "big"
    (folder / "w").mkdir(parents=True)
    data = os.urandom(3 * 1024 * 1024)
    (folder / "w" / "big.safetensors").write_bytes(data)
    hub.add_repo("org/big", folder)
    release = hub.stall("org/big", "w/big.safetensors", after=1024 * 1024)
    env = cli_env(**hub.env(tmp_path), DIFFSYNTH_MODEL_BASE_PATH=str(tmp_path / "models"), DIFFSYNTH_SKIP_DOWNLOAD="")
    proc = subprocess.Popen([sys.executable, "-m", "diffsynth", "download", "org/big:w/*"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = tmp_path / "models/org/big/w/big.safetensors.incomplete"
    try:
        deadline = time.monotonic() + 30
        while not (partial.is_file() and partial.stat().st_size >= 1024 * 1024) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert partial.stat().st_size == 1024 * 1024
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        release()
    hub.clear_log()
    result = hub_cli(hub, tmp_path, "download", "org/big:w/*")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "models/org/big/w/big.safetensors").read_bytes() == data
    assert [r.range for r in hub.log if r.method == "GET" and "FilePath" in r.query] == [f"bytes={1024 * 1024}-"]


@pytest.mark.parametrize("source", SOURCES)
def test_pattern_matching_no_file_names_repo_pattern_and_files(hub, tmp_path, source):
    result = hub_cli(hub, tmp_path, "download", f"{TOY}:nothing/*.bin", "--download_source", source)
    assert_one_line_error(result, TOY, "'nothing/*.bin'", "dit/model.safetensors")
    assert hub.file_fetches() == []


@pytest.mark.parametrize("source", SOURCES)
def test_missing_repo_is_one_line(hub, tmp_path, source):
    result = hub_cli(hub, tmp_path, "download", "org/missing:*.safetensors", "--download_source", source)
    assert_one_line_error(result, "org/missing", "no such repo", "404", hub.url)


@pytest.mark.parametrize("source, hint", [("huggingface", "HF_TOKEN"), ("modelscope", "MODELSCOPE_API_TOKEN")])
def test_unauthorized_is_one_line_with_the_token_hint(hub, tmp_path, source, hint):
    hub.gate(TOY, "secret")
    result = hub_cli(hub, tmp_path, "download", "toy", "--download_source", source)
    assert_one_line_error(result, TOY, "denied access (HTTP 401)", hint)


def test_token_opens_a_gated_repo(hub, tmp_path):
    hub.gate(TOY, "secret")
    result = hub_cli(hub, tmp_path, "download", "toy", "--download_source", "huggingface", HF_TOKEN="secret")
    assert result.returncode == 0, result.stderr
    assert sorted(p for _, _, p in hub.file_fetches()) == ["dit/config.json", "dit/model.safetensors"]

