"""`--seeds 0,1,2`: one stage run once per seed, each into `OUT/seed-N/`.

Seed-(in)consistency is a question about several runs that differ in their seed alone
(science.md §3: are the atoms the same across seeds?), so `codec sae train` and `codec
squeeze` take a list of seeds and write one whole artifact per seed, each exactly what
`--seed N --out OUT/seed-N` would write by hand. `OUT` itself is a plain directory. With
`--resume`, a seed whose artifact is finished and was made with the same settings is kept
as it is, and an interrupted one resumes from its checkpoint; without it, every seed is
rewritten whole. This is not `--restarts`, which trains several instances and keeps the best.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

from codec_cli import config
from codec_cli.artifacts import MANIFEST, check_output, open_artifact
from codec_cli.errors import BadInput, CodecError
from codec_cli.talk import info


def _finished(cfg, kind: str) -> dict | None:
    """The metrics of a finished artifact at cfg.out made with cfg's very settings, else None."""
    try:
        art = open_artifact(cfg.out, kind)
    except CodecError:
        return None
    recorded = {k: v for k, v in art.manifest["params"].items() if k != "resume"}
    wanted = {k: v for k, v in config.to_dict(cfg).items() if k != "resume"}
    return art.json("metrics.json") if recorded == wanted else None


def each(cfg, run: Callable[[Any], dict], kind: str) -> dict:
    """Run `run` once per seed of `cfg.seeds`; returns {"out": OUT, "seeds": {N: what run returned}}."""
    seeds = config.seed_list(cfg.seeds)
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise BadInput(f"{out}: exists and is not a directory", hint="--out names a directory for the seeds' outputs")
    if (out / MANIFEST).is_file():
        raise BadInput(f"{out}: is an artifact itself; --seeds writes one per seed in OUT/seed-N/",
                       hint="choose another --out")
    runs = [dataclasses.replace(cfg, seed=s, seeds=None, out=out / f"seed-{s}") for s in seeds]
    for one in runs:  # before any work: a seed's place that holds something else stops them all
        check_output(one.out, kind)
    results = {}
    for s, one in zip(seeds, runs):
        done = _finished(one, kind) if cfg.resume else None
        if done is not None:
            info(f"seed {s}: {one.out} is finished, kept")
            results[s] = {"out": str(one.out), **done}
            continue
        info(f"seed {s} → {one.out}")
        results[s] = run(one)
    return {"out": str(out), "seeds": results}
