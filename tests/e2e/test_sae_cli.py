"""`codec sae train`: trains on a world or a model over a corpus, saves a sae-lens SAE
that is also a codec artifact, and resumes a killed run to the same weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from codec_cli.artifacts import open_artifact

CODEC = str(Path(sys.executable).parent / "codec")
FAST = ["--steps", "200", "--batch-size", "256", "--k", "2", "--lr", "3e-3"]


def test_train_on_the_toy_world(cli, tmp_path):
    from sae_lens import SAE

    result = cli("-q", "sae", "train", "toy", *FAST, "--out", tmp_path / "sae", "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["d_sae"] == 10 and metrics["l0"] <= 2.0 and metrics["fvu"] < 0.5
    art = open_artifact(tmp_path / "sae", "sae")
    assert art.attrs["hook"] == "hook_hidden" and art.attrs["d_in"] == 5
    assert art.table("training.parquet")["step"].to_list()[-1] == 200
    sae = SAE.load_from_disk(tmp_path / "sae")
    assert sae.cfg.metadata.hook_name == "hook_hidden" and sae.cfg.k == 2


def test_a_killed_run_resumes_to_the_same_weights(tmp_path):
    from safetensors.torch import load_file

    args = ["-q", "sae", "train", "toy", *FAST, "--steps", "300", "--checkpoint-every", "100"]
    # Exact equality holds for one thread count; pinned, as tests/README.md asks.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([CODEC, *args, "--out", tmp_path / "straight"], check=True, capture_output=True, env=env)
    proc = subprocess.Popen([CODEC, *args, "--out", tmp_path / "killed"], env=env)
    state = tmp_path / ".killed.partial/checkpoint/state.safetensors"
    deadline = time.time() + 120
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert state.exists() and not (tmp_path / "killed").exists()
    done = subprocess.run([CODEC, *args, "--out", tmp_path / "killed", "--resume"], capture_output=True, text=True,
                          env=env)
    assert done.returncode == 0, done.stderr
    a = load_file(tmp_path / "straight/sae_weights.safetensors")
    b = load_file(tmp_path / "killed/sae_weights.safetensors")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)
    assert not list(tmp_path.glob(".*partial"))


@pytest.mark.parametrize("args, message", [
    (["toy", "--hook", "nope"], "the model has no hook 'nope'"),
    (["toy", "--architecture", "gated"], "--architecture must be one of"),
    (["toy", "--k", "50"], "larger than the SAE's width"),
    (["toy", "--corpus", "x.txt"], "is not a language model"),
    (["not-a-model"], "no world or model named 'not-a-model'"),
    (["themes", "--corpus", "nowhere.txt"], "nowhere.txt: no such corpus file or directory"),
    (["toy", "--lr", "nan"], "--lr must be a finite number"),
    (["themes", "--hook", "blocks.0.attn.hook_pattern"], "codec reads activations shaped [batch, position, width]"),
])
def test_bad_requests_exit_2(cli, tmp_path, args, message):
    result = cli("sae", "train", *args, "--out", tmp_path / "sae")
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert list(tmp_path.iterdir()) == []  # no output, not even a partial one


def test_never_replaces_an_artifact_of_another_kind(cli, tmp_path):
    cli("-q", "world", "build", "toy", "-p", "steps=10", "-p", "sae_steps=10", "--out", tmp_path / "w")
    result = cli("sae", "train", tmp_path / "w", *FAST, "--out", tmp_path / "w")
    assert result.exit_code == 2
    assert "holds a 'world' artifact; refusing to replace it with a 'sae' one" in result.stderr
    assert open_artifact(tmp_path / "w", "world")


def test_resume_refuses_changed_settings(tmp_path):
    from codec_cli.errors import BadInput
    from codec_cli.nn.sae import SAETrainConfig, train

    def batch(step):
        return torch.rand(64, 4, generator=torch.Generator().manual_seed(step))

    cfg = SAETrainConfig(k=2, steps=20, checkpoint_every=10, batch_size=64)
    train(cfg, batch, 4, checkpoint=tmp_path)
    train(SAETrainConfig(k=2, steps=30, checkpoint_every=10, batch_size=64), batch, 4, checkpoint=tmp_path)
    with pytest.raises(BadInput, match=r"different settings \(architecture\)"):
        train(SAETrainConfig(architecture="relu", k=2, steps=40, batch_size=64), batch, 4, checkpoint=tmp_path)
