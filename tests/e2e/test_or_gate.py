"""or-gate on known answers: toy worlds whose feature pairs are planted mutually
exclusive or always co-occurring (science.md §1, "correlated features"), OR-gate neurons
planted in a Squeezer's weights, the privileged-basis toy world's own answer, and the
co-occurrence counts and exact test against brute force."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from safetensors.numpy import load_file

import squeezed
from codec_cli.artifacts import ArtifactWriter, open_artifact
from codec_plugins.cooccurrence import exclusive_p, occurrences
from codec_plugins.or_gate import Matcher
from conftest import write_features

GROUPS = [list(range(3 * g, 3 * g + 3)) for g in range(6)]  # features 0-17: six exclusive triples
PAIRS = [[18 + 2 * g, 19 + 2 * g] for g in range(4)]  # 18-25: four pairs that always fire together
LONE = list(range(26, 40))  # 26-39: independent


def cosines(squeezer) -> np.ndarray:
    W = load_file(squeezer / "weights.safetensors")["W_enc"]
    unit = W / np.linalg.norm(W, axis=1, keepdims=True)
    return unit @ unit.T


@pytest.fixture(scope="module")
def exclusive(tmp_path_factory):
    root = tmp_path_factory.mktemp("exclusive")
    features, sq, _ = squeezed.toy(root, n=4, sparsity=0.7, groups=("exclusive_groups=0+1,2+3",))
    return sq, squeezed.analyze(sq, features, out=root / "analysis", plugin="or-gate"), root / "analysis/or-gate"


@pytest.fixture(scope="module")
def cooccurring(tmp_path_factory):
    root = tmp_path_factory.mktemp("cooccurring")
    features, sq, _ = squeezed.toy(root, n=4, sparsity=0.9, groups=("cooccur_groups=0+1,2+3",))
    return sq, squeezed.analyze(sq, features, out=root / "analysis", plugin="or-gate"), root / "analysis/or-gate"


def pair(table: pl.DataFrame, i: int, j: int) -> dict:
    rows = table.filter((pl.col("i") == i) & (pl.col("j") == j)).to_dicts()
    assert rows, f"({i}, {j}) are not roommates"
    return rows[0]


def test_exclusive_pairs_are_antipodal_or_gates(exclusive) -> None:
    sq, summary, out = exclusive
    cos = cosines(sq)
    assert cos[0, 1] < -0.9 and cos[2, 3] < -0.9, cos
    pairs = pl.read_parquet(out / "pairs.parquet")
    for i, j in [(0, 1), (2, 3)]:
        row = pair(pairs, i, j)
        assert row["cooccur"] == 0 and row["expected"] > 100 and row["exclusive"], row
        assert row["map_ij"] < -0.5  # strong negative interference, harmless because they never meet
    assert summary["exclusive_pairs"] == 2
    assert summary["map_vs_cooccurrence"]["mean_map_exclusive"] < summary["map_vs_cooccurrence"]["mean_map_other"]


def test_cooccurring_pairs_are_orthogonal_and_not_or_gates(cooccurring) -> None:
    sq, summary, out = cooccurring
    cos = cosines(sq)
    assert abs(cos[0, 1]) < 0.2 and abs(cos[2, 3]) < 0.2, cos
    pairs = pl.read_parquet(out / "pairs.parquet")
    for i, j in [(0, 1), (2, 3)]:
        row = pair(pairs, i, j)
        assert row["lift"] > 5 and not row["exclusive"], row
    assert summary["exclusive_pairs"] == 0 and summary["or_gate_neurons"] == 0


def test_pair_counts_match_a_brute_force_count(tmp_path) -> None:
    art = open_artifact(write_features(tmp_path / "f", seed=3, d_sae=30, k=5, rows=80))
    dense = np.zeros((160, 30), dtype=bool)
    tokens = pl.concat([art.table(n) for n in art.files("tokens/")])
    for s, shard in enumerate(art.topk()):
        for r, row in enumerate(shard.indices):
            dense[s * 80 + r, row[row >= 0]] = True
    i, j = np.triu_indices(30, 1)
    occ = occurrences(art)
    assert (occ.counts == dense.sum(0)).all()
    assert (occ.pairs(i, j) == (dense[:, i] & dense[:, j]).sum(0)).all()
    # Blocks of 3 positions of one document: a pair counts once per block where both fire.
    unit = tokens["doc"].to_numpy() * 100 + tokens["pos"].to_numpy() // 3
    blocks = np.stack([dense[unit == u].any(0) for u in np.unique(unit)])
    occ3 = occurrences(art, window=3)
    assert occ3.units == len(blocks)
    assert (occ3.pairs(i, j) == (blocks[:, i] & blocks[:, j]).sum(0)).all()


def slot_labels(features: Path, share: float = 0.5) -> pl.DataFrame:
    """The themes world's ground truth per feature: the document-level slot value (which
    place, which name) that carries at least `share` of the feature's activation mass."""
    art = open_artifact(features)
    acts, tokens = [], []
    for shard, name in zip(art.topk(), art.files("tokens/")):
        t = art.table(name)
        rows, slots = np.nonzero(shard.indices >= 0)
        acts.append(pl.DataFrame({"feature": shard.indices[rows, slots],
                                  "value": shard.values[rows, slots].astype(float),
                                  "window": t["window"].to_numpy()[rows]}))
        tokens.append(t.select("window", "exclusive_group", "exclusive_index"))
    acts = pl.concat(acts)
    docs = pl.concat(tokens).drop_nulls().unique(["window", "exclusive_group"])
    total = acts.group_by("feature").agg(total=pl.col("value").sum())
    return (acts.join(docs, on="window").group_by("feature", "exclusive_group", "exclusive_index")
            .agg(pl.col("value").sum()).join(total, on="feature")
            .with_columns(share=pl.col("value") / pl.col("total")).filter(pl.col("share") >= share)
            .select("feature", "exclusive_group", "exclusive_index"))


