"""polytope's ground-truth labels: their cost follows the stored activations, not the number of labels.

`codec_plugins.packing.label_mass` sums each feature's activation mass per value of the
token tables' columns. Synthetic top-k features (k = 32 per token) over 200,000 tokens
carry a label column with 8, 200 and 5,000 distinct values; each is timed, with
reading the shards alone (what any label count must pay) as the baseline measured in
the same run. Printed as ratios. Measured on 2 CPU cores: 5.1×, 5.8× and 12.9× the read
as the labels grow 625×; what grows is the labels × F result itself (5,000 × 4,096
sums), where the scan it replaced, once per label over every activation, would have
grown with the labels outright.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from codec_cli.artifacts import ArtifactWriter, open_artifact
from codec_plugins.packing import label_mass

F, K, TOKENS, SHARD = 4096, 32, 200_000, 50_000
LABELS = (8, 200, 5000)


def write(path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    with ArtifactWriter(path, "features", command="bench", attrs={"d_sae": F, "k": K}) as w:
        for shard, start in enumerate(range(0, TOKENS, SHARD)):
            idx = np.sort(rng.choice(F, (SHARD, K)), axis=1).astype(np.int32)
            w.write_topk(idx, rng.random((SHARD, K)).astype(np.float32) + 0.01)
            w.write_table(f"tokens/{shard:05d}.parquet", pl.DataFrame(
                {f"label_{n}": rng.integers(n, size=SHARD) for n in LABELS}))
    return path


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        features = open_artifact(write(Path(tmp) / "features"), "features")
        read = best_of(lambda: [(s.indices.sum(), features.table(t)) for s, t in
                                zip(features.topk(), features.files("tokens/"))])
        print(f"label_mass over {TOKENS:,} tokens × k={K}, F={F:,}; baseline: reading the shards, {read:.3f} s")
        for n in LABELS:
            seconds = best_of(lambda: label_mass(features, [f"label_{n}"], F))
            print(f"  {n:>5,} labels: {seconds:.3f} s = {seconds / read:5.1f}× the read")


if __name__ == "__main__":
    main()
