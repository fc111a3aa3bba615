"""The errors every stage raises; the CLIs turn them into one line and an exit code (pipeline.run.stage_main)."""

from __future__ import annotations


class RunError(RuntimeError):
    """A run that cannot start: bad preset, bad override, an output folder that would be overwritten."""

    exit_code = 2


class RunInterrupted(RunError):
    """The run was stopped by a signal (forwarded to the trainer); exit 128 + the signal's number."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum
