"""`models init`: the real repos' layout, loadable by diffusers, identified by our detectors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import resolve
from diffsynth_qwen_image import FAMILY, plugin
from diffsynth_qwen_image.configs import infer_dit_config

from diffsynth.errors import UserError
from diffsynth.models.checkpoints import identify


def test_entry_module_is_light():
    code = "import sys, diffsynth_qwen_image; print(sorted(m for m in ('torch','diffusers','transformers','peft') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_real_layout(tiny_dir, tiny_edit_dir):
    index = json.loads((tiny_dir / "model_index.json").read_text())
    assert index["_class_name"] == "QwenImagePipeline"
    assert json.loads((tiny_edit_dir / "model_index.json").read_text())["_class_name"] == "QwenImageEditPipeline"
    for sub in ("transformer", "text_encoder", "vae", "tokenizer", "scheduler"):
        assert sub in index or sub == "scheduler"
    assert (tiny_dir / "transformer" / "diffusion_pytorch_model.safetensors.index.json").is_file()
    assert (tiny_dir / "text_encoder" / "model.safetensors.index.json").is_file()
    assert len(list((tiny_dir / "transformer").glob("diffusion_pytorch_model-*-of-*.safetensors"))) > 1
    scheduler = json.loads((tiny_dir / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["time_shift_type"] == "exponential" and scheduler["shift_terminal"] == 0.02
    assert (tiny_edit_dir / "processor" / "preprocessor_config.json").is_file()
    assert not (tiny_dir / "processor").exists()
    size = sum(p.stat().st_size for p in tiny_dir.rglob("*") if p.is_file())
    assert size < 8 * 2**20  # a few MB (the base_dim-8 VAE is 3.6 MB of it)


def test_seed_patterns_match(model_base):
    for variant in FAMILY.variants:
        for source in variant.model_sources:
            _, files = resolve(model_base, source)
            assert files, source
        for folder in (variant.tokenizer_source, variant.processor_source):
            if folder:
                repo, sub = folder.rsplit(":", 1)
                assert (model_base / repo / sub).is_dir()


def test_detectors(model_base):
    assert [v.name for v in FAMILY.variants] == ["qwen-image", "edit", "2512", "edit-2509", "edit-2511"]
    for spec in FAMILY.variants:
        found = [identify(FAMILY, *resolve(model_base, s)).component for s in spec.model_sources]
        assert found == ["dit", "text_encoder", "vae"], spec.name


def test_diffusers_loads_folders(tiny_dir, tiny_edit_dir):
    from diffsynth_qwen_image.processor import ImageTextProcessor
    from diffusers import QwenImageEditPipeline, QwenImagePipeline

    pipe = QwenImagePipeline.from_pretrained(tiny_dir)
    assert pipe.transformer.config.num_layers == 2
    # Qwen2VLProcessor needs torchvision (its video processor): hand diffusers our image-only one.
    edit = QwenImageEditPipeline.from_pretrained(tiny_edit_dir, processor=ImageTextProcessor.load(tiny_edit_dir / "processor"))
    assert edit.processor.tokenizer.convert_tokens_to_ids("<|image_pad|>") == edit.text_encoder.config.image_token_id


def test_inferred_dit_config_equals_config_json(model_base, tiny_dir):
    from diffsynth.plugin import init_args
    from diffusers import QwenImageTransformer2DModel

    group = identify(FAMILY, *resolve(model_base, FAMILY.variant(None).model_sources[0]))
    written = init_args(QwenImageTransformer2DModel, json.loads((tiny_dir / "transformer" / "config.json").read_text()))
    inferred = infer_dit_config(group.header)
    assert {k: (list(v) if isinstance(v, tuple) else v) for k, v in inferred.items()} == written


def test_init_is_deterministic_and_checks_preset(tmp_path):
    plugin.init_model("tiny", tmp_path / "a", 3)
    plugin.init_model("tiny", tmp_path / "b", 3)
    for f in (tmp_path / "a").rglob("*.safetensors"):
        assert f.read_bytes() == (tmp_path / "b" / f.relative_to(tmp_path / "a")).read_bytes()
    with pytest.raises(UserError, match="tiny-edit"):
        plugin.init_model("huge", tmp_path / "c", 0)
    assert plugin._init_model_hook(family="flux", preset="tiny", directory=tmp_path / "d", seed=0) is None
