"""polytope: the geometry of the packed directions (docs/analyses.md).

Three views of the Squeezer's feature codes, none of which changes under a rotation of
the neurons (a linear Squeezer's codes are only defined up to one):

- feature dimensionality D_i (Elhage et al. 2022), the share of a dimension feature i
  owns, read from the effective map W_enc W_dec; regular packings give the fractions
  1, 3/4, 2/3, 1/2, 2/5, 3/8;
- groups (tegum factors): features whose codes interfere, linked by |cos| ≥
  `interference`, each named by its size and the dimension it spans (antipodal pair,
  pentagon, …);
- circles: how well a group's codes lie on a circle in their top-2 plane, against random
  groups of the same size, and, when the members have a natural order (weekdays,
  months), whether they go round it in that order, against their own labels shuffled.
"""

from __future__ import annotations

from dataclasses import dataclass

from codec_cli.plugin_api import Analysis, Context, Headline, Result, Section
from codec_plugins.packing import refuse_unless

REFERENCE = (("1", 1.0), ("3/4", 3 / 4), ("2/3", 2 / 3), ("1/2", 1 / 2), ("2/5", 2 / 5), ("3/8", 3 / 8))
"""Elhage et al.'s dimensionalities of regular packings: a dimension of its own,
tetrahedron, triangle, antipodal pair, pentagon, square antiprism."""

SHAPES = {(2, 1): "antipodal pair", (3, 2): "triangle", (4, 3): "tetrahedron", (4, 2): "square",
          (5, 2): "pentagon", (6, 2): "hexagon", (8, 3): "square antiprism"}
"""(size, dimensions) → the polytope with that many vertices in that many dimensions."""

BLOCK = 1 << 22
"""Entries of the cosine matrix held at once (32 MB): rows come in blocks of BLOCK // F."""

FIGURE_GROUPS = 12
"""Groups drawn in groups.png: the largest ones of 2 to 16 features."""


@dataclass(frozen=True)
class Params:
    interference: float = 0.2
    """Two represented features are in one group when their codes' |cosine| is at least this."""
    rank_tol: float = 0.1
    """A group spans as many dimensions as its unit codes have singular values above this share of the largest."""
    regular_tol: float = 0.1
    """A group is regular when every member's D is within this relative tolerance of dimensions/size."""
    random_groups: int = 1000
    """Random groups of the same size drawn for each circle score's chance baseline."""
    permutations: int = 1000
    """Shuffles of a labelled group's positions drawn for its order's baseline (every ordering when there are fewer)."""
    group_by: str = "cycle"
    """Token-table column naming the ordered groups (needs a features artifact), e.g. weekday / month."""
    order_by: str = "cycle_position"
    """Token-table column giving each label's place in its group's cyclic order."""
    label_share: float = 0.5
    """A feature joins an ordered group when at least this share of its activation mass lands on its tokens…"""
    concentration: float = 0.5
    """…and that mass is this concentrated round the cycle (mean resultant length; 0 even, 1 on one position)."""
    seed: int = 0
    """Seed of the random codes and random groups."""

    def __post_init__(self) -> None:
        for ok, key, rule in (
                (0 < self.interference <= 1, "interference", "a |cosine| threshold must be above 0 and at most 1"),
                (0 < self.rank_tol < 1, "rank_tol", "a share of the largest singular value must be between 0 and 1"),
                (self.regular_tol >= 0, "regular_tol", "a relative tolerance cannot be negative"),
                (self.random_groups >= 0, "random_groups", "a count cannot be negative"),
                (self.permutations >= 0, "permutations", "a count cannot be negative"),
                (0 < self.label_share <= 1, "label_share", "a share of the mass must be above 0 and at most 1"),
                (0 <= self.concentration <= 1, "concentration", "a mean resultant length is between 0 and 1")):
            refuse_unless(ok, "polytope", key, getattr(self, key), rule)
        refuse_unless(self.group_by != self.order_by, "polytope", "order_by", self.order_by,
                      f"-p group_by is {self.group_by!r} too; order_by names the column of positions within "
                      "each group")


# ----------------------------------------------------------------- dimensionality


