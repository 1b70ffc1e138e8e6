"""The `themes` world's language model (codec_cli/worlds/themes.py).

One short training run of a small model is shared by the module (a few seconds on a
2-core CPU); the default config's full run (a few minutes) is not part of the suite.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections import Counter

import pytest
import torch

from codec_cli.config import field_docs
from codec_cli.worlds.themes_corpus import documents, to_text, token_batches, vocabulary
from codec_cli.errors import BadInput
from codec_cli.worlds.themes import (ThemesModelConfig, cycle_circles, cycle_planes, load_model, model_config, save_model,
                              train_model)

SMALL = ThemesModelConfig(n_ctx=32, d_model=32, n_heads=4, d_head=8, d_mlp=64, steps=300, batch_size=32,
                          warmup=20, lr=3e-3, eval_docs=128)


@pytest.fixture(scope="module")
def trained():
    reports: list[tuple[int, float]] = []
    model, metrics = train_model(SMALL, on_step=lambda step, loss: reports.append((step, loss)))
    return model, metrics, reports


def test_cycle_embeddings_stay_on_their_circles_through_training(trained) -> None:
    model = trained[0]
    ids, points = cycle_circles(SMALL)
    assert torch.equal(model.W_E[ids], points)
    for plane in cycle_planes(SMALL).values():  # orthonormal, and untouched by LayerNorm's centring
        assert torch.allclose(plane @ plane.T, torch.eye(2), atol=1e-6)
        assert torch.allclose(plane.sum(1), torch.zeros(2), atol=1e-5)
    radii = points.norm(dim=1)
    assert torch.allclose(radii, torch.full_like(radii, SMALL.cycle_radius), atol=1e-5)


def test_cycle_radius_0_lets_the_cycle_embeddings_train() -> None:
    cfg = dataclasses.replace(SMALL, cycle_radius=0.0, eval_docs=8)
    ids = cycle_circles(SMALL)[0]
    early, later = (train_model(dataclasses.replace(cfg, steps=steps))[0].W_E[ids] for steps in (1, 5))
    assert not torch.allclose(early, later)


def unigram_loss(cfg: ThemesModelConfig, n_docs: int = 2000) -> float:
    """Cross-entropy, on held-out documents, of the word frequencies of training documents."""
    counts = Counter(t for d in documents(cfg.corpus, n_docs, seed=7) for t in d.tokens[1:])
    total = sum(counts.values())
    held_out = [t for d in documents(cfg.corpus, n_docs // 4, seed=8) for t in d.tokens[1:]]
    return -sum(math.log(counts[t] / total) for t in held_out) / len(held_out)


def test_short_training_learns_beyond_word_frequencies(trained) -> None:
    model, metrics, reports = trained
    first, last = reports[0][1], metrics["train_loss"]
    assert last < 0.5 * first, (first, last)
    # Word frequencies alone give ~4 nats; reaching well below that needs the context.
    unigram = unigram_loss(SMALL)
    assert metrics["eval_loss"] < 0.5 * unigram, (metrics["eval_loss"], unigram)
    # ... and no model can beat the true process on the same documents by more than noise.
    assert metrics["eval_loss"] > metrics["eval_floor"] - 0.01
    assert metrics["eval_gap"] == pytest.approx(metrics["eval_loss"] - metrics["eval_floor"])
    assert metrics["loss_ratio"] == pytest.approx(metrics["eval_loss"] / metrics["entropy"])
    assert metrics["steps"] == SMALL.steps and metrics["tokens"] == SMALL.steps * SMALL.batch_size * SMALL.n_ctx
    assert metrics["tokens_per_s"] > 0 and metrics["wall_s"] >= metrics["train_s"] > 0


def test_progress_is_reported_up_to_the_last_step(trained) -> None:
    _, _, reports = trained
    steps = [s for s, _ in reports]
    assert steps == sorted(steps) and steps[-1] == SMALL.steps and len(steps) >= 10
    assert all(math.isfinite(loss) for _, loss in reports)


def test_same_seed_gives_identical_weights() -> None:
    tiny = dataclasses.replace(SMALL, steps=3, eval_docs=8)  # warmup longer than the run is fine
    threads, rng = torch.get_num_threads(), torch.random.get_rng_state()
    a, _ = train_model(tiny)
    b, _ = train_model(tiny)
    c, _ = train_model(dataclasses.replace(tiny, seed=1))
    # Training leaves the caller's thread count and global generator as they were.
    assert torch.get_num_threads() == threads and torch.equal(torch.random.get_rng_state(), rng)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["embed.W_E"], sc["embed.W_E"])


def test_architecture_has_mlp_neurons_and_the_corpus_shape() -> None:
    config = model_config(ThemesModelConfig())
    assert config.d_vocab == len(vocabulary(ThemesModelConfig().corpus))
    assert config.n_ctx == 64 and config.n_layers == 2 and not config.attn_only
    assert config.normalization_type == "LN" and config.d_mlp > 0


def test_save_load_round_trip(trained, tmp_path) -> None:
    model, _, _ = trained
    save_model(model, tmp_path / "m")
    files = sorted(p.relative_to(tmp_path / "m").as_posix() for p in (tmp_path / "m").rglob("*") if p.is_file())
    assert "model.safetensors" in files and "config.json" in files
    assert all(f.endswith(".json") for f in files if f.startswith("tokenizer/"))
    json.loads((tmp_path / "m" / "config.json").read_text())

    started = time.perf_counter()
    loaded = load_model(tmp_path / "m")
    assert time.perf_counter() - started < 5
    batch = next(token_batches(SMALL.corpus, 4, seed=99, n_batches=1))
    with torch.inference_mode():
        assert torch.equal(model(batch), loaded(batch))

    doc = next(documents(SMALL.corpus, 1, seed=5))
    assert loaded.to_tokens(to_text(SMALL.corpus, doc.tokens))[0].tolist() == list(doc.tokens)

    names = ["blocks.0.mlp.hook_post", "blocks.1.mlp.hook_post", "blocks.1.hook_resid_pre",
             "blocks.0.attn.hook_pattern"]
    _, cache = loaded.run_with_cache(batch, names_filter=lambda name: name in names)
    assert sorted(cache.keys()) == sorted(names)
    assert cache["blocks.0.mlp.hook_post"].shape == (4, SMALL.n_ctx, SMALL.d_mlp)
    assert cache["blocks.1.hook_resid_pre"].shape == (4, SMALL.n_ctx, SMALL.d_model)


def test_load_rejects_what_is_not_a_model(tmp_path, trained) -> None:
    with pytest.raises(BadInput, match="model.safetensors"):
        load_model(tmp_path)
    save_model(trained[0], tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(BadInput, match="model.safetensors"):
        load_model(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text(json.dumps({"d_model": 8}))
    with pytest.raises(BadInput, match="config.json"):
        load_model(tmp_path / "m")


@pytest.mark.parametrize("change", [
    {"n_layers": 0}, {"d_mlp": -1}, {"steps": 0}, {"lr": 0.0}, {"lr": float("nan")}, {"weight_decay": -1.0},
    {"warmup": -1}, {"seed": -1}, {"act_fn": "tanh"}, {"n_ctx": 1}, {"n_themes": 9}, {"eval_docs": 0},
    {"cycle_radius": -1.0}, {"cycle_radius": float("inf")}, {"d_model": 4, "n_heads": 1, "d_head": 4},
])
def test_bad_config_is_bad_input(change) -> None:
    with pytest.raises(BadInput):
        ThemesModelConfig(**change)


def test_every_field_has_a_docstring_for_the_cli() -> None:
    docs = field_docs(ThemesModelConfig)
    assert all(docs.get(f.name) for f in dataclasses.fields(ThemesModelConfig))
