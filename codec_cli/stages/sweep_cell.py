"""One cell of a sweep: the world built from scratch at one point of the grid, the SAEs
trained on it, and how each is measured against the world's true feature directions.

A cell is exactly what a person gets by hand (tests/e2e/test_sweep.py holds the bytes):

    codec world build toy -p KEY=VALUE … --out CELL/world
    cd CELL && codec sae train world --architecture relu … --out sae-relu

The SAEs' manifests therefore name their world as `world`, relative to the cell, which
stays true wherever the sweep is moved. The metrics are defined in docs/sweep.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from codec_cli import config, talk, worlds
from codec_cli.artifacts import canonical_json, open_artifact
from codec_cli.config import SAERunConfig, SAETrainConfig

CELL = "cell.json"
"""Written last into a cell's directory: the cell is finished once it is there."""
REPRESENTED = 0.1
"""A true feature is represented when ‖W_i‖² is at least this (the squeezer's rule, docs/metrics.md)."""
CHANCE_DRAWS = 256
"""Random dictionaries drawn for each chance level."""
RELU_BATCH = 64
"""Batch size of the relu recipe, whose length seeds/002 gives in epochs."""
RELU_EPOCHS = 20
COLUMNS = ("failed", "ae_loss", "condition_number", "diagonal_dominance", "represented", "dimensionality_mean",
           "d_sae", "l0", "alive", "dead", "dead_fraction", "fvu", "procrustes", "procrustes_fit", "procrustes_chance",
           "pairs", "pair_correlation", "best_cosine", "best_cosine_chance", "dimensionality")
"""cells.parquet's measures, in the order docs/sweep.md defines them."""
FAILED_FVU = 0.99
"""An SAE failed when no latent fires on any held-out sample, or it explains under 1 % of the variance."""


@dataclass(frozen=True)
class Cell:
    """One point of the grid, as plain data (it travels to worker processes)."""

    index: int
    """Its place in the grid's order (the last axis varies fastest)."""
    name: str
    """Its directory under cells/: the axes' values, e.g. sparsity=0.9,seed=0."""
    world: str
    params: dict[str, str]
    """The world's parameters as `codec world build -p KEY=VALUE` takes them."""
    saes: dict[str, dict[str, Any]]
    """Recipe -> its `codec sae train` settings (SAETrainConfig fields)."""
    axes: dict[str, Any]
    """Axis -> this cell's value, typed as the world or SAE config reads it."""


