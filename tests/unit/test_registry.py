"""Plugin discovery and loading through faked entry points (the pytest way):
metadata is read without importing; failures name plugin and package."""

from __future__ import annotations

import importlib.metadata
import json
import sys
import textwrap
from dataclasses import dataclass

import pytest

from codec_cli import registry
from codec_cli.errors import BadInput, PluginError


@dataclass
class FakeDist:
    name: str
    version: str
    entries: dict[str, str]

    @property
    def metadata(self):
        return {"Name": self.name}

    @property
    def entry_points(self):
        return [importlib.metadata.EntryPoint(n, v, registry.GROUP) for n, v in self.entries.items()]


GOOD = """
from codec_cli.plugin_api import Analysis, Result
IMPORTED = True
class Good(Analysis):  # no name of its own: each entry point names it
    api_version = 1
    requires = ("features",)
    def run(self, ctx):
        return Result(summary={"ok": True})
"""
WRONG_API = """
class Future:
    api_version = 2
    requires = ()
    def run(self, ctx): ...
"""
NO_API = """
class Vague:
    requires = ()
    def run(self, ctx): ...
"""
RAISES = """
raise ImportError("needs libfoo")
"""
SHODDY = """
from dataclasses import dataclass
from codec_cli.plugin_api import Analysis, Result

class Base(Analysis):
    api_version = 1
    requires = ("features",)
    def run(self, ctx):
        return Result(summary={"ran": True})

class NoneParams(Base):
    Params = None

class StringRequires(Base):
    requires = "features"

class Misnamed(Base):
    name = "something-else"

@dataclass(frozen=True)
class Needy:
    level: int

class NoDefault(Base):
    Params = Needy

@dataclass(frozen=True)
class Strict:
    level: int = -1
    def __post_init__(self):
        if self.level < 0:
            raise ValueError("level must be at least 0")

class BadDefaults(Base):
    Params = Strict

class StringApi(Base):
    api_version = "1"

class Unbuildable(Base):
    def __init__(self, path):
        self.path = path

class Dataless:  # not a subclass: any object with the attributes will do, but it must have them
    api_version = 1
    def run(self, ctx): ...
"""
CONTRACT = {  # entry point -> (class, what the refusal says)
    "none-params": ("NoneParams", "Params is None; it should be a dataclass"),
    "string-requires": ("StringRequires",
                        "requires is 'features'; requires should be a tuple of artifact kinds, e.g. ('features',)"),
    "misnamed": ("Misnamed", "calls itself 'something-else', but is registered as 'misnamed'"),
    "no-default": ("NoDefault", "Params field(s) level have no default"),
    "bad-defaults": ("BadDefaults", "Params() refuses its own defaults: level must be at least 0"),
    "string-api": ("StringApi", "declares api_version '1', a str; it should be the int 1"),
    "unbuildable": ("Unbuildable", "cannot be instantiated: TypeError"),
    "dataless": ("Dataless", "declares no requires"),
}


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """Replace installed distributions with fakes whose modules live in tmp_path."""
    for mod, src in {"good_plugin": GOOD, "future_plugin": WRONG_API, "vague_plugin": NO_API,
                     "broken_plugin": RAISES}.items():
        (tmp_path / f"{mod}.py").write_text(textwrap.dedent(src))
        sys.modules.pop(mod, None)
    monkeypatch.syspath_prepend(str(tmp_path))
    dists = [
        FakeDist("codec", "0.1.0", {"builtin-one": "good_plugin:Good"}),
        FakeDist("acme-analyses", "2.0", {"good": "good_plugin:Good", "future": "future_plugin:Future",
                                          "vague": "vague_plugin:Vague", "broken": "broken_plugin:Nope"}),
        FakeDist("zeta", "1.0", {"good": "good_plugin:Good"}),
        FakeDist("unrelated", "1.0", {}),
    ]
    monkeypatch.setattr(importlib.metadata, "distributions", lambda: dists)
    monkeypatch.delenv("CODEC_LOAD_PLUGINS", raising=False)
    yield
    for mod in ["good_plugin", "future_plugin", "vague_plugin", "broken_plugin"]:
        sys.modules.pop(mod, None)


@pytest.fixture
def shoddy(fake, monkeypatch, tmp_path):
    """The fakes, plus a package whose plugins each break one rule of the contract."""
    (tmp_path / "shoddy_plugin.py").write_text(textwrap.dedent(SHODDY))
    sys.modules.pop("shoddy_plugin", None)
    dists = [*importlib.metadata.distributions(),
             FakeDist("shoddy", "0.3", {ep: f"shoddy_plugin:{cls}" for ep, (cls, _) in CONTRACT.items()})]
    monkeypatch.setattr(importlib.metadata, "distributions", lambda: dists)
    yield
    sys.modules.pop("shoddy_plugin", None)


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_a_broken_contract_is_refused_at_load_by_name_and_package(shoddy, name):
    with pytest.raises(PluginError) as e:
        registry.load(registry.find(name))
    assert str(e.value).startswith(f"plugin {name!r} (package shoddy 0.3)")
    assert CONTRACT[name][1] in str(e.value)


