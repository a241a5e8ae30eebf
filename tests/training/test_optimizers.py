"""`--optimizer`, `--optimizer_args`: each optimizer is the package's real one, trains the toy
family to the point it learns red vs blue, and a missing package or a missing GPU is one line."""

from __future__ import annotations

import importlib.util
import os
from unittest.mock import patch

import pytest
import torch

from diffsynth.config import TrainConfig
from diffsynth.errors import UserError
from diffsynth.models.sources import MODEL_BASE_ENV, SKIP_DOWNLOAD_ENV
from diffsynth.plugins import load_registry
from diffsynth.testing.learns import train_and_sample, write_two_class_dataset
from diffsynth.training.optim import build_optimizer, parse_optimizer_args
from tests.conftest import EXAMPLE_DATA, run_main


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


# (optimizer, learning rate, package): prodigy estimates the step size itself (lr 1 is its advice)
CASES = [("adamw", 3e-3, "torch"), ("prodigy", 1.0, "prodigyopt"), ("adafactor", 3e-3, "transformers"), ("came", 3e-3, "came_pytorch")]


@pytest.mark.parametrize("name,lr,package", CASES)
def test_optimizer_learns_red_vs_blue(toy_models, tmp_path, name, lr, package):
    if not installed(package):
        pytest.skip(f"{package} is not installed (pip install 'diffsynth[{name}]')")
    with patch.dict(os.environ, {MODEL_BASE_ENV: str(toy_models), SKIP_DOWNLOAD_ENV: "True"}):
        config = TrainConfig(
            family="toy", dataset_base_path=str(write_two_class_dataset(tmp_path / "data")), trainable_models="dit",
            optimizer=name, learning_rate=lr, dataset_repeat=40, output_path=str(tmp_path / "out"), seed=1,
        )
        result = train_and_sample(load_registry(), config)
    assert result.fraction >= 0.9, f"{name}: {result.correct}/{result.total} samples nearer their own class"


@pytest.mark.parametrize("name,module,cls", [
    ("adamw", "torch.optim", "AdamW"), ("prodigy", "prodigyopt", "Prodigy"),
    ("adafactor", "transformers.optimization", "Adafactor"), ("came", "came_pytorch", "CAME"),
])
def test_each_name_builds_the_packages_optimizer_with_its_args(name, module, cls):
    if not installed(module.split(".")[0]):
        pytest.skip(f"{module} is not installed")
    params = [torch.nn.Parameter(torch.zeros(2))]
    args = {"adamw": "betas=0.8,0.95 amsgrad=True", "prodigy": "d_coef=2 betas=0.8,0.95", "adafactor": "clip_threshold=2.0",
            "came": "betas=0.8,0.95,0.99"}[name]
    opt = build_optimizer(TrainConfig(optimizer=name, learning_rate=0.5, weight_decay=0.02, optimizer_args=args), params, torch.device("cpu"))
    assert type(opt).__name__ == cls and type(opt).__module__.startswith(module.split(".")[0])
    group = opt.param_groups[0]
    assert group["lr"] == 0.5 and group["weight_decay"] == 0.02
    for key, value in parse_optimizer_args(args).items():
        assert group[key] == value
    if name == "adafactor":  # an explicit learning rate, no relative step
        assert (group["relative_step"], group["scale_parameter"], group["warmup_init"]) == (False, False, False)


def test_optimizer_args_parse_python_literals():
    assert parse_optimizer_args('betas=0.9,0.99 d_coef=2 decouple=True name=abc eps=1e-8 "x=a b"') == {
        "betas": (0.9, 0.99), "d_coef": 2, "decouple": True, "name": "abc", "eps": 1e-8, "x": "a b"}
    with pytest.raises(UserError, match="expected key=value pairs"):
        parse_optimizer_args("betas")


def test_adamw8bit_without_bitsandbytes_or_a_gpu_is_one_line(toy_models, tmp_path):
    result = run_main("train", "toy", "--dataset_base_path", str(EXAMPLE_DATA), "--lora_base_model", "dit", "--max_pixels", "4096",
                     "--optimizer", "adamw8bit", "--output_path", str(tmp_path / "o"), DIFFSYNTH_MODEL_BASE_PATH=str(toy_models))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    if not installed("bitsandbytes"):
        assert result.stderr == ("error: --optimizer adamw8bit: needs the bitsandbytes package, which is not installed "
                                 "(pip install 'diffsynth[bitsandbytes]')\n")
    elif not torch.cuda.is_available():
        assert result.stderr == "error: --optimizer adamw8bit: bitsandbytes' 8-bit AdamW needs a CUDA GPU; this run is on cpu\n"


def test_bad_optimizer_flags_are_one_line(toy_models, tmp_path):
    common = ["train", "toy", "--dataset_base_path", str(EXAMPLE_DATA), "--lora_base_model", "dit", "--max_pixels", "4096"]
    cases = {
        ("--optimizer", "sgd"): "error: --optimizer: expected one of adamw, adamw8bit, prodigy, adafactor, came, got 'sgd'\n",
        ("--optimizer_args", "nonsense=1"): "error: --optimizer_args: adamw (torch.optim.adamw.AdamW) refused them: ",
        ("--max_grad_norm", "-1"): "error: --max_grad_norm: expected 0 (off) or a positive number, got -1\n",
        ("--lr_scheduler", "cosine_annealing"): "error: --lr_scheduler: expected one of constant, constant_with_warmup, cosine, linear, cosine_with_restarts, got 'cosine_annealing'\n",
        ("--ema_decay", "1"): "error: --ema_decay: expected 0 < decay < 1 (e.g. 0.999), got 1\n",
        ("--caption_dropout_rate", "1.5"): "error: --caption_dropout_rate: expected a probability 0 <= p <= 1, got 1.5\n",
        ("--timestep_sampling", "sigma"): "error: --timestep_sampling: expected one of uniform, logit_normal, sigmoid, shift, resolution_shift, flux_shift, got 'sigma'\n",
        ("--sigmoid_scale", "0"): "error: --sigmoid_scale: expected a positive finite number, got 0\n",
        ("--lr_warmup_steps", "5"): "error: --lr_warmup_steps: the constant schedule has no warm-up; use --lr_scheduler constant_with_warmup\n",
    }
    for i, (flags, message) in enumerate(cases.items()):
        result = run_main(*common, *flags, "--output_path", str(tmp_path / f"o{i}"), DIFFSYNTH_MODEL_BASE_PATH=str(toy_models))
        assert result.returncode == 2 and result.stderr.startswith(message), (flags, result.stderr)
        assert len(result.stderr.splitlines()) == 1
