"""The HTML of `codec report`: one self-contained page, every byte of it written here.

Nothing is fetched when the page opens: styles and the table sorter are inline, figures are
data: URIs, and no element names a remote address. Every string from an artifact passes
through `esc` (artifacts are a stranger's data).
"""

from __future__ import annotations

import base64
import html
import math
from typing import Any, Iterable

MIME = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
main{max-width:1180px;margin:0 auto;padding:16px 24px 64px}
h1{font-size:24px;margin:8px 0 4px}h2{font-size:19px;margin:32px 0 6px;border-bottom:1px solid #ddd}
h3{font-size:15px;margin:18px 0 4px}a{color:#0b57d0;text-decoration:none}a:hover{text-decoration:underline}
nav{font-size:13px;columns:3;margin:8px 0}nav a{display:block}
.sub{color:#666;font-size:12px}.muted{color:#888}.fail{color:#b3261e}
section.artifact,div.card{background:#fff;border:1px solid #e3e3e3;border-radius:6px;padding:10px 16px;margin:14px 0}
table{border-collapse:collapse;margin:6px 0;font-size:12.5px}
th,td{border-bottom:1px solid #eee;padding:2px 8px;text-align:right;white-space:nowrap;max-width:420px;
overflow:hidden;text-overflow:ellipsis}
th{background:#f3f3f3;position:sticky;top:0}th.sort{cursor:pointer}th.sort:after{content:" \\2195";color:#aaa}
td.t,th.t{text-align:left}table.answers{width:100%}
table.answers td{white-space:normal;text-align:left;vertical-align:top;max-width:none}
table.nums td:first-child{text-align:left}table.nums td.t{white-space:normal;max-width:560px}
.fig{display:inline-block;margin:6px 8px 6px 0;vertical-align:top}.fig img{max-width:100%;border:1px solid #eee}
.figs{display:flex;flex-wrap:wrap}.figs .fig{max-width:100%}.fig figcaption{font-size:12px;color:#666}
details{margin:4px 0}summary{cursor:pointer;color:#444}
.ctx{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12.5px;white-space:pre-wrap;margin:1px 0}
.ctx mark{background:#ffd54f;padding:0 1px;border-radius:2px}.ctx .v{color:#888;display:inline-block;width:56px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:0 14px}
div.card:target{outline:2px solid #0b57d0}code{font-size:12.5px}
"""

# Sorts a table by the clicked column: numbers as numbers (by data-v where the cell shows a
# rounded value), text as text; a second click reverses.
SORTER = """
document.querySelectorAll("table.sortable").forEach(function(t){
  t.querySelectorAll("th").forEach(function(th,i){
    th.classList.add("sort");
    th.addEventListener("click",function(){
      var body=t.tBodies[0],rows=Array.prototype.slice.call(body.rows),up=th.dataset.dir!=="up";
      th.dataset.dir=up?"up":"down";
      function key(r){var c=r.cells[i];var v=c.dataset.v!==undefined?c.dataset.v:c.textContent;
        var n=parseFloat(v);return isNaN(n)?v:n;}
      rows.sort(function(a,b){var x=key(a),y=key(b);
        if(typeof x===typeof y){return (x<y?-1:x>y?1:0)*(up?1:-1);}return typeof x==="number"?-1:1;});
      rows.forEach(function(r){body.appendChild(r);});
    });
  });
});
"""


def esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def number(value: Any) -> str:
    """A number as people read it: 4 significant digits, integers whole, unknown as 'unknown'."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "unknown"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value == int(value) and abs(value) < 1e15:
            return f"{int(value):,}"
        return f"{value:.4g}"
    return str(value)


def short(value: Any) -> str:
    """A number inside a sentence: three significant digits, 'unknown' for None, anything else as is."""
    return "unknown" if value is None else f"{value:.3g}" if isinstance(value, float) else str(value)


def anchor(*parts: Any) -> str:
    """An element id made of `parts`, safe in HTML and in a URL fragment."""
    return "-".join("".join(c if c.isalnum() else "_" for c in str(p)) for p in parts)


def figure(name: str, data: bytes, caption: str = "") -> str:
    ext = "." + name.rsplit(".", 1)[-1].lower()
    uri = f"data:{MIME[ext]};base64,{base64.b64encode(data).decode()}"
    return (f'<figure class="fig"><img src="{uri}" alt="{esc(name)}"><figcaption>{esc(caption or name)}'
            "</figcaption></figure>")


def cell(value: Any, link: tuple[str, str] | None = None) -> str:
    """One <td>: numbers right-aligned and sortable by their full value, text left; `link` is
    (anchor, words to add after the value), for an id that has a card."""
    if isinstance(value, (list, tuple)):
        shown = ", ".join(number(v) for v in value[:12]) + (" …" if len(value) > 12 else "")
        return f'<td class="t" title="{esc(shown)}">{esc(shown)}</td>'
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        body = esc(number(value))
        if link:
            body = f'<a href="#{link[0]}">{body}{" " + esc(link[1]) if link[1] else ""}</a>'
        sort = "" if isinstance(value, float) and not math.isfinite(value) else f' data-v="{value!r}"'
        return f"<td{sort}>{body}</td>"
    text = number(value)
    return f'<td class="t" title="{esc(text)}">{esc(text)}</td>'


def table(columns: list[str], rows: Iterable[dict], links: dict[str, Any] | None = None,
          sortable: bool = True) -> str:
    """A table of `rows` (dicts by column); `links[column](value)` gives a cell's (anchor, words) or None."""
    links = links or {}
    head = "".join(f'<th class="t">{esc(c)}</th>' for c in columns)
    body = []
    for r in rows:
        tds = []
        for c in columns:
            v = r.get(c)
            to = links[c](v) if c in links and v is not None else None
            tds.append(cell(v, to))
        body.append("<tr>" + "".join(tds) + "</tr>")
    cls = ' class="sortable"' if sortable else ""
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def histogram_svg(counts: list[int], low: float, high: float, width: int = 220, height: int = 60) -> str:
    """A small bar chart of `counts` over [low, high], as inline SVG (log-scaled bars, so the
    tail of rare large activations stays visible beside the many small ones)."""
    n = max(len(counts), 1)
    top = math.log1p(max(counts)) if counts and max(counts) > 0 else 1.0
    w = width / n
    bars = "".join(
        f'<rect x="{i * w:.1f}" y="{height - 14 - (height - 16) * math.log1p(c) / top:.1f}" width="{max(w - 1, 1):.1f}" '
        f'height="{(height - 16) * math.log1p(c) / top:.1f}" fill="#5b8def"><title>{c:,}</title></rect>'
        for i, c in enumerate(counts))
    return (f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">{bars}'
            f'<text x="0" y="{height - 2}" font-size="10" fill="#666">{esc(number(low))}</text>'
            f'<text x="{width}" y="{height - 2}" font-size="10" fill="#666" text-anchor="end">{esc(number(high))}'
            "</text></svg>")


def page(title: str, body: str) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            # No request may leave the page, whatever an artifact's strings hold.
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
            "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
            f"<title>{esc(title)}</title><style>{STYLE}</style></head>\n<body><main>\n{body}\n</main>"
            f"<script>{SORTER}</script></body></html>\n")
