"""The example third-party plugin (tests/example_plugin), installed by `make install`
as a real package and driven through the real entry points and the real `codec`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from codec_cli.artifacts import open_artifact
from conftest import write_features

CODEC = str(Path(sys.executable).parent / "codec")


def codec(*args, env=None):
    return subprocess.run([CODEC, *map(str, args)], capture_output=True, text=True, env=env)


def test_listed_through_its_entry_point():
    done = codec("plugins", "--json")
    assert done.returncode == 0, done.stderr
    rows = {r["name"]: r for r in json.loads(done.stdout)}
    assert rows["feature-frequency"] == {
        "name": "feature-frequency", "package": "codec-example-plugin", "version": "1.0.0",
        "api_version": 1, "builtin": False, "requires": ["features"], "status": "ok"}


def test_runs_on_a_features_artifact(tmp_path):
    features = write_features(tmp_path / "features", d_sae=40, k=4)
    done = codec("analyze", features, "-P", "feature-frequency", "-p", "min_count=100", "--out", tmp_path / "an",
                 "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)["feature-frequency"]["summary"]
    table = open_artifact(tmp_path / "an/feature-frequency").table("frequency.parquet")
    counts = np.zeros(40, dtype=int)
    for shard in open_artifact(features).topk():
        np.add.at(counts, shard.indices.ravel(), 1)
    assert table["count"].to_list() == counts.tolist()
    assert summary == {"n_tokens": 100, "n_alive": int((counts >= 100).sum()), "mean_l0": 4.0}


def test_allowlist_hides_it(tmp_path):
    import os

    done = codec("plugins", "--json", env={**os.environ, "CODEC_LOAD_PLUGINS": ""})
    assert json.loads(done.stdout) == []


def test_its_params_refuse_a_bad_value_before_anything_runs(tmp_path):
    features = write_features(tmp_path / "features", d_sae=40, k=4)
    done = codec("analyze", features, "-P", "feature-frequency", "-p", "min_count=-1", "--out", tmp_path / "an")
    assert done.returncode == 2, done.stderr
    assert "feature-frequency: -p min_count=-1: a count cannot be negative" in done.stderr
    assert not (tmp_path / "an").exists()


def test_its_report_hook_puts_a_section_in_the_report(tmp_path):
    """A third party's analysis appears in `codec report` through its own hook: its question in
    the first section, linked to its section, and its table's ids linked to feature cards."""
    write_features(tmp_path / "run/features", d_sae=40, k=4)
    assert codec("analyze", tmp_path / "run/features", "-P", "feature-frequency", "--out",
                 tmp_path / "run/an").returncode == 0
    done = codec("report", tmp_path / "run", "--out", tmp_path / "report.html")
    assert done.returncode == 0, done.stderr
    page = (tmp_path / "report.html").read_text()
    assert "<b>How many features are alive?</b>" in page
    assert '40 features fire at least min_count times <a href="#a-an_feature_frequency">' in page
    assert '<a href="#feature-features-0">0</a>' in page and 'id="feature-features-0"' in page
