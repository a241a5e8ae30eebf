"""SIGINT / SIGTERM during training: finish the step, checkpoint, exit; a second signal exits now.

Exiting at once on the second signal cannot corrupt anything: every file is written atomically,
so an interrupted save leaves only a temporary file or folder, cleaned at the next start.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType

HANDLED = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Installs the handlers while active (`with StopRequest() as stop:`); `stop.signal` is the
    first signal received, or None."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signal is not None:
            sys.stderr.write(f"\n{signal.Signals(signum).name} again: exiting now\n")
            os._exit(128 + signum)
        self.signal = signum
        sys.stderr.write(
            f"\n{signal.Signals(signum).name}: finishing this step and writing a checkpoint "
            "(send it again to exit at once)\n"
        )

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in HANDLED:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
