"""`codec squeeze`: train the Squeezer on extracted features."""

from __future__ import annotations

from codec_cli.cli.app import Reply, command, render_metrics
from codec_cli.config import SqueezeConfig


@command("squeeze", SqueezeConfig)
def squeeze_command(cfg: SqueezeConfig) -> Reply:
    """Train the Squeezer: re-compress SAE features into M synthetic neurons, and report what it packed."""
    from codec_cli.stages.squeeze import squeeze

    metrics = squeeze(cfg)
    shown = {k: v for k, v in metrics.items() if k != "instance_losses"}
    return Reply({"out": str(cfg.out), **metrics}, render_metrics(shown))
