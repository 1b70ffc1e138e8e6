"""`codec extract` and `codec merge`: features read back equal the SAE's own top-k on
the same tokens, neurons equal a direct run_with_cache, a killed run resumes to the
same bytes, ranks merge into what one process writes, and bad requests fail early."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

import tiny_models
from codec_cli.sources import models
from codec_cli.artifacts import open_artifact

CODEC = Path(sys.executable).parent / "codec"


def read(path: Path) -> tuple[dict, pl.DataFrame, np.ndarray | None]:
    """All shards of a features artifact joined: top-k arrays, token table, neurons."""
    art = open_artifact(path, "features")
    shards = [art.tensors(n) for n in art.files("shards/")]
    top = {k: np.concatenate([s[k] for s in shards]) for k in shards[0]}
    tokens = pl.concat([art.table(n) for n in art.files("tokens/")])
    neurons = art.files("neurons/")
    return top, tokens, np.concatenate([art.tensors(n)["acts"] for n in neurons]) if neurons else None


def rebuild(tokens: pl.DataFrame, bos: int, n_ctx: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The windows the model read, from the token table (BOS first, padded), and the
    mask of stored positions (not BOS, not padding)."""
    groups = [g["token_id"].to_numpy() for _, g in tokens.group_by("window", maintain_order=True)]
    windows = torch.tensor(np.stack([np.pad(np.concatenate([[bos], g]), (0, n_ctx - 1 - len(g))) for g in groups]))
    n_real = torch.tensor([len(g) for g in groups])
    keep = (torch.arange(n_ctx)[None] <= n_real[:, None]) & (torch.arange(n_ctx)[None] > 0)
    return windows, keep


def expected(model, sae, hook: str, windows: torch.Tensor, keep: torch.Tensor, k: int):
    """What extraction should store, computed directly: run_with_cache, encode, top-k."""
    with torch.no_grad():
        _, cache = model.run_with_cache(windows, names_filter=[hook])
        f = sae.encode(cache[hook][keep])
    values, indices = f.topk(k, dim=-1)
    return indices.masked_fill(values <= 0, -1).numpy(), values.clamp(min=0).numpy(), f


# --------------------------------------------------------------------------- worlds


