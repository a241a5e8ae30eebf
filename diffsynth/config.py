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
    download_source: str | None = opt(
        None, "modelscope or huggingface (default: $DIFFSYNTH_DOWNLOAD_SOURCE or modelscope).", MODELS
    )
    # --- Training ---
    learning_rate: float = opt(1e-4, "AdamW learning rate (constant; no hidden warm-up or warm-down).", TRAINING)
    weight_decay: float = opt(0.01, "AdamW weight decay.", TRAINING)
    num_epochs: int = opt(1, "Passes over the (repeated) dataset.", TRAINING)
    max_steps: int | None = opt(None, "Stop after this many optimizer steps.", TRAINING)
    gradient_accumulation_steps: int = opt(1, "Micro-batches per optimizer step.", TRAINING)
    trainable_models: str | None = opt(
        None, "Comma-separated components to train fully (e.g. dit).", TRAINING
    )
    task: str = opt("sft", "Training task (sft: flow-matching supervised fine-tuning).", TRAINING)
    seed: int = opt(0, "Random seed (noise, timesteps, data order, LoRA init).", TRAINING)
    min_timestep_boundary: float = opt(
        0.0, "Skip the noisiest fraction of the schedule: train on indices >= this fraction counted from the noisy end (0 = sigma 1).", TRAINING
    )
    max_timestep_boundary: float = opt(
        1.0, "Train on schedule indices < this fraction counted from the noisy end (1 = all; 0.417 = a high-noise expert).", TRAINING
    )
    dtype: str = opt("auto", "Weight/compute dtype: auto (bf16 on GPU, fp32 on CPU), fp32, bf16, fp16.", TRAINING)
    find_unused_parameters: bool = opt(False, "Pass find_unused_parameters to DDP.", TRAINING)
    # --- LoRA ---
    lora_base_model: str | None = opt(None, "Component to add a LoRA to (e.g. dit). Omit for full training.", LORA)
    lora_target_modules: str | None = opt(
        None, "Comma-separated module name suffixes to wrap (default: the family's).", LORA
    )
    lora_rank: int | None = opt(None, "LoRA rank (default 32, or the rank of --lora_checkpoint).", LORA)
    lora_alpha: float | None = opt(
        None, "LoRA alpha (default: equal to the rank, scale 1; or the alpha of --lora_checkpoint).", LORA
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
    use_gradient_checkpointing_offload: bool = opt(
        False, "Also keep the checkpointed activations in CPU memory (implies --use_gradient_checkpointing).", GRADIENT
    )
    fp8_models: str | None = opt(
        None,
        "Comma-separated components (or their --model_paths / --model_id_with_origin_paths entries) whose weights "
        "are stored in FP8 (float8_e4m3fn) and computed in the training dtype; frozen models or the LoRA base.",
        GRADIENT,
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
