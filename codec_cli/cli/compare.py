"""`codec compare neurons | dictionaries`: synthetic neurons against real ones; dictionaries across seeds."""

from __future__ import annotations

from codec_cli.cli.app import Reply, command, group, render_metrics
from codec_cli.config import CompareDictionariesConfig, CompareNeuronsConfig

compare_app = group("compare", "Compare neurons or dictionaries, each score beside its chance baselines.",
                    panel="Stages")


@command("neurons", CompareNeuronsConfig, group=compare_app)
def neurons_command(cfg: CompareNeuronsConfig) -> Reply:
    """Do the synthetic neurons fire like the model's own, and carry the same features? (docs/compare.md)"""
    from codec_cli.stages.compare_neurons import compare_neurons

    summary = compare_neurons(cfg)
    return Reply({"out": str(cfg.out), **summary}, render_metrics(summary))


@command("dictionaries", CompareDictionariesConfig, group=compare_app)
def dictionaries_command(cfg: CompareDictionariesConfig) -> Reply:
    """Are the atoms the same across seeds? MCC, PW-MCC, MMCS and shared latents, beside random dictionaries."""
    from codec_cli.stages.compare_dictionaries import compare_dictionaries

    summary = compare_dictionaries(cfg)
    shown = {k: v for k, v in summary.items() if k not in ("pairs", "inputs", "latents")}
    return Reply({"out": str(cfg.out), **summary}, render_metrics(shown))