def recipes(cfg) -> dict[str, dict[str, Any]]:
    """The `--sae` recipes for a toy world built with `cfg`, as `codec sae train` settings.

    relu: seeds/002's SAE, ReLU with an L1 penalty of 0.01 through sae-lens, Adam at 1e-3, for
    20 epochs' worth of samples (20 × n_samples fresh samples, batches of 64; the stream never
    repeats a sample). topk: the world's own SAE recipe (toy.py), k = sae_k. Both are
    `sae_expansion` times the hidden width and seeded with the world's seed."""
    from codec_cli.worlds import toy

    topk = config.to_dict(toy._sae_config(cfg))
    relu = topk | {"architecture": "relu", "l1_coefficient": 0.01, "lr": 1e-3, "batch_size": RELU_BATCH,
                   "steps": max(1, RELU_EPOCHS * cfg.n_samples // RELU_BATCH)}
    return {"relu": relu, "topk": topk}


@contextlib.contextmanager
def _inside(path: Path):
    """Run the block from `path`, so that what it records names paths relative to the cell."""
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def run(cell: Cell, path: Path, world: Path | None = None) -> list[dict]:
    """Build, train and measure `cell` into the directory `path` (made afresh); its rows. `world`:
    a finished cell's world built with the same parameters, copied rather than rebuilt (the same
    bytes: a build is deterministic on one machine)."""
    from codec_cli.stages.train_sae import train_sae

    shutil.rmtree(path, ignore_errors=True)  # what an unfinished run of this cell left
    path.mkdir(parents=True)
    with talk.reporting(log=lambda message: None, progress=talk.no_bar):
        if world is None:
            worlds.build(cell.world, path / "world", cell.params)
        else:
            shutil.copytree(world, path / "world")
        with _inside(path):
            for label, settings in cell.saes.items():
                train_sae(SAERunConfig(source="world", out=Path(f"sae-{label}"), **settings))
    data = canonical_json({**_identity(cell), "rows": measure(cell, path)})
    tmp = path / f".{CELL}.tmp"
    tmp.write_bytes(data)
    os.replace(tmp, path / CELL)
    return json.loads(data)["rows"]  # as a resumed run reads them back: ∞ and NaN are null in JSON


def _identity(cell: Cell) -> dict:
    return {"name": cell.name, "world": cell.world, "params": cell.params, "saes": cell.saes}


def finished(cell: Cell, path: Path) -> list[dict] | None:
    """The rows of a cell finished at `path` with `cell`'s very settings, else None."""
    try:
        done = json.loads((path / CELL).read_bytes())
    except (OSError, ValueError):
        return None
    same = {k: done.get(k) for k in ("name", "world", "params", "saes")} == json.loads(canonical_json(_identity(cell)))
    return done.get("rows") if same else None


# --------------------------------------------------------------------------- measures


def condition_number(W: np.ndarray) -> float:
    """σ_max / σ_min of W [m, n] (m ≤ n): how unevenly it stretches the hidden space; ∞ when rank-deficient."""
    s = np.linalg.svd(W.astype(np.float64), compute_uv=False)
    return float(s[0] / s[-1]) if s[-1] > 0 else float("inf")


def diagonal_dominance(W: np.ndarray) -> float | None:
    """Σ_i |G_ii| / Σ_ij |G_ij| for G = WᵀW: 1 when the feature directions are orthogonal, 1/2 for
    antipodal pairs, lower the more features interfere; None when W is zero."""
    G = np.abs(W.T.astype(np.float64) @ W)
    total = G.sum()
    return float(np.trace(G) / total) if total > 0 else None


def _unit(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1.0)


def procrustes_fit(A: np.ndarray, B: np.ndarray) -> float:
    """max over orthogonal R of ⟨ÂR, B̂⟩ / k for k paired directions (unit rows Â, B̂ [k, m]):
    the nuclear norm of ÂᵀB̂ over k (scipy's orthogonal_procrustes), in [0, 1], 1 iff B̂ = ÂR."""
    from scipy.linalg import orthogonal_procrustes

    _, scale = orthogonal_procrustes(_unit(A), _unit(B))
    return float(scale / len(A))


def procrustes_chance(B: np.ndarray, rng: np.random.Generator, draws: int = CHANCE_DRAWS) -> float:
    """The mean `procrustes_fit` of random unit directions paired with the rows of B [k, m]."""
    A = _unit(rng.standard_normal((draws, *B.shape)))
    nuclear = np.linalg.svd(A.transpose(0, 2, 1) @ _unit(B.astype(np.float64)), compute_uv=False).sum(-1)
    return float(nuclear.mean() / len(B))


def procrustes(A: np.ndarray, B: np.ndarray, rng: np.random.Generator) -> dict[str, float | None]:
    """Procrustes similarity of paired directions, chance-corrected: (fit − chance) / (1 − chance);
    1 when A is B rotated, about 0 for random directions, negative below chance."""
    if len(A) < 2:
        return {"procrustes": None, "procrustes_fit": None, "procrustes_chance": None}
    fit, chance = procrustes_fit(A, B), procrustes_chance(B, rng)
    return {"procrustes": (fit - chance) / (1 - chance), "procrustes_fit": fit, "procrustes_chance": chance}


def best_cosine(truth: np.ndarray, found: np.ndarray) -> float:
    """Mean over the true directions [r, m] of the best cosine with any found direction [a, m]."""
    return float((_unit(truth) @ _unit(found).T).max(axis=1).mean())


def best_cosine_chance(truth: np.ndarray, count: int, rng: np.random.Generator, draws: int = CHANCE_DRAWS) -> float:
    """`best_cosine` of `count` random unit directions, averaged over draws."""
    found = _unit(rng.standard_normal((draws, count, truth.shape[1])))
    return float((found @ _unit(truth).T).max(axis=1).mean())


def pair_by_activity(x: np.ndarray, acts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (feature, latent) matched one to one (Hungarian) on the correlation of their activations
    over the samples, x [N, r] and acts [N, a]; returns the two index arrays and each pair's correlation."""
    from scipy.optimize import linear_sum_assignment

    def standard(a):
        a = a.astype(np.float64) - a.mean(0)
        sd = a.std(0)
        return a / np.where(sd > 0, sd, 1.0)

    corr = standard(x).T @ standard(acts) / len(x)
    rows, cols = linear_sum_assignment(corr, maximize=True)
    return rows, cols, corr[rows, cols]


def measure_model(truth: dict, metrics: dict) -> dict[str, Any]:
    """The autoencoder's side of a row: its loss, W's condition number and diagonal dominance, and
    its features' dimensionalities (D_i, toy.feature_dimensionality)."""
    import torch

    from codec_cli.worlds.toy import feature_dimensionality

    W = truth["W"]
    rep = (W**2).sum(0) >= REPRESENTED
    D = feature_dimensionality(torch.from_numpy(np.array(W))).numpy()
    return {"ae_loss": metrics["model"]["loss"], "condition_number": condition_number(W),
            "diagonal_dominance": diagonal_dominance(W), "represented": int(rep.sum()),
            "dimensionality_mean": float(D[rep].mean()) if rep.any() else None,
            "dimensionality": [float(d) for d in D]}


def measure_sae(sae, truth: dict, samples: dict, rng: np.random.Generator) -> dict[str, Any]:
    """One SAE on the world's held-out samples: L0, dead latents, FVU, and its decoder against the
    represented true directions (Procrustes similarity of activity-paired latents, best-match cosine),
    each score beside its chance level."""
    import torch

    W, x, h = truth["W"], samples["x"], samples["h"]
    with torch.no_grad():
        acts = sae.encode(torch.from_numpy(np.array(h)))
        recon = sae.decode(acts).numpy().astype(np.float64)
    acts = acts.numpy()
    fired = acts > 0
    live = fired.any(0)
    total = ((h - h.mean(0)) ** 2).sum()
    fvu = float(((h - recon) ** 2).sum() / total) if total > 0 else None
    d_sae = acts.shape[1]
    row = {"d_sae": d_sae, "l0": float(fired.sum(1).mean()), "alive": int(live.sum()),
           "dead": int(d_sae - live.sum()), "dead_fraction": float(1 - live.mean()), "fvu": fvu}
    rep = np.flatnonzero((W**2).sum(0) >= REPRESENTED)
    decoder = sae.W_dec.detach().numpy()[live]
    truth_dirs = W.T[rep]
    if len(decoder) and len(rep):
        f, l, corr = pair_by_activity(x[:, rep], acts[:, live])
        row |= procrustes(decoder[l], truth_dirs[f], rng)
        row |= {"pairs": int(len(f)), "pair_correlation": float(corr.mean()),
                "best_cosine": best_cosine(truth_dirs, decoder),
                "best_cosine_chance": best_cosine_chance(truth_dirs, len(decoder), rng)}
    else:  # nothing fires, or nothing to find: no latent stands for any feature
        row |= {"procrustes": None, "procrustes_fit": None, "procrustes_chance": None, "pairs": 0,
                "pair_correlation": None, "best_cosine": None, "best_cosine_chance": None}
    row["failed"] = row["alive"] == 0 or fvu is None or fvu > FAILED_FVU
    return row


def measure(cell: Cell, path: Path) -> list[dict]:
    """The cell's rows, one per SAE: its axes, the autoencoder's measures and the SAE's."""
    from codec_cli.sources.models import load_sae_dir

    world = open_artifact(path / "world", "world")
    truth = world.tensors("truth/answer.safetensors")
    samples = world.tensors("truth/samples.safetensors")
    model = measure_model(truth, world.json("metrics.json"))
    rows = []
    for label in cell.saes:
        rng = np.random.default_rng(cell.index)  # the chance levels: fixed draws, the same for every SAE
        sae = measure_sae(load_sae_dir(path / f"sae-{label}"), truth, samples, rng)
        rows.append({"cell": cell.name, "index": cell.index, **cell.axes, "sae": label, **model, **sae})
    return rows


def sae_settings(recipe: dict, overrides: dict[str, str]) -> dict[str, Any]:
    """A recipe with the grid's sae.KEY values in place, checked as `codec sae train` checks them."""
    given = config.fill(SAETrainConfig, overrides, what="SAE setting")
    settings = recipe | {k: getattr(given, k.replace("-", "_")) for k in overrides}
    return config.to_dict(SAETrainConfig(**settings))
