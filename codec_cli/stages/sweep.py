"""`codec sweep`: a world rebuilt and its SAEs retrained at every point of a grid, and where
they fail, mapped (docs/sweep.md).

seeds/002 found an SAE that died at one operating point of the toy model (10-5-10 at
sparsity 0.9) and worked at its neighbours; whether that is a property of the point or of
one seed takes a grid, not a run. A sweep is one artifact of kind `sweep`:

    cells/NAME/       one cell per grid point (stages/sweep_cell.py): world/, sae-RECIPE/, cell.json
    cells.parquet     one row per cell and SAE: the axes' values and every measure
    summary.json      failures, means, and both per value of each axis
    maps/METRIC.png   phase maps (stages/phase_map.py)

Cells are independent, so they run side by side (`--jobs`, a process pool, one thread
each), a killed sweep keeps its finished cells for `--resume`, and `--shard i --of n`
splits the cells (i mod n) over processes or machines for `codec merge` to join: the
joined sweep has the files a single process would have written.
"""

from __future__ import annotations

import itertools
import json
import math
import shutil
from pathlib import Path

from codec_cli import config, talk, worlds
from codec_cli.artifacts import ArtifactWriter, check_not_an_input, check_output, open_artifact
from codec_cli.config import SweepConfig
from codec_cli.errors import BadInput, CodecError
from codec_cli.stages import sweep_cell
from codec_cli.stages.ranks import check_parts, output, rank
from codec_cli.stages.sweep_cell import CELL, Cell
from codec_cli.talk import info

SWEEPABLE = ("toy",)
"""Worlds a sweep can measure: those whose answer key holds the true feature directions."""
SUMMARY_METRICS = ("procrustes", "best_cosine", "dead", "l0", "fvu")
MODEL_METRICS = ("ae_loss", "condition_number", "diagonal_dominance", "dimensionality_mean")
RANK_PARAMS = ("shard", "of", "out", "resume", "jobs")
"""Settings that may differ between the parts of one sweep."""


def plan(cfg: SweepConfig) -> tuple[list[Cell], dict[str, list]]:
    """Every cell of the grid, each checked as `codec world build` and `codec sae train` would check
    it (so a bad value fails before any work), and the axes with their typed values."""
    if cfg.world not in SWEEPABLE:
        raise BadInput(f"codec sweep measures SAEs against true feature directions, which world {cfg.world!r} "
                       "does not have", hint=f"sweep one of: {', '.join(SWEEPABLE)}")
    module = worlds.spec(cfg.world).load()
    fixed = config.pairs(cfg.param)
    axes = [config.grid_axis(item) for item in cfg.grid]
    keys = [k.replace("-", "_") for k, _ in axes]
    if len(set(keys)) < len(keys):
        raise BadInput("a --grid axis is given twice", hint="give each KEY once, with all its values")
    both = sorted(set(keys) & {k.replace("-", "_") for k in fixed})
    if both:
        raise BadInput(f"{', '.join(both)} is both held fixed (-p) and a --grid axis", hint="give it one way")
    cells = []
    for index, combo in enumerate(itertools.product(*(values for _, values in axes))):
        given = dict(zip(keys, combo))
        world = fixed | {k: v for k, v in given.items() if not k.startswith("sae.")}
        tuning = {k.removeprefix("sae."): v for k, v in given.items() if k.startswith("sae.")}
        wcfg = config.fill(module.Config, world, what=f"{cfg.world} world parameter")
        recipes = sweep_cell.recipes(wcfg)
        saes = {label: sweep_cell.sae_settings(recipes[label], tuning) for label in cfg.saes}
        typed = {k: (saes[cfg.saes[0]][k.removeprefix("sae.")] if k.startswith("sae.") else getattr(wcfg, k))
                 for k in keys}
        name = ",".join(f"{k}={v}" for k, v in given.items()) or "cell"
        cells.append(Cell(index, name, cfg.world, world, saes, typed))
    return cells, {k: list(dict.fromkeys(c.axes[k] for c in cells)) for k in keys}


