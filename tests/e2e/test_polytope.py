"""The polytope analysis on Squeezers whose geometry is known.

Toy world, oracle SAE, n=5 features in m=2 (science.md §1): a regular pentagon at high
sparsity, two antipodal pairs at S=0.8 and two features of their own when dense.
A calendar of features that fire as a bump round a cycle is packed on ordered circles
(the top principal components of a circulant co-activation are the circle's Fourier
pair). In the themes world, whose weekday and month embeddings sit on circles, the SAE's
arc latents come out as ordered circles too. Squeezers are built through the CLI
(tests/squeezed.py), once per module.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import squeezed
from safetensors.numpy import load_file
from typer.testing import CliRunner

from codec_cli.artifacts import ArtifactWriter, open_artifact
from codec_cli.cli import app
from codec_cli.cli.console import settings
from codec_plugins.polytope import against, circle_plane, circle_scores, member_angles, order_null

NO_FAITHFULNESS = ("--no-faithfulness",)


def analyzed(root, *inputs, params=()):
    """(summary, groups, features) of the polytope analysis of `inputs`, written under root."""
    summary = squeezed.analyze(*inputs, out=root / "analysis", plugin="polytope", params=params)
    out = root / "analysis" / "polytope"
    return summary, pl.read_parquet(out / "groups.parquet"), pl.read_parquet(out / "features.parquet")


def circular(a):
    """Angles (radians) brought into [−π, π)."""
    return (np.asarray(a) + np.pi) % (2 * np.pi) - np.pi


@pytest.fixture(scope="module")
def pentagon(tmp_path_factory):
    root = tmp_path_factory.mktemp("pentagon")
    _, sq, _ = squeezed.toy(root, sparsity=0.95, squeeze=NO_FAITHFULNESS)
    return *analyzed(root, sq), root / "analysis" / "polytope"


def test_the_pentagon_is_named_with_every_D_at_two_fifths(pentagon) -> None:
    summary, groups, features, _ = pentagon
    assert summary["named"] == {"pentagon": 1} and summary["labelled"] is None  # the toy has no cycle labels
    (group,) = groups.to_dicts()
    assert group["regular"] and (group["size"], group["rank"]) == (5, 2) and group["members"] == [0, 1, 2, 3, 4]
    assert features["D"].is_between(0.38, 0.42).all(), features["D"]
    assert summary["D_at"]["2/5"] == 5 and summary["D_at_chance"]["2/5"] < 2  # random codes rarely sit there
    assert summary["dimensions_per_feature"] == pytest.approx(0.31, abs=0.02)  # science.md: D* = 0.31


def test_the_pentagon_members_have_angles_a_fifth_of_a_turn_apart(pentagon) -> None:
    """An unlabelled group has no order to check, but its members' angles say where each sits."""
    angles = pl.read_parquet(pentagon[3] / "angles.parquet")
    assert angles["group"].to_list() == [0] * 5 and angles["feature"].to_list() == [0, 1, 2, 3, 4]
    assert angles["label"].null_count() == 5 and angles["position"].null_count() == 5
    a = angles["angle"].to_numpy()
    assert a[0] == 0 and 0 <= a[1] <= np.pi  # the plane's turn and flip fixed by the first two members
    gaps = np.diff(np.r_[np.sort(a), 2 * np.pi])
    assert np.abs(gaps - 2 * np.pi / 5).max() < 0.1, gaps


@pytest.fixture(scope="module")
def antipodal(toy_antipodal, tmp_path_factory):
    # S=0.8, importance 0.9**i, no faithfulness: the squeezer test_squeeze_toy reads too (conftest.py).
    _, sq, _ = toy_antipodal
    return analyzed(tmp_path_factory.mktemp("antipodal"), sq)


def test_moderate_sparsity_gives_two_antipodal_pairs_at_one_half(antipodal) -> None:
    summary, groups, features = antipodal
    assert summary["named"] == {"antipodal pair": 2} and summary["represented"] == 4
    assert (groups["size"] == 2).all() and (groups["min_cos"] <= -0.98).all() and groups["regular"].all()
    assert sorted(m for pair in groups["members"] for m in pair) == [0, 1, 2, 3]
    kept = features.filter(pl.col("status") == "represented")
    assert kept["D"].is_between(0.47, 0.53).all(), kept["D"]
    dropped = features.row(4, named=True)  # the least important feature
    assert dropped["status"] == "dropped" and dropped["D"] is None and dropped["group"] is None
    assert summary["D_at"]["1/2"] == 4


@pytest.fixture(scope="module")
def dense(toy_dense, tmp_path_factory):
    # S=0, importance 0.9**i, no faithfulness: shared with test_squeeze_toy (conftest.py).
    _, sq, _ = toy_dense
    return analyzed(tmp_path_factory.mktemp("dense"), sq)


