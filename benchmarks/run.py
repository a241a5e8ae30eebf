"""Run the benchmark groups, write the records as JSON and print a markdown table.

    python -m benchmarks.run [--quick] [--only overhead,startup,...] [--out PATH]

Full mode writes benchmarks/results/latest.json (committed); --quick is a smoke run with tiny
sizes whose numbers are not the figures (it writes into a temporary folder unless --out).
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import Context, Record, cpu_model, machine_info

GROUPS = ("overhead", "startup", "dataset", "memory", "load", "plan_accuracy", "gpu")
LATEST = Path(__file__).parent / "results" / "latest.json"


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(int(value))


def table(records: list[dict]) -> str:
    mark = {True: "yes", False: "**MISSED**", None: "-"}
    lines = ["| benchmark | figure | unit | goal | met |", "|---|---|---|---|---|"]
    for r in records:
        lines.append(f"| {r['name']} | {fmt(r['figure'])} | {r['unit']} | {r['goal'] or '-'} | {mark[r['met']]} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round: a smoke run")
    parser.add_argument("--only", default=",".join(GROUPS), help="comma-separated groups")
    parser.add_argument("--out", type=Path, help="JSON output (default: results/latest.json; --quick: a temp file)")
    args = parser.parse_args(argv)
    groups = [g for g in args.only.split(",") if g]
    unknown = set(groups) - set(GROUPS)
    if unknown:
        parser.error(f"unknown groups {sorted(unknown)}; choose from {', '.join(GROUPS)}")

    os.environ["DIFFSYNTH_SKIP_DOWNLOAD"] = "True"  # offline: model files are written locally
    os.environ.pop("DIFFSYNTH_PLUGINS", None)
    workdir = Path(tempfile.mkdtemp(prefix="diffsynth-bench-"))
    ctx = Context(quick=args.quick, workdir=workdir)
    machine = machine_info()
    records: list[Record] = []
    started = time.perf_counter()
    try:
        for group in groups:
            t = time.perf_counter()
            module = importlib.import_module(f"benchmarks.{group}" if group != "gpu" else "benchmarks.gpu.bench")
            got = module.run(ctx)
            for r in got:
                r.machine = machine
                if args.quick:
                    r.met = None  # quick sizes are a smoke run, not the figures the goals are for
            records += got
            print(f"[{group}] {len(got)} records in {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    out = args.out or (workdir.with_name(workdir.name + ".json") if args.quick else LATEST)
    result = {
        "date": datetime.date.today().isoformat(),
        "mode": "quick" if args.quick else "full",
        "seconds": round(time.perf_counter() - started, 1),
        "machine": machine,
        "records": [r.to_dict() for r in records],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{result['mode']} run, {result['date']}, {cpu_model()} ({machine['cores']} cores), torch {machine['torch']}, "
          f"device {machine['device']}, {result['seconds']} s -> {out}\n")  # fmt: skip
    print(table(result["records"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
