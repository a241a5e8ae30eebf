"""FP8 storage without gradient checkpointing: diffusers' layer-wise casting upcasts a layer's
weight for its forward and stores it back in FP8 after, but `F.linear` saves the upcast weight
(as its transpose, a view of the upcast storage) for the input's gradient, so every layer's
upcast copy lives until backward reaches it. Checked on real tensors (autograd's saved tensors
and the live-storage tracker) and the simulation must agree."""

import torch

from diffsynth.plan.fake import fake_mode, make_fake
from diffsynth.plan.tracker import LiveMemory
from diffsynth.training.precision import store_in_fp8

WIDTH, ROWS, LAYERS = 256, 8, 3
BF16, FP8 = 2, 1


def fp8_stack(device: str) -> torch.nn.Module:
    model = torch.nn.Sequential(*[torch.nn.Linear(WIDTH, WIDTH, bias=False, device=device, dtype=torch.bfloat16) for _ in range(LAYERS)])
    model.requires_grad_(False)
    store_in_fp8(model, torch.bfloat16)  # the trainer's --fp8_models code
    return model


def live_after_forward(model: torch.nn.Module, memory: LiveMemory) -> int:
    """Bytes live after forward, above the weights and the input (real or fake tensors)."""
    for p in model.parameters():
        memory.add(p)
    x = torch.ones(ROWS, WIDTH, dtype=torch.bfloat16, requires_grad=True)  # LoRA upstream: activations need grad
    memory.add(x)
    before = memory.now
    y = model(x)
    after = memory.now - before
    y.float().sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
    return after


def test_autograd_keeps_the_upcast_weights_of_a_real_fp8_stack():
    model = fp8_stack("cpu")
    assert all(p.dtype == torch.float8_e4m3fn for p in model.parameters())
    saved: list[torch.Tensor] = []
    x = torch.ones(ROWS, WIDTH, dtype=torch.bfloat16, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = model(x)
    upcast = {t.untyped_storage().data_ptr() for t in saved if t.dtype == torch.bfloat16 and t.numel() == WIDTH * WIDTH}
    assert len(upcast) == LAYERS  # one bf16 copy per layer, held by the graph
    assert all(p.dtype == torch.float8_e4m3fn for p in model.parameters())  # stored back in FP8 after forward
    y.float().sum().backward()


def test_real_and_simulated_fp8_forward_hold_the_same_bytes_by_hand():
    with LiveMemory() as memory:
        real = live_after_forward(fp8_stack("cpu"), memory)
    model = fp8_stack("meta")
    with fake_mode(), LiveMemory() as memory:
        make_fake(model, torch.device("cpu"))
        simulated = live_after_forward(model, memory)
    outputs = ROWS * WIDTH * BF16  # y: a frozen layer saves no input, so the other outputs are freed
    upcast_weights = LAYERS * WIDTH * WIDTH * BF16
    assert real == outputs + upcast_weights
    assert simulated == real
