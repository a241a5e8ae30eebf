"""Errors a user can cause. The CLI prints them as one line and exits non-zero."""


class UserError(Exception):
    """A problem with the user's input (a flag, a file, a dataset row), not a bug.

    The message must name the flag/file/key and say what was expected.
    """

    exit_code = 2


class PluginError(Exception):
    """A family plugin broke the contract (a hook returned the wrong thing)."""
