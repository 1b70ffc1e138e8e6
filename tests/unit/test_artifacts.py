"""Artifacts: round trips, determinism, atomic replacement, and refusal of bad files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from codec_cli.artifacts import MANIFEST, ArtifactWriter, check_lineage, open_artifact
from codec_cli.errors import ArtifactError, BadInput
from conftest import write_features


def rewrite_manifest(path, edit):
    m = json.loads((path / MANIFEST).read_text())
    edit(m)
    (path / MANIFEST).write_text(json.dumps(m))


def read_everything(path):
    a = open_artifact(path)
    for shard in a.topk():
        assert shard.indices.dtype == np.int32
    a.table("tokens/00000.parquet", ["doc", "pos"])
    a.verify()


def test_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    idx = rng.integers(-1, 30, (20, 3)).astype(np.int32)
    val = np.where(idx >= 0, rng.random((20, 3)), 0).astype(np.float16)  # an empty slot holds 0
    with ArtifactWriter(tmp_path / "a", "features", command="t", attrs={"d_sae": 30}) as w:
        w.write_topk(idx, val)
        w.write_table("tokens/00000.parquet", {"doc": list(range(20))})
        w.write_json("summary.json", {"x": 1})
    a = open_artifact(tmp_path / "a", "features")
    (shard,) = list(a.topk())
    np.testing.assert_array_equal(shard.indices, idx)
    np.testing.assert_array_equal(shard.values, val)
    assert not shard.values.flags.writeable
    assert a.table("tokens/00000.parquet")["doc"].to_list() == list(range(20))
    assert a.json("summary.json") == {"x": 1}
    assert a.fingerprint.startswith("sha256:")


def test_same_inputs_same_bytes(tmp_path):
    a = write_features(tmp_path / "a", seed=3)
    b = write_features(tmp_path / "b", seed=3)
    for name in ["manifest.json", "tokens/00000.parquet", "shards/00000.safetensors"]:
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert open_artifact(a).fingerprint != open_artifact(write_features(tmp_path / "c", seed=4)).fingerprint


def test_rerun_replaces_whole_directory(tmp_path):
    out = write_features(tmp_path / "f", shards=3)
    write_features(out, shards=1)
    assert sorted(p.name for p in (out / "shards").iterdir()) == ["00000.safetensors"]
    assert [p.name for p in tmp_path.iterdir()] == ["f"]  # no partial or old sibling left


def test_failure_keeps_the_good_artifact(tmp_path):
    out = write_features(tmp_path / "f")
    before = (out / MANIFEST).read_bytes()
    with pytest.raises(RuntimeError):
        with ArtifactWriter(out, "features", command="t") as w:
            w.write_json("x.json", {})
            raise RuntimeError("died halfway")
    assert (out / MANIFEST).read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_refuses_to_replace_a_foreign_directory(tmp_path):
    home = tmp_path / "notes"
    home.mkdir()
    (home / "thesis.tex").write_text("precious")
    with pytest.raises(BadInput, match="not a codec artifact"):
        ArtifactWriter(home, "features", command="t")
    assert (home / "thesis.tex").read_text() == "precious"


def test_killed_writer_leaves_nothing_a_reader_accepts(tmp_path):
    """SIGKILL mid-write: `out` never appears, and the partial sibling is refused."""
    script = textwrap.dedent(f"""
        import sys, time, numpy as np
        from codec_cli.artifacts import ArtifactWriter
        with ArtifactWriter({str(tmp_path / 'f')!r}, "features", command="t", attrs={{"d_sae": 5}}) as w:
            w.write_topk(np.zeros((2, 2), np.int32), np.ones((2, 2), np.float32))
            print("halfway", flush=True)
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "halfway"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "f").exists()
    (partial,) = tmp_path.iterdir()
    with pytest.raises(ArtifactError, match="no manifest.json"):
        open_artifact(partial)
    write_features(tmp_path / "f")  # the next run cleans up and succeeds
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


