"""Errors the library raises and the exit codes the CLI maps them to."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FINDINGS = 1
    USAGE = 2
    INTERNAL = 3


class LockgraphError(Exception):
    """Base of every error the user can cause; carries a location when one is known."""

    def __init__(self, message: str, line: int = 0, path: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.path = path

    def format(self) -> str:
        where = f"{self.path}:{self.line}: " if self.path and self.line else (f"{self.path}: " if self.path else "")
        return f"{where}error: {self.message}"


class InputError(LockgraphError):
    """The input cannot be used at all (missing, a directory, binary, empty)."""


class LogSyntaxError(LockgraphError):
    """A lockdep block whose structure could not be followed."""
