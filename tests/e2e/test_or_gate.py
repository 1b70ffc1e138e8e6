"""or-gate on known answers: toy worlds whose feature pairs are planted mutually
exclusive or always co-occurring (science.md §1, "correlated features"), and the
co-occurrence counts against a brute-force count."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from safetensors.numpy import load_file

import squeezed
from codec_cli.artifacts import ArtifactWriter, open_artifact
from codec_plugins.cooccurrence import occurrences
from codec_plugins.or_gate import Matcher
from conftest import write_features


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


def test_themes_exclusive_slots_are_or_gate_candidates_above_chance(themes_squeezed, tmp_path) -> None:
    """Two places (or two names) never share a document: features of different places
    sharing a neuron are exclusive within a context, far more often than chance pairs."""
    features, sq, _ = themes_squeezed
    summary = squeezed.analyze(sq, features, out=tmp_path, plugin="or-gate", params=("window=64", "threshold=0.5"))
    labels = slot_labels(features)
    assert labels["exclusive_group"].n_unique() == 2 and len(labels) >= 20
    pairs = (pl.read_parquet(tmp_path / "or-gate/pairs.parquet")
             .join(labels.rename({"feature": "i", "exclusive_group": "gi", "exclusive_index": "xi"}), on="i")
             .join(labels.rename({"feature": "j", "exclusive_group": "gj", "exclusive_index": "xj"}), on="j")
             .filter(pl.col("gi") == pl.col("gj")))
    other = pairs.filter(pl.col("xi") != pl.col("xj"))
    same = pairs.filter(pl.col("xi") == pl.col("xj"))
    assert len(other) >= 20
    assert other["lift"].median() < 0.2 < 2 < same["lift"].median()
    chance = summary["exclusive_share_chance"]
    assert other["exclusive"].mean() > max(0.15, 5 * chance), (other["exclusive"].mean(), chance)
    assert not same["exclusive"].any()


def test_features_that_all_fire_equally_often(tmp_path) -> None:
    """Planted: six features take turns, one per token, so each fires on exactly a sixth
    of the tokens and no two ever meet. Their frequencies make one bin for the chance
    baseline (where drawing failed with `high <= 0`), and every polysemantic neuron
    is an OR-gate."""
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
    assert summary["or_gate_neurons"] == summary["polysemantic_neurons"]
    assert summary["exclusive_pairs"] == summary["pairs"] > 0


def test_matched_features_come_from_their_own_frequency_bin() -> None:
    rng = np.random.default_rng(0)
    same = Matcher(np.full(6, 50), np.ones(6, dtype=bool), bins=20, rng=rng)
    assert set(same.like(np.arange(6)).tolist()) <= set(range(6))
    counts = np.array([10, 10, 10, 1000, 1000, 1000, 0])
    two = Matcher(counts, np.ones(7, dtype=bool), bins=4, rng=rng)
    drawn = two.like(np.array([0, 1, 3, 4] * 20))
    assert set(drawn[::4]) | set(drawn[1::4]) <= {0, 1, 2} and set(drawn[2::4]) | set(drawn[3::4]) <= {3, 4, 5}
    assert two.like(np.array([6]))[0] in {0, 1, 2}  # a feature that never fires is matched among the rarest
    none = Matcher(np.zeros(3, dtype=np.int64), np.ones(3, dtype=bool), bins=4, rng=rng)
    assert none.like(np.array([0, 2])).tolist() == [0, 2]