def map_axes(cfg: SweepConfig, axes: dict[str, list]) -> tuple[str | None, str | None]:
    """The phase maps' (x, y): --map, else the first two axes with more than one value."""
    if cfg.map:
        chosen = [a.strip().replace("-", "_") for a in cfg.map.split(",")]
        unknown = [a for a in chosen if a not in axes]
        if unknown or not 1 <= len(chosen) <= 2 or len(set(chosen)) < len(chosen):
            raise BadInput(f"--map takes one or two of the grid's axes, X,Y, not {cfg.map!r}",
                           hint=f"the axes: {', '.join(axes) or 'none (give --grid)'}")
        return chosen[0], chosen[1] if len(chosen) > 1 else None
    varied = [k for k, v in axes.items() if len(v) > 1]
    return (varied + [None, None])[0], (varied + [None, None])[1]


def _worker_start() -> None:
    """A pool worker's start: cells are computed on one thread, as they are without a pool, and the
    worker dies with the sweep (Linux), so that a killed sweep leaves no worker writing a cell that
    the resumed run is writing too."""
    import ctypes
    import signal

    import torch

    torch.set_num_threads(1)
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: a worker finishes its cell after the parent is gone
        pass


def _run(cells: list[Cell], root: Path) -> list[tuple[Cell, list[dict]]]:
    """Cells that share the world's parameters (they differ in sae.* axes only), on one thread: the
    world is built once and copied into the others. A failure is one CodecError line naming the cell."""
    from codec_cli.sources.models import torch_threads

    done, world = [], None
    for cell in cells:
        try:
            with torch_threads(1):
                done.append((cell, sweep_cell.run(cell, root / cell.name, world)))
        except Exception as e:  # raised in a worker, re-raised in the parent: plain text travels safely
            raise CodecError(f"cell {cell.name}: {type(e).__name__}: {e}", hint=getattr(e, "hint", None)) from None
        world = root / cell.name / "world"
    return done


def _run_all(cells: list[Cell], root: Path, jobs: int):
    """(cell, rows) as each cell finishes: in this process, or in a pool of `jobs` processes."""
    groups: dict[str, list[Cell]] = {}
    for cell in cells:
        groups.setdefault(json.dumps(cell.params, sort_keys=True), []).append(cell)
    if jobs == 1 or len(groups) <= 1:
        for group in groups.values():
            yield from _run(group, root)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn, not fork: a forked child of a process that has started torch's thread pools can hang.
    with ProcessPoolExecutor(min(jobs, len(groups)), mp_context=multiprocessing.get_context("spawn"),
                             initializer=_worker_start) as pool:
        futures = [pool.submit(_run, group, root) for group in groups.values()]
        try:
            for future in as_completed(futures):
                yield from future.result()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


@talk.reports
def sweep(cfg: SweepConfig) -> dict:
    """Run the sweep (or this rank's part of it) into `cfg.out`; returns its summary."""
    cells, axes = plan(cfg)
    x, y = map_axes(cfg, axes)
    index, ranks = rank(cfg)
    out = output(cfg.out, index, ranks)
    check_output(out, "sweep")
    mine = [c for c in cells if c.index % ranks == index]
    if not mine:
        raise BadInput(f"rank {index} of {ranks} has no cell: the grid has {len(cells)}", hint="use fewer ranks")
    # A list of [axis, values], not a mapping: manifests sort their keys, and the grid's order is the table's.
    attrs = {"world": cfg.world, "axes": [[k, v] for k, v in axes.items()], "saes": list(cfg.saes), "cells": len(cells), "map": [x, y],
             "part": {"index": index, "of": ranks} if ranks > 1 else None}
    with ArtifactWriter(out, "sweep", command="codec sweep", params=config.to_dict(cfg), attrs=attrs,
                        resume=cfg.resume, resumable=f"cells/*/{CELL}") as w:
        rows = _kept(mine, w, out) if cfg.resume else {}
        todo = [c for c in mine if c.index not in rows]
        if rows:
            info(f"sweep: {len(rows)} of {len(mine)} cells are finished with these settings, kept")
        with talk.progress("sweep", len(mine), unit="cells", completed=len(rows)) as bar:
            for cell, cell_rows in _run_all(todo, w.path / "cells", cfg.jobs):
                rows[cell.index] = cell_rows
                bar.advance()
        summary = finish(w, [r for i in sorted(rows) for r in rows[i]], cfg.world, axes, list(cfg.saes), x, y)
    return {"out": str(out), **summary}


