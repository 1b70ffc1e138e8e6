"""The `features` artifact: what `codec extract` writes and every later stage reads.

A features artifact is a run of *shards*, each self-contained (docs/artifacts.md):

    shards/NNNNN.safetensors    indices, values (top-k per row), l0, mass (per row)
    tokens/NNNNN.parquet        one row per activation row: doc, window, pos, token, labels
    neurons/NNNNN.safetensors   acts: the model's own activations at a second hook (optional)
    features.parquet            per feature: count, frequency, mean and max activation
    summary.json                totals: rows, L0, activation mass kept, bytes per row

Shard numbers are global: an extraction split over n ranks gives rank i the shards
j with j mod n == i, so joining the parts (`merge`) is a union of files.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
from safetensors import safe_open

from codec_cli.artifacts import _parse
from codec_cli.errors import BadInput

SHARD = "shards/{:05d}.safetensors"
TOKENS = "tokens/{:05d}.parquet"
NEURONS = "neurons/{:05d}.safetensors"
SHARD_DIRS = ("shards", "tokens", "neurons")


def shard_number(name: str) -> int:
    """`shards/00012.safetensors` -> 12."""
    return int(Path(name).stem)


@dataclass
class Stats:
    """Per-feature statistics and totals, accumulated shard by shard in O(d_sae) memory."""

    d_sae: int
    rows: int = 0
    l0_sum: float = 0.0
    mass_sum: float = 0.0
    kept_sum: float = 0.0
    bytes: int = 0
    count: np.ndarray = field(init=False)
    total: np.ndarray = field(init=False)
    peak: np.ndarray = field(init=False)

    def __post_init__(self):
        self.count = np.zeros(self.d_sae, np.int64)
        self.total = np.zeros(self.d_sae, np.float64)
        self.peak = np.zeros(self.d_sae, np.float32)

    def add(self, tensors: dict[str, np.ndarray], nbytes: int = 0) -> None:
        """Fold in one shard: `indices`, `values` and, when present, `l0` and `mass`."""
        idx, val = tensors["indices"].ravel(), tensors["values"].ravel().astype(np.float32)
        used = idx >= 0
        idx, val = idx[used], val[used]
        self.count += np.bincount(idx, minlength=self.d_sae)
        self.total += np.bincount(idx, weights=val, minlength=self.d_sae)
        np.maximum.at(self.peak, idx, val)
        n = len(tensors["indices"])
        kept = float(val.astype(np.float64).sum())
        self.rows += n
        self.kept_sum += kept
        # Written by hand without l0/mass, a shard counts what it stores.
        self.l0_sum += float(tensors["l0"].sum()) if "l0" in tensors else float(used.sum())
        self.mass_sum += float(tensors["mass"].astype(np.float64).sum()) if "mass" in tensors else kept
        self.bytes += nbytes

    def table(self) -> dict[str, np.ndarray]:
        """features.parquet: one row per feature; mean is over the rows where it is stored."""
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(self.count > 0, self.total / np.maximum(self.count, 1), 0.0)
        return {"feature": np.arange(self.d_sae, dtype=np.int32), "count": self.count,
                "frequency": self.count / max(self.rows, 1), "mean": mean.astype(np.float32),
                "max": self.peak}

    def summary(self) -> dict:
        return {"rows": self.rows,
                "l0": self.l0_sum / self.rows if self.rows else 0.0,
                "mass_kept": self.kept_sum / self.mass_sum if self.mass_sum > 0 else 1.0,
                "bytes_per_row": self.bytes / self.rows if self.rows else 0.0,
                "dense_bytes_per_row": 4 * self.d_sae,
                "features_seen": int((self.count > 0).sum())}


def shard_rows(art, name: str) -> int:
    """Rows of a shard, from its safetensors header alone (no tensor is read)."""
    def rows(path):
        with safe_open(path, framework="numpy") as f:
            return int(f.get_slice("indices").get_shape()[0])

    return _parse(art.path / name, "shard with an `indices` tensor", rows, art.path / name)


def top_rows(indices: np.ndarray, values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k largest stored activations, largest first (ties keep their stored order);
    empty slots (index -1) sort last."""
    if k >= indices.shape[1] and (indices.shape[1] < 2 or bool((np.diff(values, axis=1) <= 0).all())):
        return indices, values
    order = np.argsort(-values, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(indices, order, 1), np.take_along_axis(values, order, 1)


def sparse_rows(indices: np.ndarray, values: np.ndarray, d_sae: int, dtype=np.float32):
    """Top-k rows as a scipy CSR matrix [n, d_sae]; empty slots (index < 0) are left out. Built
    row by row as stored, so nothing is sorted (products do not need sorted columns)."""
    from scipy.sparse import csr_matrix

    keep = indices >= 0
    indptr = np.concatenate([[0], np.cumsum(keep.sum(1))])
    return csr_matrix((values[keep].astype(dtype), indices[keep], indptr), shape=(len(indices), d_sae))


@dataclass(frozen=True)
class Piece:
    """Rows [start, stop) of one shard."""

    shard: str
    start: int
    stop: int

    @property
    def rows(self) -> int:
        return self.stop - self.start


class Batches:
    """Shuffled batches of top-k rows streamed from a features artifact, in bounded memory.

    The last `held_out` rows (in shard order) are set apart for evaluation; the rest are
    read epoch by epoch. Each epoch shuffles the order of the shards, groups consecutive
    shards into windows of at least `buffer_rows` (≥ `batch_size`) rows, shuffles the rows inside each
    window and cuts it into whole batches (a window's remainder, under one batch, waits
    for a later epoch, where it falls elsewhere). Which rows make batch `s` depends only
    on the seed, the shard sizes and `s`, so a resumed run reads exactly the batches an
    uninterrupted one would, and skipping to a step reads no data.
    """

    def __init__(self, art, k: int, batch_size: int, buffer_rows: int, held_out: int, seed: int):
        if buffer_rows < batch_size:  # every window must hold a batch, or an epoch could hold none
            raise BadInput(f"--buffer-rows {buffer_rows} is smaller than a batch ({batch_size})",
                           hint="raise --buffer-rows or lower --batch-size")
        self.art, self.k, self.batch_size, self.buffer_rows, self.seed = art, k, batch_size, buffer_rows, seed
        shards = [(name, shard_rows(art, name)) for name in art.files("shards/")]
        total = sum(n for _, n in shards)
        if total < held_out + batch_size:
            raise BadInput(f"{art.path} holds {total} rows: too few for {held_out} held-out rows and a batch of "
                           f"{batch_size}", hint="extract more tokens, or lower --eval-rows / --batch-size")
        self.train: list[Piece] = []
        self.held: list[Piece] = []
        cut = total - held_out
        start = 0
        for name, n in shards:
            if start < cut:
                self.train.append(Piece(name, 0, min(n, cut - start)))
            if start + n > cut:
                self.held.append(Piece(name, max(0, cut - start), n))
            start += n
        self.rows = cut
        self._cache: dict[str, tuple] = {}
        # A training set that fits in one window is read once and kept.
        self._keep = cut <= buffer_rows

    def _rng(self, *key: int):
        return np.random.default_rng([self.seed, *key])

    def windows(self, epoch: int) -> list[tuple[list[Piece], int]]:
        """The epoch's windows, each with its number of whole batches."""
        order = self._rng(epoch).permutation(len(self.train))
        windows: list[list[Piece]] = [[]]
        filled = 0
        for i in order:
            if filled >= self.buffer_rows:
                windows.append([])
                filled = 0
            windows[-1].append(self.train[i])
            filled += self.train[i].rows
        if len(windows) > 1 and filled < self.batch_size:  # too small for a batch of its own
            last = windows.pop()
            windows[-1].extend(last)
        return [(w, sum(p.rows for p in w) // self.batch_size) for w in windows]

    def steps(self, epochs: int) -> int:
        """Batches in the first `epochs` epochs."""
        return sum(n for e in range(epochs) for _, n in self.windows(e))

    def read(self, pieces: list[Piece]) -> tuple[np.ndarray, np.ndarray]:
        """The pieces' rows, truncated to the top k: (indices int64 [n, k], values float32 [n, k])."""
        parts = []
        for p in pieces:
            cached = self._cache.get(p.shard)
            if cached is None:
                t = self.art.shard(p.shard)  # refused, by name, unless its indices and values are sound
                idx, val = top_rows(t.indices, t.values.astype(np.float32), self.k)
                if self.k > idx.shape[1]:  # fewer stored than asked: the rest are empty slots
                    pad = ((0, 0), (0, self.k - idx.shape[1]))
                    idx, val = np.pad(idx, pad, constant_values=-1), np.pad(val, pad)
                cached = (idx, val)
                if self._keep:
                    self._cache[p.shard] = cached
            parts.append((cached[0][p.start:p.stop], cached[1][p.start:p.stop]))
        return (np.concatenate([i for i, _ in parts]).astype(np.int64),
                np.concatenate([v for _, v in parts]))

    def held_out(self) -> tuple[np.ndarray, np.ndarray]:
        return self.read(self.held)

    def stream(self, start: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Batches from step `start` on, epoch after epoch, without end."""
        step = 0
        for epoch in itertools.count():
            for w, (pieces, n) in enumerate(self.windows(epoch)):
                if step + n <= start:
                    step += n
                    continue
                idx, val = self.read(pieces)
                perm = self._rng(epoch, w + 1).permutation(len(idx))
                for b in range(n):
                    if step >= start:
                        rows = perm[b * self.batch_size:(b + 1) * self.batch_size]
                        yield idx[rows], val[rows]
                    step += 1
