"""Figure 5: load a ~1 GB sharded DiT checkpoint (random weights in the real repo's
transformer/ layout) through `load_state_dict` + `build_module`, in a fresh process: seconds,
and peak RSS over the process's RSS before loading, against the size of the files. The files
were just written, so they come from the page cache (warm disk)."""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks.common import MB, Context, PeakRss, Record, at_most, in_subprocess, touch
from benchmarks.models import WEIGHTS_DIT, WEIGHTS_DIT_QUICK, write_dit_checkpoint

GOAL = 1.2


def load_in_child(files: list[str], config: dict) -> dict:
    from benchmarks.models import dit_class
    from diffsynth.models.checkpoints import build_module, load_state_dict

    cls = dit_class()
    with PeakRss() as peak:
        t = time.perf_counter()
        module = build_module(lambda: cls(**config), load_state_dict([Path(f) for f in files]))
        touch(module)
        seconds = time.perf_counter() - t
    return {"seconds": seconds, "peak": peak.peak, "peak_anon": peak.peak_anon, "params": sum(p.numel() for p in module.parameters())}


def run(ctx: Context) -> list[Record]:
    config = WEIGHTS_DIT_QUICK if ctx.quick else WEIGHTS_DIT
    files = ctx.once("weights_checkpoint", lambda: write_dit_checkpoint(ctx.workdir / "medium" / "transformer", config))
    size = sum(f.stat().st_size for f in files)
    got = in_subprocess("benchmarks.load:load_in_child", files=[str(f) for f in files], config=config)
    info = {"file_mb": round(size / MB, 1), "shards": len(files), "params": got["params"], "peak_rss_mb": round(got["peak"] / MB, 1)}
    ratio = got["peak"] / size
    return [
        Record("load.seconds", round(got["seconds"], 3), "s", details=info),
        Record("load.peak_rss_x_file", round(ratio, 3), "x file size", f"<= {GOAL}", at_most(ratio, GOAL) if not ctx.quick else None, info),
        Record("load.peak_anon_rss_x_file", round(got["peak_anon"] / size, 3), "x file size",
               details={"note": "anonymous memory only: RSS minus the mapped safetensors pages"}),
    ]  # fmt: skip
