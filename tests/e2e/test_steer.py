"""`codec steer` and `codec monitor` on the themes world, whose topics are planted.

The themes come from `codec cluster` on the world's resid0 SAE (conftest.themes_resid0): one
theme per topic, each led by the atom that fires on all of the topic's words. A theme's
planted topic is the topic most of its top tokens belong to (truth/tokens.parquet).
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from squeezed import codec

from codec_cli.worlds import open_world
from codec_cli.worlds.themes_corpus import documents, to_text


def topic_themes(root) -> dict[str, int]:
    """{planted topic: theme number} for the themes whose top tokens are mostly one topic's words."""
    truth = pl.read_parquet(open_world("themes").path / "truth/tokens.parquet")
    topic_of = dict(zip(truth["token"].to_list(), truth["theme"].to_list()))
    out = {}
    for row in pl.read_parquet(root / "themes/themes.parquet").iter_rows(named=True):
        topics = [topic_of.get(w) for w in row["top_tokens"]]
        best = max(set(topics) - {None}, key=topics.count, default=None)
        if best is not None and topics.count(best) * 2 >= len(topics):
            out.setdefault(best, row["theme"])
    return out


@pytest.fixture(scope="module")
def themes(themes_resid0):
    root, _ = themes_resid0
    found = topic_themes(root)
    assert len(found) == 8, found  # every planted topic has its theme
    return root, found


@pytest.fixture(scope="module")
def toward(themes, tmp_path_factory):
    """Adding the astronomy theme to documents of other topics, strengths 0 … 0.3."""
    root, found = themes
    out = tmp_path_factory.mktemp("steer") / "toward"
    summary = codec("steer", "themes", "--themes", root / "themes", "--theme", found["astronomy"],
                    "--sweep", "0:0.3:0.1", "--n-prompts", 24, "--draws", 2, "--out", out)
    return out, summary


def test_strength_zero_changes_nothing(toward):
    out, summary = toward
    assert summary["strength_zero"] == {"kl": 0.0, "same_tokens": True}
    metrics = pl.read_parquet(out / "metrics.parquet").filter(pl.col("strength") == 0.0)
    assert set(metrics["method"]) == {"theme", "atom", "random-direction", "random-group"}
    assert (metrics["kl"] == 0.0).all() and (metrics["shift"] == 0.0).all()
    gens = pl.read_parquet(out / "generations.parquet").filter(pl.col("strength") == 0.0)
    assert gens["same_as_clean"].all() and len(gens) == 4 * 24


def test_steering_toward_a_topic_beats_a_random_direction_at_matched_kl(toward):
    _, summary = toward
    assert summary["inputs"]["planted_topic"] == "astronomy"
    theme = summary["curves"]["theme"]
    kl = [r["kl"] for r in theme]
    assert kl == sorted(kl) and kl[-1] > 100 * kl[1] > 0  # the cost grows with strength
    best = max(summary["matched_kl"]["random-direction"], key=lambda r: r["theme_effect"])
    # science.md §5: a random direction moves the target at most a third as far at the same KL.
    assert best["theme_effect"] >= 3 * best["baseline_effect"]
    assert max(r["target"] for r in theme) >= 2 * summary["clean"]["target"]
    group = max(summary["matched_kl"]["random-group"], key=lambda r: r["theme_effect"])
    assert group["theme_effect"] >= 3 * max(group["baseline_effect"], 0.0)


def test_snr_against_the_number_of_atoms_is_reported_with_its_slope(toward):
    out, summary = toward
    snr = summary["snr_vs_atoms"]
    assert snr["strength"] == 0.3 and snr["theme"]["n"][0] == 1 and snr["theme"]["n"][-1] == summary["theme"]["atoms"]
    assert snr["theme"]["slope"] is not None
    atoms = pl.read_parquet(out / "metrics.parquet").filter(pl.col("part") == "atoms")
    assert set(atoms["method"]) == {"theme", "random-group"} and (out / "steering.png").stat().st_size > 20_000


def test_clamping_the_documents_own_topic_lowers_its_mass(themes, tmp_path):
    root, found = themes
    summary = codec("steer", "themes", "--themes", root / "themes", "--theme", found["cooking"], "--method", "clamp",
                    "--n-prompts", 24, "--draws", 2, "--out", tmp_path / "clamp")
    assert "on the planted topic 'cooking'" in summary["inputs"]["prompts"] and summary["strengths"] == [0.0]
    (removed,) = summary["curves"]["theme"]
    assert removed["target"] < 0.5 * summary["clean"]["target"]
    (group,) = summary["curves"]["random-group"]
    assert group["target"] > removed["target"]  # removing random atoms does not take the topic away


def world_text_file(path, topics: set[str], n: int, seed: int, keep: bool = True):
    cfg = open_world("themes").config()[1].corpus
    docs = [d for d in documents(cfg, 40 * n, seed) if (d.theme in topics) == keep][:n]
    path.write_text("\n".join(to_text(cfg, d.tokens) for d in docs) + "\n")
    return path