def dimensionality(diag, energy, rep):
    """D_i = M_ii² / Σ_j M_ij² for represented features, NaN elsewhere."""
    import numpy as np

    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(rep & (energy > 0), diag**2 / energy, np.nan)


def chance_dimensionality(norms, rep, M: int, rng):
    """D of random Gaussian codes [F, M] with the same per-feature norms (tied, so D_i =
    ‖g_i‖⁴ / Σ_j (g_i·g_j)²), on the represented features; about a thousand values."""
    import numpy as np

    out = []
    for _ in range(int(np.clip(np.ceil(1000 / max(rep.sum(), 1)), 1, 20))):
        G = rng.standard_normal((len(norms), M))
        G *= (norms / np.linalg.norm(G, axis=1))[:, None]
        energy = ((G @ (G.T @ G)) * G).sum(1)  # Σ_j (g_i·g_j)² through the M×M Gram
        out.append(dimensionality((G * G).sum(1), energy, rep)[rep])
    return np.concatenate(out)


def near_fractions(D, tol: float) -> dict:
    """How many values of D sit at each reference fraction: nearest to it, within `tol` relative."""
    import numpy as np

    ref = np.array([v for _, v in REFERENCE])
    nearest = np.abs(D[:, None] - ref[None]).argmin(1)
    close = np.abs(D / ref[nearest] - 1) <= tol
    return {name: int((close & (nearest == n)).sum()) for n, (name, _) in enumerate(REFERENCE)}


# ----------------------------------------------------------------- groups


def unit(V):
    import numpy as np

    n = np.linalg.norm(V, axis=1, keepdims=True)
    return V / np.where(n > 0, n, 1)


def components(U, threshold: float):
    """Connected components of the graph |U_i·U_j| ≥ threshold, the cosines computed a
    block of rows at a time so that memory stays O(R·block). Returns (labels [R], edges)."""
    import numpy as np
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    R = len(U)
    step = max(1, BLOCK // R)
    rows, cols = [], []
    for a in range(0, R, step):
        i, j = np.nonzero(np.abs(U[a:a + step] @ U.T) >= threshold)
        keep = a + i < j  # each pair once, no self-loops
        rows.append(a + i[keep])
        cols.append(j[keep])
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(R, R))
    return connected_components(graph, directed=False)[1], len(rows)


