"""Errors a user can act on.

Every error the workbench raises on bad input is a ``WorkbenchError`` whose message says
which field or input is wrong, what was expected, and what to do.  The CLI prints the
message without a traceback; Python callers can catch the base class.
"""

from __future__ import annotations


class WorkbenchError(Exception):
    """Base class: the message names the cause and the remedy."""


class ConfigError(WorkbenchError, ValueError):
    """An impossible or malformed configuration value (the message names the field)."""


class UnknownNameError(WorkbenchError, ValueError):
    """A name (task, strategy, piece, model, run) that is not registered or not found."""

    def __init__(self, kind: str, name: str, valid: list[str] | None = None, hint: str = ""):
        self.kind, self.name, self.valid = kind, name, list(valid or [])
        msg = f"unknown {kind} {name!r}"
        if self.valid:
            msg += f"; valid {kind} names: {', '.join(sorted(self.valid))}"
        if hint:
            msg += f". {hint}"
        super().__init__(msg)


class TaskDataError(WorkbenchError):
    """A task's data file or dataset is missing, unreadable or lacks a needed column."""


class VerifierError(WorkbenchError):
    """A task's verifier raised on a completion."""


class StoreError(WorkbenchError):
    """The run store cannot be opened, read or written."""


class CheckpointError(WorkbenchError):
    """A checkpoint cannot be written or read."""


class TrainingError(WorkbenchError):
    """Training cannot continue (e.g. a non-finite loss)."""
