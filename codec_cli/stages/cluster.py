"""`codec cluster`: the model's natural themes, as dense clusters of SAE atoms.

    codec cluster features/ --out themes/

Hand-made topic lists are brittle (seeds/000); here the atoms themselves are points and
the themes are where they crowd together. Each atom becomes a unit vector (`--embed`):
its decoder direction (as Engels et al. 2024, "Not All Language Model Features Are
Linear"), its encoder direction, its co-activation profile (the atoms it fires with:
positive PMI over blocks of `--window` tokens, reduced by a truncated SVD), or a blend.
The vectors are grouped (`--method`) by UMAP then HDBSCAN (McInnes et al.), by spectral
clustering on Engels et al.'s affinity 1 − arccos(cos)/π, or by their graph rule (each
atom joined to its nearest neighbours above a cosine, connected components). Whatever
the method, a group smaller than `--min-cluster-size` is noise (theme −1), never forced
into a theme; dead atoms are noise too.

Each theme is named by the tokens where its atoms fire most (from the features' token
tables) and listed with its strongest atoms; its coherence (mean within-theme cosine and
co-activation) sits beside random groups of the same size drawn from the atoms outside
it. Outputs: atoms.parquet, themes.parquet, summary.json and the theme map (map.png).
docs/cluster.md has every formula.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import polars as pl

from codec_cli import config, talk
from codec_cli.artifacts import ArtifactWriter, check_not_an_input, check_output, open_artifact
from codec_cli.config import ClusterConfig
from codec_cli.errors import BadInput
from codec_cli.stages.compare_dictionaries import unit
from codec_cli.talk import info

NOISE = -1
"""The theme of an atom that belongs to none."""
BLOCK = 1024
"""Rows per block of the exact nearest-neighbour search: memory is about 12 × BLOCK × atoms bytes."""
EXACT_KNN = 65_536
"""Up to this many atoms the nearest neighbours are exact (O(n² d) in BLAS); beyond, UMAP's own search."""
UNITS_PER_BLOCK = 1 << 16
"""Co-activation units folded into the PPMI counts at a time."""
MEMBERS = 400
"""Most members of one theme (or random group) whose pairs the coherence averages (a seeded sample beyond)."""
LABEL_TOKENS = 3
"""Top tokens in a theme's short label."""


# --------------------------------------------------------------------------- the atoms as vectors


def directions(features, which: str) -> np.ndarray:
    """[F, d] the unit decoder (or encoder) directions of the SAE the features were extracted with."""
    from codec_cli.sources import models

    handle, _ = models.reopen_sae(features, hint="re-extract with a reachable SAE, or use --embed coactivation, "
                                                 "which reads only the activations")
    sae = handle.sae
    W = sae.W_dec if which == "decoder" else sae.W_enc.T
    return unit(W.detach().float().cpu().numpy())


def ppmi(occ) -> object:
    """The positive pointwise mutual information of every pair of atoms that fires together,
    max(0, log(c_ij N / (n_i n_j))), as a scipy CSR matrix [F, F] with a zero diagonal. Counted
    a block of units at a time, so the memory is the pairs that co-occur, at most F²."""
    import scipy.sparse as sp

    A = occ.matrix.tocsr().astype(np.float64)
    F = A.shape[1]
    C = sp.csr_matrix((F, F))
    for start in range(0, A.shape[0], UNITS_PER_BLOCK):
        part = A[start:start + UNITS_PER_BLOCK]
        C = C + part.T @ part
    C = C.tocoo()
    n = occ.counts.astype(np.float64)
    off = (C.row != C.col) & (C.data > 0)
    r, c, v = C.row[off], C.col[off], C.data[off]
    pmi = np.log(v * occ.units / (n[r] * n[c]))
    keep = pmi > 0
    return sp.csr_matrix((pmi[keep], (r[keep], c[keep])), shape=(F, F))


def profiles(occ, dims: int, seed: int) -> np.ndarray:
    """[F, dims] unit co-activation profiles: the rows of the PPMI matrix reduced by a truncated
    SVD (U·Σ, Levy & Goldberg's word vectors, with atoms for words and blocks for contexts)."""
    from sklearn.decomposition import TruncatedSVD

    P = ppmi(occ)
    F = P.shape[0]
    dims = max(1, min(dims, F - 1))
    if P.nnz == 0:
        return np.zeros((F, dims), dtype=np.float32)
    return unit(TruncatedSVD(dims, random_state=seed).fit_transform(P))