def outside_cosine(U, label):
    """Per feature, its largest |cos| with a feature of another group (0 when there is none)."""
    import numpy as np

    R = len(U)
    step = max(1, BLOCK // R)
    out = np.zeros(R)
    for a in range(0, R, step):
        c = np.abs(U[a:a + step] @ U.T)
        c[label[a:a + step, None] == label[None, :]] = 0
        out[a:a + step] = c.max(1)
    return out


def chance_edge_share(threshold: float, M: int) -> float:
    """P(|cos| ≥ threshold) for two random directions in M dimensions: cos² ~ Beta(1/2, (M−1)/2)."""
    from scipy.special import betainc

    return 1.0 if M < 2 else float(1 - betainc(0.5, (M - 1) / 2, min(threshold, 1.0) ** 2))


def name_group(size: int, rank: int, cos, D, regular_tol: float) -> tuple[str, bool]:
    """(name, regular) of a group of `size` unit codes (cosines `cos`) spanning `rank` dimensions."""
    import numpy as np

    regular = bool(np.all(np.abs(D / (rank / size) - 1) <= regular_tol))
    if size == 1:
        return ("alone" if regular else "alone, sharing its dimension"), regular
    if (size, rank) == (2, 1) and cos[0, 1] > 0:
        shape = "parallel pair"  # one direction twice: a duplicate, not a polytope
    else:
        shape = SHAPES.get((size, rank), f"{size} features in {rank} dimensions")
    return (shape if regular else f"irregular {shape}"), regular


# ----------------------------------------------------------------- circles


def circle_plane(V):
    """(planarity, roundness, θ) of each of n groups of g unit codes V [n, g, M]: centred and
    projected on the top-2 principal plane, planarity = (s1² + s2²) / Σ s², roundness =
    max(0, 1 − std(r) / mean(r)) for the radii r in that plane, θ [n, g] the members' angles
    there (the plane's axes are the Gram matrix's eigenvectors, so θ is fixed only up to a
    rotation and a reflection)."""
    import numpy as np

    X = V - V.mean(1, keepdims=True)
    w, E = np.linalg.eigh(X @ X.transpose(0, 2, 1))  # the g×g Gram: cheap when M ≫ g
    w = np.clip(w, 0, None)
    total = w.sum(1)
    planarity = w[:, -2:].sum(1) / np.where(total > 0, total, 1)
    P = E[:, :, -2:] * np.sqrt(w[:, None, -2:])  # coordinates in the top-2 plane
    r = np.linalg.norm(P, axis=2)
    mean_r = r.mean(1)
    roundness = np.where(mean_r > 0, np.clip(1 - r.std(1) / np.where(mean_r > 0, mean_r, 1), 0, None), 0.0)
    return planarity, roundness, np.arctan2(P[..., 1], P[..., 0])


def fit(theta, positions, period):
    """The mean resultant z = mean_k e^{i(±θ_k − 2π p_k/period)} of each orientation ±, as [2, …]:
    |z| is how well the angles follow the positions, arg z the rotation between them."""
    import numpy as np

    phi = 2 * np.pi * np.asarray(positions, dtype=np.float64) / period
    return np.stack([np.exp(1j * (theta - phi)).mean(-1), np.exp(1j * (-theta - phi)).mean(-1)])


def order_of(theta, positions, period):
    """order = max_± |mean_k e^{i(±θ_k − 2π p_k/period)}|, over the last axis (broadcast):
    1 when every member sits at the angle its position calls for, up to a rotation and
    either way round. The one rule for the score and for its permutation baseline."""
    import numpy as np

    return np.abs(fit(theta, positions, period)).max(0)


def circle_scores(V, positions=None, period=None):
    """(planarity, roundness, order) arrays [n] of n groups of g unit codes V [n, g, M]
    (circle_plane), order (order_of) given positions [n, g] round a cycle of `period`,
    None without them."""
    planarity, roundness, theta = circle_plane(V)
    return planarity, roundness, None if positions is None else order_of(theta, positions, period)


def member_angles(theta, positions=None, period=None):
    """A group's angles θ [g] in [0, 2π), with the plane's rotation and reflection fixed so
    that they can be compared: given positions, turned (and flipped) to fit 2π p/period
    best, so a circle in order has angle ≈ 2π p/period; without, the first member at 0 and
    the second in [0, π]."""
    import numpy as np

    if positions is None:
        a = theta - theta[0]
        if len(a) > 1 and np.sin(a[1]) < 0:
            a = -a
    else:
        z = fit(theta, positions, period)
        best = int(np.abs(z[1]) > np.abs(z[0]))  # the orientation order_of keeps
        a = (-theta if best else theta) - np.angle(z[best])
    return np.mod(a, 2 * np.pi)


def order_null(theta, positions, period, n: int, rng):
    """order_of the angles θ [g] with the positions shuffled over the members: every ordering
    when there are at most n (exact), else n random ones; none when n < 1. The positions
    keep their values, so the baseline has the group's own spacing and period. Returns
    (orders, exact)."""
    import math
    from itertools import permutations

    import numpy as np

    positions = np.asarray(positions, dtype=np.float64)
    if n < 1:
        return None, False
    exact = math.factorial(len(positions)) <= n
    if exact:
        shuffled = np.array(list(permutations(positions)))
    else:
        shuffled = rng.permuted(np.tile(positions, (n, 1)), axis=1)
    return order_of(theta[None], shuffled, period), exact


def circle_score(U, groups, positions=None, period=None):
    """planarity × roundness (× order given positions round a cycle of `period`) of groups [n, g]
    of rows of U: (score, (planarity, roundness, order, θ))."""
    import numpy as np

    pl, rd, theta = circle_plane(U[groups])
    od = None if positions is None else order_of(theta, np.broadcast_to(positions, groups.shape), period)
    return pl * rd * (1 if od is None else od), (pl, rd, od, theta)


def random_scores(U, size: int, positions, n: int, rng, period=None):
    """The circle score of n random groups of `size` rows of U (in a random order when
    positions are given); None when the group is over half of U, for then random groups
    would mostly be the group itself."""
    import numpy as np

    if n < 1 or 2 * size > len(U):
        return None
    return circle_score(U, np.stack([rng.choice(len(U), size, replace=False) for _ in range(n)]), positions,
                        period)[0]


def against(score: float, null, exact: bool = False) -> dict:
    """A score beside its baseline: mean, and p = (1 + #baseline ≥ score) / (1 + n), or
    #baseline ≥ score / n when the baseline is exact (every ordering, the observed one among them)."""
    if null is None:
        return {"chance": None, "p": None}
    at_least = (null >= score - 1e-12).sum()
    p = at_least / len(null) if exact else (1 + at_least) / (1 + len(null))
    return {"chance": float(null.mean()), "p": float(p)}


def ordered_groups(features, p: Params, rep, F: int, log):
    """({label: count}, {label: (features, positions, period)}): the represented features that belong
    to one label of `group_by` in the features' token tables, how many per label, and the
    groups of 3 or more, sorted by position.

    A feature belongs to label L when at least `label_share` of its activation mass lands on
    L's tokens and that mass is concentrated round L's cycle (`order_by` = 0…n−1): its mean
    resultant length R = |Σ_q m_q e^{2πiq/n}| / Σ_q m_q is at least `concentration`. Its
    position is the circular mean, arg(Σ_q m_q e^{2πiq/n}) · n/2π, so that a feature firing
    on an arc of days sits at the arc's middle. (None, {}) and a line saying why when there
    are no labels to read."""
    import numpy as np

    from codec_cli.errors import BadInput
    from codec_plugins.packing import label_mass

    if features is None:
        log("polytope: no features artifact given, so no ordered groups")
        return None, {}
    if features.attrs.get("d_sae") != F:
        raise BadInput(f"{features.path}: d_sae {features.attrs.get('d_sae')}, but the squeezer packs {F} features",
                       hint="pass the features artifact the squeezer was trained on")
    found = label_mass(features, [p.group_by, p.order_by], F)
    if found is None:
        log(f"polytope: the features have no token tables with {p.group_by!r} and {p.order_by!r}, "
            "so no ordered groups")
        return None, {}
    keys, mass, total = found
    counts, groups = {}, {}
    for label in sorted({str(k[0]) for k in keys}):
        rows = [i for i, k in enumerate(keys) if str(k[0]) == label]
        where = np.array([keys[i][1] for i in rows])
        if where.dtype.kind not in "iu" or where.min() < 0:
            raise BadInput(f"polytope: -p order_by={p.order_by!r} must name a column of positions 0, 1, …, "
                           f"n−1 round each cycle; its values for {label!r} are {sorted(where.tolist())[:5]}…")
        n = int(where.max()) + 1
        m = mass[rows]
        on = m.sum(0)
        z = np.exp(2j * np.pi * where / n) @ m
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(total > 0, on / total, 0.0)
            R = np.where(on > 0, np.abs(z) / on, 0.0)
        members = np.flatnonzero((share >= p.label_share) & (R >= p.concentration) & rep)
        counts[label] = len(members)
        positions = np.round(np.angle(z[members]) % (2 * np.pi) * n / (2 * np.pi), 6) % n
        order = np.lexsort((members, positions))
        if len(members) >= 3:
            groups[label] = members[order], positions[order], n
    log(f"polytope: represented features with ≥ {p.label_share:.0%} of their mass on one {p.group_by}, "
        f"concentrated round it (R ≥ {p.concentration}): "
        + (", ".join(f"{k} {v}" for k, v in counts.items() if v) or "none"))
    return counts, groups


# ----------------------------------------------------------------- the plugin


class Polytope(Analysis):
    name = "polytope"
    api_version = 1
    requires = ("squeezer",)
    optional = ("features",)
    Params = Params

    def report(self, art) -> Section:
        s = art.json("summary.json")
        named = s.get("named") or {}
        circles = s.get("circles") or []
        found = ", ".join(f"{n} × {k}" for k, n in named.items()) or "no group"
        rings = "; ".join(f"{c['label']} circle {_fmt(c['score'])} (random groups {_fmt(c['chance'])}, p {_fmt(c['p'])})"
                          for c in circles)
        head = [Headline("mean feature dimensionality D", s.get("mean_D"), s.get("mean_D_chance"),
                         "random Gaussian codes of the same norms"),
                Headline("edge share", s.get("edge_share"), s.get("edge_share_chance"), "random directions in M dimensions"),
                Headline("dimensions per feature", s.get("dimensions_per_feature")),
                Headline("represented features", s.get("represented")), Headline("groups", s.get("groups"))]
        head += [Headline(f"{c['label']}: circle score", c.get("score"), c.get("chance"), "random groups")
                 for c in circles]
        head += [Headline(f"{c['label']}: order", c.get("order"), c.get("order_chance"), "positions shuffled")
                 for c in circles]
        return Section(question="geometry", answer=f"{found}" + (f"; {rings}" if rings else ""), headline=head,
                       text="D = ‖W_i‖⁴ / Σ_j (W_i·W_j)²; the dotted fractions are regular polytopes' (docs/analyses.md).",
                       tables=["groups.parquet", "circles.parquet", "features.parquet"])

    def run(self, ctx: Context) -> Result:
        import numpy as np
        import polars as pl

        from codec_cli.errors import BadInput
        from codec_plugins.packing import open_packing

        p = ctx.params  # its values were checked when Params was filled
        squeezer = ctx.inputs["squeezer"]
        pk = open_packing(squeezer)
        F, M = pk.shape
        rep = pk.represented
        idx = np.flatnonzero(rep)
        if not len(idx):
            raise BadInput(f"{squeezer.path}: the squeezer represents no feature; there is no geometry to analyse")
        rng = np.random.default_rng(p.seed)

        # Dimensionality, from the effective map's diagonal and row (column) energies.
        diag = pk.diagonal()
        D = dimensionality(diag, pk.row_energy(), rep)
        D_col = None if pk.tied else dimensionality(diag, pk.column_energy(), rep)
        D_chance = chance_dimensionality(np.sqrt(np.clip(diag, 0, None)), rep, M, rng)

        # Groups: connected components of the interference graph on the represented features,
        # numbered by size (largest first), then by their smallest feature.
        U = unit(pk.W_enc[idx])
        comp, n_edges = components(U, p.interference)
        sizes = np.bincount(comp)
        first = np.full(len(sizes), len(idx))
        np.minimum.at(first, comp, np.arange(len(idx)))
        number = np.empty(len(sizes), dtype=np.int64)
        number[np.lexsort((first, -sizes))] = np.arange(len(sizes))
        comp = number[comp]
        outside = outside_cosine(U, comp)
        nulls = {}  # circle-score baselines by group size
        groups, angles = [], []
        for g, local in enumerate(np.split(np.argsort(comp, kind="stable"), np.cumsum(np.sort(sizes)[::-1])[:-1])):
            V = U[local]
            s = np.linalg.svd(V, compute_uv=False)
            rank = int((s >= p.rank_tol * s[0]).sum())
            cos = V @ V.T
            Dg = D[idx[local]]
            name, regular = name_group(len(local), rank, cos, Dg, p.regular_tol)
            off = cos[~np.eye(len(local), dtype=bool)]
            row = {"group": g, "name": name, "regular": regular, "size": len(local), "rank": rank,
                   "members": idx[local].tolist(), "expected_D": rank / len(local), "mean_D": Dg.mean(),
                   "min_D": Dg.min(), "max_D": Dg.max(), "mean_cos": off.mean() if len(off) else None,
                   "min_cos": off.min() if len(off) else None, "max_outside_cos": outside[local].max(),
                   "circle_planarity": None, "circle_roundness": None, "circle_score": None,
                   "circle_chance": None, "circle_p": None}
            if len(local) >= 3:
                score, (pl_, rd, _, theta) = circle_score(U, local[None])
                if len(local) not in nulls:
                    nulls[len(local)] = random_scores(U, len(local), None, p.random_groups, rng)
                c = against(score[0], nulls[len(local)])
                row.update(circle_planarity=pl_[0], circle_roundness=rd[0], circle_score=score[0],
                           circle_chance=c["chance"], circle_p=c["p"])
                angles += angle_rows(idx[local], member_angles(theta[0]), group=g)
            groups.append(row)

        # Circles of the labelled groups, in their order, against random groups in a random order;
        # their order also against their own positions shuffled, for a group can be a fine circle
        # (which random groups are not) in any order. The shuffles draw from a generator of their
        # own, so that they leave the random groups' draws as they were.
        labelled, ordered = ordered_groups(ctx.inputs.get("features"), p, rep, F, ctx.log)
        circles = []
        shuffle = np.random.default_rng((p.seed, 1))
        for label, (members, positions, period) in ordered.items():
            local = np.searchsorted(idx, members)
            score, (pl_, rd, od, theta) = circle_score(U, local[None], positions, period)
            c = against(score[0], random_scores(U, len(local), positions, p.random_groups, rng, period))
            o = against(od[0], *order_null(theta[0], positions, period, p.permutations, shuffle))
            circles.append({"label": label, "size": len(local), "members": members.tolist(),
                            "positions": positions.tolist(), "period": period, "planarity": pl_[0],
                            "roundness": rd[0], "order": od[0], "order_chance": o["chance"], "order_p": o["p"],
                            "score": score[0], **c})
            angles += angle_rows(members, member_angles(theta[0], positions, period), label=label,
                                 positions=positions)

        Drep = D[rep]
        named: dict[str, int] = {}
        for row in groups:
            named[row["name"]] = named.get(row["name"], 0) + 1
        pairs = len(idx) * (len(idx) - 1) / 2
        summary = {
            "features": F, "neurons": M, "represented": len(idx), "tied": pk.tied,
            "mean_D": Drep.mean(), "mean_D_chance": D_chance.mean(),
            "dimensions_per_feature": M / diag.sum(),  # D* = M / ‖W‖_F² when tied
            "groups": len(groups), "largest_group": int(sizes.max()),
            "edge_share": n_edges / pairs if pairs else None,
            "edge_share_chance": chance_edge_share(p.interference, M),
            "D_at": near_fractions(Drep, p.regular_tol),
            "D_at_chance": {k: round(v * len(Drep) / len(D_chance), 2)
                            for k, v in near_fractions(D_chance, p.regular_tol).items()},
            "named": dict(sorted(named.items(), key=lambda kv: (-kv[1], kv[0]))),
            "labelled": labelled,
            "circles": [{k: c[k] for k in ("label", "size", "score", "chance", "p", "order", "order_chance",
                                           "order_p")} for c in circles],
        }
        if D_col is not None:
            summary["mean_D_col"] = D_col[rep].mean()
        ctx.log(f"polytope: mean D {summary['mean_D']:.3f} (random codes {summary['mean_D_chance']:.3f}); "
                f"{len(groups)} groups: " + ", ".join(f"{v} {k}" for k, v in list(summary["named"].items())[:5]))
        if summary["edge_share_chance"] * (len(idx) - 1) > 1:
            ctx.log(f"polytope: random directions in {M} dimensions reach |cos| ≥ {p.interference} "
                    f"{summary['edge_share_chance']:.0%} of the time, so chance alone links the features into "
                    f"one group; -p interference=… higher finds tighter groups")
        for c in circles:
            ctx.log(f"polytope: {p.group_by} {c['label']} ({c['size']} features) circle score {c['score']:.3f}, "
                    f"random groups {_fmt(c['chance'])} (p {_fmt(c['p'])}); order {c['order']:.3f}, "
                    f"shuffled positions {_fmt(c['order_chance'])} (p {_fmt(c['order_p'])})")

        group_of = np.full(F, -1, dtype=np.int64)
        group_of[idx] = comp
        features = pl.DataFrame({"feature": np.arange(F, dtype=np.int32), "status": pk.status, "gain": diag,
                                 "D": pl.Series(D, nan_to_null=True), "group": group_of})
        features = features.with_columns(pl.when(pl.col("group") >= 0).then(pl.col("group")).alias("group"))
        if D_col is not None:
            features = features.with_columns(D_col=pl.Series(D_col, nan_to_null=True))
        figures = {"dimensionality": dimensionality_figure(Drep, D_chance, None if D_col is None else D_col[rep])}
        drawn = [row for row in groups if 2 <= row["size"] <= 16][:FIGURE_GROUPS]
        names = point_names(ctx.inputs.get("features"), [f for r in drawn for f in r["members"]]
                            + [f for c in circles for f in c["members"]])
        if drawn:
            figures["groups"] = groups_figure(drawn, pk.W_enc, names)
        if circles:
            figures["circles"] = circles_figure(circles, pk.W_enc, p.group_by, names)
        group_schema, circle_schema, angle_schema = schemas()
        return Result(summary=summary, figures=figures,
                      tables={"features": features, "groups": pl.DataFrame(groups, schema=group_schema),
                              "circles": pl.DataFrame(circles, schema=circle_schema),
                              "angles": pl.DataFrame(angles, schema=angle_schema)})


def angle_rows(features, angle, group=None, label=None, positions=None) -> list[dict]:
    """angles.parquet's rows for one circle: an unlabelled group's (by number) or a labelled one's (by label)."""
    return [{"group": group, "label": label, "feature": int(f), "angle": float(a),
             "position": None if positions is None else float(positions[k])}
            for k, (f, a) in enumerate(zip(features, angle))]


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.3g}"


