"""The bad-input corpus: every way of holding codec wrong that we know of, one row each.

Each row is (arguments, exit code, a fragment of the message). Whatever the case, the
answer is the same shape (DESIGN.md §8): nothing on stdout, and on stderr one `Error:`
line, perhaps one `Hint:` line, and never a traceback. Exit 2 is bad usage or bad input,
exit 1 a run that failed through no fault of its arguments (a full disk).

A row's arguments come from a function of (tmp_path, monkeypatch), which may first lay
out the damaged files the case needs.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest

SHIPPED_SAE = Path(__file__).parents[2] / "codec_cli" / "data" / "worlds" / "toy" / "saes" / "trained"


def sae_dir(tmp: Path, damage) -> Path:
    """A copy of the toy world's trained SAE, damaged by `damage(directory)`."""
    d = tmp / "sae"
    shutil.copytree(SHIPPED_SAE, d)
    damage(d)
    return d


def garbage_weights(d: Path) -> None:
    (d / "sae_weights.safetensors").write_bytes(b"this is not a tensor file\n")


def truncated_weights(d: Path) -> None:
    w = d / "sae_weights.safetensors"
    w.write_bytes(w.read_bytes()[:-100])


def broken_cfg(d: Path) -> None:
    (d / "cfg.json").write_text('{"d_in": 5, "d_sae": ')


def huge_d_sae(d: Path) -> None:
    cfg = json.loads((d / "cfg.json").read_text())
    (d / "cfg.json").write_text(json.dumps(cfg | {"d_sae": 10**13}))


def float_d_sae(d: Path) -> None:
    cfg = json.loads((d / "cfg.json").read_text())
    (d / "cfg.json").write_text(json.dumps(cfg | {"d_sae": 1e13}))


def pickles_only(d: Path) -> None:
    (d / "sae_weights.safetensors").unlink()
    (d / "sae.pt").write_bytes(b"\x80\x04pickled")


def pickled_hf_model(tmp: Path) -> Path:
    d = tmp / "hf-model"
    d.mkdir()
    (d / "config.json").write_text('{"model_type": "gpt2"}')
    (d / "pytorch_model.bin").write_bytes(b"\x80\x04pickled")
    return d


def hf_model_with(tmp: Path, files: dict[str, bytes]) -> Path:
    d = tmp / "hf-model"
    d.mkdir()
    for name, data in {"config.json": b'{"model_type": "gpt2"}', **files}.items():
        (d / name).write_bytes(data)
    return d


def corpus(tmp: Path) -> Path:
    (tmp / "corpus.txt").write_text("a line of text\n" * 50)
    return tmp / "corpus.txt"


def a_file(tmp: Path) -> Path:
    (tmp / "a-file").write_text("not a directory")
    return tmp / "a-file"


def failing_mkdir(under: Path, code: int, monkeypatch) -> None:
    """Directories under `under` cannot be made, failing with errno `code` (a read-only
    file system, a full disk): what the kernel would say, without needing one."""
    real = os.mkdir

    def mkdir(path, *args, **kwargs):
        if str(path).startswith(str(under)):
            raise OSError(code, os.strerror(code), str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)


def features(tmp: Path) -> Path:
    from conftest import write_features

    return write_features(tmp / "features")


def plugins_named(value: str, monkeypatch) -> list[str]:
    monkeypatch.setenv("CODEC_LOAD_PLUGINS", value)
    return ["plugins"]


def extract_with_sae(damage):
    return lambda t, m: ["extract", "toy", "--sae", sae_dir(t, damage), "--out", t / "f"]


linux_only = pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc and /sys")

