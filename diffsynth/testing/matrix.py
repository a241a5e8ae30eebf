"""The option matrix: every generic `train` option on every family and every tiny preset.

A family joins by declaring its cases (preset, variant, data); it writes no per-option code:

    from diffsynth.testing.matrix import MatrixCase, OptionMatrix

    class TestOptions(OptionMatrix):
        family = "my-family"
        cases = (
            MatrixCase("tiny", options={"dataset_base_path": DATA, "max_pixels": 4096}),
            MatrixCase("tiny-edit", variant="edit", options={...}),
        )

Each cell runs the real trainer in-process (the two-process cell runs `accelerate launch`) on
the preset written by the family's own `init_model`, offline, and asserts what the option
promises: FP8 weights really stored in FP8, checkpointing giving the same LoRA, a LoRA file
read back exactly, a merged preset LoRA equal to the same LoRA applied unmerged, resume
bit-equal to an uninterrupted run. The first case of a family runs every cell; the others run
the FP8 cells, and all cells with `DIFFSYNTH_FULL_MATRIX=1` (`nox -s matrix`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from diffsynth.config import TrainConfig
from diffsynth.models.sources import MODEL_BASE_ENV, SKIP_DOWNLOAD_ENV
from diffsynth.plugins import FamilyRegistry, load_registry
from diffsynth.spec import FamilySpec
from diffsynth.testing.contract import FamilyFixtures, init_default_repos

FULL_MATRIX_ENV = "DIFFSYNTH_FULL_MATRIX"
#: One step that changes no weight: an update of 1e-30 is below float32's resolution of any
#: weight (a learning rate of 0 is refused as a user error).
FROZEN = {"learning_rate": 1e-30, "weight_decay": 0.0, "max_steps": 1}


def image_options(data: Path, edit_column: str | None = None) -> dict[str, Any]:
    """A case's options for the repo's example pictures at `data` (examples/data), at most 4096
    pixels each; with `edit_column`, its edit/ pairs, the reference picture read from that
    column as the family's extra input."""
    if edit_column is None:
        return {"dataset_base_path": data, "max_pixels": 4096}
    return {
        "dataset_base_path": data / "edit", "max_pixels": 4096,
        "data_file_keys": f"image,{edit_column}", "extra_inputs": edit_column,
    }  # fmt: skip


@dataclass(frozen=True)
class MatrixCase:
    """One tiny preset of a family and the data it trains on."""

    preset: str
    #: The family variant whose default sources the preset fills (None: the family's first).
    variant: str | None = None
    #: TrainConfig fields for the data: dataset_base_path, max_pixels or height/width, ...
    options: dict[str, Any] = field(default_factory=dict)
    #: Writes a dataset under the given folder and returns TrainConfig fields for it (for data
    #: the repo does not ship in the needed shape); merged over `options`.
    make_dataset: Callable[[Path], dict[str, Any]] | None = None
    #: Frozen components FP8 is tried on (default: the family's non-optional components).
    components: tuple[str, ...] = ()
    #: A component trained in full next to the denoiser's LoRA (default: the first non-denoiser).
    second_trained: str | None = None
    #: The case's id in test names and output folders (default: the preset's name); needed when
    #: two cases share a preset (e.g. two experts of one repo).
    name: str = ""
    #: The side multiple this variant's latents come in when it is not the spec's
    #: `resolution_multiple` (a family-wide value): e.g. Wan2.2 TI2V's 16x VAE with 2x2 patches, 32.
    resolution_multiple: int | None = None

    @property
    def id(self) -> str:
        return self.name or self.preset


@dataclass
class MatrixRun:
    """A finished in-process run: its trainer (pipeline included), output folder and losses."""

    trainer: Any
    output: Path
    files: list[Path]
    losses: list[float]

    def lora(self) -> dict[str, Any]:
        from safetensors.torch import load_file

        return load_file(str(self.files[0]))


