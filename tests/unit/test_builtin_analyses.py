"""The built-in analyses as plugins: registered like a third party's, run together,
isolated from a failing neighbour, and polysemanticity's counts on a hand-made Squeezer."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from codec_cli.artifacts import ArtifactWriter, open_artifact
from conftest import Explodes, write_features

BUILTINS = ["fourier", "or-gate", "polysemanticity", "polytope", "stability", "superposition-tax", "themes"]
# themes also needs `codec cluster`'s artifact; fourier and stability a world (modadd)
SQUEEZER_ONLY = [b for b in BUILTINS if b not in ("themes", "fourier", "stability")]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A features artifact and a squeezer trained on it for a few steps (no answer key)."""
    from squeezed import codec

    root = tmp_path_factory.mktemp("small")
    features = write_features(root / "features", seed=4, d_sae=24, k=4, shards=2, rows=400)
    codec("squeeze", features, "--m", 4, "--k", 4, "--steps", 40, "--batch-size", 64, "--eval-rows", 128,
          "--no-faithfulness", "--out", root / "squeezer")
    return features, root / "squeezer"


def test_builtins_are_entry_points_like_any_plugin(cli) -> None:
    rows = json.loads(cli("plugins", "--json").stdout)
    mine = {r["name"]: r for r in rows if r["builtin"]}
    assert sorted(mine) == BUILTINS
    assert all(r["status"] == "ok" and r["api_version"] == 1 and r["package"] == "codec" for r in mine.values())


def test_all_builtins_run_and_the_squeezer_brings_its_features(cli, small, tmp_path) -> None:
    features, squeezer = small
    result = cli("analyze", squeezer, "--out", tmp_path / "a", "--json")  # features/ found from the lineage
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert sorted(n for n in report if n in BUILTINS) == SQUEEZER_ONLY
    for name in SQUEEZER_ONLY:
        art = open_artifact(tmp_path / "a" / name, "analysis")
        assert art.json("summary.json") == report[name]["summary"]
        assert any(f.endswith(".png") for f in art.files()), f"{name} drew no figure"
    again = cli("analyze", squeezer, features, "-P", "or-gate,polysemanticity", "--out", tmp_path / "b", "--json")
    assert sorted(json.loads(again.stdout)) == ["or-gate", "polysemanticity"]
    for name in ["or-gate", "polysemanticity"]:  # same inputs, same bytes
        for f in ["summary.json", "pairs.parquet" if name == "or-gate" else "members.parquet"]:
            assert (tmp_path / "a" / name / f).read_bytes() == (tmp_path / "b" / name / f).read_bytes()


def test_a_failing_plugin_does_not_spoil_the_builtins(cli, small, tmp_path) -> None:
    from codec_cli import registry

    _, squeezer = small
    registry.register(Explodes())  # beside the installed plugins, not instead of them
    try:
        result = cli("analyze", squeezer, "-P", "explodes,polysemanticity", "--out", tmp_path)
    finally:
        registry.unregister("explodes")
    assert result.exit_code == 1, result.output
    assert "polysemanticity: ok" in result.stdout and "explodes: FAILED" in result.stdout
    assert (tmp_path / "polysemanticity/summary.json").is_file() and not (tmp_path / "explodes").exists()


def test_an_unknown_plugin_lists_what_is_installed(cli, small, tmp_path) -> None:
    _, squeezer = small
    result = cli("analyze", squeezer, "--plugin", "nope", "--out", tmp_path / "x")
    assert result.exit_code == 2
    assert "no analysis plugin named 'nope'" in result.stderr
    assert all(name in result.stderr for name in BUILTINS)
    assert not (tmp_path / "x").exists()


