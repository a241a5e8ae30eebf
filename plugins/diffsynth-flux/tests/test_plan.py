"""`diffsynth plan flux` on the real FLUX.1-dev configs (offline, no model files): the weights it
plans equal the parameter bytes counted by hand from the real config.json values."""

import pytest

from diffsynth_flux.real_configs import CLIP, DIT, T5

BF16 = 2
#: buffers the modules hold besides their parameters (CLIP's int64 position ids: 77 x 8 bytes)
BUFFERS = 1 << 20


def linear(i: int, o: int, bias: bool = True) -> int:
    return i * o + (o if bias else 0)


def flux_dit_parameters(c: dict) -> int:
    """FluxTransformer2DModel: embedders, 19 double-stream and 38 single-stream blocks, output."""
    d, head, mlp = c["num_attention_heads"] * c["attention_head_dim"], c["attention_head_dim"], 4 * c["num_attention_heads"] * c["attention_head_dim"]
    timestep = linear(256, d) + linear(d, d)
    embed = linear(c["in_channels"], d) + linear(c["joint_attention_dim"], d) + timestep * (1 + c["guidance_embeds"])
    embed += linear(c["pooled_projection_dim"], d) + linear(d, d)
    # AdaLayerNormZero x2, q/k/v/out for both streams, 4 RMSNorm(head), two GELU MLPs
    double = 2 * linear(d, 6 * d) + 8 * linear(d, d) + 4 * head + 2 * (linear(d, mlp) + linear(mlp, d))
    # AdaLayerNormZeroSingle, proj_mlp, proj_out over [attention, mlp], q/k/v, 2 RMSNorm(head)
    single = linear(d, 3 * d) + linear(d, mlp) + linear(d + mlp, d) + 3 * linear(d, d) + 2 * head
    out = linear(d, 2 * d) + linear(d, c["patch_size"] ** 2 * c["in_channels"])
    return embed + c["num_layers"] * double + c["num_single_layers"] * single + out


def t5_encoder_parameters(c: dict) -> int:
    d, inner = c["d_model"], c["num_heads"] * c["d_kv"]
    layer = 3 * linear(d, inner, False) + linear(inner, d, False) + 2 * d + 2 * linear(d, c["d_ff"], False) + linear(c["d_ff"], d, False)
    bias = c["relative_attention_num_buckets"] * c["num_heads"]  # T5: first layer only
    return c["vocab_size"] * d + c["num_layers"] * layer + bias + d


def clip_text_parameters(c: dict) -> int:
    d, ff = c["hidden_size"], c["intermediate_size"]
    layer = 4 * linear(d, d) + 4 * d + linear(d, ff) + linear(ff, d)
    return (c["vocab_size"] + c["max_position_embeddings"]) * d + c["num_hidden_layers"] * layer + 2 * d


def test_hand_counts_match_the_published_sizes():
    assert flux_dit_parameters(DIT) == 11_901_408_320  # FLUX.1-dev transformer, 11.9B
    assert t5_encoder_parameters(T5) == 4_762_310_656  # t5-v1_1-xxl encoder, 4.76B
    assert clip_text_parameters(CLIP) == 123_060_480  # CLIP ViT-L/14 text tower


def test_plan_flux_weights_equal_the_real_configs_parameter_bytes(monkeypatch, tmp_path):
    from diffsynth.config import TrainConfig
    from diffsynth.plan.simulate import predict
    from diffsynth.plugins import load_registry

    monkeypatch.setenv("DIFFSYNTH_MODEL_BASE_PATH", str(tmp_path))  # no model files: the shipped configs
    registry = load_registry()
    config = TrainConfig(family="flux", lora_base_model="dit", lora_rank=32, height=128, width=128)
    config.family_options = {o.name: o.default for o in registry.get("flux").options}
    got = predict(registry, config)
    assert got.weights["weights: dit"] == BF16 * flux_dit_parameters(DIT)
    assert got.weights["weights: text_encoder"] == pytest.approx(BF16 * clip_text_parameters(CLIP), abs=BUFFERS)
    # T5's input embedding is tied (`shared` = `encoder.embed_tokens`): once, as build_module
    # ties it again after loading
    assert got.weights["weights: text_encoder_2"] == BF16 * t5_encoder_parameters(T5)
    # LoRA r32 on the default targets: fp32, AdamW's two moments of the same size
    assert got.breakdown["optimizer state"] == pytest.approx(2 * got.weights["trainable parameters"], rel=0.001)
    assert got.peak == sum(got.breakdown.values())
    assert got.peak > sum(got.weights.values())
