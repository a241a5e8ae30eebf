"""build_module ties what a model shares: T5's input embedding is one Parameter, not two."""

import torch
from safetensors.torch import save_file
from transformers import T5Config, T5EncoderModel

from diffsynth.models.checkpoints import build_module, load_state_dict


def test_t5_shared_embedding_is_one_parameter_after_loading(tmp_path):
    cfg = T5Config(vocab_size=32, d_model=8, d_kv=4, d_ff=16, num_layers=1, num_heads=2)
    state = {k: v.contiguous() for k, v in T5EncoderModel(cfg).state_dict().items() if k != "encoder.embed_tokens.weight"}
    save_file(state, str(tmp_path / "t5.safetensors"))  # stored once, as the real checkpoints do
    loaded = load_state_dict([tmp_path / "t5.safetensors"])
    loaded["encoder.embed_tokens.weight"] = loaded["shared.weight"]
    module = build_module(lambda: T5EncoderModel(cfg), loaded, "t5", torch.float32)
    assert module.shared.weight is module.encoder.embed_tokens.weight
    assert sum(p.numel() for p in module.parameters()) == sum(v.numel() for k, v in state.items())
