"""What a feature, a synthetic neuron or a theme means: the facts on its card.

A feature's card is read from its features artifact alone: the rows where it fires hardest,
each with the tokens around the firing one (from the token tables), and a histogram of every
activation it has. A synthetic neuron's card runs the Squeezer's encoder over the features'
rows (numpy, no torch) for the same two things, and lists the features that drive it. A
theme's card is its row of the themes artifact and its atoms. `codec report` draws them and
`codec show` prints them.

One pass over the shards serves every card of an artifact: the running top rows per id
are merged shard by shard, so memory is bounded by the ids asked for, not the corpus.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable

from codec_cli.errors import BadInput

if TYPE_CHECKING:
    import numpy as np

    from codec_cli.artifacts import Artifact

BEFORE, AFTER = 10, 4
"""Tokens shown before and after the firing one."""
BINS = 24


@dataclass
class Example:
    """One row where a feature (or neuron) fires: its value and what the row is."""

    row: int
    value: float
    tokens: list[str] = field(default_factory=list)
    """The context: tokens of the same window around the firing token (language models)."""
    at: int = -1
    """The firing token's index in `tokens`."""
    facts: dict = field(default_factory=dict)
    """The row's other columns in the token table (doc, pos, a world's truth), where not null."""
    sep: str = ""
    """What goes between tokens: a space for a vocabulary of whole words, else nothing."""

    def text(self, marks: tuple[str, str] = ("[[", "]]")) -> str:
        """The context on one line, the firing token between `marks`."""
        if not self.tokens:
            return ", ".join(f"{k} {v}" for k, v in self.facts.items())
        shown = [t.replace("\n", "⏎") for t in self.tokens]
        shown[self.at] = marks[0] + shown[self.at] + marks[1]
        return self.sep.join(shown)


@dataclass
class Card:
    """Everything a feature's or neuron's card shows."""

    id: int
    examples: list[Example]
    histogram: list[int]
    low: float
    high: float
    count: int
    """Rows where it is active (stored, for a feature; above zero, for a neuron)."""
    rows: int
    """Rows read."""

    @property
    def frequency(self) -> float:
        return self.count / self.rows if self.rows else 0.0

    def top_tokens(self, n: int = 3) -> list[str]:
        """The tokens it fires on most often among its top rows, most frequent first."""
        seen = collections.Counter(e.tokens[e.at].strip() or e.tokens[e.at] for e in self.examples if e.tokens)
        return [t for t, _ in seen.most_common(n)]

    @property
    def token(self) -> str:
        """The one token it fires on most often ('' without tokens): what links and figures name it by."""
        return (self.top_tokens(1) or [""])[0]


class _Top:
    """The running top-n rows of every id, merged shard by shard."""

    def __init__(self, n: int):
        import numpy as np

        self.n = n
        self.ids = np.empty(0, np.int64)
        self.values = np.empty(0, np.float64)
        self.rows = np.empty(0, np.int64)

    def add(self, ids, values, rows) -> None:
        import numpy as np

        ids = np.concatenate([self.ids, ids])
        values = np.concatenate([self.values, values])
        rows = np.concatenate([self.rows, rows])
        order = np.lexsort((rows, -values, ids))  # ties go to the earlier row, so the cards are deterministic
        ids, values, rows = ids[order], values[order], rows[order]
        start = np.searchsorted(ids, ids, side="left")
        keep = np.arange(len(ids)) - start < self.n
        self.ids, self.values, self.rows = ids[keep], values[keep], rows[keep]

    def of(self, i: int) -> list[tuple[int, float]]:
        import numpy as np

        lo, hi = np.searchsorted(self.ids, [i, i + 1])
        return [(int(r), float(v)) for r, v in zip(self.rows[lo:hi], self.values[lo:hi])]


def _maxima(features: Artifact, d_sae: int) -> np.ndarray:
    """Each feature's largest stored activation: features.parquet's `max`, or read from the shards."""
    import numpy as np

    if "features.parquet" in features.manifest["files"]:
        t = features.table("features.parquet", ["feature", "max"])
        top = np.zeros(d_sae)
        top[t["feature"].to_numpy()] = t["max"].fill_null(0).to_numpy()
        return top
    top = np.zeros(d_sae)
    for s in features.topk():
        ok = s.indices >= 0
        np.maximum.at(top, s.indices[ok], s.values[ok])
    return top


