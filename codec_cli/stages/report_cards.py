"""The cards of `codec report`: one per feature, synthetic neuron and theme, drawn from cards.py.

Which cards: every id a table cell links to (report.Linker), the atoms of every theme and the
features that drive every neuron, then the most frequent features, up to `ReportConfig.cards`
more per features artifact. They are read before any section is drawn, so that every table
cell and card that names a feature can say what it fires on ("140 april").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from codec_cli.stages import cards as facts
from codec_cli.stages import html
from codec_cli.stages.html import anchor, esc, number

if TYPE_CHECKING:
    from codec_cli.config import ReportConfig
    from codec_cli.stages.report import Entry, Linker


def context_html(e: facts.Example) -> str:
    if not e.tokens:
        return f'<div class="ctx"><span class="v">{e.value:.3g}</span>{esc(e.text())}</div>'
    words = [esc(t) for t in e.tokens]
    words[e.at] = f"<mark>{words[e.at]}</mark>"
    return f'<div class="ctx"><span class="v">{e.value:.3g}</span>{e.sep.join(words)}</div>'


def card_html(card_id: str, title: str, card: facts.Card, lines: list[str]) -> str:
    contexts = "".join(context_html(x) for x in card.examples) or "<p class=muted>it never fires</p>"
    return (f'<div class="card" id="{card_id}"><h3>{title}</h3>'
            f'<div class=sub>active on {card.count:,} of {card.rows:,} rows ({card.frequency:.3%}); largest '
            f"{number(card.high)}</div>{html.histogram_svg(card.histogram, card.low, card.high)}"
            + "".join(f"<div>{line}</div>" for line in lines) + contexts + "</div>")


class Cards:
    """Every card of one report, read once: `read` after the Linker has seen the tables' ids,
    `label` while sections are drawn, `html` last."""

    def __init__(self, entries: list[Entry], linker: Linker, cfg: ReportConfig):
        self.entries, self.linker, self.cfg = entries, linker, cfg
        self.features: dict[str, dict[int, facts.Card]] = {}
        """Per features entry id, its feature cards by id."""
        self.contexts: dict[str, facts.Contexts] = {}
        self.drivers: dict[str, dict[int, list[tuple[int, float]]]] = {}
        """Per squeezer entry id, the features that drive each of its neurons."""

    def _features_of(self, e: Entry) -> Entry | None:
        f = self.linker.owner(e, "features")
        return f if f is not None and f is not e else None

    def read(self) -> None:
        wanted = self.linker.wanted
        for e in self.entries:
            features = self._features_of(e) if e.art.kind in ("squeezer", "themes") else None
            if features is None:
                continue
            ids = wanted.setdefault(features.id, set())
            if e.art.kind == "themes":
                for row in e.art.table("themes.parquet").to_dicts():
                    ids.update(int(a) for a in row.get("top_atoms") or [])
            else:
                self.drivers[e.id] = facts.drivers(e.art)
                ids.update(f for fs in self.drivers[e.id].values() for f, _ in fs)
        for e in self.entries:
            if e.art.kind != "features":
                continue
            ids = set(wanted.get(e.id, set()))
            if self.cfg.cards and "features.parquet" in e.art.manifest["files"]:
                t = e.art.table("features.parquet", ["feature", "count"]).sort(["count", "feature"],
                                                                               descending=[True, False])
                ids |= set(t.filter(t["count"] > 0)["feature"].head(self.cfg.cards).to_list())
            d_sae = int(e.art.attrs["d_sae"])
            self.contexts[e.id] = facts.Contexts(e.art)
            self.features[e.id] = facts.feature_cards(e.art, sorted(i for i in ids if 0 <= i < d_sae),
                                                      n=self.cfg.examples, contexts=self.contexts[e.id])

    def label(self, features: Entry, i: int) -> str:
        """What feature `i` fires on, for a link's text; '' when it has no card or no tokens."""
        card = self.features.get(features.id, {}).get(i)
        return card.token if card else ""

    def ref(self, features: Entry, i: int) -> str:
        """Feature `i` named as a link to its card (with what it fires on), or as plain text."""
        text = esc(f"f{i}" + (f" {self.label(features, i)}" if self.label(features, i) else ""))
        if i in self.features.get(features.id, {}):
            return f'<a href="#{anchor("feature", features.name, i)}">{text}</a>'
        return text

    # ------------------------------------------------------------------ drawing

    def _theme_cards(self, e: Entry, features: Entry) -> list[str]:
        steered = [x for x in self.entries if x.art.kind == "steering" and self.linker.owner(x, "themes") is e]
        monitored = {}
        for x in self.entries:
            if x.art.kind == "monitoring" and self.linker.owner(x, "themes") is e:
                for t in x.art.json("summary.json").get("themes") or []:
                    monitored.setdefault(t.get("theme"), []).append((x, t))
        out = []
        for row in e.art.table("themes.parquet").to_dicts():
            n = row["theme"]
            lines = [f"size {row.get('size')}; top tokens {esc(', '.join(row.get('top_tokens') or []))}",
                     "atoms: " + ", ".join(self.ref(features, int(a)) for a in row.get("top_atoms") or [])]
            for what in ("cosine", "coactivation"):
                if what in row:
                    lines.append(f"{what} coherence {number(row[what])} (random groups "
                                 f"{number(row.get(what + '_baseline'))}, p {number(row.get(what + '_p'))})")
            for x in steered:
                if x.art.attrs.get("theme") == n:
                    lines.append(f'steered ({esc(x.art.attrs.get("method"))}): <a href="#{x.id}">{esc(x.name)}</a>')
            for x, t in monitored.get(n, []):
                lines.append(f"monitored: AUROC {number(t.get('auroc'))} (random groups "
                             f"{number((t.get('random_groups') or {}).get('mean_auroc'))}), detected "
                             f"{number(t.get('detection_rate'))} at false positives {number(t.get('false_positive_rate'))}"
                             f' <a href="#{x.id}">{esc(x.name)}</a>')
            out.append(f'<div class="card" id="{anchor("theme", e.name, n)}"><h3>theme {n}: {esc(row.get("label"))} '
                       f"<span class=sub>{esc(e.name)}</span></h3>" + "".join(f"<div>{x}</div>" for x in lines)
                       + "</div>")
        return out

    def _neuron_cards(self, e: Entry, features: Entry) -> list[str]:
        drivers = self.drivers[e.id]
        out = []
        for m, card in facts.neuron_cards(e.art, features.art, n=self.cfg.examples,
                                          contexts=self.contexts.get(features.id)).items():
            drive = ", ".join(self.ref(features, f) + f" ({d:.2g})" for f, d in drivers.get(m, []))
            title = (f"neuron {m} <span class=sub>{esc(e.name)} · fires on "
                     f"{esc(', '.join(card.top_tokens()) or '-')}</span>")
            out.append(card_html(anchor("neuron", e.name, m), title, card,
                                 [f"driven by (drive): {drive or 'nothing'}"]))
        return out

    def _roommates(self, features: Entry) -> dict[int, list[tuple[Entry, int, list[int]]]]:
        """Per feature: (squeezer, neuron, the neuron's other features) for every neuron that carries it,
        by the polysemanticity analysis's roommate rule (its members table)."""
        out: dict[int, list] = {}
        for e in self.entries:
            if e.art.kind != "analysis" or e.art.attrs.get("plugin") != "polysemanticity":
                continue
            squeezer = self.linker.owner(e, "squeezer")
            if squeezer is None or self.linker.owner(squeezer, "features") is not features:
                continue
            t = e.art.table("members.parquet", ["neuron", "feature"])
            by_neuron: dict[int, list[int]] = {}
            for n, f in zip(t["neuron"].to_list(), t["feature"].to_list()):
                by_neuron.setdefault(n, []).append(f)
            for n, members in by_neuron.items():
                for f in members:
                    out.setdefault(f, []).append((squeezer, n, [x for x in members if x != f]))
        return out

    def _feature_cards(self, e: Entry) -> list[str]:
        themes = []
        for t in self.entries:
            if t.art.kind == "themes" and self.linker.owner(t, "features") is e:
                atoms = t.art.table("atoms.parquet", ["atom", "theme"])
                labels = t.art.table("themes.parquet", ["theme", "label"])
                themes.append((t, dict(zip(atoms["atom"].to_list(), atoms["theme"].to_list())),
                               dict(zip(labels["theme"].to_list(), labels["label"].to_list()))))
        rooms = self._roommates(e)
        out = []
        for i, card in self.features[e.id].items():
            lines = []
            for t, atom_theme, labels in themes:
                th = atom_theme.get(i)
                if th is not None and th >= 0:
                    lines.append(f'theme <a href="#{anchor("theme", t.name, th)}">{th}: {esc(labels.get(th))}</a> '
                                 f"<span class=sub>{esc(t.name)}</span>")
                elif th is not None:
                    lines.append(f"theme: none (noise) <span class=sub>{esc(t.name)}</span>")
            carriers = rooms.get(i, [])
            if carriers:
                rows = "".join(f'<div><a href="#{anchor("neuron", sq.name, n)}">neuron {n}</a> of {esc(sq.name)}, with '
                               + (", ".join(self.ref(e, x) for x in others[:24]) or "no other feature")
                               + (f" and {len(others) - 24} more" if len(others) > 24 else "") + "</div>"
                               for sq, n, others in carriers)
                lines.append(f"<details><summary>carried by {len(carriers)} neuron(s); its roommates</summary>{rows}"
                             "</details>")
            title = (f"feature {i} <span class=sub>{esc(e.name)} · fires on "
                     f"{esc(', '.join(card.top_tokens()) or '-')}</span>")
            out.append(card_html(anchor("feature", e.name, i), title, card, lines))
        return out

    def html(self) -> tuple[str, dict]:
        parts = ['<h2 id="cards">Cards</h2><p class=sub>Each card: how often it is active, the histogram of its '
                 "activations (log-scaled bars), and the rows where it fires hardest, the firing token marked.</p>"]
        counts = {"features": 0, "neurons": 0, "themes": 0}
        for e in self.entries:
            if e.id not in self.features:
                continue
            groups = [(f"{e.name}: {len(self.features[e.id])} features", self._feature_cards(e))]
            counts["features"] += len(self.features[e.id])
            for x in self.entries:
                if x.art.kind in ("squeezer", "themes") and self._features_of(x) is e:
                    if x.art.kind == "themes":
                        cards = self._theme_cards(x, e)
                        counts["themes"] += len(cards)
                    else:
                        cards = self._neuron_cards(x, e)
                        counts["neurons"] += len(cards)
                    groups.append((f"{x.name}: {len(cards)} {'themes' if x.art.kind == 'themes' else 'neurons'}",
                                   cards))
            parts += [f"<h3>{esc(h)}</h3><div class=cards>{''.join(c)}</div>" for h, c in groups]
        return "\n".join(parts), counts
