"""`TrainConfig`: every `diffsynth train` option, one field each.

The CLI is generated from these fields (name, type, default, `help`, `panel` metadata), so a
flag, its default and its `--help` text live in one place. Field names are the seed's
(DiffSynth-Studio) underscore spellings; the CLI accepts them dashed too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


def opt(default: Any, help: str, panel: str, **extra: Any) -> Any:
    """A config field with CLI metadata."""
    return field(default=default, metadata={"help": help, "panel": panel, **extra})


DATASET, MODELS, TRAINING, LORA, GRADIENT, RESOLUTION, OUTPUT, CHECKPOINTS = (
    "Dataset",
    "Models",
    "Training",
    "LoRA",
    "Memory",
    "Resolution",
    "Output",
    "Checkpoints",
)
OPTIMIZER, TIMESTEPS = "Optimizer and schedule", "Timesteps"
VALIDATION = "Validation"

TIMESTEP_SAMPLINGS = ("uniform", "logit_normal", "sigmoid", "shift", "resolution_shift")
#: Other tools' spellings of a sampling, accepted as they are (musubi-tuner names the resolution-dependent
#: shift after the pipeline it comes from).
TIMESTEP_SAMPLING_ALIASES = {"flux_shift": "resolution_shift"}
LR_SCHEDULERS = ("constant", "constant_with_warmup", "cosine", "linear", "cosine_with_restarts")
OPTIMIZERS = ("adamw", "adamw8bit", "prodigy", "adafactor", "came")
LORA_TYPES = ("lora", "lokr", "loha", "dora")


DEFAULT_LORA_RANK = 32


@dataclass
class TrainConfig:
    """Options of `diffsynth train FAMILY`; `family` and `family_options` are filled by the CLI."""

    # --- Dataset ---
    dataset_base_path: str = opt("", "Folder the file columns of the metadata are relative to.", DATASET)
    dataset_metadata_path: str | None = opt(
        None,
        "Metadata file (.csv, .json list or .jsonl). Default: metadata.csv/.jsonl/.json in the base path.",
        DATASET,
    )
    data_file_keys: str | None = opt(
        None,
        "Comma-separated metadata columns that name files to load (default: the family's, e.g. image; "
        "absent ones are skipped).",
        DATASET,
    )
    dataset_repeat: int = opt(1, "Times to repeat the dataset per epoch (costs no memory).", DATASET)
    dataset_num_workers: int = opt(0, "DataLoader worker processes.", DATASET)
    extra_inputs: str | None = opt(
        None, "Comma-separated extra conditioning columns the family consumes (e.g. edit_image).", DATASET
    )
    caption_dropout_rate: float = opt(
        0.0,
        "Replace the prompt by the empty prompt with this probability (decided per seed, epoch and position "
        "in the data order, so a resumed run drops the same ones).",
        DATASET,
    )
    cache_dir: str | None = opt(
        None,
        "Encode every row once into this folder (VAE latents, text embeddings; only what is missing or changed), "
        "free the encoders and train from it. Refused when an encoder is trained or with --caption_dropout_rate.",
        DATASET,
    )
    cache: bool = opt(False, "--cache_dir <output_path>/cache.", DATASET)
    # --- Resolution ---
    height: int | None = opt(None, "Fixed image height (with --width); else dynamic resolution.", RESOLUTION)
    width: int | None = opt(None, "Fixed image width (with --height).", RESOLUTION)
    max_pixels: int = opt(
        1024 * 1024,
        "Dynamic resolution: scale images down (never up) to at most this many pixels.",
        RESOLUTION,
    )
    num_frames: int = opt(
        81,
        "Video: the first N frames; a shorter video gives the largest n <= its length with n % 4 == 1.",
        RESOLUTION,
    )
    # --- Models ---
    model_paths: str | None = opt(
        None, 'JSON list of checkpoint paths; an item may be a list of shards: \'["a.safetensors", ["b-1.safetensors", "b-2.safetensors"]]\'.', MODELS
    )
    model_id_with_origin_paths: str | None = opt(
        None,
        "Comma-separated repo/id:glob sources under $DIFFSYNTH_MODEL_BASE_PATH (default ./models), downloaded when missing.",
        MODELS,
    )
    tokenizer_path: str | None = opt(None, "Tokenizer folder or repo/id:folder/ (default: the family's).", MODELS)
    processor_path: str | None = opt(None, "Processor folder or repo/id:folder/ (default: the family's).", MODELS)
    variant: str | None = opt(None, "Which of the family's default model sets to use when no model flag is given.", MODELS)
    offload_models: str | None = opt(
        None,
        "Comma-separated frozen encoders (component names or model sources as given): their weights stay in "
        "CPU memory and go to the GPU only while encoding. With --task sft:data_process / sft:train "
        "(DiffSynth-Studio's split training): the models that stage leaves unloaded.",
        MODELS,
    )
    download_source: str | None = opt(
        None, "modelscope or huggingface (default: $DIFFSYNTH_DOWNLOAD_SOURCE or modelscope).", MODELS
    )
    # --- Training ---
    learning_rate: float = opt(
        1e-4, "Learning rate (constant unless --lr_scheduler says otherwise; no hidden warm-up or warm-down).", TRAINING
    )
    weight_decay: float = opt(0.01, "Optimizer weight decay.", TRAINING)
    num_epochs: int = opt(1, "Passes over the (repeated) dataset.", TRAINING)
    max_steps: int | None = opt(None, "Stop after this many optimizer steps.", TRAINING)
    gradient_accumulation_steps: int = opt(1, "Micro-batches per optimizer step.", TRAINING)
    batch_size: int = opt(
        1,
        "Samples per micro-batch: rows that train at the same size (aspect buckets over the dynamic "
        "resolution) are batched; a batch of N updates as N accumulated micro-batches would.",
        TRAINING,
    )
    trainable_models: str | None = opt(
        None, "Comma-separated components to train fully (e.g. dit).", TRAINING
    )
    task: str = opt(
        "sft",
        "sft (flow-matching supervised fine-tuning); split training (DiffSynth-Studio's): sft:data_process encodes "
        "the dataset into an encoder cache at --output_path, sft:train trains from the cache at --dataset_base_path.",
        TRAINING,
    )
    seed: int = opt(0, "Random seed (noise, timesteps, data order, LoRA init).", TRAINING)
    min_timestep_boundary: float = opt(
        0.0, "Skip the noisiest fraction of the schedule: train on indices >= this fraction counted from the noisy end (0 = sigma 1).", TRAINING
    )
    max_timestep_boundary: float = opt(
        1.0, "Train on schedule indices < this fraction counted from the noisy end (1 = all; 0.417 = a high-noise expert).", TRAINING
    )
    train_experts: str | None = opt(
        None,
        "Train every timestep expert of a model that has several (e.g. high,low; `models info FAMILY`) in one run, "
        "a LoRA on each: each sample trains the expert owning its drawn timestep, as inference splits them.",
        TRAINING,
    )
    dtype: str = opt("auto", "Weight/compute dtype: auto (bf16 on GPU, fp32 on CPU), fp32, bf16, fp16.", TRAINING)
    find_unused_parameters: bool = opt(False, "Pass find_unused_parameters to DDP.", TRAINING)
    ema_decay: float | None = opt(
        None,
        "Keep an exponential moving average of the trained weights (ema = d*ema + (1-d)*w after each optimizer "
        "step, e.g. 0.999) and save it next to the raw weights as <name>-ema.safetensors.",
        TRAINING,
    )
    # --- Optimizer and schedule ---
    optimizer: str = opt(
        "adamw",
        "adamw (torch), adamw8bit (bitsandbytes, GPU), prodigy (prodigyopt), adafactor (transformers), "
        "came (came-pytorch).",
        OPTIMIZER,
    )
    optimizer_args: str | None = opt(
        None,
        'Extra optimizer arguments as space-separated key=value pairs, e.g. "betas=0.9,0.99 d_coef=2"; '
        "values are Python literals (numbers, True/False, tuples) or text.",
        OPTIMIZER,
    )
    max_grad_norm: float = opt(
        0.0, "Clip the gradient norm to this value before each optimizer step (0 = off, as DiffSynth-Studio).", OPTIMIZER
    )
    lr_scheduler: str = opt(
        "constant",
        "Learning-rate schedule (diffusers' get_scheduler): constant, constant_with_warmup, cosine, linear, "
        "cosine_with_restarts.",
        OPTIMIZER,
    )
    lr_warmup_steps: int = opt(0, "Optimizer steps of linear warm-up from 0 (with a schedule that warms up).", OPTIMIZER)
    lr_num_cycles: int = opt(1, "Hard restarts of cosine_with_restarts.", OPTIMIZER)
    # --- Timesteps ---
    timestep_sampling: str = opt(
        "uniform",
        "How training draws sigmas (musubi-tuner's names): uniform (the family's schedule grid, DiffSynth-Studio's), "
        "logit_normal (sigmoid of N(--logit_mean, --logit_std)), sigmoid (sigmoid of --sigmoid_scale * N(0,1)), "
        "shift (sigmoid, then shifted by --discrete_flow_shift), resolution_shift (sigmoid, then shifted by "
        "exp(mu), mu linear in the image's token count, diffusers' calculate_shift; musubi's flux_shift, also accepted).",
        TIMESTEPS,
    )
    discrete_flow_shift: float = opt(1.0, "Shift s of --timestep_sampling shift: sigma' = s*sigma / (1 + (s-1)*sigma).", TIMESTEPS)
    sigmoid_scale: float = opt(
        1.0, "Scale of the normal sample before the sigmoid (sigmoid, shift, resolution_shift); larger = flatter.", TIMESTEPS
    )
    logit_mean: float = opt(0.0, "Mean of the normal in --timestep_sampling logit_normal.", TIMESTEPS)
    logit_std: float = opt(1.0, "Standard deviation of the normal in --timestep_sampling logit_normal.", TIMESTEPS)
    # --- LoRA ---
    lora_base_model: str | None = opt(None, "Component to add a LoRA to (e.g. dit). Omit for full training.", LORA)
    lora_target_modules: str | None = opt(
        None, "Comma-separated module name suffixes to wrap (default: the family's).", LORA
    )
    lora_rank: int | None = opt(None, "LoRA rank (default 32, or the rank of --lora_checkpoint).", LORA)
    lora_alpha: float | None = opt(
        None, "LoRA alpha (default: equal to the rank, scale 1; or the alpha of --lora_checkpoint).", LORA
    )
    lora_type: str = opt(
        "lora",
        "Adapter kind (peft): lora, lokr (Kronecker product), loha (Hadamard product), dora (weight-decomposed LoRA). "
        "See docs/recipes.md for which tools load each.",
        LORA,
    )
    lokr_factor: int = opt(
        -1, "LoKr: the Kronecker factor of each weight dimension (peft's decompose_factor; -1 = as square as possible).", LORA
    )
    lora_checkpoint: str | None = opt(
        None, "Continue training this LoRA file (ours, peft, DiffSynth-Studio, diffusers, ComfyUI/kohya formats).", LORA
    )
    preset_lora_path: str | None = opt(
        None, "Merge (fuse) this LoRA into the base weights before training a new LoRA on top.", LORA
    )
    preset_lora_model: str | None = opt(
        None, "Component --preset_lora_path is merged into (default: the LoRA base, else the denoiser).", LORA
    )
    # --- Gradient ---
    use_gradient_checkpointing: bool = opt(False, "Recompute activations in backward to save memory.", GRADIENT)
    blocks_to_swap: int = opt(
        0,
        "Keep the frozen weights of the denoiser's last N blocks in CPU memory, copied to the GPU only while "
        "each block runs (needs --use_gradient_checkpointing; not under FSDP or DeepSpeed).",
        GRADIENT,
    )
    use_gradient_checkpointing_offload: bool = opt(
        False, "Also keep the checkpointed activations in CPU memory (implies --use_gradient_checkpointing).", GRADIENT
    )
    fp8_models: str | None = opt(
        None,
        "Comma-separated components (or their --model_paths / --model_id_with_origin_paths entries) whose weights "
        "are stored in FP8 (float8_e4m3fn) and computed in the training dtype; frozen models or the LoRA base.",
        GRADIENT,
    )
    # --- Validation ---
    validation_metadata_path: str | None = opt(
        None,
        "Held-out rows (a metadata file, paths relative to --dataset_base_path): their loss at fixed noise "
        "levels and fixed noise, logged as val_loss.",
        VALIDATION,
    )
    validation_split: float | None = opt(
        None, "Hold out this fraction of the training rows (the last ones) as the validation rows.", VALIDATION
    )
    validation_steps: int | None = opt(
        None, "Compute val_loss every N optimizer steps (and at the end; default: at the end only).", VALIDATION
    )
    validation_prompts: str | None = opt(
        None,
        "A text file, one prompt per line: sampled with the family's inference pipeline (fixed seed) every "
        "--validation_steps and at the end, into OUTPUT/samples/step-N/ with a grid.png.",
        VALIDATION,
    )
    keep_best: bool = opt(
        False, "Also write the weights with the lowest val_loss as best*.safetensors (best.json says the step).", VALIDATION
    )
    # --- Output ---
    output_path: str = opt("./models/train", "Folder for weights, logs and the model card.", OUTPUT)
    save_steps: int | None = opt(None, "Save every N optimizer steps (else once per epoch).", OUTPUT)
    remove_prefix_in_ckpt: str | None = opt(
        None, "Accepted for compatibility: our keys never carry DiffSynth's pipe.dit. prefix.", OUTPUT
    )
    report_to: str = opt("none", "Experiment tracker: none or tensorboard.", OUTPUT)
    overwrite: bool = opt(
        False,
        "Replace the results of an earlier run in --output_path (its weights, training_args.json, loss log and "
        "checkpoints are deleted when training starts); without it such a folder is refused.",
        OUTPUT,
    )
    # --- Checkpoints (training state, for resuming) ---
    checkpointing_steps: int | None = opt(
        None, "Write a resumable training-state checkpoint every N optimizer steps.", CHECKPOINTS
    )
    checkpoints_total_limit: int | None = opt(None, "Keep only the newest N training-state checkpoints.", CHECKPOINTS)
    resume_from_checkpoint: str | None = opt(
        None, "Continue from 'latest' (in --output_path) or a checkpoints/step-N folder.", CHECKPOINTS
    )
    skip_nonfinite: int = opt(
        0, "Skip up to N micro-batches whose loss is NaN/inf instead of stopping at the first.", CHECKPOINTS
    )

    # --- filled by the CLI, not flags ---
    family: str = field(default="", metadata={"cli": False})
    family_options: dict[str, Any] = field(default_factory=dict, metadata={"cli": False})

    # --- derived views ---
    def file_keys(self) -> list[str]:
        return split_list(self.data_file_keys)

    def extra_input_names(self) -> list[str]:
        return split_list(self.extra_inputs)

    def fp8_model_names(self) -> list[str]:
        return split_list(self.fp8_models)

    def trainable_model_names(self) -> list[str]:
        return split_list(self.trainable_models)

    def train_expert_names(self) -> list[str]:
        return split_list(self.train_experts)

    def lora_targets(self) -> list[str]:
        return split_list(self.lora_target_modules)

    def effective_lora_rank(self) -> int:
        return self.lora_rank if self.lora_rank is not None else DEFAULT_LORA_RANK

    def effective_lora_alpha(self) -> float:
        return float(self.lora_alpha) if self.lora_alpha is not None else float(self.effective_lora_rank())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def split_list(value: str | None) -> list[str]:
    """`"a, b,,c"` -> `["a", "b", "c"]`; None -> []."""
    if not value:
        return []
    return [part.strip() for part in value.split(",") if part.strip()]


def cli_fields() -> list:
    """The dataclass fields that are CLI flags, in declaration order."""
    return [f for f in fields(TrainConfig) if f.metadata.get("cli", True)]
