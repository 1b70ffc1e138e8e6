"""`codec report` (every artifact on one offline page) and `codec show` (one card in the terminal)."""

from __future__ import annotations

from codec_cli.cli.app import Reply, command
from codec_cli.config import ReportConfig, ShowConfig


@command("report", ReportConfig)
def report_command(cfg: ReportConfig) -> Reply:
    """One self-contained HTML page of every artifact under DIRS: answers, baselines, figures, cards (docs/report.md)."""
    from codec_cli.stages.report import report

    s = report(cfg)
    c = s["cards"]
    text = (f"{s['artifacts']} artifacts, {c['features']} feature, {c['neurons']} neuron and {c['themes']} theme cards; "
            f"answered: {', '.join(s['answered']) or 'nothing'}; not run: {', '.join(s['not_run']) or 'nothing'}\n"
            f"{s['out']}")
    return Reply(s, text, code=1 if s["failed"] else 0)


@command("show", ShowConfig)
def show_command(cfg: ShowConfig) -> Reply:
    """Print a feature's card (or a synthetic neuron's, or a theme's): its top contexts, the firing token marked."""
    from codec_cli.stages.cards import show, sparkline_of

    c = show(cfg)
    if c["card"] == "theme":
        lines = [f"theme {c['id']}: {c.get('label')}  ({c.get('size')} atoms; top tokens "
                 f"{', '.join(c.get('top_tokens') or [])})"]
        lines += [f"  f{a['feature']:<6} {', '.join(a['top_tokens']):<24} {a['example']}" for a in c["atoms"]]
        return Reply(c, "\n".join(lines))
    lines = [f"{c['card']} {c['id']} of {c['artifact']}: active on {c['count']:,} of {c['rows']:,} rows "
             f"({c['frequency']:.3%}), largest {c['max']:.4g}; fires on {', '.join(c['top_tokens']) or '-'}",
             f"  histogram 0 … {c['max']:.3g}: {sparkline_of(c['histogram'])}"]
    if c["card"] == "neuron":
        lines.append("  driven by " + ", ".join(f"f{d['feature']} ({d['drive']:.2g})" for d in c["drivers"]))
    lines += [f"  {e['value']:>8.4g}  {e['text']}" for e in c["examples"]]
    return Reply(c, "\n".join(lines))
