"""superposition-tax: the Squeezer's loss split into omission and interference, against
a monosemantic baseline of the same M (docs/analyses.md).

A hand-made squeezer checks the arithmetic exactly; the `toy` world (oracle SAE, n=5
into m=2, best of 8) checks the regimes: sparse features are packed and beat the
baseline, dense ones are not. About 20 s on a 2-core CPU, mostly the two squeezes.
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

import squeezed
from codec_cli.artifacts import ArtifactWriter, open_artifact

PLUGIN = "superposition-tax"
SHORT = ("--no-faithfulness", "--steps", 2000, "--batch-size", 256)
"""Shorter than squeezed.SQUEEZE (3,000 steps of 1,024 rows), which a 2-core CPU shared with
other tests takes minutes over; both regimes have settled by then."""


def hand_made(root, lineage: bool = True):
    """Four features, one neuron. Held-out rows (the last 4), after dividing feature 0
    by its scale 2: x0 = 2,0,2,0 (mean 1, var 1), x1 = 1,1,1,1 (var 0), x2 = 0,0,0,2
    (var 0.75); feature 3 never fires. The two training rows before them would change
    every variance if they were counted."""
    features = root / "features"
    with ArtifactWriter(features, "features", command="test", attrs={"d_sae": 4, "k": 2}) as w:
        w.write_topk(np.array([[0, 2], [2, 0]]), np.array([[100.0, 100.0], [100.0, 100.0]]))
        w.write_topk(np.array([[0, 1], [1, -1], [1, 0], [2, 1]]),
                     np.array([[4.0, 1.0], [1.0, 0.0], [1.0, 4.0], [2.0, 1.0]]))
    squeezer = root / "squeezer"
    params = {"k": 2, "batch_size": 1, "buffer_rows": 1, "eval_rows": 4, "seed": 0, "rescale": "max"}
    with ArtifactWriter(squeezer, "squeezer", command="test", params=params,
                        inputs=[open_artifact(features)] if lineage else [],
                        attrs={"tied": True, "neuron_act": "linear"}) as w:
        W = np.array([[1.0], [0.5], [0.0], [0.0]], dtype=np.float32)
        w.write_tensors("weights.safetensors", {
            "W_enc": W, "W_dec": W.T.copy(), "scale": np.array([2, 1, 1, 1], np.float32),
            "importance": np.array([0.5, 1.0, 2.0, 0.5], np.float32)})
        w.write_table("features.parquet", {
            "feature": np.arange(4, dtype=np.int32), "status": ["represented", "represented", "dropped", "never fired"],
            "frequency": [0.5, 0.7, 0.3, 0.0], "mse": [0.1, 0.2, 0.7, 0.0]})
    return features, squeezer


def test_the_arithmetic_on_a_hand_made_squeezer(tmp_path):
    features, squeezer = hand_made(tmp_path)
    s = squeezed.analyze(squeezer, features, out=tmp_path / "an", plugin=PLUGIN)
    # Squeezer, (1/F) Σ w_f e_f: represented 0.5·0.1 + 1·0.2, not represented 2·0.7 + 0.5·0.
    assert s["squeezer"] == pytest.approx({
        "loss": 1.65 / 4, "omission": 1.4 / 4, "interference": 0.25 / 4, "represented": 2,
        "features_per_neuron": 2.0, "omission_floor": 2 * 0.75 / 4, "interference_per_feature": 0.25 / 2})
    # Dropping costs w·var = 0.5, 0, 1.5, 0: the one neuron goes to feature 2 (not to feature
    # 0, whose variance is larger but weight smaller), and feature 0's 0.5 is what is lost.
    assert s["monosemantic"] == pytest.approx({"loss": 0.5 / 4, "omission": 0.5 / 4, "interference": 0.0,
                                               "represented": 1, "features_per_neuron": 1.0})
    assert s["ratio"] == pytest.approx(1.65 / 0.5)
    table = pl.read_parquet(tmp_path / "an" / PLUGIN / "features.parquet")
    np.testing.assert_allclose(table["mean"], [1, 1, 0.5, 0])
    np.testing.assert_allclose(table["var"], [1, 0, 0.75, 0], atol=1e-12)
    assert table["monosemantic_kept"].to_list() == [False, False, True, False]
    np.testing.assert_allclose(table["monosemantic_error"], [1, 0, 0, 0], atol=1e-12)
    assert (tmp_path / "an" / PLUGIN / "tax.png").stat().st_size > 0


def test_a_squeezer_from_other_features_is_refused(cli, tmp_path):
    features, squeezer = hand_made(tmp_path, lineage=False)
    result = cli("analyze", squeezer, features, "-P", PLUGIN, "--out", tmp_path / "an")
    assert result.exit_code == 1
    assert f"{squeezer} was not squeezed from {features}" in result.stderr
    assert not (tmp_path / "an" / PLUGIN).exists()


@pytest.fixture(scope="module")
def sparse(tmp_path_factory):
    root = tmp_path_factory.mktemp("sparse")
    features, squeezer, metrics = squeezed.toy(root, sparsity=0.95, squeeze=SHORT)
    return metrics, squeezed.analyze(squeezer, features, out=root / "an", plugin=PLUGIN)


@pytest.fixture(scope="module")
def dense(tmp_path_factory):
    root = tmp_path_factory.mktemp("dense")
    features, squeezer, metrics = squeezed.toy(root, sparsity=0.0, decay=0.9, squeeze=SHORT)
    return root, squeezer, metrics, squeezed.analyze(squeezer, features, out=root / "an", plugin=PLUGIN)


def test_superposition_beats_the_monosemantic_baseline_when_features_are_sparse(sparse):
    metrics, s = sparse
    # All five in two neurons, at the price of a little interference; the baseline drops three.
    assert s["squeezer"]["represented"] == 5 and s["squeezer"]["features_per_neuron"] == 2.5
    assert s["squeezer"]["omission"] == 0 and s["squeezer"]["interference"] == pytest.approx(metrics["loss"])
    assert s["monosemantic"]["represented"] == 2
    assert s["ratio"] < 0.4  # 0.15-0.16 in our runs


def test_superposition_does_not_pay_when_features_are_dense(dense):
    _, _, _, s = dense
    # Both keep the two most important features; what is left over is omission either way.
    assert s["squeezer"]["represented"] == 2 and s["monosemantic"]["represented"] == 2
    assert s["squeezer"]["omission"] > 50 * s["squeezer"]["interference"]
    assert 0.95 <= s["ratio"] <= 1.1  # 1.0006 in our runs


def test_the_parts_add_up_to_the_squeezers_own_loss(dense):
    root, squeezer, metrics, s = dense
    parts = s["squeezer"]
    assert parts["omission"] + parts["interference"] == pytest.approx(parts["loss"], rel=1e-12)
    assert parts["loss"] == pytest.approx(metrics["loss"], rel=1e-9)
    # The held-out variances are the ones codec squeeze measured (its per-feature FVU = mse / var),
    # so the rows reopened are the Squeezer's held-out rows.
    table = pl.read_parquet(root / "an" / PLUGIN / "features.parquet")
    own = pl.read_parquet(squeezer / "features.parquet")
    np.testing.assert_allclose(table["var"], own["mse"] / own["fvu"], rtol=1e-5)
    # The baseline, directly: keep the two largest w·var, drop the rest.
    cost = np.sort(table["weight"].to_numpy() * table["var"].to_numpy())
    assert s["monosemantic"]["loss"] == pytest.approx(cost[:-2].sum() / 5, rel=1e-9)
    assert json.loads((root / "an" / PLUGIN / "summary.json").read_text())["ratio"] == pytest.approx(s["ratio"])