class Contexts:
    """The token tables of a features artifact, read once, for the contexts of chosen rows."""

    def __init__(self, features: Artifact):
        import polars as pl

        tables = [features.table(n) for n in features.files("tokens/")]
        self.table = pl.concat(tables, how="diagonal_relaxed") if tables else pl.DataFrame()
        cols = self.table.columns
        self.language = "token" in cols
        self.tokens = self.table["token"].to_list() if self.language else []
        key = "window" if "window" in cols else "doc" if "doc" in cols else None
        self.window = self.table[key].to_numpy() if key else None
        self.facts = [c for c in cols if c not in ("token", "token_id", "window")]
        # GPT-2's tokens carry their own spaces; a vocabulary of whole words (the themes world's) does not.
        self.sep = "" if any(t[:1].isspace() for t in self.tokens[:5000] if t) else " "

    def example(self, row: int, value: float) -> Example:
        facts = {}
        if row < self.table.height:
            facts = {c: v for c, v in self.table.row(row, named=True).items() if c in self.facts and v is not None}
        if not self.language or row >= len(self.tokens):
            return Example(row, value, facts=facts)
        lo, hi = max(row - BEFORE, 0), min(row + AFTER + 1, len(self.tokens))
        if self.window is not None:
            same = self.window[lo:hi] == self.window[row]
            span = [r for r, s in zip(range(lo, hi), same) if s]
            lo, hi = span[0], span[-1] + 1
        return Example(row, value, self.tokens[lo:hi], row - lo, facts, self.sep)


def feature_cards(features: Artifact, ids: Iterable[int] | None = None, n: int = 8,
                  contexts: Contexts | None = None) -> dict[int, Card]:
    """The cards of `ids` (default: every feature that fires), read in one pass over the shards."""
    import numpy as np

    d_sae = int(features.attrs["d_sae"])
    wanted = np.zeros(d_sae, bool)
    if ids is None:
        wanted[:] = True
    else:
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < d_sae]
        if bad:
            raise BadInput(f"{features.path}: no feature {bad[0]}; its features are 0 to {d_sae - 1}",
                           hint="pass a feature id below its attrs.d_sae")
        wanted[ids] = True
    top = _maxima(features, d_sae)
    hist = np.zeros((d_sae, BINS), np.int64)
    best, offset = _Top(n), 0
    for s in features.topk():
        idx, val = s.indices, s.values.astype(np.float64)
        ok = idx >= 0
        ok[ok] = wanted[idx[ok]]
        f, v = idx[ok].astype(np.int64), val[ok]
        r = (np.nonzero(ok)[0] + offset).astype(np.int64)
        scale = np.where(top[f] > 0, top[f], 1.0)
        np.add.at(hist, (f, np.clip((v / scale * BINS).astype(np.int64), 0, BINS - 1)), 1)
        best.add(f, v, r)
        offset += idx.shape[0]
    contexts = contexts or Contexts(features)
    counts = hist.sum(1)
    chosen = np.nonzero(wanted & (counts > 0))[0] if ids is None else np.asarray(sorted(set(ids)), np.int64)
    return {int(i): Card(int(i), [contexts.example(r, v) for r, v in best.of(int(i))], hist[i].tolist(), 0.0,
                         float(top[i]), int(counts[i]), offset) for i in chosen}


def neuron_activations(squeezer: Artifact, features: Artifact):
    """Yield (first row, h [rows, M]) chunk by chunk: the Squeezer's neurons on every row of the
    features, each row cut to the Squeezer's k as `codec squeeze` gave it."""
    import numpy as np

    w = squeezer.tensors("weights.safetensors")
    W, b = w["W_enc"].astype(np.float32), w["b_enc"].astype(np.float32)
    scale = w["scale"].astype(np.float32) if "scale" in w else np.ones(W.shape[0], np.float32)
    k = int(squeezer.attrs.get("k") or (squeezer.manifest.get("params") or {}).get("k") or 0) or None
    relu = squeezer.attrs.get("neuron_act", "linear") == "relu"
    offset = 0
    for s in features.topk():
        idx, val = s.indices[:, :k], s.values[:, :k].astype(np.float32)
        for lo in range(0, idx.shape[0], 4096):
            i, v = idx[lo:lo + 4096], val[lo:lo + 4096]
            ok = i >= 0
            safe = np.where(ok, i, 0)
            x = np.where(ok, v / scale[safe], 0.0).astype(np.float32)
            h = np.einsum("rk,rkm->rm", x, W[safe]) + b
            yield offset + lo, np.maximum(h, 0.0) if relu else h
        offset += idx.shape[0]


def neuron_cards(squeezer: Artifact, features: Artifact, n: int = 8,
                 contexts: Contexts | None = None) -> dict[int, Card]:
    """Every synthetic neuron's card: its top rows through the Squeezer's encoder and a
    histogram of its positive activations."""
    import numpy as np

    M = int(squeezer.tensors("weights.safetensors")["W_enc"].shape[1])
    top = np.zeros(M, np.float32)
    for _, h in neuron_activations(squeezer, features):  # a first pass for each neuron's range
        np.maximum(top, h.max(0), out=top)
    hist = np.zeros((M, BINS), np.int64)
    best, rows = _Top(n), 0
    for first, h in neuron_activations(squeezer, features):
        pick = np.argsort(-h, axis=0, kind="stable")[:n]  # [n, M]
        best.add(np.repeat(np.arange(M)[None], len(pick), 0).ravel(), h[pick, np.arange(M)].ravel().astype(np.float64),
                 (pick + first).ravel())
        bins = np.clip((h / np.where(top > 0, top, 1.0) * BINS).astype(np.int64), 0, BINS - 1)
        for m in np.nonzero(top > 0)[0]:
            hist[m] += np.bincount(bins[h[:, m] > 0, m], minlength=BINS)
        rows = first + len(h)
    contexts = contexts or Contexts(features)
    return {m: Card(m, [contexts.example(r, v) for r, v in best.of(m) if v > 0], hist[m].tolist(), 0.0,
                    float(top[m]), int(hist[m].sum()), rows) for m in range(M)}


