"""`codec squeeze` on the toy world, where the answer is known (science.md §1).

Each regime builds a toy world of n=5 features in m=2 dimensions, extracts its true
features through the oracle SAE and squeezes them, best of 8 restarts, through the
CLI. The pentagon world trains its toy model with the paper's recipe, because the
faithfulness ratio compares the Squeezer with it; the others are only data sources.
About a minute on a 2-core CPU.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from safetensors.numpy import load_file

import squeezed as worlds
from codec_cli.worlds.toy import feature_dimensionality


def squeezed(root: Path, sparsity: float, decay: float, *extra, train_toy: bool = False) -> tuple[Path, dict]:
    """(squeezer, metrics) of a toy world of n=5 features in m=2 (tests/squeezed.py)."""
    _, out, metrics = worlds.toy(root, sparsity=sparsity, decay=decay, train_toy=train_toy, squeeze=extra)
    return out, metrics


def directions(out: Path) -> torch.Tensor:
    """W [m, n]: column i is feature i's direction (tied: W_enc's row i)."""
    return torch.from_numpy(load_file(out / "weights.safetensors")["W_enc"]).T


def cosines(W: torch.Tensor) -> torch.Tensor:
    unit = W / W.norm(dim=0)
    return unit.T @ unit


@pytest.fixture(scope="module")
def pentagon(tmp_path_factory):
    return squeezed(tmp_path_factory.mktemp("pentagon"), 0.95, 1.0, train_toy=True)


def test_sparse_features_are_packed_as_a_pentagon(pentagon) -> None:
    out, metrics = pentagon
    W = directions(out)
    D = feature_dimensionality(W)
    assert ((D >= 0.38) & (D <= 0.42)).all(), D
    angles = sorted(math.degrees(math.atan2(float(y), float(x))) % 360 for x, y in W.T)
    gaps = [b - a for a, b in zip(angles, angles[1:] + [angles[0] + 360])]
    assert all(abs(g - 72) <= 3 for g in gaps), gaps
    assert metrics["represented"] == 5 and metrics["dropped"] == 0 and metrics["dead_neurons"] == 0


def test_the_squeezer_is_as_faithful_as_the_toy_model_itself(pentagon) -> None:
    """The oracle SAE reads the toy model's input, so the model's own codec is the toy
    model: the Squeezer, trained the same way on the same distribution, must match it."""
    _, metrics = pentagon
    assert 0 < metrics["model_codec_loss"] < 0.01 and metrics["loss"] > 0
    assert metrics["faithfulness_ratio"] == pytest.approx(metrics["loss"] / metrics["model_codec_loss"])
    assert metrics["faithfulness_ratio"] <= 1.05


def test_the_kept_restart_is_the_best_on_held_out_rows(pentagon) -> None:
    out, metrics = pentagon
    assert len(metrics["instance_losses"]) == 8
    assert metrics["instance_losses"][metrics["instance"]] == pytest.approx(metrics["loss"], rel=1e-5)
    curve = pl.read_parquet(out / "training.parquet")
    assert curve["step"][-1] == 3000 and curve["loss"][-1] < curve["loss"][0] / 3
    table = pl.read_parquet(out / "features.parquet")
    assert table["status"].to_list() == ["represented"] * 5
    assert (table["mse"] < table["codec_mse"] * 1.5).all() and (table["fvu"] < 0.2).all()


def test_moderate_sparsity_gives_two_antipodal_pairs(toy_antipodal) -> None:
    # S=0.8, importance 0.9**i, --no-faithfulness: squeezed once per session (conftest.py).
    _, out, metrics = toy_antipodal
    W = directions(out)
    D = feature_dimensionality(W)
    kept = [i for i in range(5) if 0.47 <= D[i] <= 0.53]
    assert len(kept) == 4 and D[4] < 0.05, D
    cos = cosines(W)
    partner = {i: min(kept, key=lambda j: float(cos[i, j])) for i in kept}
    assert all(partner[partner[i]] == i and cos[i, partner[i]] <= -0.98 for i in kept), cos
    assert metrics["dropped"] == 1 and metrics["faithfulness_ratio"] is None
    assert pl.read_parquet(out / "features.parquet")["status"][4] == "dropped"


def test_dense_features_keep_the_two_most_important(toy_dense) -> None:
    # S=0, importance 0.9**i, --no-faithfulness: squeezed once per session (conftest.py).
    _, out, metrics = toy_dense
    D = feature_dimensionality(directions(out))
    assert (D[:2] > 0.95).all() and (D[2:] < 0.05).all(), D
    assert metrics["represented"] == 2 and metrics["dropped"] == 3
    weights = load_file(out / "weights.safetensors")
    np.testing.assert_allclose(weights["importance"], np.array([0.9**i for i in range(5)]) * 5 / sum(
        0.9**i for i in range(5)), rtol=1e-5)


def test_untied_squeezer_reaches_at_least_the_tied_loss(pentagon, tmp_path) -> None:
    """Untied, the bottleneck learns inhibition rather than a pentagon (science.md §1):
    what must hold is a loss no worse than the tied one, with every feature passed through."""
    _, tied = pentagon
    features = pentagon[0].parent / "features"
    untied = worlds.codec("squeeze", features, *worlds.SQUEEZE, "--k", 5, "--no-tied", "--out", tmp_path / "untied")
    assert untied["loss"] <= tied["loss"] * 1.02
    gain = pl.read_parquet(tmp_path / "untied" / "features.parquet")["gain"]
    assert (gain > 0.5).all(), gain
