"""`python -m killed_before_rename ARGS` = `diffsynth ARGS`, except that the first checkpoint
save kills the process between writing the checkpoint folder and renaming it into place
(the worst moment for a crash). Test tooling: production code has no fault switch."""

import os
import signal

from diffsynth.cli import main
from diffsynth.training.checkpointing import CheckpointStore


def _die(self, tmp, final):  # noqa: ANN001 - replaces CheckpointStore._publish
    os.kill(os.getpid(), signal.SIGKILL)


CheckpointStore._publish = _die
main()
