"""The sweep's measures on hand-made numbers whose answers are known (docs/sweep.md), and its grid."""

import math

import numpy as np
import pytest

from codec_cli import config
from codec_cli.errors import BadInput, BadParameter
from codec_cli.stages import sweep_cell as cell
from codec_cli.stages.sweep import map_axes, plan


def _rotation(m: int, rng) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((m, m)))
    return q * np.sign(np.diag(r))


def test_procrustes_is_one_for_the_truth_rotated_and_scaled():
    rng = np.random.default_rng(0)
    truth = rng.standard_normal((10, 5))
    found = (truth @ _rotation(5, rng)) * rng.uniform(0.2, 3.0, size=(10, 1))  # rotated, each row rescaled
    p = cell.procrustes(found, truth, rng)
    assert p["procrustes_fit"] == pytest.approx(1.0, abs=1e-9)
    assert p["procrustes"] == pytest.approx(1.0, abs=1e-9)
    assert 0.3 < p["procrustes_chance"] < 0.8


def test_procrustes_is_about_zero_for_random_directions():
    rng = np.random.default_rng(1)
    truth = rng.standard_normal((10, 5))
    scores = [cell.procrustes(rng.standard_normal((10, 5)), truth, np.random.default_rng(2))["procrustes"]
              for _ in range(200)]
    assert abs(np.mean(scores)) < 0.03  # the chance level is the null's own mean
    assert max(abs(s) for s in scores) < 0.6
    # A pairing that is wrong (rows shuffled) is far from 1 even though the set of directions is right.
    shuffled = cell.procrustes(truth[rng.permutation(10)], truth, rng)["procrustes"]
    assert shuffled < 0.6


def test_procrustes_needs_two_pairs():
    rng = np.random.default_rng(0)
    assert cell.procrustes(np.ones((1, 3)), np.ones((1, 3)), rng)["procrustes"] is None


def test_diagonal_dominance_of_known_geometries():
    assert cell.diagonal_dominance(np.eye(4)) == pytest.approx(1.0)
    antipodal = np.array([[1.0, -1.0, 0.0, 0.0], [0.0, 0.0, 1.0, -1.0]])
    assert cell.diagonal_dominance(antipodal) == pytest.approx(0.5)
    angles = 2 * np.pi * np.arange(5) / 5
    pentagon = np.stack([np.cos(angles), np.sin(angles)])
    assert cell.diagonal_dominance(pentagon) == pytest.approx(1 / (1 + 2 * abs(np.cos(0.4 * np.pi))
                                                                   + 2 * abs(np.cos(0.8 * np.pi))))
    # A dropped feature (a zero column) changes neither sum.
    assert cell.diagonal_dominance(np.hstack([antipodal, np.zeros((2, 1))])) == pytest.approx(0.5)
    assert cell.diagonal_dominance(np.zeros((2, 3))) is None


def test_condition_number():
    assert cell.condition_number(np.array([[3.0, 0, 0], [0, 1.0, 0]])) == pytest.approx(3.0)
    assert cell.condition_number(np.array([[1.0, 1.0], [1.0, 1.0]])) == math.inf


def test_best_cosine_and_its_chance():
    rng = np.random.default_rng(0)
    truth = rng.standard_normal((10, 5))
    assert cell.best_cosine(truth, np.vstack([truth * 2, rng.standard_normal((3, 5))])) == pytest.approx(1.0)
    chance = cell.best_cosine_chance(truth, 10, rng)
    found = [cell.best_cosine(truth, rng.standard_normal((10, 5))) for _ in range(300)]
    assert chance == pytest.approx(np.mean(found), abs=0.02)


def test_pairing_by_activity_finds_a_permutation():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(500, 6)) * (rng.uniform(size=(500, 6)) < 0.2)
    order = rng.permutation(6)
    acts = 3 * x[:, order] + 0.01 * rng.uniform(size=(500, 6))
    f, lat, corr = cell.pair_by_activity(x, acts)
    assert (order[lat] == f).all()
    assert corr.min() > 0.99


def test_grid_axes():
    assert config.grid_axis("sparsity=0.8:0.9:0.05") == ("sparsity", ["0.8", "0.85", "0.9"])
    assert config.grid_axis("n_features=5:20:5") == ("n_features", ["5", "10", "15", "20"])
    assert config.grid_axis("seed=0, 1,2") == ("seed", ["0", "1", "2"])
    for bad in ("sparsity", "=1,2", "s=1:0:1", "s=0:1:0", "s=1,1", "s=", "s=a:b:c", "s=x/y"):
        with pytest.raises(BadParameter):
            config.grid_axis(bad)


def test_plan_is_the_grid_in_order_and_checked_before_any_work():
    cfg = config.SweepConfig("toy", grid=["sparsity=0.85,0.9", "seed=0:2:1", "sae.l1_coefficient=0.1"],
                             param=["n_features=8"], sae=["relu"])
    cells, axes = plan(cfg)
    assert [c.name for c in cells[:3]] == ["sparsity=0.85,seed=0,sae.l1_coefficient=0.1",
                                           "sparsity=0.85,seed=1,sae.l1_coefficient=0.1",
                                           "sparsity=0.85,seed=2,sae.l1_coefficient=0.1"]
    assert len(cells) == 6 and [c.index for c in cells] == list(range(6))
    assert axes == {"sparsity": [0.85, 0.9], "seed": [0, 1, 2], "sae.l1_coefficient": [0.1]}
    last = cells[-1]
    assert last.params == {"n_features": "8", "sparsity": "0.9", "seed": "2"}
    assert last.saes["relu"]["l1_coefficient"] == 0.1 and last.saes["relu"]["seed"] == 2
    assert last.saes["relu"]["steps"] == 20 * 8192 // 64  # 20 epochs of the world's samples
    assert map_axes(cfg, axes) == ("sparsity", "seed")
    for bad in (dict(grid=["sparsity=0.5,1.5"]), dict(grid=["nope=1,2"]), dict(grid=["sae.nope=1"]),
                dict(grid=["seed=0,1"], param=["seed=3"]), dict(grid=["seed=0,1", "seed=2"]),
                dict(grid=["sparsity=0.9"], map="seed")):
        with pytest.raises(BadInput):
            c = config.SweepConfig("toy", **bad)
            map_axes(c, plan(c)[1])
    with pytest.raises(BadInput, match="true feature directions"):
        plan(config.SweepConfig("themes"))
    with pytest.raises(BadParameter):
        config.SweepConfig("toy", sae=["gated"])
