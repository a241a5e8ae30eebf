"""The benchmark runner's quick mode runs end to end and every record carries its fields.
Benchmarks are not tests: nothing here asserts on a time or a size."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytest.importorskip("diffsynth_qwen_image")

FIELDS = {"name", "figure", "unit", "goal", "met", "machine"}
MACHINE = {"cpu", "cores", "torch", "device"}


def test_quick_benchmarks_write_complete_records(tmp_path):
    out = tmp_path / "quick.json"
    env = {k: v for k, v in os.environ.items() if k != "DIFFSYNTH_PLUGINS"}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--out", str(out)],
        check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["mode"] == "quick"
    names = [r["name"] for r in result["records"]]
    for group in ("overhead.", "startup.", "dataset.", "memory.", "load.", "gpu"):
        assert any(n.startswith(group) for n in names), f"no {group} record in {names}"
    for record in result["records"]:
        assert FIELDS <= record.keys(), record
        assert MACHINE <= record["machine"].keys(), record
        assert record["met"] in (True, False, None)
    assert "| benchmark | figure |" in proc.stdout
