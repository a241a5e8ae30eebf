"""Docs a newcomer follows verbatim work verbatim: every shell block marked `<!-- runnable -->`
in README.md and docs/ runs as written, offline, in a fresh folder holding the repo's examples."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"<!-- runnable -->\n```bash\n(.*?)```", re.S)


def runnable_blocks() -> list[tuple[str, str]]:
    """(page name, block) for every block marked runnable."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return [(page.name, block) for page in pages for block in BLOCK.findall(page.read_text())]


def test_the_quickstart_and_every_family_page_have_a_runnable_block():
    assert {"quickstart.md", "qwen-image.md", "flux.md", "wan.md", "flux2.md", "z-image.md"} <= {page for page, _ in runnable_blocks()}


@pytest.mark.slow
@pytest.mark.parametrize("page, block", runnable_blocks(), ids=[f"{p}-{i}" for i, (p, _) in enumerate(runnable_blocks())])
def test_runnable_block(page, block, tmp_path):
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    env = {k: v for k, v in os.environ.items() if k not in ("DIFFSYNTH_PLUGINS", "DIFFSYNTH_MODEL_BASE_PATH")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # the venv's `diffsynth`
    env["OMP_NUM_THREADS"] = "1"
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
