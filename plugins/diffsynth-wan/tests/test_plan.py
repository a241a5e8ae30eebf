"""`diffsynth plan wan` on the real Wan2.1-T2V-1.3B configs (offline, no model files): the
weights it plans equal the parameter bytes counted by hand from the real config values."""

import pytest

from diffsynth_wan.real_configs import DIT_COMMON, DITS, UMT5

BF16 = 2
#: buffers besides the parameters: the DiT's fp32 rotary tables (2 x 1024 x 128 x 4 bytes)
BUFFERS = 2 * 1024 * 128 * 4


def linear(i: int, o: int, bias: bool = True) -> int:
    return i * o + (o if bias else 0)


def wan_dit_parameters(c: dict) -> int:
    """WanTransformer3DModel (text-to-video): patch embedding, condition embedder, blocks, output."""
    d, ff, patch = c["num_attention_heads"] * c["attention_head_dim"], c["ffn_dim"], c["patch_size"]
    volume = patch[0] * patch[1] * patch[2]
    embed = c["in_channels"] * d * volume + d
    embed += linear(c["freq_dim"], d) + linear(d, d) + linear(d, 6 * d)  # time embedder + projection
    embed += linear(c["text_dim"], d) + linear(d, d)  # text embedder
    # self- and cross-attention (q/k/v/out, RMSNorm over all heads for q and k), the affine
    # cross-attention norm, the MLP and the block's scale/shift table
    block = 2 * (4 * linear(d, d) + 2 * d) + 2 * d + linear(d, ff) + linear(ff, d) + 6 * d
    out = linear(d, c["out_channels"] * volume) + 2 * d
    return embed + c["num_layers"] * block + out


def umt5_encoder_parameters(c: dict) -> int:
    d, inner = c["d_model"], c["num_heads"] * c["d_kv"]
    layer = 3 * linear(d, inner, False) + linear(inner, d, False) + 2 * d + 2 * linear(d, c["d_ff"], False) + linear(c["d_ff"], d, False)
    layer += c["relative_attention_num_buckets"] * c["num_heads"]  # umT5: a position bias in every layer
    return c["vocab_size"] * d + c["num_layers"] * layer + d


def test_hand_count_is_the_1_3b_model():
    assert wan_dit_parameters(dict(DIT_COMMON, **DITS["t2v"])) == 1_418_996_800  # Wan2.1-T2V-1.3B: 1.42B


def test_plan_wan_weights_equal_the_real_configs_parameter_bytes(monkeypatch, tmp_path):
    from diffsynth.config import TrainConfig
    from diffsynth.plan.simulate import predict
    from diffsynth.plugins import load_registry

    monkeypatch.setenv("DIFFSYNTH_MODEL_BASE_PATH", str(tmp_path))
    registry = load_registry()
    config = TrainConfig(family="wan", lora_base_model="dit", lora_rank=32, height=64, width=64, num_frames=5)
    config.family_options = {o.name: o.default for o in registry.get("wan").options}
    got = predict(registry, config)
    assert got.settings["size"] == "64x64x5"
    assert got.weights["weights: dit"] == pytest.approx(BF16 * wan_dit_parameters(dict(DIT_COMMON, **DITS["t2v"])), abs=BUFFERS)
    # the input embedding is tied (`shared` = `encoder.embed_tokens`): once
    assert got.weights["weights: text_encoder"] == BF16 * umt5_encoder_parameters(UMT5)
    assert got.breakdown["optimizer state"] == pytest.approx(2 * got.weights["trainable parameters"], rel=0.001)
    assert got.peak == sum(got.breakdown.values())
    assert got.peak > sum(got.weights.values())
