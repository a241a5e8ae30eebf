"""The live-storage tracker on a model whose memory is known by hand."""

import torch

from diffsynth.plan.fake import fake_mode, make_fake
from diffsynth.plan.tracker import LiveMemory

WIDTH, ROWS, LAYERS = 256, 64, 3
F32 = 4


def test_linear_stack_weights_grads_adam_and_activations_by_hand():
    model = torch.nn.Sequential(*[torch.nn.Linear(WIDTH, WIDTH, bias=False, device="meta") for _ in range(LAYERS)])
    with fake_mode(), LiveMemory() as memory:
        make_fake(model, torch.device("cpu"))
        params = list(model.parameters())
        for p in params:
            memory.add(p)
        weights = LAYERS * WIDTH * WIDTH * F32
        assert memory.now == weights
        optimizer = torch.optim.AdamW(params, foreach=False)
        x = torch.empty(ROWS, WIDTH)
        memory.add(x)
        loss = model(x).sum()
        # forward peak: weights, the input, each layer's output (the last lives until sum is
        # done) and the 4-byte loss
        activations = LAYERS * ROWS * WIDTH * F32
        assert memory.peak == weights + ROWS * WIDTH * F32 + activations + F32
        # after forward the last output is gone: the first two are saved for backward
        assert memory.now == weights + ROWS * WIDTH * F32 + (LAYERS - 1) * ROWS * WIDTH * F32 + F32
        loss.backward()
        optimizer.step()
        grads = weights
        adam = 2 * weights + LAYERS * F32  # exp_avg, exp_avg_sq and a 0-dim fp32 step per parameter (CPU step)
        held = weights + grads + adam
        del loss
    assert memory.now >= held
    # after the step, weights + grads + Adam state + the input are live
    assert memory.now == held + ROWS * WIDTH * F32
