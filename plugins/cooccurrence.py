"""How often chosen pairs of features fire together, counted from the sparse features.

The features are read once into a sparse boolean matrix A [units × F] (a unit is one
token, or a block of `window` consecutive tokens of one context), stored by column.
A pair's count is then the size of the intersection of two columns, so the work is
Σ over the pairs asked for of (n_i + n_j), the stored activations of the two
features: it grows with the activations stored, never with F² (bench/cooccurrence.py).
A^T A, the dense F×F co-occurrence matrix, is never formed.
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


def occurrences(features, window: int = 1, threshold: float = 0.0) -> Occurrences:
    """Read a features artifact's top-k shards into an `Occurrences`.

    A feature fires where its activation exceeds `threshold` times its largest one
    (features.parquet's `max`, else the largest stored): weak activations far below a
    feature's typical scale are often the SAE's bleed between neighbours, not the concept.

    With window > 1 the token tables place each row in its context (`window`, else `doc`)
    at `pos`; a unit is the block of `window` positions pos // window of that context.
    """
    import numpy as np
    import scipy.sparse as sp

    if window < 1:
        raise BadInput(f"window must be at least 1 token, not {window}")
    F = features.attrs["d_sae"]
    units, feats, offset = [], [], 0
    keys = []
    tables = features.files("tokens/")
    shards = features.files("shards/")
    if window > 1 and len(tables) != len(shards):
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
        if window > 1:
            tokens = features.table(tables[s])
            context = "window" if "window" in tokens.columns else "doc"
            if context not in tokens.columns or "pos" not in tokens.columns:
                raise BadInput(f"{features.path / tables[s]}: needs `doc` (or `window`) and `pos` columns "
                               f"for window={window}")
            keys.append((tokens[context].to_numpy().astype(np.int64),
                         tokens["pos"].to_numpy().astype(np.int64) // window))
        fired = (shard.indices >= 0) & (shard.values != 0)
        fired &= shard.values > threshold * top[np.maximum(shard.indices, 0)]
        rows, _ = np.nonzero(fired)
        units.append(rows + offset)
        feats.append(shard.indices[fired].astype(np.int64))
        offset += n
    unit = np.concatenate(units) if units else np.zeros(0, dtype=np.int64)
    feat = np.concatenate(feats) if feats else np.zeros(0, dtype=np.int64)
    total = offset
    if window > 1 and keys:
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


def exclusive_p(c: np.ndarray, n_i: np.ndarray, n_j: np.ndarray, units: int) -> np.ndarray:
    """P(C ≤ c) if j's n_j units fell among the N at random, each holding i with chance
    n_i / N: the binomial lower tail, small when i and j avoid each other. (The exact
    law is hypergeometric, whose tail is thinner: the binomial errs towards calling a
    pair not exclusive, and is a hundred times faster to evaluate.)"""
    from scipy.stats import binom

    return binom.cdf(c, n_j, n_i / max(units, 1))
