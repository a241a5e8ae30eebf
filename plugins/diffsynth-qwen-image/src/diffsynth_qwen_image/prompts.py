"""The prompt templates of diffusers' QwenImagePipeline / QwenImageEditPipeline / QwenImageEditPlusPipeline (0.42.1).

`*_DROP` is `prompt_template_encode_start_idx`: how many leading tokens (the system prompt, as the
real tokenizer splits it) the pipelines drop from the text encoder's hidden states.
"""

T2I_TEMPLATE = (
    "<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, quantity, text, "
    "spatial relationships of the objects and background:<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n"
    "<|im_start|>assistant\n"
)
T2I_DROP = 34
EDIT_TEMPLATE = (
    "<|im_start|>system\nDescribe the key features of the input image (color, shape, size, texture, objects, "
    "background), then explain how the user's text instruction should alter or modify the image. Generate a new "
    "image that meets the user's requirements while maintaining consistency with the original input where "
    "appropriate.<|im_end|>\n<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>{}<|im_end|>\n"
    "<|im_start|>assistant\n"
)
EDIT_DROP = 64
TOKENIZER_MAX_LENGTH = 1024
# QwenImageEditPlusPipeline (Edit-2509/2511): the Edit system prompt, and the user turn is
# "Picture 1: <vision> Picture 2: <vision> ... <prompt>", one vision block per reference image.
EDIT_PLUS_TEMPLATE = EDIT_TEMPLATE.replace("<|vision_start|><|image_pad|><|vision_end|>{}", "{}")
PICTURE_TEMPLATE = "Picture {}: <|vision_start|><|image_pad|><|vision_end|>"
EDIT_PLUS_DROP = 64
#: The area the Edit Plus pipeline resizes each reference to for the text encoder (its own aspect)
CONDITION_IMAGE_SIZE = 384 * 384
