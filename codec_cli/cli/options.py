"""The projection of a config dataclass onto Typer options, and back.

Every field becomes an option (`--field-name`) or, when marked `config.positional()`, an
argument, with the field's docstring as its help. The dataclass keeps its defaults:
Typer hands over None for what was not given, and `build` leaves those out.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from pathlib import Path
from typing import Any

import typer

from codec_cli.config import choices, field_docs, finite


def signature(cls: type) -> list[inspect.Parameter]:
    """Keyword-only parameters, annotated for Typer, one per field of `cls`."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    params = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        help_ = docs.get(f.name, "")
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        default = inspect.Parameter.empty
        if has_default:
            # Typer sees None for "not given" and the dataclass supplies its own default,
            # so the default lives in one place; help shows it.
            value = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            default = value if isinstance(value, (bool, int, float, str, Path)) else None
        tp, allowed = hints[f.name], choices(hints[f.name])
        # Choices are shown as such, but handed over as text: the config checks them, so a
        # wrong one gets the same one line from the CLI as from Python.
        extra = {"metavar": "[" + "|".join(map(str, allowed)) + "]"} if allowed else {}
        if allowed:
            tp = str | None if type(None) in typing.get_args(tp) else str
        if f.metadata.get("positional"):
            info = typer.Argument(help=help_, show_default=has_default, **extra)
        else:
            flag = "--" + f.name.replace("_", "-")
            if tp is bool and f.default is True:  # on by default: it needs an off switch
                flag = f"{flag}/--no-{f.name.replace('_', '-')}"
            flags = [flag, *f.metadata.get("short", ())]
            info = typer.Option(*flags, help=help_, **extra)
        params.append(
            inspect.Parameter(
                f.name,
                inspect.Parameter.KEYWORD_ONLY,
                annotation=typing.Annotated[tp, info],
                default=default,
            )
        )
    return params


def build(cls: type, values: dict[str, Any]) -> Any:
    """Instantiate `cls` from CLI values, letting the dataclass default what was not given."""
    given = {k: v for k, v in values.items() if v is not None}
    finite(given, "--")
    return cls(**given)
