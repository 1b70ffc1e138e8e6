"""Every stage is a plain function of its config: called from Python, with no CLI, its
talk routed by the caller (codec_cli.talk)."""

from __future__ import annotations

import re
import subprocess
import sys
import types
from contextlib import contextmanager
from pathlib import Path

import pytest

from codec_cli import talk
from codec_cli.worlds import WORLDS, WorldModule, WorldSpec


class Recorder:
    """A progress factory that remembers every bar and how far it got."""

    def __init__(self):
        self.bars: dict[str, int] = {}

    @contextmanager
    def __call__(self, description, total, *, unit="it", completed=0, per=None):
        recorder = self

        class Bar:
            visible = True

            def advance(self, n=1):
                recorder.bars[description] += n

            def update(self, completed=None, description_=None, **kw):
                if completed is not None:
                    recorder.bars[description] = completed

        self.bars[description] = completed
        yield Bar()


def test_the_readme_pipeline_runs_from_python_without_the_cli(tmp_path):
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    example = re.search(r"## Where things live.*?```python\n(.*?)```", readme, re.S).group(1)
    small = example.replace("tokens=20_000", "tokens=12_000")
    probe = ("import sys\n" + small + 'assert metrics["represented"] > 0 and report["polysemanticity"]["status"] == "ok"\n'
             'shell = sorted(m for m in sys.modules if m.startswith(("codec_cli.cli", "typer")))\n'
             'print("shell:", shell)\n')
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "shell: []"
    assert (tmp_path / "squeezer" / "manifest.json").is_file()


def test_a_stage_reports_to_the_callers_log_and_progress(tmp_path):
    from codec_cli.config import SAERunConfig
    from codec_cli.stages.train_sae import train_sae

    said, bars = [], Recorder()
    result = train_sae(SAERunConfig(source="toy", steps=30, batch_size=64, checkpoint_every=0, out=tmp_path / "sae"),
                       log=said.append, progress=bars)
    assert result["out"] == str(tmp_path / "sae") and result["d_sae"] == 10
    assert bars.bars == {"sae topk @ hook_hidden": 30}
    assert talk._progress.get() is talk.no_bar  # put back as it was


def test_reporting_nests_and_restores():
    outer, inner = [], []
    with talk.reporting(log=outer.append):
        talk.info("a")
        with talk.reporting(log=inner.append):
            talk.info("b")
        talk.info("c")
    assert outer == ["a", "c"] and inner == ["b"]
    assert talk._log.get() is talk.to_stderr


@pytest.mark.parametrize("name", sorted(WORLDS))
def test_each_builtin_world_is_a_world_module(name):
    assert isinstance(WORLDS[name].load(), WorldModule)


def test_a_module_that_is_not_a_world_is_refused_by_its_missing_names(monkeypatch):
    fake = types.ModuleType("fake_world")
    fake.LANGUAGE, fake.Config = False, object
    monkeypatch.setitem(sys.modules, "fake_world", fake)
    with pytest.raises(TypeError, match="lacks round_trip, build, load_model, inputs, labels"):
        WorldSpec("fake", "", "fake_world").load()
