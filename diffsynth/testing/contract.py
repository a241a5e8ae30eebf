"""The contract every family plugin must pass, as a pytest mixin.

    from diffsynth.testing.contract import FamilyContract

    class TestMyFamily(FamilyContract):
        family = "my-family"
        preset = "tiny"

        def lora_output_changes(self, model_dir, lora_file): ...  # optional: load in diffusers

It writes the preset with `models init` into every repo folder the family's default sources
name, loads it through the same code path as `diffsynth train`, and checks registration,
loading, preprocess -> finite scalar loss, LoRA gradients, and the exported file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from diffsynth.config import TrainConfig
from diffsynth.family import Family
from diffsynth.models.resolve import choose_variant, resolve_model_files
from diffsynth.models.sources import DownloadSettings, parse_origin_path, resolve_files
from diffsynth.plugins import FamilyRegistry, load_registry
from diffsynth.spec import FamilySpec
from diffsynth.types import FamilyPipeline, ModelFiles, RunContext, Sample


def contract_sample(extra_inputs: list[str], size: int = 64, prompt: str = "a red square") -> Sample:
    """A deterministic RGB sample (gradient image) with every extra input as an image too."""
    from PIL import Image

    def image(shift: int) -> Image.Image:
        img = Image.new("RGB", (size, size))
        img.putdata([((x * 4 + shift) % 256, (y * 4) % 256, 128) for y in range(size) for x in range(size)])
        return img

    fields = {"image": image(0), "prompt": prompt}
    for i, name in enumerate(extra_inputs):
        fields[name] = image(64 * (i + 1))
    return Sample(index=0, fields=fields)


def offline_files(base: Path, source: str) -> tuple[str, tuple[Path, ...]]:
    """(`source`, its files) for one `repo:glob` under the model base path `base`, resolved by the
    core's source rules with downloads disabled (a pattern matching nothing is a UserError)."""
    return source, resolve_files(parse_origin_path(source), DownloadSettings.offline(base))


def offline_model_files(
    family: FamilySpec, base: Path, variant: str | None = None, sources: tuple[str, ...] = ()
) -> ModelFiles:
    """The files `train` would use for `variant` (or the explicit `repo:glob` `sources`) under the
    model base path `base`, resolved by the core exactly as in a run, with downloads disabled."""
    config = TrainConfig(variant=variant, model_id_with_origin_paths=",".join(sources) or None)
    return resolve_model_files(family, config, DownloadSettings.offline(base))


def init_default_repos(registry: FamilyRegistry, spec: FamilySpec, config: TrainConfig, base: Path, preset: str) -> None:
    """`models init` the preset into each repo the chosen variant's default sources use."""
    variant = choose_variant(spec, config)
    specs = list(variant.model_sources) + [s for s in (variant.tokenizer_source, variant.processor_source) if s]
    for repo in sorted({s.rpartition(":")[0] for s in specs}):
        registry.hook.init_model(family=spec.name, preset=preset, directory=base / repo, seed=0)


class FamilyFixtures:
    """The registry and the spec of `family`, once per test class (the contract and the option
    matrix both start from them)."""

    family: str = ""

    @pytest.fixture(scope="class")
    @classmethod
    def registry(cls) -> FamilyRegistry:
        return load_registry()

    @pytest.fixture(scope="class")
    @classmethod
    def spec(cls, registry: FamilyRegistry) -> FamilySpec:
        return registry.get(cls.family)


