"""`codec analyze`: plugins get plain data, their results become artifacts, and one
plugin's failure or a bad request never costs another plugin's output."""

from __future__ import annotations

import json

import polars as pl

from codec_cli.artifacts import ArtifactWriter, open_artifact
from conftest import CountTokens, Explodes, write_features


def test_runs_a_plugin_into_its_own_artifact(in_process, cli, features, tmp_path):
    in_process(CountTokens)
    out = tmp_path / "analysis"
    result = cli("analyze", features, "--out", out, "-p", "scale=2", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["count-tokens"]["summary"] == {"tokens": 200.0, "nan": None}
    art = open_artifact(out / "count-tokens", "analysis")
    assert art.attrs["plugin"] == "count-tokens" and art.attrs["api_version"] == 1
    assert art.manifest["params"] == {"plugin": "count-tokens", "params": {"scale": 2.0}}
    assert art.inputs == [{"kind": "features", "path": str(features),
                           "fingerprint": open_artifact(features).fingerprint}]
    assert art.table("counts.parquet")["n"].to_list() == [100]
    assert art.read_bytes("note.txt") == b"plain bytes figure\n"
    assert art.json("summary.json") == {"tokens": 200.0, "nan": None}


def test_rerun_gives_the_same_bytes(in_process, cli, features, tmp_path):
    in_process(CountTokens)
    cli("analyze", features, "--out", tmp_path / "a")
    cli("analyze", features, "--out", tmp_path / "b")
    for name in ["summary.json", "counts.parquet"]:
        assert (tmp_path / "a/count-tokens" / name).read_bytes() == (tmp_path / "b/count-tokens" / name).read_bytes()


def test_a_failing_plugin_spoils_nothing_else(in_process, cli, features, tmp_path):
    in_process(CountTokens)
    in_process(Explodes)
    out = tmp_path / "analysis"
    result = cli("analyze", features, "--out", out)
    assert result.exit_code == 1
    assert "explodes: FAILED" in result.stdout and "count-tokens: ok" in result.stdout
    assert "plugin 'explodes' (package <in-process> -) failed: RuntimeError: boom" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["count-tokens"]  # no half-written output


def test_bad_requests_exit_2_before_any_plugin_runs(in_process, cli, features, tmp_path):
    in_process(CountTokens)
    out = tmp_path / "analysis"
    cases = [
        (["-p", "nope=1"], "no selected plugin takes a parameter 'nope'"),
        (["-p", "scale=lots"], "count-tokens parameter scale='lots'"),
        (["-p", "scale"], "is not KEY=VALUE"),
        (["-p", "other.scale=1"], "names plugin 'other', which is not selected"),
        (["-P", "missing"], "no analysis plugin named 'missing'"),
    ]
    for extra, message in cases:
        result = cli("analyze", features, "--out", out, *extra)
        assert result.exit_code == 2, (extra, result.output)
        assert message in result.stderr
        assert len([ln for ln in result.stderr.splitlines() if ln.startswith("Error:")]) == 1
    assert not out.exists()
    out.write_text("a file")
    result = cli("analyze", features, "--out", out)
    assert result.exit_code == 2 and "exists and is not a directory" in result.stderr


def test_inputs_that_do_not_belong_together(in_process, cli, tmp_path):
    in_process(CountTokens)
    a = write_features(tmp_path / "a", seed=1)
    b = write_features(tmp_path / "b", seed=2)
    with ArtifactWriter(tmp_path / "sq", "squeezer", command="t", inputs=[open_artifact(a)]):
        pass
    result = cli("analyze", tmp_path / "sq", b, "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert "made from a different features artifact" in result.stderr
    result = cli("analyze", a, b, "--out", tmp_path / "out")
    assert result.exit_code == 2 and "two features artifacts" in result.stderr


def test_damaged_input_is_one_line_exit_2(in_process, cli, features, tmp_path):
    in_process(CountTokens)
    (features / "tokens/00000.parquet").write_bytes(b"garbage")
    result = cli("analyze", features, "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0].startswith(f"Error: {features / 'tokens/00000.parquet'}: is 7 bytes")


def test_plugin_output_table_is_polars_readable(in_process, cli, features, tmp_path):
    in_process(CountTokens)
    cli("analyze", features, "--out", tmp_path / "o")
    assert pl.read_parquet(tmp_path / "o/count-tokens/counts.parquet").shape == (1, 1)


def test_a_plugin_that_calls_sys_exit_is_isolated_like_any_failure(in_process, cli, features, tmp_path):
    import sys

    from codec_cli.plugin_api import Analysis

    class Quits(Analysis):
        name = "quits"
        api_version = 1
        requires = ("features",)

        def run(self, ctx):
            sys.exit(0)

    in_process(Quits)
    in_process(CountTokens)
    out = tmp_path / "analysis"
    result = cli("analyze", features, "--out", out)
    assert result.exit_code == 1, result.output
    assert "quits: FAILED" in result.stdout and "count-tokens: ok" in result.stdout
    assert "called sys.exit(0)" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["count-tokens"]
