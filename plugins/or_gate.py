"""or-gate: do features that share a neuron avoid each other in the data? (docs/analyses.md)

Roommates are the features that drive a neuron (packing.members). A neuron is an OR-gate
when it fires for "a OR b OR …" and which one is never ambiguous because they do not
arrive together. Its OR-gate degree is the drive-weighted share of its roommate pairs
that avoid each other, tested against null neurons: the same drives on features of the
same frequencies drawn from outside its roommates, so that no pair of a null neuron is a
roommate pair of any neuron. Every chance baseline here is measured with the same rule
as the score it stands beside.
"""

from __future__ import annotations

from dataclasses import dataclass

from codec_cli.plugin_api import Analysis, Context, Headline, Result, Section
from codec_cli.stages.html import short as g
from codec_plugins.packing import Roommates, refuse_unless

MIN_BIN = 10
"""Features per frequency bin at the least: a bin must leave room to draw outside a neuron's roommates."""
SELECTIVITY_PAIRS = 200_000
"""Represented pairs sampled to estimate the share that are roommates (all of them when fewer)."""


@dataclass(frozen=True)
class Params(Roommates):
    window: int = 1
    """Count co-occurrence in blocks of this many consecutive tokens of one context (1: a token; 0: the whole
    context)."""
    threshold: float = 0.0
    """A feature fires where its activation exceeds this share of its largest (0: wherever stored)."""
    max_lift: float = 0.1
    """A pair avoids each other when it co-occurs at most this share of the rate expected under independence …"""
    alpha: float = 0.05
    """… and the shortfall is significant at this level (exact test); also the false discovery rate of the
    pair table and of the neurons (Benjamini–Hochberg)."""
    max_roommates: int = 64
    """Pairs are formed among each neuron's strongest roommates, at most this many (0: all); the summary
    counts the pairs this leaves out."""
    bins: int = 20
    """Frequency bins for drawing the random features matched to roommates."""
    random_sets: int = 100
    """Null neurons drawn per real one; a neuron's p-value is at least 1/(random_sets + 1)."""
    seed: int = 0
    """Seed of the random baselines."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for ok, key, rule in (
                (self.window >= 0, "window", "a block holds at least 1 token (0: the whole context)"),
                (0 <= self.threshold < 1, "threshold", "must be at least 0 and below 1 (at 1 nothing exceeds its "
                                                       "largest activation)"),
                (self.max_lift >= 0, "max_lift", "a share of the expected rate cannot be negative"),
                (0 < self.alpha <= 1, "alpha", "a significance level must be above 0 and at most 1"),
                (self.max_roommates == 0 or self.max_roommates >= 2, "max_roommates",
                 "a pair needs at least 2 roommates (0: all of them)"),
                (self.bins >= 1, "bins", "needs at least 1 frequency bin"),
                (self.random_sets >= 2, "random_sets", "the neuron test and its chance level need at least 2 "
                                                       "null neurons")):
            refuse_unless(ok, "or-gate", key, getattr(self, key), rule)


def bh(p):
    """Benjamini–Hochberg adjusted p-values (q-values)."""
    import numpy as np
    from scipy.stats import false_discovery_control

    p = np.asarray(p, dtype=float)
    return false_discovery_control(p) if len(p) else p


def pair_stats(c, n_i, n_j, units: int, p: Params) -> dict:
    """Chance expectation, lift, co-activation and the exact test of pairs with counts c."""
    import numpy as np

    from codec_plugins.cooccurrence import exclusive_p, expected

    e = expected(n_i, n_j, units)
    with np.errstate(invalid="ignore", divide="ignore"):
        lift = np.where(e > 0, c / e, np.nan)
        rate = np.where(np.minimum(n_i, n_j) > 0, c / np.minimum(n_i, n_j), np.nan)
    pval = exclusive_p(c, n_i, n_j, units, exact_below=max(p.max_lift, 1e-12))
    return {"n_i": n_i, "n_j": n_j, "cooccur": c, "expected": e, "lift": lift, "coactivation": rate, "p": pval,
            "avoids": (c <= p.max_lift * e) & (pval <= p.alpha)}


def table_stats(occ, i, j, p: Params) -> dict:
    """`pair_stats` of the pairs (i, j), with q over them and the BH-controlled `exclusive` flag."""
    n = occ.counts
    out = pair_stats(occ.pairs(i, j), n[i], n[j], occ.units, p)
    out["q"] = bh(out["p"])
    out["exclusive"] = out["avoids"] & (out["q"] <= p.alpha)
    return out


def degree(occ, features, drive, p: Params, tested=None) -> tuple[float, int]:
    """A neuron's OR-gate degree: Σ d_i d_j [i, j avoid each other] / Σ d_i d_j over the pairs
    of `features` (drives `drive`). `tested` [r, r] masks pairs out (a null neuron's pairs
    that are roommate pairs). Returns (degree, pairs counted); NaN when none are."""
    import numpy as np

    counts = occ.among(features)
    a, b = np.triu_indices(len(features), 1)
    keep = np.ones(len(a), dtype=bool) if tested is None else ~tested[a, b]
    a, b = a[keep], b[keep]
    n = np.diag(counts)
    avoids = pair_stats(counts[a, b], n[a], n[b], occ.units, p)["avoids"]
    w = drive[a] * drive[b]
    total = w.sum()
    return (float((w * avoids).sum() / total) if total > 0 else float("nan")), len(a)


def row_mean(x):
    """Each row's mean over its defined entries (NaN where none is), without numpy's warning."""
    import numpy as np

    ok = np.isfinite(x)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok.any(1), np.where(ok, x, 0).sum(1) / ok.sum(1), np.nan)


def permutation_p(observed, null):
    """(1 + #{null ≥ observed}) / (1 + #null) per row, over the null draws that are defined;
    1 where the observed degree is not."""
    import numpy as np

    valid = np.isfinite(null)
    above = (np.where(valid, null, -np.inf) >= np.asarray(observed)[:, None]).sum(1)
    return np.where(np.isfinite(observed), (1 + above) / (1 + valid.sum(1)), 1.0)


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


class Matcher:
    """Draws features at random from the same frequency bin as given ones."""

    def __init__(self, counts, pool, bins: int, rng):
        import numpy as np

        self.rng = rng
        self.pool = np.flatnonzero(pool & (counts > 0))
        logn = np.log(counts[self.pool])
        bins = max(1, min(bins, len(self.pool) // MIN_BIN))
        edges = np.unique(np.quantile(logn, np.linspace(0, 1, bins + 1))) if len(self.pool) else np.zeros(1)
        # Features that all fire equally often give a single edge and no interval between
        # edges: they then share one bin rather than none.
        n_bins = max(len(edges) - 1, 1)
        self.bin_of = np.full(len(counts), -1)
        self.bin_of[self.pool] = np.clip(np.searchsorted(edges, logn, side="right") - 1, 0, n_bins - 1)
        self.members = [self.pool[self.bin_of[self.pool] == b] for b in range(n_bins)]
        self.size = np.array([len(m) for m in self.members])
        self.start = np.concatenate([[0], np.cumsum(self.size)[:-1]])
        self.flat = np.concatenate(self.members) if len(self.pool) else np.zeros(0, dtype=np.int64)

    def like(self, features, avoid=None, tries: int = 50):
        """A random feature of the same frequency bin for each feature (one that never fires
        is matched among the rarest); a feature stands for itself where no feature fires.

        With `avoid` (a set of features), the draws are distinct and none is in `avoid`: a
        draw that clashes is drawn again from its bin up to `tries` times, then from the
        whole pool (the bin is too small to match it), as long as the pool has features left."""
        import numpy as np

        features = np.asarray(features, dtype=np.int64)
        b = np.maximum(self.bin_of[features], 0)
        if not len(self.flat):
            return features.copy()
        size = self.size[b]

        def draw(at):
            pick = self.flat[self.start[b[at]] + (self.rng.random(len(at)) * size[at]).astype(np.int64)]
            return np.where(size[at] > 0, pick, features[at])

        out = draw(np.arange(len(features)))
        if avoid is None:
            return out
        avoid = np.fromiter(avoid, dtype=np.int64)
        for _ in range(tries):
            _, first = np.unique(out, return_index=True)
            clash = np.ones(len(out), dtype=bool)
            clash[first] = False
            clash |= np.isin(out, avoid)
            if not clash.any():
                break
            out[clash] = draw(np.flatnonzero(clash))
        else:
            free = np.setdiff1d(self.pool, np.concatenate([avoid, out[~clash]]))
            spare = self.rng.permutation(free)[:int(clash.sum())]
            out[np.flatnonzero(clash)[:len(spare)]] = spare
        return out


class OrGate(Analysis):
    name = "or-gate"
    api_version = 1
    requires = ("squeezer", "features")
    Params = Params

    def report(self, art) -> Section:
        s = art.json("summary.json")
        t, m = s.get("independence_test") or {}, s.get("map_vs_cooccurrence") or {}
        null, pairs = "null neurons (same-frequency features from outside)", "frequency-matched random pairs"
        return Section(
            question="or-gates",
            answer=f"{s.get('or_gate_neurons')} of {s.get('polysemantic_neurons')} polysemantic neurons are OR-gates "
                   f"(prevalence {g(s.get('prevalence'))}, null {g(s.get('prevalence_chance'))}); roommates' "
                   f"co-occurrence effect {g(t.get('effect'))} (0 = like random pairs)",
            headline=[Headline("OR-gate prevalence", s.get("prevalence"), s.get("prevalence_chance"), null),
                      Headline("mean OR-gate degree", s.get("mean_degree"), s.get("mean_degree_chance"), null),
                      Headline("exclusive share of roommate pairs", s.get("exclusive_share"),
                               s.get("exclusive_share_chance"), pairs),
                      Headline("median lift of roommate pairs", t.get("median_lift"), t.get("median_lift_random"),
                               pairs),
                      Headline("mean co-activation of roommate pairs", t.get("mean_coactivation"),
                               t.get("mean_coactivation_random"), pairs),
                      Headline("effect (roommates co-occur less: > 0)", t.get("effect"), 0.0, "no difference"),
                      Headline("Spearman: map entry vs lift", m.get("spearman"), 0.0, "no relation"),
                      Headline("roommate share of represented pairs", (s.get("selectivity") or {}).get(
                          "roommate_pair_share"))],
            text=f"Basis: {s.get('basis')}. Units: {s.get('units')} (window {s.get('window')}); "
                 f"{s.get('pairs')} roommate pairs. A share of represented pairs above 1/2 means sharing a neuron "
                 "selects little (docs/analyses.md).",
            tables=["neurons.parquet", "pairs.parquet"])

    def run(self, ctx: Context) -> Result:
        import numpy as np

        from codec_plugins.cooccurrence import occurrences
        from codec_plugins.packing import members, open_packing, roommate_pairs

        p = ctx.params
        pk = open_packing(ctx.inputs["squeezer"])
        F, M = pk.shape
        occ = occurrences(ctx.inputs["features"], p.window, p.threshold)
        unit = {0: "context", 1: "token"}.get(p.window, f"{p.window} tokens")
        ctx.log(f"or-gate: {occ.units:,} units ({unit}), {occ.matrix.nnz:,} activations")
        if pk.sign_free():
            ctx.log("or-gate: warning: linear neurons have no basis of their own, so which features share one is "
                    "a fact about an arbitrary rotation; squeeze with --neuron-act relu (the map-vs-co-occurrence "
                    "relation is rotation-free)")
        f, n, d = members(pk.drive(), p.relative, p.absolute, pk.represented)
        cap = p.max_roommates or F
        carried = [np.flatnonzero(n == i) for i in range(M)]  # rows of (f, n, d), strongest first
        top = [rows[:cap] for rows in carried]
        left_out = int(sum(len(r) * (len(r) - 1) // 2 - len(t) * (len(t) - 1) // 2 for r, t in zip(carried, top)))
        tested = np.zeros((F, M), dtype=bool)  # the relation whose pairs are tested
        for i, rows in enumerate(top):
            tested[f[rows], i] = True
        selectivity = self.selectivity(f, n, pk, np.random.default_rng(p.seed))
        if selectivity["roommate_pair_share"] is not None and selectivity["roommate_pair_share"] > 0.5:
            ctx.log(f"or-gate: warning: {selectivity['roommate_pair_share']:.0%} of represented pairs share a "
                    f"neuron, so sharing one selects little; raise -p relative or -p absolute")
        rng = np.random.default_rng(p.seed)
        matcher = Matcher(occ.counts, pk.represented, p.bins, rng)

        # Neurons: the degree of each polysemantic one against its own null neurons.
        poly = [i for i in range(M) if len(top[i]) > 1]
        real, null, counted, masked = np.zeros(len(poly)), np.zeros((len(poly), p.random_sets)), [], 0
        for k, i in enumerate(poly):
            feats, drive = f[top[i]], d[top[i]]
            real[k], pairs_k = degree(occ, feats, drive, p)
            counted.append(pairs_k)
            for s in range(p.random_sets):
                fake = matcher.like(feats, avoid=feats)
                roommates = tested[fake].astype(np.int32)
                null[k, s], kept = degree(occ, fake, drive, p, tested=(roommates @ roommates.T) > 0)
                masked += pairs_k - kept
        null_total = sum(counted) * p.random_sets
        if null_total and masked > 0.5 * null_total:
            ctx.log(f"or-gate: warning: {masked / null_total:.0%} of null pairs were roommate pairs and left out; "
                    f"the null is thin")
        pval = permutation_p(real, null)
        q = bh(pval)
        gate = q <= p.alpha
        # The chance level of the same rule: one null neuron per real one, tested against the rest.
        chance_gate = bh(permutation_p(null[:, 0], null[:, 1:])) <= p.alpha
        obs, exp = set_stats(occ, [f[top[i]] for i in poly])

        # Pairs: every tested roommate pair once, with the neurons it shares.
        rows = np.concatenate(top) if top else np.zeros(0, dtype=np.int64)
        pi, pj, pn = roommate_pairs(f[rows], n[rows])
        uniq, at = np.unique(pi * F + pj, return_inverse=True)
        i, j = uniq // F, uniq % F
        order = np.lexsort((pn, at))
        shared = [g.tolist() for g in np.split(pn[order], np.flatnonzero(np.diff(at[order])) + 1)] if len(uniq) else []
        pairs = table_stats(occ, i, j, p)
        ri, rj = self.random_pairs(matcher, i, j, tested)
        random = table_stats(occ, ri, rj, p)

        m_ij, m_ji = pk.entries(i, j), pk.entries(j, i)
        norms = np.linalg.norm(pk.W_enc, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            cos = (pk.W_enc[i] * pk.W_enc[j]).sum(1) / (norms[i] * norms[j])
        finite = lambda x: float(np.nanmean(x)) if np.isfinite(x).any() else None  # noqa: E731
        summary = {"window": p.window, "units": occ.units, "neurons": M, "basis": pk.basis(),
                   "selectivity": selectivity, "polysemantic_neurons": len(poly), "or_gate_neurons": int(gate.sum()),
                   "prevalence": float(gate.mean()) if poly else None,
                   "prevalence_chance": float(chance_gate.mean()) if poly else None,
                   "mean_degree": finite(real), "mean_degree_chance": finite(null),
                   "pairs": len(uniq), "pairs_left_out": left_out, "exclusive_pairs": int(pairs["exclusive"].sum()),
                   "exclusive_share": float(pairs["exclusive"].mean()) if len(uniq) else None,
                   "exclusive_share_chance": float(random["exclusive"].mean()) if len(ri) else None,
                   "independence_test": independence(pairs, random),
                   "map_vs_cooccurrence": relation(m_ij, m_ji, pairs)}
        ctx.log(f"or-gate: {summary['or_gate_neurons']}/{len(poly)} polysemantic neurons are OR-gates "
                f"(chance {summary['prevalence_chance']}); {summary['exclusive_pairs']}/{len(uniq)} roommate "
                f"pairs exclusive (chance share {summary['exclusive_share_chance']})")
        with np.errstate(invalid="ignore", divide="ignore"):
            lift = np.where(exp > 0, obs / exp, np.nan)
        neurons = {"neuron": np.asarray(poly, dtype=np.int32),
                   "roommates": np.asarray([len(carried[k]) for k in poly], dtype=np.int32),
                   "pairs": np.asarray(counted, dtype=np.int64), "degree": real,
                   "degree_chance": row_mean(null),
                   "p": pval, "q": q, "or_gate": gate, "cooccur": obs, "expected": exp, "lift": lift}
        table = {"i": i.astype(np.int32), "j": j.astype(np.int32), "neurons": shared, **pairs,
                 "map_ij": m_ij, "map_ji": m_ji, "cos": cos}
        randoms = {"i": ri.astype(np.int32), "j": rj.astype(np.int32), **random}
        return Result(summary=summary, tables={"pairs": table, "neurons": neurons, "random_pairs": randoms},
                      figures={"independence": figure(pairs, random, m_ij, m_ji, real, null, p)})

    @staticmethod
    def selectivity(f, n, pk, rng) -> dict:
        """How much sharing a neuron selects: the share of represented pairs that share one
        (estimated from a sample of pairs when there are many), roommates per neuron and
        neurons per represented feature."""
        import numpy as np

        F, M = pk.shape
        rep = np.flatnonzero(pk.represented)
        R = np.zeros((F, M), dtype=bool)
        R[f, n] = True
        per_neuron = R.sum(0)
        if len(rep) * (len(rep) - 1) // 2 <= SELECTIVITY_PAIRS:
            a, b = np.triu_indices(len(rep), 1)
        else:
            a, b = rng.integers(len(rep), size=(2, SELECTIVITY_PAIRS))
            a, b = a[a != b], b[a != b]
        share = float((R[rep[a]] & R[rep[b]]).any(1).mean()) if len(a) else None
        return {"roommate_pair_share": share,
                "roommates_per_neuron": float(per_neuron[per_neuron > 0].mean()) if per_neuron.any() else None,
                "neurons_per_feature": float(R[rep].sum(1).mean()) if len(rep) else None}

    @staticmethod
    def random_pairs(matcher, i, j, tested, tries: int = 50):
        """A frequency-matched random pair for each roommate pair, never itself a tested pair
        nor one feature twice; pairs that cannot be drawn so are left out."""
        import numpy as np

        ri, rj = matcher.like(i), matcher.like(j)
        for _ in range(tries + 1):
            bad = (ri == rj) | (tested[ri] & tested[rj]).any(1)
            if not bad.any() or _ == tries:
                break
            ri[bad], rj[bad] = matcher.like(i[bad]), matcher.like(j[bad])
        lo, hi = np.minimum(ri, rj)[~bad], np.maximum(ri, rj)[~bad]
        return lo, hi


def independence(pairs, random) -> dict:
    """Do roommates co-occur less than matched random pairs? One-sided Mann–Whitney U on the lifts."""
    import numpy as np
    from scipy.stats import mannwhitneyu

    both, rboth = np.isfinite(pairs["lift"]), np.isfinite(random["lift"])
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
    return test


def relation(m_ij, m_ji, pairs) -> dict:
    """The rotation-free view: does interference sit where co-occurrence is lowest?"""
    import numpy as np
    from scipy.stats import spearmanr

    both = np.isfinite(pairs["lift"])
    if both.sum() <= 2:
        return {}
    m = (m_ij + m_ji) / 2
    ex = pairs["exclusive"]
    if np.ptp(m[both]) == 0 or np.ptp(pairs["lift"][both]) == 0:  # a constant has no rank correlation
        rho = None
    else:
        rho = spearmanr(m[both], pairs["lift"][both])
    return {"spearman": None if rho is None else float(rho.statistic),
            "p_value": None if rho is None else float(rho.pvalue),
            "mean_map_exclusive": float(m[ex].mean()) if ex.any() else None,
            "mean_map_other": float(m[~ex].mean()) if (~ex).any() else None}


def hist(ax, x, bins, **style) -> None:
    """A density histogram, or only its legend entry when there is nothing to count."""
    if len(x):
        ax.hist(x, bins=bins, density=True, **style)
    else:
        ax.plot([], [], **{k: v for k, v in style.items() if k in ("color", "label", "linewidth")})


def figure(pairs, random, m_ij, m_ji, real, null, p: Params):
    import numpy as np
    from matplotlib.figure import Figure

    def loglift(s):  # +0.5 keeps pairs that never co-occur on the plot
        return np.log10((s["cooccur"] + 0.5) / (s["expected"] + 0.5))

    fig = Figure(figsize=(14, 3.8), layout="constrained")
    left, middle, right = fig.subplots(1, 3)
    a, b = loglift(pairs), loglift(random)
    bins = np.linspace(min(a.min(initial=0), b.min(initial=0)), max(a.max(initial=0), b.max(initial=0)) + 1e-9, 40)
    hist(left, b, bins, histtype="step", color="black", linewidth=1.5, label="matched non-roommate pairs")
    hist(left, a, bins, alpha=0.7, color="tab:blue", label="roommate pairs")
    left.axvline(np.log10(p.max_lift), color="tab:red", linestyle=":", label=f"lift {p.max_lift}")
    left.set_xlabel("log10 co-occurrence / chance (+0.5)")
    left.set_ylabel("density")
    left.legend(frameon=False, fontsize=8)
    left.set_title("pairs: co-occurrence against chance")
    grid = np.linspace(0, 1, 21)
    hist(middle, null[np.isfinite(null)], grid, histtype="step", color="black", linewidth=1.5,
         label="null neurons (matched, outside the roommates)")
    hist(middle, real[np.isfinite(real)], grid, alpha=0.7, color="tab:blue", label="polysemantic neurons")
    middle.set_xlabel("OR-gate degree (weighted share of roommate pairs avoiding)")
    middle.set_ylabel("density")
    middle.legend(frameon=False, fontsize=8)
    middle.set_title("neurons: OR-gate degree against chance")
    ex = pairs["exclusive"]
    right.scatter(((m_ij + m_ji) / 2)[~ex], a[~ex], s=6, color="tab:gray", label="co-occurring or unclear")
    right.scatter(((m_ij + m_ji) / 2)[ex], a[ex], s=8, color="tab:red", label="exclusive (OR-gate pair)")
    right.axhline(0, color="black", linewidth=0.5)
    right.set_xlabel("effective map entry (W_enc W_dec)_ij, symmetrised")
    right.set_ylabel("log10 co-occurrence / chance (+0.5)")
    right.legend(frameon=False, fontsize=8)
    right.set_title("interference vs co-occurrence")
    unit = {0: "one context", 1: "one token"}.get(p.window, f"{p.window} tokens")
    fig.suptitle(f"or-gate: roommates and co-occurrence within {unit}")
    return fig
