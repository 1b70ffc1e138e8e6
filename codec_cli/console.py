"""Where talk goes: one rich Console on stderr, and progress bars that vanish.

Data and `--json` results go to stdout (plain `print`); everything meant for a
person goes through `err`. Progress only animates on an interactive terminal and
is silenced by `--quiet`.
"""

from __future__ import annotations

from rich.console import Console
from rich.text import Text
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

err = Console(stderr=True, highlight=False, soft_wrap=True)


class _Settings:
    quiet: bool = False


settings = _Settings()


def info(message: str) -> None:
    """A progress or status message for a person; silenced by --quiet."""
    if not settings.quiet:
        err.print(message, markup=False)


class RateColumn(ProgressColumn):
    """Shows the smoothed rate in the caller's unit (tokens/s, steps/s)."""

    def __init__(self, unit: str, per: float = 1.0):
        super().__init__()
        self.unit, self.per = unit, per

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        shown = "?" if speed is None else f"{speed * self.per:,.1f}"
        return Text(f"{shown} {self.unit}/s", style="progress.data.speed")


def progress(unit: str = "it", also: tuple[str, float] | None = None) -> Progress:
    """A transient progress bar with a rate, e.g. `unit="tokens"` shows tokens/s;
    `also=("tokens", 1024)` adds a second rate, 1,024 tokens per unit.

    Usage: `with progress("steps") as p: task = p.add_task("train", total=n); p.advance(task)`.
    """
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        RateColumn(unit),
        *([RateColumn(*also)] if also else []),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=settings.quiet or not err.is_terminal,
    )
