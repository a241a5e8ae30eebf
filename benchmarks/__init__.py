"""diffsynth's benchmark suite: `python -m benchmarks.run [--quick]` (or `nox -s bench`).

One module per group of figures; each returns `Record`s. See docs/benchmarks.md.
"""
