"""`codec merge`: join the parts of an extraction split over ranks."""

from __future__ import annotations

from codec_cli.cli.app import Reply, command
from codec_cli.config import MergeConfig


@command("merge", MergeConfig)
def merge_command(cfg: MergeConfig) -> Reply:
    """Join the parts of an extraction split over ranks into one features artifact."""
    from codec_cli.stages.merge import merge

    s = merge(cfg.parts, cfg.out)
    return Reply(s, f"{s['parts']} parts, {s['shards']} shards, {s['rows']:,} tokens -> {s['out']}")
