"""`--vram`'s option sets include offloading the frozen encoders (`--offload_models`) in a plain
run: in speed order between FP8 for the denoiser and checkpointing, as flags `train` takes."""

from diffsynth.config import TrainConfig
from diffsynth.plan import choices

ENCODERS = ["text_encoder", "vae"]


def config(**flags) -> TrainConfig:
    return TrainConfig(family="toy", lora_base_model="dit", **flags)


def test_offloading_is_offered_only_where_the_flag_keeps_encoders_off_the_device():
    assert choices.can_offload_encoders(config(), ENCODERS)
    assert not choices.can_offload_encoders(config(), [])
    assert not choices.can_offload_encoders(config(cache=True), ENCODERS)  # not loaded while training
    assert not choices.can_offload_encoders(config(cache_dir="c"), ENCODERS)
    assert not choices.can_offload_encoders(config(task="sft:train"), ENCODERS)  # split training: another meaning


def test_the_runs_own_offload_is_the_floor():
    assert choices.given_options(config(offload_models="vae,text_encoder"), "dit", ENCODERS).offload_encoders
    assert not choices.given_options(config(offload_models="vae"), "dit", ENCODERS).offload_encoders  # not all of them


def test_candidates_put_offload_between_fp8_denoiser_and_checkpointing():
    floor = choices.Options()
    order = choices.candidates(floor, can_fp8_denoiser=True, has_encoders=True, can_offload=True)
    labels = [o.label() for o in order]
    assert len(order) == 3 * 2 * 2 * 2 and labels[0] == "none"
    assert labels.index("encoders offloaded") < labels.index("checkpointing")
    assert labels.index("FP8 denoiser") < labels.index("encoders offloaded")
    assert order[-1] == choices.Options("offload", True, True, 0, True)  # every option: swap goes on top of it
    assert all(not o.offload_encoders for o in choices.candidates(floor, True, True, can_offload=False))
    rows = choices.standard(floor, True, True, can_offload=True)
    assert choices.Options(offload_encoders=True) in rows and rows[-1].offload_encoders


def test_the_chosen_offload_is_the_flag_train_gets():
    options = choices.Options("on", False, False, 0, True)
    assert choices.flags(options, "dit", ENCODERS) == "--use_gradient_checkpointing --offload_models text_encoder,vae"
    applied = choices.with_options(config(offload_models="vae"), options, "dit", ENCODERS)
    assert applied.offload_models == "vae,text_encoder" and applied.use_gradient_checkpointing
    assert choices.with_options(config(), choices.Options(), "dit", ENCODERS).offload_models is None


def test_when_every_option_on_does_not_fit_no_cheaper_set_is_planned():
    import dataclasses

    from diffsynth.plan import GIB
    from diffsynth.plan.simulate import Prediction

    order = choices.candidates(choices.Options(), True, True, can_offload=True)
    planned: list[choices.Options] = []

    def predict(options: choices.Options) -> Prediction:
        planned.append(options)
        peak = (40 - options.cost - options.blocks_to_swap) * GIB
        return Prediction(family="f", variant=None, peak=peak, breakdown={}, weights={}, phases={})

    options, _ = choices.fastest_fitting(order, 20 * GIB, predict, blocks=10)
    # swapped on top of every option but the encoders' offload (each step's whole encoder transfer)
    assert options.blocks_to_swap > 0 and options == dataclasses.replace(order[-1], offload_encoders=False, blocks_to_swap=options.blocks_to_swap)
    swap_top = dataclasses.replace(order[-1], offload_encoders=False)
    assert {o for o in planned if o.blocks_to_swap == 0} <= {order[-1], swap_top}  # the 22 cheaper sets skipped
