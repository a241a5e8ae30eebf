"""`diffsynth plan`: a training step's device memory, measured on a CPU by simulation.

The real-size modules are built on the meta device (the family's `plan_pipeline`), the trainer's
own code applies LoRA / FP8 / gradient checkpointing to them, their tensors are made fake
(`FakeTensorMode`: shapes and dtypes, no data) and one full step runs: preprocess with the
encoders, the loss, backward and the optimizer step. A dispatch-mode tracker adds up the bytes
of every live tensor storage; its peak is the predicted `torch.cuda.max_memory_allocated`.

One module per job: `tracker` (live storage bytes and the peak), `fake` (fake tensors for a
meta-device pipeline), `meta` (building a family's modules on meta, for plugins), `sample` (the
synthetic training sample), `simulate` (one step -> `Prediction`), `choices` (the standard
alternatives and `--vram`), `report` (text and JSON).
"""

from __future__ import annotations

GIB = 1024**3
