"""Building blocks of a family's test conftest: the tiny presets written once per session in the
real repos' layout under one model base path, and the random pictures its samples hold."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


def model_base_fixture(init_model: Callable[[str, Path, int], Any], presets: Mapping[str, str]) -> Any:
    """A session fixture `model_base`: a folder where `init_model(preset, <base>/<repo>, 0)` wrote
    each `repo: preset` of `presets` (the family's `plugin.init_model`, as `models init` runs it).
    In a conftest: `model_base = model_base_fixture(plugin.init_model, {REPO: "tiny", ...})`."""
    import pytest

    @pytest.fixture(scope="session")
    def model_base(tmp_path_factory) -> Path:
        base = tmp_path_factory.mktemp("models")
        for repo, preset in presets.items():
            init_model(preset, base / repo, 0)
        return base

    return model_base


def random_image(seed: int, width: int = 32, height: int = 32) -> Any:
    """A `width` x `height` RGB picture of uniform random pixels from `seed`."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