def test_steering_reads_prompts_and_neutral_text_from_files_and_is_deterministic(themes, tmp_path):
    root, found = themes
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("after monday comes\nwe talk about the\n\nin march the\n")
    neutral = world_text_file(tmp_path / "neutral.txt", {"astronomy"}, 8, 5, keep=False)
    args = ["steer", "themes", "--themes", root / "themes", "--theme", found["music"], "--sweep", "0,0.2",
            "--prompts", prompts, "--neutral", neutral, "--draws", 1, "--new-tokens", 8]
    a = codec(*args, "--out", tmp_path / "a")
    codec(*args, "--out", tmp_path / "b")
    assert a["inputs"]["prompts"] == [str(prompts)]
    gens = pl.read_parquet(tmp_path / "a/generations.parquet")
    assert gens.filter(pl.col("method") == "clean")["prompt_text"].to_list() == ["after monday comes",
                                                                                 "we talk about the", "in march the"]
    for name in ("metrics.parquet", "generations.parquet", "summary.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_monitoring_finds_every_planted_topic(themes, tmp_path):
    root, found = themes
    args = [x for t in sorted(found.values()) for x in ("--theme", t)]
    summary = codec("monitor", "themes", "--themes", root / "themes", *args, "--out", tmp_path / "m")
    assert {r["planted_topic"] for r in summary["themes"]} == set(found)
    for r in summary["themes"]:
        assert r["auroc"] >= 0.95, r
        assert 0 <= r["false_positive_rate"] <= 0.1 and r["false_positive_rate_calibration"] <= 0.01
        assert r["detection_rate"] >= 0.5 and r["random_groups"]["mean_auroc"] < 0.7
    texts = pl.read_parquet(tmp_path / "m/texts.parquet")
    assert set(texts["set"]) == {"theme", "calibration", "evaluation"} and len(texts) == 8 * 400
    tokens = pl.read_parquet(tmp_path / "m/tokens.parquet")
    assert len(tokens) == 8 * 400 * 63


def test_monitoring_texts_that_are_not_on_the_theme_finds_nothing(themes, tmp_path):
    """Theme texts drawn like the neutral ones (documents of other topics): chance, AUROC about 1/2."""
    root, found = themes
    texts = world_text_file(tmp_path / "texts.txt", {"finance"}, 150, 11, keep=False)
    neutral = world_text_file(tmp_path / "neutral.txt", {"finance"}, 300, 12, keep=False)
    summary = codec("monitor", "themes", "--themes", root / "themes", "--theme", found["finance"], "--texts", texts,
                    "--neutral", neutral, "--out", tmp_path / "m")
    (r,) = summary["themes"]
    assert 0.35 <= r["auroc"] <= 0.65 and r["detection_rate"] <= 0.1
    assert r["theme_texts"] == 150 and r["neutral_calibration"] == r["neutral_evaluation"] == 150
    on = np.array(pl.read_parquet(tmp_path / "m/texts.parquet")["score"])
    assert np.isfinite(on).all()


def test_steer_and_monitor_a_hugging_face_model_with_an_sae_trained_on_it(tmp_path):
    """The path of a hub model (GPT-2 and a sae-lens SAE), offline: a random GPT-2 saved as a
    Hugging Face directory, an SAE trained on it, prompts and texts from files."""
    import tiny_models

    model = tiny_models.hf_model(tmp_path / "model")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(tiny_models.TEXT) + "\n")
    codec("sae", "train", model, "--corpus", corpus, "--hook", "blocks.0.hook_resid_post", "--steps", 300,
          "--batch-size", 256, "--out", tmp_path / "sae")
    codec("extract", model, "--sae", tmp_path / "sae", "--corpus", corpus, "--tokens", 3000, "--out", tmp_path / "f")
    codec("cluster", tmp_path / "f", "--method", "spectral", "--themes", 3, "--isolated", -1, "--out", tmp_path / "th")
    smallest = pl.read_parquet(tmp_path / "th/themes.parquet")["theme"][-1]
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(tiny_models.TEXT[:3]) + "\n")
    summary = codec("steer", model, "--themes", tmp_path / "th", "--theme", smallest, "--prompts", prompts,
                    "--neutral", corpus, "--sweep", "0,0.5", "--new-tokens", 8, "--draws", 1, "--out", tmp_path / "st")
    assert summary["hook"] == "blocks.0.hook_resid_post"
    assert summary["strength_zero"] == {"kl": 0.0, "same_tokens": True}
    assert summary["curves"]["theme"][1]["kl"] > 0
    result = codec("monitor", model, "--themes", tmp_path / "th", "--theme", smallest, "--texts", prompts,
                   "--neutral", corpus, "--out", tmp_path / "mo")
    (r,) = result["themes"]
    assert r["theme_texts"] == 3 and 0 <= r["auroc"] <= 1
