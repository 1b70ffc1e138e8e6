"""`codec analyze`: run analysis plugins on artifacts, one output artifact per plugin.

    codec analyze squeezer/ features/ --out analysis/ -P or-gate -p threshold=0.1

Everything that can be wrong with the request (inputs, plugin names, parameters,
output paths) is checked before any plugin runs. A plugin that fails to load or to
run is reported by name and package and leaves no output; the others still run.
"""

from __future__ import annotations

import dataclasses
import os
import traceback
from pathlib import Path
from typing import Any

from codec_cli import config, registry
from codec_cli.plugin_api import Context, NoParams, NotApplicable, Result
from codec_cli.artifacts import ArtifactWriter, check_lineage, check_output, json_ready, open_artifact
from codec_cli import talk
from codec_cli.talk import info
from codec_cli.errors import BadInput, CodecError, PluginError


def _split_params(pairs: list[str], plugins: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Route `-p` strings to the plugins they are for, refusing keys no plugin has."""
    routed: dict[str, dict[str, str]] = {name: {} for name in plugins}
    for key, value in config.pairs(pairs).items():
        target, dot, bare = key.rpartition(".")
        if dot and target in plugins:
            routed[target][bare] = value
            continue
        if dot:
            raise BadInput(f"parameter {key!r} names plugin {target!r}, which is not selected")
        takers = [n for n, p in plugins.items()
                  if key.replace("-", "_") in {f.name for f in dataclasses.fields(getattr(p, "Params", NoParams))}]
        if not takers:
            raise BadInput(f"no selected plugin takes a parameter {key!r}",
                           hint="see each plugin's Params in its documentation")
        for name in takers:
            routed[name][key] = value
    return routed


def _write_result(w: ArtifactWriter, result: Any) -> dict:
    if not isinstance(result, Result):
        raise TypeError(f"run() returned {type(result).__name__}, expected codec_cli.plugin_api.Result")
    for name, table in result.tables.items():
        w.write_table(f"{name}.parquet", table)
    for name, fig in result.figures.items():
        if isinstance(fig, (bytes, bytearray)):
            if "." not in name:
                raise ValueError(f"figure {name!r} given as bytes needs a file extension in its name")
            w.write_bytes(name, bytes(fig))
        else:  # a matplotlib Figure
            w.write_figure(f"{name}.png", fig)
    summary = json_ready(result.summary)
    w.write_json("summary.json", summary)
    return summary


@talk.reports
def analyze(inputs: list[str | Path], out: str | Path, plugins: list[str] | None = None,
            params: list[str] | None = None) -> dict[str, dict]:
    """Run plugins on artifacts; returns, per plugin, its status, output path and summary.
    `plugins` are names (default: every one whose inputs are given), `params` KEY=VALUE
    strings as `-p` takes them."""
    out = Path(out)
    if not inputs:
        raise BadInput("no input artifacts given", hint="e.g. codec analyze squeezer/ features/ --out analysis/")
    arts = [open_artifact(p) for p in inputs]
    by_kind = {}
    for a in arts:
        if a.kind in by_kind:
            raise BadInput(f"two {a.kind} artifacts given ({by_kind[a.kind].path}, {a.path}); pass one of each kind")
        by_kind[a.kind] = a
    check_lineage(arts)
    for a in list(arts):  # what an input was made from, where it still is and unchanged
        for inp in a.inputs:
            path = Path(inp.get("path", ""))
            if inp.get("kind") in by_kind or not (path / "manifest.json").is_file():
                continue
            found = open_artifact(path)
            if found.fingerprint == inp.get("fingerprint") and found.kind == inp.get("kind"):
                info(f"using {found.path} ({found.kind} that {a.path} was made from)")
                by_kind[found.kind] = found
                arts.append(found)

    report: dict[str, dict] = {}
    chosen: dict[str, Any] = {}
    infos = {}
    names = [n.strip() for entry in plugins or [] for n in entry.split(",") if n.strip()]
    candidates = [registry.find(n) for n in names] if names else registry.discover()
    for inf in candidates:
        try:
            plugin = registry.load(inf)
        except PluginError as e:
            report[inf.name] = {"status": "failed", "package": inf.package, "error": str(e)}
            continue
        missing = [k for k in plugin.requires if k not in by_kind]
        if missing and names:
            raise BadInput(f"{inf.describe()} needs a {' and a '.join(missing)} artifact",
                           hint=f"given: {', '.join(sorted(by_kind))}")
        if not missing:
            chosen[inf.name], infos[inf.name] = plugin, inf
    if not chosen and not report:
        raise BadInput(f"no installed plugin analyses {' + '.join(sorted(by_kind))} artifacts",
                       hint="see `codec plugins` for what each plugin requires")

    routed = _split_params(params or [], chosen)
    filled = {n: config.fill(getattr(p, "Params", NoParams), routed[n], what=f"{n} parameter")
              for n, p in chosen.items()}
    if out.exists() and not out.is_dir():
        raise BadInput(f"{out}: exists and is not a directory", hint="--out names a directory for the plugins' outputs")
    for name in chosen:
        check_output(out / name, "analysis")

    for name, plugin in chosen.items():
        inf = infos[name]
        kinds = [*plugin.requires, *(k for k in getattr(plugin, "optional", ()) if k in by_kind)]
        given = {k: by_kind[k] for k in kinds}
        info(f"running {name} ({inf.package} {inf.version})")
        try:
            with ArtifactWriter(out / name, "analysis", command="codec analyze",
                                params={"plugin": name, "params": config.to_dict(filled[name])},
                                inputs=given.values(),
                                attrs={"plugin": name, "package": inf.package, "version": inf.version,
                                       "api_version": plugin.api_version}) as w:
                ctx = Context(given, filled[name], w.path, log=talk.info)
                summary = _write_result(w, plugin.run(ctx))
            report[name] = {"status": "ok", "package": inf.package, "out": str(out / name), "summary": summary}
        except KeyboardInterrupt:
            raise
        except NotApplicable as e:
            if not names:  # chosen by its inputs' kinds, not asked for: say so, and go on
                report[name] = {"status": "skipped", "package": inf.package, "reason": str(e)}
                continue
            report[name] = {"status": "failed", "package": inf.package, "error": f"{inf.describe()}: {e}"}
        except BaseException as e:  # one plugin's failure, sys.exit() included, must not spoil the others
            if os.environ.get("CODEC_DEBUG"):
                traceback.print_exc()
            what = (str(e) if isinstance(e, CodecError) else f"called sys.exit({e.code!r})"
                    if isinstance(e, SystemExit) else f"{type(e).__name__}: {e}")
            report[name] = {"status": "failed", "package": inf.package, "error": f"{inf.describe()} failed: {what}"}
    return dict(sorted(report.items()))