def embedding(features, cfg: ClusterConfig, occ) -> np.ndarray:
    """[F, d] one unit vector per atom, as `cfg.embed` says."""
    blocks = [profiles(occ, cfg.profile_dims, cfg.seed) if part == "coactivation" else directions(features, part)
              for part in cfg.embed.split("+")]
    # Halved blocks: the cosine of the blend is the mean of the blocks' cosines.
    return unit(np.hstack([b / math.sqrt(len(blocks)) for b in blocks]))


# --------------------------------------------------------------------------- grouping


@dataclass
class Clustering:
    """The methods' common answer, over the atoms that were clustered."""

    labels: np.ndarray
    """[n] int: a theme, numbered from 0 by size (largest first), or NOISE."""
    probability: np.ndarray
    """[n] float in [0, 1]: HDBSCAN's membership strength; 1 for a member of a hard method, 0 for noise."""
    map: np.ndarray
    """[n, 2] float32: the atoms on the 2-d theme map (UMAP of the same vectors)."""
    nearest: np.ndarray
    """[n] each atom's cosine with its nearest neighbour."""
    isolation: float
    """The nearest-neighbour cosine below which an atom was made noise."""


def spectral_bytes(n: int) -> int:
    """What the spectral route holds: the dense n × n affinity (float64, sklearn's) and a copy."""
    return 2 * 8 * n * n


def _spectral(X: np.ndarray, n_themes: int, seed: int) -> np.ndarray:
    from sklearn.cluster import SpectralClustering

    cos = np.clip(X.astype(np.float64) @ X.T.astype(np.float64), -1.0, 1.0)
    affinity = 1.0 - np.arccos(cos) / np.pi  # Engels et al. 2024: angular similarity, in [0, 1]
    del cos
    return SpectralClustering(n_themes, affinity="precomputed", assign_labels="cluster_qr",
                              random_state=seed).fit_predict(affinity)


def nearest(X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices [n, k], cosines [n, k]): each row's k most similar other rows, most similar first,
    computed exactly in blocks of rows."""
    n = len(X)
    k = min(k, n - 1)
    idx = np.empty((n, k), dtype=np.int64)
    sim = np.empty((n, k), dtype=np.float32)
    for start in range(0, n, BLOCK):
        S = X[start:start + BLOCK] @ X.T
        rows = np.arange(len(S))
        S[rows, start + rows] = -np.inf
        top = np.argpartition(-S, k - 1, axis=1)[:, :k] if k < n - 1 else np.argsort(-S, axis=1)[:, :k]
        best = np.take_along_axis(S, top, 1)
        order = np.argsort(-best, axis=1, kind="stable")
        idx[start:start + BLOCK] = np.take_along_axis(top, order, 1)
        sim[start:start + BLOCK] = np.take_along_axis(best, order, 1)
    return idx, sim


def _graph(idx: np.ndarray, sim: np.ndarray, threshold: float) -> np.ndarray:
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    n = len(idx)
    keep = (sim > threshold).ravel()
    rows = np.repeat(np.arange(n), idx.shape[1])[keep]
    g = sp.coo_matrix((np.ones(len(rows)), (rows, idx.ravel()[keep])), shape=(n, n))
    return connected_components(g, directed=False)[1]


def neighbours(X: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices [n, k], cosines [n, k]) of each row's k nearest other rows: exact (BLAS, in blocks)
    up to EXACT_KNN rows, beyond that UMAP's nearest-neighbour descent (approximate, O(n log n))."""
    if len(X) <= EXACT_KNN:
        return nearest(X, k)
    from umap.umap_ import nearest_neighbors

    idx, dist, _ = nearest_neighbors(X, k + 1, "cosine", {}, False, np.random.RandomState(seed), n_jobs=1)
    return idx[:, 1:].astype(np.int64), (1.0 - dist[:, 1:]).astype(np.float32)


def isolation_level(n: int, d: int) -> float:
    """sqrt(2 ln n / d): about the largest cosine of one of n random directions in d dimensions with
    the others (each cosine is close to normal with variance 1/d; the extreme value of n of them)."""
    return math.sqrt(2 * math.log(max(n, 2)) / max(d, 1))


