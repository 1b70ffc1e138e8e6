"""Built-in worlds: the shipped toy world loads through transformer-lens and sae-lens
interfaces, its ground truth is what its model computes, and a rebuild writes the same
bytes on the same machine and lands within stated tolerances of the shipped copy."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from codec_cli.artifacts import open_artifact
from codec_cli.worlds.toy import feature_dimensionality
from codec_cli.worlds import SHIPPED, open_world


@pytest.fixture(scope="module")
def toy():
    return open_world("toy")


def test_the_model_is_a_hooked_module_that_computes_the_truth(toy):
    truth = toy.artifact.tensors("truth/samples.safetensors")
    x = torch.from_numpy(truth["x"].copy())
    model = toy.model()
    _, cache = model.run_with_cache(x, names_filter=lambda name: name in toy.artifact.attrs["hooks"])
    torch.testing.assert_close(cache["hook_in"], x, rtol=0, atol=0)  # passed through, untouched
    # The shipped h came out of the building machine's matmul, this one out of this machine's:
    # the same products summed in another order differ in the last bits (1e-7 from AVX-512 to AVX2).
    torch.testing.assert_close(cache["hook_hidden"], torch.from_numpy(truth["h"].copy()), rtol=0, atol=1e-5)
    assert toy.artifact.attrs["saes"] == {"trained": "hook_hidden", "oracle": "hook_in"}


def test_ten_features_in_five_dimensions_as_antipodal_pairs(toy):
    """10-5-10 at S = 0.9: five antipodal pairs, every feature at dimensionality 1/2."""
    W = toy.model().W.detach()
    assert torch.allclose(feature_dimensionality(W), torch.full((10,), 0.5), atol=0.02)
    unit = torch.nn.functional.normalize(W.T, dim=1)
    cos = unit @ unit.T
    partners = (cos < -0.95).sum(1)
    assert partners.tolist() == [1] * 10


def test_saes_open_with_sae_lens_and_know_the_answer(toy):
    x = torch.from_numpy(toy.artifact.tensors("truth/samples.safetensors")["x"].copy())
    oracle = toy.sae("oracle")
    assert oracle.cfg.metadata.hook_name == "hook_in"
    torch.testing.assert_close(oracle.encode(x), x)  # its latents are the true features
    trained = toy.sae("trained")
    assert trained.cfg.metadata.hook_name == "hook_hidden" and trained.cfg.d_sae == 10
    truth = torch.nn.functional.normalize(toy.model().W.detach().T, dim=1)
    found = torch.nn.functional.normalize(trained.W_dec.detach(), dim=1)
    assert (truth @ found.T).max(1).values.min() > 0.99  # every true direction recovered
    metrics = toy.artifact.json("metrics.json")["saes"]["trained"]
    assert metrics["fvu"] < 0.05 and metrics["dead_fraction"] == 0.0


# A rebuild promises two things (docs/worlds.md, tests/README.md). On one machine, with the
# same library versions, it writes the same bytes: the builder pins its own thread count, so
# the caller's does not matter. Anywhere else it lands within the tolerances below of the
# shipped copy, never on its bytes: float kernels differ between CPU instruction sets, and
# training carries the differences along. Rebuilt with AVX2 kernels
# (ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2) against the shipped AVX-512 build,
# W moved by 3e-7, h by 6e-7, the trained SAE's weights by 4e-3, its FVU by 1e-5 and each
# decoder row by a cosine of 5e-6; between two machines W moved by 5e-7 and the SAE by 3e-3.
# Each tolerance sits orders of magnitude above those and far below what a real change in
# the recipe or its data would do (another draw of the samples moves them by O(1), a
# misplaced feature moves W by O(1), an SAE that misses one of the ten directions leaves
# about a tenth of the variance unexplained).
W_ATOL = 1e-4
"""The toy model's weights, O(1) entries: 200x the cross-CPU drift, and 200x finer than the
0.02 the geometry tests read feature dimensionality at."""
H_ATOL = 1e-3
"""h = W x over up to ten features in [0, 1]: at most ten times W's tolerance."""
LOSS_RTOL = 1e-3
"""The model's evaluation losses (cross-CPU drift 1e-7 relative); the kept instance's loss is
2.6 % below the next one's, so this also pins which instance was kept."""
SAE_COS = 0.999
"""Each shipped decoder row has a rebuilt partner at least this close (the drift leaves
0.99999); two different true directions of the shipped toy are at |cos| < 0.01 or -1."""
SAE_METRIC_ATOL = 2e-3
"""FVU and match-to-truth of the trained SAE (drift 1e-5; shipped FVU 0.017)."""


def small_build(cli, out):
    """The same recipe, cut to seconds: enough steps for every float kernel of a full build."""
    small = ["-p", "steps=300", "-p", "sae_steps=200", "-p", "n_samples=512"]
    result = cli("-q", "world", "build", "toy", *small, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    return result


def test_a_rebuild_on_the_same_machine_writes_the_same_bytes(cli, tmp_path):
    first = small_build(cli, tmp_path / "a")
    threads = torch.get_num_threads()
    torch.set_num_threads(2 if threads == 1 else 1)  # the builder pins its own count
    try:
        small_build(cli, tmp_path / "b")
    finally:
        torch.set_num_threads(threads)
    a, b = open_artifact(tmp_path / "a"), open_artifact(tmp_path / "b")
    assert a.manifest["files"] == b.manifest["files"] and a.fingerprint == b.fingerprint
    assert json.loads(first.stdout)["saes"] == {"trained": "hook_hidden", "oracle": "hook_in"}


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory):
    """The toy world rebuilt with its defaults (about a minute on a 2-core CPU)."""
    from codec_cli.worlds import build

    return build("toy", tmp_path_factory.mktemp("rebuilt") / "toy")


