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
3. `compare dictionaries`' matching of two dictionaries of F latents in d = 768 (one a
   noisy permutation of the other, as two seeds' SAEs partly agree), dense against sparse,
   at F = 4,096, 16,384 and 24,576: seconds and peak memory, each case in a process of its
   own (peak resident memory above what the process held before matching). The sparse
   route's total must equal the dense one's where both run. `--quick` stops at 4,096.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from codec_cli.artifacts import ArtifactWriter, open_artifact
from codec_cli.sources.features import NEURONS, Piece
from codec_cli.stages import compare_dictionaries as dictionaries
from codec_cli.stages.compare_neurons import Arm, Encoder, Moves, Moments, Rows, accumulate, match

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
            out = [Arm("squeezer", 0, Moments(M, M), Moves(F, M))]
            return out + [Arm("random", d, Moments(M, M)) for d in range(n_random)]

        def compare(n_random: int = 0):
            accumulate(fresh(), arms(n_random), model, lambda d: Encoder.random(F, M, "relu", d + 1), 0, None)

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



def _rss(field: str) -> int:
    """This process's resident memory (VmRSS) or its peak (VmHWM), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def dictionary_case(route: str, F: int, d: int = 768) -> dict:
    """One matching, in this process: seconds, peak memory above the inputs, and the total cosine."""
    rng = np.random.default_rng(F)
    B = dictionaries.unit(rng.standard_normal((F, d)))
    A = dictionaries.unit(B[rng.permutation(F)] + 0.05 * rng.standard_normal((F, d)))
    before = _rss("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets the peak (VmHWM) to the present
    start = time.perf_counter()
    m = dictionaries.match_dense(A, B) if route == "dense" else dictionaries.match_sparse(A, B, 32)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_bytes": _rss("VmHWM") - before, "total": float(m.cosine.sum())}


def dictionaries_bench(sizes) -> None:
    print("compare dictionaries, d = 768: dense against sparse (32 candidates per latent each way)")
    for F in sizes:
        row = {}
        for route in ("dense", "sparse"):
            out = subprocess.run([sys.executable, __file__, "--case", route, str(F)], capture_output=True, text=True)
            row[route] = json.loads(out.stdout) if out.returncode == 0 else None
        dense, sparse = row["dense"], row["sparse"]
        same = dense is not None and sparse is not None and abs(dense["total"] - sparse["total"]) < 1e-3 * F
        line = f"  F = {F:6,}: sparse {sparse['seconds']:7.1f} s, {sparse['peak_bytes'] / 2**30:5.2f} GiB"
        if dense is not None:
            line += (f"   dense {dense['seconds']:7.1f} s, {dense['peak_bytes'] / 2**30:5.2f} GiB   "
                     f"same total: {'yes' if same else 'NO'}")
        print(line)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--case"]:
        print(json.dumps(dictionary_case(sys.argv[2], int(sys.argv[3]))))
    else:
        main()
        dictionaries_bench((4096,) if "--quick" in sys.argv else (4096, 16384, 24576))
