"""`--seeds`: one SAE or Squeezer per seed, each the very artifact `--seed N` writes by hand,
kept on --resume when finished, retrained whole otherwise."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.numpy import load_file

from squeezed import codec

SAE = ("sae", "train", "toy", "--steps", 30, "--batch-size", 256, "--k", 2, "--checkpoint-every", 0)


def files(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())["files"]


def test_sae_train_seeds_write_one_sae_per_seed_as_by_hand(tmp_path) -> None:
    result = codec(*SAE, "--seeds", "0,1", "--out", tmp_path / "saes")
    assert sorted(result["seeds"]) == ["0", "1"] and result["out"] == str(tmp_path / "saes")
    codec(*SAE, "--seed", 1, "--out", tmp_path / "saes" / "seed-1-by-hand")
    assert files(tmp_path / "saes/seed-1") == files(tmp_path / "saes/seed-1-by-hand")
    w0, w1 = (load_file(tmp_path / f"saes/seed-{s}/sae_weights.safetensors")["W_dec"] for s in (0, 1))
    assert not (w0 == w1).all()


def test_resume_keeps_finished_seeds_and_trains_the_missing_one(tmp_path) -> None:
    out = tmp_path / "saes"
    codec(*SAE, "--seeds", "0,1", "--out", out)
    kept = (out / "seed-0/manifest.json").stat().st_mtime_ns
    first = files(out / "seed-1")
    for f in (out / "seed-1").iterdir():
        f.unlink()
    (out / "seed-1").rmdir()
    result = codec(*SAE, "--seeds", "0,1", "--resume", "--out", out)
    assert (out / "seed-0/manifest.json").stat().st_mtime_ns == kept  # finished with these settings: kept
    assert files(out / "seed-1") == first
    assert result["seeds"]["0"]["l0"] == json.loads((out / "seed-0/metrics.json").read_text())["l0"]
    codec(*SAE, "--seeds", "0", "--steps", 31, "--resume", "--out", out)  # other settings: trained again
    assert (out / "seed-0/manifest.json").stat().st_mtime_ns != kept


def test_squeeze_seeds_are_kept_apart_from_restarts(features, tmp_path) -> None:
    args = ("squeeze", features, "--m", 4, "--k", 4, "--steps", 20, "--eval-rows", 20, "--batch-size", 16,
            "--restarts", 2, "--no-faithfulness")
    result = codec(*args, "--seeds", "3,5", "--out", tmp_path / "sq")
    assert sorted(result["seeds"]) == ["3", "5"]
    assert all(len(m["instance_losses"]) == 2 for m in result["seeds"].values())
    codec(*args, "--seed", 5, "--out", tmp_path / "by-hand")
    assert files(tmp_path / "sq/seed-5") == files(tmp_path / "by-hand")
