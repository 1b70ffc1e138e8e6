"""`codec sweep`: a world and its SAEs rebuilt over a grid, and where the SAEs fail, mapped."""

from __future__ import annotations

from codec_cli.cli.app import Reply, command
from codec_cli.config import SweepConfig


def _number(value) -> str:
    return "-" if value is None else f"{value:.2f}"


@command("sweep", SweepConfig)
def sweep_command(cfg: SweepConfig) -> Reply:
    """Rebuild a world and retrain its SAEs at every point of a grid; cells.parquet, summary and phase maps."""
    from codec_cli.stages.sweep import sweep

    s = sweep(cfg)
    lines = [f"{s['cells']} cells × {len(s['saes'])} SAEs -> {s['out']}"]
    for axis, values in s["by_axis"].items():
        if len(values) < 2:
            continue
        lines.append(f"{axis:<12}" + "".join(f"{sae + ' failed':>13}{sae + ' procrustes':>17}" for sae in s["saes"]))
        for value, d in values.items():
            lines.append(f"{value:<12}" + "".join(f"{d[sae]['failed']:>8}/{d[sae]['cells']:<4}"
                                                  f"{_number(d[sae]['procrustes']):>17}" for sae in s["saes"]))
    return Reply(s, "\n".join(lines))
