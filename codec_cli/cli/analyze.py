"""`codec analyze`: run analysis plugins on artifacts."""

from __future__ import annotations

from codec_cli.cli.app import Reply, command
from codec_cli.config import AnalyzeConfig
from codec_cli.cli import console


def render(report: dict[str, dict]) -> str:
    lines = []
    for name, r in report.items():
        if r["status"] == "ok":
            shown = ", ".join(f"{k}={v}" for k, v in r["summary"].items() if not isinstance(v, (dict, list)))
            lines.append(f"{name}: ok -> {r['out']}" + (f"  ({shown})" if shown else ""))
        elif r["status"] == "skipped":
            lines.append(f"{name}: skipped  ({r['reason']})")
        else:
            lines.append(f"{name}: FAILED  {r['error']}")
    return "\n".join(lines)


@command("analyze", AnalyzeConfig)
def analyze_command(cfg: AnalyzeConfig) -> Reply:
    """Run analysis plugins on artifacts; writes OUT/PLUGIN/ per plugin (see `codec plugins`)."""
    from codec_cli.stages.analyze import analyze

    report = analyze(cfg.inputs, cfg.out, cfg.plugin or None, cfg.param)
    failed = [n for n, r in report.items() if r["status"] == "failed"]
    for n in failed:
        console.err.print(f"Error: {report[n]['error']}", markup=False, style="red")
    return Reply(report, render(report), code=1 if failed else 0)