@pytest.mark.parametrize("damage, message", [
    (lambda p: (p / MANIFEST).unlink(), "no manifest.json"),
    (lambda p: (p / MANIFEST).write_text("{not json"), "not valid JSON"),
    (lambda p: (p / MANIFEST).write_text("[1, 2]"), "expected a JSON object"),
    (lambda p: rewrite_manifest(p, lambda m: m.pop("files")), "no 'files'"),
    (lambda p: rewrite_manifest(p, lambda m: m.update(schema_version="1")), "should be a int"),
    (lambda p: rewrite_manifest(p, lambda m: m.update(schema_version=99)), "newer than this codec reads"),
    (lambda p: rewrite_manifest(p, lambda m: m["attrs"].update(d_sae=3)), "fingerprint does not match"),
    (lambda p: rewrite_manifest(p, lambda m: m["files"].update({"../x": {"sha256": "", "bytes": 0}})), "unsafe"),
    (lambda p: (p / "shards/00001.safetensors").unlink(), "missing"),
    (lambda p: (p / "tokens/00000.parquet").write_bytes((p / "tokens/00000.parquet").read_bytes()[:100]), "truncated"),
], ids=["no-manifest", "bad-json", "foreign-json", "no-files", "bad-type", "newer", "edited", "unsafe",
        "missing-file", "truncated"])
def test_damaged_artifacts_are_refused_by_name(features, damage, message):
    damage(features)
    with pytest.raises(ArtifactError, match=message):
        read_everything(features)


def test_flipped_byte_in_a_tensor_is_caught(features):
    shard = features / "shards/00000.safetensors"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="00000.safetensors: content does not match"):
        read_everything(features)


def test_wrong_kind_and_wrong_dtype(tmp_path, features):
    with pytest.raises(ArtifactError, match="is a 'features' artifact, expected 'squeezer'"):
        open_artifact(features, "squeezer")
    with ArtifactWriter(tmp_path / "g", "features", command="t", attrs={"d_sae": 4}) as w:
        w.write_tensors("shards/00000.safetensors", {"indices": np.zeros((2, 2), np.int64),
                                                     "values": np.zeros((2, 2), np.float32)})
    with pytest.raises(ArtifactError, match="'indices' is int64"):
        list(open_artifact(tmp_path / "g").topk())


def test_index_out_of_range(tmp_path):
    with ArtifactWriter(tmp_path / "g", "features", command="t", attrs={"d_sae": 4}) as w:
        w.write_topk(np.array([[0, 4]]), np.array([[1.0, 1.0]]))
    with pytest.raises(ArtifactError, match="out of range"):
        list(open_artifact(tmp_path / "g").topk())


def test_lineage(tmp_path):
    a = open_artifact(write_features(tmp_path / "a", seed=1))
    b = open_artifact(write_features(tmp_path / "b", seed=2))
    with ArtifactWriter(tmp_path / "s", "squeezer", command="t", inputs=[a]):
        pass
    s = open_artifact(tmp_path / "s")
    check_lineage([s, a])
    with pytest.raises(BadInput, match="made from a different features artifact"):
        check_lineage([s, b])


# -- fuzzing: whatever the damage, a reader raises ArtifactError and nothing else


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_damaged_files(tmp_path_factory, data):
    path = write_features(tmp_path_factory.mktemp("fz") / "f", shards=1, rows=10)
    name = data.draw(st.sampled_from([MANIFEST, "shards/00000.safetensors", "tokens/00000.parquet"]))
    raw = bytearray((path / name).read_bytes())
    how = data.draw(st.sampled_from(["truncate", "flip", "splice"]))
    if how == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    elif how == "flip":
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] ^= data.draw(st.integers(1, 255))
    else:
        i = data.draw(st.integers(0, len(raw)))
        raw[i:i] = data.draw(st.binary(min_size=1, max_size=64))
    (path / name).write_bytes(bytes(raw))
    if name != MANIFEST and data.draw(st.booleans()):
        # A "foreign" file: damaged content that the manifest vouches for.
        from codec_cli.artifacts import content_fingerprint, sha256_bytes

        def vouch(m):
            m["files"][name] = {"sha256": sha256_bytes(bytes(raw)), "bytes": len(raw)}
            m["fingerprint"] = content_fingerprint(m["kind"], m["schema_version"], m["attrs"], m["files"])
        rewrite_manifest(path, vouch)
    try:
        read_everything(path)
    except ArtifactError as e:
        assert str(path) in str(e)
        assert "\n" not in str(e)


def test_the_docs_numpy_example_writes_a_valid_artifact(tmp_path, monkeypatch):
    """docs/artifacts.md promises a valid features/ from numpy without codec: run it."""
    import re
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "artifacts.md").read_text()
    example = re.findall(r"```python\n(.*?)```", doc, re.S)[-1]
    assert "codec_cli" not in example
    monkeypatch.chdir(tmp_path)
    exec(compile(example, "docs/artifacts.md", "exec"), {})
    a = open_artifact(tmp_path / "my-features", "features")
    assert sum(s.indices.shape[0] for s in a.topk()) == 256
    a.table("tokens/00000.parquet", ["doc", "pos"])


