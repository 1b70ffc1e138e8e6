"""Analysis plugins: found through entry points without importing, loaded on use.

Every analysis, built-in or third-party, is an entry point in the group
`codec.analyses` (flake8's model: no side door for the built-ins). Discovery
reads package metadata only; `load` imports one plugin, checks it against the plugin
contract (`plugin_api.validate`), and wraps any failure in a `PluginError` that names
plugin and package. The entry point's name is the plugin's name.

Environment:
    CODEC_LOAD_PLUGINS   comma-separated plugin or package names to allow; empty = none
"""

from __future__ import annotations

import importlib.metadata
import os
from dataclasses import dataclass
from typing import Any

from codec_cli.errors import BadInput, PluginError

GROUP = "codec.analyses"
BUILTIN_PACKAGE = "codec"
IN_PROCESS = "<in-process>"


@dataclass(frozen=True)
class PluginInfo:
    """What metadata says about a plugin, known without importing it."""

    name: str
    package: str
    version: str
    value: str
    """The entry point's `module:attr`, or the repr of an in-process object."""

    @property
    def builtin(self) -> bool:
        return self.package == BUILTIN_PACKAGE

    def describe(self) -> str:
        return f"plugin {self.name!r} (package {self.package} {self.version})"


_registered: dict[str, Any] = {}


def register(plugin: Any, name: str | None = None) -> str:
    """Register an analysis in this process (scripts, notebooks, tests); returns its name."""
    name = name or getattr(plugin, "name", None)
    if not name:
        raise ValueError("an in-process plugin needs a name")
    _registered[name] = plugin
    return name


def unregister(name: str) -> None:
    _registered.pop(name, None)


def allowed_names() -> set[str] | None:
    """The plugin or package names CODEC_LOAD_PLUGINS allows; None when it is unset."""
    raw = os.environ.get("CODEC_LOAD_PLUGINS")
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def discover() -> list[PluginInfo]:
    """All plugins, sorted by name, without importing any of them.

    A name claimed twice is kept once: the built-in wins, then the first package
    in alphabetical order.
    """
    found: list[PluginInfo] = []
    for dist in importlib.metadata.distributions():
        eps = [ep for ep in dist.entry_points if ep.group == GROUP]
        if not eps:
            continue
        package = dist.metadata["Name"] or "?"
        for ep in eps:
            found.append(PluginInfo(ep.name, package, dist.version or "?", ep.value))
    for name, obj in _registered.items():
        found.append(PluginInfo(name, IN_PROCESS, "-", repr(obj)))
    allowed = allowed_names()
    if allowed is not None:
        # A name that matches nothing is a typo, not a wish for fewer plugins: silently
        # dropping it would leave "No analysis plugins installed" as the only clue.
        unknown = sorted(allowed - {p.name for p in found} - {p.package for p in found})
        if unknown:
            known = ", ".join(sorted({p.name for p in found})) or "none"
            raise BadInput(f"CODEC_LOAD_PLUGINS: no installed plugin or package is named "
                           f"{', '.join(map(repr, unknown))}",
                           hint=f"installed plugins: {known}; leave CODEC_LOAD_PLUGINS empty to load none, "
                                "or unset it to load all")
        found = [p for p in found if p.name in allowed or p.package in allowed]
    found.sort(key=lambda p: (p.name, not p.builtin, p.package))
    unique: dict[str, PluginInfo] = {}
    for p in found:
        unique.setdefault(p.name, p)
    return list(unique.values())


def find(name: str) -> PluginInfo:
    for p in discover():
        if p.name == name:
            return p
    known = ", ".join(p.name for p in discover()) or "none installed"
    raise BadInput(f"no analysis plugin named {name!r}", hint=f"installed: {known} (see `codec plugins`)")


def load(info: PluginInfo) -> Any:
    """Import one plugin and check it against the plugin contract (docs/plugins.md)."""
    from codec_cli import plugin_api

    if info.package == IN_PROCESS:
        obj = _registered[info.name]
    else:
        try:
            obj = importlib.metadata.EntryPoint(info.name, info.value, GROUP).load()
        except Exception as e:
            raise PluginError(f"{info.describe()} failed to load: {type(e).__name__}: {e}",
                              hint=f"reinstall or upgrade {info.package}, or leave it out with CODEC_LOAD_PLUGINS") from e
    if isinstance(obj, type):
        try:
            obj = obj()
        except Exception as e:
            raise PluginError(f"{info.describe()} cannot be instantiated: {type(e).__name__}: {e}",
                              hint="a plugin class must build without arguments") from e
    plugin_api.validate(obj, info.name, info.describe(), None if info.package == IN_PROCESS else info.package)
    return obj
