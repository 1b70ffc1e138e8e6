"""`codec compare neurons`: the Squeezer's synthetic neurons against the model's real ones."""

from __future__ import annotations

from codec_cli.cli.app import Reply, command, group, render_metrics
from codec_cli.config import CompareNeuronsConfig

compare_app = group("compare", "Compare neurons or dictionaries, each score beside its chance baselines.",
                    panel="Stages")


@command("neurons", CompareNeuronsConfig, group=compare_app)
def neurons_command(cfg: CompareNeuronsConfig) -> Reply:
    """Do the synthetic neurons fire like the model's own, and carry the same features? (docs/compare.md)"""
    from codec_cli.stages.compare import compare_neurons

    summary = compare_neurons(cfg)
    return Reply({"out": str(cfg.out), **summary}, render_metrics(summary))
