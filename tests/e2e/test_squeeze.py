"""`codec squeeze`: the Squeezer's maths, the batch stream, resuming, divergence, bad
input, and a run on the themes world. The toy-world ground truth is in test_squeeze_toy.py."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import polars as pl
import pytest
import torch
from safetensors.numpy import load_file

from codec_cli.artifacts import ArtifactWriter, open_artifact
from codec_cli.errors import BadInput
from codec_cli.sources.features import Batches, top_rows
from codec_cli.stages.squeeze import SqueezeConfig, learning_rate, squeeze
from codec_cli.nn.squeezer import Squeezer
from conftest import write_features


# --- the model ------------------------------------------------------------------------


def reference_loss(s: Squeezer, idx, val, weight):
    """The loss written the plain autograd way, with the dense input x."""
    R, F, M = s.shape
    x = torch.zeros(len(idx), F, dtype=val.dtype).scatter_add_(1, idx, val)
    h = torch.einsum("bf,frm->rbm", x, s.W_enc) + s.b_enc.unsqueeze(1)
    h = h.relu() if s.neuron_act == "relu" else h
    x_hat = torch.relu(h @ s.decoder() + s.b_dec.unsqueeze(1))
    return (((x_hat - x) ** 2) * (1 if weight is None else weight)).mean((1, 2))


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("act", ["linear", "relu"])
@pytest.mark.parametrize("weighted", [False, True])
def test_sparse_fused_loss_and_gradients_equal_the_dense_reference(tied, act, weighted) -> None:
    torch.manual_seed(0)
    F, M, B, k = 40, 5, 24, 4
    s = Squeezer(F, M, instances=3, tied=tied, neuron_act=act, seed=1).double()
    with torch.no_grad():
        s.b_dec.uniform_(-0.3, 0.3)
        s.b_enc.uniform_(-0.1, 0.1)
    idx = torch.stack([torch.randperm(F)[:k] for _ in range(B)])
    val = torch.rand(B, k, dtype=torch.float64)
    idx[:4, -1], val[:4, -1] = 0, 0.0  # empty slots, as the stream hands them over
    idx[0, 0] = 0  # feature 0 both real and padding in one row
    weight = torch.rand(F, dtype=torch.float64) + 0.5 if weighted else None
    loss = s.loss(idx, val, weight)
    ref = reference_loss(s, idx, val, weight)
    torch.testing.assert_close(loss, ref)
    grads = torch.autograd.grad((loss * torch.tensor([1.0, 2.0, 3.0])).sum(), list(s.parameters()))
    expect = torch.autograd.grad((ref * torch.tensor([1.0, 2.0, 3.0])).sum(), list(s.parameters()))
    for g, e in zip(grads, expect):
        torch.testing.assert_close(g, e)


def test_a_compute_dtype_casts_products_and_hands_back_float32_gradients() -> None:
    """The path --dtype bfloat16 takes on a GPU, run here in float64: bf16 matrix products
    can crash a CPU (SIGILL where AMX is advertised but not enabled), so squeeze refuses them there."""
    s = Squeezer(300, 16, seed=0)
    idx, val = torch.randint(0, 300, (64, 8)), torch.rand(64, 8)
    full = s.loss(idx, val)
    s.compute_dtype = torch.float64
    wide = s.loss(idx, val)
    wide.sum().backward()
    assert wide.dtype == torch.float64 and s.W_enc.grad.dtype == torch.float32
    torch.testing.assert_close(wide.float(), full)


def test_saved_weights_rebuild_the_same_instance() -> None:
    s = Squeezer(30, 4, instances=2, tied=False, neuron_act="relu", seed=3)
    one = Squeezer.from_weights(s.weights(1), tied=False, neuron_act="relu")
    idx, val = torch.randint(0, 30, (10, 3)), torch.rand(10, 3)
    torch.testing.assert_close(one.loss(idx, val)[0], s.loss(idx, val)[1])
    assert s.weights(1)["W_dec"].shape == (4, 30) and s.weights(1)["W_enc"].shape == (30, 4)


def test_learning_rate_warms_up_then_decays_to_its_floor() -> None:
    cfg = SqueezeConfig(features=".", warmup=10, lr=1.0, final_lr=0.1)
    rates = [learning_rate(cfg, s, 110) for s in range(110)]
    assert rates[0] == pytest.approx(0.1) and rates[9] == pytest.approx(1.0)
    assert rates[-1] == pytest.approx(0.1) and all(a >= b for a, b in zip(rates[9:], rates[10:]))
    assert learning_rate(replace(cfg, decay="constant"), 100, 110) == 1.0


# --- the batch stream -----------------------------------------------------------------


def test_each_training_row_comes_once_per_epoch_and_held_out_rows_never(tmp_path) -> None:
    art = open_artifact(write_features(tmp_path / "f", d_sae=500, k=3, shards=5, rows=100))
    # A row is told apart by its three random feature indices.
    b = Batches(art, 3, batch_size=16, buffer_rows=150, held_out=140, seed=0)
    assert b.rows == 360 and [p.rows for p in b.held] == [40, 100]
    held = {tuple(r) for r in b.held_out()[0]}
    epoch = b.steps(1)
    assert epoch == sum(n for _, n in b.windows(0)) and 360 // 16 - len(b.windows(0)) <= epoch <= 360 // 16
    stream = b.stream()
    rows = [tuple(r) for _ in range(epoch) for r in next(stream)[0]]
    assert len(rows) == len(set(rows)) == epoch * 16  # no row twice in an epoch
    assert not held & set(rows)
    # Every batch depends on its step alone: resuming at step s reads the same batches.
    later = b.stream(epoch - 3)
    again = b.stream()
    for _ in range(epoch - 3):
        next(again)
    for _ in range(8):
        a, c = next(later), next(again)
        np.testing.assert_array_equal(a[0], c[0])
        np.testing.assert_array_equal(a[1], c[1])


@pytest.mark.parametrize("seed", range(4))
def test_many_windows_and_a_short_last_one_still_read_each_row_once(tmp_path, seed) -> None:
    """Four windows, the last a 10-row piece that joins the one before it."""
    art = open_artifact(write_features(tmp_path / "f", d_sae=500, k=3, shards=4, rows=100, seed=seed))
    b = Batches(art, 3, batch_size=16, buffer_rows=100, held_out=90, seed=seed)
    stream = b.stream()
    for epoch in range(3):
        windows = b.windows(epoch)
        pieces = [p for w, _ in windows for p in w]
        assert sorted(pieces, key=lambda p: p.shard) == sorted(b.train, key=lambda p: p.shard)
        rows = [tuple(r) for _ in range(sum(n for _, n in windows)) for r in next(stream)[0]]
        assert len(rows) == len(set(rows)) >= b.rows - 15 * len(windows)


def test_a_buffer_smaller_than_a_batch_is_refused(tmp_path) -> None:
    art = open_artifact(write_features(tmp_path / "f", shards=2, rows=100))
    with pytest.raises(BadInput, match="smaller than a batch"):
        Batches(art, 4, batch_size=32, buffer_rows=8, held_out=10, seed=0)


def test_rows_are_cut_to_their_largest_k() -> None:
    idx = np.array([[5, 6, 7], [1, -1, -1]], np.int32)
    val = np.array([[0.1, 0.9, 0.5], [0.3, 0.0, 0.0]], np.float32)
    i, v = top_rows(idx, val, 2)
    assert i.tolist() == [[6, 7], [1, -1]]
    np.testing.assert_allclose(v, [[0.9, 0.5], [0.3, 0.0]])


def test_too_few_rows_is_bad_input(tmp_path) -> None:
    art = open_artifact(write_features(tmp_path / "f", shards=1, rows=50))
    with pytest.raises(BadInput, match="too few"):
        Batches(art, 4, batch_size=32, buffer_rows=100, held_out=20, seed=0)


# --- runs -------------------------------------------------------------------------------


def small(tmp_path, **kw) -> SqueezeConfig:
    f = tmp_path / "features"
    if not f.exists():
        write_features(f, d_sae=64, k=4, shards=3, rows=400)
    base = dict(features=f, m=8, k=4, batch_size=64, steps=60, eval_rows=200, faithfulness=False,
                checkpoint_every=10, buffer_rows=500, restarts=2, out=tmp_path / "sq")
    return SqueezeConfig(**(base | kw))


def test_same_inputs_and_seed_give_the_same_bytes(tmp_path) -> None:
    squeeze(small(tmp_path))
    first = open_artifact(tmp_path / "sq").fingerprint
    squeeze(small(tmp_path, out=tmp_path / "again"))
    assert open_artifact(tmp_path / "again").fingerprint == first
    squeeze(small(tmp_path, out=tmp_path / "other", seed=1))
    assert open_artifact(tmp_path / "other").fingerprint != first


def test_a_resumed_run_ends_as_an_uninterrupted_one(tmp_path, monkeypatch) -> None:
    squeeze(small(tmp_path, out=tmp_path / "whole"))
    real = Batches.stream

    def dies_at_step_35(self, start=0):
        for step, batch in enumerate(real(self, start), start):
            if step == 35:
                raise KeyboardInterrupt
            yield batch

    monkeypatch.setattr(Batches, "stream", dies_at_step_35)
    with pytest.raises(KeyboardInterrupt):
        squeeze(small(tmp_path))
    assert (tmp_path / ".sq.partial" / "checkpoint" / "state.safetensors").is_file()
    assert not (tmp_path / "sq").exists()
    monkeypatch.setattr(Batches, "stream", real)
    with pytest.raises(BadInput, match="different settings.*m"):
        squeeze(small(tmp_path, resume=True, m=9))
    squeeze(small(tmp_path, resume=True))
    assert open_artifact(tmp_path / "sq").fingerprint == open_artifact(tmp_path / "whole").fingerprint
    # --resume is how the run was made, not what it is: the manifest is the uninterrupted run's.
    (tmp_path / "sq").rename(tmp_path / "resumed")
    squeeze(small(tmp_path))
    assert (tmp_path / "resumed/manifest.json").read_bytes() == (tmp_path / "sq/manifest.json").read_bytes()


def test_a_divergent_run_stops_and_keeps_its_last_good_checkpoint(tmp_path, cli) -> None:
    """Sound features, a learning rate that blows the weights up: the run stops at the
    first non-finite loss and keeps the checkpoint before it."""
    f = write_features(tmp_path / "features", d_sae=64, k=4, shards=3, rows=400)
    r = cli("squeeze", f, "--m", 8, "--k", 4, "--batch-size", 64, "--steps", 60, "--lr", "1e30",
            "--eval-rows", 200, "--buffer-rows", 500, "--checkpoint-every", 1, "--no-faithfulness",
            "--out", tmp_path / "sq")
    assert r.exit_code == 1 and "diverged at step" in r.stderr and "last good checkpoint" in r.stderr, r.stderr
    assert "--resume" in r.stderr  # told what to do with what was kept
    assert (tmp_path / ".sq.partial" / "checkpoint" / "state.safetensors").is_file()
    assert not (tmp_path / "sq").exists()


def test_a_checkpoint_with_a_flipped_byte_is_refused(tmp_path) -> None:
    from codec_cli.nn import checkpoint

    f = write_features(tmp_path / "features", d_sae=64, k=4, shards=3, rows=400)
    real = Batches.stream

    def dies_at_step_12(self, start=0):
        for i, batch in enumerate(real(self, start)):
            if start + i == 12:
                raise KeyboardInterrupt
            yield batch

    cfg = SqueezeConfig(features=f, m=8, k=4, batch_size=64, steps=30, eval_rows=200, buffer_rows=500,
                        checkpoint_every=5, faithfulness=False, out=tmp_path / "sq")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Batches, "stream", dies_at_step_12)
        with pytest.raises(KeyboardInterrupt):
            squeeze(cfg)
    state = tmp_path / ".sq.partial" / "checkpoint" / checkpoint.FILE
    good = state.read_bytes()
    for damage in (lambda b: b[:-3] + bytes([b[-3] ^ 1]) + b[-2:], lambda b: b[: len(b) // 2]):
        state.write_bytes(damage(good))
        with pytest.raises(BadInput, match="damaged or truncated"):
            squeeze(replace(cfg, resume=True))
        assert not (tmp_path / "sq").exists()
    state.write_bytes(good)
    squeeze(replace(cfg, resume=True))
    assert open_artifact(tmp_path / "sq", "squeezer")


@pytest.mark.parametrize("poison, words", [
    (lambda i, v: (np.where(i == i[0, 0], -3, i), v), "feature index -3 out of range"),
    (lambda i, v: (np.where(i == i[0, 0], 64, i), v), "feature index 64 out of range"),
    (lambda i, v: (i, np.where(i == i[0, 0], np.float32(np.inf), v)), "NaN or infinite"),
    (lambda i, v: (i, np.where(i == i[0, 0], np.float32(np.nan), v)), "NaN or infinite"),
    (lambda i, v: (i[:, :3], v[:, :3]), "attrs.k is 4"),
])
def test_features_that_cannot_be_trained_on_are_refused_before_training(tmp_path, cli, poison, words) -> None:
    """One bad shard, the last one read: refused by name before a step is taken."""
    f = write_features(tmp_path / "features", d_sae=64, k=4, shards=3, rows=400)
    art = open_artifact(f)
    with ArtifactWriter(tmp_path / "bad", "features", command="test", attrs=art.attrs) as w:
        for name in art.files("shards/"):
            t = dict(art.tensors(name))
            if name == art.files("shards/")[-1]:
                t["indices"], t["values"] = poison(t["indices"], t["values"])
            w.write_tensors(name, t)
    r = cli("squeeze", tmp_path / "bad", "--m", 8, "--k", 4, "--batch-size", 64, "--steps", 2000,
            "--eval-rows", 200, "--buffer-rows", 500, "--no-faithfulness", "--out", tmp_path / "sq")
    assert r.exit_code == 2 and words in r.stderr and "shards/00002.safetensors" in r.stderr, r.stderr
    assert "diverged" not in r.stderr and "unexpected" not in r.stderr
    assert not (tmp_path / "sq").exists() and not (tmp_path / ".sq.partial").exists()


def test_a_checkpoint_from_an_older_codec_is_refused_in_one_line(tmp_path) -> None:
    from safetensors.torch import save_file

    from codec_cli.nn import checkpoint

    (tmp_path / "ck").mkdir()
    save_file({"sae.W": torch.zeros(2)}, tmp_path / "ck" / checkpoint.FILE, metadata={"step": "5", "run": "{}"})
    s = Squeezer(4, 2)
    with pytest.raises(BadInput, match="older codec"):
        checkpoint.load(tmp_path / "ck", s, torch.optim.AdamW(s.parameters()), {})


def test_only_relu_biases_are_held_to_a_threshold() -> None:
    for act, clamped in (("relu", True), ("linear", False)):
        s = Squeezer(6, 3, instances=2, neuron_act=act)
        with torch.no_grad():
            s.b_enc.copy_(torch.tensor([[0.5, -0.2, 1.0], [-1.0, 0.3, 0.0]]))
        before = s.b_enc.detach().clone()
        s.project()
        assert torch.equal(s.b_enc.detach(), before.clamp(max=0) if clamped else before)


def test_what_the_squeezer_artifact_holds(tmp_path) -> None:
    m = squeeze(small(tmp_path, rescale="max", importance="frequency", neuron_act="relu", restarts=1))
    art = open_artifact(tmp_path / "sq", "squeezer")
    assert art.inputs[0]["kind"] == "features"
    assert {"weights.safetensors", "training.parquet", "features.parquet", "neurons.parquet",
            "metrics.json"} <= set(art.files())
    w = load_file(tmp_path / "sq" / "weights.safetensors")
    assert w["W_enc"].shape == (64, 8) and w["W_dec"].shape == (8, 64)
    assert (w["b_enc"] <= 0).all()  # ReLU neurons keep a firing threshold
    stats = open_artifact(tmp_path / "features")  # no features.parquet: squeeze counts the shards
    counted = np.bincount(np.concatenate([s.indices.ravel() for s in stats.topk()]), minlength=64)
    peak = np.zeros(64, np.float32)
    for s in stats.topk():
        np.maximum.at(peak, s.indices.ravel(), s.values.ravel())
    np.testing.assert_allclose(w["scale"], np.where(peak > 0, peak, 1.0))
    freq = counted / counted.sum()
    np.testing.assert_allclose(w["importance"], freq / freq.mean(), rtol=1e-5)
    table = pl.read_parquet(tmp_path / "sq" / "features.parquet")
    assert set(table["status"]) <= {"represented", "dropped", "never fired"}
    assert ((table["status"] == "never fired") == (table["frequency"] == 0)).all()
    assert m["represented"] + m["dropped"] + m["never_fired"] == 64
    neurons = pl.read_parquet(tmp_path / "sq" / "neurons.parquet")
    assert len(neurons) == 8 and m["dead_neurons"] == int(neurons["dead"].sum())
    assert json.loads((tmp_path / "sq" / "metrics.json").read_text())["loss"] == pytest.approx(m["loss"])
    assert 0 <= m["fvu"] and m["tokens_per_s"] > 0 and m["faithfulness_ratio"] is None


def test_a_percentile_scale_sits_below_the_maximum(tmp_path) -> None:
    squeeze(small(tmp_path, rescale="p50", steps=5))
    table = pl.read_parquet(tmp_path / "sq" / "features.parquet")
    fired = table.filter(pl.col("frequency") > 0)
    assert ((fired["scale"] > 0) & (fired["scale"] < 1)).all()  # values are uniform on [0, 1)
    assert 0.3 < float(fired["scale"].median()) < 0.7


def test_themes_world_reports_everything(tmp_path, cli) -> None:
    r = cli("extract", "themes", "--tokens", 6000, "--out", tmp_path / "f", "--json")
    assert r.exit_code == 0, r.output
    r = cli("squeeze", tmp_path / "f", "--m", 16, "--k", 8, "--steps", 150, "--eval-rows", 2048,
            "--batch-size", 256, "--rescale", "max", "--out", tmp_path / "sq", "--json")
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)
    assert m["faithfulness_ratio"] == pytest.approx(m["loss"] / m["model_codec_loss"])
    assert m["faithfulness_ratio"] > 1  # 16 neurons cannot match the model's 64 dimensions
    assert m["represented"] + m["dropped"] + m["never_fired"] == m["features"] == 256
    assert 0 < m["fvu"] < 1
    table = pl.read_parquet(tmp_path / "sq" / "features.parquet")
    assert table["fvu"].null_count() == int((table["held_out_count"] == 0).sum()) > 0  # none fired: no fvu


@pytest.mark.parametrize("args, words", [
    (["--k", 65], "larger than the number of features"),
    (["--rescale", "p101"], "--rescale must be"),
    (["--rescale", "median"], "--rescale must be"),
    (["--importance", "nope.parquet"], "--importance nope.parquet: no such file"),
    (["--neuron-act", "gelu"], "--neuron-act must be one of"),
    (["--m", 0], "--m must be at least 1"),
    (["--eval-rows", 5000], "too few"),
    (["--device", "cuda"], "no CUDA device"),
    (["--device", "tpu9"], "--device 'tpu9' is not a device torch knows"),
    (["--dtype", "bfloat16"], "bfloat16 is for GPUs"),
    ([], "does not say which SAE"),
])
def test_bad_requests_exit_2_without_output(tmp_path, cli, args, words) -> None:
    f = write_features(tmp_path / "f", d_sae=64, k=4, shards=2, rows=300)
    extra = [] if words == "does not say which SAE" else ["--no-faithfulness"]
    r = cli("squeeze", f, "--m", 4, "--k", 4, "--steps", 2, "--eval-rows", 100, "--batch-size", 64, *extra, *args,
            "--out", tmp_path / "sq")
    assert r.exit_code == 2 and words in r.stderr, r.stderr
    assert not (tmp_path / "sq").exists() and not (tmp_path / ".sq.partial").exists()


def test_a_bad_importance_table_is_named(tmp_path, cli) -> None:
    f = write_features(tmp_path / "f", d_sae=64, k=4, shards=2, rows=300)
    pl.DataFrame({"feature": [0, 1], "importance": [1.0, 2.0]}).write_parquet(tmp_path / "w.parquet")
    r = cli("squeeze", f, "--m", 4, "--k", 4, "--eval-rows", 100, "--no-faithfulness", "--importance", tmp_path / "w.parquet",
            "--out", tmp_path / "sq")
    assert r.exit_code == 2 and "each of the 64 features" in r.stderr


def test_an_out_that_is_not_a_squeezer_is_refused(tmp_path, cli) -> None:
    f = write_features(tmp_path / "f", d_sae=64, k=4, shards=2, rows=300)
    r = cli("squeeze", f, "--m", 4, "--k", 4, "--no-faithfulness", "--out", f)
    assert r.exit_code == 2 and "refusing to replace" in r.stderr
    assert open_artifact(f, "features")


def test_held_out_rows_that_never_vary_give_a_null_fvu(tmp_path) -> None:
    """Every row the same: FVU is 0/0, written as null rather than failing on NaN."""
    with ArtifactWriter(tmp_path / "flat", "features", command="test", attrs={"d_sae": 16, "k": 2}) as w:
        w.write_topk(np.tile(np.array([[3, 5]], np.int32), (600, 1)), np.ones((600, 2), np.float32))
    metrics = squeeze(SqueezeConfig(features=tmp_path / "flat", m=4, k=2, batch_size=64, steps=5, eval_rows=200,
                                    faithfulness=False, out=tmp_path / "sq"))
    assert metrics["fvu"] is None
    assert open_artifact(tmp_path / "sq").json("metrics.json")["fvu"] is None
