"""`--train_experts high,low`: both Wan2.2 A14B experts (tiny-a14b) trained in one run, each
sample routed to the expert that owns its drawn sigma (diffusers' boundary_ratio 0.875), one LoRA
per expert that diffusers' WanPipeline loads into `transformer` / `transformer_2`; resume exact."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffsynth_wan.pipeline import boundary_ratio, expert_ranges
from diffsynth_wan.spec import A14B_BOUNDARY, A14B_REPO
from safetensors.torch import load_file

from diffsynth.errors import UserError
from diffsynth.plugins import load_registry
from diffsynth.testing.matrix import MatrixCase, MatrixWorkspace
from diffsynth.training.flow_matching import FlowMatchSchedule

VIDEO = Path(__file__).resolve().parents[3] / "examples" / "data" / "video"
BOTH = MatrixCase(
    "tiny-a14b", variant="a14b", name="a14b-both",
    options={"dataset_base_path": VIDEO, "height": 32, "width": 32, "num_frames": 5, "train_experts": "high,low",
             "learning_rate": 1e-2},
)  # fmt: skip
FILES = ("epoch-0_high_noise.safetensors", "epoch-0_low_noise.safetensors")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> MatrixWorkspace:
    registry = load_registry()
    return MatrixWorkspace(tmp_path_factory.mktemp("experts"), registry, registry.get("wan"), lora_rank=4, steps=4)


def loras(run) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    high, low = (load_file(run.output / name) for name in FILES)
    return high, low


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def runs(workspace):
    """Sigmas forced into one expert's range (after 1 and 4 steps), and both experts."""
    high, low = {"max_timestep_boundary": 0.3}, {"min_timestep_boundary": 0.6}  # grid index < 300: sigma > 0.92
    return {  # index >= 600: sigma < 0.68
        "high1": workspace.train(BOTH, "high1", max_steps=1, **high),
        "high": workspace.train(BOTH, "high", **high),
        "low1": workspace.train(BOTH, "low1", max_steps=1, **low),
        "low": workspace.train(BOTH, "low", **low),
        "both": workspace.train(BOTH, "both", batch_size=2),  # batches mixing both experts
    }


def test_boundary_is_diffusers_and_the_grid_split_of_diffsynth():
    assert boundary_ratio("t2v") == 0.875 and boundary_ratio("i2v") == 0.9
    assert expert_ranges("t2v") == {"high": (0.875, 1.0), "low": (0.0, 0.875)}
    # DiffSynth-Studio's --max_timestep_boundary 0.417 for the high expert is the same split on the grid
    grid = FlowMatchSchedule(shift=5.0).training_sigmas()
    index = int(A14B_BOUNDARY * 1000)
    assert (grid[:index] >= 0.875).all() and (grid[index:] < 0.875).all()


def test_one_run_writes_one_lora_per_expert_in_the_single_expert_format(runs):
    run = runs["both"]
    assert sorted(p.name for p in run.files) == sorted(FILES)
    high, low = loras(run)
    assert set(high) == set(low) and "diffusion_model.blocks.0.self_attn.q.lora_A.weight" in high
    assert "diffusion_model.blocks.0.ffn.2.alpha" in high
    assert not (run.output / "epoch-0.safetensors").exists()
    from safetensors import safe_open

    with safe_open(str(run.output / FILES[1]), "pt") as f:
        assert f.metadata()["diffsynth_component"] == "dit_2"


def test_each_sample_trains_only_the_expert_owning_its_sigma(runs):
    """An expert that owns none of the drawn sigmas stays as initialised, bit for bit: the same
    after 1 and 4 steps, its lora_B still zero (any update, even weight decay on a zero gradient,
    would show); the expert that owns them moves."""
    high1_high, high1_low = loras(runs["high1"])
    high_high, init_low = loras(runs["high"])
    low1_high, low1_low = loras(runs["low1"])
    init_high, low_low = loras(runs["low"])
    assert same(init_low, high1_low) and same(init_high, low1_high)
    assert all(not v.any() for k, v in {**init_low, **init_high}.items() if k.endswith("lora_B.weight"))
    assert not same(high_high, high1_high) and not same(high_high, init_high)
    assert not same(low_low, low1_low) and not same(low_low, init_low)
    both_high, both_low = loras(runs["both"])
    assert not same(both_high, init_high) and not same(both_low, init_low)


