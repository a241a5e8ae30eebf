"""`--offload_models` in a run that encodes as it trains: the denoiser, a trained component or an
unknown entry is refused in one line (the LoRA equality is the option matrix's
`test_offload_models_gives_the_same_lora`, on every family's encoders)."""

import pytest

from diffsynth.config import TrainConfig
from diffsynth.errors import UserError
from diffsynth.plugins import load_registry
from diffsynth.training.trainer import Trainer
from tests.conftest import EXAMPLE_DATA


@pytest.mark.parametrize("entry, message", [
    ("dit", r"--offload_models: 'dit' is the denoiser, which runs every step; use --blocks_to_swap N"),
    ("text_encoder", r"--offload_models: 'text_encoder' is neither a component \(dit\) nor one of the model sources"),
])
def test_bad_offload_is_one_line(toy_models, monkeypatch, tmp_path, entry, message):
    monkeypatch.setenv("DIFFSYNTH_MODEL_BASE_PATH", str(toy_models))
    monkeypatch.setenv("DIFFSYNTH_SKIP_DOWNLOAD", "True")
    config = TrainConfig(family="toy", dataset_base_path=str(EXAMPLE_DATA), lora_base_model="dit", lora_rank=4,
                         output_path=str(tmp_path / "out"), offload_models=entry)  # fmt: skip
    with pytest.raises(UserError, match=message):
        Trainer(load_registry(), config).run()


def test_encoders_run_on_copies_and_go_back_to_the_host():
    """Inside `on_device` every weight is a device copy (once, also when nested); after it the
    parameters hold the host copies again; buffers moved once."""
    import torch

    from diffsynth.training.flow_matching import FlowMatchSchedule
    from diffsynth.training.offload import offload
    from diffsynth.types import FamilyPipeline

    encoder = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4)).eval().requires_grad_(False)
    pipeline = FamilyPipeline(modules={"dit": torch.nn.Linear(4, 4), "text_encoder": encoder}, schedule=FlowMatchSchedule())
    out = offload(pipeline, ["text_encoder"], torch.device("cpu"))
    host = {id(p): h.data_ptr() for p, h in out.host}
    assert len(out.host) == 4 and all(p.data_ptr() == host[id(p)] for p in encoder.parameters())
    x = torch.randn(2, 4)
    expected = encoder(x)
    with out.on_device():
        inside = {id(p): p.data_ptr() for p in encoder.parameters()}
        assert all(inside[k] != host[k] for k in host)
        with out.on_device():  # nested: no second copy
            assert {id(p): p.data_ptr() for p in encoder.parameters()} == inside
        assert torch.equal(encoder(x), expected)
    assert all(p.data_ptr() == host[id(p)] for p in encoder.parameters())
