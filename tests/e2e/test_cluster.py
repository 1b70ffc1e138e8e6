"""`codec cluster` and the `themes` atlas: planted directions (themes, noise, and nothing at
all), a planted atlas whose answer is known both ways, and the shipped themes world."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import adjusted_rand_score

from codec_cli.artifacts import ArtifactWriter, open_artifact
from codec_cli.config import ClusterConfig
from codec_cli.stages.cluster import NOISE, cluster_vectors, unit
from conftest import write_features

NOWHERE = Path("unused")  # cluster_vectors reads no artifact


def planted(seed: int = 0, themes: int = 6, per: int = 40, d: int = 64, noise: int = 60, spread: float = 0.06):
    """(X, truth): `per` directions around each of `themes` random centroids (cosine ≈ 0.9 to it)
    plus `noise` uniformly random directions (truth -1)."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.standard_normal((themes, d)))
    X = np.vstack([unit(c + spread * rng.standard_normal((per, d))) for c in centres]
                  + [unit(rng.standard_normal((noise, d)))])
    return X, np.r_[np.repeat(np.arange(themes), per), np.full(noise, -1)]


@pytest.mark.parametrize("method", ["umap-hdbscan", "spectral", "graph"])
def test_planted_directions_come_back_as_themes_and_the_noise_as_noise(method):
    X, truth = planted()
    found = cluster_vectors(X, ClusterConfig(NOWHERE, method=method, themes=7 if method == "spectral" else None))
    members = truth >= 0
    assert adjusted_rand_score(truth[members], found.labels[members]) >= 0.9
    assert (found.labels[members] == NOISE).mean() <= 0.1
    assert (found.labels[~members] == NOISE).mean() >= 0.8
    assert found.labels.max() + 1 == 6
    assert found.map.shape == (len(X), 2) and np.isfinite(found.map).all()


def test_nothing_planted_finds_no_theme():
    rng = np.random.default_rng(1)
    X = unit(rng.standard_normal((300, 64)))
    found = cluster_vectors(X, ClusterConfig(NOWHERE))
    assert (found.labels == NOISE).mean() >= 0.95


def test_same_inputs_and_seed_give_the_same_themes():
    X, _ = planted(seed=2)
    a, b = (cluster_vectors(X, ClusterConfig(NOWHERE, seed=3)) for _ in range(2))
    assert np.array_equal(a.labels, b.labels) and np.array_equal(a.map, b.map)


def hand_made(root: Path, features: Path, assign: np.ndarray, theme: np.ndarray, M: int) -> tuple[Path, Path]:
    """A squeezer whose ReLU neuron assign[f] alone carries atom f, and a themes artifact giving
    atom f theme[f], both made from `features` (docs/artifacts.md: what the analyses read)."""
    F = len(assign)
    feats = open_artifact(features)
    W = np.zeros((F, M), dtype=np.float32)
    W[np.arange(F), assign] = 1.0
    with ArtifactWriter(root / "squeezer", "squeezer", command="test", inputs=[feats],
                        attrs={"tied": True, "neuron_act": "relu"}) as w:
        w.write_tensors("weights.safetensors", {"W_enc": W, "W_dec": W.T.copy(), "b_enc": np.zeros(M, np.float32)})
        w.write_table("features.parquet", {"feature": np.arange(F, dtype=np.int32), "status": ["represented"] * F,
                                           "frequency": np.full(F, 0.1), "mse": np.zeros(F), "mean": np.ones(F)})
    T = int(theme.max()) + 1
    with ArtifactWriter(root / "themes", "themes", command="test", inputs=[feats]) as w:
        w.write_table("atoms.parquet", {"atom": np.arange(F, dtype=np.int32), "theme": theme.astype(np.int32)})
        w.write_table("themes.parquet", {"theme": np.arange(T, dtype=np.int32), "label": [f"t{t}" for t in range(T)],
                                         "size": np.bincount(theme[theme >= 0], minlength=T)})
    return root / "squeezer", root / "themes"