class OptionMatrix(FamilyFixtures):
    """Subclass in a plugin's tests with `family` and `cases`."""

    cases: tuple[MatrixCase, ...] = ()
    lora_rank: int = 4
    steps: int = 2

    # -- parametrization and fixtures ---------------------------------------------------------

    def pytest_generate_tests(self, metafunc) -> None:
        if "case" not in metafunc.fixturenames:
            return
        ids = [case.id for case in self.cases]
        if len(set(ids)) != len(ids):  # runs and output folders are cached by id: a clash compares the wrong runs
            raise ValueError(f"{type(self).__name__}.cases: ids {ids} repeat; give cases that share a preset a name")
        first = {self.cases[0].id} if self.cases else set()
        full = os.environ.get(FULL_MATRIX_ENV) == "1" or metafunc.function.__name__ == "test_fp8_component"
        params = []
        for case in self.cases:
            marks = [] if full or case.id in first else [
                pytest.mark.skip(reason=f"runs with {FULL_MATRIX_ENV}=1 (nox -s matrix); CI runs it on the first preset")
            ]
            if metafunc.function.__name__ == "test_fp8_component":
                for component in self._components(case):
                    params.append(pytest.param(case, component, id=f"{case.id}-{component}", marks=marks))
            else:
                params.append(pytest.param(case, id=case.id, marks=marks))
        if metafunc.function.__name__ == "test_fp8_component":
            metafunc.parametrize(("case", "component"), params)
        else:
            metafunc.parametrize("case", params)

    def _components(self, case: MatrixCase) -> tuple[str, ...]:
        if case.components:
            return case.components
        return tuple(c.name for c in load_registry().get(self.family).components if not c.optional)

    @pytest.fixture(scope="class")
    @classmethod
    def workspace(cls, tmp_path_factory, registry, spec) -> MatrixWorkspace:
        return MatrixWorkspace(tmp_path_factory.mktemp(f"matrix-{cls.family}"), registry, spec, cls.lora_rank, cls.steps)

    # -- the cells ----------------------------------------------------------------------------

    def test_fp8_component(self, workspace, case, component, spec) -> None:
        """`--fp8_models` on a frozen component (the denoiser as LoRA base spelled by its model
        source, the others by name): the weights are stored in FP8 and training writes a LoRA."""
        import torch

        from diffsynth.training.precision import FP8

        entry = component
        if component == spec.denoiser:
            models = workspace.model_files(case)
            entry = models.components[component].source
        run = workspace.train(case, f"fp8-{component}", fp8_models=entry)
        module = run.trainer.pipeline.modules[component]
        stored = {p.dtype for n, p in module.named_parameters() if "lora_" not in n}
        assert FP8 in stored, f"{component} holds no FP8 weights: {stored}"
        assert all(torch.isfinite(torch.tensor(v)) for v in run.losses)
        assert workspace.lora_b_nonzero(run)

    def test_gradient_checkpointing(self, workspace, case) -> None:
        """Recomputing activations in backward gives the same LoRA as keeping them."""
        workspace.assert_same_lora(workspace.baseline(case), workspace.train(case, "ckpt", use_gradient_checkpointing=True))

    def test_gradient_checkpointing_offload(self, workspace, case) -> None:
        offload = workspace.train(case, "ckpt-offload", use_gradient_checkpointing_offload=True)
        workspace.assert_same_lora(workspace.baseline(case), offload)

    def test_bf16(self, workspace, case, spec) -> None:
        """`--dtype bf16`: frozen weights in bf16, a finite loss, a LoRA written."""
        import torch

        run = workspace.train(case, "bf16", dtype="bf16")
        dit = run.trainer.pipeline.modules[spec.denoiser]
        assert {p.dtype for n, p in dit.named_parameters() if "lora_" not in n} == {torch.bfloat16}
        assert all(torch.isfinite(torch.tensor(v)) for v in run.losses)
        assert workspace.lora_b_nonzero(run)

    def test_lora_checkpoint_round_trip(self, workspace, case) -> None:
        """`--lora_checkpoint` of our own output, after one step that changes nothing, is written back unchanged."""
        strong = workspace.strong(case)
        again = workspace.train(case, "lora-ckpt", lora_checkpoint=str(strong.files[0]), lora_rank=None, **FROZEN)
        original, written = strong.lora(), again.lora()
        assert written.keys() == original.keys()
        assert all(written[k].equal(original[k]) for k in original)

    def test_preset_lora_merge(self, workspace, case) -> None:
        """`--preset_lora_path` merged into the base gives the loss of the same LoRA applied
        unmerged (`--lora_checkpoint`), and not the loss without it."""
        lora = str(workspace.strong(case).files[0])
        merged = workspace.train(case, "merged", preset_lora_path=lora, **FROZEN).losses[0]
        applied = workspace.train(case, "applied", lora_checkpoint=lora, lora_rank=None, **FROZEN).losses[0]
        plain = workspace.train(case, "plain-frozen", **FROZEN).losses[0]
        assert abs(merged - applied) < 0.02 * abs(applied - plain), (merged, applied, plain)

    def test_second_trained_module(self, workspace, case, spec) -> None:
        """A component trained in full next to the LoRA: two files, the full one changed by training."""
        import torch

        second = case.second_trained or next(c for c in self._components(case) if c != spec.denoiser)
        run = workspace.train(case, "second", trainable_models=second, learning_rate=1e-3)
        assert len(run.files) == 2, run.files
        from safetensors.torch import load_file

        full = load_file(str(next(f for f in run.files if second in f.name)))
        module = run.trainer.pipeline.modules[second]
        assert set(full) == set(module.state_dict())
        initial = workspace.initial_state(case, second)
        assert any(not torch.equal(full[k], initial[k].to(full[k].dtype)) for k in full)

    def test_batch_of_two_equals_two_accumulated_samples(self, workspace, case) -> None:
        """`--batch_size 2` updates as `--gradient_accumulation_steps 2` does (float tolerance)."""
        batched = workspace.train(case, "batch2", batch_size=2)
        accumulated = workspace.train(case, "accumulate2", gradient_accumulation_steps=2)
        assert len(batched.losses) == len(accumulated.losses) == self.steps
        workspace.assert_same_lora(accumulated, batched)

    def test_blocks_to_swap_gives_the_same_lora(self, workspace, case, spec) -> None:
        """`--blocks_to_swap` (all blocks but one) trains as without, and the swapped blocks'
        frozen weights really live in host copies that come back for each forward. (Bit for bit
        on FLUX, Wan and the toy; Qwen-Image differs in the 6th digit: the copies are new
        allocations, and the CPU kernels' results can depend on a weight's memory alignment.)"""
        import torch

        checkpointed = workspace.cached(case, "ckpt-for-swap", use_gradient_checkpointing=True)
        blocks = sum(len(checkpointed.trainer.pipeline.denoiser_module.get_submodule(p)) for p in spec.repeated_blocks)
        swapped = workspace.train(case, "swap", use_gradient_checkpointing=True, blocks_to_swap=blocks - 1)
        workspace.assert_same_lora(checkpointed, swapped, exact=False)
        dit = swapped.trainer.pipeline.denoiser_module
        last = dit.get_submodule(spec.repeated_blocks[-1])[-1]
        frozen = [p for p in last.parameters() if not p.requires_grad]
        assert frozen and all(p.device.type == "cpu" for p in frozen)
        assert any(hook for hook in last._forward_pre_hooks.values())  # loaded before each run
        assert torch.isfinite(torch.tensor(swapped.losses)).all()

    def test_resume_is_bit_equal(self, workspace, case) -> None:
        """Stop after a checkpoint, resume: the LoRA equals the uninterrupted run's, bit for bit."""
        straight = workspace.train(case, "straight", max_steps=4)
        output = workspace.root / f"{case.id}-resumed"
        workspace.train(case, "resumed", output=output, max_steps=2, checkpointing_steps=2)
        resumed = workspace.train(case, "resumed", output=output, max_steps=4, checkpointing_steps=2,
                                  resume_from_checkpoint="latest")  # fmt: skip
        workspace.assert_same_lora(straight, resumed, exact=True)

    def test_offload_models_gives_the_same_lora(self, workspace, case, spec, monkeypatch) -> None:
        """`--offload_models` (every frozen encoder): the encoders' weights live in host copies,
        brought to the device for each step's encoding (on a CPU the device is the host, so the
        run's use of the mechanism is observed; tests/training/test_offload_models.py checks the
        copies themselves), and the LoRA equals the run without it."""
        from diffsynth.training.offload import OffloadedEncoders

        encoders = workspace.encoders(case)
        if not encoders:
            pytest.skip(f"{spec.name}'s {case.id} loads no encoder")
        entered: list[list[str]] = []
        on_device = OffloadedEncoders.on_device

        def observed(self):
            entered.append(sorted(self.names))
            return on_device(self)

        monkeypatch.setattr(OffloadedEncoders, "on_device", observed)
        offloaded = workspace.train(case, "offload-models", offload_models=",".join(encoders))
        assert len(entered) >= self.steps and all(names == sorted(encoders) for names in entered)
        workspace.assert_same_lora(workspace.baseline(case), offloaded, exact=True)

    def test_resolution_shift_counts_the_images_tokens(self, workspace, case, spec, monkeypatch) -> None:
        """`--timestep_sampling resolution_shift` reads the image's token count off the family's
        latents (a packed sequence or a patch grid, per frame for a video): it must be the trained
        image's patches at the family's resolution multiple (VAE factor x patch size)."""
        from diffsynth.training import timesteps
        from diffsynth.training.family_hooks import FamilyHooks

        sizes: list[tuple[int, int]] = []
        counted: list[tuple[int, int]] = []  # (tokens, latent frames)
        preprocess, image_seq_len = FamilyHooks.preprocess, timesteps.image_seq_len

        def recording_preprocess(self, pipeline, sample, context, with_grad=False):
            image = sample.fields.get("image") or sample.fields["video"][0]
            sizes.append(image.size)
            return preprocess(self, pipeline, sample, context, with_grad)

        def recording_count(latents):
            counted.append((image_seq_len(latents), latents.shape[2] if latents.dim() == 5 else 1))
            return counted[-1][0]

        monkeypatch.setattr(FamilyHooks, "preprocess", recording_preprocess)
        monkeypatch.setattr(timesteps, "image_seq_len", recording_count)
        workspace.train(case, "resolution-shift", timestep_sampling="resolution_shift")
        m = case.resolution_multiple or spec.resolution_multiple
        assert counted and len(set(sizes)) == 1, (sizes, counted)
        (width, height), = set(sizes)
        assert all(tokens == frames * (width // m) * (height // m) for tokens, frames in counted), (width, height, m, counted)

    def test_two_processes(self, workspace, case) -> None:
        """Two processes (DDP over gloo) on CPU train and write one LoRA, with the memory options
        that move weights on (checkpointing, one block swapped, every encoder offloaded)."""
        result, output = workspace.launch_two_processes(case, "ddp", **workspace.memory_options(case))
        assert result.returncode == 0, result.stderr[-3000:]
        assert "2 process(es)" in result.stdout
        from safetensors.torch import load_file

        lora = load_file(str(sorted(output.glob("epoch-*.safetensors"))[0]))
        assert any(k.endswith("lora_B.weight") and v.abs().sum() > 0 for k, v in lora.items())

    def test_two_processes_memory_options_change_nothing(self, workspace, case) -> None:
        """Under two-process DDP, the memory options give the LoRA of two processes without them."""
        from safetensors.torch import load_file

        if os.environ.get(FULL_MATRIX_ENV) != "1":
            pytest.skip(f"runs with {FULL_MATRIX_ENV}=1 (nox -s matrix): two more two-process runs")
        plain, plain_out = workspace.launch_two_processes(case, "ddp-plain", use_gradient_checkpointing=True)
        moved, moved_out = workspace.launch_two_processes(case, "ddp-moved", **workspace.memory_options(case))
        assert plain.returncode == 0 and moved.returncode == 0, (plain.stderr + moved.stderr)[-3000:]
        first, second = (load_file(str(sorted(o.glob("epoch-*.safetensors"))[0])) for o in (plain_out, moved_out))
        assert first.keys() == second.keys()
        import torch

        for key in first:
            torch.testing.assert_close(first[key], second[key], rtol=1e-5, atol=1e-7, msg=key)


class MatrixWorkspace:
    """Models, data and cached runs of one family's matrix."""

    def __init__(self, root: Path, registry: FamilyRegistry, spec: FamilySpec, lora_rank: int, steps: int) -> None:
        self.root, self.registry, self.spec = root, registry, spec
        self.lora_rank, self.steps = lora_rank, steps
        self._bases: dict[str, Path] = {}
        self._runs: dict[tuple[str, str], MatrixRun] = {}

    def config(self, case: MatrixCase, output: Path, **overrides: Any) -> TrainConfig:
        options = dict(case.options)
        if case.make_dataset is not None:
            folder = self.root / f"data-{case.id}"
            folder.mkdir(exist_ok=True)
            options.update(case.make_dataset(folder))
        options = {k: str(v) if isinstance(v, Path) else v for k, v in options.items()}
        fields = dict(family=self.spec.name, variant=case.variant, lora_base_model=self.spec.denoiser,
                      lora_rank=self.lora_rank, max_steps=self.steps, output_path=str(output), dtype="fp32", **options)  # fmt: skip
        fields.update(overrides)
        config = TrainConfig(**fields)
        config.family_options = self.spec.option_defaults()
        return config

    def model_base(self, case: MatrixCase) -> Path:
        if case.preset not in self._bases:
            base = self.root / f"models-{case.preset}"
            init_default_repos(self.registry, self.spec, self.config(case, self.root), base, case.preset)
            self._bases[case.preset] = base
        return self._bases[case.preset]

    def model_files(self, case: MatrixCase):
        from diffsynth.models.resolve import resolve_model_files
        from diffsynth.models.sources import DownloadSettings

        return resolve_model_files(self.spec, self.config(case, self.root), DownloadSettings.offline(self.model_base(case)))

    def initial_state(self, case: MatrixCase, component: str) -> dict[str, Any]:
        """The component's weights as loaded, before any training."""
        from diffsynth.training.family_hooks import FamilyHooks
        from diffsynth.types import RunContext

        context = RunContext.for_run(self.config(case, self.root), self.spec.options_value())
        pipeline = FamilyHooks(self.registry, self.spec).load_pipeline(self.model_files(case), context)
        return pipeline.modules[component].state_dict()

    def train(self, case: MatrixCase, name: str, output: Path | None = None, **overrides: Any) -> MatrixRun:
        """One run of the real trainer, in this process, offline."""
        from diffsynth.training.trainer import Trainer

        output = output or self.root / f"{case.id}-{name}"
        config = self.config(case, output, **overrides)
        saved = {k: os.environ.get(k) for k in (MODEL_BASE_ENV, SKIP_DOWNLOAD_ENV)}
        os.environ[MODEL_BASE_ENV], os.environ[SKIP_DOWNLOAD_ENV] = str(self.model_base(case)), "True"
        try:
            trainer = Trainer(self.registry, config)
            result = trainer.run()
        finally:
            for key, value in saved.items():
                os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
        return MatrixRun(trainer, output, list(result.files), list(result.losses))

    def cached(self, case: MatrixCase, name: str, **overrides: Any) -> MatrixRun:
        if (case.id, name) not in self._runs:
            self._runs[(case.id, name)] = self.train(case, name, **overrides)
        return self._runs[(case.id, name)]

    def baseline(self, case: MatrixCase) -> MatrixRun:
        return self.cached(case, "baseline")

    def strong(self, case: MatrixCase) -> MatrixRun:
        """A LoRA trained hard enough to change the loss visibly (a source for LoRA inputs)."""
        return self.cached(case, "strong", learning_rate=3e-2)

    @staticmethod
    def lora_b_nonzero(run: MatrixRun) -> bool:
        return any(k.endswith("lora_B.weight") and v.abs().sum() > 0 for k, v in run.lora().items())

    @staticmethod
    def assert_same_lora(a: MatrixRun, b: MatrixRun, exact: bool = False) -> None:
        import torch

        first, second = a.lora(), b.lora()
        assert first.keys() == second.keys()
        for key in first:
            if exact:
                assert torch.equal(first[key], second[key]), key
            else:
                torch.testing.assert_close(second[key], first[key], rtol=1e-4, atol=1e-6, msg=key)

    def encoders(self, case: MatrixCase) -> list[str]:
        """The case's loaded components other than the denoiser."""
        return [name for name in self.model_files(case).components if name != self.spec.denoiser]

    def memory_options(self, case: MatrixCase) -> dict[str, Any]:
        """Checkpointing, one block swapped (where the family declares blocks), every encoder offloaded."""
        options: dict[str, Any] = {"use_gradient_checkpointing": True}
        if self.spec.repeated_blocks:
            options["blocks_to_swap"] = 1
        if self.encoders(case):
            options["offload_models"] = ",".join(self.encoders(case))
        return options

    def launch_two_processes(self, case: MatrixCase, name: str = "ddp", **overrides: Any) -> tuple[subprocess.CompletedProcess, Path]:
        output = self.root / f"{case.id}-{name}"
        config = self.config(case, output, find_unused_parameters=True, **overrides)
        flags = []
        for key, value in config.to_dict().items():
            if key in ("family", "family_options") or value is None or value is False:
                continue
            flags += [f"--{key}"] if value is True else [f"--{key}", str(value)]
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "-m", "diffsynth", "train", self.spec.name, *flags]  # fmt: skip
        env = dict(os.environ, OMP_NUM_THREADS="1")
        env[MODEL_BASE_ENV], env[SKIP_DOWNLOAD_ENV] = str(self.model_base(case)), "True"
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900), output