def test_themes_places_avoid_each_other_per_document(themes_squeezed, tmp_path) -> None:
    """Two places (or two names) never share a document: at the document level
    (window=0), roommates that belong to different places co-occur far below chance, and
    no roommates of the same place are called exclusive. The shipped SAE has no latent for
    a single place, so few such pairs exist (docs/analyses.md has the wider SAE's result);
    and its linear Squeezer's roommates select little, which or-gate says."""
    features, sq, _ = themes_squeezed
    summary = squeezed.analyze(sq, features, out=tmp_path, plugin="or-gate", params=("window=0", "threshold=0.5"))
    assert summary["basis"].startswith("arbitrary") and summary["selectivity"]["roommate_pair_share"] > 0.5
    labels = slot_labels(features)
    assert labels["exclusive_group"].n_unique() == 2 and len(labels) >= 20
    pairs = (pl.read_parquet(tmp_path / "or-gate/pairs.parquet")
             .join(labels.rename({"feature": "i", "exclusive_group": "gi", "exclusive_index": "xi"}), on="i")
             .join(labels.rename({"feature": "j", "exclusive_group": "gj", "exclusive_index": "xj"}), on="j")
             .filter(pl.col("gi") == pl.col("gj")))
    other = pairs.filter(pl.col("xi") != pl.col("xj"))
    same = pairs.filter(pl.col("xi") == pl.col("xj"))
    assert len(other) >= 5
    assert other["lift"].median() < 0.2  # the matched random pairs: about 1
    assert pl.read_parquet(tmp_path / "or-gate/random_pairs.parquet")["lift"].median() > 0.8
    assert not same["exclusive"].any()


