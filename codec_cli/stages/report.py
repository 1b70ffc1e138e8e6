"""`codec report`: every artifact under some directories, on one offline HTML page.

The page opens with the research questions (plugin_api.QUESTIONS) and their answers, each
linking to the section that gave it, "not run" where no artifact answers. Then one section
per artifact: what made it (command, parameters, inputs by fingerprint, codec version), its
headline numbers beside their chance baselines, its figures and its main tables, sortable.
Last, the cards (cards.py): a feature's top contexts with the firing token marked, its
activation histogram, its roommates and theme; a synthetic neuron's; a theme's. Table cells
that name a feature, neuron or theme link to its card.

What a section shows comes from one hook: a built-in kind's function in report_kinds, or an
analysis plugin's own `report(artifact) -> Section` (plugin_api), with a fallback that shows
everything for a plugin without one. A plugin whose report fails is named on the page and on
stderr and spoils nothing else.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from codec_cli import __version__, talk
from codec_cli.artifacts import MANIFEST, Artifact, open_artifact
from codec_cli.config import ReportConfig
from codec_cli.errors import BadInput, CodecError
from codec_cli.plugin_api import QUESTIONS, Headline, Section
from codec_cli.stages import html
from codec_cli.stages.html import anchor, esc, number

ORDER = ["world", "sae", "features", "squeezer", "analysis", "themes", "steering", "monitoring", "comparison", "sweep"]
"""Sections in the pipeline's order; kinds of plugins' own come last."""

NOT_RUN = {
    "faithfulness": "codec squeeze FEATURES",
    "polysemanticity": "codec analyze SQUEEZER -P polysemanticity",
    "or-gates": "codec analyze SQUEEZER FEATURES -P or-gate",
    "geometry": "codec analyze SQUEEZER FEATURES -P polytope",
    "tax": "codec analyze SQUEEZER FEATURES -P superposition-tax",
    "themes": "codec cluster FEATURES; codec analyze SQUEEZER THEMES -P themes",
    "steering": "codec steer / codec monitor WORLD --themes THEMES",
    "neurons": "codec compare neurons SQUEEZER",
    "stability": "codec compare dictionaries SAE_A SAE_B",
    "sweep": "codec sweep toy --grid KEY=VALUES",
}
"""What would answer each built-in question, for its "not run" line."""

ID_COLUMNS = {"feature": "feature", "atom": "feature", "feature_a": "feature", "feature_b": "feature",
              "feature_i": "feature", "feature_j": "feature", "i": "feature", "j": "feature",
              "neuron": "neuron", "synthetic": "neuron", "theme": "theme"}
"""Table columns whose values name a card, and which kind of card."""


@dataclass
class Entry:
    """One artifact on the page."""

    art: Artifact
    name: str
    """Its path relative to the directory it was found under, as the page names it."""
    section: Section = field(default_factory=Section)
    error: str = ""
    tables: dict[str, Any] = field(default_factory=dict)
    """The tables its section shows, read once: name -> DataFrame, or why it could not be read."""

    @property
    def id(self) -> str:
        return anchor("a", self.name)


def find(dirs: list[Path]) -> tuple[list[Entry], list[tuple[str, str]]]:
    """Every artifact under `dirs` (not inside another artifact: a sweep's cells are its own),
    opened, with the ones that cannot be read as (path, why)."""
    seen, names, entries, broken = set(), set(), [], []
    for top in dirs:
        if not top.is_dir():
            raise BadInput(f"{top}: no such directory" if not top.exists() else f"{top}: not a directory",
                           hint="pass directories that hold codec artifacts (e.g. the demo's demo/)")
        base = top.parent if (top / MANIFEST).is_file() else top
        for root, subdirs, files in os.walk(top):
            subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
            if MANIFEST not in files:
                continue
            subdirs[:] = []
            path = Path(root)
            if path.resolve() in seen:
                continue
            seen.add(path.resolve())
            name = path.relative_to(base).as_posix() if path != base else path.name
            if name in names:  # the same layout under two of the directories: name them in full
                name = path.as_posix()
            names.add(name)
            try:
                entries.append(Entry(open_artifact(path), name))
            except CodecError as e:
                broken.append((name, str(e)))
    if not entries and not broken:
        raise BadInput(f"no codec artifact under {', '.join(map(str, dirs))}",
                       hint="pass the directories your stages wrote into (each artifact holds a manifest.json)")
    rank = {k: i for i, k in enumerate(ORDER)}
    entries.sort(key=lambda e: (rank.get(e.art.kind, len(ORDER)), e.art.kind, e.name))
    return entries, broken


def plugin_section(art: Artifact, plugins: dict[str, Any], log: Callable[[str], None]) -> Section:
    """An analysis artifact's section: its plugin's `report` (`plugins`: registry.discover() by name),
    or everything it holds."""
    from codec_cli import registry

    name = art.attrs.get("plugin", "?")
    fallback = Section(headline=summary_numbers(art),
                       text=f"The plugin {name} gives no report of its own here (no report hook, or not installed): "
                            "its summary's numbers, every figure and every table.")
    try:
        plugin = registry.load(plugins[name]) if name in plugins else None
    except CodecError as e:
        log(f"report: {e}")
        return fallback
    if plugin is None or not callable(getattr(plugin, "report", None)):
        return fallback
    section = plugin.report(art)
    if not isinstance(section, Section):
        raise TypeError(f"report() returned {type(section).__name__}, not a plugin_api.Section")
    return section


def summary_numbers(art: Artifact, limit: int = 24) -> list[Headline]:
    """The summary's top-level numbers, each beside a `chance` twin where the summary has one:
    the fallback for an artifact whose plugin says nothing about its report."""
    name = next((n for n in ("summary.json", "metrics.json") if n in art.manifest["files"]), None)
    if name is None:
        return []
    data = art.json(name)
    chance = data.get("chance", {}) if isinstance(data, dict) and isinstance(data.get("chance"), dict) else {}
    out = []
    for key, value in (data.items() if isinstance(data, dict) else []):
        if key == "chance" or isinstance(value, (dict, list)):
            continue
        twin = chance.get(key, data.get(f"{key}_chance"))
        if key.endswith("_chance"):
            continue
        out.append(Headline(key, value, twin, chance.get("what", "chance") if twin is not None else ""))
    return out[:limit]


def provenance(e: Entry, by_fingerprint: dict[str, Entry]) -> str:
    m = e.art.manifest
    params = m.get("params") or {}
    rows = "".join(f"<tr><td class=t>{esc(k)}</td><td class=t><code>{esc(json.dumps(v))}</code></td></tr>"
                   for k, v in sorted(params.items()))
    inputs = []
    for i in e.art.inputs:
        target = by_fingerprint.get(i.get("fingerprint"))
        label = esc(i.get("path", "?"))
        link = f'<a href="#{target.id}">{label}</a>' if target else label
        inputs.append(f"<li>{esc(i.get('kind', '?'))} {link} <span class=sub>{esc(i.get('fingerprint', ''))[:19]}"
                      "</span></li>")
    return (f"<details><summary>made by <code>{esc(m.get('command', '?'))}</code> "
            f"(codec {esc(m.get('codec_version', '?'))}); {len(e.art.inputs)} input(s); "
            f"fingerprint <span class=sub>{esc(e.art.fingerprint[:19])}</span></summary>"
            f"<ul>{''.join(inputs) or '<li>no inputs</li>'}</ul>"
            f"<table class=nums><tbody>{rows}</tbody></table></details>")


def headline_table(numbers: list[Headline]) -> str:
    if not numbers:
        return ""
    rows = "".join(
        f"<tr><td>{esc(h.label)}</td><td>{esc(number(h.value))}</td>"
        f"<td>{esc(number(h.baseline)) if h.baseline is not None else '<span class=muted>none</span>'}</td>"
        f"<td class=t>{esc(h.against)}</td></tr>" for h in numbers)
    return ("<table class=nums><thead><tr><th class=t>measure</th><th>value</th><th>baseline</th>"
            f"<th class=t>the baseline is</th></tr></thead><tbody>{rows}</tbody></table>")


class Linker:
    """Which card a table cell names: ids of features, neurons and themes, resolved through an
    artifact's inputs to the features, squeezer and themes artifacts they belong to. Planning
    (`plan`) collects the ids the tables show, so their cards are read before anything is drawn."""

    def __init__(self, entries: list[Entry]):
        self.by_fp = {e.art.fingerprint: e for e in entries}
        self.wanted: dict[str, set[int]] = {}
        """Per features / squeezer / themes entry id, the ids the tables name."""
        self.label: Callable[[Entry, int], str] = lambda owner, i: ""
        """What a feature fires on, once the cards are read."""

    def owner(self, e: Entry, kind: str) -> Entry | None:
        """The nearest artifact of `kind` among `e` and its inputs (breadth first)."""
        queue, seen = [e], set()
        while queue:
            x = queue.pop(0)
            if x.art.fingerprint in seen:
                continue
            seen.add(x.art.fingerprint)
            if x.art.kind == kind:
                return x
            queue += [self.by_fp[i["fingerprint"]] for i in x.art.inputs if i.get("fingerprint") in self.by_fp]
        return None

    def links(self, e: Entry, columns: list[str]) -> dict[str, Callable[[Any], tuple[str, str] | None]]:
        out = {}
        for c in columns:
            kind = ID_COLUMNS.get(c)
            owner = kind and self.owner(e, {"feature": "features", "neuron": "squeezer", "theme": "themes"}[kind])
            if owner is not None:
                out[c] = self._link(owner, kind)
        return out

    def plan(self, e: Entry, df) -> None:
        for c, link in self.links(e, df.columns).items():
            for v in df[c].to_list():
                link(v)

    def _link(self, owner: Entry, kind: str):
        ids = self.wanted.setdefault(owner.id, set())

        def link(value):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                return None
            ids.add(value)
            return anchor(kind, owner.name, value), self.label(owner, value) if kind == "feature" else ""
        return link


def shown_tables(e: Entry) -> list[str]:
    s = e.section
    return s.tables if s.tables is not None else [n for n in e.art.files() if n.endswith(".parquet") and "/" not in n]


def read_tables(e: Entry) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in shown_tables(e):
        if name in e.art.manifest["files"]:
            try:
                out[name] = e.art.table(name)
            except CodecError as err:  # damaged: its place in the section says so
                out[name] = str(err)
    return out


def tables_html(e: Entry, rows: int, linker: Linker) -> str:
    out = []
    for name, df in e.tables.items():
        if isinstance(df, str):
            out.append(f"<p class=fail>{esc(name)}: {esc(df)}</p>")
            continue
        cols = [c for c in df.columns][:14]
        body = html.table(cols, df.head(rows).select(cols).to_dicts(), linker.links(e, cols))
        more = f", the first {rows} shown" if df.height > rows else ""
        out.append(f"<h3>{esc(name)} <span class=sub>{df.height:,} rows{more}; click a column to sort</span></h3>"
                   f'<div style="overflow-x:auto">{body}</div>')
    return "".join(out)


def figures_html(e: Entry, names: list[str]) -> str:
    figs = [html.figure(n, e.art.read_bytes(n)) for n in names if n.rsplit(".", 1)[-1].lower() in ("png", "svg",
                                                                                                     "jpg", "jpeg")]
    return f'<div class="figs">{"".join(figs)}</div>' if figs else ""


def section_html(e: Entry, rows: int, linker: Linker) -> str:
    s = e.section
    figures = s.figures if s.figures is not None else [n for n in e.art.files() if "/" not in n]
    what = e.art.kind + (f" · {e.art.attrs.get('plugin')}" if e.art.kind == "analysis" else "")
    parts = [f'<section class="artifact" id="{e.id}"><h2>{esc(e.name)} <span class=sub>{esc(what)}</span></h2>',
             provenance(e, linker.by_fp)]
    if e.error:
        parts.append(f"<p class=fail>{esc(e.error)}</p>")
    if s.answer:
        parts.append(f"<p><b>{esc(s.answer)}</b></p>")
    parts += [headline_table(s.headline), f"<p>{esc(s.text)}</p>" if s.text else "", figures_html(e, figures),
              tables_html(e, rows, linker), "</section>"]
    return "\n".join(p for p in parts if p)


def answers_html(entries: list[Entry]) -> str:
    asked: dict[str, list[Entry]] = {q: [] for q in QUESTIONS}
    for e in entries:
        if e.section.question and e.section.answer:
            asked.setdefault(e.section.question, []).append(e)
    rows = []
    for q, who in asked.items():
        if who:
            said = "".join(f'<div>{esc(e.section.answer)} <a href="#{e.id}">{esc(e.name)}</a></div>' for e in who)
        else:
            said = f'<span class=muted>not run</span> <span class=sub>({esc(NOT_RUN.get(q, ""))})</span>'
        rows.append(f"<tr><td><b>{esc(QUESTIONS.get(q, q))}</b></td><td>{said}</td></tr>")
    return f"<h2 id=answers>At a glance</h2><table class=answers><tbody>{''.join(rows)}</tbody></table>"


@talk.reports
def report(cfg: ReportConfig) -> dict:
    """Write the report of every artifact under `cfg.dirs` to `cfg.out`; returns a summary."""
    from codec_cli import registry
    from codec_cli.stages import report_cards, report_kinds

    log = talk.info

    out = Path(cfg.out)
    if out.is_dir():
        raise BadInput(f"{out}: is a directory; the report is one HTML file",
                       hint="pass a file name, e.g. --out report.html")
    entries, broken = find([Path(d) for d in cfg.dirs])
    for name, why in broken:
        log(f"report: skipping {name}: {why}")
    try:
        plugins = {p.name: p for p in registry.discover()}
    except CodecError as err:  # e.g. CODEC_LOAD_PLUGINS naming nothing: the analyses still show all they hold
        log(f"report: {err}")
        plugins = {}
    failed = []
    for e in entries:
        try:
            make = report_kinds.SECTIONS.get(e.art.kind)
            e.section = make(e.art) if make else (plugin_section(e.art, plugins, log) if e.art.kind == "analysis"
                                                  else Section(headline=summary_numbers(e.art)))
        except Exception as err:  # one artifact's (or plugin's) failure must not cost the whole page
            e.error = f"its report failed: {type(err).__name__}: {err}"
            e.section = Section(headline=summary_numbers(e.art))
            failed.append(e.name)
            log(f"report: {e.name}: {e.error}")
    linker = Linker(entries)
    for e in entries:
        e.tables = read_tables(e)
        for df in e.tables.values():
            if not isinstance(df, str):
                linker.plan(e, df.head(cfg.rows))
    cards = report_cards.Cards(entries, linker, cfg)
    cards.read()
    linker.label = cards.label
    sections = [section_html(e, cfg.rows, linker) for e in entries]
    cards_html, counts = cards.html()
    nav = "".join(f'<a href="#{e.id}">{esc(e.name)} <span class=sub>{esc(e.art.kind)}</span></a>' for e in entries)
    skipped = "".join(f"<li>{esc(n)}: {esc(w)}</li>" for n, w in broken)
    body = (f"<h1>codec report</h1><p class=sub>{len(entries)} artifacts under "
            f"{esc(', '.join(map(str, cfg.dirs)))}; codec {esc(__version__)}. Every score stands beside its chance "
            "level where one exists; cards follow the sections.</p>"
            + answers_html(entries)
            + f"<h2>Contents</h2><nav>{nav}<a href=#cards>cards</a></nav>"
            + (f"<p class=fail>Not readable, left out:</p><ul>{skipped}</ul>" if skipped else "")
            + "\n".join(sections) + cards_html)
    page = html.page("codec report", body)
    # Whole or not at all: a half-written page must never replace a good one.
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(page)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide the page from the rest of the team
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    answered = sorted({e.section.question for e in entries if e.section.question and e.section.answer})
    return {"out": str(out), "artifacts": len(entries), "unreadable": len(broken), "failed": failed,
            "answered": answered, "not_run": [q for q in QUESTIONS if q not in answered], "cards": counts,
            "bytes": len(page.encode())}