def test_themes_round_trip_with_neurons_and_labels(cli, tmp_path):
    out = tmp_path / "f"
    r = cli("extract", "themes", "--tokens", 3000, "--shard-tokens", 700, "--neurons", "blocks.0.mlp.hook_post",
            "--out", out, "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["rows"] == 3000 and summary["k"] == 8 and summary["mass_kept"] == pytest.approx(1.0)
    top, tokens, neurons = read(out)
    art = open_artifact(out, "features")
    assert len(art.files("shards/")) == 5 and art.attrs["rows"] == 3000 == len(tokens) == len(neurons)
    assert art.attrs["sae"]["origin"] == "world:themes/resid" and art.attrs["part"] is None
    assert [i["kind"] for i in art.inputs] == ["world"]

    # The same windows, straight through transformer-lens and sae-lens.
    world = models.open_model("themes")[1]
    model, sae = world.model(), world.sae()
    windows, keep = rebuild(tokens, model.tokenizer.bos_token_id, 64)
    indices, values, f = expected(model, sae, "blocks.1.hook_resid_pre", windows, keep, 8)
    assert np.array_equal(top["indices"], indices)
    assert np.allclose(top["values"], values, atol=1e-5)
    assert np.array_equal(top["l0"], (f > 0).sum(-1).numpy())
    with torch.no_grad():
        _, cache = model.run_with_cache(windows, names_filter=["blocks.0.mlp.hook_post"])
    assert np.allclose(neurons, cache["blocks.0.mlp.hook_post"][keep].numpy(), atol=1e-5)

    # Ground truth comes with every token, and the statistics count what is stored.
    assert tokens["pos"].min() == 1 and tokens["pos"].max() == 63
    days = tokens.filter(pl.col("cycle") == "weekday")
    assert len(days) > 0 and set(days["token"].unique()) <= {"monday", "tuesday", "wednesday", "thursday",
                                                              "friday", "saturday", "sunday"}
    stats = art.table("features.parquet")
    assert stats["count"].sum() == (top["indices"] >= 0).sum()
    assert stats["max"].max() == pytest.approx(float(top["values"].max()))


def test_toy_world_rows_are_samples_labelled_with_their_true_features(cli, tmp_path):
    r = cli("extract", "toy", "--sae", "oracle", "--tokens", 500, "--out", tmp_path / "f", "--json")
    assert r.exit_code == 0, r.output
    top, tokens, _ = read(tmp_path / "f")
    assert len(tokens) == 500 and "token_id" not in tokens.columns
    # The oracle SAE reads the true features back: its top-k are the active ones.
    for idx, active in zip(top["indices"][:50], tokens["active"].to_list()[:50]):
        assert set(idx[idx >= 0].tolist()) == set(active)


def test_toy_world_default_sae_reads_the_narrower_hidden_layer(cli, tmp_path):
    """The trained SAE reads hook_hidden (5 wide) of samples 10 wide: one vector per
    sample all the same, and the stored top-k is the SAE's own on W x."""
    r = cli("extract", "toy", "--tokens", 300, "--out", tmp_path / "f", "--json")
    assert r.exit_code == 0, r.output
    top, tokens, _ = read(tmp_path / "f")
    art = open_artifact(tmp_path / "f")
    assert art.attrs["hook"] == "hook_hidden" and art.attrs["d_in"] == 5 and len(tokens) == 300
    world = models.open_model("toy")[1]
    module, wcfg = world.config()
    from codec_cli.stages.extract import CHUNK, STREAM_STEP

    x = torch.cat([module.inputs(wcfg, STREAM_STEP + step, CHUNK) for step in (0, 1)])[:300]
    model, sae = world.model(), world.sae()
    with torch.no_grad():
        _, cache = model.run_with_cache(x, names_filter=["hook_hidden"])
        f = sae.encode(cache["hook_hidden"])
    values, indices = f.topk(art.attrs["k"], dim=-1)
    assert np.array_equal(top["indices"], indices.masked_fill(values <= 0, -1).numpy())
    assert np.allclose(top["values"], values.clamp(min=0).numpy(), atol=1e-6)


def test_a_sparse_toy_world_with_batches_where_nothing_fires(cli, tmp_path):
    """At sparsity 0.99 most samples, and whole batches, have no active feature; the
    label column keeps one type (list of int64) in every shard all the same."""
    world = tmp_path / "world"
    quick = ["-p", "steps=1", "-p", "n_instances=1", "-p", "sae_steps=1", "-p", "sae_k=1", "-p", "n_samples=1024"]
    assert cli("world", "build", "toy", "-p", "sparsity=0.99", *quick, "--out", world).exit_code == 0
    r = cli("extract", world, "--sae", "oracle", "--tokens", 2000, "--shard-tokens", 100, "--batch-size", 4,
            "--out", tmp_path / "f")
    assert r.exit_code == 0, r.output
    art = open_artifact(tmp_path / "f")
    tables = [art.table(n) for n in art.files("tokens/")]
    assert any(t["active"].head(4).list.len().sum() == 0 for t in tables)  # the planted case did occur
    assert all(t.schema["active"] == pl.List(pl.Int64) for t in tables)
    _, tokens, _ = read(tmp_path / "f")
    assert len(tokens) == 2000 and 0.05 < tokens["active"].list.len().mean() < 0.2


# --------------------------------------------------------------------------- models, SAEs, corpora


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory) -> Path:
    return tiny_models.hf_model(tmp_path_factory.mktemp("hf") / "tiny-gpt2")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("corpus")
    docs = tiny_models.TEXT[:4] + ["", "short"]
    (d / "docs.jsonl").write_text("".join(json.dumps({"body": t}) + "\n" for t in docs))
    pl.DataFrame({"body": docs}).write_parquet(d / "docs.parquet")
    return d


def test_local_hf_model_with_sae_lens_and_sparsify_saes(cli, tmp_path, gpt2, corpus):
    hook = "blocks.1.hook_resid_pre"
    lens = tiny_models.sae(tmp_path / "sae", 32, 64, hook, "tiny-gpt2", k=4)
    sparsify = tiny_models.as_sparsify(lens, tmp_path / "sparsify", "layers.0", "tiny-gpt2")
    args = ["--corpus", corpus / "docs.jsonl", "--column", "body", "--context", 12, "--tokens", 10_000]
    # sparsify's layers.0 is the output of block 0, the same residual stream as blocks.1.hook_resid_pre,
    # uncentred as sparsify reads it (the converted SAE asks for that).
    raw = ["--model-kwarg", "center_writing_weights=false"]
    assert cli("extract", gpt2, "--sae", lens, *args, *raw, "--out", tmp_path / "a").exit_code == 0
    r = cli("extract", gpt2, "--sae", sparsify, *args, "--out", tmp_path / "b", "--json")
    assert r.exit_code == 0, r.output
    a, b = read(tmp_path / "a"), read(tmp_path / "b")
    assert np.array_equal(a[0]["indices"], b[0]["indices"]) and np.allclose(a[0]["values"], b[0]["values"], atol=1e-5)
    assert open_artifact(tmp_path / "b").attrs["hook"] == "blocks.0.hook_resid_post"

    # Every token of every document, once: the budget is more than the corpus has.
    tokens = a[1]
    tok = tiny_models.tokenizer()
    lengths = [len(tok(t)["input_ids"]) for t in tiny_models.TEXT[:4] + ["", "short"]]
    assert len(tokens) == sum(lengths)
    assert tokens.group_by("doc").len().sort("doc")["len"].to_list() == [n for n in lengths if n]
    assert tokens["pos"].min() == 1 and tokens["pos"].max() == 11  # BOS dropped, padding never stored

    # Round trip against the model read straight from the directory.
    model, _ = models.open_model(str(gpt2), {"center_writing_weights": False})
    sae = models.open_sae(str(lens)).sae
    windows, keep = rebuild(tokens, tok.bos_token_id, 12)
    indices, values, _ = expected(model, sae, hook, windows, keep, 4)
    assert np.array_equal(a[0]["indices"], indices) and np.allclose(a[0]["values"], values, atol=1e-5)


