"""The exceptions codec raises on purpose, and the exit code each one means.

Exit codes (DESIGN.md §8): 0 ok, 1 the run failed, 2 bad usage or bad input.
The CLI turns these into one `Error: …` line plus an optional `Hint: …` line.
"""

from __future__ import annotations


class CodecError(Exception):
    """A failure codec can explain in one line; the run failed (exit 1)."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


class BadInput(CodecError):
    """Bad usage or bad input: a wrong option, a missing or damaged file (exit 2)."""

    exit_code = 2


class BadParameter(BadInput):
    """A config field with a value it cannot take (or fields that do not go together).
    Named as the field in Python (`batch_size must be positive, got 0`) and as its flag
    on the command line (`--batch-size must be positive, got 0`), so each reader sees the
    name they typed."""

    def __init__(self, name: str | tuple[str, ...], problem: str, hint: str | None = None):
        self.names = (name,) if isinstance(name, str) else tuple(name)
        self.problem = problem
        super().__init__(f"{' and '.join(self.names)} {problem}", hint)

    @property
    def name(self) -> str:
        return " and ".join(self.names)

    @property
    def flag(self) -> str:
        return " and ".join(f"--{n.replace('_', '-')}" for n in self.names) + f" {self.problem}"


class ArtifactError(BadInput):
    """An artifact that is missing, damaged, foreign or of the wrong kind."""

    def __init__(self, path, problem: str, hint: str | None = None):
        super().__init__(f"{path}: {problem}", hint)
        self.path = path
        self.problem = problem


class PluginError(CodecError):
    """A plugin that cannot be found, loaded or run; reported by name and package."""
