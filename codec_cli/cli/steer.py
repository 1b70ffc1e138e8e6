"""`codec steer` and `codec monitor`: act on a model by whole themes, and watch it for them."""

from __future__ import annotations

from codec_cli.cli.app import Reply, command, render_metrics
from codec_cli.config import MonitorConfig, SteerConfig


@command("steer", SteerConfig)
def steer_command(cfg: SteerConfig) -> Reply:
    """Steer a model by a theme's atoms (add or clamp) beside single atoms and chance (docs/steer.md)."""
    from codec_cli.stages.steer import steer

    summary = steer(cfg)
    theme = summary["curves"]["theme"]
    shown = {"theme": f"{summary['theme']['number']}: {summary['theme']['label']} ({summary['theme']['atoms']} atoms)",
             "clean target": summary["clean"]["target"],
             **{f"s={r['strength']:g}": f"target {r['target']:.4g}, KL {r['kl']:.3g}" for r in theme}}
    return Reply({"out": str(cfg.out), **summary}, render_metrics(shown))


@command("monitor", MonitorConfig)
def monitor_command(cfg: MonitorConfig) -> Reply:
    """Detect themes in texts from their atoms, with a calibrated threshold, beside single atoms (docs/steer.md)."""
    from codec_cli.stages.monitor import monitor

    summary = monitor(cfg)
    shown = {f"theme {r['theme']}": f"AUROC {r['auroc']:.3f} (best single atom {r['single_atoms']['best']['auroc']:.3f}, "
                                   f"random groups {r['random_groups']['mean_auroc']:.3f}); detected "
                                   f"{r['detection_rate']:.1%} at {r['false_positive_rate']:.1%} false positives"
             for r in summary["themes"]}
    return Reply({"out": str(cfg.out), **summary}, render_metrics(shown))
