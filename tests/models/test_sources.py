"""The seed's model-source spellings and their offline resolution."""

import pytest

from diffsynth.config import TrainConfig
from diffsynth.errors import UserError
from diffsynth.models.resolve import model_sources
from diffsynth.models.sources import (
    DownloadSettings,
    parse_model_paths,
    parse_origin_paths,
    resolve_files,
    resolve_folder,
)
from diffsynth.plugins import load_registry


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_model_paths_items_are_paths_or_shard_lists(tmp_path):
    a, b1, b2 = touch(tmp_path / "a.safetensors"), touch(tmp_path / "b-1.safetensors"), touch(tmp_path / "b-2.safetensors")
    sources = parse_model_paths(f'["{a}", ["{b1}", "{b2}"]]')
    assert [s.paths for s in sources] == [(a,), (b1, b2)]


@pytest.mark.parametrize(
    "text, message",
    [
        ("[oops", "--model_paths: not valid JSON"),
        ('{"a": 1}', "--model_paths: expected a JSON list"),
        ("[1]", "--model_paths: each item must be a path or a list of paths"),
        ('["/no/such/file.safetensors"]', "--model_paths: file not found: /no/such/file.safetensors"),
    ],
)
def test_model_paths_errors(text, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace(".", r"\.")):
        parse_model_paths(text)


def test_origin_paths_split_at_last_colon_and_local_paths_win(tmp_path):
    local = touch(tmp_path / "x.safetensors")
    sources = parse_origin_paths(f"Qwen/Qwen-Image:transformer/diffusion_pytorch_model*.safetensors, {local}")
    assert (sources[0].repo_id, sources[0].pattern) == ("Qwen/Qwen-Image", "transformer/diffusion_pytorch_model*.safetensors")
    assert sources[1].paths == (local,)


def test_glob_resolves_sorted_shards_under_base_path(tmp_path):
    for name in ("m-00002-of-00002.safetensors", "m-00001-of-00002.safetensors", "m.safetensors.index.json"):
        touch(tmp_path / "org/repo/sub" / name)
    settings = DownloadSettings.offline(tmp_path)
    (source,) = parse_origin_paths("org/repo:sub/m*.safetensors")
    assert [p.name for p in resolve_files(source, settings)] == ["m-00001-of-00002.safetensors", "m-00002-of-00002.safetensors"]


def test_skip_download_missing_file_names_where_it_looked(tmp_path):
    settings = DownloadSettings.offline(tmp_path)
    (source,) = parse_origin_paths("org/repo:w*.safetensors")
    with pytest.raises(UserError, match="no file matches .*org/repo/w\\*.safetensors and downloads are disabled"):
        resolve_files(source, settings)


def test_tokenizer_folder_resolution(tmp_path):
    touch(tmp_path / "org/repo/tokenizer/vocab.json")
    settings = DownloadSettings(tmp_path, skip=True, source="huggingface")
    assert resolve_folder("org/repo:tokenizer/", settings, "--tokenizer_path") == tmp_path / "org/repo/tokenizer"
    with pytest.raises(UserError, match="--tokenizer_path: folder .* not found and downloads are disabled"):
        resolve_folder("org/other:tokenizer/", settings, "--tokenizer_path")


def test_download_source_from_env_and_flag(monkeypatch):
    monkeypatch.setenv("DIFFSYNTH_DOWNLOAD_SOURCE", "huggingface")
    monkeypatch.setenv("DIFFSYNTH_SKIP_DOWNLOAD", "True")
    monkeypatch.setenv("DIFFSYNTH_MODEL_BASE_PATH", "/m")
    settings = DownloadSettings.from_env()
    assert (settings.source, settings.skip, str(settings.base_path)) == ("huggingface", True, "/m")
    assert DownloadSettings.from_env("modelscope").source == "modelscope"
    with pytest.raises(UserError, match="--download_source"):
        DownloadSettings.from_env("civitai")


def test_both_source_flags_mix_and_defaults_apply_when_none(tmp_path):
    family = load_registry().get("toy")
    local = touch(tmp_path / "a.safetensors")
    cfg = TrainConfig(model_paths=f'["{local}"]', model_id_with_origin_paths="org/repo:x.safetensors")
    assert [s.spec for s in model_sources(family, cfg)] == [str(local), "org/repo:x.safetensors"]
    assert [s.spec for s in model_sources(family, TrainConfig())] == ["toy/Toy:dit/*.safetensors"]


def test_folder_pattern_means_the_weight_files_in_it(tmp_path):
    for name in ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                 "model.safetensors.index.json", "config.json"):
        touch(tmp_path / "org/repo/text_encoder_2" / name)
    settings = DownloadSettings.offline(tmp_path)
    (source,) = parse_origin_paths("org/repo:text_encoder_2/")
    assert [p.name for p in resolve_files(source, settings)] == [
        "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]


def test_lora_target_aliases_expand_to_module_names():
    from diffsynth.spec import FamilySpec

    spec = FamilySpec("f", "", (), (), ("q",), lora_target_aliases={"q": ("attn1.to_q", "attn2.to_q")})
    assert spec.expand_lora_targets(["q", "to_out.0", "attn1.to_q"]) == ["attn1.to_q", "attn2.to_q", "to_out.0"]