def schemas():
    """The column types of groups.parquet, circles.parquet and angles.parquet, fixed even when a table is empty."""
    import polars as pl

    f, i = pl.Float64, pl.Int64
    groups = {"group": i, "name": pl.String, "regular": pl.Boolean, "size": i, "rank": i, "members": pl.List(i),
              "expected_D": f, "mean_D": f, "min_D": f, "max_D": f, "mean_cos": f, "min_cos": f,
              "max_outside_cos": f, "circle_planarity": f, "circle_roundness": f, "circle_score": f,
              "circle_chance": f, "circle_p": f}
    circles = {"label": pl.String, "size": i, "members": pl.List(i), "positions": pl.List(f), "period": i,
               "planarity": f, "roundness": f, "order": f, "order_chance": f, "order_p": f, "score": f, "chance": f,
               "p": f}
    angles = {"group": i, "label": pl.String, "feature": i, "angle": f, "position": f}
    return groups, circles, angles


# ----------------------------------------------------------------- figures


def dimensionality_figure(D, chance, D_col):
    import numpy as np
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4), layout="constrained")
    ax = fig.subplots()
    bins = (np.arange(44) - 0.5) * 0.025  # centred on multiples of 1/40: 3/8, 2/5, 1/2, 3/4, 1 fall mid-bin
    what = "Squeezer" if D_col is None else "Squeezer, row form"
    ax.hist(np.clip(D, 0, 1.05), bins=bins, color="tab:blue", alpha=0.8, label=f"{what} (mean {D.mean():.2f})")
    if D_col is not None:
        ax.hist(np.clip(D_col, 0, 1.05), bins=bins, histtype="step", color="tab:orange", linewidth=1.5,
                label=f"column form, untied (mean {D_col.mean():.2f})")
    ax.hist(np.clip(chance, 0, 1.05), bins=bins, weights=np.full(len(chance), len(D) / len(chance)),
            histtype="step", color="black", linewidth=1.5,
            label=f"chance: random codes, same norms (mean {chance.mean():.2f})")
    for _, v in REFERENCE:
        ax.axvline(v, color="grey", linestyle=":", linewidth=1)
    marks = ax.secondary_xaxis("top")  # the fractions named on a top axis, clear of the bars
    marks.set_xticks([v for _, v in REFERENCE], [name for name, _ in REFERENCE], fontsize=8)
    marks.tick_params(length=0)
    for label in marks.get_xticklabels():  # 3/8 and 2/5 sit close: push them apart
        label.set_horizontalalignment({"3/8": "right", "2/5": "left"}.get(label.get_text(), "center"))
    ax.set_xlabel("feature dimensionality D (represented features)")
    ax.set_ylabel("features")
    ax.legend(frameon=False, loc="upper right", fontsize=8)
    fig.suptitle("polytope: feature dimensionality; dotted, the fractions of regular packings", fontsize=11)
    return fig


