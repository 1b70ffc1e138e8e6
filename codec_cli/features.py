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

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

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
        import numpy as np

        self.count = np.zeros(self.d_sae, np.int64)
        self.total = np.zeros(self.d_sae, np.float64)
        self.peak = np.zeros(self.d_sae, np.float32)

    def add(self, tensors: dict[str, np.ndarray], nbytes: int = 0) -> None:
        """Fold in one shard: `indices`, `values` and, when present, `l0` and `mass`."""
        import numpy as np

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
        import numpy as np

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


SUMMARY = tuple(Stats(1).summary())
"""The attrs that summarise the rows; recomputed whenever shards are joined."""
RANK_PARAMS = ("shard", "of", "out", "resume")
"""Extraction settings that may differ between the parts of one extraction."""


def merge(parts: list[Path], out: Path) -> dict:
    """Join the parts of an extraction split over ranks into the artifact a single
    process would have written (the same files, attributes and fingerprint)."""
    from codec_cli.artifacts import ArtifactWriter, check_output, open_artifact
    from codec_cli.errors import BadInput

    check_output(out, "features")
    arts = [open_artifact(p, "features") for p in parts]
    if not arts:
        raise BadInput("no parts to merge", hint="e.g. codec merge parts/* --out features")
    for a in arts:
        if not a.attrs.get("part"):
            raise BadInput(f"{a.path} is a whole extraction, not a part of one (made with --shard/--of)")
    of = arts[0].attrs["part"]["of"]
    ranks = sorted(a.attrs["part"]["index"] for a in arts)
    if ranks != list(range(of)) or any(a.attrs["part"]["of"] != of for a in arts):
        missing = sorted(set(range(of)) - set(ranks))
        raise BadInput(f"the parts should be ranks 0..{of - 1} once each, got {ranks}"
                       + (f" (missing {', '.join(map(str, missing))})" if missing else ""),
                       hint="pass every part of the one extraction")

    def setting(a):
        return ({k: v for k, v in a.manifest["params"].items() if k not in RANK_PARAMS},
                {k: v for k, v in a.attrs.items() if k not in SUMMARY and k != "part"})

    for a in arts[1:]:
        if setting(a) != setting(arts[0]):
            raise BadInput(f"{a.path} and {arts[0].path} come from different extractions")
    shards = sorted((shard_number(n), a) for a in arts for n in a.files("shards/"))
    attrs = setting(arts[0])[1] | {"part": None}
    with ArtifactWriter(out, "features", command="codec merge", attrs=attrs,
                        params={"parts": [str(a.path) for a in arts], "extract": setting(arts[0])[0]}) as w:
        w.inputs = arts[0].inputs
        stats = Stats(attrs["d_sae"])
        for j, a in shards:
            for name in (TOKENS.format(j), NEURONS.format(j), SHARD.format(j)):
                if name in a.manifest["files"]:
                    w.write_bytes(name, a.read_bytes(name))
            stats.add(a.tensors(SHARD.format(j)), a.manifest["files"][SHARD.format(j)]["bytes"])
        w.write_table("features.parquet", stats.table())
        w.attrs.update(stats.summary())
    return {"out": str(out), "parts": len(arts), "shards": len(shards), **stats.summary()}
