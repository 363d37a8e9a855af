"""A real browser for the pages the project writes: Debian's chromium, headless, with the network cut off.
The `chromium` fixture (conftest.py) installs it when missing."""

import html
import json
import os
import re
import subprocess

MAX_BYTES = 2 * 1024 * 1024  # a report page's limit


def browse(chromium: str, page: str, *how: str) -> subprocess.CompletedProcess:
    """Headless chromium on a file with every host name unresolvable: nothing can come from a network."""
    return subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            *how,
            f"file://{page}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


# Added to a copy of a page (the report itself has no script): records load errors from the start, and
# once the page has loaded writes them, with every chart's rendered size, into the DOM chromium dumps.
PROBE = """<script>window.problems = [];
addEventListener("error", e => problems.push(String(e.message || e.target.src || e.target.href)), true);
</script>"""
MEASURE = """<script>addEventListener("load", () => document.body.insertAdjacentHTML("beforeend",
  '<pre id="probe">' + JSON.stringify({
    problems: problems,
    charts: [...document.querySelectorAll("svg")].map(s => s.getBoundingClientRect()).map(r => [r.width, r.height])
  }) + "</pre>"));</script>"""


def probe(chromium: str, page: str, tmp_path) -> tuple[dict, list[str]]:
    """What a browser shows of a page: load errors and chart sizes, and its console messages."""
    text = open(page).read().replace("<head>", "<head>" + PROBE, 1).replace("</body>", MEASURE + "</body>", 1)
    probed = tmp_path / "probed.html"
    probed.write_text(text)
    done = browse(chromium, str(probed), "--window-size=1200,3000", "--enable-logging=stderr", "--v=0", "--dump-dom")
    found = json.loads(html.unescape(re.findall(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)[-1]))
    return found, [line for line in done.stderr.splitlines() if ":CONSOLE" in line]


def assert_self_contained(page: str) -> None:
    """No script, and nothing a browser would fetch: no src or href leaving the page, no CSS import or url()."""
    text = open(page).read()
    assert "<script" not in text.lower()
    assert re.findall(r"""(?:src|href)\s*=\s*["'](?!#|data:)""", text) == []
    assert "@import" not in text and re.findall(r"url\((?!#)", text) == []  # url(#id): the page's own clip paths
    assert os.path.getsize(page) < MAX_BYTES
