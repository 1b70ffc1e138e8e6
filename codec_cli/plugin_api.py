"""The analysis plugin API, version 1: what a plugin is given and what it gives back.

A plugin is any object (or class, instantiated with no arguments) with:

    name         str: the analysis name (defaults to the entry point's name)
    api_version  int: the plugin API it was written for; must be CODEC_API_VERSION
    requires     tuple of artifact kinds it needs, e.g. ("squeezer", "features")
    optional     tuple of artifact kinds it uses when given (default: none)
    Params       a dataclass of its parameters, filled from `-p key=value` (default: none)
    run(ctx)     takes a `Context`, returns a `Result`

It is handed plain data only, never Typer or Click objects, and may import heavy
libraries inside `run`, never at module level (codec imports the module to list it).
See docs/plugins.md.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from codec_cli import CODEC_API_VERSION, __version__
from codec_cli.artifacts import Artifact
from codec_cli.errors import PluginError

__all__ = ["CODEC_API_VERSION", "Analysis", "Context", "NoParams", "Result", "require_codec"]


@dataclass(frozen=True)
class NoParams:
    """The parameters of an analysis that takes none."""


@dataclass(frozen=True)
class Context:
    """Everything a plugin's `run` gets."""

    inputs: dict[str, Artifact]
    """The input artifacts, opened read-only, by kind ("features", "squeezer", …)."""
    params: Any
    """An instance of the plugin's `Params` dataclass."""
    out_dir: Path
    """The plugin's own output directory; files written here become part of its artifact."""
    log: Callable[[str], None] = lambda message: print(message, file=sys.stderr)
    """Say something to the person running codec (stderr; silenced by --quiet)."""


@dataclass
class Result:
    """What a plugin gives back; codec writes it into the plugin's artifact."""

    summary: dict[str, Any] = field(default_factory=dict)
    """Small JSON-ready numbers and strings; written to summary.json and shown on stdout."""
    tables: dict[str, Any] = field(default_factory=dict)
    """Name -> polars DataFrame or dict of equal-length columns; written to NAME.parquet."""
    figures: dict[str, Any] = field(default_factory=dict)
    """Name -> matplotlib Figure (written to NAME.png) or bytes (NAME must carry its extension)."""


class Analysis:
    """An optional base class; subclass it for the defaults, or write any object
    with the same attributes. Declare `api_version` yourself: it says which API
    your code was written against, so it must not be inherited."""

    name: str = ""
    requires: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    Params: type = NoParams

    def run(self, ctx: Context) -> Result:  # pragma: no cover - the plugin's job
        raise NotImplementedError


def _parse(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".")[:3] if part.isdigit())


def require_codec(version: str) -> None:
    """Fail clearly at import when codec is older than `version` (e.g. "0.2")."""
    if _parse(__version__) < _parse(version):
        raise PluginError(f"this plugin needs codec >= {version}, but codec {__version__} is installed",
                          hint="upgrade codec")