@pytest.mark.parametrize("packing", ["together", "apart", "shuffled"])
def test_the_atlas_tells_themes_packed_together_from_themes_spread_apart(tmp_path, cli, packing):
    F, T, M = 40, 4, 8
    features = write_features(tmp_path / "features", d_sae=F)
    theme = np.repeat(np.arange(T), F // T)  # atoms 0-9 theme 0, 10-19 theme 1, …
    if packing == "together":  # each neuron holds 5 atoms of one theme
        assign = np.arange(F) // 5
    elif packing == "apart":  # neuron n holds atoms n, n+8, …, n+32: themes 0, 1, 2, 3 and 0 again
        assign = np.arange(F) % M
        theme = (np.arange(F) // M) % T
    else:  # no relation between neurons and themes
        assign = np.random.default_rng(0).permutation(np.arange(F) % M)
    sq, th = hand_made(tmp_path, features, assign, theme, M)
    result = cli("analyze", sq, th, "-P", "themes", "-p", "draws=200", "--out", tmp_path / "analysis", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)["themes"]["summary"]
    pairs = summary["same_theme_pairs"]
    neurons = pl.read_parquet(tmp_path / "analysis/themes/neurons.parquet")
    if packing == "together":
        assert summary["entropy"]["mean"] == 0 and summary["purity"] == 1
        assert summary["entropy"]["chance"] > 1 and summary["entropy"]["p_purer"] < 0.01
        assert pairs["ratio"] > 2 and pairs["p_together"] < 0.01
    elif packing == "apart":
        assert pairs["observed"] == M and pairs["chance"] > 2 * M and pairs["p_apart"] < 0.01
        assert summary["entropy"]["mean"] > summary["entropy"]["chance"]
    else:
        assert 0.05 < pairs["p_together"] and 0.05 < pairs["p_apart"]
    assert neurons["entropy"].max() <= np.log2(T) + 1e-9
    spread = pl.read_parquet(tmp_path / "analysis/themes/themes.parquet")
    assert spread["neurons"].to_list() == [len(set(assign[theme == t])) for t in range(T)]


def test_the_atlas_refuses_themes_of_other_atoms(tmp_path, cli):
    F, M = 40, 8
    one = write_features(tmp_path / "one", d_sae=F, seed=0)
    other = write_features(tmp_path / "other", d_sae=F, seed=1)
    sq, _ = hand_made(tmp_path / "a", one, np.arange(F) % M, np.arange(F) % 4, M)
    _, th = hand_made(tmp_path / "b", other, np.arange(F) % M, np.arange(F) % 4, M)
    result = cli("analyze", sq, th, "-P", "themes", "--out", tmp_path / "analysis")
    assert result.exit_code != 0
    assert "different features" in result.output and not (tmp_path / "analysis/themes").exists()


# --------------------------------------------------------------------------- the themes world


def planted_labels(features: Path, F: int) -> tuple[np.ndarray, np.ndarray]:
    """(topic, cycle) per atom, from the world's ground truth in the token tables: the topic of
    the documents an atom fires in, where at least 80 % of its activation falls in documents of
    one topic (a document's topic is that of its topic words; each document has one), and the
    cycle (weekday, month) whose tokens take at least 80 % of its activation. "" where none."""
    art = open_artifact(features)
    topics = sorted(t for t in pl.read_parquet(art.path / art.files("tokens/")[0])["theme"].unique().to_list() if t)
    by_topic, by_cycle, total = np.zeros((F, len(topics))), np.zeros((F, 2)), np.zeros(F)
    for table, shard in zip(art.files("tokens/"), art.files("shards/")):
        tokens = art.table(table)
        doc = tokens.join(tokens.drop_nulls("theme").group_by("window").agg(pl.col("theme").first().alias("topic")),
                          on="window", how="left", maintain_order="left")["topic"].to_list()
        doc = np.array([topics.index(t) if t is not None else -1 for t in doc])
        cyc = np.array([("weekday", "month").index(c) if c in ("weekday", "month") else -1
                        for c in tokens["cycle"].to_list()])
        top = art.shard(shard)
        rows, slots = np.nonzero(top.indices >= 0)
        f, v = top.indices[rows, slots], top.values[rows, slots].astype(np.float64)
        np.add.at(total, f, v)
        np.add.at(by_topic, (f[doc[rows] >= 0], doc[rows][doc[rows] >= 0]), v[doc[rows] >= 0])
        np.add.at(by_cycle, (f[cyc[rows] >= 0], cyc[rows][cyc[rows] >= 0]), v[cyc[rows] >= 0])
    with np.errstate(invalid="ignore", divide="ignore"):
        share, cshare = by_topic / total[:, None], by_cycle / total[:, None]
    topic = np.where(np.nan_to_num(share.max(1)) >= 0.8, np.array(topics)[share.argmax(1)], "")
    cyc = np.where(np.nan_to_num(cshare[:, 0]) >= 0.8, "weekday", np.where(np.nan_to_num(cshare[:, 1]) >= 0.8,
                                                                            "month", ""))
    return topic, cyc


@pytest.fixture(scope="module")
def resid0(themes_resid0):
    """The themes world's resid0 features clustered twice: by which atoms fire in the same
    documents (conftest), and by decoder direction."""
    import squeezed

    root, summary = themes_resid0
    if not (root / "by-decoder").exists():
        squeezed.codec("cluster", root / "features", "--out", root / "by-decoder")
    return root, summary


def test_themes_world_atoms_cluster_by_their_planted_topic(resid0):
    root, summary = resid0
    atoms = pl.read_parquet(root / "themes/atoms.parquet")
    topic, _ = planted_labels(root / "features", len(atoms))
    theme = atoms["theme"].to_numpy()
    has = (topic != "") & (theme != NOISE)
    assert (topic != "").sum() >= 30 and has.sum() >= 0.8 * (topic != "").sum()
    assert adjusted_rand_score(topic[has], theme[has]) >= 0.8
    assert summary["themes"] >= 8


def test_themes_world_weekdays_and_months_have_themes_of_their_own(resid0):
    """The cycles are planted in the geometry (each on a circle in a plane of its own), so by
    decoder direction: the theme holding most of a cycle's atoms is made of that cycle's atoms."""
    root, _ = resid0
    theme = pl.read_parquet(root / "by-decoder/atoms.parquet")["theme"].to_numpy()
    _, cycle = planted_labels(root / "features", len(theme))
    main = {}
    for mine, other in (("weekday", "month"), ("month", "weekday")):
        placed = theme[(cycle == mine) & (theme != NOISE)]
        assert len(placed) >= 0.5 * (cycle == mine).sum() >= 10
        values, counts = np.unique(placed, return_counts=True)
        main[mine] = values[counts.argmax()]
        members = cycle[theme == main[mine]]
        assert (members == mine).mean() >= 0.8 and not (members == other).any()
    assert main["weekday"] != main["month"]


def test_themes_world_themes_are_labelled_and_beat_random_groups(resid0):
    root, summary = resid0
    themes = pl.read_parquet(root / "themes/themes.parquet")
    assert themes["size"].to_list() == sorted(themes["size"].to_list(), reverse=True)
    assert themes["size"].min() >= 5 and all(len(t) > 0 for t in themes["top_tokens"].to_list())
    assert (themes["coactivation"] > themes["coactivation_baseline"]).mean() >= 0.9
    assert summary["coherence"]["coactivation"]["above_chance"] >= 0.8
    art = open_artifact(root / "themes", "themes")
    assert art.inputs[0]["kind"] == "features" and (root / "themes/map.png").stat().st_size > 20_000
    # One topic's words name one theme: the theme holding the atom that fires on "planet" is labelled
    # by astronomy words.
    truth = pl.read_parquet(Path(__file__).parents[2] / "codec_cli/data/worlds/themes/truth/tokens.parquet")
    astronomy = set(truth.filter(pl.col("theme") == "astronomy")["token"].to_list())
    labelled = [set(t) & astronomy for t in themes["top_tokens"].to_list()]
    assert max(len(s) for s in labelled) >= 3


def test_cluster_is_deterministic_and_the_atlas_reads_it(themes_squeezed, tmp_path, cli):
    features, squeezer, _ = themes_squeezed
    runs = []
    for name in ("a", "b"):
        result = cli("-q", "cluster", features, "--out", tmp_path / name, "--json")
        assert result.exit_code == 0, result.output
        runs.append(open_artifact(tmp_path / name).fingerprint)
    assert runs[0] == runs[1]
    result = cli("analyze", squeezer, tmp_path / "a", "-P", "themes", "--out", tmp_path / "analysis", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)["themes"]["summary"]
    assert summary["neurons"] == 32 and summary["themes"] == open_artifact(tmp_path / "a").attrs["themes"]
    assert summary["entropy"]["chance"] is not None and summary["same_theme_pairs"]["chance"] > 0
    assert (tmp_path / "analysis/themes/atlas.png").is_file()