def test_resumable_writer_keeps_partial_work(tmp_path):
    out = tmp_path / "a"
    with pytest.raises(KeyboardInterrupt):
        with ArtifactWriter(out, "features", command="t", resume=False) as w:
            w.write_json("checkpoint/state.json", {"step": 5})
            raise KeyboardInterrupt
    assert not out.exists()
    with ArtifactWriter(out, "features", command="t", resume=True) as w:
        assert json.loads((w.path / "checkpoint/state.json").read_text()) == {"step": 5}
        (w.path / "checkpoint/state.json").unlink()
        (w.path / "checkpoint").rmdir()
    assert open_artifact(out).files() == []
    with ArtifactWriter(out, "features", command="t", resume=False) as w:  # afresh: nothing carried over
        assert list(w.path.iterdir()) == []


def test_a_failed_run_keeps_only_what_a_resume_can_use(tmp_path, capsys):
    for resume, wrote, kept in [(None, "checkpoint/state.json", False), (False, "notes.json", False),
                                (False, "checkpoint/state.json", True)]:
        out = tmp_path / f"r{resume}{kept}"
        with pytest.raises(RuntimeError):
            with ArtifactWriter(out, "squeezer", command="t", resume=resume, resumable="checkpoint/*") as w:
                w.write_json(wrote, {"step": 5})
                raise RuntimeError("disk full")
        partial = tmp_path / f".{out.name}.partial"
        assert partial.exists() == kept and not out.exists()
        said = capsys.readouterr().err
        assert ("--resume" in said) == kept, said


def test_a_second_run_with_the_same_out_is_refused_while_the_first_writes(tmp_path):
    out = tmp_path / "f"
    with ArtifactWriter(out, "features", command="first", resume=False) as first:
        first.write_json("checkpoint/state.json", {"step": 1})
        for resume in (None, False, True):
            with pytest.raises(BadInput, match="another codec run is writing it now"):
                with ArtifactWriter(out, "features", command="second", resume=resume):
                    pass
        assert (first.path / "checkpoint/state.json").is_file()  # the second run took nothing away
    assert open_artifact(out).manifest["command"] == "first"
    # Once the first is done, the next run goes ahead.
    with ArtifactWriter(out, "features", command="third"):
        pass
    assert open_artifact(out).manifest["command"] == "third"


def test_two_processes_racing_for_one_out_never_both_succeed(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        from codec_cli.artifacts import ArtifactWriter
        from codec_cli.errors import BadInput
        try:
            with ArtifactWriter({str(tmp_path / 'f')!r}, "features", command=sys.argv[1]) as w:
                w.write_json("who.json", sys.argv[1])
                time.sleep(1.5)
        except BadInput as e:
            print("refused", e); sys.exit(2)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, name], stdout=subprocess.PIPE, text=True)
             for name in ("a", "b")]
    codes = sorted(p.wait() for p in procs)
    assert codes == [0, 2]
    a = open_artifact(tmp_path / "f")
    assert a.json("who.json") == a.manifest["command"]  # the winner's manifest over the winner's files


def test_resume_is_not_recorded_as_a_parameter(tmp_path):
    for resume in (False, True):
        with ArtifactWriter(tmp_path / f"r{resume}", "features", command="t", resume=resume,
                            params={"out": "x", "resume": resume, "k": 4}):
            pass
    a, b = ((tmp_path / f"r{r}" / MANIFEST).read_bytes() for r in (False, True))
    assert a == b and json.loads(a)["params"] == {"out": "x", "k": 4}


def test_an_artifact_whose_manifest_make_deleted_is_replaced_by_the_rerun(tmp_path):
    """.DELETE_ON_ERROR removes a failed rule's target (the manifest) and leaves the rest:
    the next run must still recognise the directory as its own."""
    out = write_features(tmp_path / "f")
    (out / MANIFEST).unlink()
    write_features(out, seed=1)
    assert open_artifact(out).manifest["params"] == {"seed": 1}
    with pytest.raises(BadInput, match="holds a 'features' artifact"):
        (out / MANIFEST).unlink()
        ArtifactWriter(out, "squeezer", command="t")


