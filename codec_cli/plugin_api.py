"""The analysis plugin API, version 1: what a plugin is, what it is given, what it gives back.

The contract is the `Analysis` protocol below; `validate` checks a plugin against it
when the plugin loads, so that a broken contract is one line naming the plugin, not a
TypeError halfway through `codec analyze`. A plugin is handed plain data only, never
Typer or Click objects, and imports heavy libraries inside `run`, never at module level
(codec imports the module to list it). See docs/plugins.md.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

from codec_cli import CODEC_API_VERSION, __version__
from codec_cli.artifacts import Artifact
from codec_cli.errors import BadInput, PluginError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["CODEC_API_VERSION", "QUESTIONS", "Analysis", "Context", "Headline", "NoParams", "NotApplicable", "Result",
           "Section", "held_out", "require_codec", "validate"]


class NotApplicable(Exception):
    """Raise it from `run` when the inputs are of the kinds the plugin requires but not what it
    reads (the fourier analysis given another world than modadd). Where codec chose the plugin
    itself (no -P), it is reported as skipped with this message and nothing is written; where
    it was named, the run fails with it."""


@dataclass(frozen=True)
class NoParams:
    """The parameters of an analysis that takes none."""


@dataclass(frozen=True)
class Context:
    """Everything a plugin's `run` gets."""

    inputs: dict[str, Artifact]
    """The input artifacts, opened read-only, by kind ("features", "squeezer", …)."""
    params: Any
    """An instance of the plugin's `Params` dataclass."""
    out_dir: Path
    """The plugin's own output directory; files written here become part of its artifact."""
    log: Callable[[str], None] = lambda message: print(message, file=sys.stderr)
    """Say something to the person running codec (stderr; silenced by --quiet)."""


@dataclass
class Result:
    """What a plugin gives back; codec writes it into the plugin's artifact."""

    summary: dict[str, Any] = field(default_factory=dict)
    """Small JSON-ready numbers and strings; written to summary.json and shown on stdout."""
    tables: dict[str, Any] = field(default_factory=dict)
    """Name -> polars DataFrame or dict of equal-length columns; written to NAME.parquet."""
    figures: dict[str, Any] = field(default_factory=dict)
    """Name -> matplotlib Figure (written to NAME.png) or bytes (NAME must carry its extension)."""


QUESTIONS = {
    "faithfulness": "How faithfully does the Squeezer keep the SAE's features?",
    "polysemanticity": "How many features does a synthetic neuron carry?",
    "or-gates": "Do roommates avoid each other (OR-gates) more than chance?",
    "geometry": "Which geometry did the features take?",
    "tax": "What does superposition cost (the superposition tax)?",
    "themes": "Which themes are there, and how do neurons carry them?",
    "steering": "Does steering by a theme move the model, and can themes be monitored?",
    "neurons": "Do the synthetic neurons match the model's real ones?",
    "stability": "How stable are the dictionaries across seeds?",
    "sweep": "Where do SAEs fail to find the true features?",
}
"""The research questions the first section of `codec report` answers, in its order, by the key
a `Section.question` names. A plugin may name a question of its own (any other string): it is
asked after these."""


@dataclass
class Headline:
    """One number of a report, beside its chance baseline where one exists."""

    label: str
    """What the number is, e.g. "OR-gate correlation"."""
    value: Any
    """The number (or a short string); None shows as "unknown"."""
    baseline: Any = None
    """Its chance level, measured with the same rule on a null that holds none of the items under
    test; None where no baseline exists."""
    against: str = ""
    """What the baseline is, e.g. "shuffled co-occurrence"."""


@dataclass
class Section:
    """What an artifact shows in `codec report`: the return value of a plugin's `report`."""

    answer: str = ""
    """One line answering `question`, shown in the report's first section beside a link to this one."""
    question: str | None = None
    """A key of QUESTIONS (or a question of the plugin's own) that `answer` answers."""
    headline: list[Headline] = field(default_factory=list)
    """The numbers that matter, each beside its baseline."""
    text: str = ""
    """A paragraph of plain text: how to read the numbers and figures."""
    figures: list[str] | None = None
    """Files of the artifact to show as figures (PNG or SVG), in order; None shows every one."""
    tables: list[str] | None = None
    """Parquet tables of the artifact to show (their first rows, sortable), in order; None shows every one."""


class Analysis(Protocol):
    """An analysis plugin: the object, or the class instantiated without arguments, that
    an entry point in the group `codec.analyses` names.

    Any object with these attributes will do. Subclassing `Analysis` is optional and
    buys the defaults of `requires`, `optional` and `Params`; `api_version` has no
    default, because it says which API your code was written against and must not be
    inherited from whichever codec happens to be installed.
    """

    name: str
    """Optional. The entry point's name is the plugin's name; a plugin that also declares
    one must declare the same, so that `codec plugins`, `-P` and the output directory agree."""
    api_version: int
    """The plugin API the plugin was written for; must equal CODEC_API_VERSION."""
    requires: tuple[str, ...] = ()
    """Artifact kinds it needs, e.g. ("squeezer", "features"); it runs only when all are given."""
    optional: tuple[str, ...] = ()
    """Artifact kinds it reads when they are given."""
    Params: type = NoParams
    """A dataclass of its parameters, every field with a default, filled from `-p key=value`.
    Checks of the values belong in its `__post_init__` (raise codec_cli.errors.BadInput), so
    that a bad `-p` is refused before any plugin runs."""

    def run(self, ctx: Context) -> Result:  # pragma: no cover - the plugin's job
        """Do the analysis on `ctx.inputs` with `ctx.params`."""
        raise NotImplementedError

    # Optional: `report(self, artifact: Artifact) -> Section`, given the analysis artifact that `run`
    # wrote (opened read-only), says what `codec report` shows of it. Without it the report shows
    # the summary's numbers, every figure and every table.


