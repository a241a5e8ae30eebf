"""The rich progress bar: step/total, smoothed loss, learning rate, it/s and ETA."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class LossSmoother:
    """Exponential moving average with bias correction, so the first values are not ~0."""

    def __init__(self, beta: float = 0.9) -> None:
        self.beta, self.avg, self.count = beta, 0.0, 0

    def update(self, value: float) -> float:
        self.count += 1
        self.avg = self.beta * self.avg + (1 - self.beta) * value
        return self.avg / (1 - self.beta**self.count)


class TrainingProgress:
    """A progress bar over optimizer steps; a no-op on non-main processes."""

    def __init__(self, total_steps: int, enabled: bool = True, completed: int = 0) -> None:
        self.enabled = enabled
        self.smoother = LossSmoother()
        self.progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"),
            TextColumn("lr {task.fields[lr]:.2e}"),
            TextColumn("{task.fields[rate]:.2f} it/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(),  # stdout: stderr carries only warnings and errors
            disable=not enabled,
        )
        self.task = self.progress.add_task(
            "train", total=total_steps, completed=completed, loss=float("nan"), lr=0.0, rate=0.0
        )

    def __enter__(self) -> TrainingProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def advance(self, loss: float, lr: float) -> float:
        """Record one optimizer step; returns the smoothed loss."""
        smooth = self.smoother.update(loss)
        task = self.progress.tasks[0]
        rate = task.speed or 0.0
        self.progress.update(self.task, advance=1, loss=smooth, lr=lr, rate=rate)
        return smooth

    def log(self, message: str) -> None:
        if self.enabled:
            self.progress.console.print(message)