def plane(V, centre: bool):
    """Coordinates of V's rows in their top-2 principal plane (through the origin unless centred)."""
    import numpy as np

    X = V - V.mean(0) if centre else V
    vt = np.linalg.svd(X, full_matrices=False)[2]
    P = X @ vt[:2].T
    return P if P.shape[1] == 2 else np.c_[P, np.zeros(len(P))]


def point_names(features, ids) -> dict[int, str]:
    """Each drawn feature's name on a figure: its id and the token it fires on most ("f140 april"),
    or the id alone when no features artifact with tokens was given."""
    from codec_cli.stages.cards import top_tokens

    tokens = top_tokens(features, sorted(set(ids))) if features is not None and ids else {}
    return {int(f): f"f{f} {tokens[f]}" if tokens.get(f) else f"f{f}" for f in ids}


def groups_figure(rows, W, names: dict[int, str]):
    from matplotlib.figure import Figure

    cols = min(4, len(rows))
    lines = (len(rows) + cols - 1) // cols
    fig = Figure(figsize=(3 * cols, 3.2 * lines + 0.4), layout="constrained")
    axes = fig.subplots(lines, cols, squeeze=False).ravel()
    for ax, row in zip(axes, rows):
        P = plane(unit(W[row["members"]]), centre=False)
        for (x, y), f in zip(P, row["members"]):
            ax.plot([0, x], [0, y], color="tab:blue", linewidth=1)
            ax.annotate(names.get(f, f"f{f}"), (x, y), textcoords="offset points", xytext=(3, 3), fontsize=8)
        ax.scatter(P[:, 0], P[:, 1], color="tab:blue", s=16, zorder=3)
        ax.scatter([0], [0], color="black", marker="+")
        ax.set(xlim=(-1.3, 1.3), ylim=(-1.3, 1.3), aspect="equal", xticks=[], yticks=[])
        ax.set_title(f"group {row['group']}: {row['name']}\n"
                     f"mean D {row['mean_D']:.2f}, regular {row['expected_D']:.2f}", fontsize=9)
    for ax in axes[len(rows):]:
        ax.axis("off")
    fig.suptitle("polytope: groups of interfering features, unit codes on their top-2 plane")
    return fig