def test_dense_features_keep_a_dimension_each(dense) -> None:
    summary, groups, features = dense
    assert summary["named"] == {"alone": 2} and summary["D_at"]["1"] == 2
    assert features["D"][:2].to_numpy().min() > 0.95 and features["D"][2:].null_count() == 3
    assert summary["mean_D_chance"] < 0.9  # two random directions in 2-D interfere


# ----------------------------------------------------------------- circles


def calendar(path, rows: int = 20_000, distractors: int = 21, seed: int = 0):
    """A features artifact of 12 month features, 7 weekday features and independent
    distractors. On a token of month p, month feature q fires max(0, cos 2π(q−p)/12) (a
    bump round the cycle, likewise for weekdays); other tokens fire one distractor. The
    token tables carry `cycle` and `cycle_position` as the themes world's do."""
    rng = np.random.default_rng(seed)
    first = {"month": (0, 12), "weekday": (12, 7)}
    k = 12
    kind = rng.choice(3, rows, p=[0.25, 0.25, 0.5])
    idx = np.full((rows, k), -1, np.int32)
    val = np.zeros((rows, k), np.float32)
    cycle, position = [None] * rows, [None] * rows
    for r in range(rows):
        if kind[r] == 2:
            idx[r, 0], val[r, 0] = 19 + rng.integers(distractors), rng.uniform(0.5, 1)
            continue
        cycle[r] = ("month", "weekday")[kind[r]]
        start, n = first[cycle[r]]
        position[r] = p = int(rng.integers(n))
        bump = np.cos(2 * np.pi * (np.arange(n) - p) / n)
        on = np.argsort(-bump)[: (bump > 1e-6).sum()]
        idx[r, : len(on)], val[r, : len(on)] = start + on, bump[on]
    with ArtifactWriter(path, "features", command="test calendar", attrs={"d_sae": 19 + distractors, "k": k}) as w:
        w.write_topk(idx, val)
        w.write_table("tokens/00000.parquet", pl.DataFrame({
            "doc": np.arange(rows), "pos": np.zeros(rows, np.int32), "cycle": pl.Series(cycle, dtype=pl.String),
            "cycle_position": pl.Series(position, dtype=pl.Int64)}))
    return path


def labels(path, cycles: dict, d_sae: int):
    """A features artifact that only labels: feature f of cycle c fires on one token, of
    `cycle` c at `cycle_position` cycles[c][f], and nothing else fires."""
    at = [(f, c, q) for c, places in cycles.items() for f, q in places.items()]
    with ArtifactWriter(path, "features", command="test labels", attrs={"d_sae": d_sae, "k": 1}) as w:
        w.write_topk(np.array([[f] for f, _, _ in at], np.int32), np.ones((len(at), 1), np.float32))
        w.write_table("tokens/00000.parquet", pl.DataFrame({
            "doc": np.arange(len(at)), "pos": np.zeros(len(at), np.int32), "cycle": [c for _, c, _ in at],
            "cycle_position": pl.Series([q for _, _, q in at], dtype=pl.Int64)}))
    return path


@pytest.fixture(scope="module")
def calendar_squeezed(tmp_path_factory):
    root = tmp_path_factory.mktemp("calendar")
    features = calendar(root / "features")
    squeezed.codec("squeeze", features, "--m", 8, "--k", 12, "--steps", 600, "--batch-size", 512, "--lr", 1e-2,
                   *NO_FAITHFULNESS, "--out", root / "squeezer")
    return root, features, root / "squeezer"


def test_cyclic_features_lie_on_ordered_circles_above_random_groups(calendar_squeezed) -> None:
    """A bump feature fires on several positions round its cycle and is placed at their circular mean."""
    root, features, sq = calendar_squeezed
    summary, _, _ = analyzed(root, sq, features)
    circles = pl.read_parquet(root / "analysis" / "polytope" / "circles.parquet")
    assert summary["labelled"] == {"month": 12, "weekday": 7}
    assert circles["label"].to_list() == ["month", "weekday"] and circles["size"].to_list() == [12, 7]
    assert circles["members"][0].to_list() == list(range(12))
    off = np.asarray(circles["positions"][0].to_list()) - np.arange(12)  # circular means of the bumps
    assert np.abs((off + 6) % 12 - 6).max() < 0.1, off
    assert (circles["order"] > 0.95).all(), circles
    for c in summary["circles"]:
        assert c["score"] > 0.5 and c["score"] > 3 * c["chance"] and c["p"] <= 0.002, c
        # in order too: shuffled positions rarely do as well (7 weekdays cannot go below 14/7! = 0.0028)
        assert c["order_p"] <= 0.01 and c["order_chance"] < 0.5, c
    assert (root / "analysis" / "polytope" / "circles.png").is_file()
    angles = pl.read_parquet(root / "analysis" / "polytope" / "angles.parquet").filter(pl.col("label").is_not_null())
    for c in circles.iter_rows(named=True):  # angles turned to fit the positions: in order, 2π p / n
        mine = angles.filter(pl.col("label") == c["label"])
        assert mine["feature"].to_list() == c["members"] and mine["position"].to_list() == c["positions"]
        assert np.abs(circular(mine["angle"] - 2 * np.pi * mine["position"] / c["period"])).max() < 0.1, mine


