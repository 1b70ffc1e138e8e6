"""themes: the neural atlas, atoms → synthetic neurons → themes (docs/analyses.md).

`codec cluster` groups a features artifact's atoms into themes; a Squeezer trained on the
same features packs those atoms into M neurons. The atlas reads both: which themes each
neuron carries (the roommate rule of packing.members) and how pure it is (the entropy of
its atoms' themes), and, per theme, how many neurons it spreads over and whether its atoms
share neurons more or less often than chance: do themes pack together, or are they spread
to avoid interference? Chance is the same count after shuffling the theme labels among
the atoms the neurons carry (theme sizes kept), so that only the pairing of atoms with
themes changes.
"""

from __future__ import annotations

from dataclasses import dataclass

from codec_cli.errors import BadInput
from codec_cli.plugin_api import Analysis, Context, Headline, Result, Section
from codec_cli.stages.html import short as g
from codec_plugins.packing import Roommates, refuse_unless


@dataclass(frozen=True)
class Params(Roommates):
    draws: int = 200
    """Shuffles of the theme labels behind each chance level (a p-value is at least 1/(draws + 1))."""
    seed: int = 0
    """Seed of the shuffles."""

    def __post_init__(self) -> None:
        super().__post_init__()
        refuse_unless(self.draws >= 1, "themes", "draws", self.draws, "the chance level needs at least 1 shuffle")


def features_of(art) -> str | None:
    return next((i.get("fingerprint") for i in art.inputs if i.get("kind") == "features"), None)


def per_neuron(neuron, theme, M: int, T: int):
    """[M, T] how many of each neuron's carried atoms belong to each theme."""
    import numpy as np

    counts = np.zeros((M, T), dtype=np.int64)
    np.add.at(counts, (neuron, theme), 1)
    return counts