def circles_figure(circles, W, group_by: str, names: dict[int, str]):
    import numpy as np
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4 * len(circles), 4.9), layout="constrained")
    for ax, c in zip(fig.subplots(1, len(circles), squeeze=False).ravel(), circles):
        P = plane(unit(W[c["members"]]), centre=True)
        loop = np.r_[np.arange(len(P)), 0]  # members come sorted by position: joined in order, and round again
        ax.plot(P[loop, 0], P[loop, 1], color="0.6", linewidth=1)
        # A cyclic colour map: a circle in order shows the colours going once round.
        ax.scatter(P[:, 0], P[:, 1], c=np.asarray(c["positions"]) / c["period"], cmap="twilight", vmin=0, vmax=1,
                   s=30, zorder=3, edgecolors="0.2", linewidths=0.5)
        for (x, y), pos, f in zip(P, c["positions"], c["members"]):
            ax.annotate(f"{pos:.1f} ({names.get(f, f'f{f}')})", (x, y), textcoords="offset points", xytext=(3, 3),
                        fontsize=7)
        ax.set(aspect="equal", xticks=[], yticks=[])
        ax.margins(0.15)
        ax.set_title(f"{group_by} {c['label']}: {c['size']} features\ncircle score {c['score']:.2f}; "
                     f"random groups {_fmt(c['chance'])}, p {_fmt(c['p'])}\norder {c['order']:.2f}; "
                     f"positions shuffled {_fmt(c['order_chance'])}, p {_fmt(c['order_p'])}", fontsize=9)
    fig.suptitle("polytope: labelled groups on their top-2 plane, joined in order")
    return fig
