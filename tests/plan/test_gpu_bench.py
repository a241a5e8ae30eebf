"""benchmarks/gpu/bench.py's CPU side: plan's simulation of the bench's own training step equals
the same step run on real tensors (CPU, the tracker on real storages), for each bench mode."""

import pytest
import torch

from benchmarks.gpu.bench import TINY, model_inputs, predict_in_child, prepare, train_step
from diffsynth.plan.tracker import LiveMemory


@pytest.mark.parametrize("mode", ["plain", "fp8", "fp8+ckpt"])
def test_simulated_bench_step_equals_the_real_step_on_cpu(mode):
    from diffusers import QwenImageTransformer2DModel

    predicted = predict_in_child("qwen-image", mode, tiny=True)["peak_gb"] * 1e9
    torch.manual_seed(0)
    dit = QwenImageTransformer2DModel(**TINY[1]).to(torch.bfloat16).requires_grad_(False)
    params = prepare(dit, "qwen-image", mode)
    optimizer = torch.optim.AdamW(params, lr=1e-4, foreach=True)
    inputs = model_inputs("qwen-image", device="cpu", tiny=True)
    tables = [v for sub in dit.modules() for v in vars(sub).values() if isinstance(v, torch.Tensor)]  # rotary tables
    with LiveMemory() as memory:
        for t in [*dit.parameters(), *dit.buffers(), *tables, *(v for v in inputs.values() if isinstance(v, torch.Tensor))]:
            memory.add(t)
        train_step(dit, inputs, optimizer)  # AdamW's state exists from here on, as simulated
        memory.peak = memory.now
        train_step(dit, inputs, optimizer)
    assert memory.peak > sum(p.numel() * p.element_size() for p in dit.parameters())
    # equal to the byte without checkpointing; with it the real step holds 64 KiB more (0.2 %)
    assert predicted == pytest.approx(memory.peak, rel=1e-9 if mode != "fp8+ckpt" else 0.005)
