"""The house's one-way rule: the CLI imports the library, never the reverse."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
# `python -m codec_cli` (__main__.py) is the shell's second door, not library.
LIBRARY = [p for p in (ROOT / "codec_cli").rglob("*.py")
           if p.relative_to(ROOT / "codec_cli").parts[0] not in ("cli", "__main__.py")]
PLUGINS = sorted((ROOT / "plugins").glob("*.py"))


def imported(path: Path) -> set[str]:
    """Every module a file imports, at any depth of its code (deferred imports included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return names


@pytest.mark.parametrize("path", LIBRARY + PLUGINS, ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_outside_the_cli_imports_it(path):
    assert not {n for n in imported(path) if n == "codec_cli.cli" or n.startswith("codec_cli.cli.")}


def test_the_library_tree_is_what_the_docs_say():
    assert LIBRARY and {p.parent.name for p in LIBRARY} >= {"codec_cli", "stages", "worlds", "sources", "nn"}


def test_help_imports_no_stage_and_no_array_library():
    probe = ("import sys\nsys.argv = ['codec', '--help']\nfrom codec_cli.cli import main\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in sys.modules if m.startswith(('codec_cli.stages', 'codec_cli.nn', "
             "'codec_cli.sources', 'codec_cli.worlds', 'numpy', 'polars', 'torch'))), file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stderr.strip().splitlines()[-1] == "[]"
