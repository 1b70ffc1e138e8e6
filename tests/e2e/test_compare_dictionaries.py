"""compare dictionaries on known answers (science.md §3's checks): an SAE against itself with
its latents permuted, two random dictionaries, a trained toy SAE against the true features,
SAEs and squeezers trained by seed, the sparse matching against the dense one."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import torch

from codec_cli.stages.compare_dictionaries import match_dense, match_sparse, unit
from squeezed import codec


def saved_sae(path, W_enc, W_dec, b_enc=None):
    """A sae-lens StandardSAE with these weights, saved as a directory."""
    from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig

    d, F = W_enc.shape
    sae = StandardSAE(StandardSAEConfig(d_in=d, d_sae=F))
    with torch.no_grad():
        sae.W_enc.copy_(torch.as_tensor(W_enc))
        sae.W_dec.copy_(torch.as_tensor(W_dec))
        if b_enc is not None:
            sae.b_enc.copy_(torch.as_tensor(b_enc))
    sae.save_model(path)
    return path


@pytest.mark.parametrize("route", ["dense", "sparse"])
def test_an_sae_against_its_latents_permuted_is_the_same_dictionary(tmp_path, route) -> None:
    from codec_cli.worlds import open_world

    sae = open_world("themes").sae("mlp0")
    perm = np.random.default_rng(0).permutation(sae.cfg.d_sae)
    W_enc, W_dec = sae.W_enc.detach().numpy(), sae.W_dec.detach().numpy()
    saved_sae(tmp_path / "permuted", W_enc[:, perm], W_dec[perm], sae.b_enc.detach().numpy()[perm])
    s = codec("compare", "dictionaries", "themes:mlp0", tmp_path / "permuted", "--route", route, "--draws", 2,
              "--out", tmp_path / "c")
    assert s["pw_mcc"] == pytest.approx(1.0, abs=1e-5) and s["shared"] == 1.0 and s["found_by_all"] == 1.0
    assert s["pairs"][0]["route"] == route and s["pairs"][0]["chance_random"]["shared"] == 0.0
    pairs = pl.read_parquet(tmp_path / "c/pairs.parquet")
    # Latent f of the original is latent perm⁻¹[f] of the copy.
    assert (perm[pairs["partner"].to_numpy()] == pairs["latent"].to_numpy()).all()


def test_two_random_dictionaries_share_nothing_and_score_the_null(tmp_path) -> None:
    rng = np.random.default_rng(1)
    F, d = 4096, 512
    for name in ("a", "b"):
        saved_sae(tmp_path / name, rng.standard_normal((d, F)), rng.standard_normal((F, d)))
    s = codec("compare", "dictionaries", tmp_path / "a", tmp_path / "b", "--draws", 3, "--out", tmp_path / "c")
    pair = s["pairs"][0]
    assert s["shared"] == 0.0 and pair["shared_decoder"] == 0.0
    assert abs(s["pw_mcc"] - s["pw_mcc_chance_random"]) < 0.01, s
    assert pair["mmcs"] == pytest.approx(pair["extreme_value"], rel=0.25)  # the heuristic, roughly


def test_a_trained_toy_sae_finds_every_true_feature(tmp_path) -> None:
    s = codec("compare", "dictionaries", "toy:truth", "toy:trained", "--draws", 3, "--out", tmp_path / "c")
    pairs = pl.read_parquet(tmp_path / "c/pairs.parquet")
    assert len(pairs) == 10 and pairs["best_cosine"].min() >= 0.95, pairs
    assert s["pairs"][0]["shared_encoder"] is None  # the truth has no encoder: decoder alone
    assert s["pw_mcc"] > s["pw_mcc_chance_random"] + 0.3


def test_saes_and_squeezers_trained_by_seed(tmp_path, features) -> None:
    codec("sae", "train", "toy", "--steps", 300, "--batch-size", 256, "--k", 2, "--lr", 3e-3, "--checkpoint-every", 0,
          "--seeds", "0,1,2", "--out", tmp_path / "saes")
    s = codec("compare", "dictionaries", *(tmp_path / f"saes/seed-{i}" for i in range(3)), "--draws", 3,
              "--out", tmp_path / "c")
    assert len(s["pairs"]) == 3 and s["pw_mcc_at_initialisation"] is not None
    assert s["pw_mcc"] > s["pw_mcc_at_initialisation"] and s["pw_mcc"] > s["pw_mcc_chance_random"]
    latents = pl.read_parquet(tmp_path / "c/latents.parquet")
    assert len(latents) == 3 * 10 and latents["found_by"].is_between(1, 3).all()

    codec("squeeze", features, "--m", 6, "--k", 4, "--steps", 40, "--eval-rows", 20, "--batch-size", 16,
          "--neuron-act", "relu", "--no-faithfulness", "--seeds", "0,1", "--out", tmp_path / "sq")
    s = codec("compare", "dictionaries", tmp_path / "sq/seed-0", tmp_path / "sq/seed-1", "--draws", 2,
              "--out", tmp_path / "c-sq")
    assert s["latents"] == [6, 6] and s["d"] == 40 and (tmp_path / "c-sq/stability.png").is_file()
    assert s["pw_mcc_at_initialisation"] is not None
    recorded = json.loads((tmp_path / "c-sq/manifest.json").read_text())["inputs"]
    assert [i["kind"] for i in recorded] == ["squeezer", "squeezer"]


def test_the_sparse_matching_equals_the_dense_one() -> None:
    rng = np.random.default_rng(2)
    for FA, FB, d, noise in ((3000, 3000, 64, 0.3), (1500, 2200, 32, 10.0), (2100, 1300, 48, 1.0)):
        B = rng.standard_normal((FB, d))
        A = B[rng.permutation(FB)[:FA]] if FA <= FB else rng.standard_normal((FA, d))
        A, B = unit(A + noise * rng.standard_normal(A.shape)), unit(B)
        dense, sparse = match_dense(A, B), match_sparse(A, B, 32)
        assert sparse is not None
        assert sparse.cosine.sum() == pytest.approx(dense.cosine.sum(), rel=1e-6)
        assert (sparse.best == dense.best).all() and np.allclose(sparse.best_back, dense.best_back, atol=1e-6)


def test_dictionaries_that_cannot_be_compared_are_refused(cli, tmp_path, features) -> None:
    for args, says in ((["themes:resid"], "at least two inputs"),
                       (["themes:resid", "themes:mlp0"], "spaces of different widths"),
                       (["themes:resid", str(features)], "is not a dictionary"),
                       (["themes:resid", "themes:nosuch"], "no SAE 'nosuch'"),
                       (["themes:resid", "themes:resid"], "given twice"),
                       (["themes:resid", "themes:truth"], "no true feature directions")):
        result = cli("compare", "dictionaries", *args, "--out", str(tmp_path / "no"))
        assert result.exit_code == 2 and says in result.output and result.output.count("Error:") == 1, result.output
        assert not (tmp_path / "no").exists()


def test_matching_by_activations_on_the_same_tokens(tmp_path) -> None:
    """Two toy SAEs by seed, each extracting the world's same tokens: their latents' activations
    match one for one (the toy has 10 true features and the SAEs find them), far above shuffled
    tokens, and the frequencies give the stability figure."""
    codec("sae", "train", "toy", "--steps", 400, "--batch-size", 256, "--k", 2, "--lr", 3e-3, "--checkpoint-every", 0,
          "--seeds", "0,1", "--out", tmp_path / "saes")
    for s in (0, 1):
        codec("extract", "toy", "--sae", tmp_path / f"saes/seed-{s}", "--tokens", 8000, "--out", tmp_path / f"f{s}")
    s = codec("compare", "dictionaries", tmp_path / "saes/seed-0", tmp_path / "saes/seed-1",
              "--features", tmp_path / "f0", "--features", tmp_path / "f1", "--draws", 3, "--out", tmp_path / "c")
    acts = s["pairs"][0]["activations"]
    assert acts["mcc"] > 0.5 and acts["chance_shuffled"] < 0.1 and acts["mcc"] > s["pairs"][0]["chance_random"]["mcc"]
    assert 0 <= acts["same_partner_as_decoder"] <= 1
    latents = pl.read_parquet(tmp_path / "c/latents.parquet")
    assert latents["frequency"].is_not_null().all() and (tmp_path / "c/stability.png").is_file()
    assert pl.read_parquet(tmp_path / "c/pairs.parquet")["activation_partner"].is_not_null().all()

    result = cli_refusal(tmp_path, "--features", tmp_path / "f0", "--features", tmp_path / "f0")
    assert "two features artifacts" in result


def cli_refusal(tmp_path, *extra) -> str:
    from typer.testing import CliRunner

    from codec_cli.cli import app

    result = CliRunner().invoke(app, ["compare", "dictionaries", str(tmp_path / "saes/seed-0"),
                                      str(tmp_path / "saes/seed-1"), *map(str, extra), "--out", str(tmp_path / "no")])
    assert result.exit_code == 2 and not (tmp_path / "no").exists(), result.output
    return result.output
