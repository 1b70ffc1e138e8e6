"""compare neurons on known answers: the privileged-basis toy world, whose real neurons and
true features are known (Elhage et al. 2022), squeezed from its true features (the oracle
SAE) into as many ReLU neurons; the same Squeezer against itself; and the inputs that
cannot support a comparison, each refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from safetensors.numpy import load_file

from codec_cli.artifacts import ArtifactWriter, open_artifact
from codec_cli.sources.features import NEURONS, shard_number, top_rows
from codec_cli.stages.compare_neurons import Encoder
from squeezed import codec

N_FEATURES, N_HIDDEN, DECAY = 8, 4, 0.7


@pytest.fixture(scope="module")
def dense(tmp_path_factory):
    """Dense features (S = 0) of decaying importance: the model keeps the 4 most important in
    one neuron each and drops the rest, a packing unique up to the order of the neurons, so a
    trained Squeezer must find the very neurons the model has."""
    root = tmp_path_factory.mktemp("compare-dense")
    codec("world", "build", "toy", "-p", "privileged=true", "-p", f"n_features={N_FEATURES}",
          "-p", f"n_hidden={N_HIDDEN}", "-p", "sparsity=0", "-p", f"importance_decay={DECAY}",
          "-p", "sae_steps=1", "-p", "n_samples=16", "--out", root / "world")
    codec("extract", root / "world", "--sae", "oracle", "--neurons", "hook_hidden", "--tokens", 40_000,
          "--k", N_FEATURES, "--out", root / "features")
    pl.DataFrame({"feature": range(N_FEATURES), "importance": [DECAY**i for i in range(N_FEATURES)]}).write_parquet(
        root / "importance.parquet")
    codec("squeeze", root / "features", "--m", N_HIDDEN, "--k", N_FEATURES, "--neuron-act", "relu", "--restarts", 8,
          "--steps", 3000, "--lr", 1e-2, "--importance", root / "importance.parquet", "--no-faithfulness",
          "--out", root / "squeezer")
    summary = codec("compare", "neurons", root / "squeezer", "--draws", 50, "--out", root / "comparison")
    return root, summary


def test_a_trained_squeezer_finds_the_models_own_neurons(dense) -> None:
    root, s = dense
    assert s["matched"] == N_HIDDEN and s["basis"].startswith("privileged")
    assert s["matched_correlation"] >= 0.95, s
    random = s["chance"]["random"]
    assert random["mean"] < 0.6 and s["matched_correlation"] > random["mean"] + 5 * random["sd"], random
    assert s["p_value"] == s["p_value_random"] == pytest.approx(1 / 51)


def test_the_report_answers_whether_synthetic_neurons_match_real_ones(dense, tmp_path) -> None:
    """Features, squeezer and comparison on one page: the answer beside both its baselines, and a
    card per synthetic neuron (the toy world has no tokens: a row shows its true features)."""
    root, s = dense
    report = codec("report", root, "--out", tmp_path / "report.html")
    assert {"neurons", "faithfulness"} <= set(report["answered"]) and report["cards"]["neurons"] == N_HIDDEN
    page = (tmp_path / "report.html").read_text()
    assert f"matched correlation {s['matched_correlation']:.3g} against {s['chance']['random']['mean']:.3g}" in page
    assert 'id="neuron-squeezer-0"' in page and "active [" in page


def test_shuffled_tokens_score_within_noise_of_zero(dense) -> None:
    _, s = dense
    shuffled = s["chance"]["shuffled"]
    # The best matching of 4 × 4 noise correlations over 8,192 rows: a few 1/√n above 0.
    assert shuffled["draws"] == 50 and abs(shuffled["mean"]) < 0.05, shuffled


def test_the_matching_pairs_neurons_that_carry_the_same_feature(dense) -> None:
    """The known answer: real neuron r carries the feature with the largest weight in row r of
    the toy model's W; synthetic neuron s the one with the largest in column s of W_enc."""
    root, s = dense
    W = load_file(root / "world/model/weights.safetensors")["W"]  # [m, n]
    W_enc = load_file(root / "squeezer/weights.safetensors")["W_enc"]  # [n, M]
    matches = pl.read_parquet(root / "comparison/matches.parquet")
    assert sorted(matches["real"].to_list()) == list(range(N_HIDDEN))
    for row in matches.iter_rows(named=True):
        assert np.argmax(W_enc[:, row["synthetic"]]) == np.argmax(W[row["real"]]), row
        assert row["real"] == row["best_real"] and row["jaccard"] == 1.0, row
    assert s["roommates"]["jaccard"] == 1.0 and s["roommates"]["jaccard_chance"] == 0.0


def test_the_comparison_artifact_records_what_it_compared(dense) -> None:
    root, s = dense
    art = open_artifact(root / "comparison", "comparison")
    assert {i["kind"] for i in art.inputs} == {"squeezer", "features"}
    assert art.attrs["rows"] == s["rows"] == 8192 and art.attrs["real_hook"] == "hook_hidden"
    corr = art.tensors("correlations.safetensors")["correlation"]
    assert corr.shape == (N_HIDDEN, N_HIDDEN)
    matches = art.table("matches.parquet")
    assert np.allclose(matches["correlation"].to_numpy(), corr[matches["synthetic"], matches["real"]], atol=1e-6)
    for name in ("correlations.png", "baselines.png", "pairs.png"):
        assert (root / "comparison" / name).stat().st_size > 10_000


def test_rerunning_writes_the_same_bytes(dense, tmp_path) -> None:
    root, _ = dense
    codec("compare", "neurons", root / "squeezer", "--draws", 50, "--out", tmp_path / "again")
    first, again = (json.loads((d / "manifest.json").read_text())["files"] for d in (root / "comparison",
                                                                                      tmp_path / "again"))
    assert first == again


