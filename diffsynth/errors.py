"""Errors a user can cause. The CLI prints them as one line and exits non-zero."""


class UserError(Exception):
    """A problem with the user's input (a flag, a file, a dataset row), not a bug.

    The message must name the flag/file/key and say what was expected.
    """

    exit_code = 2


class PluginError(Exception):
    """A family plugin broke the contract (a hook returned the wrong thing)."""


class TrainingStopped(Exception):
    """Training ended early on purpose (a signal, a non-finite loss); the message says where the
    last checkpoint is. `exit_code` is 128 + signal for signals, 1 otherwise."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code
