"""`codec merge`: join the parts of an extraction or a sweep split over ranks."""

from __future__ import annotations

from codec_cli.cli.app import Reply, command
from codec_cli.config import MergeConfig


@command("merge", MergeConfig)
def merge_command(cfg: MergeConfig) -> Reply:
    """Join the parts of an extraction (or a sweep) split over ranks into the artifact one process would write."""
    from codec_cli.stages.merge import merge

    s = merge(cfg.parts, cfg.out)
    if "shards" not in s:
        return Reply(s, f"{s['parts']} parts, {s['cells']} cells -> {s['out']}")
    return Reply(s, f"{s['parts']} parts, {s['shards']} shards, {s['rows']:,} tokens -> {s['out']}")