def self_features(root: Path, out: Path) -> tuple[Path, Path]:
    """The features with the squeezer's own neurons written as the real ones, and a copy of the
    squeezer that records them as its input."""
    features, sq = open_artifact(root / "features"), open_artifact(root / "squeezer")
    w = load_file(root / "squeezer/weights.safetensors")
    model = Encoder.of(w, "relu")
    with ArtifactWriter(out / "features", "features", command="test", params=features.manifest["params"],
                        attrs=features.attrs) as fw:
        for name in features.files():
            if not name.startswith("neurons/"):
                fw.write_bytes(name, features.read_bytes(name))
        for name in features.files("shards/"):
            t = features.shard(name)
            idx, val = top_rows(t.indices, t.values, int(sq.attrs["k"]))
            val = np.where(idx >= 0, val / w["scale"][np.maximum(idx, 0)], 0).astype(np.float32)
            fw.write_tensors(NEURONS.format(shard_number(name)),
                             {"acts": model(np.maximum(idx, 0).astype(np.int64), val)})
    new = open_artifact(out / "features")
    with ArtifactWriter(out / "squeezer", "squeezer", command="test", params=sq.manifest["params"], inputs=[new],
                        attrs=sq.attrs) as sw:
        for name in sq.files():
            sw.write_bytes(name, sq.read_bytes(name))
    return out / "features", out / "squeezer"


def test_a_squeezer_compared_with_itself_scores_one(dense, tmp_path) -> None:
    root, _ = dense
    features, sq = self_features(root, tmp_path)
    s = codec("compare", "neurons", sq, features, "--draws", 5, "--out", tmp_path / "self")
    assert s["matched_correlation"] == pytest.approx(1.0, abs=1e-5)
    assert s["matched_correlation_quantiles"]["min"] == pytest.approx(1.0, abs=1e-5)
    assert s["roommates"]["jaccard"] == 1.0 and s["roommates"]["weighted_jaccard"] == pytest.approx(1.0)
    matches = pl.read_parquet(tmp_path / "self/matches.parquet")
    assert (matches["synthetic"] == matches["real"]).all()


def test_a_comparison_is_refused_when_the_inputs_cannot_support_it(dense, cli, tmp_path) -> None:
    root, _ = dense

    def refused(*args, says: str):
        result = cli("compare", "neurons", *map(str, args), "--out", str(tmp_path / "no"))
        assert result.exit_code == 2, result.output
        assert says in result.output and result.output.count("Error:") == 1, result.output
        assert not (tmp_path / "no").exists()

    codec("squeeze", root / "features", "--m", 3, "--k", N_FEATURES, "--neuron-act", "relu", "--steps", 20,
          "--no-faithfulness", "--out", tmp_path / "m3")
    refused(tmp_path / "m3", says="has 3 synthetic neurons but")
    s = codec("compare", "neurons", tmp_path / "m3", "--allow-partial", "--draws", 3, "--out", tmp_path / "partial")
    assert s["matched"] == 3 and s["synthetic_neurons"] == 3 and s["real_neurons"] == N_HIDDEN

    codec("squeeze", root / "features", "--m", N_HIDDEN, "--k", N_FEATURES, "--steps", 20, "--no-faithfulness",
          "--out", tmp_path / "linear")
    refused(tmp_path / "linear", says="linear neurons")
    s = codec("compare", "neurons", tmp_path / "linear", "--allow-linear", "--draws", 3, "--out", tmp_path / "lin")
    assert s["chance"]["rotated"]["draws"] == 3 and s["basis"].startswith("arbitrary")

    codec("extract", root / "world", "--sae", "oracle", "--tokens", 10_000, "--k", N_FEATURES,
          "--out", tmp_path / "no-neurons")
    codec("squeeze", tmp_path / "no-neurons", "--m", N_HIDDEN, "--k", N_FEATURES, "--neuron-act", "relu",
          "--steps", 20, "--eval-rows", 1024, "--no-faithfulness", "--out", tmp_path / "sq-no-neurons")
    refused(tmp_path / "sq-no-neurons", says="holds no real neurons")
    refused(root / "squeezer", tmp_path / "no-neurons", says="was made from a different features artifact")


def test_on_the_themes_world_the_saes_own_decoder_is_the_ceiling(tmp_path) -> None:
    """A real model and sae-lens SAE: the shipped mlp0 SAE reads the MLP neurons, so its decoder
    rows are in the neuron basis, which gives roommates by weights and a ceiling: the SAE's own
    reconstruction of the neurons, read as a Squeezer, matches them nearly one for one."""
    codec("extract", "themes", "--sae", "mlp0", "--neurons", "blocks.0.mlp.hook_post", "--tokens", 12_000,
          "--out", tmp_path / "features")
    codec("squeeze", tmp_path / "features", "--m", 256, "--k", 16, "--neuron-act", "relu", "--rescale", "max",
          "--steps", 50, "--eval-rows", 4096, "--no-faithfulness", "--out", tmp_path / "squeezer")
    s = codec("compare", "neurons", tmp_path / "squeezer", "--draws", 3, "--out", tmp_path / "comparison")
    assert s["real_hook"] == "blocks.0.mlp.hook_post" and s["matched"] == 256 and s["rows"] == 4096
    assert s["ceiling"] > 0.9, s["ceiling"]  # the SAE's FVU on these neurons is about 0.03
    assert s["matched_correlation"] < s["ceiling"] and s["chance"]["shuffled"]["mean"] < 0.1
    w = s["roommates"]["by_weights"]
    assert w["real_per_neuron"] > 1 and 0 <= w["jaccard"] <= 1 and 0 <= w["jaccard_chance"] <= 1
