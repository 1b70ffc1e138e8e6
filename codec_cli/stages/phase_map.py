"""Phase maps: one metric of a sweep as a heat map over two of its axes.

Each square is the mean over the cells that share its two values (the other axes, seeds
for instance, averaged); squares where an SAE failed in some of those cells are marked
with a cross and the count (k/n), and a panel is drawn per SAE. docs/sweep.md shows one.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Metric:
    title: str
    per_sae: bool
    """A measure of each SAE (a panel each), or of the world's autoencoder (one panel)."""
    log: bool = False
    """Colour by log10 of the value."""
    span: tuple[float, float] | None = None
    """Fixed ends of the colour scale, where the metric has natural ones."""
    chance: str | None = None
    """The column holding the metric's chance level, quoted in the title."""


MAPS = {
    "procrustes": Metric("Procrustes similarity to the truth (chance-corrected: random directions score 0)", True,
                         span=(-0.25, 1)),
    "best_cosine": Metric("best-match cosine to the truth", True, span=(0, 1), chance="best_cosine_chance"),
    "dead_fraction": Metric("dead latents (share)", True, span=(0, 1)),
    "l0": Metric("L0 (latents active per sample)", True),
    "fvu": Metric("fraction of variance unexplained", True, span=(0, 1)),
    "ae_loss": Metric("autoencoder loss", False),
    "condition_number": Metric("log10 condition number of W", False, log=True),
    "diagonal_dominance": Metric("diagonal dominance of WᵀW", False, span=(0, 1)),
    "dimensionality_mean": Metric("mean feature dimensionality (represented)", False, span=(0, 1)),
}


def _finite_mean(values) -> float:
    v = np.array([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    return float(v.mean()) if len(v) else math.nan


def _label(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def draw(table, metric: str, x: str, y: str | None, saes: list[str], others: list[str] = ()):
    """The phase map of `metric` (a key of MAPS) over axes x and y (None: one row) as a Figure;
    `others` names the axes averaged over, for the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spec = MAPS[metric]
    panels = saes if spec.per_sae else saes[:1]  # the autoencoder's values repeat in every SAE's rows
    xs = sorted(set(table[x].to_list()))
    ys = sorted(set(table[y].to_list())) if y else [None]
    grids, marks = [], []
    for sae in panels:
        rows = table.filter(table["sae"] == sae)
        grid = np.full((len(ys), len(xs)), math.nan)
        mark = {}
        for j, vy in enumerate(ys):
            for i, vx in enumerate(xs):
                here = rows.filter(rows[x] == vx) if y is None else rows.filter((rows[x] == vx) & (rows[y] == vy))
                value = _finite_mean(here[metric].to_list())
                grid[j, i] = math.log10(value) if spec.log and value > 0 else value
                failed = int(here["failed"].sum()) if spec.per_sae else 0
                if failed:
                    mark[j, i] = f"{failed}/{len(here)}"
        grids.append(grid)
        marks.append(mark)
    stacked = np.concatenate([g.ravel() for g in grids])
    low, high = spec.span or (np.nanmin(stacked) if np.isfinite(stacked).any() else 0.0,
                              np.nanmax(stacked) if np.isfinite(stacked).any() else 1.0)
    width = min(7.0, max(3.6, 1.2 + 0.36 * len(xs))) * len(panels) + 1.0
    height = min(7.0, max(3.0, 1.8 + 0.36 * len(ys)))
    fig, axes = plt.subplots(1, len(panels), figsize=(width, height), squeeze=False, layout="constrained")
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#d9d9d9")
    annotate = len(xs) <= 12 and len(ys) <= 12
    for ax, sae, grid, mark in zip(axes[0], panels, grids, marks):
        image = ax.imshow(np.ma.masked_invalid(grid), origin="lower", aspect="auto", cmap=cmap, vmin=low, vmax=high)
        for (j, i), text in mark.items():
            ax.text(i, j, f"×\n{text}", ha="center", va="center", color="#d62728", fontsize=9, fontweight="bold")
        if annotate:
            for j in range(len(ys)):
                for i in range(len(xs)):
                    if (j, i) not in mark and math.isfinite(grid[j, i]):
                        ax.text(i, j, f"{grid[j, i]:.2f}".replace("-0.00", "0.00"), ha="center", va="center", fontsize=7,
                                color="white" if grid[j, i] < low + 0.5 * (high - low) else "black")
        every = max(1, math.ceil(len(xs) / 12))
        ax.set_xticks(range(0, len(xs), every), [_label(v) for v in xs[::every]], rotation=90 if len(xs) > 6 else 0)
        ax.set_xlabel(x)
        if y:
            ax.set_yticks(range(len(ys)), [_label(v) for v in ys])
            ax.set_ylabel(y)
        else:
            ax.set_yticks([])
        ax.set_title(f"{sae} SAE" if spec.per_sae else "autoencoder", fontsize=9)
    fig.colorbar(image, ax=list(axes[0]), shrink=0.9)
    chance = _finite_mean(table[spec.chance].to_list()) if spec.chance else math.nan
    lines = [spec.title + (f" (random directions: {chance:.2f} on average)" if math.isfinite(chance) else ""),
             "× k/n: the SAE failed in k of the square's n cells" if spec.per_sae else "",
             f"(mean over {', '.join(others)})" if others else ""]
    fig.suptitle("\n".join(textwrap.fill(line, int(width * 12)) for line in lines if line), fontsize=9)
    return fig
