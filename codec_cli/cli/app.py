"""The shell's machinery: the Typer app, `Reply`, the one error handler, and `command()`.

`command()` projects a stage's config dataclass onto options (options.py), runs the
command, turns a `CodecError` (or an OS, memory or stdout failure) into `Error: …` plus
a hint and its exit code, and prints the result: human text, or JSON with `--json`, on
stdout. Click's usage errors get the same one-line shape (`CodecGroup`).

Each command lives in its own module beside this one and imports its stage inside the
command body, so `codec --help` imports no stage, numpy or torch.
"""

from __future__ import annotations

import errno
import inspect
import json
import os
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Callable

import typer
from typer.core import TyperCommand, TyperGroup

from codec_cli import __version__
from codec_cli.cli import options
from codec_cli import talk
from codec_cli.cli import console
from codec_cli.cli.console import settings
from codec_cli.errors import BadParameter, CodecError

DEBUG_HINT = "set CODEC_DEBUG=1 for the full traceback"


def _plain_flags(params: list) -> list:
    """Typer shows every option's type, flags included (`--json <bool>`), which reads as
    if a value were wanted; a flag takes none, so it shows none."""
    for p in params:
        if getattr(p, "is_flag", False) and p.metavar is None:
            p.metavar = ""
    return params


@contextmanager
def _one_line_usage_errors():
    """Click's usage errors as `Error: …` plus a hint, exit 2, instead of Typer's
    usage line and boxed panel (DESIGN.md §8: one line that says what and how to fix)."""
    try:
        yield
    except typer.TyperException as e:  # Typer's own Click's exceptions derive from it
        if type(e).__name__ == "NoArgsIsHelpError":  # it has shown the help already
            raise
        message = " ".join(e.format_message().split())
        console.err.print(f"Error: {message}", markup=False, style="red")
        ctx = getattr(e, "ctx", None)
        if ctx is not None and ctx.command.get_help_option(ctx) is not None:
            console.err.print(f"Hint: try '{ctx.command_path} {ctx.help_option_names[0]}'", markup=False)
        raise typer.Exit(e.exit_code) from None


class CodecCommand(TyperCommand):
    """A codec command: flags shown as flags."""

    def get_params(self, ctx):
        return _plain_flags(super().get_params(ctx))


class CodecGroup(TyperGroup):
    """`codec` and its groups: flags shown as flags, usage errors in one line."""

    def get_params(self, ctx):
        return _plain_flags(super().get_params(ctx))

    # Every usage error, the subcommands' included, is raised inside one of these two.
    def make_context(self, *args, **kwargs):
        with _one_line_usage_errors():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx):
        with _one_line_usage_errors():
            return super().invoke(ctx)


app = typer.Typer(
    name="codec",
    help="Test the Neural Codec hypothesis: extract SAE features, squeeze them into "
    "synthetic neurons, and analyse how they were packed.",
    cls=CodecGroup,
    rich_markup_mode=None,
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)


def group(name: str, help: str, panel: str) -> typer.Typer:
    """A command group (`codec world …`) that formats help and errors as `app` does."""
    sub = typer.Typer(help=help, cls=CodecGroup, rich_markup_mode=None, no_args_is_help=True)
    app.add_typer(sub, name=name, rich_help_panel=panel)
    return sub


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


# errno -> (what it means, what to do, exit code): a bad place given on the command line is
# bad input (2); a full disk is the run failing (1), through no fault of the arguments.
_OS_ERRORS = {
    errno.ENOSPC: ("no space left on the device", "free some space, or write to another disk", 1),
    errno.EDQUOT: ("disk quota exceeded", "free some space, or write to another disk", 1),
    errno.EROFS: ("read-only file system", "choose an --out on a writable file system", 2),
    errno.ENOTDIR: ("a part of the path is a file, not a directory", "choose an --out inside a directory", 2),
    errno.EACCES: ("permission denied", "choose a place you may read or write", 2),
    errno.EPERM: ("operation not permitted", "choose a place you may read or write", 2),
    errno.ENOENT: ("no such file or directory", "check the path", 2),
    errno.EISDIR: ("is a directory", "give a file here", 2),
    errno.ENAMETOOLONG: ("file name too long", "choose a shorter path", 2),
    errno.ELOOP: ("too many levels of symbolic links", "check the path", 2),
}


