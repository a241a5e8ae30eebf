"""`diffsynth plan` on the real Qwen-Image config, offline, no model files (about 40 s)."""

import json

import pytest




@pytest.mark.slow
def test_plan_qwen_image_real_config_json(capsys, monkeypatch, tmp_path):
    from diffsynth.cli import main

    monkeypatch.setenv("DIFFSYNTH_MODEL_BASE_PATH", str(tmp_path))  # no model files: the shipped configs
    main(["plan", "qwen-image", "--lora_base_model", "dit", "--lora_rank", "32", "--height", "1024", "--width", "1024",
          "--use_gradient_checkpointing", "--json", "--no-compare"])  # fmt: skip
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    gib = result["breakdown"]
    # 20.4B DiT parameters and 8.3B Qwen2.5-VL parameters in bf16
    assert 37.5 < gib["weights: dit"] < 38.5
    assert 15.0 < gib["weights: text_encoder"] < 16.0
    # LoRA r32 on the 12 default targets of 60 blocks: 236M fp32 parameters, Adam holds two copies
    assert gib["optimizer state"] == pytest.approx(2 * gib["trainable parameters"], rel=0.01)
    assert 55 < result["peak_gib"] < 65
    assert result["peak_gib"] == pytest.approx(sum(gib.values()), abs=0.05)


def test_plan_vram_bad_size_is_one_line():
    from diffsynth.errors import UserError
    from diffsynth.plan.choices import parse_vram

    with pytest.raises(UserError, match="--vram: expected a size"):
        parse_vram("lots")
    assert parse_vram("24GB") == 24 * 1024**3
