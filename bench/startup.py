"""How long `codec --help` and `codec plugins` take, against a bare interpreter, against
`import typer` (what any Typer CLI pays; the target is `codec --help` ≤ 1.5× it) and
against `import torch`, all measured in this run (ratios, not absolute times)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

CODEC = str(Path(sys.executable).parent / "codec")
CASES = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "python -c 'import typer'": [sys.executable, "-c", "import typer"],
    "codec --help": [CODEC, "--help"],
    "codec plugins": [CODEC, "plugins"],
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
}


# As an installed codec runs: with its bytecode cached. (Some sandboxes set
# PYTHONDONTWRITEBYTECODE, which would time codec's compiling its sources on every start,
# and not the site-packages it is compared with, which were compiled on install.)
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def median_seconds(cmd: list[str], repeat: int = 7) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True, env=ENV)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    for cmd in CASES.values():  # warm the page cache, and write codec's bytecode
        subprocess.run(cmd, capture_output=True, env=ENV)
    seconds = {name: median_seconds(cmd) for name, cmd in CASES.items()}
    base, typer_s = seconds["python -c pass"], seconds["python -c 'import typer'"]
    print(f"{'command':<28}{'median s':>10}{'x bare python':>15}{'x import typer':>16}")
    for name, s in seconds.items():
        print(f"{name:<28}{s:>10.3f}{s / base:>15.1f}{s / typer_s:>16.2f}")
    ratio = seconds["codec --help"] / typer_s
    print(f"codec --help / import typer = {ratio:.2f} (target <= 1.5): {'ok' if ratio <= 1.5 else 'OVER'}")


if __name__ == "__main__":
    main()