class FamilyContract(FamilyFixtures):
    """Subclass in a plugin's tests; set `family`, `preset` and optionally `extra_inputs`."""

    preset: str = "tiny"
    extra_inputs: tuple[str, ...] = ()
    lora_rank: int = 4
    #: Regexes of LoRA parameters that get no gradient by design (e.g. the text stream of an
    #: MMDiT's last block, whose output is discarded). Everything else must get a gradient.
    lora_params_without_gradient: tuple[str, ...] = ()

    # -- fixtures -----------------------------------------------------------------------------

    @pytest.fixture(scope="class")
    @classmethod
    def hooks(cls, registry, spec):
        from diffsynth.training.family_hooks import FamilyHooks

        return FamilyHooks(registry, spec)

    @pytest.fixture(scope="class")
    @classmethod
    def config(cls, spec: FamilySpec) -> TrainConfig:
        cfg = TrainConfig(family=spec.name, dtype="fp32", lora_base_model=spec.denoiser, lora_rank=cls.lora_rank)
        cfg.extra_inputs = ",".join(cls.extra_inputs) or None
        cfg.family_options = spec.option_defaults()
        return cfg

    @pytest.fixture(scope="class")
    @classmethod
    def context(cls, spec: FamilySpec, config: TrainConfig) -> RunContext:
        return RunContext.for_run(config, spec.options_value())

    @pytest.fixture(scope="class")
    @classmethod
    def model_base(cls, tmp_path_factory, registry, spec, config) -> Path:
        base = tmp_path_factory.mktemp(f"{cls.family}-{cls.preset}")
        init_default_repos(registry, spec, config, base, cls.preset)
        return base

    @pytest.fixture
    def pipeline(self, model_base, spec, hooks, config, context) -> FamilyPipeline:
        import torch

        torch.manual_seed(0)
        settings = DownloadSettings.offline(model_base)
        return hooks.load_pipeline(resolve_model_files(spec, config, settings), context)

    # -- the contract -------------------------------------------------------------------------

    def test_registers_with_presets_and_sources(self, registry: FamilyRegistry, spec: FamilySpec) -> None:
        # the class behind the registration loads and passes the Family check (a LazyFamily
        # imports it here; a plain Family is its own class)
        (family,) = [p for p in registry.pm.get_plugins() if isinstance(p, Family) and p.spec is spec]
        assert isinstance(family._impl(), Family)
        assert spec.components and spec.variants and spec.default_lora_targets
        assert self.preset in [p.name for p in spec.presets]
        component_names = {c.name for c in spec.components}
        assert spec.denoiser in component_names
        for name in self.extra_inputs:
            assert name in [e.name for e in spec.extra_inputs]

    def test_loads_every_component(self, pipeline: FamilyPipeline, spec: FamilySpec) -> None:
        assert set(c.name for c in spec.components if not c.optional) <= set(pipeline.modules)
        assert set(pipeline.modules) <= set(c.name for c in spec.components)
        for module in pipeline.modules.values():
            assert not any(p.is_meta for p in module.parameters())

    def test_loss_is_finite_scalar(self, pipeline, hooks, context) -> None:
        import torch

        inputs = hooks.preprocess(pipeline, contract_sample(list(self.extra_inputs)), context)
        assert torch.isfinite(inputs.latents).all()
        loss = hooks.loss(pipeline, inputs, context)
        assert loss.dim() == 0 and torch.isfinite(loss)

    def test_lora_gets_gradients_and_base_does_not(self, pipeline, hooks, config, context, spec) -> None:
        from diffsynth.training.trainable import apply_plan, plan_training

        plan = plan_training(spec, config, pipeline)
        params = apply_plan(plan, pipeline, config)
        assert params and all(p.requires_grad for p in params)
        # lora_B starts at zero, so perturb it for lora_A to receive gradient as well
        for name, p in pipeline.denoiser_module.named_parameters():
            if "lora_B" in name:
                p.data.normal_(0, 0.01)
        inputs = hooks.preprocess(pipeline, contract_sample(list(self.extra_inputs)), context)
        hooks.loss(pipeline, inputs, context).backward()
        named = dict(pipeline.denoiser_module.named_parameters())
        lora = {n: p for n, p in named.items() if "lora_" in n}
        base = {n: p for n, p in named.items() if "lora_" not in n}
        import re

        missing = [n for n, p in lora.items() if p.grad is None or p.grad.abs().sum() == 0]
        unexpected = [n for n in missing if not any(re.search(pat, n) for pat in self.lora_params_without_gradient)]
        assert lora and len(missing) < len(lora) / 2 and not unexpected, unexpected
        assert all(p.grad is None for p in base.values())

    def test_exported_lora_loads_and_changes_output(self, pipeline, hooks, config, context, spec, model_base, tmp_path) -> None:
        from diffsynth.training.outputs import RunOutputs
        from diffsynth.training.trainable import (
            apply_plan,
            plan_training,
            trained_weights,
        )

        plan = plan_training(spec, config, pipeline)
        apply_plan(plan, pipeline, config)
        for name, p in pipeline.denoiser_module.named_parameters():
            if "lora_B" in name:
                p.data.normal_(0, 0.05)
        states = {n: pipeline.modules[n].state_dict() for n in plan.components}
        files = RunOutputs(tmp_path).write_weights("lora", hooks.split(trained_weights(plan, states, config), context))
        assert len(files) == 1 and files[0].stat().st_size > 0
        self.check_exported_lora(model_base, files[0], pipeline, hooks, config)

    def check_exported_lora(self, model_base: Path, lora_file: Path, pipeline, hooks, config) -> None:
        """Load `lora_file` with diffusers' own `load_lora_weights` into the family's diffusers
        pipeline (`diffusers_pipeline`) and check that it changes the denoiser's output to exactly
        ours. Without a declared pipeline, only that it is a LoRA file."""
        import torch

        pipe = self.diffusers_pipeline(model_base, hooks, config)
        if pipe is None:
            from safetensors import safe_open

            with safe_open(str(lora_file), "pt") as fh:
                assert any("lora" in k for k in fh.keys())
            return
        kwargs = self.dit_inputs(pipe.transformer)
        with torch.no_grad():
            base_out = pipe.transformer(**kwargs)[0]
            ours = pipeline.denoiser_module(**kwargs)[0]
        pipe.load_lora_weights(str(lora_file))
        with torch.no_grad():
            loaded = pipe.transformer(**kwargs)[0]
        assert not torch.allclose(loaded, base_out, atol=1e-4), "the LoRA changed nothing"
        torch.testing.assert_close(loaded, ours, atol=1e-5, rtol=1e-4)

    # -- what a family declares for the diffusers check (diffusers' tester-config style) -------

    def diffusers_pipeline(self, model_base: Path, hooks, config):
        """The family's diffusers pipeline with the preset's denoiser as `transformer` (the other
        components may be None), or None to skip the diffusers check."""
        return None

    def dit_inputs(self, transformer) -> dict:
        """Keyword arguments of one small, deterministic `transformer(...)` call."""
        raise NotImplementedError
