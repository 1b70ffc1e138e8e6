"""What a Squeezer packed: its feature codes, its effective map, which features share
a neuron, and what each feature fires on. Shared by the built-in analyses.

Notation (docs/analyses.md): the Squeezer encodes h = act(x W_enc + b_enc) and decodes
x' = ReLU(h W_dec + b_dec), with W_enc [F, M] and W_dec [M, F] (W_dec = W_encᵀ when
tied). Feature i's *code* is row i of W_enc: the neuron pattern it writes. The
*effective map* is W_enc W_dec [F, F]; entry (i, j) is how much feature i's input
moves feature j's output, W_i·W_j when tied. It is never formed whole: at F = 24,576 it
would be 2.4 GB, and every quantity codec needs from it is a row sum, a diagonal or a
few chosen entries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from codec_cli.errors import BadInput

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class Packing:
    """A Squeezer's weights and per-feature facts, as float64 numpy arrays."""

    W_enc: np.ndarray
    """[F, M] the feature codes."""
    W_dec: np.ndarray
    """[M, F] the read-out directions."""
    b_enc: np.ndarray
    """[M] the neurons' biases (a ReLU neuron's firing threshold, ≤ 0)."""
    typical: np.ndarray
    """[F] each feature's mean activation where it fires, in the Squeezer's input units."""
    tied: bool
    neuron_act: str
    status: np.ndarray
    """[F] "represented", "dropped" or "never fired" (features.parquet)."""
    frequency: np.ndarray
    """[F] how often each feature fires in the features it was trained on."""
    importance: np.ndarray
    """[F] the loss weight of each feature (ones for uniform importance)."""
    mse: np.ndarray
    """[F] the Squeezer's held-out squared error per feature (scaled units)."""

    @property
    def shape(self) -> tuple[int, int]:
        return self.W_enc.shape

    @property
    def represented(self) -> np.ndarray:
        return self.status == "represented"

    def diagonal(self) -> np.ndarray:
        """The map's diagonal (W_enc W_dec)_ii: each feature's round-trip gain."""
        return (self.W_enc * self.W_dec.T).sum(1)

    def entries(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """The map's entries (W_enc W_dec)_ij for the index pairs (i, j)."""
        return (self.W_enc[i] * self.W_dec.T[j]).sum(1)

    def row_energy(self) -> np.ndarray:
        """Σ_j (W_enc W_dec)_ij² per i, through the M×M Gram matrix: O(F·M²), not O(F²·M)."""
        return ((self.W_enc @ (self.W_dec @ self.W_dec.T)) * self.W_enc).sum(1)

    def column_energy(self) -> np.ndarray:
        """Σ_j (W_enc W_dec)_ji² per i."""
        return ((self.W_dec.T @ (self.W_enc.T @ self.W_enc)) * self.W_dec.T).sum(1)

    def sign_free(self) -> bool:
        """Whether a neuron's sign means nothing: linear neurons can be rotated freely."""
        return self.neuron_act == "linear"

    def basis(self) -> str:
        """What a neuron of this Squeezer means, for every summary that counts per neuron."""
        return ("arbitrary (linear neurons: any rotation of them fits as well, so per-neuron counts describe one "
                "basis of many; squeeze with --neuron-act relu for a privileged one)" if self.sign_free()
                else "privileged (ReLU neurons with a firing threshold)")

    def drive(self, W_enc: np.ndarray | None = None) -> np.ndarray:
        """[F, M] what neuron n does when feature i fires alone at its typical strength a_i.

        ReLU neurons: ReLU(a_i W_enc[i, n] + b_enc[n]), the neuron's actual activation, so a
        feature below the neuron's threshold drives nothing and a negative weight inhibits.
        Linear neurons: |a_i W_enc[i, n]|, the size of the response, whose sign is arbitrary.
        `W_enc` replaces the Squeezer's codes (e.g. rotated ones)."""
        import numpy as np

        W = self.W_enc if W_enc is None else W_enc
        pre = self.typical[:, None] * W
        return np.abs(pre) if self.sign_free() else np.maximum(pre + self.b_enc[None, :], 0.0)


def open_packing(squeezer) -> Packing:
    """Read a squeezer artifact's weights and features table."""
    import numpy as np

    w = squeezer.tensors("weights.safetensors", {"W_enc": (("float32",), 2), "W_dec": (("float32",), 2)})
    feats = squeezer.table("features.parquet", ["feature", "status", "frequency", "mse"]).sort("feature")
    W_enc = w["W_enc"].astype(np.float64)
    W_dec = w["W_dec"].astype(np.float64)
    F, M = W_enc.shape
    if W_dec.shape != (M, F) or len(feats) != F:
        raise BadInput(f"{squeezer.path}: weights and features.parquet disagree on the number of features",
                       hint="re-run codec squeeze")
    b_enc = w.get("b_enc")
    scale = w.get("scale")
    # Squeezers written before features.parquet kept `mean` take one input unit as typical
    # (a feature's largest activation under --rescale max).
    typical = np.ones(F)
    if "mean" in feats.columns:
        typical = feats["mean"].to_numpy().astype(np.float64) / (np.ones(F) if scale is None else scale.astype(np.float64))
    imp = w.get("importance")
    return Packing(W_enc=W_enc, W_dec=W_dec, b_enc=np.zeros(M) if b_enc is None else b_enc.astype(np.float64),
                   typical=typical, tied=bool(squeezer.attrs.get("tied", True)),
                   neuron_act=str(squeezer.attrs.get("neuron_act", "linear")),
                   status=feats["status"].to_numpy(), frequency=feats["frequency"].to_numpy().astype(np.float64),
                   importance=np.ones(F) if imp is None else imp.astype(np.float64),
                   mse=feats["mse"].to_numpy().astype(np.float64))



def refuse_unless(ok: bool, plugin: str, key: str, value, rule: str) -> None:
    """A parameter check for a plugin's Params.__post_init__: filling Params happens before
    any plugin runs, so a bad `-p` costs nothing and leaves no output (exit 2)."""
    if not ok:
        raise BadInput(f"{plugin + ': ' if plugin else ''}-p {key}={value!r}: {rule}")


@dataclass(frozen=True)
class Roommates:
    """The roommate rule's parameters, shared by every analysis that reads roommates, so
    that one `-p relative=…` sets them all alike."""

    relative: float = 0.3
    """A neuron carries a feature whose drive (its activation when the feature fires alone) is at least
    this share of the neuron's largest …"""
    absolute: float = 0.05
    """… and at least this, in neuron activation units."""

    def __post_init__(self) -> None:
        refuse_unless(0 <= self.relative <= 1, "", "relative", self.relative,
                      "the roommate rule's share of a neuron's largest weight must be between 0 and 1")
        refuse_unless(self.absolute >= 0, "", "absolute", self.absolute, "a |code weight| cannot be negative")


def members(drive: np.ndarray, relative: float, absolute: float, among: np.ndarray | None = None):
    """Which features each neuron carries, from `Packing.drive` [F, M]: drive ≥ `absolute`
    and ≥ `relative` times the neuron's largest. Returns (feature, neuron, drive) arrays,
    sorted by neuron then by drive, largest first. `among` masks the features allowed."""
    import numpy as np

    a = drive if among is None else np.where(among[:, None], drive, 0.0)
    top = a.max(0, keepdims=True)
    f, n = np.nonzero((a >= absolute) & (a >= relative * top) & (a > 0))
    order = np.lexsort((-a[f, n], n))
    f, n = f[order], n[order]
    return f, n, a[f, n]


def roommate_pairs(feature: np.ndarray, neuron: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of features that share a neuron: (i, j, neuron) with i < j, one row per
    neuron they share."""
    import numpy as np

    out_i, out_j, out_n = [], [], []
    bounds = np.flatnonzero(np.diff(neuron)) + 1
    for group, n in zip(np.split(feature, bounds), np.split(neuron, bounds)):
        if len(group) < 2:
            continue
        a, b = np.triu_indices(len(group), 1)
        lo, hi = np.minimum(group[a], group[b]), np.maximum(group[a], group[b])
        out_i.append(lo)
        out_j.append(hi)
        out_n.append(np.full(len(a), n[0]))
    if not out_i:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    return np.concatenate(out_i), np.concatenate(out_j), np.concatenate(out_n)


def label_mass(features, columns: list[str], d_sae: int):
    """Where each feature's activation mass lands, by the token tables' ground-truth columns
    (e.g. the themes world's `cycle` and `cycle_position`).

    Returns (keys, mass [len(keys), d_sae], total [d_sae]): the combinations of the columns'
    values seen (sorted; tokens with a null in any column are left out of every key), the
    mass each feature puts on each, and each feature's whole mass; None when a column is
    absent or the features have no token tables.
    """
    import numpy as np
    import polars as pl

    shards = features.files("shards/")
    tables = features.files("tokens/")
    if len(tables) != len(shards):
        return None
    mass: dict[tuple, np.ndarray] = {}
    total = np.zeros(d_sae)
    for shard, name in zip(features.topk(), tables):
        tokens = features.table(name)
        if any(c not in tokens.columns for c in columns):
            return None
        fired = shard.indices >= 0
        rows = np.nonzero(fired)[0]
        idx = shard.indices[fired].astype(np.int64)
        val = np.abs(shard.values[fired].astype(np.float64))
        total += np.bincount(idx, val, minlength=d_sae)
        # Each token's key as a small integer, so that one bincount serves every key: the
        # cost follows the stored activations, not their number times the number of keys.
        groups = (tokens.select(columns).with_row_index("row")
                  .filter(pl.all_horizontal(pl.col(c).is_not_null() for c in columns))
                  .group_by(columns).agg(pl.col("row")))
        code = np.full(len(tokens), -1, dtype=np.int64)
        for g, members in enumerate(groups["row"].to_list()):
            code[members] = g
        at = code[rows]
        keep = at >= 0
        added = np.bincount(at[keep] * d_sae + idx[keep], val[keep], minlength=len(groups) * d_sae)
        for key, add in zip(groups.select(columns).iter_rows(), added.reshape(len(groups), d_sae)):
            mass[key] = mass[key] + add if key in mass else add
    keys = sorted(mass)
    return keys, np.stack([mass[k] for k in keys]) if keys else np.zeros((0, d_sae)), total