def test_parquet_file_and_dataset_directory_read_the_same(cli, tmp_path, gpt2, corpus):
    lens = tiny_models.sae(tmp_path / "sae", 32, 64, "blocks.0.hook_resid_post", "tiny-gpt2")
    common = ["--sae", lens, "--column", "body", "--context", 8, "--tokens", 60]
    assert cli("extract", gpt2, "--corpus", corpus / "docs.parquet", *common, "--out", tmp_path / "a").exit_code == 0
    data = tmp_path / "dataset"
    data.mkdir()
    shutil.copy(corpus / "docs.parquet", data / "train.parquet")
    assert cli("extract", gpt2, "--dataset", data, *common, "--out", tmp_path / "b").exit_code == 0
    assert open_artifact(tmp_path / "a").attrs["rows"] == 60
    assert [open_artifact(tmp_path / x).manifest["files"]["shards/00000.safetensors"] for x in "ab"][0] == \
        open_artifact(tmp_path / "b").manifest["files"]["shards/00000.safetensors"]


def test_a_relu_sae_keeps_the_least_k_that_holds_the_mass(cli, tmp_path, gpt2, corpus):
    relu = tiny_models.sae(tmp_path / "relu", 32, 64, "blocks.0.hook_resid_post", "tiny-gpt2", architecture="standard")
    r = cli("extract", gpt2, "--sae", relu, "--corpus", corpus / "docs.jsonl", "--column", "body", "--context", 16,
            "--mass", 0.9, "--out", tmp_path / "f", "--json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    top, _, _ = read(tmp_path / "f")
    assert 1 < s["k"] < 64 and s["l0"] > s["k"]
    kept = top["values"].sum() / top["mass"].sum()
    assert s["mass_kept"] == pytest.approx(kept, rel=1e-5) and kept >= 0.85
    # One fewer would not have done: the k-th column carries real mass.
    assert (top["values"][:, -1] > 0).any()


def test_the_sae_names_the_model_and_its_loading_options(monkeypatch, tmp_path, gpt2, corpus, capsys):
    """A hub SAE (faked: no hub here) whose config asks for center_writing_weights=False:
    the model is the one the SAE names, loaded with the SAE's options over the user's."""
    from codec_cli.stages.extract import ExtractConfig, extract

    lens = tiny_models.sae(tmp_path / "sae", 32, 64, "blocks.0.hook_resid_post", str(gpt2),
                           model_from_pretrained_kwargs={"center_writing_weights": False})
    monkeypatch.setattr(models, "_sae_from_hub", lambda release, sae_id, device: models.open_sae(str(lens)).sae)
    seen = {}
    real = models._from_hf_dir
    monkeypatch.setattr(models, "_from_hf_dir", lambda path, kw: seen.update(kw) or real(path, kw))
    extract(ExtractConfig(sae="some-release", sae_id="blocks.0.hook_resid_post", corpus=[corpus / "docs.jsonl"],
                          column="body", context=8, tokens=40, model_kwarg=["center_writing_weights=true"],
                          out=tmp_path / "f"))
    assert seen == {"center_writing_weights": False}
    err = capsys.readouterr().err
    assert "center_writing_weights=False from the SAE's config, not True" in err
    assert open_artifact(tmp_path / "f").attrs["sae"]["origin"] == "some-release/blocks.0.hook_resid_post"


# --------------------------------------------------------------------------- resume, ranks, merge


def test_a_killed_extraction_resumes_to_the_same_bytes(tmp_path):
    args = ["-q", "extract", "themes", "--tokens", "60000", "--shard-tokens", "2000", "--batch-size", "4",
            "--neurons", "blocks.0.mlp.hook_post"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([CODEC, *args, "--out", tmp_path / "straight"], check=True, capture_output=True, env=env)
    proc = subprocess.Popen([CODEC, *args, "--out", tmp_path / "killed"], env=env)
    shards = tmp_path / ".killed.partial/shards"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(shards.glob("*.safetensors"))) < 3:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert not (tmp_path / "killed").exists() and len(list(shards.glob("*.safetensors"))) >= 3
    damaged = sorted(shards.glob("*.safetensors"))[1]  # a finished shard truncated behind codec's back
    damaged.write_bytes(damaged.read_bytes()[:100])
    done = subprocess.run([CODEC, *args, "--out", tmp_path / "killed", "--resume"], capture_output=True, text=True,
                          env=env)
    assert done.returncode == 0, done.stderr
    # (-q hides the note that the damaged shard is extracted again; the bytes below show it was.)
    a, b = (json.loads((tmp_path / x / "manifest.json").read_text()) for x in ("straight", "killed"))
    assert a["files"] == b["files"] and a["fingerprint"] == b["fingerprint"]
    assert {k: v for k, v in a["params"].items() if k != "out"} == {k: v for k, v in b["params"].items() if k != "out"}


def test_resume_refuses_other_settings(cli, tmp_path):
    partial = tmp_path / ".f.partial"
    partial.mkdir()
    from codec_cli import config
    from codec_cli.stages.extract import ExtractConfig

    params = {k: v for k, v in config.to_dict(ExtractConfig(source="themes", tokens=1)).items() if k not in ("out", "resume")}
    (partial / "run.json").write_text(json.dumps({"params": params, "attrs": {}}))
    (partial / "shards").mkdir()
    (partial / "shards/00000.safetensors").write_bytes(b"a finished shard")  # what makes it worth keeping
    r = cli("extract", "themes", "--tokens", 100, "--out", tmp_path / "f", "--resume")
    assert r.exit_code == 2 and "different settings (tokens)" in r.stderr
    assert (partial / "run.json").exists()  # the partial run is kept for a resume with the right options
    assert (partial / "shards/00000.safetensors").read_bytes() == b"a finished shard"


def test_ranks_merge_into_what_one_process_writes(cli, tmp_path):
    args = ["extract", "themes", "--tokens", 4000, "--shard-tokens", 600]
    assert cli(*args, "--out", tmp_path / "whole").exit_code == 0
    for i in range(3):
        assert cli(*args, "--shard", i, "--of", 3, "--out", tmp_path / "parts/{rank}").exit_code == 0
    part = open_artifact(tmp_path / "parts/1")
    assert part.attrs["part"] == {"index": 1, "of": 3} and part.files("shards/") == ["shards/00001.safetensors",
                                                                                       "shards/00004.safetensors",
                                                                                       "shards/00007.safetensors"]
    r = cli("merge", *(tmp_path / f"parts/{i}" for i in (2, 0, 1)), "--out", tmp_path / "merged", "--json")
    assert r.exit_code == 0, r.output
    whole, merged = open_artifact(tmp_path / "whole"), open_artifact(tmp_path / "merged")
    assert merged.fingerprint == whole.fingerprint and merged.attrs == whole.attrs

    r = cli("merge", tmp_path / "parts/0", tmp_path / "parts/2", "--out", tmp_path / "m2")
    assert r.exit_code == 2 and "missing 1" in r.stderr
    r = cli("merge", tmp_path / "whole", "--out", tmp_path / "m3")
    assert r.exit_code == 2 and "not a part" in r.stderr


def test_torchrun_environment_picks_the_rank(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    r = cli("extract", "themes", "--tokens", 500, "--shard-tokens", 100, "--out", tmp_path / "f")
    assert r.exit_code == 2 and "{rank}" in r.stderr
    assert cli("extract", "themes", "--tokens", 500, "--shard-tokens", 100, "--out", tmp_path / "p{rank}").exit_code == 0
    assert open_artifact(tmp_path / "p1").attrs["part"] == {"index": 1, "of": 2}


# --------------------------------------------------------------------------- bad requests


@pytest.mark.parametrize("args, message", [
    (["themes", "--hook", "blocks.7.hook_resid_pre"], "no hook 'blocks.7.hook_resid_pre'"),
    (["themes", "--neurons", "blocks.0.mlp.hook_pots"], "did you mean blocks.0.mlp.hook_post"),
    (["themes", "--hook", "blocks.0.mlp.hook_post"], "the SAE reads vectors of width 64, but hook"),
    (["themes", "--k", "257"], "--k 257 is larger than the SAE's width 256"),
    (["themes", "--of", "2"], "--shard and --of go together"),
    (["themes", "--sae", "nope"], "no such SAE directory"),
    (["toy", "--corpus", "x.txt"], "not a language model"),
    (["tyo"], "no world or model named 'tyo'"),
    (["themes", "--corpus", "nowhere/*.txt"], "no file matches this pattern"),
    (["--sae", "nope", "--sae-id", "x"], "cannot load SAE nope/x"),
])
def test_bad_requests_exit_2_in_one_line(cli, tmp_path, args, message, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    r = cli("extract", *args, "--out", tmp_path / "f")
    assert r.exit_code == 2, r.output
    assert message in r.stderr and [line[:6] for line in r.stderr.splitlines()].count("Error:") == 1
    assert not (tmp_path / "f").exists() and not (tmp_path / ".f.partial").exists()


def test_an_empty_corpus_is_refused_before_any_work(cli, tmp_path, gpt2):
    (tmp_path / "empty.jsonl").write_text(json.dumps({"text": ""}) + "\n")
    lens = tiny_models.sae(tmp_path / "sae", 32, 64, "blocks.0.hook_resid_post", "tiny-gpt2")
    r = cli("extract", gpt2, "--sae", lens, "--corpus", tmp_path / "empty.jsonl", "--out", tmp_path / "f")
    assert r.exit_code == 2 and "the corpus is empty" in r.stderr


def test_never_replaces_a_good_artifact_on_failure(cli, tmp_path):
    assert cli("extract", "themes", "--tokens", 200, "--out", tmp_path / "f").exit_code == 0
    before = (tmp_path / "f/manifest.json").read_bytes()
    assert cli("extract", "themes", "--k", 999, "--out", tmp_path / "f").exit_code == 2
    assert (tmp_path / "f/manifest.json").read_bytes() == before


def test_k_below_and_above_a_topk_saes_own(cli, tmp_path, gpt2, corpus):
    lens = tiny_models.sae(tmp_path / "sae", 32, 64, "blocks.0.hook_resid_post", "tiny-gpt2", k=4)
    common = ["--sae", lens, "--corpus", corpus / "docs.jsonl", "--column", "body", "--context", 12]
    runs = {}
    for k in (4, 2, 6):
        assert cli("extract", gpt2, *common, "--k", k, "--out", tmp_path / f"k{k}").exit_code == 0
        runs[k] = read(tmp_path / f"k{k}")[0]
    assert np.array_equal(runs[2]["indices"], runs[4]["indices"][:, :2])
    assert np.array_equal(runs[6]["indices"][:, :4], runs[4]["indices"]) and (runs[6]["indices"][:, 4:] == -1).all()
    assert np.array_equal(runs[2]["l0"], runs[4]["l0"])  # the SAE's L0, before the cut
    assert open_artifact(tmp_path / "k2").attrs["mass_kept"] < 0.99
    assert open_artifact(tmp_path / "k6").attrs["mass_kept"] == pytest.approx(1.0)


def test_sae_train_reads_a_hugging_face_directory(cli, tmp_path, gpt2, corpus):
    r = cli("sae", "train", gpt2, "--hook", "blocks.0.hook_resid_post", "--corpus", corpus / "docs.jsonl",
            "--column", "body", "--context", 8, "--steps", 20, "--batch-size", 64, "--out", tmp_path / "sae")
    assert r.exit_code == 0, r.output
    assert open_artifact(tmp_path / "sae", "sae").attrs["d_in"] == 32


def test_bos_options(cli, tmp_path, gpt2, corpus):
    lens = tiny_models.sae(tmp_path / "sae", 32, 64, "blocks.0.hook_resid_post", "tiny-gpt2")
    common = ["--sae", lens, "--corpus", corpus / "docs.jsonl", "--column", "body", "--context", 12]
    bos = tiny_models.tokenizer().bos_token_id
    assert cli("extract", gpt2, *common, "--keep-bos", "--out", tmp_path / "keep").exit_code == 0
    assert cli("extract", gpt2, *common, "--no-bos", "--out", tmp_path / "none").exit_code == 0
    _, keep, _ = read(tmp_path / "keep")
    _, none, _ = read(tmp_path / "none")
    assert keep.filter(pl.col("pos") == 0)["token_id"].unique().to_list() == [bos]
    assert len(keep.filter(pl.col("pos") == 0)) == keep["window"].n_unique()
    # Without BOS every position is text: as many text tokens, in windows of 12 instead of 11.
    assert len(none) == len(keep) - keep["window"].n_unique() and bos not in none["token_id"].to_list()
    assert none["pos"].min() == 0 and none["pos"].max() == 11


def test_an_unknown_model_name_is_one_line(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    sae = Path(models.__file__).parent / "data/worlds/themes/saes/resid"
    (tmp_path / "x.txt").write_text("some text")
    r = cli("extract", "no-such-model-anywhere", "--sae", sae, "--corpus", tmp_path / "x.txt", "--out", tmp_path / "f")
    assert r.exit_code == 2 and "no world or model named 'no-such-model-anywhere'" in r.stderr
    # Without --sae the same line, not a complaint about the missing SAE; the worlds are listed.
    r = cli("extract", "tyo", "--out", tmp_path / "f")
    assert r.exit_code == 2 and "no world or model named 'tyo'" in r.stderr and "--sae" not in r.stderr
    assert "toy, themes" in r.stderr


def test_sparsify_saes_read_the_raw_hugging_face_residual(cli, tmp_path, gpt2, corpus):
    """sparsify trains on Hugging Face hidden states, which transformer-lens centres by
    default: the converted SAE asks for center_writing_weights=False, and its features
    are sparsify's own encode of the HF model's hidden states."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    lens = tiny_models.sae(tmp_path / "sae", 32, 64, "blocks.1.hook_resid_pre", "tiny-gpt2", k=4)
    sparsify = tiny_models.as_sparsify(lens, tmp_path / "sparsify", "h.0", "tiny-gpt2")
    r = cli("extract", gpt2, "--sae", sparsify, "--corpus", corpus / "docs.jsonl", "--column", "body",
            "--context", 12, "--out", tmp_path / "f")
    assert r.exit_code == 0, r.output
    assert "center_writing_weights=False" in r.stderr
    top, tokens, _ = read(tmp_path / "f")
    windows, keep = rebuild(tokens, tiny_models.tokenizer().bos_token_id, 12)
    with torch.no_grad():
        hidden = AutoModelForCausalLM.from_pretrained(gpt2).eval()(windows, output_hidden_states=True).hidden_states[1]
    w = load_file(sparsify / "sae.safetensors")
    pre = (hidden[keep] - w["b_dec"]) @ w["encoder.weight"].T + w["encoder.bias"]  # SparseCoder.encode
    values, indices = pre.topk(4, dim=-1)
    assert np.array_equal(top["indices"], indices.masked_fill(values <= 0, -1).numpy())
    assert np.allclose(top["values"], values.relu().numpy(), atol=1e-4)


def test_hook_z_saes_read_the_flattened_heads(cli, tmp_path, gpt2, corpus):
    z = tiny_models.sae(tmp_path / "z", 32, 64, "blocks.0.attn.hook_z", "tiny-gpt2", k=4, reshape="hook_z")
    r = cli("extract", gpt2, "--sae", z, "--corpus", corpus / "docs.jsonl", "--column", "body", "--context", 12,
            "--out", tmp_path / "f")
    assert r.exit_code == 0, r.output
    top, tokens, _ = read(tmp_path / "f")
    model, _ = models.open_model(str(gpt2))
    windows, keep = rebuild(tokens, tiny_models.tokenizer().bos_token_id, 12)
    with torch.no_grad():
        _, cache = model.run_with_cache(windows, names_filter=["blocks.0.attn.hook_z"])
    from sae_lens import SAE

    f = SAE.load_from_disk(z).encode(cache["blocks.0.attn.hook_z"][keep])  # sae-lens reshapes [.., heads, d_head]
    assert np.array_equal(top["indices"], f.topk(4, dim=-1).indices.masked_fill(f.topk(4, dim=-1).values <= 0, -1))


def test_a_world_model_over_files_without_bos_keeps_every_token(cli, tmp_path):
    (tmp_path / "d.txt").write_text("monday tuesday wednesday")
    r = cli("extract", "themes", "--corpus", tmp_path / "d.txt", "--no-bos", "--context", 8, "--out", tmp_path / "f")
    assert r.exit_code == 0, r.output
    _, tokens, _ = read(tmp_path / "f")
    assert tokens["token"].to_list() == ["monday", "tuesday", "wednesday"] and tokens["pos"].to_list() == [0, 1, 2]


def test_a_hook_that_is_not_one_vector_per_token_is_refused(cli, tmp_path):
    r = cli("extract", "themes", "--neurons", "blocks.0.attn.hook_pattern", "--out", tmp_path / "f")
    assert r.exit_code == 2 and "not one vector per token" in r.stderr


def test_a_partial_run_killed_while_finishing_starts_afresh(cli, tmp_path):
    args = ["extract", "themes", "--tokens", 500, "--shard-tokens", 200]
    assert cli(*args, "--out", tmp_path / "fresh").exit_code == 0
    partial = tmp_path / ".f.partial"  # run.json already gone, a stale shard and manifest left
    shutil.copytree(tmp_path / "fresh", partial)
    shutil.copy(partial / "shards/00000.safetensors", partial / "shards/00009.safetensors")
    assert cli(*args, "--out", tmp_path / "f", "--resume").exit_code == 0
    assert open_artifact(tmp_path / "f").manifest["files"] == open_artifact(tmp_path / "fresh").manifest["files"]


# --------------------------------------------------------------------------- corpora named loosely, checked early


def test_a_corpus_directory_or_glob_reads_its_files_in_order(cli, tmp_path, gpt2, corpus):
    lens = tiny_models.sae(tmp_path / "sae", 32, 64, "blocks.0.hook_resid_post", "tiny-gpt2")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "b.txt").write_text(tiny_models.TEXT[1])
    shutil.copy(corpus / "docs.jsonl", docs / "a.jsonl")
    (docs / "README").write_text("not a corpus file: left out")
    common = ["--sae", lens, "--column", "body", "--context", 12]
    assert cli("extract", gpt2, "--corpus", docs / "a.jsonl", "--corpus", docs / "b.txt", *common,
               "--out", tmp_path / "files").exit_code == 0
    r = cli("extract", gpt2, "--corpus", docs, *common, "--out", tmp_path / "dir")
    assert r.exit_code == 0, r.output
    r = cli("extract", gpt2, "--corpus", tmp_path / "doc?" / "*.*", *common, "--out", tmp_path / "glob")
    assert r.exit_code == 0, r.output
    files, folder, pattern = (open_artifact(tmp_path / x) for x in ("files", "dir", "glob"))
    assert files.manifest["files"] == folder.manifest["files"] == pattern.manifest["files"]
    # What was read is recorded file by file, as absolute paths.
    assert folder.manifest["params"]["corpus"] == [str(docs.resolve() / "a.jsonl"), str(docs.resolve() / "b.txt")]


def test_a_bad_corpus_is_named_before_the_model_loads(cli, tmp_path, gpt2, monkeypatch):
    lens = tiny_models.sae(tmp_path / "sae", 32, 64, "blocks.0.hook_resid_post", "tiny-gpt2")

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the corpus was checked")

    monkeypatch.setattr(models, "open_model", no_loading)
    for corpus, message in [(["--corpus", tmp_path / "missing.jsonl"], "missing.jsonl: no such corpus file"),
                            (["--corpus", tmp_path], "a directory with no corpus file in it"),
                            ([], "give it a corpus")]:
        r = cli("extract", gpt2, "--sae", lens, *corpus, "--out", tmp_path / "f")
        assert r.exit_code == 2 and message in r.stderr, r.output
        assert [line[:6] for line in r.stderr.splitlines()].count("Error:") == 1


# --------------------------------------------------------------------------- what later stages reopen


def test_paths_are_recorded_so_that_squeeze_reopens_the_sae_from_anywhere(cli, tmp_path, monkeypatch):
    """Extract run with relative paths to a built world and an SAE directory; squeeze,
    run from another directory, reopens that SAE for the faithfulness ratio."""
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(work)
    quick = ["-p", "steps=50", "-p", "n_instances=1", "-p", "sae_steps=1", "-p", "sae_k=1", "-p", "n_samples=1024"]
    assert cli("world", "build", "toy", "-p", "n_features=5", "-p", "n_hidden=2", *quick, "--out", "w").exit_code == 0
    shutil.copytree("w/saes/oracle", "identity")
    r = cli("extract", "w", "--sae", "identity", "--tokens", 3000, "--k", 5, "--out", "features")
    assert r.exit_code == 0, r.output
    monkeypatch.chdir(elsewhere)
    r = cli("squeeze", work / "features", "--m", 2, "--k", 5, "--steps", 100, "--batch-size", 256,
            "--eval-rows", 1000, "--out", "squeezer", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["faithfulness_ratio"] is not None
    params = open_artifact(work / "features").manifest["params"]
    assert params["source"] == str(work.resolve() / "w") and params["sae"] == str(work.resolve() / "identity")


# --------------------------------------------------------------------------- the library on objects in memory


def test_extract_from_python_on_an_in_memory_model_and_sae(tmp_path):
    """The recipe of docs/extract.md, "From Python": a transformer-lens model and a
    sae-lens SAE that exist only in memory; then the same model saved as a model
    directory and the SAE with save_model, read back by `codec extract`, give the same bytes."""
    from sae_lens.saes.sae import SAEMetadata
    from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformers import AutoTokenizer

    from codec_cli.stages.extract import ExtractConfig, extract
    from codec_cli.worlds.themes import save_model

    tiny_models.tokenizer().save_pretrained(tmp_path / "tok")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "tok", add_bos_token=True)  # TL keeps it as it is
    model = HookedTransformer(HookedTransformerConfig(n_layers=2, d_model=32, d_head=8, n_heads=4, n_ctx=32,
                                                      d_vocab=len(tokenizer), act_fn="gelu", seed=0),
                              tokenizer=tokenizer)
    torch.manual_seed(0)
    sae = TopKSAE(TopKSAEConfig(d_in=32, d_sae=64, k=4, metadata=SAEMetadata(hook_name="blocks.0.hook_resid_post")))
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    (tmp_path / "corpus.txt").write_text(" ".join(tiny_models.TEXT[:4]))
    summary = extract(ExtractConfig(corpus=[tmp_path / "corpus.txt"], context=16, out=tmp_path / "memory"),
                      model=model, sae=sae)
    assert summary["rows"] > 0 and summary["k"] == 4

    top, tokens, _ = read(tmp_path / "memory")
    windows, keep = rebuild(tokens, tokenizer.bos_token_id, 16)
    indices, values, _ = expected(model, sae, "blocks.0.hook_resid_post", windows, keep, 4)
    assert np.array_equal(top["indices"], indices) and np.allclose(top["values"], values, atol=1e-5)

    # Saved: a model directory (config.json, model.safetensors, tokenizer/) and a sae-lens directory.
    save_model(model, tmp_path / "model")
    config = json.loads((tmp_path / "model/config.json").read_text())
    assert config["dtype"] == "float32" and "device" not in config
    sae.save_model(tmp_path / "sae")
    r = subprocess.run([CODEC, "-q", "extract", tmp_path / "model", "--sae", tmp_path / "sae", "--corpus",
                        tmp_path / "corpus.txt", "--context", "16", "--out", tmp_path / "disk"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    memory, disk = open_artifact(tmp_path / "memory"), open_artifact(tmp_path / "disk")
    assert memory.attrs["model"] == model.cfg.model_name and memory.attrs["sae"]["origin"] == "in-memory"
    assert memory.attrs["sae"]["fingerprint"] == disk.attrs["sae"]["fingerprint"]
    assert {k: v for k, v in memory.manifest["files"].items() if k.startswith("shards/")} == \
        {k: v for k, v in disk.manifest["files"].items() if k.startswith("shards/")}


def test_a_model_directory_written_by_hand_from_the_config(tmp_path):
    """docs/extract.md's rule for config.json: HookedTransformerConfig.to_dict() as
    json.dump(default=str) writes it loads; so does a config of the required fields alone."""
    from safetensors.torch import save_file
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformers import AutoTokenizer

    d = tmp_path / "model"
    tiny_models.tokenizer().save_pretrained(d / "tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(d / "tokenizer", add_bos_token=True)
    required = {"n_layers": 2, "d_model": 32, "d_head": 8, "n_ctx": 32, "act_fn": "gelu"}
    model = HookedTransformer(HookedTransformerConfig(**required, d_vocab=len(tokenizer), seed=0), tokenizer=tokenizer)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, d / "model.safetensors")
    x = torch.tensor([[tokenizer.bos_token_id, 5, 6, 7]])
    for config in (json.loads(json.dumps(model.cfg.to_dict(), default=str)),  # dtype "torch.float32"
                   {**required, "dtype": "float32"}, required):
        (d / "config.json").write_text(json.dumps(config))
        loaded, _ = models.open_model(str(d))
        with torch.no_grad():
            assert torch.allclose(loaded(x), model(x), atol=1e-5)


def test_a_model_passed_in_needs_a_corpus_and_a_tokenizer(tmp_path):
    from codec_cli.errors import BadInput
    from codec_cli.stages.extract import ExtractConfig, extract

    world = models.open_model("themes")[1]
    model, sae = world.model(), world.sae()
    with pytest.raises(BadInput, match="give it a corpus"):
        extract(ExtractConfig(out=tmp_path / "f"), model=model, sae=sae)
    (tmp_path / "c.txt").write_text("monday tuesday")
    model.tokenizer = None
    with pytest.raises(BadInput, match="no tokenizer"):
        extract(ExtractConfig(corpus=[tmp_path / "c.txt"], out=tmp_path / "f"), model=model, sae=sae)
    assert not (tmp_path / "f").exists()
