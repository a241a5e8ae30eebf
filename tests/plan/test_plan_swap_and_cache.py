"""`--vram` picks `--blocks_to_swap N` when no other option set fits: the fewest blocks that fit,
found with a few predictions (not one per N), and plan's prediction of a swapped run."""

import dataclasses

import pytest

from diffsynth.errors import UserError
from diffsynth.plan import choices
from diffsynth.plan.simulate import Prediction

GIB = 1024**3


@pytest.fixture(scope="module")
def model_base(tmp_path_factory):
    """The tiny Qwen-Image preset at its default repo id."""
    from diffsynth.cli import main

    base = tmp_path_factory.mktemp("models")
    main(["models", "init", "qwen-image", str(base / "Qwen" / "Qwen-Image"), "--preset", "tiny"])
    return base


def predictor(peaks: dict[int, int], calls: list[int]):
    def predict(options: choices.Options) -> Prediction:
        calls.append(options.blocks_to_swap)
        return Prediction(family="f", variant=None, peak=peaks[options.blocks_to_swap], breakdown={}, weights={}, phases={})

    return predict


def needed(peak: int) -> int:
    return int(peak * (1 + choices.MARGIN) + choices.RESERVED)


@pytest.mark.parametrize("wanted", [1, 7, 23, 59])
def test_fewest_swapped_blocks_that_fit_with_few_predictions(wanted):
    # 60 blocks of 0.31 GiB each, plus a bump that makes the peak not quite linear in N
    peaks = {n: int((30 - 0.31 * n + 0.02 * (n % 3)) * GIB) for n in range(60)}
    vram = needed(peaks[wanted]) + 1
    assert not choices.fits(peaks[wanted - 1], vram) or wanted == 1
    calls: list[int] = []
    top = choices.Options("on", True, True)
    options, prediction = choices.fewest_swapped(top, 60, vram, predictor(peaks, calls))
    first_fitting = min(n for n in range(1, 60) if choices.fits(peaks[n], vram))
    assert options == dataclasses.replace(top, blocks_to_swap=first_fitting) and prediction.peak == peaks[first_fitting]
    assert len(calls) <= 5


def test_nothing_fits_names_the_most_swapped_peak():
    peaks = {n: (30 - n // 10) * GIB for n in range(60)}
    order = [choices.Options("on", True, True)]
    with pytest.raises(UserError, match=r"smallest predicted peak is 25\.00 GiB \(checkpointing \+ FP8 denoiser \+ FP8 encoders \+ 59 blocks swapped\)"):
        choices.fastest_fitting(order, 10 * GIB, predictor(peaks, []), blocks=60)


def test_tiny_qwen_image_plan_chooses_a_swap(model_base, monkeypatch):
    """On the tiny preset (2 blocks), every other option already on: a card between the peak
    without a swap and the peak with one block swapped gets `--blocks_to_swap 1`, and plan's
    swapped prediction holds fewer denoiser weights."""
    from diffsynth.config import TrainConfig
    from diffsynth.plan.run import Planner
    from diffsynth.plugins import load_registry

    monkeypatch.setenv("DIFFSYNTH_MODEL_BASE_PATH", str(model_base))
    monkeypatch.setenv("DIFFSYNTH_SKIP_DOWNLOAD", "True")
    config = TrainConfig(family="qwen-image", lora_base_model="dit", lora_rank=4, max_pixels=4096,
                         use_gradient_checkpointing_offload=True, fp8_models="dit,text_encoder,vae")  # fmt: skip
    planner = Planner(load_registry(), config, "cpu")
    plain, swapped = planner.base, planner.predicted(dataclasses.replace(planner.floor, blocks_to_swap=1))
    assert planner.base.repeated_blocks == 2 and swapped.peak < plain.peak
    assert swapped.weights["weights: dit"] < plain.weights["weights: dit"]
    options, row = planner.choose((needed(plain.peak) + needed(swapped.peak)) // 2)
    assert options.blocks_to_swap == 1 and row["flags"].endswith("--blocks_to_swap 1")


def test_tiny_qwen_image_cached_run_keeps_encoders_and_denoiser_apart(model_base, monkeypatch):
    """`--cache`: the cache build holds the encoders without the denoiser (exactly the uncached
    encoders phase minus the denoiser's weights, its LoRA and optimizer state), and training
    holds the denoiser without the encoders."""
    from diffsynth.config import TrainConfig
    from diffsynth.plan.simulate import predict
    from diffsynth.plugins import load_registry

    monkeypatch.setenv("DIFFSYNTH_MODEL_BASE_PATH", str(model_base))
    monkeypatch.setenv("DIFFSYNTH_SKIP_DOWNLOAD", "True")
    flags = dict(family="qwen-image", lora_base_model="dit", lora_rank=4, max_pixels=4096, use_gradient_checkpointing=True, output_path="out")
    plain = predict(load_registry(), TrainConfig(**flags), "cpu")
    cached = predict(load_registry(), TrainConfig(**flags, cache=True), "cpu")
    assert cached.settings["cached"] and not plain.settings["cached"]
    denoiser_side = plain.weights["weights: dit"] + plain.weights["trainable parameters"] + plain.breakdown["optimizer state"]
    assert cached.phases["encoders"] == plain.phases["encoders"] - denoiser_side
    encoder_weights = plain.weights["weights: text_encoder"] + plain.weights["weights: vae"]
    assert cached.phases["denoiser"] < plain.phases["denoiser"] - encoder_weights * 0.9
    assert cached.peak == max(cached.phases.values())


def test_tiny_qwen_image_offloaded_encoders_leave_the_denoiser_phase(model_base, monkeypatch):
    """`--offload_models text_encoder,vae`: the encoders' weights are on the device while they
    encode (that phase's peak is unchanged) and not in the denoiser's step."""
    from diffsynth.config import TrainConfig
    from diffsynth.plan.simulate import predict
    from diffsynth.plugins import load_registry

    monkeypatch.setenv("DIFFSYNTH_MODEL_BASE_PATH", str(model_base))
    monkeypatch.setenv("DIFFSYNTH_SKIP_DOWNLOAD", "True")
    flags = dict(family="qwen-image", lora_base_model="dit", lora_rank=4, max_pixels=4096, use_gradient_checkpointing=True)
    plain = predict(load_registry(), TrainConfig(**flags), "cpu")
    offloaded = predict(load_registry(), TrainConfig(**flags, offload_models="text_encoder,vae"), "cpu")
    assert offloaded.phases["encoders"] == plain.phases["encoders"]
    encoder_weights = plain.weights["weights: text_encoder"] + plain.weights["weights: vae"]
    assert offloaded.phases["denoiser"] == pytest.approx(plain.phases["denoiser"] - encoder_weights, rel=1e-3)
