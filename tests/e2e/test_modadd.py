"""The modadd world (a transformer that groks modular addition) and the fourier and stability
analyses on it. The world's answer key is measured from its own weights; the analyses must
find it again from the neurons, and report the SAEs' latents beside their baselines."""

from __future__ import annotations

import math

import polars as pl
import pytest
from squeezed import codec

from codec_cli.worlds import open_world


@pytest.fixture(scope="module")
def world():
    return open_world("modadd")


def test_the_shipped_world_memorises_then_groks(world):
    metrics = world.artifact.json("metrics.json")["model"]
    assert metrics["train_accuracy"] == 1.0 and metrics["test_accuracy"] >= 0.99
    curve = pl.read_parquet(world.path / "curve.parquet")
    assert set(curve.columns) == {"epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy"}
    # Memorised first, generalised later: the grokking gap.
    assert metrics["epoch_train_accuracy_0.99"] < metrics["epoch_test_accuracy_0.99"]
    early = curve.filter(pl.col("epoch") == metrics["epoch_train_accuracy_0.99"]).row(0, named=True)
    assert early["test_accuracy"] < 0.9


def test_its_key_frequencies_carry_the_embedding_and_the_logits(world):
    truth = world.artifact.json("truth/key_frequencies.json")
    keys, p = truth["key_frequencies"], world.artifact.attrs["p"]
    assert 1 <= len(keys) <= 8 and truth["key_energy_share"] >= 0.85
    spectrum = pl.read_parquet(world.path / "truth/spectrum.parquet")
    assert spectrum["energy_share"].sum() == pytest.approx(1.0)
    # Keeping only the key frequencies' logit components keeps the loss low; removing them
    # destroys it (Nanda et al. 2023's restricted and excluded losses).
    assert truth["restricted_loss"] < 0.1 * truth["chance_loss"] and truth["loss"] < 0.01
    assert truth["excluded_loss"] > truth["chance_loss"] == pytest.approx(math.log(p))


def test_the_first_epochs_of_a_rebuild_follow_the_shipped_curve(tmp_path, world):
    """A rebuild replays the shipped run: its first 100 epochs (the learning rate has no decay,
    so they are the same epochs) follow the shipped curve, within 1e-3 relative at epoch 50 and
    2e-2 at epoch 100, as other CPUs' kernels' rounding grows through training (an AVX2 machine
    drifted 4e-3 by epoch 100); a full rebuild takes about ten minutes (docs/worlds.md)."""
    codec("world", "build", "modadd", "-p", "epochs=100", "-p", "sae_steps=1", "-p", "sae_seeds=0",
          "--out", tmp_path / "w")
    mine = pl.read_parquet(tmp_path / "w/curve.parquet")
    shipped = pl.read_parquet(world.path / "curve.parquet").filter(pl.col("epoch") <= 100)
    assert mine["epoch"].to_list() == shipped["epoch"].to_list() == [50, 100]
    for col in ("train_loss", "test_loss"):
        for a, b, rel in zip(mine[col], shipped[col], (1e-3, 2e-2)):
            assert a == pytest.approx(b, rel=rel)


@pytest.fixture(scope="module")
def analysed(tmp_path_factory, world):
    root = tmp_path_factory.mktemp("modadd")
    p = world.artifact.attrs["p"]
    codec("extract", "modadd", "--tokens", p * p, "--out", root / "features")
    result = codec("analyze", root / "features", "-P", "fourier", "--out", root / "analysis")
    return root, result["fourier"]["summary"]


def test_fourier_finds_exactly_the_key_frequencies_from_the_neurons(analysed, world):
    _, summary = analysed
    keys = world.artifact.json("truth/key_frequencies.json")["key_frequencies"]
    neurons = summary["neurons"]
    assert neurons["key_frequencies_found"] == keys and neurons["matches_world"]
    assert neurons["mean_overlap"] > 3 * neurons["shuffled_residues"]


