"""Where the shell talks: one rich Console on stderr, and progress bars that vanish.

Data and `--json` results go to stdout (plain `print`); everything meant for a person
goes through `err`. For the length of a command the library's messages and progress
(codec_cli.talk) are routed here: `info` is silenced by `--quiet`, and `bar` animates
only on an interactive terminal.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

_console = None


def _err():
    """The rich Console on stderr, made on first use: `codec --help` prints through none."""
    global _console
    if _console is None:
        from rich.console import Console

        _console = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)  # A:B:C is no :b: emoji
    return _console


def __getattr__(name: str):
    if name == "err":  # `console.err`, as if it were a plain module attribute
        return _err()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Settings:
    quiet: bool = False


settings = _Settings()
"""The shell's own state (`--quiet`); the library never reads it."""


def info(message: str) -> None:
    """A progress or status message for a person; silenced by --quiet."""
    if not settings.quiet:
        _err().print(message, markup=False)


class _Task:
    """One rich task, seen through codec_cli.talk's Bar."""

    def __init__(self, bar, task, visible: bool):
        self._bar, self._task, self.visible = bar, task, visible

    def advance(self, n: int = 1) -> None:
        self._bar.advance(self._task, n)

    def update(self, completed: int | None = None, description: str | None = None) -> None:
        self._bar.update(self._task, **{k: v for k, v in (("completed", completed), ("description", description))
                                        if v is not None})


@contextmanager
def bar(description: str, total: int | None, *, unit: str = "it", completed: int = 0,
        per: tuple[str, float] | None = None) -> Iterator[_Task]:
    """A transient progress bar with a rate, e.g. `unit="steps", per=("tokens", 1024)` shows
    steps/s and tokens/s; shown only on a terminal and without --quiet."""
    # rich.progress is imported here, not at start-up: `codec --help` draws no bar.
    from rich.text import Text
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TaskProgressColumn,
                               TextColumn, TimeElapsedColumn, TimeRemainingColumn)

    class RateColumn(ProgressColumn):
        """The smoothed rate in the caller's unit (tokens/s, steps/s)."""

        def __init__(self, unit: str, per: float = 1.0):
            super().__init__()
            self.unit, self.per = unit, per

        def render(self, task) -> Text:
            speed = task.finished_speed or task.speed
            shown = "?" if speed is None else f"{speed * self.per:,.1f}"
            return Text(f"{shown} {self.unit}/s", style="progress.data.speed")

    err = _err()
    visible = not settings.quiet and err.is_terminal
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        RateColumn(unit),
        *([RateColumn(*per)] if per else []),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not visible,
    ) as p:
        yield _Task(p, p.add_task(description, total=total, completed=completed), visible)