def drivers(squeezer: Artifact, n: int = 8) -> dict[int, list[tuple[int, float]]]:
    """Per neuron, the features that drive it hardest: (feature, W_enc × its mean activation
    where it fires / scale), largest first (docs/analyses.md's drive, without the roommate rule)."""
    import numpy as np

    w = squeezer.tensors("weights.safetensors")
    W = w["W_enc"].astype(np.float64)
    scale = w["scale"].astype(np.float64) if "scale" in w else np.ones(W.shape[0])
    mean = np.ones(W.shape[0])  # a squeezer written by hand may not say: a unit input each
    t = squeezer.table("features.parquet", ["feature"])
    if "mean" in t.columns:
        mean[t["feature"].to_numpy()] = t["mean"].fill_null(0).to_numpy()
    drive = W * (mean / scale)[:, None]
    out = {}
    for m in range(W.shape[1]):
        order = np.argsort(-drive[:, m], kind="stable")[:n]
        out[m] = [(int(f), float(drive[f, m])) for f in order if drive[f, m] > 0]
    return out


def top_tokens(features: Artifact, ids: Iterable[int]) -> dict[int, str]:
    """The token each feature fires on most often among its top rows ('' for an artifact without
    tokens): what figures label points with."""
    cards = feature_cards(features, ids, n=16)
    return {i: c.token for i, c in cards.items()}


def sparkline_of(histogram: list[int]) -> str:
    """A histogram in one line of block characters (log-scaled, like the report's), for a terminal."""
    import math

    blocks = " ▁▂▃▄▅▆▇█"
    top = math.log1p(max(histogram)) if histogram and max(histogram) else 1.0
    return "".join(blocks[round(math.log1p(c) / top * (len(blocks) - 1))] for c in histogram)


def _features_of(art: Artifact) -> Artifact:
    """The features artifact a squeezer or themes artifact was made from, where it was made."""
    from codec_cli.artifacts import open_artifact

    source = next((i for i in art.inputs if i.get("kind") == "features"), None)
    if source is None:
        raise BadInput(f"{art.path}: its manifest names no features input", hint="pass the features artifact itself")
    features = open_artifact(source["path"], "features")
    if features.fingerprint != source["fingerprint"]:
        raise BadInput(f"{source['path']} is no longer the features {art.path} was made from (its fingerprint "
                       "changed)", hint="re-run the stage, or show a feature of the features artifact itself")
    return features


def _card_dict(card: Card) -> dict:
    return {"count": card.count, "rows": card.rows, "frequency": card.frequency, "max": card.high,
            "histogram": card.histogram, "top_tokens": card.top_tokens(),
            "examples": [{"row": e.row, "value": e.value, "text": e.text(), "facts": e.facts} for e in card.examples]}


def show(cfg) -> dict:
    """One card as JSON-ready data: a feature of a features artifact, a synthetic neuron of a
    squeezer, or a theme of a themes artifact (`codec show`)."""
    from codec_cli.artifacts import open_artifact

    art = open_artifact(cfg.artifact, ("features", "squeezer", "themes"))
    out = {"artifact": str(cfg.artifact), "id": cfg.id}
    if art.kind == "features":
        return {**out, "card": "feature", **_card_dict(feature_cards(art, [cfg.id], n=cfg.examples)[cfg.id])}
    features = _features_of(art)
    if art.kind == "squeezer":
        M = int(art.tensors("weights.safetensors")["W_enc"].shape[1])
        if not 0 <= cfg.id < M:
            raise BadInput(f"{art.path}: no neuron {cfg.id}; its neurons are 0 to {M - 1}")
        card = neuron_cards(art, features, n=cfg.examples)[cfg.id]
        return {**out, "card": "neuron", **_card_dict(card),
                "drivers": [{"feature": f, "drive": d} for f, d in drivers(art)[cfg.id]]}
    themes = art.table("themes.parquet", ["theme", "label", "size"])
    row = next((r for r in themes.to_dicts() if r["theme"] == cfg.id), None)
    if row is None:
        raise BadInput(f"{art.path}: no theme {cfg.id}; its themes are 0 to {themes.height - 1}")
    atoms = [int(a) for a in (row.get("top_atoms") or [])]
    cards = feature_cards(features, atoms, n=1)
    return {**out, "card": "theme", **row,
            "atoms": [{"feature": a, "top_tokens": cards[a].top_tokens(), "example": cards[a].examples[0].text()
                       if cards[a].examples else ""} for a in atoms]}