def test_fourier_reports_the_latents_overlap_beside_its_baselines(analysed):
    root, summary = analysed
    latents = summary["latents"]
    assert latents["count"] > 0 and latents["mean_overlap"] > latents["shuffled_residues"]
    assert {"random_directions", "on_key_frequency", "dead"} <= set(latents)
    table = pl.read_parquet(root / "analysis/fourier/latents.parquet")
    assert table["overlap"].min() >= 0 and table["overlap"].max() <= 1 + 1e-9
    assert (root / "analysis/fourier/fourier.png").stat().st_size > 20_000


def test_every_pattern_of_one_frequency_has_overlap_one_and_shuffled_residues_lose_it():
    import numpy as np

    from codec_plugins.fourier import frequency_shares

    p = 13
    a, b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    pure = np.cos(2 * np.pi * 4 * (a + b) / p) + 0.5 * np.sin(2 * np.pi * 4 * a / p)
    shares = frequency_shares(pure.reshape(1, -1), p)[0]
    assert shares[3] == pytest.approx(1.0) and shares.argmax() == 3
    rng = np.random.default_rng(0)
    noise = frequency_shares(rng.standard_normal((50, p * p)), p).max(1)
    assert noise.mean() < 0.3  # a random pattern spreads over the 6 frequencies


def test_stability_of_the_three_seeds_latents(tmp_path):
    codec("compare", "dictionaries", "modadd:mlp", "modadd:mlp-s1", "modadd:mlp-s2", "--out", tmp_path / "c")
    result = codec("analyze", tmp_path / "c", "-P", "stability", "--out", tmp_path / "a")
    s = result["stability"]["summary"]
    assert s["dictionaries"] == 3 and s["stable"] + s["unstable"] == s["live"] > 0
    assert (s["p"] is None) == (s["stable"] == 0) and 0 < s["spearman_p"] <= 1
    assert -1 <= s["spearman_cosine_overlap"] <= 1 and s["found_by_all_live"] <= s["live"]
    latents = pl.read_parquet(tmp_path / "a/stability/latents.parquet")
    stable = latents.filter(pl.col("stable"))
    assert stable["live"].all() and (stable["mean_cosine"] >= 0.7).all() and len(stable) == s["stable"]
    # The report reads the comparison and the analysis of it: stability answered twice, each with its baseline.
    report = codec("report", tmp_path, "--out", tmp_path / "report.html")
    assert report["answered"] == ["stability"] and report["artifacts"] == 2
    page = (tmp_path / "report.html").read_text()
    assert f"{s['stable']} of {s['live']} live latents of modadd:mlp are found by all 3" in page
    assert "against" in page and "for random dictionaries" in page


def test_the_report_reads_the_fourier_analysis_as_geometry(analysed):
    root, summary = analysed
    report = codec("report", root, "--out", root / "report.html")
    assert "geometry" in report["answered"] and report["cards"]["features"] > 0
    page = (root / "report.html").read_text()
    keys = ", ".join(map(str, summary["key_frequencies"]))
    assert f"Fourier circles at key frequencies {keys}" in page


def test_fourier_is_skipped_on_another_world_unless_asked_for(cli, tmp_path):
    """Chosen by its inputs' kinds (a world), it steps aside for a world that is not modadd;
    named with -P, it fails with the reason. Neither writes anything."""
    import json

    toy = open_world("toy").path
    chosen = cli("analyze", toy, "--out", tmp_path / "a", "--json")
    report = json.loads(chosen.stdout)["fourier"]
    assert chosen.exit_code == 0 and report["status"] == "skipped" and "modadd" in report["reason"]
    named = cli("analyze", toy, "-P", "fourier", "--out", tmp_path / "b", "--json")
    report = json.loads(named.stdout)["fourier"]
    assert named.exit_code == 1 and report["status"] == "failed" and "modadd" in report["error"]
    assert not (tmp_path / "a/fourier").exists() and not (tmp_path / "b/fourier").exists()
