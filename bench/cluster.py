"""`codec cluster` at the size of a real SAE: 24,576 atoms of 768 dimensions, cold.

An SAE whose decoder holds 480 planted groups of 48 directions (cosine about 0.75 to their
centre) plus 1,536 random ones is written in sae-lens's format, with a features artifact
of 65,536 rows (k = 32) extracted "with" it, so that `codec cluster` runs whole: reopening
the SAE, the neighbours, UMAP → HDBSCAN, the map, labels and coherence, the writing.

Each run is a process of its own, so each pays numba's compilation (UMAP's JIT) as a
first run does:
- bare: umap-learn's UMAP (15 neighbours, 5 dimensions, seeded) then HDBSCAN, on the same
  directions read from a .npy;
- codec: `codec cluster features/` with its defaults.
Printed: seconds and peak resident memory of each, the ratio codec / bare (target ≤ 1.2),
codec's seconds (target < 90 on a 2-core machine), how many planted groups came back, and
what the spectral route would hold at this size. `--quick` runs 4,096 atoms.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

N, D, GROUPS, K, ROWS = 24_576, 768, 480, 32, 65_536


def directions(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    groups = GROUPS * n // N
    per = (n - n // 16) // groups
    centres = rng.standard_normal((groups, D)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    X = np.vstack([c + 0.035 * rng.standard_normal((per, D)).astype(np.float32) for c in centres]
                  + [rng.standard_normal((n - groups * per, D)).astype(np.float32)])
    return X / np.linalg.norm(X, axis=1, keepdims=True), np.r_[np.repeat(np.arange(groups), per),
                                                             np.full(n - groups * per, -1)]


def write(root: Path, X: np.ndarray) -> Path:
    """An SAE with decoder X and a features artifact that names it."""
    import torch

    from codec_cli.artifacts import ArtifactWriter
    from codec_cli.config import SAETrainConfig
    from codec_cli.nn.sae import make_sae, save
    from codec_cli.sources.models import open_sae

    n = len(X)
    sae = make_sae(SAETrainConfig(expansion_factor=n / D, k=K), D)
    with torch.no_grad():
        sae.W_dec.copy_(torch.from_numpy(X))
        sae.W_enc.copy_(torch.from_numpy(X.T.copy()))
    save(sae, root / "sae")
    handle = open_sae(str(root / "sae"))
    rng = np.random.default_rng(1)
    vocab = np.array([f"w{i}" for i in range(4096)])
    with ArtifactWriter(root / "features", "features", command="bench", params={"sae": str(root / "sae")},
                        attrs={"d_sae": n, "k": K, "sae": {"origin": str(root / "sae"),
                                                           "fingerprint": handle.fingerprint()}}) as w:
        for s in range(4):
            rows = ROWS // 4
            idx = np.sort(np.stack([rng.choice(n, K, replace=False) for _ in range(rows)]), axis=1).astype(np.int32)
            w.write_topk(idx, rng.random((rows, K)).astype(np.float32))
            tok = rng.integers(0, len(vocab), rows)
            w.write_table(f"tokens/{s:05d}.parquet", {"doc": np.arange(rows) // 64 + s * rows // 64,
                                                      "pos": (np.arange(rows) % 64).astype(np.int32),
                                                      "token_id": tok.astype(np.int32), "token": vocab[tok]})
    return root / "features"


BARE = """
import json, resource, sys, time, warnings
import numpy as np
start = time.perf_counter()
import hdbscan, umap
warnings.simplefilter("ignore")
X = np.load(sys.argv[1])
low = umap.UMAP(n_neighbors=15, n_components=5, min_dist=0.0, metric="cosine", random_state=0).fit_transform(X)
labels = hdbscan.HDBSCAN(min_cluster_size=5).fit(low).labels_
print(json.dumps({"s": time.perf_counter() - start, "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""

CODEC = """
import json, resource, sys, time
start = time.perf_counter()
from codec_cli.config import ClusterConfig
from codec_cli.stages.cluster import cluster
cluster(ClusterConfig(sys.argv[1], out=sys.argv[2]))
print(json.dumps({"s": time.perf_counter() - start, "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def run(script: str, *args) -> dict:
    out = subprocess.run([sys.executable, "-c", script, *map(str, args)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    n = 4096 if "--quick" in sys.argv else N
    X, truth = directions(n)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        np.save(root / "X.npy", X)
        features = write(root, X)
        bare = run(BARE, root / "X.npy")
        ours = run(CODEC, features, root / "themes")
        import polars as pl
        from sklearn.metrics import adjusted_rand_score

        atoms = pl.read_parquet(root / "themes" / "atoms.parquet")["theme"].to_numpy()
        planted = truth >= 0
        ari = adjusted_rand_score(truth[planted], atoms[planted])
        noise = float((atoms[~planted] < 0).mean())
    from codec_cli.stages.cluster import spectral_bytes

    gib = 2**20  # ru_maxrss is in KiB on Linux
    print(f"cluster: {n:,} atoms of {D} dimensions, cold, each in a process of its own")
    print(f"  bare UMAP → HDBSCAN   {bare['s']:6.1f} s   peak {bare['rss'] / gib:.2f} GiB")
    print(f"  codec cluster         {ours['s']:6.1f} s   peak {ours['rss'] / gib:.2f} GiB   "
          f"ratio {ours['s'] / bare['s']:.2f} (target ≤ 1.2; < 90 s)")
    print(f"  planted groups: ARI {ari:.3f}; random directions called noise: {noise:.1%}")
    print(f"  spectral at this size would hold {spectral_bytes(n) / 2**30:.1f} GiB (a dense affinity and a copy)")


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"  ({time.perf_counter() - started:.0f} s in all)")
