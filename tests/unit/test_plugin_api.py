"""plugin_api.held_out: the rows a Squeezer was evaluated on, as `codec squeeze` chose them."""

from __future__ import annotations

import numpy as np
import pytest

from codec_cli.artifacts import ArtifactWriter, open_artifact
from codec_cli.errors import BadInput
from codec_cli.sources.features import Batches
from codec_cli.plugin_api import held_out
from conftest import write_features
from squeezed import codec

SETTINGS = {"k": 3, "batch_size": 16, "buffer_rows": 64, "eval_rows": 30, "seed": 3}


@pytest.fixture(scope="module")
def squeezed_small(tmp_path_factory):
    """100 rows in two shards of 50; the last 30 (rows 20–49 of the second shard) held out,
    read at k=3 of the 4 stored, so that the cut falls inside a shard and rows are truncated."""
    root = tmp_path_factory.mktemp("held")
    features = write_features(root / "features", seed=5, d_sae=12, k=4, shards=2, rows=50)
    flags = [x for key, value in SETTINGS.items() for x in (f"--{key.replace('_', '-')}", value)]
    metrics = codec("squeeze", features, "--m", 2, "--steps", 5, "--no-faithfulness", *flags, "--out", root / "sq")
    return open_artifact(features), open_artifact(root / "sq"), metrics


def test_held_out_is_what_squeeze_held_out(squeezed_small):
    features, squeezer, metrics = squeezed_small
    idx, val = held_out(features, squeezer)
    want_idx, want_val = Batches(features, SETTINGS["k"], SETTINGS["batch_size"], SETTINGS["buffer_rows"],
                                 SETTINGS["eval_rows"], SETTINGS["seed"]).held_out()
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_array_equal(val, want_val)
    assert idx.shape == (SETTINGS["eval_rows"], SETTINGS["k"]) == (metrics["held_out_rows"], 3)
    assert idx.dtype == np.int64 and val.dtype == np.float32
    # Independently of Batches: the last 30 rows in shard order, each cut to its 3 largest values.
    shards = list(features.topk())
    rows_idx = np.concatenate([s.indices for s in shards])[-30:]
    rows_val = np.concatenate([s.values for s in shards])[-30:]
    for r in range(30):
        top = np.argsort(-rows_val[r], kind="stable")[:3]
        assert sorted(zip(idx[r], val[r])) == sorted(zip(rows_idx[r, top], rows_val[r, top]))


def test_held_out_refuses_features_the_squeezer_was_not_trained_on(squeezed_small, tmp_path):
    _, squeezer, _ = squeezed_small
    other = open_artifact(write_features(tmp_path / "other", seed=6, d_sae=12, k=4))
    with pytest.raises(BadInput, match=f"{squeezer.path} was not squeezed from {other.path}"):
        held_out(other, squeezer)


def test_held_out_refuses_a_squeezer_that_does_not_say_which_rows(squeezed_small, tmp_path):
    features, _, _ = squeezed_small
    with ArtifactWriter(tmp_path / "sq", "squeezer", command="test", params={"k": 3}, inputs=[features]) as w:
        w.write_json("note.json", {})
    with pytest.raises(BadInput, match="its manifest does not say which rows were held out"):
        held_out(features, open_artifact(tmp_path / "sq"))
