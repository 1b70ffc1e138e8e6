"""The demo's report, as a person sees it: examples/Makefile run for real (at small sizes, on a
subset of its artifacts that holds every kind the themes world makes), re-run to show that
make re-runs only what changed, and the page opened in headless Chromium: no broken image,
no console error, no request off the file, links that land, tables that sort, and screenshots
of a rendered page. Chromium is Debian's `chromium` package, which `.ci/run` installs."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest

import browser

ROOT = Path(__file__).parents[2]
CODEC = Path(sys.executable).parent / "codec"
TARGETS = ["features", "squeezer-relu", "analysis-relu/or-gate", "features-resid0", "themes", "squeezer-resid0",
           "analysis-themes/themes", "steering", "monitoring"]
"""Every kind of the themes world's loop (features, squeezer, three analyses, themes, steering,
monitoring) in about two and a half minutes on two cores; `make demo` builds them all at full size."""
SMALL = ["TOKENS=30000", "EPOCHS=2", "MONITOR=flour telescope"]


def make(out: Path, *args: str) -> subprocess.CompletedProcess:
    artifacts = " ".join(f"{out}/{t}/manifest.json" for t in TARGETS)
    return subprocess.run(["make", "--no-print-directory", "-f", str(ROOT / "examples/Makefile"), f"CODEC={CODEC}",
                           f"OUT={out}", f"ARTIFACTS={artifacts}", *SMALL, *args],
                          capture_output=True, text=True, cwd=out.parent)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "demo"
    done = make(out)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[-1] == f"{out}/report.html"  # it ends by naming the page
    return out


def test_make_reruns_only_what_changed(demo) -> None:
    assert make(demo, "-q", f"{demo}/report.html").returncode == 0  # everything up to date: nothing would run
    (demo / "themes/manifest.json").touch()
    planned = make(demo, "-n").stdout
    assert "codec steer" in planned and "codec monitor" in planned and "codec report" in planned
    assert "codec extract" not in planned and "codec cluster" not in planned and "-P themes" in planned
    assert "codec squeeze" not in planned  # the themes' squeezer reads the features, not the themes


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


CHECKS = {
    "broken": "Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).length",
    "images": "document.images.length",
    "height": "document.body.scrollHeight",
    "dangling": "Array.from(document.querySelectorAll('a[href^=\"#\"]'))"
                ".filter(a => !document.getElementById(decodeURIComponent(a.hash.slice(1)))).map(a => a.hash)",
    "cards": "document.querySelectorAll('div.card').length",
    "marks": "document.querySelectorAll('.ctx mark').length",
    # Click a numeric column's header twice: up, then down, by the full values.
    "sorted": """(() => {
        const t = document.querySelector('#a-monitoring table.sortable');
        const th = Array.from(t.tHead.rows[0].cells).find(c => c.textContent === 'score');
        const i = th.cellIndex, read = () => Array.from(t.tBodies[0].rows).map(r => parseFloat(r.cells[i].dataset.v));
        th.click(); const up = read(); th.click(); const down = read();
        const ok = (xs, s) => xs.every((x, j) => j === 0 || s * (x - xs[j - 1]) >= 0);
        return ok(up, 1) && ok(down, -1) && up.length > 1;
    })()""",
    "followed": """(() => {
        const a = document.querySelector('#a-analysis_relu_or_gate a[href^="#feature-"]');
        a.click(); return location.hash === a.hash && document.querySelector(':target') !== null;
    })()""",
}


@pytest.mark.skipif(browser.chromium() is None, reason="no chromium on PATH (Debian's package `chromium`; "
                                                      ".ci/run installs it)")
def test_the_demos_report_renders_offline_in_chromium(demo, tmp_path) -> None:
    figures = [p for p in demo.rglob("*.png")]
    seen = browser.open_page(demo / "report.html", evaluate=CHECKS,
                             shots={"top": "", "or-gate": "a-analysis_relu_or_gate", "cards": "cards"})
    v = seen.values
    assert seen.console == [], seen.console
    assert seen.network == [] and seen.failed == [], (seen.network, seen.failed)
    assert v["broken"] == 0 and v["images"] == len(figures) > 5, v
    assert v["dangling"] == [], v["dangling"][:5]
    assert v["sorted"] is True and v["followed"] is True, v
    assert v["cards"] > 300 and v["marks"] > 1000 and v["height"] > 20_000, v
    for name, png in seen.screenshots.items():
        (tmp_path / f"{name}.png").write_bytes(png)  # kept with the test's files, to be looked at
        assert png_size(png) == (1280, 900)
        assert len(png) > 40_000, name  # text and figures; a blank page compresses to a few kilobytes
