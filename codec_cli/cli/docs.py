"""Render docs/cli.md from the commands' own --help (run `make docs`; a test keeps it in sync)."""

from __future__ import annotations

from typer.testing import CliRunner

from codec_cli.cli.app import app

# Fixed width and no colour, so the page is the same on every machine.
ENV = {"TERMINAL_WIDTH": "100", "NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "100"}


def commands(group=None, prefix: tuple[str, ...] = ()) -> list[list[str]]:
    """Every command path, groups before their subcommands, in name order."""
    import typer.main

    group = group or typer.main.get_command(app)
    paths = [list(prefix)]
    for name in sorted(getattr(group, "commands", {})):
        paths += commands(group.commands[name], (*prefix, name))
    return paths


def render() -> str:
    import typer.rich_utils

    # Typer reads TERMINAL_WIDTH once, when its help formatter is first imported: pin the
    # width while rendering, or a page made after some other --help would wrap differently.
    width, typer.rich_utils.MAX_WIDTH = typer.rich_utils.MAX_WIDTH, int(ENV["TERMINAL_WIDTH"])
    try:
        runner = CliRunner()
        parts = ["# codec command-line reference", "",
                 "Generated from `--help` by `make docs`; a test fails when it is stale.", ""]
        for argv in commands():
            title = " ".join(["codec", *argv])
            text = runner.invoke(app, [*argv, "--help"], env=ENV, prog_name="codec").stdout
            lines = [ln.rstrip() for ln in text.strip("\n").splitlines()]
            parts += [f"## `{title}`", "", "```", *lines, "```", ""]
    finally:
        typer.rich_utils.MAX_WIDTH = width
    return "\n".join(parts)

if __name__ == "__main__":
    print(render(), end="")
