"""Shared by every tier: a tiny features artifact written from numpy, the CLI runner,
in-process plugin registration that is always undone, the squeezers that more than one
end-to-end file reads (each trained once per session), and the `slow` mark on tests/e2e/.

This is the only conftest.py: pytest imports every conftest as the module `conftest`, so
a second one in a subfolder would shadow this one for `from conftest import ...`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from codec_cli import registry
from codec_cli.plugin_api import Analysis, Context, Result
from codec_cli.artifacts import ArtifactWriter
from codec_cli.cli import app
from codec_cli.cli.console import settings


def write_features(path: Path, seed: int = 0, d_sae: int = 40, k: int = 4, shards: int = 2, rows: int = 50) -> Path:
    """A small but valid `features` artifact, written the way docs/artifacts.md describes."""
    rng = np.random.default_rng(seed)
    with ArtifactWriter(path, "features", command="test", params={"seed": seed},
                        attrs={"d_sae": d_sae, "k": k}) as w:
        for shard in range(shards):
            idx = np.stack([rng.choice(d_sae, k, replace=False) for _ in range(rows)]).astype(np.int32)
            w.write_topk(idx, rng.random((rows, k)).astype(np.float32))
            w.write_table(f"tokens/{shard:05d}.parquet",
                          {"doc": (np.arange(rows) // 10 + shard * rows // 10).astype(np.int64),
                           "pos": (np.arange(rows) % 10).astype(np.int32),
                           "token_id": rng.integers(0, 100, rows).astype(np.int32)})
    return path


@pytest.fixture
def features(tmp_path) -> Path:
    return write_features(tmp_path / "features")


E2E = Path(__file__).parent / "e2e"


def pytest_collection_modifyitems(config, items):
    # The mark follows the folder, so a new end-to-end file is slow without having to say so.
    for item in items:
        if item.path.is_relative_to(E2E):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def toy_antipodal(tmp_path_factory):
    """(features, squeezer, metrics): toy world n=5 in m=2, S=0.8, importance 0.9**i, no
    faithfulness. test_squeeze_toy checks its geometry and test_polytope names it; one
    squeeze serves both. Read it, never write into it."""
    import squeezed

    return squeezed.toy(tmp_path_factory.mktemp("toy-antipodal"), sparsity=0.8, decay=0.9,
                        squeeze=("--no-faithfulness",))


@pytest.fixture(scope="session")
def toy_dense(tmp_path_factory):
    """(features, squeezer, metrics): as `toy_antipodal`, dense (S=0)."""
    import squeezed

    return squeezed.toy(tmp_path_factory.mktemp("toy-dense"), sparsity=0.0, decay=0.9,
                        squeeze=("--no-faithfulness",))


@pytest.fixture(scope="session")
def themes_resid0(tmp_path_factory):
    """(root, summary): the themes world's features through its resid0 SAE (root/features) and
    their atoms clustered by the documents they fire in (root/themes), once per session."""
    import squeezed

    root = tmp_path_factory.mktemp("themes-resid0")
    squeezed.codec("extract", "themes", "--sae", "resid0", "--tokens", 100_000, "--out", root / "features")
    summary = squeezed.codec("cluster", root / "features", "--embed", "coactivation", "--window", 0,
                             "--out", root / "themes")
    return root, summary


@pytest.fixture(scope="session")
def themes_squeezed(tmp_path_factory):
    """(features, squeezer, metrics) of the shipped themes world, built once per session."""
    import squeezed

    return squeezed.themes(tmp_path_factory.mktemp("themes"))


@pytest.fixture
def cli():
    """Invoke `codec ARGS...` in-process; returns the result (stdout, stderr, exit_code)."""
    runner = CliRunner()

    def invoke(*args: str, env: dict | None = None):
        result = runner.invoke(app, [str(a) for a in args], env=env)
        settings.quiet = False  # the callback sets it per invocation
        return result

    return invoke


@dataclass(frozen=True)
class CountParams:
    scale: float = 1.0
    """Multiplies the reported token count."""


class CountTokens(Analysis):
    """Counts rows of a features artifact; the simplest possible plugin."""

    name = "count-tokens"
    api_version = 1
    requires = ("features",)
    Params = CountParams

    def run(self, ctx: Context) -> Result:
        n = sum(s.indices.shape[0] for s in ctx.inputs["features"].topk())
        return Result(summary={"tokens": n * ctx.params.scale, "nan": float("nan")},
                      tables={"counts": {"n": [n]}},
                      figures={"note.txt": b"plain bytes figure\n"})


class Explodes(Analysis):
    name = "explodes"
    api_version = 1
    requires = ("features",)

    def run(self, ctx: Context) -> Result:
        (ctx.out_dir / "half-written.txt").write_text("oops")
        raise RuntimeError("boom")


@pytest.fixture
def in_process(monkeypatch):
    """Register plugins in-process, with installed plugins hidden; undone after the test."""
    monkeypatch.setattr("importlib.metadata.distributions", lambda: [])
    names = []

    def add(plugin, name=None):
        names.append(registry.register(plugin, name))

    yield add
    for n in names:
        registry.unregister(n)