def _silence_stdout() -> None:
    """After stdout failed, point it at /dev/null: Python's flush at exit would
    otherwise fail again and print 'Exception ignored …' after our line."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError, AttributeError):  # no real file descriptor (a test's capture)
        pass


def _out_of_memory(e: BaseException) -> str | None:
    """A description of an allocation failure (Python's or torch's), or None."""
    if isinstance(e, MemoryError):
        return "out of memory"
    text = str(e)
    if isinstance(e, RuntimeError) and (type(e).__name__ == "OutOfMemoryError" or "can't allocate memory" in text
                                        or "out of memory" in text.lower()):  # torch's CPU and CUDA allocators
        m = re.search(r"allocate (\d+) bytes", text)
        return "out of memory" + (f" (an allocation of {int(m.group(1)) / 2**30:,.1f} GiB failed)" if m else "")
    return None


def _describe(e: BaseException) -> tuple[str, str | None, int] | None:
    """(message, hint, exit code) for the failures codec can name without a traceback."""
    if isinstance(e, BadParameter):  # a config field, named as the flag that sets it
        return e.flag, e.hint, e.exit_code
    if isinstance(e, CodecError):
        return str(e), e.hint, e.exit_code
    if isinstance(e, KeyboardInterrupt):
        return "interrupted", None, 130
    if isinstance(e, OSError) and e.errno in _OS_ERRORS:
        meaning, hint, code = _OS_ERRORS[e.errno]
        where = e.filename
        if where is not None and str(where).startswith(("/proc/", "/sys/")) and code == 2:
            meaning += f" (/{str(where).split('/')[1]} is the kernel's own file system, not a place for files)"
            hint = "choose an --out on an ordinary disk"
        return (f"{where}: {meaning}" if where is not None else meaning), hint, code
    if (oom := _out_of_memory(e)) is not None:
        return oom, "ask for less (a smaller --batch-size, --expansion-factor, --m or --tokens), " \
                    "or run where there is more memory", 1
    return None


def fail(e: BaseException) -> typer.Exit:
    """Report an exception in one line (plus a hint) and return the Exit to raise."""
    if os.environ.get("CODEC_DEBUG"):
        console.err.print_exception()
    if isinstance(e, BrokenPipeError):  # the reader left (`codec … | head`): exit quietly, as Unix tools do
        _silence_stdout()
        return typer.Exit(1)
    known = _describe(e)
    if known is not None:
        message, hint, code = known
        console.err.print(f"Error: {message}", markup=False, style="red")
        if hint:
            console.err.print(f"Hint: {hint}", markup=False)
        return typer.Exit(code)
    console.err.print(f"Error: unexpected {type(e).__name__}: {e}", markup=False, style="red")
    if not os.environ.get("CODEC_DEBUG"):
        console.err.print(f"Hint: {DEBUG_HINT}", markup=False)
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
    from codec_cli.artifacts import json_ready  # not for --help, which emits nothing

    text = json.dumps(json_ready(reply.data), indent=2, sort_keys=True) if as_json else reply.text
    try:
        if text:
            print(text)
        sys.stdout.flush()  # here, not at exit, so that a full or closed stdout is reported
    except BrokenPipeError:
        raise
    except OSError as e:
        _silence_stdout()
        meaning = _OS_ERRORS.get(e.errno, (e.strerror or str(e),))[0]
        raise CodecError(f"cannot write the result to stdout: {meaning}",
                         hint="free space where stdout is sent, or send it elsewhere") from None
    if reply.code:
        raise typer.Exit(reply.code)


JSON_OPTION = inspect.Parameter(
    "json_", inspect.Parameter.KEYWORD_ONLY, default=False,
    annotation=Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")])
# Also after the subcommand, where people put it: `codec analyze … -q`.
QUIET_OPTION = inspect.Parameter(
    "quiet_", inspect.Parameter.KEYWORD_ONLY, default=False,
    annotation=Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or status messages.")])


def command(name: str, cfg_class: type | None = None, *, panel: str | None = "Stages",
            group: typer.Typer | None = None) -> Callable:
    """Register `fn(cfg) -> Reply` as `codec NAME` (or a subcommand of `group`), with
    options made from `cfg_class`."""

    def decorate(fn: Callable[..., Reply]) -> Callable[..., Reply]:
        params = options.signature(cfg_class) if cfg_class else []

        def run(**values) -> None:
            as_json = values.pop("json_", False)
            if values.pop("quiet_", False):
                settings.quiet = True
            try:
                with talk.reporting(console.info, console.bar):
                    reply = fn(options.build(cfg_class, values)) if cfg_class else fn()
                emit(reply, as_json)
            except typer.Exit:
                raise
            except (Exception, KeyboardInterrupt) as e:
                raise fail(e) from None

        run.__signature__ = inspect.Signature([*params, JSON_OPTION, QUIET_OPTION])
        run.__doc__ = fn.__doc__
        (group or app).command(name, cls=CodecCommand, rich_help_panel=None if group else panel)(run)
        return fn

    return decorate


def main() -> None:
    """The console-script entry point."""
    try:
        app()
    except Exception as e:  # anything that escaped a command (e.g. in a callback)
        code = fail(e).exit_code
        sys.exit(code)
