"""Config dataclasses: field docstrings, coercion of KEY=VALUE, and the CLI projection."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from codec_cli import config
from codec_cli.cli import options
from codec_cli.errors import BadInput


@dataclass(frozen=True)
class Example:
    data: list[Path] = config.positional()
    """Input files."""
    steps: int = 100
    """Training steps."""
    rate: float | None = None
    """Learning rate; None picks one."""
    tags: list[str] = field(default_factory=list, metadata={"short": ("-t",)})
    """Free-form tags."""
    fast: bool = False
    """Trade accuracy for speed."""

    def __post_init__(self):
        if self.steps <= 0:
            raise BadInput(f"--steps must be positive, got {self.steps}")


def test_field_docs_are_read_from_source():
    assert config.field_docs(Example) == {"data": "Input files.", "steps": "Training steps.",
                                          "rate": "Learning rate; None picks one.",
                                          "tags": "Free-form tags.", "fast": "Trade accuracy for speed."}


@pytest.mark.parametrize("tp, text, value", [
    (int, "3", 3), (float, "0.5", 0.5), (bool, "yes", True), (bool, "0", False), (str, "a", "a"),
    (Path, "x/y", Path("x/y")), (float | None, "2", 2.0), (list[int], "1, 2,3", [1, 2, 3]),
    (tuple[float, ...], "1,2", (1.0, 2.0)),
])
def test_coerce(tp, text, value):
    assert config.coerce(tp, text) == value


def test_fill_reports_unknown_and_bad_values():
    assert config.fill(Example, {"data": "a,b", "steps": "5"}).steps == 5
    with pytest.raises(BadInput, match="unknown parameter 'stpes'.*") as e:
        config.fill(Example, {"data": "a", "stpes": "5"})
    assert "steps" in e.value.hint
    with pytest.raises(BadInput, match="parameter steps='many'"):
        config.fill(Example, {"data": "a", "steps": "many"})
    with pytest.raises(BadInput, match="incomplete"):
        config.fill(Example, {})


def test_cli_is_a_projection_of_the_config():
    import inspect

    app = typer.Typer()
    seen = []

    def run(**values):
        seen.append(options.build(Example, values))

    run.__signature__ = inspect.Signature(options.signature(Example))
    app.command()(run)
    app.command("other")(lambda: None)  # keep `run` a subcommand
    runner = CliRunner()
    result = runner.invoke(app, ["run", "a", "b", "--steps", "7", "-t", "x", "-t", "y", "--fast"])
    assert result.exit_code == 0, result.output
    assert seen[-1] == Example([Path("a"), Path("b")], 7, None, ["x", "y"], True)
    runner.invoke(app, ["run", "a"])
    assert seen[-1] == Example([Path("a")])
    helptext = runner.invoke(app, ["run", "--help"], env={"TERMINAL_WIDTH": "200"}).output
    for doc in config.field_docs(Example).values():
        assert doc in helptext
    bad = runner.invoke(app, ["run", "a", "--steps", "0"])
    assert isinstance(bad.exception, BadInput)


def test_groups_syntax():
    assert config.coerce(tuple[tuple[int, ...], ...], "0+1,2+3+4") == ((0, 1), (2, 3, 4))
    assert config.coerce(tuple[tuple[int, ...], ...], "") == ()


def test_a_value_without_a_type_is_read_as_coerce_reads_booleans():
    """`--model-kwarg KEY=VALUE` has no field type: one reader, sharing coerce's booleans."""
    assert [config.literal(t) for t in ("true", "No", "1", "0", "2.5", "null", "[1, 2]", "gpt2")] == \
        [True, False, 1, 0, 2.5, None, [1, 2], "gpt2"]
