"""How the library talks: messages for a person, and the progress of long work.

Stages never print or draw bars themselves. They call `info(message)` and
`with progress(description, total, unit=...) as bar: bar.advance(n)`, and whoever runs
them decides where that goes: by default messages go to stderr and there is no bar (a
notebook, a script); the CLI routes both to its console for the length of one command,
silenced by `--quiet`. Pass your own with `reporting(log=..., progress=...)`, or as the
`log=` / `progress=` arguments that every stage function takes.

The routing is a context variable, not a global: nested or concurrent runs each see
their own, and nothing needs resetting afterwards.
"""

from __future__ import annotations

import functools
import sys
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable, ContextManager, Iterator, Protocol


class Bar(Protocol):
    """One running task's progress."""

    visible: bool
    """Whether a person sees it; when not, long loops log a line now and then instead."""

    def advance(self, n: int = 1) -> None: ...

    def update(self, completed: int | None = None, description: str | None = None) -> None: ...


class ProgressFactory(Protocol):
    def __call__(self, description: str, total: int | None, *, unit: str = "it", completed: int = 0,
                 per: tuple[str, float] | None = None) -> ContextManager[Bar]:
        """A bar for `total` units (`per=("tokens", 1024)`: also show 1,024 tokens per unit)."""


Log = Callable[[str], None]


def to_stderr(message: str) -> None:
    print(message, file=sys.stderr)


class _Hidden:
    visible = False

    def advance(self, n: int = 1) -> None:
        pass

    def update(self, completed: int | None = None, description: str | None = None) -> None:
        pass


@contextmanager
def no_bar(description: str, total: int | None, *, unit: str = "it", completed: int = 0,
           per: tuple[str, float] | None = None) -> Iterator[Bar]:
    yield _Hidden()


_log: ContextVar[Log] = ContextVar("codec_log", default=to_stderr)
_progress: ContextVar[ProgressFactory] = ContextVar("codec_progress", default=no_bar)


def info(message: str) -> None:
    """A status message for a person."""
    _log.get()(message)


def progress(description: str, total: int | None, *, unit: str = "it", completed: int = 0,
             per: tuple[str, float] | None = None) -> ContextManager[Bar]:
    """The progress of one long task, shown however the caller chose."""
    return _progress.get()(description, total, unit=unit, completed=completed, per=per)


@contextmanager
def reporting(log: Log | None = None, progress: ProgressFactory | None = None) -> Iterator[None]:
    """Route messages and progress for the code run inside; None keeps what is in force."""
    tokens = [(var, var.set(value)) for var, value in ((_log, log), (_progress, progress)) if value is not None]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def reports(fn):
    """Give a stage function the keyword arguments `log=` and `progress=`, in force while it runs."""

    @functools.wraps(fn)
    def stage(*args, log: Log | None = None, progress: ProgressFactory | None = None, **kwargs):
        with reporting(log, progress):
            return fn(*args, **kwargs)

    return stage
