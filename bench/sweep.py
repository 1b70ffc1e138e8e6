"""`codec sweep --jobs N` against the same sweep in one process, both measured in this run.

Eight small toy cells (the default 10-5-10 world trained for 3,000 steps, both SAE recipes),
run with --jobs 1 and with --jobs N (N = the machine's cores, at most 4), each from a fresh
output directory, after one unmeasured sweep that warms the caches. Printed: the speed-up
(ideal: N, less the pool's start, which imports torch in every worker) and whether the two
sweeps are the same (their fingerprints), which they must be.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from codec_cli.artifacts import open_artifact
from codec_cli.config import SweepConfig
from codec_cli.stages.sweep import sweep

GRID = ["sparsity=0.85,0.9,0.95,0.97", "seed=0,1"]
PARAMS = ["steps=3000"]


def run(jobs: int, root: Path, tag: str) -> tuple[float, str]:
    out = root / f"{tag}-jobs{jobs}"
    start = time.perf_counter()
    sweep(SweepConfig("toy", grid=GRID, param=PARAMS, jobs=jobs, out=out), log=lambda message: None)
    return time.perf_counter() - start, open_artifact(out, "sweep").fingerprint


def main() -> None:
    jobs = max(2, min(4, os.cpu_count() or 1))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run(1, root, "warm")  # imports and caches, outside the timings (and the sweep to match)
        times: dict[int, list[float]] = {1: [], jobs: []}
        prints = set()
        for n in (1, jobs):
            seconds, fingerprint = run(n, root, "timed")
            times[n].append(seconds)
            prints.add(fingerprint)
    one, many = min(times[1]), min(times[jobs])
    print(f"sweep of 8 toy cells: --jobs 1 {one:.1f} s, --jobs {jobs} {many:.1f} s: "
          f"{one / many:.2f}x faster (ideal {jobs}x); same sweep: {len(prints) == 1}")


if __name__ == "__main__":
    main()