def test_a_circle_labelled_out_of_order_is_a_circle_but_not_in_order(calendar_squeezed, tmp_path) -> None:
    """The calendar's circles, the months labelled in a shuffled order and the weekdays in
    theirs: the months still beat random groups (they are a circle) but not their own
    positions shuffled (they are not in order)."""
    _, _, sq = calendar_squeezed
    shuffled = [11, 7, 2, 10, 0, 1, 4, 6, 9, 5, 3, 8]
    features = labels(tmp_path / "labels", {"month": dict(enumerate(shuffled)),
                                           "weekday": {12 + q: q for q in range(7)}}, d_sae=40)
    summary, _, _ = analyzed(tmp_path, rewritten(sq, tmp_path / "squeezer", features), features)
    month, weekday = summary["circles"]
    assert month["label"] == "month" and month["size"] == 12, month
    assert month["p"] <= 0.01 and month["order"] < 0.5 and month["order_p"] > 0.2, month
    assert month["order_chance"] == pytest.approx(0.35, abs=0.03)  # the order of a shuffled 12-gon (docs)
    assert weekday["order"] > 0.95 and weekday["order_p"] <= 0.01, weekday


def test_the_analysis_does_not_see_a_rotation_of_the_neurons(calendar_squeezed, tmp_path) -> None:
    """Linear neurons can be rotated without changing the Squeezer: nor may the analysis change."""
    root, features, sq = calendar_squeezed
    w = load_file(sq / "weights.safetensors")
    q, r = np.linalg.qr(np.random.default_rng(1).standard_normal((8, 8)))
    rewritten(sq, tmp_path / "rotated", features,
              {**w, "W_enc": w["W_enc"] @ q, "W_dec": q.T @ w["W_dec"], "b_enc": w["b_enc"] @ q})
    params = ("random_groups=200",)
    before = squeezed.analyze(sq, features, out=tmp_path / "a", plugin="polytope", params=params)
    after = squeezed.analyze(tmp_path / "rotated", features, out=tmp_path / "b", plugin="polytope", params=params)
    for key in ("mean_D", "mean_D_chance", "dimensions_per_feature", "edge_share", "groups", "named", "D_at"):
        assert after[key] == pytest.approx(before[key], rel=1e-4, abs=1e-6), key
    for a, b in zip(before["circles"], after["circles"]):
        assert b["score"] == pytest.approx(a["score"], rel=1e-3) and b["p"] == a["p"]
        assert b["order"] == pytest.approx(a["order"], rel=1e-3) and b["order_p"] == a["order_p"]
    angles = [pl.read_parquet(tmp_path / x / "polytope" / "angles.parquet") for x in "ab"]
    assert angles[0].drop("angle").equals(angles[1].drop("angle"))
    assert np.abs(circular(angles[0]["angle"] - angles[1]["angle"])).max() < 1e-3


def rewritten(sq, out, features, weights=None):
    """A copy of the squeezer `sq` made from `features`, with other weights when given."""
    original = open_artifact(sq)
    with ArtifactWriter(out, "squeezer", command="test copy", inputs=[open_artifact(features)],
                        attrs=original.attrs) as w:
        for name in original.files():
            if name != "weights.safetensors" or weights is None:
                w.write_bytes(name, original.read_bytes(name))
        if weights is not None:
            w.write_tensors("weights.safetensors", {k: v.astype(np.float32) for k, v in weights.items()})
    return out


