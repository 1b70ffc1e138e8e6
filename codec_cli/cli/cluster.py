"""`codec cluster`: group a features artifact's atoms into themes."""

from __future__ import annotations

from codec_cli.cli.app import Reply, command, render_metrics
from codec_cli.config import ClusterConfig


@command("cluster", ClusterConfig)
def cluster_command(cfg: ClusterConfig) -> Reply:
    """Find the natural themes: dense clusters of SAE atoms, labelled by their top tokens (docs/cluster.md)."""
    from codec_cli.stages.cluster import cluster

    summary = cluster(cfg)
    return Reply({"out": str(cfg.out), **summary}, render_metrics({k: v for k, v in summary.items() if k != "largest"}))
