"""`diffsynth sample FAMILY`: bad flags fail in one line naming the flag, before any model loads;
a family without `sample_images` says so."""

import pytest

from diffsynth.cli import main as cli_main


def error_line(capsys, *args):
    with pytest.raises(SystemExit) as exit:
        cli_main(["sample", *args])
    assert exit.value.code != 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(
    "args, expected",
    [
        ((), "error: --prompt/--prompts_file: give at least one prompt"),
        (("--prompt", "a", "--height", "30"), "error: --height: expected a positive multiple of 8 for toy, got 30"),
        (("--prompt", "a", "--output", "x.jpg"), "error: --output x.jpg: expected a .png (image) or .mp4 (video) file name"),
        (("--prompt", "a", "--output", "x.mp4"), "error: --output x.mp4: toy generates images; expected a .png file name"),
        (("--prompt", "a", "--lora", "missing.safetensors"), "error: --lora missing.safetensors: no such file"),
        (("--prompt", "a", "--lora_scale", "0.5"), "error: --lora_scale: given without --lora"),
        (("--prompts_file", "missing.txt"), "error: --prompts_file missing.txt: no such file"),
        (("--prompt", "a", "--steps", "0"), "error: --steps: expected a positive integer, got 0"),
        (("--prompt", "a", "--dtype", "fp64"), "error: --dtype: expected auto, fp32, bf16 or fp16, got 'fp64'"),
    ],
)
def test_bad_flags_fail_in_one_line(capsys, tmp_path, monkeypatch, args, expected):
    monkeypatch.chdir(tmp_path)
    assert error_line(capsys, "toy", *args) == expected


def test_lora_scale_count_must_match(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("a", "b"):
        (tmp_path / f"{name}.safetensors").write_bytes(b"")
    line = error_line(capsys, "toy", "--prompt", "x", "--lora", "a.safetensors", "--lora", "b.safetensors",
                      "--lora_scale", "1", "--lora_scale", "2", "--lora_scale", "3")  # fmt: skip
    assert line == "error: --lora_scale: give one value, or one per --lora (2 --lora, 3 --lora_scale)"


def test_a_family_without_sample_images_says_so(capsys, tmp_path, monkeypatch, toy_models):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DIFFSYNTH_MODEL_BASE_PATH", str(toy_models))
    monkeypatch.setenv("DIFFSYNTH_SKIP_DOWNLOAD", "True")
    assert error_line(capsys, "toy", "--prompt", "x") == "error: toy cannot be sampled: its plugin does not implement sample_images"


def test_unknown_family_names_the_registered_ones(capsys):
    assert "toy" in error_line(capsys, "nope", "--prompt", "x")


def test_help_lists_the_sampling_flags(capsys):
    try:
        cli_main(["sample", "toy", "--help"])
    except SystemExit as exit:
        assert not exit.code
    out = capsys.readouterr().out
    for flag in ("--prompt", "--prompts-file", "--lora", "--lora-scale", "--steps", "--cfg-scale", "--guidance", "--seed", "--output", "--model-id-with-origin-paths"):
        assert flag in out