def test_circle_scores_know_a_circle_in_order_from_one_out_of_order() -> None:
    rng = np.random.default_rng(0)
    angles = 2 * np.pi * np.arange(7) / 7
    basis = np.linalg.qr(rng.standard_normal((16, 16)))[0]
    V = unit_rows(np.c_[np.cos(angles), np.sin(angles), np.full(7, 0.5)] @ basis[:3])  # a cone round an axis
    plan, rnd, order = circle_scores(V[None], np.arange(7)[None], 7)
    assert plan[0] == pytest.approx(1) and rnd[0] == pytest.approx(1) and order[0] == pytest.approx(1)
    assert circle_scores(V[None], np.arange(7)[None, ::-1], 7)[2][0] == pytest.approx(1)  # either way round
    shuffled = circle_scores(V[None], np.array([[0, 2, 4, 6, 1, 3, 5]]), 7)[2]  # winds three times: not in order
    assert shuffled[0] == pytest.approx(0, abs=1e-9)
    swapped = circle_scores(V[None], np.array([[0, 2, 1, 3, 4, 5, 6]]), 7)[2]  # one pair of neighbours swapped
    assert 0.7 < swapped[0] < 0.95
    plan, rnd, _ = circle_scores(unit_rows(rng.standard_normal((7, 16)))[None])
    assert plan[0] < 0.8
    theta = circle_plane(V[rng.permutation(7)][None])[2][0]  # the members in any order, unlabelled
    gaps = np.diff(np.r_[np.sort(member_angles(theta)), 2 * np.pi])
    assert gaps == pytest.approx(np.full(7, 2 * np.pi / 7))
    theta = circle_plane(V[None])[2][0]
    for positions in (np.arange(7), np.arange(7)[::-1]):  # labelled: turned and flipped onto 2π p / 7
        assert circular(member_angles(theta, positions, 7) - 2 * np.pi * positions / 7) == pytest.approx(
            np.zeros(7), abs=1e-9)


# Mean order of a regular g-gon with its positions shuffled (docs/analyses.md "Circles").
SHUFFLED_ORDER = {3: 1.0, 4: 0.667, 5: 0.571, 6: 0.525, 7: 0.484, 8: 0.444, 10: 0.391, 12: 0.352}


@pytest.mark.parametrize("g", sorted(SHUFFLED_ORDER))
def test_shuffled_positions_give_the_documented_order(g) -> None:
    """order_null is the baseline the analysis reports as order_chance: exact (every
    ordering) up to 6 members at the default 1000, a sample above. Every turn and flip of
    a g-cycle's labels keeps the order, so p cannot go below 2g / g! = 2 / (g−1)!."""
    theta = 2 * np.pi * np.arange(g) / g
    null, exact = order_null(theta, np.arange(g), g, 50_000, np.random.default_rng(0))
    assert null.mean() == pytest.approx(SHUFFLED_ORDER[g], abs=0.003 if exact else 0.006)
    if exact:
        assert against(1.0, null, exact)["p"] == pytest.approx(2 / np.prod(np.arange(1, g)))
    assert order_null(theta, np.arange(g), g, 1000, np.random.default_rng(0))[1] == (g <= 6)


def unit_rows(V):
    return V / np.linalg.norm(V, axis=1, keepdims=True)


def test_bad_parameters_are_refused_in_one_line(calendar_squeezed, tmp_path) -> None:
    """Values are checked when Params is filled, before anything runs (exit 2); a column
    that turns out not to hold positions is found only in the data (exit 1)."""
    _, features, sq = calendar_squeezed
    for params, code, message in ((["interference=0"], 2, "polytope: -p interference=0.0:"),
                                  (["order_by=cycle"], 2, "-p group_by is 'cycle' too"),
                                  (["group_by=cycle_position", "order_by=cycle"], 1,
                                   "order_by='cycle' must name a column")):
        out = tmp_path / str(len(params)) / str(code)
        result = CliRunner().invoke(app, ["analyze", str(sq), str(features), "-P", "polytope", "--out", str(out),
                                          *[x for p in params for x in ("-p", p)]])
        settings.quiet = False
        assert result.exit_code == code and message in result.output, result.output
        assert not (out / "polytope").exists()


# ----------------------------------------------------------------- themes


@pytest.fixture(scope="module")
def themes(themes_squeezed, tmp_path_factory):
    features, sq, _ = themes_squeezed
    return analyzed(tmp_path_factory.mktemp("themes"), sq, features)


def test_themes_runs_with_its_labels(themes) -> None:
    summary, groups, features = themes
    assert summary["represented"] > 200 and len(features) == 256
    assert groups["size"].sum() == summary["represented"]
    assert summary["edge_share_chance"] > 0.2  # 32 dimensions: chance links everything at |cos| 0.2


def test_themes_weekdays_and_months_are_circular_above_random_groups(themes) -> None:
    """The themes world holds its weekday and month embeddings on circles; its SAE tiles each
    circle with latents that fire on arcs of it, and the Squeezer keeps them in order."""
    summary, _, _ = themes
    assert summary["labelled"]["weekday"] >= 5 and summary["labelled"]["month"] >= 5
    scored = {c["label"]: c for c in summary["circles"]}
    assert set(scored) == {"weekday", "month"}
    assert all(c["score"] > 2 * c["chance"] and c["p"] <= 0.01 for c in scored.values()), scored
