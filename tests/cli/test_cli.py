"""The CLI shell: instant start-up, streams, one-line errors, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from codec_cli import __version__

HEAVY = ["torch", "sae_lens", "transformer_lens", "umap", "hdbscan"]
BIN = Path(sys.executable).parent


def imported_after(*argv: str) -> list[str]:
    """Run `codec ARGV` in a fresh interpreter; return the heavy modules it imported."""
    probe = (
        "import sys\n"
        f"sys.argv = ['codec', *{list(argv)!r}]\n"
        "from codec_cli.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules], file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return eval(done.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize("argv", [["--help"], ["plugins"], ["plugins", "--json"], ["analyze", "--help"],
                                  ["world", "list"], ["world", "info", "toy"], ["sae", "train", "--help"]])
def test_no_heavy_imports_at_startup(argv):
    assert imported_after(*argv) == []


def test_console_script_and_module_entry():
    for cmd in ([str(BIN / "codec"), "--version"], [sys.executable, "-m", "codec_cli", "--version"]):
        done = subprocess.run(cmd, capture_output=True, text=True)
        assert done.returncode == 0 and done.stdout == f"codec {__version__}\n" and done.stderr == ""


def test_usage_error_is_exit_2(cli):
    result = cli("analyze", "--no-such-option")
    assert result.exit_code == 2


def test_errors_are_one_line_on_stderr_and_nothing_on_stdout(cli, tmp_path):
    result = cli("analyze", tmp_path / "absent")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == f"Error: {tmp_path / 'absent'}: no such artifact directory\n"


def test_unexpected_errors_hint_at_debug_and_debug_shows_traceback(tmp_path):
    """An unexpected exception is exit 1 with a hint; CODEC_DEBUG=1 gives the traceback."""
    probe = (
        "import codec_cli.stages.analyze as a\n"
        "def boom(*args, **kw):\n    raise ZeroDivisionError('deep bug')\n"
        "a.analyze = boom\n"
        "import sys; sys.argv = ['codec', 'analyze', 'x']\n"
        "from codec_cli.cli import main\nmain()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "CODEC_DEBUG"}
    plain = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env)
    assert plain.returncode == 1
    assert plain.stderr.splitlines() == ["Error: unexpected ZeroDivisionError: deep bug",
                                         "Hint: set CODEC_DEBUG=1 for the full traceback"]
    debug = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                           env={**env, "CODEC_DEBUG": "1"})
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "deep bug" in debug.stderr


def test_quiet_silences_status_but_not_results(in_process, cli, features, tmp_path):
    from conftest import CountTokens

    in_process(CountTokens)
    loud = cli("analyze", features, "--out", tmp_path / "a")
    quiet = cli("--quiet", "analyze", features, "--out", tmp_path / "b")
    assert "running count-tokens" in loud.stderr and quiet.stderr == ""
    assert "count-tokens: ok" in quiet.stdout
    assert json.loads(cli("-q", "analyze", features, "--out", tmp_path / "c", "--json").stdout)
    after = cli("analyze", features, "--out", tmp_path / "d", "-q")  # where people also put it
    assert after.exit_code == 0 and after.stderr == "" and "count-tokens: ok" in after.stdout
    assert cli("plugins", "--quiet").exit_code == 0


@pytest.mark.parametrize("argv", [[], ["plugins"], ["world", "build"], ["sae", "train"], ["squeeze"]])
def test_flags_are_shown_as_flags(cli, argv):
    """A flag takes no value, so help shows none (Typer shows `--json <bool>`)."""
    text = cli(*argv, "--help").stdout
    assert "--help" in text and "<bool>" not in text


def test_usage_errors_are_one_line_and_a_hint():
    """Click's usage errors, through the console script: no usage line, no box."""
    done = subprocess.run([str(BIN / "codec"), "analyze", "--no-such-option"], capture_output=True, text=True)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == ["Error: No such option: --no-such-option",
                                        "Hint: try 'codec analyze --help'"]