def test_broken_contracts_are_reported_and_the_others_still_run(shoddy, cli, features, tmp_path):
    result = cli("analyze", features, "--out", tmp_path / "out", "--json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert {n for n, r in report.items() if r["status"] == "ok"} == {"builtin-one", "good"}
    for name, (_, message) in CONTRACT.items():
        assert report[name]["status"] == "failed" and message in report[name]["error"]
        assert f"Error: plugin {name!r} (package shoddy 0.3)" in result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["builtin-one", "good"]
    assert json.loads((tmp_path / "out/good/summary.json").read_text()) == {"ok": True}


def test_a_plugin_without_optional_attributes_passes(in_process, cli, features, tmp_path):
    """Not subclassing Analysis: no name, optional or Params, and lists for tuples."""
    from codec_cli.plugin_api import Result

    class Bare:
        api_version = 1
        requires = ["features"]

        def run(self, ctx):
            return Result(summary={"params": type(ctx.params).__name__})

    in_process(Bare(), "bare")
    result = cli("analyze", features, "--out", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["bare"]["summary"] == {"params": "NoParams"}


def test_discovery_reads_metadata_without_importing(fake):
    infos = registry.discover()
    assert [(p.name, p.package, p.version, p.builtin) for p in infos] == [
        ("broken", "acme-analyses", "2.0", False),
        ("builtin-one", "codec", "0.1.0", True),
        ("future", "acme-analyses", "2.0", False),
        ("good", "acme-analyses", "2.0", False),  # claimed twice: first package alphabetically
        ("vague", "acme-analyses", "2.0", False),
    ]
    assert "good_plugin" not in sys.modules and "broken_plugin" not in sys.modules


def test_load_good_plugin(fake):
    plugin = registry.load(registry.find("good"))
    assert plugin.api_version == 1 and plugin.requires == ("features",)
    assert "good_plugin" in sys.modules


@pytest.mark.parametrize("name, message", [
    ("broken", r"plugin 'broken' \(package acme-analyses 2.0\) failed to load: ImportError: needs libfoo"),
    ("future", r"plugin 'future' \(package acme-analyses 2.0\) was written for codec plugin API 2; "
               r"this codec speaks API 1"),
    ("vague", r"declares no api_version"),
])
def test_bad_plugins_fail_by_name_and_package(fake, name, message):
    with pytest.raises(PluginError, match=message):
        registry.load(registry.find(name))


def test_unknown_plugin_is_bad_usage(fake):
    with pytest.raises(BadInput, match="no analysis plugin named 'nope'"):
        registry.find("nope")


@pytest.mark.parametrize("allow, names", [
    ("good", ["good"]),
    ("acme-analyses", ["broken", "future", "good", "vague"]),
    ("codec,future", ["builtin-one", "future"]),
    ("", []),
])
def test_load_plugins_allowlist(fake, monkeypatch, allow, names):
    monkeypatch.setenv("CODEC_LOAD_PLUGINS", allow)
    assert [p.name for p in registry.discover()] == names


@pytest.mark.parametrize("allow, unknown", [("nosuch", "'nosuch'"), ("good,godo", "'godo'")])
def test_load_plugins_naming_nothing_is_bad_input(fake, monkeypatch, allow, unknown):
    """A typo in the allowlist would otherwise just hide plugins ("No analysis plugins installed")."""
    monkeypatch.setenv("CODEC_LOAD_PLUGINS", allow)
    with pytest.raises(BadInput, match=f"no installed plugin or package is named {unknown}") as e:
        registry.discover()
    assert "good" in e.value.hint


def test_an_empty_allowlist_says_why_nothing_is_listed(fake, monkeypatch, cli):
    monkeypatch.setenv("CODEC_LOAD_PLUGINS", "")
    result = cli("plugins")
    assert result.exit_code == 0 and "CODEC_LOAD_PLUGINS is empty" in result.stdout


def test_plugins_listing_reports_broken_ones_without_spoiling_others(fake, cli):
    result = cli("plugins", "--json")
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["good"]["status"] == "ok" and rows["good"]["api_version"] == 1
    assert rows["builtin-one"]["builtin"] is True and rows["good"]["builtin"] is False
    assert rows["broken"]["status"].startswith("error: plugin 'broken' (package acme-analyses 2.0) failed")
    assert "API 2" in rows["future"]["status"] and rows["future"]["api_version"] is None
    human = cli("plugins").stdout
    assert human.splitlines()[0].split() == ["name", "package", "version", "api", "built-in", "requires", "status"]
    assert "builtin-one  codec" in human


def test_in_process_registration(in_process, cli):
    from conftest import CountTokens

    in_process(CountTokens)
    rows = json.loads(cli("plugins", "--json").stdout)
    assert [(r["name"], r["package"], r["status"]) for r in rows] == [("count-tokens", "<in-process>", "ok")]