def renumber(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Groups smaller than `min_size` become noise; the rest are numbered by size (largest
    first, ties by their first atom), so that the numbering says nothing about the method."""
    out = np.full(len(labels), NOISE, dtype=np.int64)
    groups = [g for g in np.unique(labels[labels >= 0]) if (labels == g).sum() >= min_size]
    order = sorted(groups, key=lambda g: (-(labels == g).sum(), int(np.flatnonzero(labels == g)[0])))
    for new, g in enumerate(order):
        out[labels == g] = new
    return out


def cluster_vectors(X: np.ndarray, cfg: ClusterConfig) -> Clustering:
    """Group unit vectors X [n, d] into themes by `cfg.method`, and lay them out on the map."""
    import umap

    n = len(X)
    nn = min(cfg.neighbors, n - 1)
    idx, sim = neighbours(X, max(nn - 1, cfg.graph_neighbors), cfg.seed)
    # UMAP counts a point as its own first neighbour; handing it the neighbours spares it its search.
    knn = (np.hstack([np.arange(n)[:, None], idx[:, :nn - 1]]),
           np.hstack([np.zeros((n, 1), np.float32), 1.0 - sim[:, :nn - 1]]), None)
    with warnings.catch_warnings():  # UMAP warns of choices made here: a seed turns off its parallelism
        warnings.simplefilter("ignore")
        if cfg.method == "umap-hdbscan":
            import hdbscan

            low = umap.UMAP(n_neighbors=nn, n_components=min(cfg.components, max(n - 2, 1)), min_dist=0.0,
                            metric="cosine", random_state=cfg.seed, precomputed_knn=knn).fit_transform(X)
            found = hdbscan.HDBSCAN(min_cluster_size=cfg.min_cluster_size, min_samples=cfg.min_samples).fit(low)
            labels, probability = found.labels_, found.probabilities_.astype(np.float64)
        elif cfg.method == "spectral":
            labels = _spectral(X, min(cfg.themes or max(2, round(math.sqrt(n / 2))), n), cfg.seed)
            probability = np.ones(n)
        else:
            labels = _graph(idx[:, :cfg.graph_neighbors], sim[:, :cfg.graph_neighbors], cfg.graph_threshold)
            probability = np.ones(n)
        # UMAP gives every point neighbours, so a direction alike to none is pulled into some cluster;
        # one no closer to its nearest neighbour than random directions are to theirs is noise.
        level = isolation_level(n, X.shape[1]) if cfg.isolated is None else cfg.isolated
        close = sim[:, 0].astype(np.float64)
        labels = renumber(np.where(close < level, NOISE, np.asarray(labels)), cfg.min_cluster_size)
        probability = np.where(labels == NOISE, 0.0, probability)
        xy = umap.UMAP(n_neighbors=nn, n_components=2, min_dist=0.1, metric="cosine", random_state=cfg.seed,
                       precomputed_knn=knn).fit_transform(X).astype(np.float32)
    return Clustering(labels, probability, xy, close, level)


# --------------------------------------------------------------------------- what the themes are


@dataclass
class Tokens:
    """Where each atom fires, by token: read from the features' token tables."""

    mass: object
    """scipy CSR [F, V]: each atom's summed activation on each token of the vocabulary."""
    count: np.ndarray
    """[V] how often each token occurs among the rows."""
    names: list
    """[V] each token's text (None where it never occurs)."""

    def top(self, weights, n: int, min_count: int) -> list[list[int]]:
        """Per row of `weights` [G, F] (a sparse indicator of atoms): the ids of the n tokens where
        those atoms fire most, by mean activation per occurrence of the token (mass / count), among
        tokens seen at least min_count times."""
        M = (weights @ self.mass).tocsr()
        out = []
        for g in range(M.shape[0]):
            lo, hi = M.indptr[g], M.indptr[g + 1]
            tok, val = M.indices[lo:hi], M.data[lo:hi]
            ok = (self.count[tok] >= max(min_count, 1)) & (val > 0)
            tok, score = tok[ok], val[ok] / self.count[tok[ok]]
            order = np.lexsort((tok, -score))[:n]
            out.append([int(t) for t in tok[order]])
        return out


def tokens(features, F: int) -> Tokens | None:
    """The atom × token activation mass, or None where the token tables do not name tokens."""
    import scipy.sparse as sp

    tables, shards = features.files("tokens/"), features.files("shards/")
    if not tables or len(tables) != len(shards):
        return None
    keys, weights, ids, names = [], [], [], {}
    for table, shard in zip(tables, shards):
        t = features.table(table)
        if "token_id" not in t.columns or "token" not in t.columns:
            return None
        tok = t["token_id"].to_numpy().astype(np.int64)
        ids.append(tok)
        for i, s in zip(*np.unique(tok, return_index=True)):
            names.setdefault(int(i), t["token"][int(s)])
        top = features.shard(shard)
        used = top.indices >= 0
        rows, _ = np.nonzero(used)
        keys.append(top.indices[used].astype(np.int64) * (1 << 32) + tok[rows])
        weights.append(top.values[used].astype(np.float64))
    key, at = np.unique(np.concatenate(keys), return_inverse=True)
    mass = np.bincount(at, np.concatenate(weights))
    tok = np.concatenate(ids)
    V = int(tok.max()) + 1 if len(tok) else 0
    count = np.bincount(tok, minlength=V).astype(np.float64)
    M = sp.csr_matrix((mass, (key >> 32, key & 0xFFFFFFFF)), shape=(F, V))
    return Tokens(M, count, [names.get(v) for v in range(V)])


def indicator(groups: list[np.ndarray], F: int):
    """A sparse [len(groups), F] matrix of ones: row g marks the atoms of group g."""
    import scipy.sparse as sp

    rows = np.concatenate([np.full(len(g), i) for i, g in enumerate(groups)]) if groups else np.zeros(0, int)
    cols = np.concatenate(groups) if groups else np.zeros(0, int)
    return sp.csr_matrix((np.ones(len(cols)), (rows, cols)), shape=(len(groups), F))


def coherence(members: np.ndarray, X: np.ndarray, occ, rng) -> tuple[float, float]:
    """(mean pairwise cosine of the members' vectors, mean pairwise NPMI of their firing).
    NPMI_ij = log(p_ij / (p_i p_j)) / −log p_ij over co-activation units, −1 for atoms that never
    fire together, in [−1, 1]. Over a seeded sample of MEMBERS atoms for larger groups."""
    if len(members) > MEMBERS:
        members = np.sort(rng.choice(members, MEMBERS, replace=False))
    if len(members) < 2:
        return float("nan"), float("nan")
    pairs = np.triu_indices(len(members), 1)
    cos = float((X[members] @ X[members].T)[pairs].mean())
    c = occ.among(members).astype(np.float64)
    N = max(occ.units, 1)
    p = np.diag(c) / N
    pij = c[pairs] / N
    with np.errstate(divide="ignore", invalid="ignore"):
        npmi = np.where(pij > 0, np.log(pij / (p[pairs[0]] * p[pairs[1]])) / -np.log(pij), -1.0)
    npmi = np.where(pij >= 1, 1.0, npmi)  # always together: log p_ij = 0
    return cos, float(npmi.mean())


def themes_table(labels, probability, alive, X, occ, toks, freq, cfg, rng) -> dict:
    """One row per theme: size, label, top tokens and atoms, coherence beside random groups."""
    T = int(labels.max()) + 1 if (labels >= 0).any() else 0
    F = len(labels)
    groups = [np.flatnonzero(labels == t) for t in range(T)]
    top_tokens = toks.top(indicator(groups, F), cfg.top, cfg.min_count) if toks else [[] for _ in groups]
    rows = {k: [] for k in ("theme", "size", "label", "top_tokens", "top_token_ids", "top_atoms", "cosine",
                            "cosine_baseline",
                            "cosine_p", "coactivation", "coactivation_baseline", "coactivation_p")}
    pool = np.flatnonzero(alive)
    for t, g in enumerate(groups):
        order = np.lexsort((g, -freq[g], -probability[g]))
        atoms = g[order][:cfg.top]
        cos, co = coherence(g, X, occ, rng)
        outside = np.setdiff1d(pool, g)  # a true null: never the theme's own atoms
        # coherence() samples MEMBERS atoms of a larger group, so a draw of that many is the same null.
        draws = [coherence(np.sort(rng.choice(outside, min(len(g), MEMBERS), replace=False)), X, occ, rng)
                 for _ in range(cfg.draws)] if len(outside) >= len(g) else []
        base = np.array(draws).reshape(-1, 2)
        names = [str(toks.names[i]) for i in top_tokens[t]]
        words = names[:LABEL_TOKENS] or [f"f{a}" for a in atoms[:LABEL_TOKENS]]
        rows["theme"].append(t)
        rows["size"].append(len(g))
        rows["label"].append(" / ".join(map(str, words)))
        rows["top_tokens"].append(names)
        rows["top_token_ids"].append(top_tokens[t])
        rows["top_atoms"].append(atoms.astype(np.int32).tolist())
        for j, (name, value) in enumerate((("cosine", cos), ("coactivation", co))):
            b = base[:, j] if len(base) else np.zeros(0)
            rows[name].append(value)
            rows[f"{name}_baseline"].append(float(b.mean()) if len(b) else None)
            rows[f"{name}_p"].append(float((1 + (b >= value).sum()) / (1 + len(b))) if len(b) else None)
    return rows


# --------------------------------------------------------------------------- the stage


def frequencies(features, F: int) -> np.ndarray:
    """[F] how often each atom fires (features.parquet where extract wrote it, else counted)."""
    if "features.parquet" in features.files():
        t = features.table("features.parquet", ["feature", "count"])
        out = np.zeros(F)
        out[t["feature"].to_numpy()] = t["count"].to_numpy()
        return out
    out = np.zeros(F)
    for shard in features.topk():
        out += np.bincount(shard.indices[shard.indices >= 0], minlength=F)
    return out


def summarize(rows: dict, labels: np.ndarray, alive: np.ndarray, cfg: ClusterConfig, extra: dict) -> dict:
    sizes = np.array(rows["size"], dtype=float)
    T = len(sizes)

    def side(name: str) -> dict:
        v = np.array([x for x in rows[name] if x is not None and np.isfinite(x)], dtype=float)
        b = np.array([x for x in rows[f"{name}_baseline"] if x is not None and np.isfinite(x)], dtype=float)
        p = np.array([x for x in rows[f"{name}_p"] if x is not None], dtype=float)
        return {"mean": float(v.mean()) if len(v) else None, "baseline": float(b.mean()) if len(b) else None,
                "above_chance": float((p <= 0.05).mean()) if len(p) else None}

    return {"atoms": len(labels), "alive": int(alive.sum()), "themes": T,
            "noise": int((labels[alive] == NOISE).sum()),
            "noise_share": float((labels[alive] == NOISE).mean()) if alive.any() else None,
            "sizes": {"min": int(sizes.min()), "median": float(np.median(sizes)), "max": int(sizes.max())} if T else None,
            "method": cfg.method, "embed": cfg.embed,
            "coherence": {"cosine": side("cosine"), "coactivation": side("coactivation"),
                          "baseline": f"{cfg.draws} random groups of each theme's size from the atoms outside it"},
            "largest": [{"theme": t, "size": s, "label": lab}
                        for t, s, lab in zip(rows["theme"][:5], rows["size"][:5], rows["label"][:5])],
            **extra}


@talk.reports
def cluster(cfg: ClusterConfig) -> dict:
    """Cluster a features artifact's atoms into themes; write the themes artifact at `cfg.out`."""
    from codec_plugins.cooccurrence import occurrences

    check_output(cfg.out, "themes")
    check_not_an_input(cfg.out, [cfg.features])
    features = open_artifact(cfg.features, "features")
    F = int(features.attrs["d_sae"])
    if cfg.method == "spectral" and cfg.themes is not None and cfg.themes > F:
        raise BadInput(f"--themes {cfg.themes} is more than the {F} atoms of {features.path}")
    occ = occurrences(features, cfg.window, 0.0)
    freq = frequencies(features, F)
    X = embedding(features, cfg, occ)
    alive = (freq > 0) & (np.abs(X).sum(1) > 0)
    n, least = int(alive.sum()), max(cfg.min_cluster_size, 4)
    if int((freq > 0).sum()) < least:
        raise BadInput(f"{features.path}: only {int((freq > 0).sum())} of its {F} atoms ever fire; clustering needs "
                       f"at least {least}", hint="extract more tokens, or lower --min-cluster-size")
    if n < least:
        raise BadInput(f"{features.path}: only {n} of its atoms fire together with another in blocks of "
                       f"{cfg.window} token(s), too few for co-activation profiles",
                       hint="use a larger --window (0: whole contexts), or --embed decoder")
    extra = {}
    if cfg.method == "spectral":
        extra["spectral_affinity_bytes"] = spectral_bytes(n)
        info(f"cluster: spectral holds a dense {n:,} × {n:,} affinity, about {spectral_bytes(n) / 2**30:.2f} GiB")
    info(f"cluster: {n:,} of {F:,} atoms ({cfg.embed}, {X.shape[1]}-d) by {cfg.method}")
    found = cluster_vectors(X[alive], cfg)
    labels = np.full(F, NOISE, dtype=np.int64)
    probability = np.zeros(F)
    xy = np.full((F, 2), np.nan, dtype=np.float32)
    labels[alive], probability[alive], xy[alive] = found.labels, found.probability, found.map
    closest = np.full(F, np.nan)
    closest[alive] = found.nearest
    extra |= {"isolation": found.isolation, "isolated": int((found.nearest < found.isolation).sum())}

    toks = tokens(features, F)
    rng = np.random.default_rng(cfg.seed)
    rows = themes_table(labels, probability, alive, X, occ, toks, freq, cfg, rng)
    atom_words = toks.top(indicator([np.array([f]) for f in range(F)], F), LABEL_TOKENS, cfg.min_count) if toks \
        else [[] for _ in range(F)]
    label_of = dict(zip(rows["theme"], rows["label"]))
    atoms = pl.DataFrame({
        "atom": np.arange(F, dtype=np.int32), "theme": labels.astype(np.int32),
        "label": [label_of.get(int(t)) for t in labels], "probability": probability,
        "alive": alive, "count": freq.astype(np.int64), "nearest": pl.Series(closest).fill_nan(None),
        "x": pl.Series(np.where(alive, xy[:, 0], np.nan)).fill_nan(None),
        "y": pl.Series(np.where(alive, xy[:, 1], np.nan)).fill_nan(None),
        "top_tokens": [[str(toks.names[i]) for i in ws] for ws in atom_words]})
    table = pl.DataFrame(rows, schema_overrides={"top_tokens": pl.List(pl.String), "top_token_ids": pl.List(pl.Int64),
                                                 "top_atoms": pl.List(pl.Int32)},
                         strict=False)
    summary = summarize(rows, labels, alive, cfg, extra)
    with ArtifactWriter(cfg.out, "themes", command="codec cluster", params=config.to_dict(cfg), inputs=[features],
                        attrs={"atoms": F, "themes": summary["themes"], "method": cfg.method, "embed": cfg.embed,
                               "sae": features.attrs.get("sae"), "hook": features.attrs.get("hook")}) as w:
        w.write_table("atoms.parquet", atoms)
        w.write_table("themes.parquet", table)
        w.write_json("summary.json", summary)
        w.write_figure("map.png", theme_map(atoms, table, summary))
    info(f"cluster: {summary['themes']} themes, {summary['noise']} noise atoms -> {cfg.out}")
    return summary


# --------------------------------------------------------------------------- the picture


LABELLED = 24
"""Themes named on the map (the largest)."""


def theme_map(atoms: pl.DataFrame, themes: pl.DataFrame, summary: dict):
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 8), layout="constrained")
    ax = fig.subplots()
    live = atoms.filter(pl.col("alive"))
    x, y, t = live["x"].to_numpy(), live["y"].to_numpy(), live["theme"].to_numpy()
    noise = t == NOISE
    ax.scatter(x[noise], y[noise], s=4, c="0.8", linewidths=0, label=f"noise ({int(noise.sum())} atoms)")
    palette = colormaps["tab20"].colors

    def colour(theme: int):  # neighbouring numbers (similar sizes) get distant colours
        return palette[(theme * 7) % len(palette)]

    ax.scatter(x[~noise], y[~noise], s=14, c=np.array([colour(v) for v in t[~noise]]).reshape(-1, 3), linewidths=0)
    for row in themes.head(LABELLED).iter_rows(named=True):
        inside = t == row["theme"]
        cx, cy = float(np.median(x[inside])), float(np.median(y[inside]))
        # Above the theme's middle, so that a tight theme's points stay in sight.
        ax.annotate(f"{row['label']} ({row['size']})", (cx, cy), xytext=(0, 7), textcoords="offset points",
                    fontsize=8, ha="center", va="bottom",
                    bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": colour(row["theme"]), "lw": 1.5,
                          "alpha": 0.85})
    ax.set_xticks([])
    ax.set_yticks([])
    more = f"; the {LABELLED} largest named" if summary["themes"] > LABELLED else ""
    ax.set_title(f"theme map: {summary['themes']} themes over {summary['alive']} atoms "
                 f"({summary['embed']}, {summary['method']}){more}")
    ax.legend(frameon=False, loc="lower right", fontsize=8)
    return fig