def hand_made(root, neuron_act: str = "relu"):
    """(features, squeezer): ReLU neuron 0 carries features 0 and 1 (feature 2 inhibits it),
    neuron 1 feature 2 alone, neuron 2 nothing; feature 3 is dropped. No training, so it
    costs nothing to build."""
    features = write_features(root / "f", d_sae=4, k=2)
    W = np.array([[1.0, 0.0, 0.0], [0.8, 0.05, 0.0], [-0.9, 1.0, 0.0], [0.0, 0.0, 0.01]], dtype=np.float32)
    with ArtifactWriter(root / "sq", "squeezer", command="test", inputs=[open_artifact(features)],
                        attrs={"tied": True, "neuron_act": neuron_act}) as w:
        w.write_tensors("weights.safetensors", {"W_enc": W, "W_dec": np.ascontiguousarray(W.T),
                                                "b_enc": np.zeros(3, np.float32), "b_dec": np.zeros(4, np.float32)})
        w.write_table("features.parquet", {"feature": np.arange(4, dtype=np.int32),
                                           "status": ["represented"] * 3 + ["dropped"],
                                           "frequency": np.full(4, 0.5), "mse": np.zeros(4)})
    return features, root / "sq"


def test_polysemanticity_counts_a_hand_made_code(cli, tmp_path) -> None:
    """Feature 3 is dropped, so its weight does not count; a negative weight on a ReLU
    neuron inhibits it, so feature 2 is not neuron 0's roommate."""
    _, squeezer = hand_made(tmp_path)
    result = cli("analyze", squeezer, "-P", "polysemanticity", "--out", tmp_path / "a", "--json")
    summary = json.loads(result.stdout)["polysemanticity"]["summary"]
    assert summary["carrying_neurons"] == 2 and summary["monosemantic_share"] == 0.5
    assert summary["features_per_neuron"] == 1.5 and summary["neurons_per_feature"] == 1.0
    assert summary["basis"].startswith("privileged")
    members = pl.read_parquet(tmp_path / "a/polysemanticity/members.parquet")
    assert members.select("neuron", "feature").rows() == [(0, 0), (0, 1), (1, 2)]
    assert members["weight"].to_list() == pytest.approx([1.0, 0.8, 1.0])
    assert members["drive"].to_list() == pytest.approx([1.0, 0.8, 1.0])  # one input unit is typical here


def test_linear_neurons_carry_features_of_either_sign(cli, tmp_path) -> None:
    """A linear neuron's sign is arbitrary, so feature 2's −0.9 on neuron 0 is carried too,
    and the summary and the log say that the basis is arbitrary."""
    _, squeezer = hand_made(tmp_path, neuron_act="linear")
    result = cli("analyze", squeezer, "-P", "polysemanticity", "--out", tmp_path / "a", "--json")
    assert "warning: linear neurons have no basis of their own" in result.stderr
    assert json.loads(result.stdout)["polysemanticity"]["summary"]["basis"].startswith("arbitrary")
    members = pl.read_parquet(tmp_path / "a/polysemanticity/members.parquet")
    assert members.select("neuron", "feature").rows() == [(0, 0), (0, 2), (0, 1), (1, 2)]


@pytest.mark.parametrize("param, message", [
    ("interference=0", "polytope: -p interference=0.0: a |cosine| threshold must be above 0"),
    ("rank_tol=1", "polytope: -p rank_tol=1.0:"),
    ("order_by=cycle", "polytope: -p order_by='cycle': -p group_by is 'cycle' too"),
    ("polysemanticity.rotations=0", "polysemanticity: -p rotations=0: the chance baseline needs at least 1"),
    ("relative=1.5", "-p relative=1.5: the roommate rule's share"),
    ("window=-1", "or-gate: -p window=-1: a block holds at least 1 token (0: the whole context)"),
    ("alpha=0", "or-gate: -p alpha=0.0:"),
])
def test_a_bad_parameter_is_refused_before_any_plugin_runs(cli, tmp_path, param, message) -> None:
    """Params check their values when filled, so one plugin's bad -p is exit 2 with no
    output from any plugin, not exit 1 after the others ran."""
    _, squeezer = hand_made(tmp_path)
    plugins = "polysemanticity,or-gate,polytope"
    result = cli("analyze", squeezer, "-P", plugins, "-p", param, "--out", tmp_path / "a")
    assert result.exit_code == 2, result.output
    assert f"\nError: {message}" in result.stderr, result.stderr
    assert not (tmp_path / "a").exists()
    # Without the bad parameter the same request writes every plugin's output.
    assert cli("analyze", squeezer, "-P", plugins, "--out", tmp_path / "b").exit_code == 0
