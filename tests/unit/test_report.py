"""`codec report` and `codec show` on artifacts written by hand, where every answer is planted:
which token a feature fires on, which rows are its top ones, what a neuron computes, what a
plugin's report hook says, and what happens when a plugin's report fails or nothing is there."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import numpy as np
import pytest

from codec_cli.artifacts import ArtifactWriter, open_artifact
from codec_cli.errors import PluginError
from codec_cli.plugin_api import Analysis, Context, Headline, Result, Section, validate
from codec_cli.stages import cards, html

VOCAB = ["the", "cat", "dog", "sat", "on", "mat", "a", "hat"]
WINDOW = 16


def token_features(path, seed: int = 0, rows: int = 320, shards: int = 2, stats: bool = True):
    """Features over a word vocabulary: feature 0 fires on 'cat' only, with value 1 + row/1000
    (so its top rows are its last ones), feature 1 on 'dog' only, features 2-5 anywhere at random."""
    rng = np.random.default_rng(seed)
    tokens = rng.choice(VOCAB, rows)
    idx = np.full((rows, 3), -1, np.int32)
    val = np.zeros((rows, 3), np.float32)
    for r, t in enumerate(tokens):
        if t == "cat":
            idx[r, 0], val[r, 0] = 0, 1 + r / 1000
        elif t == "dog":
            idx[r, 0], val[r, 0] = 1, rng.random()
        idx[r, 1], val[r, 1] = 2 + rng.integers(4), 0.5 * rng.random()
    per = rows // shards
    counts = np.zeros(6, np.int64)
    top = np.zeros(6)
    with ArtifactWriter(path, "features", command="test", params={"seed": seed}, attrs={"d_sae": 6, "k": 3}) as w:
        for s in range(shards):
            sl = slice(s * per, (s + 1) * per)
            w.write_topk(idx[sl], val[sl])
            r = np.arange(sl.start, sl.stop)
            w.write_table(f"tokens/{s:05d}.parquet", {"doc": (r // WINDOW).astype(np.int64),
                                                      "window": (r // WINDOW).astype(np.int64),
                                                      "pos": (r % WINDOW).astype(np.int32),
                                                      "token": list(tokens[sl])})
        for f in range(6):
            counts[f] = (idx == f).sum()
            top[f] = val[idx == f].max() if counts[f] else 0
        if stats:
            w.write_table("features.parquet", {"feature": np.arange(6, dtype=np.int32), "count": counts,
                                               "frequency": counts / rows, "max": top})
    return path, tokens, idx, val


def squeezer_of(path, features, W, b, neuron_act="relu", k=3):
    F, M = W.shape
    with ArtifactWriter(path, "squeezer", command="test", params={"k": k}, inputs=[open_artifact(features)],
                        attrs={"tied": True, "neuron_act": neuron_act, "k": k, "n_neurons": M}) as w:
        w.write_tensors("weights.safetensors", {"W_enc": W.astype(np.float32), "W_dec": np.ascontiguousarray(W.T),
                                                "b_enc": b.astype(np.float32), "b_dec": np.zeros(F, np.float32),
                                                "scale": np.full(F, 2.0, np.float32)})
        w.write_table("features.parquet", {"feature": np.arange(F, dtype=np.int32), "status": ["represented"] * F,
                                           "frequency": np.full(F, 0.5), "mse": np.zeros(F), "mean": np.ones(F)})
    return path


@pytest.mark.parametrize("stats", [True, False])
def test_a_features_card_shows_its_top_rows_with_the_firing_token(tmp_path, stats) -> None:
    path, tokens, idx, val = token_features(tmp_path / "f", stats=stats)
    got = cards.feature_cards(open_artifact(path), [0, 1, 3], n=5)
    cat = np.nonzero(tokens == "cat")[0]
    c = got[0]
    assert [e.row for e in c.examples] == list(cat[::-1][:5])  # the largest values are the last rows
    assert all(e.tokens[e.at] == "cat" for e in c.examples) and c.top_tokens() == ["cat"]
    assert c.count == len(cat) == sum(c.histogram) and c.rows == len(tokens)
    assert c.high == pytest.approx(val[idx == 0].max())
    assert got[1].top_tokens() == ["dog"]
    for e in c.examples:  # the context is the row's own window, never the next one's
        lo = e.row - e.at
        assert lo // WINDOW == e.row // WINDOW == (lo + len(e.tokens) - 1) // WINDOW
        assert e.tokens == list(tokens[lo:lo + len(e.tokens)])
        assert "[[cat]]" in e.text() and e.sep == " "
        assert e.facts["pos"] == e.row % WINDOW


def test_the_running_top_rows_equal_a_sort_of_everything() -> None:
    rng = np.random.default_rng(1)
    ids, vals, rows = rng.integers(0, 7, 500), rng.random(500).round(2), np.arange(500)
    top = cards._Top(4)
    for part in np.array_split(np.arange(500), 9):
        top.add(ids[part], vals[part], rows[part])
    for i in range(7):
        mine = ids == i
        expect = sorted(zip(-vals[mine], rows[mine]))[:4]
        assert top.of(i) == [(int(r), float(-v)) for v, r in expect]


def test_a_neuron_card_runs_the_squeezers_encoder(tmp_path) -> None:
    """h = ReLU((x / scale) W_enc + b) on every row, each cut to the Squeezer's k."""
    path, tokens, idx, val = token_features(tmp_path / "f")
    W = np.random.default_rng(2).normal(size=(6, 3))
    b = np.array([0.0, -0.1, 0.05])
    sq = squeezer_of(tmp_path / "sq", path, W, b, k=2)
    x = np.zeros((len(tokens), 6))
    for r in range(len(tokens)):
        for j in range(2):
            if idx[r, j] >= 0:
                x[r, idx[r, j]] += val[r, j] / 2.0
    h = np.maximum(x @ W + b, 0)
    got = cards.neuron_cards(open_artifact(sq), open_artifact(path), n=3)
    for m in range(3):
        order = np.argsort(-h[:, m], kind="stable")[:3]
        assert [e.row for e in got[m].examples] == [r for r in order if h[r, m] > 0]
        assert [e.value for e in got[m].examples] == pytest.approx([h[r, m] for r in order if h[r, m] > 0], rel=1e-5)
        assert got[m].count == int((h[:, m] > 0).sum())
    assert cards.drivers(open_artifact(sq))[0][0][0] == int(np.argmax(W[:, 0] / 2.0))