CASES = [
    # Typer's usage errors: one line and a hint, not a usage line and a box.
    pytest.param(lambda t, m: ["analyze", "--no-such-option"], 2, "No such option: --no-such-option",
                 id="unknown-option"),
    pytest.param(lambda t, m: ["plugins", "--json", "true"], 2, "unexpected extra argument", id="flag-given-a-value"),
    pytest.param(lambda t, m: ["world", "info"], 2, "Missing argument 'world'", id="missing-argument"),
    pytest.param(lambda t, m: ["nosuch"], 2, "No such command 'nosuch'", id="unknown-command"),
    pytest.param(lambda t, m: ["sae", "train", "--steps", "many"], 2, "Invalid value for '--steps'",
                 id="not-an-integer"),
    # Devices.
    pytest.param(lambda t, m: ["extract", "toy", "--device", "tpu9", "--out", t / "f"], 2,
                 "--device 'tpu9' is not a device", id="unknown-device"),
    # Output places that cannot be written.
    pytest.param(lambda t, m: ["world", "build", "toy", "--out", a_file(t) / "x"], 2, "is a file",
                 id="out-parent-is-a-file"),
    pytest.param(lambda t, m: ["world", "build", "toy", "--out", a_file(t) / "x" / "y"], 2, "is a file",
                 id="out-grandparent-is-a-file"),
    pytest.param(lambda t, m: ["world", "build", "toy", "--out", "/proc/codec-test-out"], 2, "/proc",
                 id="out-on-proc", marks=linux_only),
    pytest.param(lambda t, m: ["world", "build", "toy", "--out", "/sys/codec-test-out"], 2, "/sys",
                 id="out-on-sys", marks=linux_only),
    pytest.param(lambda t, m: (failing_mkdir(t / "ro", errno.EROFS, m), ["world", "build", "toy", "--out",
                                                                         t / "ro" / "w"])[1],
                 2, "read-only file system", id="out-read-only"),
    pytest.param(lambda t, m: (failing_mkdir(t / "full", errno.ENOSPC, m), ["world", "build", "toy", "--out",
                                                                            t / "full" / "w"])[1],
                 1, "no space left on the device", id="disk-full"),
    # Damaged SAE directories: the file is named.
    pytest.param(extract_with_sae(garbage_weights), 2, "sae_weights.safetensors: not a safetensors file",
                 id="sae-weights-garbage"),
    pytest.param(extract_with_sae(truncated_weights), 2, "sae_weights.safetensors: truncated",
                 id="sae-weights-truncated"),
    pytest.param(extract_with_sae(broken_cfg), 2, "cfg.json: not valid JSON", id="sae-cfg-not-json"),
    pytest.param(extract_with_sae(huge_d_sae), 2, "cfg.json says d_in=5, d_sae=10000000000000", id="sae-d-sae-1e13"),
    pytest.param(extract_with_sae(float_d_sae), 2, "d_sae must be a positive whole number", id="sae-d-sae-float"),
    pytest.param(extract_with_sae(pickles_only), 2, "sae.pt is a pickle", id="sae-pickle"),
    pytest.param(lambda t, m: ["extract", "toy", "--sae", sae_dir(t, lambda d: None) / "cfg.json"], 2,
                 "--sae takes the SAE's directory", id="sae-is-a-file"),
    # Sizes no machine has.
    pytest.param(lambda t, m: ["sae", "train", "toy", "--expansion-factor", "1e9", "--out", t / "s"], 2,
                 "--expansion-factor 1,000,000,000 makes an SAE of 5,000,000,000 latents", id="expansion-factor-1e9"),
    # Names that name nothing.
    pytest.param(lambda t, m: ["sae", "train", "nosuch", "--out", t / "s"], 2, "no world or model named 'nosuch'",
                 id="sae-train-unknown-world"),
    pytest.param(lambda t, m: ["extract", "nosuch", "--out", t / "f"], 2, "toy, themes", id="extract-unknown-world"),
    pytest.param(lambda t, m: ["world", "info", "nosuch"], 2, "built-in worlds: toy, themes", id="world-info-unknown"),
    pytest.param(lambda t, m: plugins_named("nosuch", m), 2, "no installed plugin or package is named 'nosuch'",
                 id="load-plugins-unknown"),
    pytest.param(lambda t, m: ["squeeze", features(t), "--k", "4", "--m", "8", "--importance", "nope.parquet",
                               "--out", t / "sq"], 2, "no such file", id="importance-missing"),
    pytest.param(lambda t, m: ["compare", "neurons", features(t), "--out", t / "c"], 2,
                 "is a 'features' artifact, expected 'squeezer'", id="compare-features-as-squeezer"),
    pytest.param(lambda t, m: ["compare", "neurons", t / "nosuch", "--out", t / "c"], 2,
                 "no such artifact directory", id="compare-missing-squeezer"),
    pytest.param(lambda t, m: ["compare", "neurons", "sq", "--draws", "0", "--out", t / "c"], 2,
                 "--draws must be at least 1", id="compare-no-draws"),
    pytest.param(lambda t, m: ["cluster", features(t), "--out", t / "th"], 2,
                 "does not say which SAE made it", id="cluster-no-sae"),
    pytest.param(lambda t, m: ["cluster", features(t), "--method", "kmeans", "--out", t / "th"], 2,
                 "--method must be one of umap-hdbscan, spectral, graph, not 'kmeans'", id="cluster-unknown-method"),
    pytest.param(lambda t, m: ["cluster", "f", "--min-cluster-size", "0", "--out", t / "th"], 2,
                 "--min-cluster-size must be at least 1", id="cluster-min-size-0"),
    pytest.param(lambda t, m: ["cluster", "f", "--graph-threshold", "2", "--out", t / "th"], 2,
                 "--graph-threshold is a cosine", id="cluster-threshold-2"),
    pytest.param(lambda t, m: ["cluster", features(t), "--method", "spectral", "--themes", "100", "--embed",
                               "coactivation", "--out", t / "th"], 2, "--themes 100 is more than the 40 atoms",
                 id="cluster-too-many-themes"),
    pytest.param(lambda t, m: ["cluster", features(t), "--embed", "coactivation", "--out", t / "features"], 2,
                 "features", id="cluster-into-its-input"),
    pytest.param(lambda t, m: ["steer", "themes", "--themes", features(t), "--theme", "0", "--out", t / "st"], 2,
                 "is a 'features' artifact, expected 'themes'", id="steer-features-as-themes"),
    pytest.param(lambda t, m: ["steer", "themes", "--themes", t / "nosuch", "--theme", "0", "--out", t / "st"], 2,
                 "no such artifact directory", id="steer-missing-themes"),
    pytest.param(lambda t, m: ["steer", "themes", "--themes", "th", "--theme", "0", "--sweep", "2:0:0.5",
                               "--out", t / "st"], 2, "--sweep takes A:B:STEP", id="steer-sweep-backwards"),
    pytest.param(lambda t, m: ["steer", "themes", "--themes", "th", "--theme", "0", "--method", "boost",
                               "--out", t / "st"], 2, "--method must be one of add, clamp", id="steer-unknown-method"),
    pytest.param(lambda t, m: ["steer", "themes", "--themes", "th", "--out", t / "st"], 2, "--theme",
                 id="steer-no-theme"),
    pytest.param(lambda t, m: ["steer", "themes", "--themes", "th", "--theme", "0", "--prompt-tokens", "1",
                               "--out", t / "st"], 2, "--prompt-tokens must be at least 2", id="steer-prompt-of-bos"),
    pytest.param(lambda t, m: ["monitor", "themes", "--themes", "th", "--theme", "0", "--fpr", "0",
                               "--out", t / "mo"], 2, "--fpr is a rate", id="monitor-fpr-0"),
    pytest.param(lambda t, m: ["monitor", "themes", "--themes", "th", "--theme", "0", "--texts", corpus(t),
                               "--out", t / "mo"], 2, "--texts and --neutral go together", id="monitor-texts-alone"),
    pytest.param(lambda t, m: ["sae", "train", "toy", "--seeds", "0,0", "--out", t / "s"], 2,
                 "--seeds takes distinct non-negative integers", id="seeds-repeated"),
    pytest.param(lambda t, m: ["squeeze", features(t), "--seeds", "one", "--out", t / "s"], 2,
                 "--seeds takes distinct non-negative integers", id="seeds-not-numbers"),
    pytest.param(lambda t, m: ["squeeze", features(t), "--m", "4", "--k", "4", "--seeds", "0,1", "--out", t / "features"],
                 2, "is an artifact itself", id="seeds-into-an-artifact"),
    # Sweeps: every cell is checked before the first is built.
    pytest.param(lambda t, m: ["sweep", "themes", "--out", t / "sw"], 2, "true feature directions",
                 id="sweep-world-without-directions"),
    pytest.param(lambda t, m: ["sweep", "toy", "--grid", "sparsity", "--out", t / "sw"], 2,
                 "--grid takes KEY=A:B:STEP", id="sweep-grid-no-values"),
    pytest.param(lambda t, m: ["sweep", "toy", "--grid", "sparsity=0.9:1.2:0.1", "--out", t / "sw"], 2,
                 "sparsity must be in [0, 1), got 1.0", id="sweep-grid-out-of-range"),
    pytest.param(lambda t, m: ["sweep", "toy", "--grid", "colour=red,blue", "--out", t / "sw"], 2,
                 "unknown toy world parameter 'colour'", id="sweep-grid-unknown-key"),
    pytest.param(lambda t, m: ["sweep", "toy", "--grid", "sae.l1=0.1", "--out", t / "sw"], 2,
                 "unknown SAE setting 'l1'", id="sweep-grid-unknown-sae-setting"),
    pytest.param(lambda t, m: ["sweep", "toy", "--grid", "seed=0,1", "-p", "seed=2", "--out", t / "sw"], 2,
                 "seed is both held fixed", id="sweep-grid-and-param"),
    pytest.param(lambda t, m: ["sweep", "toy", "--sae", "gated", "--out", t / "sw"], 2,
                 "--sae takes distinct recipes among relu, topk", id="sweep-unknown-recipe"),
    pytest.param(lambda t, m: ["sweep", "toy", "--grid", "seed=0,1", "--map", "sparsity", "--out", t / "sw"], 2,
                 "--map takes one or two of the grid's axes", id="sweep-map-not-an-axis"),
    pytest.param(lambda t, m: ["sweep", "toy", "--shard", "2", "--of", "2", "--out", t / "sw"], 2,
                 "--shard must be in [0, 2)", id="sweep-shard-out-of-range"),
    pytest.param(lambda t, m: ["sweep", "toy", "--grid", "seed=0,1", "--shard", "0", "--of", "2", "--out", t / "sw"],
                 2, "2 ranks would all write", id="sweep-shards-one-out"),
    pytest.param(lambda t, m: ["sweep", "toy", "--shard", "1", "--of", "2", "--out", t / "p{rank}"], 2,
                 "rank 1 of 2 has no cell", id="sweep-rank-without-cells"),
    pytest.param(lambda t, m: ["sweep", "toy", "--out", features(t)], 2,
                 "holds a 'features' artifact; refusing to replace it with a 'sweep' one", id="sweep-over-features"),
    pytest.param(lambda t, m: ["merge", features(t), "--out", t / "m"], 2,
                 "is a whole extraction, not a part", id="merge-whole-features"),
    pytest.param(lambda t, m: ["report", t, "--out", t / "r.html"], 2, "no codec artifact under",
                 id="report-nothing-there"),
    pytest.param(lambda t, m: ["report", t / "nowhere", "--out", t / "r.html"], 2, "nowhere: no such directory",
                 id="report-missing-directory"),
    pytest.param(lambda t, m: ["report", features(t).parent, "--out", t], 2, "is a directory; the report is one HTML",
                 id="report-out-is-a-directory"),
    pytest.param(lambda t, m: ["report", features(t), "--rows", "0"], 2, "--rows must be at least 1",
                 id="report-no-rows"),
    pytest.param(lambda t, m: ["show", features(t), "40"], 2, "no feature 40; its features are 0 to 39",
                 id="show-feature-out-of-range"),
    pytest.param(lambda t, m: ["show", t / "nowhere", "0"], 2, "no such artifact directory", id="show-missing"),
    # Weights codec will not unpickle.
    pytest.param(lambda t, m: ["sae", "train", pickled_hf_model(t), "--corpus", corpus(t), "--out", t / "s"], 2,
                 "codec reads safetensors only", id="hf-pytorch-model-bin"),
    # Damaged Hugging Face directories: the file is named.
    pytest.param(lambda t, m: ["sae", "train", hf_model_with(t, {"model.safetensors": b"junk"}), "--corpus", corpus(t),
                               "--out", t / "s"], 2, "model.safetensors: not a safetensors file", id="hf-weights-garbage"),
    pytest.param(lambda t, m: ["sae", "train", hf_model_with(t, {"config.json": b"{bad", "model.safetensors": b""}),
                               "--corpus", corpus(t), "--out", t / "s"], 2, "config.json: not valid JSON",
                 id="hf-config-not-json"),
]


@pytest.mark.parametrize("argv, code, message", CASES)
def test_bad_input_is_one_line(cli, tmp_path, monkeypatch, argv, code, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CODEC_DEBUG", raising=False)
    result = cli(*argv(tmp_path, monkeypatch))
    lines = result.stderr.splitlines()
    assert result.exit_code == code, result.stderr
    assert message in result.stderr, result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert len(lines) in (1, 2) and lines[0].startswith("Error: "), result.stderr
    assert len(lines) == 1 or lines[1].startswith("Hint: "), result.stderr