def test_make_recovers_after_delete_on_error(tmp_path):
    """A real make: the recipe writes its artifact, then fails; make deletes the target
    manifest; after the cause is mended, `make` alone carries on."""
    import shutil

    if shutil.which("make") is None:
        pytest.skip("no make")
    (tmp_path / "write.py").write_text(textwrap.dedent("""
        import os, sys
        from codec_cli.artifacts import ArtifactWriter
        with ArtifactWriter("out", "analysis", command="t") as w:
            w.write_json("summary.json", {"ok": True})
        sys.exit(1 if os.path.exists("fail") else 0)
    """))
    (tmp_path / "Makefile").write_text(f".DELETE_ON_ERROR:\nout/manifest.json:\n\t{sys.executable} write.py\n")
    (tmp_path / "fail").touch()
    first = subprocess.run(["make", "-s"], cwd=tmp_path, capture_output=True, text=True)
    assert first.returncode != 0 and not (tmp_path / "out" / MANIFEST).exists()
    assert (tmp_path / "out" / "summary.json").exists()
    (tmp_path / "fail").unlink()
    again = subprocess.run(["make", "-s"], cwd=tmp_path, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert open_artifact(tmp_path / "out").json("summary.json") == {"ok": True}


def test_a_shard_linked_from_outside_the_artifact_is_refused(tmp_path):
    out = write_features(tmp_path / "f")
    outside = tmp_path / "elsewhere.safetensors"
    shard = out / "shards/00000.safetensors"
    shard.rename(outside)
    shard.symlink_to(outside)  # same bytes, same hash: only where it lives is wrong
    with pytest.raises(ArtifactError, match="link to a file outside the artifact"):
        open_artifact(out)


def test_a_shard_narrower_than_attrs_k_is_refused(tmp_path):
    with ArtifactWriter(tmp_path / "f", "features", command="t", attrs={"d_sae": 10, "k": 3}) as w:
        w.write_topk(np.zeros((4, 2), np.int32), np.ones((4, 2), np.float32))
    with pytest.raises(ArtifactError, match="holds 2 features per row, but the manifest's attrs.k is 3"):
        list(open_artifact(tmp_path / "f").topk())


def test_an_out_that_is_an_input_is_refused(tmp_path):
    src = write_features(tmp_path / "f")
    with pytest.raises(BadInput, match="--out names one of the inputs"):
        ArtifactWriter(src, "features", command="t", inputs=[open_artifact(src)])


def test_merge_refuses_to_write_over_one_of_its_parts(tmp_path):
    from codec_cli.stages.merge import merge

    parts = []
    for i in range(2):
        with ArtifactWriter(tmp_path / f"p{i}", "features", command="t", params={"shard": i},
                            attrs={"d_sae": 10, "k": 2, "part": {"index": i, "of": 2}}) as w:
            w.write_tensors(f"shards/{i:05d}.safetensors", {"indices": np.zeros((3, 2), np.int32),
                                                            "values": np.ones((3, 2), np.float32)})
        parts.append(tmp_path / f"p{i}")
    before = (parts[0] / MANIFEST).read_bytes()
    with pytest.raises(BadInput, match="--out names one of the inputs"):
        merge(parts, parts[0])
    assert (parts[0] / MANIFEST).read_bytes() == before
    assert merge(parts, tmp_path / "whole")["rows"] == 6


def test_one_json_normaliser_for_manifests_summaries_configs_and_json_output(tmp_path):
    from pathlib import Path

    from codec_cli.artifacts import canonical_json, json_ready

    data = {"nan": float("nan"), "inf": float("-inf"), "path": Path("a/b"), "pair": (1, 2), 3: np.float32(0.5),
            "n": np.int64(7), "ok": True, "none": None}
    assert json_ready(data) == {"nan": None, "inf": None, "path": "a/b", "pair": [1, 2], "3": 0.5, "n": 7,
                                "ok": True, "none": None}
    assert json.loads(canonical_json(data)) == json_ready(data)  # strict JSON: no NaN token
    with ArtifactWriter(tmp_path / "a", "analysis", command="t", params={"x": float("nan")},
                        attrs={"score": float("inf")}) as w:
        w.write_json("summary.json", {"fvu": float("nan")})
    a = open_artifact(tmp_path / "a")
    assert a.manifest["params"] == {"x": None} and a.attrs == {"score": None} and a.json("summary.json") == {"fvu": None}
