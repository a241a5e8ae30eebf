"""Docs a newcomer follows verbatim work verbatim: every shell block marked `<!-- runnable -->`
in README.md and docs/ runs as written, offline, in a fresh folder holding the repo's examples.

Each block is its own `bash` process in its own folder, so the blocks of the selected tests run
two at a time (CI's two cores; each block's commands use one thread), and each test waits for
its own block's result."""

import os
import re
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"<!-- runnable -->\n```bash\n(.*?)```", re.S)
AT_ONCE = 2


def runnable_blocks() -> list[tuple[str, str]]:
    """(page name, block) for every block marked runnable."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return [(page.name, block) for page in pages for block in BLOCK.findall(page.read_text())]


def test_the_quickstart_and_every_family_page_have_a_runnable_block():
    assert {"quickstart.md", "qwen-image.md", "flux.md", "wan.md"} <= {page for page, _ in runnable_blocks()}


def run_block(block: str, folder: Path) -> subprocess.CompletedProcess:
    """`block` as written, by bash in `folder` (which holds examples/), with the venv's `diffsynth`."""
    (folder / "examples").symlink_to(ROOT / "examples")
    env = {k: v for k, v in os.environ.items() if k not in ("DIFFSYNTH_PLUGINS", "DIFFSYNTH_MODEL_BASE_PATH")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # the venv's `diffsynth`
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def block_runs(request, tmp_path_factory):
    """block -> its run, started for every selected test_runnable_block as the module begins."""
    selected = [item.callspec.params["block"] for item in request.session.items
                if item.module is sys.modules[__name__] and item.originalname == "test_runnable_block"]
    with ThreadPoolExecutor(max_workers=AT_ONCE) as pool:
        runs: dict[str, Future] = {block: pool.submit(run_block, block, tmp_path_factory.mktemp("block"))
                                   for block in selected}
        yield runs
        for run in runs.values():
            run.cancel()


@pytest.mark.slow
@pytest.mark.parametrize("page, block", runnable_blocks(), ids=[f"{p}-{i}" for i, (p, _) in enumerate(runnable_blocks())])
def test_runnable_block(page, block, block_runs):
    result = block_runs[block].result()
    assert result.returncode == 0, result.stderr[-3000:]
