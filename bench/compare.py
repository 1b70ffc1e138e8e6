"""`codec compare neurons`: what streaming the correlations costs beside reading the rows,
and what the one-to-one matching costs at 4,096 × 4,096 neurons.

1. A features artifact of 4 shards × 32,768 rows (F = 1,024 features, k = 16 per row, and
   256 real neurons per row, as the themes world's mlp0 extraction has) is read once as
   the comparison reads it (top-k, scaling, the neurons beside each shard), then read
   again while the trained Squeezer's neurons are encoded and their co-moments with the
   real ones and how far each feature moves them are accumulated. Each read checks the files' hashes, as a
   run's does. Printed: the ratio of the two (target ≤ 1.5), and what one more baseline
   draw adds.
2. The Hungarian matching (scipy's `linear_sum_assignment`) of a 4,096 × 4,096 matrix of
   noise with a planted permutation, against one dense 4,096² matrix product measured in
   the same run; the planted permutation must come back whole.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from codec_cli.artifacts import ArtifactWriter, open_artifact
from codec_cli.sources.features import NEURONS, Piece
from codec_cli.stages.compare import Arm, Encoder, Moves, Moments, Rows, accumulate, match

F, K, M, SHARDS, ROWS = 1024, 16, 256, 4, 32_768


def write(path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    with ArtifactWriter(path, "features", command="bench", attrs={"d_sae": F, "k": K, "neurons": "mlp"}) as w:
        for s in range(SHARDS):
            idx = np.sort(rng.choice(F, (ROWS, K)), axis=1).astype(np.int32)
            w.write_topk(idx, rng.random((ROWS, K)).astype(np.float32))
            w.write_tensors(NEURONS.format(s), {"acts": np.maximum(rng.normal(size=(ROWS, M)), 0).astype(np.float32)})
    return path


def best(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp) / "features")
        pieces = [Piece(n, 0, ROWS) for n in open_artifact(path).files("shards/")]
        model = Encoder.random(F, M, "relu", seed=0)

        def fresh() -> Rows:  # opened anew each time: each file's hash is checked on its first read, as in a run
            return Rows(open_artifact(path), pieces, K, np.ones(F, np.float32))

        def read():
            for _ in fresh():
                pass

        def arms(n_random: int):
            out = [Arm("squeezer", "squeezer", 0, Moments(M, M), Moves(F, M))]
            return out + [Arm(f"random/{d}", "random", d, Moments(M, M)) for d in range(n_random)]

        def compare(n_random: int = 0):
            accumulate(fresh(), arms(n_random), model, lambda d: Encoder.random(F, M, "relu", d + 1),
                       M, M, F, 0, None)

        t_read, t_one, t_two = best(read), best(compare), best(lambda: compare(1))
        n = SHARDS * ROWS
        print(f"compare: {n:,} rows, F={F}, k={K}, {M} × {M} neurons")
        print(f"  read the rows alone       {t_read:6.2f} s  ({n / t_read:,.0f} rows/s)")
        print(f"  read + accumulate         {t_one:6.2f} s  ratio {t_one / t_read:.2f} (target ≤ 1.5)")
        print(f"  … + one baseline draw     {t_two:6.2f} s  (+{(t_two - t_one) / t_read:.2f} reads per draw)")

    size = 4096
    rng = np.random.default_rng(0)
    perm = rng.permutation(size)
    corr = rng.normal(scale=0.05, size=(size, size))
    corr[np.arange(size), perm] += 0.5
    a, b = rng.normal(size=(2, size, size)).astype(np.float32)
    t_mm = best(lambda: a @ b)
    start = time.perf_counter()
    _, r, _ = match(corr, sign_free=False)
    t_match = time.perf_counter() - start
    assert (r == perm).all(), "the matching lost the planted permutation"
    print(f"matching {size} × {size}: {t_match:.2f} s = {t_match / t_mm:.1f}× one {size}² float32 matrix product "
          f"({t_mm:.2f} s); the planted permutation recovered")


if __name__ == "__main__":
    main()
