"""CI check of the static leaderboard site in a real browser (headless Chromium).

Builds the site (``python -m harness leaderboard --html``, or ``report --html`` with ``--report``) from a
results folder into a temporary folder, then has Chromium (1) dump the DOM of ``index.html`` after its
scripts ran and (2) screenshot it. Passes only when every suite section's summary table is in the DOM with a
row per ranked method (the method names the records give), the sort script is attached (a click on a header
reorders the rows) and the screenshot decodes to a non-blank page that shows the tables' header colour.

Exit 1 with one line per problem; exit 2 when Chromium is missing (CI installs it first: .ci/run).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# flags this closed network needs: no sandbox (root in a container), no GPU, nothing that phones home
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TH_COLOUR = (0xF1, 0xF3, 0xF5)  # harness.reporting.site.CSS th background: visible only where a table was rendered

# clicks the summary table's "method" header twice in the page, then writes the first row's method into
# the DOM, so --dump-dom shows whether the sort script ran (and which way it sorted)
PROBE_JS = """
<script>
window.addEventListener("load", function () {
  var t = document.querySelector("table.sortable"), out = [];
  if (t) {
    var th = Array.from(t.tHead.rows[0].cells).find(function (h) { return h.textContent.trim() === "method"; });
    var col = Array.prototype.indexOf.call(th.parentNode.children, th);
    th.click(); out.push(t.tBodies[0].rows[0].cells[col].textContent.trim());
    th.click(); out.push(t.tBodies[0].rows[0].cells[col].textContent.trim());
  }
  var p = document.createElement("pre"); p.id = "site-check-probe"; p.textContent = JSON.stringify(out);
  document.body.appendChild(p);
});
</script>
"""


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def chromium(binary: str, page: Path, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([binary, *FLAGS, f"--user-data-dir={profile}", *args, page.resolve().as_uri()],
                              capture_output=True, text=True, timeout=timeout)


class Tables(HTMLParser):
    """Rows (cell texts) of each table with an id, and the probe's text."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.probe = None
        self._table = self._row = self._cell = None
        self._in_probe = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and attrs.get("id"):
            self._table = self.tables.setdefault(attrs["id"], [])
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "pre" and attrs.get("id") == "site-check-probe":
            self._in_probe, self.probe = True, ""

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        elif tag == "tr" and self._row is not None:
            self._table.append(self._row)
            self._row = None
        elif tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "pre":
            self._in_probe = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._in_probe:
            self.probe += data


def screenshot_problems(png: Path) -> list[str]:
    import numpy as np
    from PIL import Image

    try:
        pixels = np.asarray(Image.open(png).convert("RGB"), dtype=np.int32)
    except Exception as err:  # noqa: BLE001 - any decoding failure is the finding
        return [f"screenshot {png} does not decode as an image ({err})"]
    ink = float((pixels.sum(axis=2) < 600).mean())
    header = int((pixels == TH_COLOUR).all(axis=2).sum())
    found = []
    if ink < 0.005:
        found.append(f"screenshot is blank ({ink:.2%} of pixels are not near-white)")
    if header < 500:
        found.append(f"screenshot shows no table header (only {header} pixels of the header colour)")
    return found


def check(results: Path, site_dir: Path, binary: str, report: bool = False) -> list[str]:
    from harness.reporting import site

    built = site.build(results, profiles=None, include_stale=True) if report else site.build(results)
    if not built.sections and not report:
        # every record stale (code changed since they were made; `leaderboard --check` lists them): the
        # rendering is still checked, on the report's site, which shows them flagged
        print(f"site check: no current records in {results}; checking the report's site instead", file=sys.stderr)
        built = site.build(results, profiles=None, include_stale=True)
    if not built.sections:
        return [f"no suite has records to show in {results}: the site would be empty"]
    index = site.write_html(built, results, site_dir)
    expected = {f"summary-{site._anchor(s)}": [m for m in s.summary["method"]] for s in built.sections}
    probe_page = site_dir / "site-check.html"  # a copy with the probe script, so index.html stays as built
    probe_page.write_text(index.read_text(encoding="utf-8").replace("</body>", PROBE_JS + "</body>"),
                          encoding="utf-8")
    found = []
    dom = chromium(binary, probe_page, "--dump-dom", "--virtual-time-budget=5000")
    if dom.returncode != 0 or "<table" not in dom.stdout:
        return [f"chromium --dump-dom failed (exit {dom.returncode}): {dom.stderr.strip()[-500:]}"]
    tables = Tables()
    tables.feed(dom.stdout)
    for table_id, methods in expected.items():
        rows = tables.tables.get(table_id)
        if rows is None:
            found.append(f"summary table {table_id} is not in the rendered page")
            continue
        head, body = rows[0], rows[1:]
        if "method" not in head:
            found.append(f"summary table {table_id} has no method column (header: {head})")
            continue
        shown = sorted(r[head.index("method")] for r in body)
        if shown != sorted(methods):
            found.append(f"summary table {table_id} shows methods {shown}, the records give {sorted(methods)}")
    first = next(iter(expected.values()))
    if tables.probe is None:
        found.append("the probe script did not run (no JavaScript in the page?)")
    elif len(first) > 1:
        import json

        clicks = json.loads(tables.probe)
        if clicks != [min(first, key=str.lower), max(first, key=str.lower)]:
            found.append(f"sorting by method did not reorder the first summary table: first rows after two clicks "
                         f"{clicks}, expected {[min(first, key=str.lower), max(first, key=str.lower)]}")
    shot = site_dir / "site-check.png"
    run = chromium(binary, index, f"--screenshot={shot}", "--window-size=1280,1600", "--hide-scrollbars")
    if run.returncode != 0 or not shot.is_file():
        return found + [f"chromium --screenshot failed (exit {run.returncode}): {run.stderr.strip()[-500:]}"]
    return found + screenshot_problems(shot)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results-dir", default=str(REPO / "results"))
    parser.add_argument("--report", action="store_true",
                        help="build `harness report`'s site (every record, stale ones flagged) instead")
    parser.add_argument("--keep", default=None, metavar="DIR", help="build the site here and keep it")
    args = parser.parse_args(argv)
    binary = os.environ.get("CHROMIUM") or find_chromium()
    if binary is None:
        print("site check: FAILED: no chromium on PATH (install it: apt-get install -y chromium)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        site_dir = Path(args.keep) if args.keep else Path(tmp) / "site"
        found = check(Path(args.results_dir), site_dir, binary, args.report)
    for line in found:
        print(f"site check: {line}", file=sys.stderr)
    if found:
        print(f"site check: FAILED ({len(found)} problem(s))", file=sys.stderr)
        return 1
    print(f"site check: the site from {args.results_dir} renders in {binary}: summary tables, sorting, screenshot")
    return 0


if __name__ == "__main__":
    sys.exit(main())
