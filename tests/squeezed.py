"""Squeezers with known answers, built through the real CLI once per test session.

`toy(root, ...)` builds a toy world (Elhage et al. 2022) of n features in m=2
dimensions, extracts its true features through the oracle SAE and squeezes them, best
of 8 restarts (science.md §1: single runs land in local minima). `themes(root)` extracts
the shipped themes world and squeezes it with the demo's settings, shortened.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from codec_cli.cli import app
from codec_cli.cli.console import settings

SQUEEZE = ("--m", 2, "--restarts", 8, "--steps", 3000, "--lr", 1e-2)


def codec(*args) -> dict:
    result = CliRunner().invoke(app, ["-q", *map(str, args), "--json"])
    settings.quiet = False
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def toy(root: Path, *, n: int = 5, sparsity: float, decay: float = 1.0, groups: tuple[str, ...] = (),
        train_toy: bool = False, squeeze: tuple = ()) -> tuple[Path, Path, dict]:
    """(features, squeezer, squeeze metrics). `groups`: world parameters such as
    "exclusive_groups=0+1,2+3". The toy model itself is trained only when `train_toy`
    (the faithfulness ratio compares with it); otherwise the world is a data source."""
    toy_model = [] if train_toy else ["-p", "steps=1", "-p", "n_instances=1"]
    world = [x for g in groups for x in ("-p", g)]
    codec("world", "build", "toy", "-p", f"n_features={n}", "-p", "n_hidden=2", "-p", f"sparsity={sparsity}",
          "-p", f"importance_decay={decay}", "-p", "sae_steps=1", "-p", "sae_k=1", "-p", "n_samples=16",
          *world, *toy_model, "--out", root / "world")
    features = root / "features"
    codec("extract", root / "world", "--sae", "oracle", "--tokens", 40_000, "--k", n, "--out", features)
    extra = list(squeeze)
    if decay != 1.0:
        pl.DataFrame({"feature": range(n), "importance": [decay**i for i in range(n)]}).write_parquet(
            root / "importance.parquet")
        extra += ["--importance", root / "importance.parquet"]
    out = root / "squeezer"
    return features, out, codec("squeeze", features, *SQUEEZE, "--k", n, *extra, "--out", out)


def themes(root: Path, tokens: int = 60_000) -> tuple[Path, Path, dict]:
    """(features, squeezer, squeeze metrics) of the shipped themes world, k=8 into 32 neurons."""
    features = root / "features"
    codec("extract", "themes", "--tokens", tokens, "--out", features)
    out = root / "squeezer"
    return features, out, codec("squeeze", features, "--m", 32, "--k", 8, "--epochs", 20, "--rescale", "max",
                                "--out", out)


def analyze(*inputs: Path, out: Path, plugin: str, params: tuple[str, ...] = ()) -> dict:
    """Run one plugin through the CLI; returns its summary."""
    report = codec("analyze", *inputs, "--out", out, "-P", plugin, *[x for p in params for x in ("-p", p)])
    assert report[plugin]["status"] == "ok", report
    return report[plugin]["summary"]
