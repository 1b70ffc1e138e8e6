"""How often chosen pairs of features fire together, counted from the sparse features.

The features are read once into a sparse boolean matrix A [units × F] (a unit is one
token, a block of `window` consecutive tokens of one context, or a whole context), stored
by column.
A pair's count is then the size of the intersection of two columns, so the work is
Σ over the pairs asked for of (n_i + n_j), the stored activations of the two
features: it grows with the activations stored, never with F² (bench/cooccurrence.py).
A^T A, the dense F×F co-occurrence matrix, is never formed; `among` forms it for a few
hundred chosen features at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from codec_cli.errors import BadInput

if TYPE_CHECKING:
    import numpy as np

CHUNK = 1 << 22
"""Stored activations gathered per step of `Occurrences.pairs` (bounds its memory)."""


@dataclass(frozen=True)
class Occurrences:
    """In which units each feature fires."""

    matrix: object
    """scipy.sparse CSC matrix [units, F] of ones."""
    units: int
    window: int

    @property
    def counts(self) -> np.ndarray:
        """n_i: the units where feature i fires."""
        import numpy as np

        return np.diff(self.matrix.indptr)

    def pairs(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """c_ij: the units where both i and j fire, for each pair (i[p], j[p])."""
        import numpy as np

        i, j = np.asarray(i, dtype=np.int64), np.asarray(j, dtype=np.int64)
        out = np.zeros(len(i), dtype=np.int64)
        n = self.counts
        cost = np.cumsum(n[i] + n[j])
        cuts = np.searchsorted(cost, np.arange(CHUNK, cost[-1] if len(cost) else 0, CHUNK))
        for part in np.split(np.arange(len(i)), np.unique(cuts)):
            if len(part):
                both = self.matrix[:, i[part]].multiply(self.matrix[:, j[part]])
                out[part] = np.asarray(both.sum(0)).ravel()
        return out

    def among(self, features: np.ndarray) -> np.ndarray:
        """c_ij for every pair of the given features at once: an [r, r] int64 matrix (its
        diagonal is n_i). Costs Σ over units of (members firing there)², not r² intersections."""
        import numpy as np

        cols = self.matrix[:, np.asarray(features, dtype=np.int64)]
        return np.asarray((cols.T @ cols).todense(), dtype=np.int64)


def occurrences(features, window: int = 1, threshold: float = 0.0) -> Occurrences:
    """Read a features artifact's top-k shards into an `Occurrences`.

    A feature fires where its activation exceeds `threshold` times its largest one
    (features.parquet's `max`, else the largest stored): weak activations far below a
    feature's typical scale are often the SAE's bleed between neighbours, not the concept.

    With window > 1 the token tables place each row in its context (`window`, else `doc`)
    at `pos`; a unit is the block of `window` positions pos // window of that context.
    window = 0 makes the whole context one unit (exclusivity planted or expected per
    document, such as the themes world's places).
    """
    import numpy as np
    import scipy.sparse as sp

    if window < 0:
        raise BadInput(f"window must be at least 1 token (or 0: the whole context), not {window}")
    F = features.attrs["d_sae"]
    units, feats, offset = [], [], 0
    keys = []
    tables = features.files("tokens/")
    shards = features.files("shards/")
    if window != 1 and len(tables) != len(shards):
        raise BadInput(f"{features.path}: window={window} needs a token table per shard to know the contexts",
                       hint="use window=1, or extract with codec extract")
    top = np.zeros(F, dtype=np.float32)
    if threshold > 0:
        if "features.parquet" in features.files():
            table = features.table("features.parquet", ["feature", "max"])
            top[table["feature"].to_numpy()] = table["max"].to_numpy()
        else:
            for shard in features.topk():
                np.maximum.at(top, shard.indices[shard.indices >= 0], shard.values[shard.indices >= 0])
    for s, shard in enumerate(features.topk()):
        n = len(shard.indices)
        if window != 1:
            tokens = features.table(tables[s])
            context = "window" if "window" in tokens.columns else "doc"
            if context not in tokens.columns or "pos" not in tokens.columns:
                raise BadInput(f"{features.path / tables[s]}: needs `doc` (or `window`) and `pos` columns "
                               f"for window={window}")
            pos = tokens["pos"].to_numpy().astype(np.int64)
            keys.append((tokens[context].to_numpy().astype(np.int64), pos // window if window else pos * 0))
        fired = (shard.indices >= 0) & (shard.values != 0)
        fired &= shard.values > threshold * top[np.maximum(shard.indices, 0)]
        rows, _ = np.nonzero(fired)
        units.append(rows + offset)
        feats.append(shard.indices[fired].astype(np.int64))
        offset += n
    unit = np.concatenate(units) if units else np.zeros(0, dtype=np.int64)
    feat = np.concatenate(feats) if feats else np.zeros(0, dtype=np.int64)
    total = offset
    if window != 1 and keys:
        context = np.concatenate([c for c, _ in keys])
        block = np.concatenate([b for _, b in keys])
        _, of_row = np.unique(context * (int(block.max()) + 1) + block, return_inverse=True)
        unit, total = of_row.ravel()[unit], int(of_row.max()) + 1
    A = sp.csc_matrix((np.ones(len(unit), dtype=np.int32), (unit, feat)), shape=(total, F))
    A.sum_duplicates()
    A.data[:] = 1  # a feature firing twice in one unit still counts once
    return Occurrences(A, total, window)


def expected(n_i: np.ndarray, n_j: np.ndarray, units: int) -> np.ndarray:
    """E[c_ij] if i and j fired independently: n_i n_j / N."""
    return n_i.astype(float) * n_j / max(units, 1)


def exclusive_p(c: np.ndarray, n_i: np.ndarray, n_j: np.ndarray, units: int, exact_below: float = 1.0
                ) -> np.ndarray:
    """P(C ≤ c) if j's n_j units fell among the N at random: the exact hypergeometric lower
    tail (Fisher's one-sided test), small when i and j avoid each other.

    Summed term by term from the lowest possible count, with the ratio of successive terms
    (n_i − x)(n_j − x) / ((x + 1)(N − n_i − n_j + x + 1)), in logs so that no term underflows:
    the work is Σ c_ij over the pairs summed. scipy's hypergeom.cdf took 200 s for 300,000
    pairs; this takes well under one. Only pairs with c < exact_below · E[c] are summed
    (the or-gate passes its max_lift: no other pair can be called exclusive); the rest get
    the binomial tail, close to the exact one and conservative (the hypergeometric tail is
    the thinner), at no cost."""
    import numpy as np
    from scipy.special import gammaln
    from scipy.stats import binom

    N = float(max(units, 1))
    c, a, b = (np.asarray(v, dtype=np.float64) for v in (c, n_i, n_j))
    below = c < exact_below * a * b / N
    out = np.empty(len(c))
    out[~below] = binom.cdf(c[~below], b[~below], a[~below] / N)
    low = np.flatnonzero(below)
    if not len(low):
        return out
    c, a, b = c[low], a[low], b[low]
    x = np.maximum(0.0, a + b - N)  # the smallest count possible

    def lchoose(n, k):
        return gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)

    term = lchoose(a, x) + lchoose(N - a, b - x) - lchoose(N, b)
    tail = term.copy()
    live = np.flatnonzero(x < c)
    while len(live):
        xl = x[live]
        term[live] += np.log((a[live] - xl) * (b[live] - xl)) - np.log((xl + 1) * (N - a[live] - b[live] + xl + 1))
        x[live] += 1
        tail[live] = np.logaddexp(tail[live], term[live])
        live = live[x[live] < c[live]]
    out[low] = np.minimum(np.exp(tail), 1.0)
    return out
