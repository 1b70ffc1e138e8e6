"""`codec sae train`: an SAE on any world's or model's activations."""

from __future__ import annotations

from codec_cli.cli.app import Reply, command, group, render_metrics
from codec_cli.config import SAERunConfig

sae_app = group("sae", "Sparse autoencoders: train one on any model's activations.", panel="Worlds")


@command("train", SAERunConfig, group=sae_app)
def train_command(cfg: SAERunConfig) -> Reply:
    """Train an SAE on a model's activations at one hook; resumable, saved in sae-lens format."""
    from codec_cli.stages.train_sae import train_sae

    result = train_sae(cfg)
    return Reply(result, render_metrics({k: v for k, v in result.items() if k != "out"}))