def _kinds(plugin: Any, attr: str, who: str) -> None:
    value = getattr(plugin, attr)
    # A bare string is the easy slip: iterated, "features" would need an 'f' and an 'e' artifact.
    if isinstance(value, str) or not isinstance(value, (tuple, list)) \
            or not all(isinstance(k, str) and k for k in value):
        raise PluginError(f"{who}: {attr} is {value!r}; {attr} should be a tuple of artifact kinds, "
                          f"e.g. ('features',)")


def _params(plugin: Any, who: str) -> None:
    P = plugin.Params
    if not (isinstance(P, type) and dataclasses.is_dataclass(P)):
        raise PluginError(f"{who}: Params is {P!r}; it should be a dataclass (leave it out for no parameters)")
    missing = [f.name for f in dataclasses.fields(P) if f.init and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise PluginError(f"{who}: Params field(s) {', '.join(missing)} have no default; every parameter needs "
                          "one, since `-p` may leave any of them out")
    try:  # codec reads the annotations on every run; a bad one should fail here, not there
        typing.get_type_hints(P)
    except Exception as e:
        raise PluginError(f"{who}: Params' type annotations cannot be read: {type(e).__name__}: {e}") from e
    try:
        P()
    except Exception as e:
        raise PluginError(f"{who}: Params() refuses its own defaults: {e}") from e


def validate(plugin: Any, name: str, who: str | None = None, package: str | None = None) -> None:
    """Check a plugin against the `Analysis` protocol; raise PluginError on the first breach.

    `name` is the name it is registered under (the entry point's); `who` says which
    plugin and package it is in the message (default: the name alone), `package` which
    package to upgrade."""
    who = who or f"plugin {name!r}"
    upgrade = f"a version of {package}" if package else "a version"
    api = getattr(plugin, "api_version", None)
    if api is None:
        raise PluginError(f"{who} declares no api_version; this codec speaks API {CODEC_API_VERSION}",
                          hint=f"declare api_version = {CODEC_API_VERSION} if it was written for this API")
    if type(api) is not int:
        raise PluginError(f"{who} declares api_version {api!r}, a {type(api).__name__}; it should be the int "
                          f"{CODEC_API_VERSION}")
    if api != CODEC_API_VERSION:
        raise PluginError(f"{who} was written for codec plugin API {api}; this codec speaks API {CODEC_API_VERSION}",
                          hint=f"install {upgrade} made for plugin API {CODEC_API_VERSION}")
    declared = getattr(plugin, "name", None)
    if declared is not None and declared != name:
        raise PluginError(f"{who} calls itself {declared!r}, but is registered as {name!r}",
                          hint="the entry point's name is the plugin's name: make `name` the same, or leave it out")
    if not hasattr(plugin, "requires"):
        raise PluginError(f"{who} declares no requires; requires should be a tuple of artifact kinds, "
                          "e.g. ('features',)")
    _kinds(plugin, "requires", who)
    if hasattr(plugin, "optional"):
        _kinds(plugin, "optional", who)
    if hasattr(plugin, "Params"):
        _params(plugin, who)
    if not callable(getattr(plugin, "run", None)):
        raise PluginError(f"{who} has no run(context) method")
    if hasattr(plugin, "report") and not callable(plugin.report):
        raise PluginError(f"{who}: report is {plugin.report!r}; it should be a method report(artifact) -> Section, "
                          "or left out")


HELD_OUT_PARAMS = ("k", "batch_size", "buffer_rows", "eval_rows", "seed")
"""The squeeze settings that fix which rows a Squeezer was evaluated on."""


def held_out(features: Artifact, squeezer: Artifact) -> tuple[np.ndarray, np.ndarray]:
    """The rows `codec squeeze` held out to evaluate `squeezer`, read from `features`.

    Returns (indices int64 [n, k], values float32 [n, k]) exactly as the Squeezer was
    given them: the top k of each row, an empty slot as index -1 with value 0, in the
    SAE's units (before the Squeezer's `scale`). Refuses a features artifact the
    Squeezer was not trained on, and a Squeezer whose manifest does not record the
    settings that choose the rows."""
    from codec_cli.sources.features import Batches

    if not any(i.get("kind") == "features" and i.get("fingerprint") == features.fingerprint
               for i in squeezer.inputs):
        raise BadInput(f"{squeezer.path} was not squeezed from {features.path}",
                       hint="pass the features artifact the Squeezer was trained on")
    params = squeezer.manifest.get("params") or {}
    if any(k not in params for k in HELD_OUT_PARAMS):
        raise BadInput(f"{squeezer.path}: its manifest does not say which rows were held out "
                       f"(params {', '.join(HELD_OUT_PARAMS)})", hint="re-run codec squeeze")
    # The same call as codec squeeze's, so the rows cannot drift apart from the ones it scored.
    return Batches(features, k=params["k"], batch_size=params["batch_size"], buffer_rows=params["buffer_rows"],
                   held_out=params["eval_rows"], seed=params["seed"]).held_out()


def _parse(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".")[:3] if part.isdigit())


def require_codec(version: str) -> None:
    """Fail clearly at import when codec is older than `version` (e.g. "0.2")."""
    if _parse(__version__) < _parse(version):
        raise PluginError(f"this plugin needs codec >= {version}, but codec {__version__} is installed",
                          hint="upgrade codec")
