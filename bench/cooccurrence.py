"""The or-gate's co-occurrence counting: its cost follows the stored activations, not F².

Synthetic top-k features (k = 32 per token, Zipf-distributed feature frequencies) are
written as a features artifact at several widths F and token counts T. For each, the
same kind of request the or-gate makes is timed: 32 neurons × 64 roommates, so 64,512
pairs, plus as many frequency-matched random pairs, with their exact test; and, apart,
the OR-gate degree of the 32 neurons and of 10 null neurons each (one sparse product of
64 columns per neuron). Printed as ratios against the smallest case, measured in the
same run:

- F grows 16× at fixed tokens: the cost does not grow (the F² ratio beside it is 256;
  it can fall, as a wider dictionary spreads the same activations over rarer features);
- tokens grow 4× at fixed F: the pairs' cost grows about 4×, with the activations stored;
  the neurons' by less, as part of their cost is per neuron (about 2–3× in our runs).

For scale, the dense alternative — the F×F co-occurrence matrix Aᵀ A — is timed at the
smallest F and its memory at the largest is printed (never allocated).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from codec_cli.artifacts import ArtifactWriter, open_artifact
from codec_plugins.cooccurrence import exclusive_p, occurrences
from codec_plugins.or_gate import Params, degree

K, NEURONS, ROOMMATES, NULLS = 32, 32, 64, 10


def write(path: Path, F: int, tokens: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, F + 1) ** 0.8
    p /= p.sum()
    with ArtifactWriter(path, "features", command="bench", attrs={"d_sae": F, "k": K}) as w:
        for start in range(0, tokens, 100_000):
            n = min(100_000, tokens - start)
            idx = np.stack([rng.choice(F, K, replace=False, p=p) for _ in range(n)]) if n < 2000 else \
                np.sort(rng.choice(F, (n, K), p=p), axis=1)  # duplicates in a row are rare and harmless
            w.write_topk(idx.astype(np.int32), rng.random((n, K)).astype(np.float32) + 0.01)
    return path


def request(F: int, rng) -> tuple[np.ndarray, np.ndarray]:
    i, j = [], []
    for _ in range(NEURONS):
        members = rng.choice(min(F, 4096), ROOMMATES, replace=False)  # roommates are among the live features
        a, b = np.triu_indices(ROOMMATES, 1)
        i.append(members[a])
        j.append(members[b])
    i, j = np.concatenate(i), np.concatenate(j)
    return np.concatenate([i, rng.permutation(i)]), np.concatenate([j, rng.permutation(j)])


def timed(art, F: int) -> tuple[float, float, int]:
    """(seconds for the pairs, seconds for the neuron degrees, stored activations), best of 3."""
    i, j = request(F, np.random.default_rng(1))
    best, best_null = float("inf"), float("inf")
    params = Params()
    for _ in range(3):
        start = time.perf_counter()
        occ = occurrences(art)
        n = occ.counts
        exclusive_p(occ.pairs(i, j), n[i], n[j], occ.units, exact_below=params.max_lift)
        best = min(best, time.perf_counter() - start)
        rng = np.random.default_rng(2)
        start = time.perf_counter()
        for _ in range(NEURONS * (1 + NULLS)):
            degree(occ, rng.choice(min(F, 4096), ROOMMATES, replace=False), np.ones(ROOMMATES), params)
        best_null = min(best_null, time.perf_counter() - start)
    return best, best_null, occ.matrix.nnz


def main() -> None:
    cases = [(2048, 50_000), (8192, 50_000), (32_768, 50_000), (8192, 200_000)]
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for F, T in cases:
            art = open_artifact(write(Path(tmp) / f"f{F}_{T}", F, T))
            results[F, T] = timed(art, F)
        base_t, base_null, base_nnz = results[cases[0]]
        print(f"{'F':>7} {'tokens':>8} {'activations':>12} {'pairs s':>8} {'pairs ratio':>11} "
              f"{'neurons s':>9} {'neurons ratio':>13} {'activations ratio':>17} {'F² ratio':>9}")
        for (F, T), (t, t_null, nnz) in results.items():
            print(f"{F:>7,} {T:>8,} {nnz:>12,} {t:>8.3f} {t / base_t:>11.2f} {t_null:>9.3f} "
                  f"{t_null / base_null:>13.2f} {nnz / base_nnz:>17.2f} {(F / cases[0][0]) ** 2:>9.0f}")
        F0 = cases[0][0]
        occ = occurrences(open_artifact(Path(tmp) / f"f{F0}_{cases[0][1]}"))
        start = time.perf_counter()
        (occ.matrix.T @ occ.matrix).toarray()
        dense = time.perf_counter() - start
        Fmax = max(F for F, _ in cases)
        print(f"dense AᵀA at F={F0:,}: {dense:.3f} s ({dense / base_t:.1f}x the pair request); at F={Fmax:,} its "
              f"result alone would take {Fmax * Fmax * 8 / 2**30:.1f} GiB, at F=131,072 {131072**2 * 8 / 2**30:.0f} GiB")


if __name__ == "__main__":
    main()
