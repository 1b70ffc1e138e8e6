"""or-gate: do features that share a neuron avoid each other in the data? (docs/analyses.md)

Roommates are the features a neuron carries (the polysemanticity rule). A neuron is an
OR-gate when its roommates are mutually exclusive, so that it fires for "a OR b OR …"
without ambiguity: taken together they co-occur far less often than if they fired
independently. The chance baselines are frequency-matched random features: random
pairs for the pairs, random "neurons" of the same sizes for the prevalence.
"""

from __future__ import annotations

from dataclasses import dataclass

from codec_cli.plugin_api import Analysis, Context, Result
from codec_plugins.packing import Roommates, refuse_unless


@dataclass(frozen=True)
class Params(Roommates):
    window: int = 1
    """Count co-occurrence within blocks of this many consecutive tokens of one context (1: the same token)."""
    threshold: float = 0.0
    """A feature fires where its activation exceeds this share of its largest (0: wherever stored)."""
    max_lift: float = 0.1
    """Exclusive: co-occurring at most this share of the rate expected under independence …"""
    alpha: float = 0.05
    """… with the shortfall significant at this false discovery rate (Benjamini–Hochberg)."""
    max_roommates: int = 64
    """Pairs are tabled among each neuron's largest roommates, at most this many (the neuron test uses all)."""
    bins: int = 20
    """Frequency bins for drawing the random features matched to roommates."""
    random_sets: int = 5
    """Random frequency-matched neurons drawn per real one for the prevalence's chance baseline."""
    seed: int = 0
    """Seed of the random baselines."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for ok, key, rule in (
                (self.window >= 1, "window", "a block holds at least 1 token"),
                (0 <= self.threshold < 1, "threshold", "must be at least 0 and below 1 (at 1 nothing exceeds its "
                                                       "largest activation)"),
                (self.max_lift >= 0, "max_lift", "a share of the expected rate cannot be negative"),
                (0 < self.alpha <= 1, "alpha", "a false discovery rate must be above 0 and at most 1"),
                (self.max_roommates >= 2, "max_roommates", "a pair needs at least 2 roommates"),
                (self.bins >= 1, "bins", "needs at least 1 frequency bin"),
                (self.random_sets >= 1, "random_sets", "the chance baseline needs at least 1 random set")):
            refuse_unless(ok, "or-gate", key, getattr(self, key), rule)


def bh(p):
    """Benjamini–Hochberg adjusted p-values (q-values)."""
    import numpy as np
    from scipy.stats import false_discovery_control

    p = np.asarray(p, dtype=float)
    return false_discovery_control(p) if len(p) else p


def pair_stats(occ, i, j, p: Params) -> dict:
    """Counts, chance expectation, lift and the exclusivity test of pairs (i, j)."""
    import numpy as np

    from codec_plugins.cooccurrence import exclusive_p, expected

    n = occ.counts
    c = occ.pairs(i, j)
    e = expected(n[i], n[j], occ.units)
    with np.errstate(invalid="ignore", divide="ignore"):
        lift = np.where(e > 0, c / e, np.nan)
        rate = np.where(np.minimum(n[i], n[j]) > 0, c / np.minimum(n[i], n[j]), np.nan)
    pval = exclusive_p(c, n[i], n[j], occ.units)
    q = bh(pval)
    return {"n_i": n[i], "n_j": n[j], "cooccur": c, "expected": e, "lift": lift, "coactivation": rate,
            "p": pval, "q": q, "exclusive": (c <= p.max_lift * e) & (q <= p.alpha)}


def set_stats(occ, sets: list) -> tuple:
    """For each set of features, all its pairs at once: (Σ c_ij, Σ E[c_ij]).

    Σ_{i<j∈S} c_ij = Σ_units C(m_u, 2), m_u the members firing in the unit, so a set of r
    features costs its stored activations, not r² pair intersections."""
    import numpy as np

    n = occ.counts
    obs, exp = np.zeros(len(sets)), np.zeros(len(sets))
    for s, members in enumerate(sets):
        members = np.asarray(members, dtype=np.int64)
        cols = occ.matrix[:, members]
        _, m = np.unique(cols.indices, return_counts=True)
        obs[s] = float((m * (m - 1) // 2).sum())
        k = n[members].astype(float)
        exp[s] = (k.sum() ** 2 - (k * k).sum()) / (2 * max(occ.units, 1))
    return obs, exp


def set_test(obs, exp, p: Params):
    """The neuron-level test: Poisson lower tail of Σc given Σ E[c], BH-adjusted."""
    import numpy as np
    from scipy.stats import poisson

    pval = poisson.cdf(obs, exp)
    q = bh(pval)
    with np.errstate(invalid="ignore", divide="ignore"):
        lift = np.where(exp > 0, obs / exp, np.nan)
    return lift, pval, q, (obs <= p.max_lift * exp) & (q <= p.alpha)


class Matcher:
    """Draws features at random from the same frequency bin as given ones."""

    def __init__(self, counts, pool, bins: int, rng):
        import numpy as np

        self.rng = rng
        self.pool = np.flatnonzero(pool & (counts > 0))
        logn = np.log(counts[self.pool])
        edges = np.unique(np.quantile(logn, np.linspace(0, 1, bins + 1))) if len(self.pool) else np.zeros(1)
        # Features that all fire equally often give a single edge and no interval between
        # edges: they then share one bin rather than none.
        n_bins = max(len(edges) - 1, 1)
        self.bin_of = np.full(len(counts), -1)
        self.bin_of[self.pool] = np.clip(np.searchsorted(edges, logn, side="right") - 1, 0, n_bins - 1)
        self.members = [self.pool[self.bin_of[self.pool] == b] for b in range(n_bins)]

    def like(self, features):
        """A random feature of the same frequency bin for each feature (one that never
        fires is matched among the rarest); a feature stands for itself where no feature fires."""
        import numpy as np

        out = np.empty(len(features), dtype=np.int64)
        for s, f in enumerate(features):
            choices = self.members[max(self.bin_of[f], 0)]
            out[s] = choices[self.rng.integers(len(choices))] if len(choices) else f
        return out


class OrGate(Analysis):
    name = "or-gate"
    api_version = 1
    requires = ("squeezer", "features")
    Params = Params

    def run(self, ctx: Context) -> Result:
        import numpy as np
        from scipy.stats import mannwhitneyu, spearmanr

        from codec_plugins.cooccurrence import occurrences
        from codec_plugins.packing import members, open_packing, roommate_pairs

        p = ctx.params
        pk = open_packing(ctx.inputs["squeezer"])
        F, M = pk.shape
        occ = occurrences(ctx.inputs["features"], p.window, p.threshold)
        ctx.log(f"or-gate: {occ.units:,} units of {p.window} token(s), {occ.matrix.nnz:,} activations")
        f, n, _ = members(pk.W_enc, p.relative, p.absolute, pk.represented)
        carried = [f[n == i] for i in range(M)]
        poly = [i for i in range(M) if len(carried[i]) > 1]

        # Neurons: every roommate at once.
        obs, exp = set_stats(occ, [carried[i] for i in poly])
        lift, pval, q, gate = set_test(obs, exp, p)
        rng = np.random.default_rng(p.seed)
        matcher = Matcher(occ.counts, pk.represented, p.bins, rng)
        chance = []
        for _ in range(p.random_sets):
            fake = [np.unique(matcher.like(carried[i])) for i in poly]
            chance.append(set_test(*set_stats(occ, fake), p)[3].mean() if poly else np.nan)

        # Pairs: among each neuron's largest roommates (members() sorts them by |weight|).
        top = np.concatenate([carried[i][:p.max_roommates] for i in range(M)])
        top_n = np.concatenate([np.full(min(len(carried[i]), p.max_roommates), i) for i in range(M)])
        pi, pj, pn = roommate_pairs(top, top_n)
        uniq, at = np.unique(pi * F + pj, return_inverse=True)
        i, j = uniq // F, uniq % F
        order = np.lexsort((pn, at))  # the neurons each pair shares, grouped and in order
        shared = [g.tolist() for g in np.split(pn[order], np.flatnonzero(np.diff(at[order])) + 1)] if len(uniq) else []
        pairs = pair_stats(occ, i, j, p)
        ri, rj = matcher.like(i), matcher.like(j)
        keep = ri != rj
        random = pair_stats(occ, ri[keep], rj[keep], p)

        both = np.isfinite(pairs["lift"])
        rboth = np.isfinite(random["lift"])
        test = {"pairs": int(both.sum()), "random_pairs": int(rboth.sum())}
        if both.any() and rboth.any():
            u = mannwhitneyu(pairs["lift"][both], random["lift"][rboth], alternative="less")
            test |= {"median_lift": float(np.median(pairs["lift"][both])),
                     "median_lift_random": float(np.median(random["lift"][rboth])),
                     "mean_coactivation": float(np.nanmean(pairs["coactivation"])),
                     "mean_coactivation_random": float(np.nanmean(random["coactivation"])),
                     # P(random > roommate) − P(random < roommate): +1 when roommates always co-occur less.
                     "effect": float(1 - 2 * u.statistic / (both.sum() * rboth.sum())),
                     "p_value": float(u.pvalue)}
        m_ij, m_ji = pk.entries(i, j), pk.entries(j, i)
        norms = np.linalg.norm(pk.W_enc, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            cos = (pk.W_enc[i] * pk.W_enc[j]).sum(1) / (norms[i] * norms[j])
        relation = {}
        if both.sum() > 2:
            rho = spearmanr((m_ij + m_ji)[both] / 2, pairs["lift"][both])
            relation = {"spearman": float(rho.statistic), "p_value": float(rho.pvalue),
                        "mean_map_exclusive": float(((m_ij + m_ji) / 2)[pairs["exclusive"]].mean())
                        if pairs["exclusive"].any() else None,
                        "mean_map_other": float(((m_ij + m_ji) / 2)[~pairs["exclusive"]].mean())
                        if (~pairs["exclusive"]).any() else None}

        summary = {"window": p.window, "units": occ.units, "neurons": M, "polysemantic_neurons": len(poly),
                   "or_gate_neurons": int(gate.sum()),
                   "prevalence": float(gate.mean()) if poly else None,
                   "prevalence_chance": float(np.mean(chance)) if poly else None,
                   "pairs": len(uniq), "exclusive_pairs": int(pairs["exclusive"].sum()),
                   "exclusive_share": float(pairs["exclusive"].mean()) if len(uniq) else None,
                   "exclusive_share_chance": float(random["exclusive"].mean()) if keep.any() else None,
                   "independence_test": test, "map_vs_cooccurrence": relation}
        ctx.log(f"or-gate: {summary['or_gate_neurons']}/{len(poly)} polysemantic neurons are OR-gates "
                f"(chance {summary['prevalence_chance']}); {summary['exclusive_pairs']}/{len(uniq)} roommate "
                f"pairs exclusive")
        neurons = {"neuron": np.asarray(poly, dtype=np.int32),
                   "roommates": np.asarray([len(carried[k]) for k in poly], dtype=np.int32),
                   "cooccur": obs, "expected": exp, "lift": lift, "p": pval, "q": q, "or_gate": gate}
        table = {"i": i.astype(np.int32), "j": j.astype(np.int32), "neurons": shared, **pairs,
                 "map_ij": m_ij, "map_ji": m_ji, "cos": cos}
        randoms = {"i": ri[keep].astype(np.int32), "j": rj[keep].astype(np.int32), **random}
        return Result(summary=summary, tables={"pairs": table, "neurons": neurons, "random_pairs": randoms},
                      figures={"independence": figure(pairs, random, m_ij, m_ji, p)})


def figure(pairs, random, m_ij, m_ji, p: Params):
    import numpy as np
    from matplotlib.figure import Figure

    def loglift(s):  # +0.5 keeps pairs that never co-occur on the plot
        return np.log10((s["cooccur"] + 0.5) / (s["expected"] + 0.5))

    fig = Figure(figsize=(10, 3.8), layout="constrained")
    left, right = fig.subplots(1, 2)
    a, b = loglift(pairs), loglift(random)
    bins = np.linspace(min(a.min(initial=0), b.min(initial=0)), max(a.max(initial=0), b.max(initial=0)) + 1e-9, 40)
    left.hist(b, bins=bins, density=True, histtype="step", color="black", linewidth=1.5,
              label="frequency-matched random pairs")
    left.hist(a, bins=bins, density=True, alpha=0.7, color="tab:blue", label="roommate pairs")
    left.axvline(np.log10(p.max_lift), color="tab:red", linestyle=":", label=f"lift {p.max_lift}")
    left.set_xlabel("log10 co-occurrence / chance (+0.5)")
    left.set_ylabel("density")
    left.legend(frameon=False, fontsize=8)
    left.set_title("conditional independence test")
    ex = pairs["exclusive"]
    right.scatter(((m_ij + m_ji) / 2)[~ex], a[~ex], s=6, color="tab:gray", label="co-occurring or unclear")
    right.scatter(((m_ij + m_ji) / 2)[ex], a[ex], s=8, color="tab:red", label="exclusive (OR-gate pair)")
    right.axhline(0, color="black", linewidth=0.5)
    right.set_xlabel("effective map entry (W_enc W_dec)_ij, symmetrised")
    right.set_ylabel("log10 co-occurrence / chance (+0.5)")
    right.legend(frameon=False, fontsize=8)
    right.set_title("interference vs co-occurrence")
    fig.suptitle(f"or-gate: roommates, co-occurrence within {p.window} token(s)")
    return fig
