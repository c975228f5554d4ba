"""Helpers of the tests that read the built book as a reader does: its launch links, the
scripts it loads, and pages opened in headless Chromium with the network off."""

from __future__ import annotations

import html as html_lib
import json
import re
import shutil
import socket
import subprocess
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def assert_chapter_launches_its_notebook(html: Path, stem: str) -> None:
    """The chapter's launch buttons open notebooks/<stem>.ipynb of the repository (a file the
    repository holds), in Colab and in Binder; a page that is no notebook has none."""
    from gla.book_launch import repository_url

    org_repo = repository_url(ROOT / "_config.yml").removeprefix("https://github.com/")
    page = (html / "generated" / f"{stem}.html").read_text()
    links = set(re.findall(r'href="(https://(?:colab\.research\.google\.com|mybinder\.org)[^"]+)"', page))
    assert links == {f"https://colab.research.google.com/github/{org_repo}/blob/main/notebooks/{stem}.ipynb",
                     f"https://mybinder.org/v2/gh/{org_repo}/main?urlpath=lab/tree/notebooks/{stem}.ipynb"}, links
    tracked = subprocess.run(["git", "ls-files", "--error-unmatch", f"notebooks/{stem}.ipynb"], cwd=ROOT,
                             capture_output=True)
    assert tracked.returncode == 0, f"notebooks/{stem}.ipynb is not in the repository"
    assert "colab.research.google.com" not in (html / "method.html").read_text()


def assert_serves_its_own_scripts(html: Path) -> None:
    """Every page loads its scripts and styles from the site itself (MathJax included), so it
    renders offline."""
    for page in html.rglob("*.html"):
        text = page.read_text()
        remote = re.findall(r'<(?:script|link)\b[^>]*(?:src|href)="((?:https?:)?//[^"]+)"', text)
        assert not remote, f"{page.relative_to(html)} loads {remote}"
    assert (html / "_static" / "mathjax" / "tex-chtml.js").is_file()
    assert '<script defer="defer" src="_static/mathjax/tex-chtml.js">' in (html / "intro.html").read_text()


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "Debian's chromium is needed for this test (make test installs it)"
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def results_in_chromium(site: Path, check_page: str, profile: Path, *, budget_ms: int = 30000) -> dict:
    """Serve ``site`` on 127.0.0.1, open ``check_page`` (HTML written into the site) in headless
    Chromium with every other host unreachable, and return the JSON its script leaves in the
    body's ``data-results`` attribute."""
    name = "_check_%d.html" % abs(hash(check_page))
    (site / name).write_text(check_page)
    port = _free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), partial(_Quiet, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        res = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                              "--no-first-run", "--disable-background-networking", "--disable-component-update",
                              "--disable-sync", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                              f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}",
                              "--window-size=1400,1000", "--dump-dom", f"http://127.0.0.1:{port}/{name}"],
                             capture_output=True, text=True, timeout=300)
    finally:
        server.shutdown()
        (site / name).unlink()
    marker = 'data-results="'
    assert marker in res.stdout, res.stderr[-2000:]
    return json.loads(html_lib.unescape(res.stdout.split(marker, 1)[1].split('"', 1)[0]))


# Opens each page in an iframe of each width and calls `measure(document, width)` once the
# page's MathJax has typeset (MathJax.startup.promise), or at once on a page without math.
FRAMES = """<!doctype html><html><body><script>
const pages = %(pages)s, widths = %(widths)s, results = {};
let pending = pages.length * widths.length;
%(measure)s
for (const w of widths) for (const p of pages) {
  const f = document.createElement('iframe');
  f.style.width = w + 'px'; f.style.height = '900px'; f.src = p;
  f.onload = () => {
    const mj = f.contentWindow.MathJax;
    const typeset = mj && mj.startup && mj.startup.promise ? mj.startup.promise : Promise.resolve();
    typeset.then(() => setTimeout(() => {
      results[p + '@' + w] = measure(f.contentDocument, w);
      if (--pending === 0) document.body.setAttribute('data-results', JSON.stringify(results));
    }, 300));
  };
  document.body.appendChild(f);
}
</script></body></html>"""


def frames_page(pages: list[str], widths: list[int], measure_js: str) -> str:
    """A check page for :func:`results_in_chromium` that runs ``measure_js`` (a JavaScript
    ``function measure(d, width)``) on every page at every width."""
    return FRAMES % {"pages": json.dumps(pages), "widths": json.dumps(widths), "measure": measure_js}


# The visible text of a page outside code, and the math MathJax typeset.
MATH_JS = """function measure(d, width) {
  const walker = d.createTreeWalker(d.body, NodeFilter.SHOW_TEXT);
  const raw = [];
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const e = n.parentElement;
    if (!e || e.closest('pre, code, script, style, mjx-container, .MathJax')) continue;
    if (!e.getClientRects().length) continue;  // not displayed
    const m = n.textContent.match(/\\\\[()\\[\\]]/);
    if (m) raw.push(n.textContent.trim().slice(0, 80));
  }
  return {raw: raw, typeset: d.querySelectorAll('mjx-container').length,
          math: d.querySelectorAll('.math').length};
}"""


# Every table of a page at a width: does it fit its box, or scroll in it with its first
# column held; the page itself must not scroll sideways. For the claims table: the width of
# each column and the lines each cell takes.
TABLES_JS = """function lines(d, cell) {
  const r = d.createRange(); r.selectNodeContents(cell);
  return new Set(Array.from(r.getClientRects()).filter(x => x.width > 0).map(x => Math.round(x.top))).size;
}
function measure(d, width) {
  const tables = [];
  for (const t of d.querySelectorAll('article table')) {
    const box = t.closest('.output, .pst-scrollable-table-container') || t.parentElement;
    const row = t.querySelector('tbody tr');
    const first = row ? row.firstElementChild : null;
    const head = Array.from(t.querySelectorAll('thead tr:first-child th')).map(x => x.textContent.trim());
    const entry = {head: head, width: Math.round(t.getBoundingClientRect().width), box: box.clientWidth,
                   scrolls: ['auto', 'scroll'].includes(getComputedStyle(box).overflowX),
                   sticky: first ? getComputedStyle(first).position === 'sticky' : false};
    if (head[0] === 'claim') {
      entry.columns = Array.from(t.querySelectorAll('thead th')).map(x => Math.round(x.getBoundingClientRect().width));
      entry.lines = Array.from(t.querySelectorAll('tbody tr')).map(
        r => Array.from(r.children).map(c => lines(d, c)));
    }
    tables.push(entry);
  }
  return {page_overflow: d.documentElement.scrollWidth - d.documentElement.clientWidth, tables: tables};
}"""