def test_shell_completion_is_offered(cli):
    assert "--install-completion" in cli("--help").stdout
    done = subprocess.run([str(BIN / "codec"), "--show-completion", "bash"], capture_output=True, text=True,
                          env={**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"})
    assert done.returncode == 0 and "_codec_completion" in done.stdout


def test_a_closed_stdout_exits_quietly_and_a_full_one_says_so():
    r, w = os.pipe()
    os.close(r)  # the reader has gone, as in `codec world list --json | head -0`
    try:
        closed = subprocess.run([str(BIN / "codec"), "world", "list", "--json"], stdout=w, stderr=subprocess.PIPE,
                                text=True)
    finally:
        os.close(w)
    assert closed.returncode == 1 and closed.stderr == ""
    if not Path("/dev/full").exists():
        return
    with open("/dev/full", "w") as full:
        done = subprocess.run([str(BIN / "codec"), "world", "list", "--json"], stdout=full,
                              stderr=subprocess.PIPE, text=True)
    assert done.returncode == 1
    assert done.stderr.splitlines()[0] == "Error: cannot write the result to stdout: no space left on the device"
    assert len(done.stderr.splitlines()) == 2 and "Exception ignored" not in done.stderr


@pytest.mark.parametrize("error, code, line", [
    (OSError(28, "No space left on device", "/data/out/.x.tmp"), 1,
     "Error: /data/out/.x.tmp: no space left on the device"),
    (OSError(30, "Read-only file system", "/mnt/ro/out"), 2, "Error: /mnt/ro/out: read-only file system"),
    (PermissionError(13, "Permission denied", "/root/x"), 2, "Error: /root/x: permission denied"),
    (MemoryError(), 1, "Error: out of memory"),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:121] data. DefaultCPUAllocator: can't allocate memory: "
                  "you tried to allocate 85899345920 bytes. Error code 12 (Cannot allocate memory)"), 1,
     "Error: out of memory (an allocation of 80.0 GiB failed)"),
])
def test_failures_the_system_reports_are_one_line(capsys, monkeypatch, error, code, line):
    from codec_cli.cli import fail

    monkeypatch.delenv("CODEC_DEBUG", raising=False)
    assert fail(error).exit_code == code
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == line and len(lines) == 2 and lines[1].startswith("Hint: ")


def test_sae_trained_on_a_local_model_names_it_by_its_whole_path(tmp_path, monkeypatch):
    """The model's name goes into the SAE's cfg.json, where `codec extract --sae DIR` looks
    for it: a directory's bare name ("model") would later be looked up on the hub."""
    import tiny_models
    from codec_cli.sources import models

    model = tiny_models.hf_model(tmp_path / "model")
    (tmp_path / "corpus.txt").write_text("\n".join(tiny_models.TEXT))
    monkeypatch.chdir(tmp_path)
    src = models.load_source("model", [Path("corpus.txt")], context=16)
    assert src.name == str(model.resolve())
    monkeypatch.chdir("/")
    opened, world = models.open_model(src.name)
    assert world is None and opened.cfg.d_model == src.model.cfg.d_model


def test_cli_reference_is_in_sync():
    from codec_cli.cli import docs as clidoc

    doc = Path(__file__).parents[2] / "docs" / "cli.md"
    assert doc.read_text() == clidoc.render(), "docs/cli.md is stale: run `make docs`"


def test_progress_vanishes_off_terminal_and_with_quiet(monkeypatch):
    from codec_cli.cli import console

    def shown() -> bool:
        with console.bar("extract", 10, unit="tokens") as bar:
            return bar.visible

    assert not shown()  # pytest's stderr is not a terminal
    monkeypatch.setattr(type(console.err), "is_terminal", property(lambda self: True))
    assert shown()
    monkeypatch.setattr(console.settings, "quiet", True)
    assert not shown()