def test_features_that_all_fire_equally_often(tmp_path) -> None:
    """Planted: six features take turns, one per token, so each fires on exactly a sixth
    of the tokens and no two ever meet. Their frequencies make one bin for the chance
    baseline (where drawing failed with `high <= 0`). Every roommate pair is exclusive,
    but every pair of features is a roommate pair, so no null neuron can be drawn outside
    them: there is nothing to compare with, and no neuron is called an OR-gate."""
    rows, d_sae = 600, 6
    features = tmp_path / "features"
    with ArtifactWriter(features, "features", command="test", params={}, attrs={"d_sae": d_sae, "k": 1}) as w:
        w.write_topk((np.arange(rows) % d_sae)[:, None].astype(np.int32), np.ones((rows, 1), np.float32))
        w.write_table("tokens/00000.parquet", {"doc": (np.arange(rows) // 50).astype(np.int64),
                                               "pos": (np.arange(rows) % 50).astype(np.int32)})
    squeezer = tmp_path / "squeezer"
    squeezed.codec("squeeze", features, "--m", 2, "--k", 1, "--steps", 300, "--lr", 1e-2, "--eval-rows", 120,
                   "--batch-size", 64, "--no-faithfulness", "--out", squeezer)
    summary = squeezed.analyze(squeezer, features, out=tmp_path / "analysis", plugin="or-gate")
    assert summary["polysemantic_neurons"] > 0
    assert summary["exclusive_pairs"] == summary["pairs"] > 0
    assert summary["mean_degree"] == 1 and summary["mean_degree_chance"] is None
    assert summary["or_gate_neurons"] == 0


def test_matched_features_come_from_their_own_frequency_bin() -> None:
    rng = np.random.default_rng(0)
    same = Matcher(np.full(6, 50), np.ones(6, dtype=bool), bins=20, rng=rng)
    assert set(same.like(np.arange(6)).tolist()) <= set(range(6))
    counts = np.array([10] * 10 + [1000] * 10 + [0])
    two = Matcher(counts, np.ones(21, dtype=bool), bins=4, rng=rng)  # 2 bins: each holds at least MIN_BIN
    drawn = two.like(np.array([0, 1, 13, 14] * 20))
    assert set(drawn[::4]) | set(drawn[1::4]) <= set(range(10))
    assert set(drawn[2::4]) | set(drawn[3::4]) <= set(range(10, 20))
    assert two.like(np.array([20]))[0] < 10  # a feature that never fires is matched among the rarest
    none = Matcher(np.zeros(3, dtype=np.int64), np.ones(3, dtype=bool), bins=4, rng=rng)
    assert none.like(np.array([0, 2])).tolist() == [0, 2]


def test_matched_draws_avoid_the_roommates() -> None:
    rng = np.random.default_rng(1)
    counts = np.r_[np.full(30, 100), np.full(30, 5000)]
    matcher = Matcher(counts, np.ones(60, dtype=bool), bins=2, rng=rng)
    for _ in range(50):
        members = rng.choice(60, 6, replace=False)
        drawn = matcher.like(members, avoid=members)
        assert len(set(drawn.tolist())) == 6 and not set(drawn.tolist()) & set(members.tolist())
        assert ((counts[drawn] > 1000) == (counts[members] > 1000)).all()  # still frequency-matched
    tiny = Matcher(np.full(4, 10), np.ones(4, dtype=bool), bins=1, rng=rng)  # a bin too small: the pool serves
    assert sorted(tiny.like(np.array([0, 1]), avoid=[0, 1]).tolist()) == [2, 3]


def test_exact_test_matches_the_hypergeometric_law() -> None:
    from scipy.stats import hypergeom

    rng = np.random.default_rng(0)
    N, n_i, n_j = 4000, rng.integers(1, 1500, 500), rng.integers(1, 1500, 500)
    c = np.minimum(rng.integers(0, 200, 500), np.minimum(n_i, n_j))
    below = c < n_i * n_j / N
    exact = hypergeom.cdf(c, N, n_i, n_j)
    assert exclusive_p(c, n_i, n_j, N)[below] == pytest.approx(exact[below], rel=1e-8, abs=1e-300)
    # A pair that never meets although 20 meetings were expected: P = C(N-n_i, n_j) / C(N, n_j).
    assert exclusive_p(np.array([0]), np.array([400]), np.array([200]), N)[0] == pytest.approx(
        hypergeom.pmf(0, N, 400, 200), rel=1e-10)


def planted_squeezer(features: Path, out: Path, neurons: list[list[int]], n: int) -> Path:
    """A ReLU Squeezer whose neuron k carries exactly the features neurons[k] (weight 1,
    threshold 0), every feature represented: OR-gates planted in the weights."""
    F, M = n, len(neurons)
    W = np.zeros((F, M), np.float32)
    for k, members in enumerate(neurons):
        W[members, k] = 1.0
    art = open_artifact(features)
    stats = art.table("features.parquet")
    with ArtifactWriter(out, "squeezer", command="test plant", inputs=[art],
                        attrs={"n_features": F, "n_neurons": M, "tied": True, "neuron_act": "relu"}) as w:
        w.write_tensors("weights.safetensors", {"W_enc": W, "b_enc": np.zeros(M, np.float32), "W_dec": W.T.copy(),
                                                "b_dec": np.zeros(F, np.float32), "scale": np.ones(F, np.float32)})
        w.write_table("features.parquet", {"feature": np.arange(F, dtype=np.int32), "status": ["represented"] * F,
                                           "frequency": stats["frequency"].to_numpy(), "mean": stats["mean"].to_numpy(),
                                           "mse": np.zeros(F)})
    return out


def privileged_toy(root: Path, groups: bool) -> Path:
    """Features of the privileged-basis toy world (h = ReLU(W x)) through its oracle SAE:
    40 features at S = 0.8, with GROUPS exclusive and PAIRS co-occurring when `groups`."""
    planted = (["-p", "exclusive_groups=" + ",".join("+".join(map(str, g)) for g in GROUPS),
                "-p", "cooccur_groups=" + ",".join("+".join(map(str, g)) for g in PAIRS)] if groups else [])
    squeezed.codec("world", "build", "toy", "-p", "n_features=40", "-p", "n_hidden=26", "-p", "sparsity=0.8",
                   "-p", "privileged=true", "-p", "sae_steps=1", "-p", "sae_k=1", "-p", "n_samples=16",
                   "-p", "steps=1", "-p", "n_instances=1", *planted, "--out", root / "world")
    squeezed.codec("extract", root / "world", "--sae", "oracle", "--tokens", 40_000, "--k", 40,
                   "--out", root / "features")
    return root / "features"


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = tmp_path_factory.mktemp("planted")
    features = privileged_toy(root, groups=True)
    neurons = GROUPS + PAIRS + [LONE[k:k + 3] for k in range(0, 12, 3)]
    sq = planted_squeezer(features, root / "squeezer", neurons, 40)
    return features, squeezed.analyze(sq, features, out=root / "analysis", plugin="or-gate"), root / "analysis/or-gate"


def test_planted_or_gates_are_found_with_their_groups(planted) -> None:
    """Six neurons each carry one exclusive triple, four carry an always-co-active pair and
    four carry three independent features. The OR-gates found are the six, and their
    roommates are the planted groups."""
    _, summary, out = planted
    neurons = pl.read_parquet(out / "neurons.parquet")
    found = set(neurons.filter("or_gate")["neuron"].to_list())
    truth = set(range(len(GROUPS)))
    precision, recall = len(found & truth) / max(len(found), 1), len(found & truth) / len(truth)
    assert precision >= 0.8 and recall >= 0.8, (found, neurons)
    pairs = pl.read_parquet(out / "pairs.parquet")
    planted_pairs = {(g[a], g[b]) for g in GROUPS for a in range(3) for b in range(a + 1, 3)}
    flagged = {(r["i"], r["j"]) for r in pairs.filter("exclusive").iter_rows(named=True)}
    assert flagged == planted_pairs  # precision and recall 1 on pairs
    assert not any(n in found for n in range(len(GROUPS), len(GROUPS) + len(PAIRS)))  # co-active: never gates
    assert summary["prevalence"] == pytest.approx(6 / 14) and summary["prevalence_chance"] <= 0.1
    assert summary["mean_degree"] > 0.4 > summary["mean_degree_chance"]


def test_the_chance_baseline_holds_no_tested_pair(planted) -> None:
    _, _, out = planted
    tested = {(r["i"], r["j"]) for r in pl.read_parquet(out / "pairs.parquet").iter_rows(named=True)}
    null = pl.read_parquet(out / "random_pairs.parquet")
    assert len(null) > 0 and not tested & {(r["i"], r["j"]) for r in null.iter_rows(named=True)}
    assert (null["i"] != null["j"]).all()


def test_independent_features_give_chance_prevalence(tmp_path) -> None:
    """Nothing planted: the same neuron shapes over independent features are OR-gates no
    more often than null neurons are."""
    features = privileged_toy(tmp_path, groups=False)
    neurons = [list(range(k, k + 3)) for k in range(0, 39, 3)]
    sq = planted_squeezer(features, tmp_path / "squeezer", neurons, 40)
    summary = squeezed.analyze(sq, features, out=tmp_path / "analysis", plugin="or-gate")
    assert summary["prevalence"] <= 0.1 and summary["prevalence_chance"] <= 0.1
    assert abs(summary["mean_degree"] - summary["mean_degree_chance"]) < 0.05
    assert summary["exclusive_pairs"] == 0


def test_a_trained_privileged_squeezer_packs_exclusive_features_apart(planted, tmp_path) -> None:
    """What a ReLU Squeezer trained on the planted world does (docs/analyses.md): it puts
    most exclusive features on complementary neurons (each inhibits where the other
    excites) rather than on shared ones, and no neuron is an OR-gate after the FDR."""
    features, _, _ = planted
    sq = tmp_path / "squeezer"
    squeezed.codec("squeeze", features, "--m", 26, "--k", 40, "--neuron-act", "relu", "--restarts", 8,
                   "--steps", 3000, "--lr", 1e-2, "--no-faithfulness", "--out", sq)
    summary = squeezed.analyze(sq, features, out=tmp_path / "analysis", plugin="or-gate")
    assert summary["selectivity"]["roommate_pair_share"] < 0.5
    pairs = pl.read_parquet(tmp_path / "analysis/or-gate/pairs.parquet")
    roommates = {(r["i"], r["j"]) for r in pairs.iter_rows(named=True)}
    planted_pairs = {(g[a], g[b]) for g in GROUPS for a in range(3) for b in range(a + 1, 3)}
    assert len(planted_pairs & roommates) < len(planted_pairs) / 2
    assert not pairs.filter(pl.col("i").is_in(sum(PAIRS, [])) & pl.col("exclusive")).height
    assert summary["or_gate_neurons"] == 0