def _without_versions(cfg: dict) -> dict:
    # sae-lens stamps its own version into cfg.json; codec accepts a range of them.
    meta = {k: v for k, v in cfg["metadata"].items() if not k.endswith("_version")}
    return cfg | {"metadata": meta}


def test_a_rebuild_with_the_defaults_matches_the_shipped_world(rebuilt, toy):
    new, old = rebuilt.artifact, toy.artifact
    assert new.manifest["params"] == old.manifest["params"] and new.attrs == old.attrs
    assert sorted(new.manifest["files"]) == sorted(old.manifest["files"])
    assert new.json("model/config.json") == old.json("model/config.json")
    for cfg in ("saes/trained/cfg.json", "saes/oracle/cfg.json"):
        assert _without_versions(new.json(cfg)) == _without_versions(old.json(cfg)), cfg

    answer, shipped = new.tensors("truth/answer.safetensors"), old.tensors("truth/answer.safetensors")
    for key in ("importance", "exclusive_group", "cooccur_group"):  # set by the config, no training
        np.testing.assert_array_equal(answer[key], shipped[key])
    model, shipped_model = new.tensors("model/weights.safetensors"), old.tensors("model/weights.safetensors")
    for key in ("W", "b"):
        np.testing.assert_allclose(model[key], shipped_model[key], rtol=0, atol=W_ATOL)
        np.testing.assert_array_equal(answer[key], model[key])  # one training run, written twice
    samples, shipped_samples = new.tensors("truth/samples.safetensors"), old.tensors("truth/samples.safetensors")
    # The samples are a generator's draws through elementwise arithmetic, equal on every CPU
    # tried; a tolerance still, because it costs nothing: another draw differs by O(1).
    np.testing.assert_allclose(samples["x"], shipped_samples["x"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(samples["h"], shipped_samples["h"], rtol=0, atol=H_ATOL)

    metrics, shipped_metrics = new.json("metrics.json"), old.json("metrics.json")
    assert metrics["model"]["loss"] == pytest.approx(shipped_metrics["model"]["loss"], rel=LOSS_RTOL)
    assert metrics["model"]["instance_losses"] == pytest.approx(shipped_metrics["model"]["instance_losses"],
                                                                rel=LOSS_RTOL)
    assert metrics["model"]["feature_dimensionality"] == pytest.approx(
        shipped_metrics["model"]["feature_dimensionality"], abs=W_ATOL * 10)
    assert metrics["saes"]["oracle"] == pytest.approx(shipped_metrics["saes"]["oracle"], abs=1e-6)


def test_a_rebuilt_sae_finds_the_shipped_directions(rebuilt, toy):
    """The trained SAE's weights drift by a few 1e-3 across CPUs, so what is compared is
    what stages read from it: its decoder directions, one for one, and its quality."""
    new, old = rebuilt.sae("trained"), toy.sae("trained")

    def unit(sae):
        return torch.nn.functional.normalize(sae.W_dec.detach(), dim=1)

    cos = unit(old) @ unit(new).T
    partner = cos.argmax(1)
    assert sorted(partner.tolist()) == list(range(new.cfg.d_sae)), cos  # one rebuilt row for each shipped one
    assert (cos.max(1).values > SAE_COS).all(), cos
    metrics = rebuilt.artifact.json("metrics.json")["saes"]["trained"]
    shipped = toy.artifact.json("metrics.json")["saes"]["trained"]
    for key in ("fvu", "match_to_truth"):
        assert metrics[key] == pytest.approx(shipped[key], abs=SAE_METRIC_ATOL), key
    # TopK keeps k latents a sample (one sample more or less with a zero among them moves
    # the mean by 1/8192), and every latent is used wherever it was trained.
    assert metrics["l0"] == pytest.approx(shipped["l0"], abs=1e-3)
    assert metrics["dead_fraction"] == 0.0 and metrics["d_sae"] == shipped["d_sae"]
    # The oracle involves no arithmetic (zeros and an identity), so its weights are exact.
    for key, value in rebuilt.sae("oracle").state_dict().items():
        assert torch.equal(value, toy.sae("oracle").state_dict()[key]), key


def test_world_cli(cli, tmp_path):
    listed = json.loads(cli("world", "list", "--json").stdout)
    assert {"world": "toy", "shipped": True} == {k: listed[0][k] for k in ("world", "shipped")}
    info = cli("world", "info", "toy")
    assert info.exit_code == 0 and "trained (reads hook_hidden)" in info.stdout


@pytest.mark.parametrize("args, message", [
    (["world", "build", "moon"], "no world named 'moon'"),
    (["world", "build", "toy", "-p", "sparsity=2"], "toy: sparsity must be in [0, 1), got 2"),
    (["world", "build", "toy", "-p", "lr=nan"], "lr must be a finite number"),
    (["world", "build", "toy", "-p", "sae_k=20"], "--k 20 is larger than the SAE's width 10"),
    (["world", "build", "themes", "-p", "sae_hook=nope"], "-p sae_hook='nope'"),
    (["world", "build", "toy", "-p", "colour=red"], "unknown toy world parameter 'colour'"),
    (["world", "info", "nowhere"], "nowhere: no such artifact directory"),
])
def test_bad_world_requests_exit_2(cli, tmp_path, args, message):
    result = cli(*args, *(["--out", tmp_path / "w"] if args[1] == "build" else []))
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert not (tmp_path / "w").exists()


def test_a_builtin_name_means_the_shipped_world(cli, tmp_path, monkeypatch):
    """A local directory that happens to be called `toy` does not shadow the built-in."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "notes.txt").write_text("mine")
    result = cli("world", "info", "toy", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["path"] == str(SHIPPED / "toy")
