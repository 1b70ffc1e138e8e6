"""The shell: the `codec` command and nothing else. Nothing in the library imports it.

`app.py` holds the Typer app and its machinery, `options.py` the projection of config
dataclasses onto options, and each command has its own module, which imports its stage
only when it runs (so `codec --help` stays instant).
"""

from codec_cli.cli.app import Reply, app, command, emit, fail, group, main, render_metrics

# Each command registers itself on import; `codec --help` lists them in this order (the pipeline's).
from codec_cli.cli import extract, merge, squeeze, analyze, cluster, steer, compare, sweep, report, plugins, world, sae  # noqa: E402,F401,I001

__all__ = ["Reply", "app", "command", "emit", "fail", "group", "main", "render_metrics"]
