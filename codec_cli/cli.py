"""The `codec` command: a Typer app, its global options, and one error handler.

Each stage lives in its own module and registers its command here through
`command()`, which projects the stage's config dataclass onto options (see
config.py), turns a `CodecError` into `Error: …` plus a hint and its exit code,
and prints the result: human text, or JSON with `--json`, on stdout.

Nothing heavy is imported at module level: `codec --help` must stay instant.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
from dataclasses import dataclass
from typing import Annotated, Any, Callable

import typer

from codec_cli import __version__, config
from codec_cli.console import err, settings
from codec_cli.errors import CodecError

app = typer.Typer(
    name="codec",
    help="Test the Neural Codec hypothesis: extract SAE features, squeeze them into "
    "synthetic neurons, and analyse how they were packed.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DEBUG_HINT = "set CODEC_DEBUG=1 for the full traceback"


def _version(value: bool) -> None:
    if value:
        print(f"codec {__version__}")
        raise typer.Exit()


@app.callback()
def _global(
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or status messages.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print codec's version and exit.")] = False,
) -> None:
    settings.quiet = quiet


@dataclass
class Reply:
    """What a command hands back to the shell."""

    data: Any
    """Printed as JSON on stdout with --json."""
    text: str = ""
    """Printed on stdout otherwise."""
    code: int = 0
    """The exit code (1 when some part of the run failed)."""


def fail(e: BaseException) -> typer.Exit:
    """Report an exception in one line (plus a hint) and return the Exit to raise."""
    if os.environ.get("CODEC_DEBUG"):
        err.print_exception()
    if isinstance(e, CodecError):
        err.print(f"Error: {e}", markup=False, style="red")
        if e.hint:
            err.print(f"Hint: {e.hint}", markup=False)
        return typer.Exit(e.exit_code)
    if isinstance(e, KeyboardInterrupt):
        err.print("Error: interrupted", markup=False, style="red")
        return typer.Exit(130)
    err.print(f"Error: unexpected {type(e).__name__}: {e}", markup=False, style="red")
    if not os.environ.get("CODEC_DEBUG"):
        err.print(f"Hint: {DEBUG_HINT}", markup=False)
    return typer.Exit(1)


def render_metrics(metrics: dict, indent: str = "") -> str:
    """A (nested) dict of numbers as indented `key: value` lines, floats to 4 digits."""
    lines = []
    for key, value in metrics.items():
        if isinstance(value, dict):
            lines += [f"{indent}{key}:", render_metrics(value, indent + "  ")]
        elif isinstance(value, list):
            shown = ", ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in value)
            lines.append(f"{indent}{key}: [{shown}]")
        else:
            lines.append(f"{indent}{key}: {value:.4g}" if isinstance(value, float) else f"{indent}{key}: {value}")
    return "\n".join(lines)


def emit(reply: Reply, as_json: bool) -> None:
    if as_json:
        print(json.dumps(reply.data, indent=2, sort_keys=True))
    elif reply.text:
        print(reply.text)
    if reply.code:
        raise typer.Exit(reply.code)


JSON_OPTION = inspect.Parameter(
    "json_", inspect.Parameter.KEYWORD_ONLY, default=False,
    annotation=Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")])


def command(name: str, cfg_class: type | None = None, *, panel: str | None = "Stages",
            group: typer.Typer | None = None) -> Callable:
    """Register `fn(cfg) -> Reply` as `codec NAME` (or a subcommand of `group`), with
    options made from `cfg_class`."""

    def decorate(fn: Callable[..., Reply]) -> Callable[..., Reply]:
        params = config.signature(cfg_class) if cfg_class else []

        def run(**values) -> None:
            as_json = values.pop("json_", False)
            try:
                reply = fn(config.build(cfg_class, values)) if cfg_class else fn()
            except (Exception, KeyboardInterrupt) as e:
                raise fail(e) from None
            emit(reply, as_json)

        run.__signature__ = inspect.Signature([*params, JSON_OPTION])
        run.__doc__ = fn.__doc__
        (group or app).command(name, rich_help_panel=None if group else panel)(run)
        return fn

    return decorate


def main() -> None:
    """The console-script entry point."""
    try:
        app()
    except Exception as e:  # anything that escaped a command (e.g. in a callback)
        code = fail(e).exit_code
        sys.exit(code)


# The commands register themselves on import; these imports must stay light.
from codec_cli import plugins  # noqa: E402,F401
from codec_cli import extract  # noqa: E402,F401
from codec_cli import squeeze  # noqa: E402,F401
from codec_cli import analyze  # noqa: E402,F401
from codec_cli import world  # noqa: E402,F401
from codec_cli import sae  # noqa: E402,F401
