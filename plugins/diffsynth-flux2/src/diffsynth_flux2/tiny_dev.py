"""`diffsynth models init flux2 DIR --preset tiny-dev`: a deterministic random FLUX.2-dev in the
layout of black-forest-labs/FLUX.2-dev: `flux2-dev.safetensors` (BFL's transformer file) at the
root, transformer/ (guidance embedding), text_encoder/ (Mistral3ForConditionalGeneration: a
Mistral text model and a one-layer Pixtral vision tower, saved as transformers saves it),
tokenizer/ (the PixtralProcessor folder: tokenizer, chat template, processor and image-processor
configs), vae/, scheduler/ and `model_index.json` naming Flux2Pipeline.

The processor folder is complete for `AutoProcessor` where torchvision is installed
(`PixtralProcessor` needs it; torchvision is not installed here). For text, Flux2Pipeline only
calls `tokenizer.apply_chat_template(...)`, which renders the same template and tokenizes with
the same tokenizer as the processor does for a text-only conversation: the tests and `sample`
pass the tokenizer (`AutoTokenizer` on this folder) as the pipeline's `tokenizer`."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from diffsynth.plugin import write_json

from .tiny import TEXT_HIDDEN, TINY_MAX_LENGTH, model_index, write_models

ORIGINAL_FILE = "flux2-dev.safetensors"
#: Mistral Small 3.1's text model, narrow; its 40 layers kept, so hidden states 10, 20 and 30 are
#: read where the pipeline reads them (none of them the final, normed one).
TINY_MISTRAL = dict(
    hidden_size=TEXT_HIDDEN, intermediate_size=32, num_hidden_layers=40, num_attention_heads=2,
    num_key_value_heads=1, head_dim=8, max_position_embeddings=512, rope_theta=1000000000.0,
    rms_norm_eps=1e-5, sliding_window=None, tie_word_embeddings=False,
    initializer_range=0.1,  # O(1) hidden states, as klein's tiny Qwen3 (tiny.py)
)  # fmt: skip
#: Pixtral's vision tower as Mistral Small 3.1 has it (patch 14, longest edge 1540), one narrow layer.
TINY_PIXTRAL = dict(
    hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, head_dim=8,
    image_size=1540, patch_size=14, rope_theta=10000.0, hidden_act="silu",
)  # fmt: skip
#: Mistral3Config's own fields in Mistral Small 3.1 (image token [IMG] = id 10, 2x2 patch merge)
MISTRAL3 = dict(
    image_token_index=10, spatial_merge_size=2, projector_hidden_act="gelu", multimodal_projector_bias=False,
    vision_feature_layer=-1, tie_word_embeddings=False,
)  # fmt: skip

#: Mistral's (tekken) control tokens, ids 0-19 as in Mistral Small 3.1 (`<pad>` = 11 pads).
SPECIAL_TOKENS = (
    "<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]",
    "[/TOOL_RESULTS]", "[TOOL_CALLS]", "[IMG]", "<pad>", "[IMG_BREAK]", "[IMG_END]", "[PREFIX]", "[MIDDLE]",
    "[SUFFIX]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "[TOOL_CONTENT]",
)  # fmt: skip
#: BPE merges learnt on these words and the pipeline's system message, so that the system prompt
#: (about 200 bytes) takes about 30 of the tiny preset's 64 tokens and a short prompt fits after it.
CORPUS_WORDS = "a an the photo of red blue green yellow white black circle square triangle cat dog on in background"
# Mistral Small 3.1's chat template, reduced to what Flux2Pipeline renders (a system message and
# user turns, as strings or text/image blocks; assistant turns end in </s>): the same text as the
# real template for those conversations.
CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- if messages[0]['role'] == 'system' %}"
    "{%- if messages[0]['content'] is string %}{%- set system_message = messages[0]['content'] %}"
    "{%- else %}{%- set system_message = messages[0]['content'][0]['text'] %}{%- endif %}"
    "{%- set loop_messages = messages[1:] %}"
    "{{- '[SYSTEM_PROMPT]' + system_message + '[/SYSTEM_PROMPT]' }}"
    "{%- else %}{%- set loop_messages = messages %}{%- endif %}"
    "{%- for message in loop_messages %}"
    "{%- if message['role'] == 'user' %}"
    "{%- if message['content'] is string %}{{- '[INST]' + message['content'] + '[/INST]' }}"
    "{%- else %}{{- '[INST]' }}{%- for block in message['content'] %}"
    "{%- if block['type'] == 'text' %}{{- block['text'] }}"
    "{%- elif block['type'] in ['image', 'image_url'] %}{{- '[IMG]' }}{%- endif %}"
    "{%- endfor %}{{- '[/INST]' }}{%- endif %}"
    "{%- elif message['role'] == 'assistant' %}{{- message['content'] + eos_token }}"
    "{%- endif %}"
    "{%- endfor %}"
)
#: processor_config.json / preprocessor_config.json of the real tokenizer/ folder
PROCESSOR_CONFIG = {
    "image_break_token": "[IMG_BREAK]",
    "image_end_token": "[IMG_END]",
    "image_token": "[IMG]",
    "patch_size": 14,
    "processor_class": "PixtralProcessor",
    "spatial_merge_size": 2,
}
PREPROCESSOR_CONFIG = {
    "do_convert_rgb": True,
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_processor_type": "PixtralImageProcessor",
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "patch_size": {"height": 14, "width": 14},
    "processor_class": "PixtralProcessor",
    "resample": 3,
    "rescale_factor": 1 / 255,
    "size": {"longest_edge": 1540},
}


def write_dev_preset(directory: Path, seed: int = 0) -> None:
    tokenizer = build_mistral_tokenizer()
    # seed + 2: not klein's transformer
    write_models(directory, seed, lambda: build_mistral3(tokenizer), seed + 2, ORIGINAL_FILE, guidance_embeds=True)
    write_processor_folder(directory / "tokenizer", tokenizer)
    write_json(directory / "model_index.json", model_index("Flux2Pipeline", "Mistral3ForConditionalGeneration", "PixtralProcessor"))


def build_mistral3(tokenizer) -> torch.nn.Module:
    """Mistral3ForConditionalGeneration with the tokenizer's vocabulary and special-token ids."""
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration, MistralConfig, PixtralVisionConfig

    ids = {f"{name}_token_id": tokenizer.convert_tokens_to_ids(tok) for name, tok in (("pad", "<pad>"), ("bos", "<s>"), ("eos", "</s>"))}
    text = MistralConfig(vocab_size=len(tokenizer), **TINY_MISTRAL, **ids)
    config = Mistral3Config(text_config=text, vision_config=PixtralVisionConfig(**TINY_PIXTRAL), **MISTRAL3)
    return Mistral3ForConditionalGeneration(config)


def build_mistral_tokenizer():
    """A byte-level BPE with Mistral's control tokens at their real ids, merges learnt offline on
    `CORPUS_WORDS` and the pipeline's system message, Mistral Small 3.1's chat template."""
    from diffusers.pipelines.flux2.system_messages import SYSTEM_MESSAGE
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512, special_tokens=list(SPECIAL_TOKENS), initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )  # fmt: skip
    bpe.train_from_iterator([SYSTEM_MESSAGE, CORPUS_WORDS], trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        model_max_length=TINY_MAX_LENGTH,
    )  # fmt: skip
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def write_processor_folder(folder: Path, tokenizer) -> None:
    """The tokenizer files plus the Pixtral processor's and image processor's configs."""
    tokenizer.save_pretrained(folder)
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    write_json(config_path, {**config, "processor_class": "PixtralProcessor"})
    write_json(folder / "processor_config.json", PROCESSOR_CONFIG)
    write_json(folder / "preprocessor_config.json", PREPROCESSOR_CONFIG)
