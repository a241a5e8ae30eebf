"""Live tensor storage, its peak, and what was live at the peak.

A `TorchDispatchMode` sees every tensor an op returns; each new storage is counted once (views
share it) until Python's last reference to the storage goes (a weak reference's callback), so
`now` is the bytes a device allocator would hold (without its block rounding) and `peak` the
highest `now`. At each new peak the tracker remembers the live storages, labelled by `labels()`
(e.g. weights, gradients, optimizer state; the rest are activations and temporaries), so the
breakdown is exact for the moment of the peak. Tensors made before the mode (module weights)
are added with `add`.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

#: label of storages `labels()` does not name
UNLABELLED = "activations"


def storage_key(tensor: torch.Tensor) -> int:
    """Identity of a tensor's storage (shared by its views)."""
    return tensor.untyped_storage()._cdata


@dataclass
class PhaseMemory:
    """Bytes live when a phase started and its highest value."""

    start: int = 0
    peak: int = 0


class LiveMemory(TorchDispatchMode):
    """Usage: `with LiveMemory(labels=...) as memory: ...`; then `memory.peak`,
    `memory.at_peak` ({label: bytes}), `memory.phases` ({name: PhaseMemory})."""

    def __init__(self, labels: Callable[[], dict[int, str]] | None = None) -> None:
        super().__init__()
        self.labels = labels
        self.now = self.peak = 0
        self.at_peak: dict[str, int] = {}
        self.phases: dict[str, PhaseMemory] = {}
        self._live: dict[int, int] = {}
        self._refs: dict[int, weakref.ref] = {}
        self._peak_unrecorded = False
        self._phase: PhaseMemory | None = None

    # -- counting ---------------------------------------------------------------------------

    def add(self, tensor: torch.Tensor) -> None:
        """Count `tensor`'s storage if it is not counted yet."""
        storage = tensor.untyped_storage()
        key = storage._cdata
        if key in self._live:
            return
        size = storage.nbytes()
        self._live[key] = size
        self._refs[key] = weakref.ref(storage, lambda _, key=key: self._freed(key))
        self.now += size
        if self._phase is not None:
            self._phase.peak = max(self._phase.peak, self.now)
        if self.now > self.peak:
            self.peak = self.now
            self._peak_unrecorded = True

    def _freed(self, key: int) -> None:
        if self._peak_unrecorded:  # the first free after a new peak: what is live now is the peak
            self._record_peak()
        self.now -= self._live.pop(key, 0)
        self._refs.pop(key, None)

    def _record_peak(self) -> None:
        names = self.labels() if self.labels is not None else {}
        breakdown: dict[str, int] = {}
        for key, size in self._live.items():
            label = names.get(key, UNLABELLED)
            breakdown[label] = breakdown.get(label, 0) + size
        self.at_peak = breakdown
        self._peak_unrecorded = False

    def finish(self) -> None:
        """Record the peak if it is the last thing that happened."""
        if self._peak_unrecorded:
            self._record_peak()

    def live_bytes(self, tensors: list[torch.Tensor]) -> int:
        """Bytes of the distinct storages of `tensors`."""
        return sum(t.untyped_storage().nbytes() for t in {storage_key(t): t for t in tensors}.values())

    # -- phases ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[PhaseMemory]:
        """Track the peak of the code inside separately (e.g. the encoders, the denoiser step)."""
        previous, self._phase = self._phase, PhaseMemory(self.now, self.now)
        self.phases[name] = self._phase
        try:
            yield self._phase
        finally:
            self._phase = previous

    # -- the dispatch mode -----------------------------------------------------------------------

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for leaf in tree_leaves(out):
            if isinstance(leaf, torch.Tensor) and leaf.device.type != "meta":
                self.add(leaf)
        return out
