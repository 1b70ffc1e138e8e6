"""`codec merge` as a library function: the parts of an extraction split over ranks
joined into the artifact one process would have written."""

from __future__ import annotations

from pathlib import Path

from codec_cli import talk
from codec_cli.artifacts import ArtifactWriter, check_not_an_input, check_output, open_artifact
from codec_cli.errors import BadInput
from codec_cli.stages.ranks import check_parts
from codec_cli.sources.features import NEURONS, SHARD, TOKENS, Stats, shard_number


RANK_PARAMS = ("shard", "of", "out", "resume")
"""Extraction settings that may differ between the parts of one extraction."""


@talk.reports
def merge(parts: list[Path], out: Path) -> dict:
    """Join the parts of an extraction split over ranks into the artifact a single
    process would have written (the same files, attributes and fingerprint); parts of a
    sweep are joined by stages.sweep.merge."""
    if parts and open_artifact(parts[0], ("features", "sweep")).kind == "sweep":
        from codec_cli.stages.sweep import merge as merge_sweep

        return merge_sweep(parts, out)
    check_output(out, "features")
    check_not_an_input(out, parts)
    arts = [open_artifact(p, "features") for p in parts]
    check_parts(arts, "extraction")

    # The attrs that summarise the rows differ between parts and are recomputed on joining.
    # Derived here, not at import, which would load numpy on every `codec` start.
    summary = Stats(1).summary().keys()

    def setting(a):
        return ({k: v for k, v in a.manifest["params"].items() if k not in RANK_PARAMS},
                {k: v for k, v in a.attrs.items() if k not in summary and k != "part"})

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
            a.shard(SHARD.format(j))  # what is joined is checked like what is read
            stats.add(a.tensors(SHARD.format(j)), a.manifest["files"][SHARD.format(j)]["bytes"])
        w.write_table("features.parquet", stats.table())
        w.attrs.update(stats.summary())
    return {"out": str(out), "parts": len(arts), "shards": len(shards), **stats.summary()}
