"""`codec world list | build | info`: the built-in worlds with known ground truth."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from codec_cli import config
from codec_cli.cli.app import Reply, command, group, render_metrics

world_app = group("world", "The built-in worlds: list, build from scratch, describe.", panel="Worlds")


@command("list", group=world_app)
def list_command() -> Reply:
    """List the built-in worlds and whether a trained copy ships with codec."""
    from codec_cli.worlds import SHIPPED, WORLDS

    rows = [{"world": s.name, "shipped": (SHIPPED / s.name / "manifest.json").is_file(),
             "description": s.description} for s in WORLDS.values()]
    text = "\n".join(f"{r['world']:<8} {'shipped' if r['shipped'] else 'not shipped':<12} {r['description']}"
                     for r in rows)
    return Reply(rows, text)


@dataclass(frozen=True)
class BuildConfig:
    name: str = config.positional()
    """The world to build (see `codec world list`)."""
    out: Path = Path("world")
    """Output directory for the built world."""
    param: list[str] = field(default_factory=list, metadata={"short": ("-p",)})
    """A world parameter as KEY=VALUE (repeatable); see docs/worlds.md."""


@command("build", BuildConfig, group=world_app)
def build_command(cfg: BuildConfig) -> Reply:
    """Train a world from scratch (the defaults rebuild the shipped copy: same bytes on one machine, within
    docs/worlds.md's tolerances across CPUs)."""
    from codec_cli.worlds import build, describe

    info = describe(build(cfg.name, cfg.out, config.pairs(cfg.param)))
    return Reply(info, f"built {cfg.name} -> {cfg.out}\n" + render_metrics(info["metrics"]))


@dataclass(frozen=True)
class InfoConfig:
    world: str = config.positional()
    """A built-in world's name, or the directory of a built world."""


@command("info", InfoConfig, group=world_app)
def info_command(cfg: InfoConfig) -> Reply:
    """Describe a world: its parameters, hooks, SAEs and training metrics."""
    from codec_cli.worlds import describe, open_world

    info = describe(open_world(cfg.world))
    lines = [f"{info['world']}: {info['description']}", f"path: {info['path']}",
             "saes: " + ", ".join(f"{n} (reads {h})" for n, h in info["saes"].items()),
             render_metrics(info["metrics"])]
    return Reply(info, "\n".join(lines))
