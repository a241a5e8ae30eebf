"""`python -m diffsynth.testing.rank_dump DIR ARGS` runs `diffsynth ARGS`; at every save each
process also writes the trainable tensors it holds to `DIR/rank-<i>.safetensors`, so a
multi-process test can check that the ranks agree with each other and with the saved file.
Test tooling: the trainer itself has no such switch."""

from __future__ import annotations

import sys
from pathlib import Path

from diffsynth.cli import main
from diffsynth.training.trainer import Trainer


def _dumping_save(save):
    def wrapper(self: Trainer, run, stem: str):  # noqa: ANN001 - Trainer._save's signature
        files = save(self, run, stem)
        from safetensors.torch import save_file

        tensors = {k: v.detach().cpu().contiguous() for k, v in self._trainable_tensors(run).items()}
        save_file(tensors, str(FOLDER / f"rank-{run.accelerator.process_index}.safetensors"))
        return files

    return wrapper


if __name__ == "__main__":
    FOLDER = Path(sys.argv.pop(1))
    FOLDER.mkdir(parents=True, exist_ok=True)
    Trainer._save = _dumping_save(Trainer._save)  # type: ignore[method-assign]
    main()