def _kept(cells: list[Cell], w: ArtifactWriter, out: Path) -> dict[int, list[dict]]:
    """The rows of cells already finished with the same settings: in the partial directory an
    interrupted run left, or in the finished sweep at `out` (copied in, checked against its manifest)."""
    try:
        before = open_artifact(out, "sweep")
    except CodecError:
        before = None
    kept = {}
    for cell in cells:
        here = w.path / "cells" / cell.name
        done = sweep_cell.finished(cell, here)
        if done is None and before is not None and sweep_cell.finished(cell, out / "cells" / cell.name) is not None:
            shutil.rmtree(here, ignore_errors=True)
            for name in before.files(f"cells/{cell.name}/"):
                w.write_bytes(name, before.read_bytes(name))
            done = sweep_cell.finished(cell, here)
        if done is not None:
            kept[cell.index] = done
    return kept


def finish(w: ArtifactWriter, rows: list[dict], world: str, axes: dict, saes: list[str], x, y) -> dict:
    """Write cells.parquet, summary.json and the phase maps from the cells' rows; returns the summary."""
    import polars as pl

    table = pl.DataFrame(rows, infer_schema_length=None)
    front = ["cell", "index", *axes, "sae", *sweep_cell.COLUMNS]
    table = table.select([c for c in front if c in table.columns] + [c for c in table.columns if c not in front])
    w.write_table("cells.parquet", table)
    summary = summarize(table, world, axes, saes)
    w.write_json("summary.json", summary)
    if x is None:
        info("sweep: no axis varies, so there is no phase map to draw")
    else:
        import matplotlib.pyplot as plt

        from codec_cli.stages.phase_map import MAPS, draw

        others = [a for a, values in axes.items() if a not in (x, y) and len(values) > 1]
        for metric in MAPS:
            fig = draw(table, metric, x, y, saes, others)
            w.write_figure(f"maps/{metric}.png", fig)
            plt.close(fig)
    return summary


def _mean(values) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else None


def _describe(rows, saes: list[str]) -> dict:
    """Failures and mean measures of a set of rows, per SAE, and the autoencoder's means."""
    out = {"model": {m: _mean(rows.filter(rows["sae"] == saes[0])[m].to_list()) for m in MODEL_METRICS}}
    for sae in saes:
        mine = rows.filter(rows["sae"] == sae)
        out[sae] = {"cells": len(mine), "failed": int(mine["failed"].sum())} | {
            m: _mean(mine[m].to_list()) for m in SUMMARY_METRICS}
    return out


def summarize(table, world: str, axes: dict, saes: list[str]) -> dict:
    """summary.json: the whole sweep's failures and means, the cells that failed, and the same per
    value of each axis (the others pooled), which says whether a failure follows an axis."""
    failed = table.filter(table["failed"])
    return {"world": world, "cells": table["cell"].n_unique(), "saes": saes, "axes": axes,
            "overall": _describe(table, saes),
            "failed_cells": {sae: failed.filter(failed["sae"] == sae)["cell"].to_list() for sae in saes},
            "by_axis": {axis: {str(v): _describe(table.filter(table[axis] == v), saes) for v in values}
                        for axis, values in axes.items()}}


@talk.reports
def merge(parts: list[Path], out: Path) -> dict:
    """Join the parts of a sweep split over ranks into the sweep one process would have written."""
    check_output(out, "sweep")
    check_not_an_input(out, parts)
    arts = [open_artifact(p, "sweep") for p in parts]
    check_parts(arts, "sweep")

    def setting(a):
        return ({k: v for k, v in a.manifest["params"].items() if k not in RANK_PARAMS},
                {k: v for k, v in a.attrs.items() if k != "part"})

    for a in arts[1:]:
        if setting(a) != setting(arts[0]):
            raise BadInput(f"{a.path} and {arts[0].path} come from different sweeps")
    params, attrs = setting(arts[0])
    rows = {}
    with ArtifactWriter(out, "sweep", command="codec merge", attrs=attrs | {"part": None},
                        params={"parts": [str(a.path) for a in arts], "sweep": params}) as w:
        for a in arts:
            for name in a.files("cells/"):
                w.write_bytes(name, a.read_bytes(name))
                if name.count("/") == 2 and name.endswith("/" + CELL):
                    cell_rows = a.json(name)["rows"]
                    rows[cell_rows[0]["index"]] = cell_rows
        x, y = attrs["map"]
        summary = finish(w, [r for i in sorted(rows) for r in rows[i]], attrs["world"], dict(attrs["axes"]),
                         attrs["saes"], x, y)
    return {"out": str(out), "parts": len(arts), **summary}
