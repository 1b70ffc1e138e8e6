"""Typed dataclass configs, and their two projections: CLI options and `-p key=value`.

A stage's config is a dataclass whose fields each carry a docstring (the string
literal right below the field, as in sparsify). The CLI is generated from it:
every field becomes an option (`--field-name`) or, when marked `positional()`, an
argument, with the field's docstring as its help. Plugin parameters use the same
dataclasses and are filled from `-p key=value` strings by `coerce`.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import math
import textwrap
import types
import typing
from functools import cache
from pathlib import Path
from typing import Any

from codec_cli.errors import BadInput


def positional(**kwargs) -> Any:
    """A dataclass field that the CLI takes as an argument rather than an option."""
    metadata = {**kwargs.pop("metadata", {}), "positional": True}
    return dataclasses.field(metadata=metadata, **kwargs)


@cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each field of a dataclass, by field name."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        body = ast.parse(source).body[0].body
        for node, after in zip(body, body[1:]):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[node.target.id] = inspect.cleandoc(after.value.value)
    return docs


def _strip_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return tp


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def coerce(tp: Any, text: str) -> Any:
    """Turn the string `text` into a value of type `tp` (int, float, bool, str,
    Path, Optional[...], list[...] / tuple[...] written comma-separated, and
    sequences of groups written `0+1,2+3`)."""
    tp = _strip_optional(tp)
    origin = typing.get_origin(tp)
    if origin in (list, tuple):
        (item,) = typing.get_args(tp)[:1] or (str,)
        if typing.get_origin(item) in (list, tuple):  # groups: "0+1,2+3" -> ((0, 1), (2, 3))
            items = [coerce(item, part.replace("+", ",")) for part in text.split(",") if part.strip()]
        else:
            items = [coerce(item, part.strip()) for part in text.split(",") if part.strip()]
        return items if origin is list else tuple(items)
    if tp is bool:
        low = text.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueError(f"expected true or false, got {text!r}")
    if tp in (int, float, str, Path):
        return tp(text)
    raise ValueError(f"cannot read a {tp!r} from the command line")


def pairs(items: list[str]) -> dict[str, str]:
    """`["a=1", "b=x"]` -> `{"a": "1", "b": "x"}`, refusing an item without `=`."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BadInput(f"parameter {item!r} is not KEY=VALUE")
        out[key] = value
    return out


def fill(cls: type, pairs: dict[str, str], what: str = "parameter") -> Any:
    """Build dataclass `cls` from string values, with one clear line on a bad key or value."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    values = {}
    for key, text in pairs.items():
        name = key.replace("-", "_")
        if name not in fields:
            known = ", ".join(sorted(fields)) or "none"
            raise BadInput(f"unknown {what} {key!r}", hint=f"known {what}s: {known}")
        try:
            values[name] = coerce(hints[name], text)
        except ValueError as e:
            raise BadInput(f"{what} {key}={text!r}: {e}") from None
    _finite(values, f"{what} ")
    try:
        return cls(**values)
    except TypeError as e:  # a required field left out
        raise BadInput(f"{what}s incomplete: {e}") from None


def signature(cls: type) -> list[inspect.Parameter]:
    """Keyword-only parameters, annotated for Typer, one per field of `cls`."""
    import typer

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
        if f.metadata.get("positional"):
            info = typer.Argument(help=help_, show_default=has_default)
        else:
            flag = "--" + f.name.replace("_", "-")
            if hints[f.name] is bool and f.default is True:  # on by default: it needs an off switch
                flag = f"{flag}/--no-{f.name.replace('_', '-')}"
            flags = [flag, *f.metadata.get("short", ())]
            info = typer.Option(*flags, help=help_)
        params.append(
            inspect.Parameter(
                f.name,
                inspect.Parameter.KEYWORD_ONLY,
                annotation=typing.Annotated[hints[f.name], info],
                default=default,
            )
        )
    return params


def _finite(values: dict[str, Any], flag: str) -> None:
    """NaN and infinity are never a sensible setting; refuse them before any work."""
    for name, value in values.items():
        for v in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(v, float) and not math.isfinite(v):
                raise BadInput(f"{flag}{name.replace('_', '-') if flag == '--' else name} must be a finite number, "
                               f"got {v}")


def build(cls: type, values: dict[str, Any]) -> Any:
    """Instantiate `cls` from CLI values, letting the dataclass default what was not given."""
    given = {k: v for k, v in values.items() if v is not None}
    _finite(given, "--")
    return cls(**given)


def to_dict(cfg: Any) -> dict[str, Any]:
    """A config as JSON-ready data (paths as strings), for manifests and --json."""

    def plain(v):
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        return v

    return {f.name: plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