def test_resume_restores_both_experts_bit_equal(workspace, runs):
    output = workspace.root / "resumed"
    workspace.train(BOTH, "resumed", output=output, batch_size=2, max_steps=2, checkpointing_steps=2)
    resumed = workspace.train(BOTH, "resumed", output=output, batch_size=2, max_steps=4, checkpointing_steps=2,
                              resume_from_checkpoint="latest")  # fmt: skip
    for a, b in zip(loras(runs["both"]), loras(resumed)):
        assert same(a, b)
    assert resumed.losses == runs["both"].losses[2:]


def test_the_two_loras_load_into_transformer_and_transformer_2(workspace, runs):
    from diffsynth_wan.sampling import diffusers_pipeline

    from diffsynth.training.family_hooks import FamilyHooks
    from diffsynth.types import RunContext

    config = workspace.config(BOTH, workspace.root)
    files = workspace.model_files(BOTH)
    pipe = FamilyHooks(workspace.registry, workspace.spec).load_pipeline(files, RunContext.for_run(config))
    dp = diffusers_pipeline(pipe, image_to_video=False)
    assert dp.transformer is pipe.modules["dit"] and dp.transformer_2 is pipe.modules["dit_2"]
    assert dp.config.boundary_ratio == 0.875

    def generate():
        out = dp(prompt="a red circle", height=32, width=32, num_frames=5, num_inference_steps=3,
                 generator=torch.Generator().manual_seed(0), output_type="latent", max_sequence_length=8)  # fmt: skip
        return out.frames

    base = generate()
    high_file, low_file = (str(runs["both"].output / name) for name in FILES)
    dp.load_lora_weights(high_file, adapter_name="high")
    with_high = generate()
    dp.load_lora_weights(low_file, adapter_name="low", load_into_transformer_2=True)
    with_both = generate()
    assert not torch.equal(base, with_high) and not torch.equal(with_high, with_both)
    # each file went into its own expert: transformer has only "high", transformer_2 only "low"
    assert set(dp.transformer.peft_config) == {"high"} and set(dp.transformer_2.peft_config) == {"low"}
    low = load_file(low_file)
    loaded = dp.transformer_2.blocks[0].attn1.to_q.lora_B["low"].weight
    torch.testing.assert_close(loaded, low["diffusion_model.blocks.0.self_attn.q.lora_B.weight"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"train_experts": "high,mid"}, "--train_experts: wan has no expert 'mid'; its experts: high,low"),
        ({"train_experts": "low"}, "--train_experts low: name every expert (high,low)"),
        ({"variant": "a14b-high"}, "--train_experts: the loaded wan model has a single dit"),
        ({"train_experts": None}, "wan: 2 dit checkpoints given (timestep experts high,low): pass --train_experts"),
        ({"lora_type": "lokr"}, "--train_experts: not supported with --lora_type lokr yet"),
    ],
)
def test_bad_use_is_a_one_line_error(workspace, overrides, message):
    with pytest.raises(UserError) as err:
        workspace.train(BOTH, "bad", **overrides)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_experts_given_in_the_wrong_order_are_refused(workspace):
    low, high = (f"{A14B_REPO}:{e}/diffusion_pytorch_model*.safetensors" for e in ("low_noise_model", "high_noise_model"))
    rest = f"{A14B_REPO}:models_t5_umt5-xxl-enc-bf16.pth,{A14B_REPO}:Wan2.1_VAE.pth"
    with pytest.raises(UserError, match="give the high_noise_model/ DiT first"):
        workspace.train(BOTH, "swapped", model_id_with_origin_paths=f"{low},{high},{rest}")
