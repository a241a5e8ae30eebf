"""benchmarks/gpu/bench.py --swap on the CPU: the sweep's own code (build once, swap N, step,
restore) on the small DiT, so the one-command GPU run is exercised here: every block runs on
weights fetched ahead except the turn between forward and backward, and none without prefetch."""

from benchmarks.gpu.bench import swap_sweep_in_child


def test_swap_sweep_runs_each_case_and_restores_between_them(tmp_path):
    out = tmp_path / "swap.jsonl"
    cases = swap_sweep_in_child("qwen-image", [[0, True], [3, True], [3, False]], steps=1, warmup=1, out=str(out), device="cpu")["cases"]
    assert [(c["blocks_to_swap"], c["prefetch"], c["oom"]) for c in cases] == [(0, True, False), (3, True, False), (3, False, False)]
    prefetched, sync = cases[1], cases[2]
    assert prefetched["copies_per_step"] == sync["copies_per_step"] == 6  # 3 swapped blocks, forward + recomputation
    assert prefetched["fetched_ahead"] == round(5 / 6, 3) and sync["fetched_ahead"] == 0
    assert prefetched["pinned_gb"] > 0 and cases[0]["pinned_gb"] == 0
    assert out.read_text().count("\n") == 3
