"""--blocks_to_swap on the toy family: the LoRA equals the unswapped run's bit for bit, the
weights come back for every run of a swapped block, and bad uses are one line."""

import pytest
import torch
from safetensors.torch import load_file

from diffsynth.config import TrainConfig
from diffsynth.errors import UserError
from diffsynth.plugins import load_registry
from diffsynth.training.block_swap import swap_blocks
from diffsynth.training.trainer import Trainer
from tests.conftest import EXAMPLE_DATA


@pytest.fixture
def offline(toy_models, monkeypatch):
    monkeypatch.setenv("DIFFSYNTH_MODEL_BASE_PATH", str(toy_models))
    monkeypatch.setenv("DIFFSYNTH_SKIP_DOWNLOAD", "True")


def config(out, **extra) -> TrainConfig:
    flags = dict(family="toy", dataset_base_path=str(EXAMPLE_DATA), lora_base_model="dit", lora_rank=4,
                 learning_rate=1e-2, output_path=str(out), use_gradient_checkpointing=True)
    return TrainConfig(**{**flags, **extra})


def test_swapped_run_equals_the_plain_one_bit_for_bit(offline, tmp_path):
    plain = Trainer(load_registry(), config(tmp_path / "plain")).run()
    swapped = Trainer(load_registry(), config(tmp_path / "swap", blocks_to_swap=1)).run()
    assert swapped.losses == plain.losses
    a, b = load_file(str(plain.files[0])), load_file(str(swapped.files[0]))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_each_run_of_a_swapped_block_gets_a_fresh_copy_and_drops_it(offline):
    from torch import nn

    block = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    model = nn.Module()
    model.blocks = nn.ModuleList([nn.Linear(4, 4), block])
    model.requires_grad_(False)
    swap = swap_blocks(model, ("blocks",), 1, torch.device("cpu"), "test")
    host = {id(p): h for p, h in swap.host[block]}
    seen = []
    block[0].register_forward_hook(lambda m, i, o: seen.append(m.weight.data_ptr()))
    x = torch.randn(2, 4)
    first, second = model.blocks[1](x), model.blocks[1](x)
    assert torch.equal(first, second)
    assert len(seen) == 2 and seen[0] != host[id(block[0].weight)].data_ptr()  # ran on a copy
    assert all(p.data_ptr() == host[id(p)].data_ptr() for p in block.parameters())  # and dropped it


@pytest.mark.parametrize("flags, message", [
    ({"blocks_to_swap": 2}, r"--blocks_to_swap 2: expected 1 to 1 \(toy's denoiser has 2 blocks\)"),
    ({"blocks_to_swap": 1, "use_gradient_checkpointing": False}, "--blocks_to_swap needs --use_gradient_checkpointing"),
    ({"blocks_to_swap": -1}, "--blocks_to_swap: expected 0 or more"),
])
def test_bad_swaps_are_one_line(offline, tmp_path, flags, message):
    with pytest.raises(UserError, match=message):
        Trainer(load_registry(), config(tmp_path / "x", **flags)).run()


def test_prefetch_follows_forward_then_backward_and_changes_no_gradient():
    """With checkpointed blocks, the block after the running one (ascending in forward, descending
    in backward's recomputation) is fetched ahead: only the turn (the last block, run twice in a
    row) is copied on demand, and the input gradient equals the unswapped model's bit for bit."""
    from torch import nn
    from torch.utils.checkpoint import checkpoint

    torch.manual_seed(0)
    model = nn.Module()
    model.blocks = nn.ModuleList([nn.Linear(8, 8) for _ in range(4)])
    model.requires_grad_(False)

    def input_grad() -> torch.Tensor:
        x = torch.randn(3, 8, generator=torch.Generator().manual_seed(1), requires_grad=True)
        h = x
        for block in model.blocks:
            h = checkpoint(block, h, use_reentrant=False)
        h.square().sum().backward()
        return x.grad

    plain = input_grad()
    swap = swap_blocks(model, ("blocks",), 3, torch.device("cpu"), "test")
    for step in range(2):
        assert torch.equal(input_grad(), plain)
        assert (swap.copies, swap.used_ahead) == (6 * (step + 1), 5 * (step + 1))  # 3 forward + 3 recomputed runs
        # backward's recomputation stops early (no forward hook): the weights still went back to the host
        assert not swap.loaded and all(p.data_ptr() == h.data_ptr() for w in swap.host.values() for p, h in w)
    swap.restore()
    assert not swap.host and torch.equal(input_grad(), plain)
