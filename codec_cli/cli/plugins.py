"""`codec plugins`: the installed analysis plugins, and whether each one loads."""

from __future__ import annotations

from codec_cli.cli.app import Reply, command


def plugin_list() -> list[dict]:
    """One record per plugin: metadata, plus what loading it says (API version, status)."""
    from codec_cli import registry  # reads entry points: not for `codec --help`
    from codec_cli.errors import CodecError

    rows = []
    for info in registry.discover():
        row = {"name": info.name, "package": info.package, "version": info.version,
               "builtin": info.builtin, "api_version": None, "requires": [], "status": "ok"}
        try:
            plugin = registry.load(info)
            row["api_version"] = plugin.api_version
            row["requires"] = list(getattr(plugin, "requires", ()))
        except CodecError as e:
            row["status"] = f"error: {e}"
        rows.append(row)
    return rows


def render(rows: list[dict]) -> str:
    from codec_cli import registry

    if not rows:
        if registry.allowed_names() is not None:
            return "No analysis plugins loaded: CODEC_LOAD_PLUGINS is empty (unset it to load all)."
        return "No analysis plugins installed."
    head = ("name", "package", "version", "api", "built-in", "requires", "status")
    body = [(r["name"], r["package"], r["version"], str(r["api_version"] or "-"),
             "yes" if r["builtin"] else "no", ",".join(r["requires"]) or "-", r["status"]) for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip() for line in (head, *body)]
    return "\n".join(lines)


@command("plugins", panel="Plugins")
def plugins_command() -> Reply:
    """List the analysis plugins: name, package, version, plugin API version, built-in or not.

    CODEC_LOAD_PLUGINS=a,b limits which plugins (by name or package) are loaded.
    """
    rows = plugin_list()
    return Reply(rows, render(rows))