def test_html_table_links_ids_and_sorts_by_full_values() -> None:
    out = html.table(["feature", "score", "name"], [{"feature": 3, "score": 0.123456789, "name": "<b>"}],
                     {"feature": lambda v: ("feature-x-3", "cat")})
    assert '<a href="#feature-x-3">3 cat</a>' in out and 'data-v="0.123456789"' in out
    assert "&lt;b&gt;" in out and "<b>" not in out  # an artifact's strings are data
    assert html.number(None) == "unknown" and html.number(2.0) == "2" and html.number(1234) == "1,234"


def test_validate_refuses_a_report_that_is_not_a_method() -> None:
    class Bad(Analysis):
        api_version = 1
        requires = ("features",)
        report = "not callable"

        def run(self, ctx):
            return Result()

    with pytest.raises(PluginError, match="report is 'not callable'"):
        validate(Bad(), "bad")


@dataclass(frozen=True)
class NoParams:
    pass


class Finds(Analysis):
    """Reports through the hook: one planted answer, a number beside its baseline, and a table of ids."""

    name = "finds"
    api_version = 1
    requires = ("features",)

    def run(self, ctx: Context) -> Result:
        return Result(summary={"score": 0.9, "score_chance": 0.1}, tables={"top": {"feature": [0, 1], "v": [1.0, 2.0]}})

    def report(self, art) -> Section:
        s = art.json("summary.json")
        return Section(question="or-gates", answer="PLANTED ANSWER", text="how to read it",
                       headline=[Headline("score", s["score"], s["score_chance"], "planted chance")])


class Asks(Analysis):
    """A question of its own, and no table."""

    name = "asks"
    api_version = 1
    requires = ("features",)

    def run(self, ctx: Context) -> Result:
        return Result(summary={"n": 1})

    def report(self, art) -> Section:
        return Section(question="Does my own analysis work?", answer="yes, it does", tables=[])


class Silent(Analysis):
    """No report hook: the page shows everything it holds, chance twins beside their numbers."""

    name = "silent"
    api_version = 1
    requires = ("features",)

    def run(self, ctx: Context) -> Result:
        return Result(summary={"lift": 0.3, "lift_chance": 0.25}, tables={"t": {"x": [1]}})


class Breaks(Analysis):
    name = "breaks"
    api_version = 1
    requires = ("features",)

    def run(self, ctx: Context) -> Result:
        return Result(summary={"fine": 1})

    def report(self, art) -> Section:
        raise RuntimeError("report exploded")


@pytest.fixture
def analysed(tmp_path, cli, in_process):
    features, *_ = token_features(tmp_path / "run/features")
    for p in (Finds(), Asks(), Silent(), Breaks()):
        in_process(p)
    result = cli("analyze", features, "-P", "finds,asks,silent,breaks", "--out", tmp_path / "run/analysis")
    assert result.exit_code == 0, result.output
    return tmp_path / "run"


