"""Built-in worlds: small offline models whose ground truth is known (DESIGN.md §5).

A world is an artifact of kind `world` (docs/worlds.md):

    manifest.json      attrs: world name, the model's hooks, the SAEs and their hooks
    model/             the model's weights (safetensors) and config (JSON)
    saes/NAME/         each SAE in sae-lens's own format (cfg.json, sae_weights.safetensors)
    truth/             the answer key: what every analysis can be checked against
    metrics.json       how well the model and SAEs were trained

Worlds load through the same interfaces as real models and SAEs: the model is a
transformer-lens `HookedRootModule` (a `HookedTransformer` for language worlds) and
every SAE opens with `sae_lens.SAE.load_from_disk`. The trained worlds ship inside
the package; `codec world build NAME` retrains one from scratch: the same bytes on the
machine that built it, within docs/worlds.md's tolerances on another CPU.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

from codec_cli import config, talk
from codec_cli.artifacts import Artifact, ArtifactWriter, open_artifact
from codec_cli.errors import BadInput

SHIPPED = Path(__file__).parent.parent / "data" / "worlds"


@runtime_checkable
class WorldModule(Protocol):
    """What a world's module provides; `toy.py` and `themes.py` are the two there are.
    Stages use nothing else of a world, so a new world is a module with these names."""

    LANGUAGE: bool
    """True when the model reads token ids (a language model), False when it reads vectors."""
    Config: type
    """The world's parameters (`-p KEY=VALUE`): a dataclass whose defaults build the shipped copy."""
    round_trip: Callable | None
    """`round_trip(model, hook)` -> a function through the model's own bottleneck from an SAE's
    hook back to that hook, where the world has one (the toy's oracle SAE); else None."""

    def build(self, cfg: Any, w: ArtifactWriter) -> None:
        """Train the world from scratch and write it into `w` (model/, saes/, truth/, metrics.json)."""

    def load_model(self, path: Path) -> Any:
        """The model in `path` as a transformer-lens HookedRootModule."""

    def inputs(self, cfg: Any, step: int, n: int) -> Any:
        """The model's inputs at stream step `step`: `n` samples (vectors) or windows (token ids)."""

    def labels(self, cfg: Any, x: Any) -> dict:
        """Ground-truth columns for the token table, one per activation row: `x` holds each row's
        token id (language worlds) or its whole input (sample worlds, and worlds with a POSITION).

        A world may also set `POSITION`: the one position of each input whose activations are
        rows (modadd: the `=` token), where stages otherwise read every position after BOS."""


@dataclass(frozen=True)
class WorldSpec:
    """A built-in world: its name, what it is, and the module that implements it (imported on use)."""

    name: str
    description: str
    module: str
    """A module that is a `WorldModule`."""

    def load(self) -> WorldModule:
        module = importlib.import_module(self.module)
        if not isinstance(module, WorldModule):
            missing = [n for n in ("LANGUAGE", "Config", "round_trip", "build", "load_model", "inputs", "labels")
                       if not hasattr(module, n)]
            raise TypeError(f"world module {self.module} lacks {', '.join(missing)} (see worlds.WorldModule)")
        return module


WORLDS = {
    "toy": WorldSpec("toy", "Anthropic's toy model of superposition, with an oracle and a trained SAE.",
                     "codec_cli.worlds.toy"),
    "themes": WorldSpec("themes", "A tiny language model trained on text with planted themes, cycles and "
                        "mutually exclusive alternatives, with SAEs on its residual stream and its MLP neurons.",
                        "codec_cli.worlds.themes"),
    "modadd": WorldSpec("modadd", "A one-layer transformer that groks modular addition (Nanda et al. 2023), its "
                        "key frequencies measured from its weights, with SAEs of three seeds on its MLP neurons.",
                        "codec_cli.worlds.modadd"),
}


def spec(name: str) -> WorldSpec:
    if name not in WORLDS:
        raise BadInput(f"no world named {name!r}", hint=f"built-in worlds: {', '.join(WORLDS)}")
    return WORLDS[name]


def is_world(name_or_path: str | Path) -> bool:
    """A built-in world's name, or a directory holding an artifact (a built world)."""
    return (isinstance(name_or_path, str) and name_or_path in WORLDS) or (Path(name_or_path) / "manifest.json").is_file()


def locate(name_or_path: str | Path) -> Path:
    """A world's directory: a built-in name means the shipped copy (write ./toy for a
    directory of that name), anything else is the path to a built world."""
    if isinstance(name_or_path, str) and name_or_path in WORLDS:
        shipped = SHIPPED / name_or_path
        if not (shipped / "manifest.json").is_file():
            raise BadInput(f"world {name_or_path!r} is not shipped with this install",
                           hint=f"build it: codec world build {name_or_path} --out worlds/{name_or_path}")
        return shipped
    path = Path(name_or_path)
    if not path.exists() and isinstance(name_or_path, str) and "/" not in name_or_path:
        import difflib

        near = difflib.get_close_matches(name_or_path, list(WORLDS), n=1)
        raise BadInput(f"{name_or_path}: no such artifact directory, nor a built-in world of that name",
                       hint=(f"did you mean {near[0]}? " if near else "")
                       + f"built-in worlds: {', '.join(WORLDS)} (see `codec world list`)")
    return path


class World:
    """An opened world: its artifact, its model and its SAEs, loaded on first use."""

    def __init__(self, artifact: Artifact):
        self.artifact = artifact
        self.path = artifact.path
        self.name = artifact.attrs["world"]
        self.spec = spec(self.name)

    @property
    def saes(self) -> dict[str, str]:
        """SAE name -> the hook it reads."""
        return dict(self.artifact.attrs["saes"])

    def config(self):
        """The world's module and the `Config` it was built with."""
        module = self.spec.load()
        return module, module.Config(**self.artifact.manifest["params"])

    def model(self):
        """The world's model as a transformer-lens HookedRootModule."""
        return self.spec.load().load_model(self.path / "model")

    @property
    def default_sae(self) -> str:
        """The SAE a stage uses when none is named."""
        return self.artifact.attrs["default_sae"]

    def sae(self, name: str | None = None):
        """One of the world's SAEs (default: `default_sae`), opened by sae-lens's own loader."""
        # Not at the top: `codec world list` and `info` import this module and must not pay for
        # torch, which sources.models imports (and sources.models imports this module).
        from codec_cli.sources.models import load_sae_dir

        name = name or self.default_sae
        if name not in self.saes:
            raise BadInput(f"world {self.name!r} has no SAE {name!r}", hint=f"its SAEs: {', '.join(self.saes)}")
        return load_sae_dir(self.path / "saes" / name)


def open_world(name_or_path: str | Path) -> World:
    return World(open_artifact(locate(name_or_path), "world"))


@talk.reports
def build(name: str, out: Path, params: dict[str, str] | None = None) -> World:
    """Train world `name` from scratch into `out` (parameters as KEY=VALUE strings)."""
    module = spec(name).load()
    cfg = config.fill(module.Config, params or {}, what=f"{name} world parameter")
    with ArtifactWriter(out, "world", command=f"codec world build {name}",
                        params=config.to_dict(cfg), attrs={"world": name}) as w:
        module.build(cfg, w)
    return open_world(out)


def describe(world: World) -> dict[str, Any]:
    a = world.artifact
    return {"world": world.name, "path": str(world.path), "description": world.spec.description,
            "params": a.manifest["params"], "saes": world.saes,
            "hooks": a.attrs.get("hooks", []), "metrics": a.json("metrics.json")}