def entropy(counts):
    """[M] the entropy (bits) of each neuron's themes; NaN where it carries no themed atom."""
    import numpy as np

    total = counts.sum(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = counts / total
        h = -np.where(p > 0, p * np.log2(np.where(p > 0, p, 1)), 0.0).sum(1)
    return np.where(total[:, 0] > 0, h, np.nan)


def pairs(counts):
    """[T] pairs of a theme's atoms that share a neuron: Σ over neurons of C(count, 2)."""
    return (counts * (counts - 1) // 2).sum(0)


class Themes(Analysis):
    name = "themes"
    api_version = 1
    requires = ("squeezer", "themes")
    Params = Params

    def report(self, art) -> Section:
        s = art.json("summary.json")
        ent, pairs = s.get("entropy") or {}, s.get("same_theme_pairs") or {}
        shuffled = s.get("chance") or "theme labels shuffled among the carried atoms"
        return Section(
            question="themes",
            answer=f"a neuron's atoms span {g(ent.get('mean'))} bits of themes against {g(ent.get('chance'))} with "
                   f"labels shuffled (p purer {g(ent.get('p_purer'))}); same-theme roommate pairs "
                   f"{g(pairs.get('ratio'))}× chance",
            headline=[Headline("theme entropy per neuron (bits)", ent.get("mean"), ent.get("chance"), shuffled),
                      Headline("same-theme roommate pairs", pairs.get("observed"), pairs.get("chance"), shuffled),
                      Headline("p (together)", pairs.get("p_together")), Headline("p (apart)", pairs.get("p_apart")),
                      Headline("purity", s.get("purity")), Headline("carried atoms", s.get("carried_atoms")),
                      Headline("themed atoms", s.get("themed_atoms")), Headline("themes", s.get("themes"))],
            text=f"The neural atlas: which themes each synthetic neuron carries. Basis: {s.get('basis')}. "
                 "docs/cluster.md.",
            tables=["neurons.parquet", "themes.parquet"])

    def run(self, ctx: Context) -> Result:
        import numpy as np

        from codec_plugins.packing import members, open_packing

        sq, th = ctx.inputs["squeezer"], ctx.inputs["themes"]
        if features_of(sq) is None or features_of(sq) != features_of(th):
            raise BadInput(f"{th.path} clusters other atoms than {sq.path} packs (they were made from different "
                           "features artifacts)", hint="run codec cluster on the features the Squeezer was trained on")
        pk = open_packing(sq)
        F, M = pk.shape
        atoms = th.table("atoms.parquet", ["atom", "theme"]).sort("atom")
        table = th.table("themes.parquet", ["theme", "label", "size"]).sort("theme")
        if len(atoms) != F:
            raise BadInput(f"{th.path} has {len(atoms)} atoms but {sq.path} packs {F} features")
        theme = atoms["theme"].to_numpy().astype(np.int64)
        T = len(table)
        p = ctx.params
        f, n, _ = members(pk.drive(), p.relative, p.absolute, pk.represented)
        themed = theme[f] >= 0
        fn, nn, tn = f[themed], n[themed], theme[f][themed]

        counts = per_neuron(nn, tn, M, T)
        h = entropy(counts)
        spread = (counts > 0).sum(0)
        shared = pairs(counts)
        # Chance: the same carried atoms, their theme labels shuffled (each atom's neurons kept).
        rng = np.random.default_rng(p.seed)
        carried = np.unique(fn)
        at = np.searchsorted(carried, fn)  # each membership's atom among the carried ones
        chance_h, chance_spread, chance_pairs = [], [], []
        for _ in range(p.draws):
            c = per_neuron(nn, rng.permutation(theme[carried])[at], M, T)
            chance_h.append(entropy(c))
            chance_spread.append((c > 0).sum(0))
            chance_pairs.append(pairs(c))
        chance_h, chance_spread, chance_pairs = map(np.array, (chance_h, chance_spread, chance_pairs))

        live = np.isfinite(h)
        mean_h = float(np.nanmean(h)) if live.any() else None
        draws_h = np.nanmean(chance_h[:, live], axis=1) if live.any() else np.zeros(0)
        total, chance_total = int(shared.sum()), chance_pairs.sum(1)

        def p_at_least(x, null):
            return float((1 + (null >= x).sum()) / (1 + len(null)))

        def p_at_most(x, null):
            return float((1 + (null <= x).sum()) / (1 + len(null)))

        top = np.where(counts.sum(1) > 0, counts.argmax(1), -1)
        labels = table["label"].to_list()
        neurons = {"neuron": np.arange(M, dtype=np.int32), "atoms": np.bincount(n, minlength=M).astype(np.int32),
                   "themed": counts.sum(1).astype(np.int32), "top_theme": top.astype(np.int32),
                   "top_label": [labels[t] if t >= 0 else None for t in top],
                   "purity": np.where(live, counts.max(1) / np.maximum(counts.sum(1), 1), np.nan),
                   "entropy": h, "chance_entropy": np.nanmean(chance_h, axis=0) if live.any() else h,
                   "themes": [np.flatnonzero(counts[i]).astype(np.int32).tolist() for i in range(M)]}
        in_theme = np.bincount(tn, minlength=T)
        represented = np.bincount(theme[(theme >= 0) & pk.represented], minlength=T)
        expected = chance_pairs.mean(0)
        themes = {"theme": table["theme"].to_numpy().astype(np.int32), "label": labels,
                  "size": table["size"].to_numpy(), "represented": represented,
                  "carried": np.array([len(np.unique(fn[tn == t])) for t in range(T)], dtype=np.int64),
                  "memberships": in_theme, "neurons": spread, "chance_neurons": chance_spread.mean(0),
                  "pairs": shared, "chance_pairs": expected,
                  "ratio": np.where(expected > 0, shared / np.where(expected > 0, expected, 1), np.nan),
                  "p_together": [p_at_least(shared[t], chance_pairs[:, t]) for t in range(T)],
                  "p_apart": [p_at_most(shared[t], chance_pairs[:, t]) for t in range(T)]}
        summary = {
            "neurons": M, "themes": T, "carrying_neurons": int(live.sum()),
            "carried_atoms": int(len(np.unique(f))), "themed_atoms": int(len(carried)),
            "entropy": {"mean": mean_h, "chance": float(draws_h.mean()) if len(draws_h) else None,
                        "p_purer": p_at_most(mean_h, draws_h) if len(draws_h) else None,
                        "units": "bits"},
            "purity": float(np.nanmean(neurons["purity"])) if live.any() else None,
            "same_theme_pairs": {"observed": total, "chance": float(chance_total.mean()),
                                 "ratio": total / float(chance_total.mean()) if chance_total.mean() > 0 else None,
                                 "p_together": p_at_least(total, chance_total), "p_apart": p_at_most(total, chance_total)},
            "chance": f"{p.draws} shuffles of the theme labels among the carried atoms",
            "basis": pk.basis()}
        verdict = summary["same_theme_pairs"]["ratio"]
        ctx.log(f"themes: {summary['carrying_neurons']}/{M} neurons carry themed atoms; entropy {mean_h} bits "
                f"(chance {summary['entropy']['chance']}); same-theme roommates {total} vs chance "
                f"{chance_total.mean():.1f} (ratio {verdict})")
        return Result(summary=summary, tables={"neurons": neurons, "themes": themes},
                      figures={"atlas": figure(counts, labels, h, chance_h, summary)})


SHOWN = 30
"""Themes (the largest) shown as columns of the atlas."""


def figure(counts, labels, h, chance_h, summary):
    import numpy as np
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 5.5), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=(2.2, 1))
    live = counts.sum(1) > 0
    shown = np.argsort(-counts.sum(0), kind="stable")[:SHOWN]
    share = counts[live][:, shown] / counts[live].sum(1, keepdims=True)
    order = np.lexsort((-share.max(1), share.argmax(1))) if len(share) else np.zeros(0, int)
    image = left.imshow(share[order].T, aspect="auto", interpolation="nearest", cmap="viridis", vmin=0, vmax=1)
    left.set_yticks(range(len(shown)), [labels[t][:28] for t in shown], fontsize=7)
    left.set_xlabel(f"synthetic neurons carrying themed atoms ({int(live.sum())}), grouped by their main theme")
    left.set_title("share of each neuron's atoms in each theme")
    fig.colorbar(image, ax=left, shrink=0.8)
    finite = h[np.isfinite(h)]
    pooled = chance_h[np.isfinite(chance_h)]
    top = max(finite.max(initial=0), pooled.max(initial=0), 1e-9)
    bins = np.linspace(0, top, 20)
    right.hist(finite, bins=bins, color="tab:blue", alpha=0.8, label="Squeezer")
    right.hist(pooled, bins=bins, weights=np.full(len(pooled), len(finite) / max(len(pooled), 1)),
               histtype="step", color="black", linewidth=1.5, label="shuffled themes (chance)")
    right.set_xlabel("theme entropy of a neuron (bits)")
    right.set_ylabel("neurons")
    right.legend(frameon=False)
    st = summary["same_theme_pairs"]
    ratio = f"{st['ratio']:.2f}" if st["ratio"] is not None else "n/a"
    right.set_title(f"same-theme roommates\n{ratio} × chance", fontsize=10)
    return fig
