"""Exit codes and the two exceptions the cloud lifecycle uses."""

from __future__ import annotations

import signal

EXIT_OK, EXIT_TASKS_FAILED, EXIT_USAGE, EXIT_REFUSED, EXIT_PROVISION = 0, 1, 2, 3, 4
EXIT_NOT_DESTROYED = 5  # the run ended but an instance could not be confirmed gone: it may bill
EXIT_SIGNAL_BASE = 128


class DeployError(Exception):
    """A failure with one clear line for the user and the process exit code to use."""

    def __init__(self, message: str, exit_code: int = EXIT_PROVISION):
        super().__init__(message)
        self.exit_code = exit_code


class Interrupted(BaseException):
    """Raised from the signal handler so every `finally` (the destroy) still runs."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