def test_the_report_answers_what_was_run_and_says_what_was_not(analysed, cli, tmp_path) -> None:
    out = tmp_path / "report.html"
    result = cli("report", analysed, "--out", out, "--json")
    assert result.exit_code == 1, result.output  # one plugin's report failed: named, the rest written
    summary = json.loads(result.stdout)
    assert summary["failed"] == ["analysis/breaks"] and "or-gates" in summary["answered"]
    assert "faithfulness" in summary["not_run"] and summary["cards"]["features"] == 6
    page = out.read_text()
    glance = page[page.index('id=answers'):page.index("<h2>Contents")]
    assert 'PLANTED ANSWER <a href="#a-analysis_finds">analysis/finds</a>' in glance
    assert glance.count("not run") == 9  # every built-in question but the one planted
    assert glance.index("Does my own analysis work?") > glance.index("Where do SAEs fail")
    assert "its report failed: RuntimeError: report exploded" in page
    assert "report exploded" in result.stderr
    assert "<td>0.9</td><td>0.1</td><td class=t>planted chance</td>" in page
    assert "<td>lift</td><td>0.3</td><td>0.25</td>" in page  # the fallback pairs a number with its _chance twin
    # The plugin's table names features: each links to its card, which shows its firing token.
    assert '<a href="#feature-features-0">0 cat</a>' in page and 'id="feature-features-0"' in page
    assert "<mark>cat</mark>" in page
    # Self-contained: nothing outside the page is ever asked for.
    refs = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert refs and all(r.startswith(("#", "data:")) for r in refs)
    assert "default-src 'none'" in page


def test_a_report_is_rewritten_whole_and_bad_input_loses_nothing(analysed, cli, tmp_path) -> None:
    out = tmp_path / "report.html"
    out.write_text("the good old report")
    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli("report", empty, "--out", out)
    assert result.exit_code == 2 and "no codec artifact under" in result.stderr
    assert out.read_text() == "the good old report"
    result = cli("report", tmp_path / "nowhere", "--out", out)
    assert result.exit_code == 2 and "no such directory" in result.stderr
    result = cli("report", analysed, "--out", tmp_path)
    assert result.exit_code == 2 and "is a directory" in result.stderr
    assert out.read_text() == "the good old report" and not list(tmp_path.glob(".*.partial"))
    cli("report", analysed / "features", "--out", out)
    first = out.read_bytes()
    cli("report", analysed / "features", "--out", out)
    assert out.read_bytes() == first and b"the good old report" not in first  # deterministic, whole


def test_a_damaged_artifact_is_named_and_left_out(analysed, cli, tmp_path) -> None:
    (analysed / "analysis/silent/manifest.json").write_text("{not json")
    result = cli("report", analysed, "--out", tmp_path / "r.html", "--json")
    assert json.loads(result.stdout)["unreadable"] == 1
    assert "skipping analysis/silent" in result.stderr
    assert "Not readable, left out" in (tmp_path / "r.html").read_text()


def test_show_prints_a_features_top_contexts(tmp_path, cli) -> None:
    path, tokens, *_ = token_features(tmp_path / "f")
    result = cli("show", path, 0, "--examples", 3)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("feature 0 of") and "fires on cat" in lines[0]
    assert len(lines) == 2 + 3 and all("[[cat]]" in line for line in lines[2:])
    data = json.loads(cli("show", path, 1, "--json").stdout)
    assert data["card"] == "feature" and data["top_tokens"] == ["dog"] and len(data["examples"]) == 8
    result = cli("show", path, 6)
    assert result.exit_code == 2 and "no feature 6; its features are 0 to 5" in result.stderr


def test_show_prints_a_neurons_card_through_its_features(tmp_path, cli) -> None:
    path, *_ = token_features(tmp_path / "f")
    W = np.zeros((6, 2))
    W[0, 0] = 1.0  # neuron 0 reads 'cat' alone
    W[1, 1] = 1.0
    sq = squeezer_of(tmp_path / "sq", path, W, np.zeros(2))
    result = cli("show", sq, 0, "--examples", 2)
    assert result.exit_code == 0, result.output
    assert "neuron 0 of" in result.stdout and "driven by f0" in result.stdout and "[[cat]]" in result.stdout
    assert "[[dog]]" not in result.stdout
    result = cli("show", sq, 2)
    assert result.exit_code == 2 and "no neuron 2" in result.stderr


def test_the_same_layout_under_two_directories_keeps_both_apart(tmp_path, cli) -> None:
    token_features(tmp_path / "a/features", seed=0)
    token_features(tmp_path / "b/features", seed=1)
    result = cli("report", tmp_path / "a", tmp_path / "b", "--out", tmp_path / "r.html", "--json")
    assert json.loads(result.stdout)["artifacts"] == 2
    ids = re.findall(r'<section class="artifact" id="([^"]+)"', (tmp_path / "r.html").read_text())
    assert len(ids) == len(set(ids)) == 2
