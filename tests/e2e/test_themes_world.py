"""The shipped `themes` world: its model learned the planted structure (loss at the
corpus's entropy, cycles followed), its SAE meets stated bounds and round-trips
through sae-lens, and `codec sae train` works on it and on its model over text files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from codec_cli.worlds.themes_corpus import CYCLES, documents, exact_corpus_entropy, to_text
from codec_cli.worlds import open_world


@pytest.fixture(scope="module")
def world():
    return open_world("themes")


@pytest.fixture(scope="module")
def model(world):
    return world.model()


def test_loss_is_within_three_percent_of_the_corpus_entropy(world, model):
    from codec_cli.worlds.themes import Config

    cfg = Config(**world.artifact.manifest["params"])
    docs = torch.tensor([d.tokens for d in documents(cfg.corpus, 256, seed=424242)])
    with torch.no_grad():
        loss = float(model(docs, return_type="loss"))
    entropy = exact_corpus_entropy(cfg.corpus)
    assert entropy <= loss + 0.01 and loss <= 1.03 * entropy
    reported = world.artifact.json("metrics.json")["model"]
    assert reported["loss_ratio"] <= 1.03


@pytest.mark.parametrize("cycle", ["weekday", "month"])
def test_the_model_knows_the_cycles(model, cycle):
    """'after X comes' -> X+1 for every member, wrap-around included."""
    members = CYCLES[cycle]
    for i, word in enumerate(members):
        tokens = model.to_tokens(f"after {word} comes")
        with torch.no_grad():
            predicted = model.to_string(model(tokens)[0, -1].argmax())
        assert predicted == members[(i + 1) % len(members)], (word, predicted)


def test_sae_bounds_and_sae_lens_round_trip(world, tmp_path):
    from sae_lens import SAE

    metrics = world.artifact.json("metrics.json")["saes"]["resid"]
    assert metrics["l0"] <= 8.0 and metrics["fvu"] < 0.1 and metrics["dead_fraction"] < 0.2
    assert metrics["ce_loss_recovered"] > 0.9
    sae = world.sae()
    assert sae.cfg.metadata.hook_name == "blocks.1.hook_resid_pre" and sae.cfg.d_sae == 256
    sae.save_model(tmp_path / "again")
    again = SAE.load_from_disk(tmp_path / "again")
    x = torch.randn(32, sae.cfg.d_in)
    torch.testing.assert_close(again.encode(x), sae.encode(x), rtol=0, atol=0)
    torch.testing.assert_close(again.decode(again.encode(x)), sae.decode(sae.encode(x)), rtol=0, atol=0)


def test_the_neuron_sae_reads_the_mlp_neurons(world):
    """mlp0, the real side of `codec compare neurons`: a few times wider than the 256 neurons."""
    metrics = world.artifact.json("metrics.json")["saes"]["mlp0"]
    assert metrics["l0"] <= 16.0 and metrics["fvu"] < 0.1 and metrics["dead_fraction"] < 0.5
    assert metrics["ce_loss_recovered"] > 0.9
    sae = world.sae("mlp0")
    assert sae.cfg.metadata.hook_name == "blocks.0.mlp.hook_post" and sae.cfg.d_in == 256 and sae.cfg.d_sae == 1024
    assert world.saes == {"resid": "blocks.1.hook_resid_pre", "mlp0": "blocks.0.mlp.hook_post",
                          "resid0": "blocks.0.hook_resid_pre"}


def test_the_token_sae_gives_each_topic_an_atom(world):
    """resid0, where `codec cluster` finds the topics (tests/e2e/test_cluster.py): its bounds, and
    for each of the 8 topics an atom that fires on (nearly) every occurrence of its words and (nearly) never
    elsewhere: the SAE factors the topic out of its words."""
    import polars as pl

    metrics = world.artifact.json("metrics.json")["saes"]["resid0"]
    assert metrics["l0"] <= 4.0 and metrics["fvu"] < 0.1 and metrics["dead_fraction"] < 0.3
    assert metrics["ce_loss_recovered"] > 0.9
    sae = world.sae("resid0")
    assert sae.cfg.metadata.hook_name == "blocks.0.hook_resid_pre" and sae.cfg.d_sae == 512
    module, cfg = world.config()
    tokens = module.inputs(cfg, 0, 200)  # 200 documents of the world's own stream
    with torch.no_grad():
        _, cache = world.model().run_with_cache(tokens, names_filter="blocks.0.hook_resid_pre")
        fires = (sae.encode(cache["blocks.0.hook_resid_pre"].flatten(0, 1)) > 0).numpy()
    truth = pl.read_parquet(world.path / "truth/tokens.parquet")
    theme = np.array([str(t) for t in truth["theme"].to_list()])[tokens.flatten().numpy()]
    for topic in sorted(set(theme) - {"None"}):
        inside, outside = fires[theme == topic].mean(0), fires[theme != topic].mean(0)
        assert ((inside >= 0.95) & (outside <= 0.005)).any(), topic


def test_sae_train_on_the_world_and_on_its_model_over_files(cli, world, tmp_path):
    fast = ["--steps", "30", "--batch-size", "256", "--k", "4", "--lr", "3e-3"]
    result = cli("-q", "sae", "train", "themes", *fast, "--out", tmp_path / "a", "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["d_sae"] == 128 and 0 < metrics["ce_loss_recovered"] <= 1.0

    from codec_cli.worlds.themes import Config

    cfg = Config(**world.artifact.manifest["params"])
    (tmp_path / "docs.txt").write_text(" ".join(to_text(cfg.corpus, d.tokens) for d in documents(cfg.corpus, 20, 5)))
    result = cli("-q", "sae", "train", world.path / "model", "--corpus", tmp_path / "docs.txt",
                 "--hook", "blocks.0.hook_mlp_out", *fast, "--out", tmp_path / "b", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["d_sae"] == 128


def test_the_cycles_are_planted_circles_and_the_residual_stream_keeps_them(world, model):
    """The weekday and month embeddings are held on their circles; at the SAE's hook, after a
    block of attention and MLP, the per-token means still lie on a circle in cyclic order."""
    from codec_cli.worlds.themes_corpus import cycle_members
    from codec_cli.worlds.themes import cycle_circles, inputs
    from codec_plugins.polytope import circle_scores

    _, cfg = world.config()
    ids, points = cycle_circles(cfg)
    # The shipped embeddings were computed on the machine that built the world; here they are
    # recomputed through this machine's LAPACK QR, which may round them one float32 step
    # (1e-7 at radius 1.5) apart. 1e-5 is far above that and far below the circles' scale.
    torch.testing.assert_close(model.W_E[ids], points, rtol=0, atol=1e-5)
    tokens = inputs(cfg, 0, 400)
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=[cfg.sae_hook])
    acts, tokens = cache[cfg.sae_hook].reshape(-1, cfg.d_model), tokens.reshape(-1)
    for members in cycle_members(cfg.corpus).values():
        means = torch.stack([acts[tokens == t].mean(0) for t in members]).double().numpy()
        planarity, roundness, order = circle_scores(means[None], np.arange(len(members))[None], len(members))
        assert planarity[0] > 0.8 and roundness[0] > 0.8 and order[0] > 0.95, (planarity, roundness, order)
