"""Every notebook runs under papermill (smoke parameters), its outputs are checked, the book
builds from them with warnings as errors, and headless Chromium opens every page with the
network off: the math is typeset, every internal link resolves, chapters launch their
notebooks, and tables fit pages 1280 and 800 pixels wide.

``GLA_TEST_BOOK_GENERATED=<folder>`` builds the book from a tree that ``gla book run --smoke``
executed before instead of running the notebooks again (to check a change of the pages or
the configuration in two minutes); the tests of the notebooks' outputs then read that tree.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from book_pages import (
    MATH_JS,
    TABLES_JS,
    assert_chapter_launches_its_notebook,
    assert_serves_its_own_scripts,
    frames_page,
    results_in_chromium,
)

from gla.book import NOTEBOOKS_DIR, NotebookFailures, list_notebooks, load_params, run_notebooks
from gla.chapters import book_chapters, chapter_stems

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = {c.stem: c for c in book_chapters()}  # the book's table of contents, with what each chapter declares

# notebook -> files its output folder must hold, and columns of its main table; a chapter of the
# table of contents without an entry must run without an error and leave a table with rows
EXPECTED = {
    "00_the_world": (["world_examples.png", "true_prior.png", "concepts.csv", "world_regime.csv", "tasks.csv"],
                     ("world_regime.csv", {"zero_shot_all", "zero_shot_head", "zero_shot_tail", "spearman_estimated_true"})),
    "01_label_bias": (["per_class_accuracy.png", "per_class_accuracy.csv", "label_bias_rows.json"],
                      ("per_class_accuracy.csv", {"class", "estimated_log_prior", "zero_shot", "fine_tuned", "true_log_prior"})),
    "02_estimating_the_prior": (["debiased_per_class.png", "estimated_vs_true_prior.png", "estimator_diagnostics.csv"],
                                ("accuracy_by_true_prior.csv", {"head", "medium", "tail", "all"})),
    "03_many_shot": (["wise_ft_sweep.png", "many_shot.json"],
                     ("many_shot.csv", {"backbone", "dataset", "method", "split", "shots", "seed", "top1", "head", "medium", "tail", "alpha"})),
    "04_distribution_shift": (["distribution_shift.json"], ("distribution_shift.csv", {"eval_set", "method", "top1"})),
    "05_other_many_shot": (["other_many_shot.json"], ("other_many_shot.csv", {"dataset", "method", "top1"})),
    "06_few_shot": (["few_shot_panels.png", "few_shot_average_table.csv"],
                    ("few_shot.csv", {"dataset", "method", "shots", "seed", "top1", "t_zs", "t_ft"})),
    "07_few_shot_robustness": (["gla_gain_over_ensemble.png", "few_shot_shift_table.csv"],
                               ("gla_gain_over_ensemble.csv", {"dataset"})),
    "08_long_tail": (["long_tail.json"], ("long_tail.csv", {"many", "medium", "few", "mean_per_class", "method"})),
    "09_ablations": (["estimation_ablation.png", "protocol_comparison.csv"],
                     ("estimation_ablation.csv", {"per_class", "seed", "temperature", "debiased_top1", "gla_top1"})),
    "10_prior_vs_truth": (["zipf_sweep.png", "zipf_sweep.json", "prior_explained.png", "prior_explained_joint.csv"],
                          ("zipf_sweep.csv", {"world_zipf_exponent", "world_seed", "spearman_estimated_true",
                                              "bias_slope", "head_minus_tail"})),
    "11_estimators": (["estimators_compared.png", "estimators_compared.json"],
                      ("estimators_compared.csv", {"estimator", "debiased_top1", "gla_top1", "spearman_true",
                                                   "mae_to_exact", "sum_q"})),
    "12_calibration": (["reliability.png", "reliability_bins.csv"],
                       ("calibration.csv", {"model", "top1", "ece", "mean_confidence"})),
    "14_claims": (["claims.json", "environment.csv"],
                  ("claims.csv", {"id", "claim", "chapter", "published", "published_source", "measured", "verdict"})),
    "13_real_frequencies": (["world_counts.json", "world_counts.tsv", "prior_vs_counts.png"],
                            ("prior_vs_counts.csv", {"classname", "count", "estimated_log_prior", "name_match"})),
}


@pytest.fixture(scope="module")
def smoke_book(tmp_path_factory):
    """A copy of the book's sources with the notebooks executed in smoke mode, built."""
    tmp = tmp_path_factory.mktemp("book")
    shutil.copy(ROOT / "_config.yml", tmp / "_config.yml")
    shutil.copytree(ROOT / "book", tmp / "book", ignore=shutil.ignore_patterns("generated*", "_build"))
    out = tmp / "book" / "generated"
    executed = os.environ.get("GLA_TEST_BOOK_GENERATED")
    if executed:
        shutil.copytree(executed, out)
    else:
        shipped = load_params(NOTEBOOKS_DIR / "params" / "default.yaml")  # lanes as `make book` runs them
        order = {k: shipped[k] for k in ("lanes", "after_lanes")}
        try:  # every notebook runs; each one's test below reports its own failure
            run_notebooks({"smoke": True, "cache_dir": str(tmp_path_factory.mktemp("cache")), **order}, out,
                          jobs=2, keep_going=True)
        except NotebookFailures as exc:
            print(exc)
    jb = shutil.which("jupyter-book") or str(Path(sys.executable).parent / "jupyter-book")
    build = subprocess.run([jb, "build", str(tmp / "book"), "-W", "--keep-going",
                            "--path-output", str(tmp / "site")], capture_output=True, text=True, cwd=tmp)
    return out, build, tmp / "site" / "_build" / "html"


@pytest.fixture(scope="module")
def built_site(smoke_book):
    """The built smoke site (the build must have passed)."""
    _, build, site = smoke_book
    assert build.returncode == 0 and (site / "index.html").is_file(), build.stdout[-2000:] + build.stderr[-2000:]
    return site


def chapter_pages(site: Path) -> dict[str, str]:
    """HTML of every chapter page (the executed notebooks), by stem."""
    return {p.stem: p.read_text() for p in sorted((site / "generated").glob("*.html"))}


def glued(nb) -> dict:
    """Values glued with ``myst_nb.glue`` in an executed notebook, by name (text/markdown as
    it is, else text/plain evaluated)."""
    import ast

    values = {}
    for c in nb.cells:
        for o in c.get("outputs", []) if c.cell_type == "code" else []:
            scrap = o.get("metadata", {}).get("scrapbook", {})
            prefix, data = scrap.get("mime_prefix", ""), o.get("data", {})
            mime = next((prefix + m for m in ("text/markdown", "text/plain") if prefix + m in data), None)
            if scrap.get("name") and mime:
                name, text = scrap["name"], data[mime]
                if mime.endswith("markdown"):
                    values[name] = text
                    continue
                try:
                    values[name] = ast.literal_eval(text)
                except (ValueError, SyntaxError):
                    values[name] = text
    return values


def test_every_notebook_is_a_chapter_of_the_table_of_contents():
    assert {p.stem for p in list_notebooks()} == set(chapter_stems())
    assert set(EXPECTED) <= set(chapter_stems())


@pytest.mark.parametrize("stem", chapter_stems())
def test_notebook_outputs(smoke_book, stem):
    out, _, _ = smoke_book
    nb = nbformat.read(str(out / f"{stem}.ipynb"), as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, "\n".join(f"{e.ename}: {e.evalue}" for e in errors)
    folder = out / "results" / stem
    files, (table, columns) = EXPECTED.get(stem, ([], (None, set())))
    for f in files:
        assert (folder / f).is_file() and (folder / f).stat().st_size > 0, f"{stem}: {f} missing"
    tables = [folder / table] if table else sorted(folder.glob("*.csv"))
    assert tables, f"{stem}: no table in {folder}"
    df = pd.read_csv(tables[0])
    assert len(df) and columns <= set(df.columns), f"{stem}: {tables[0].name} has columns {list(df.columns)}"
    if CHAPTERS[stem].checks_claims:  # it ran after every chapter it reads
        claims = pd.read_csv(folder / "claims.csv")
        assert (claims.verdict != "not measured").all(), claims[["id", "verdict"]]


def test_book_builds_without_warnings(smoke_book):
    _, build, site = smoke_book
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    assert (site / "index.html").is_file()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CHECK_PAGE = """<!doctype html><html><body><script>
const pages = %s;
const results = {};
let pending = pages.length;
for (const p of pages) {
  const f = document.createElement('iframe');
  f.src = p;
  f.onload = () => setTimeout(() => {
    const d = f.contentDocument;
    const imgs = Array.from(d.images);
    results[p] = {
      title: d.title,
      images: imgs.length,
      broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src')),
      glue: d.querySelectorAll('.pasted-text').length,
      empty_glue: Array.from(d.querySelectorAll('.pasted-text')).filter(e => !e.textContent.trim()).length,
      errors: d.querySelectorAll('.output.error, .cell_output .traceback').length,
    };
    if (--pending === 0) document.body.setAttribute('data-results', JSON.stringify(results));
  }, 500);
  document.body.appendChild(f);
}
</script></body></html>"""


def test_pages_open_in_headless_chromium(smoke_book, tmp_path):
    out, build, site = smoke_book
    assert build.returncode == 0 and site.is_dir(), build.stdout[-2000:]
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium is needed for this test (make test installs it)"
    pages = sorted(str(p.relative_to(site)) for p in site.rglob("*.html")
                   if p.parent.name in ("html", "generated")
                   and not p.name.startswith(("genindex", "search", "index")))  # index.html only redirects
    assert any(p.startswith("generated/") for p in pages)
    (site / "_check.html").write_text(CHECK_PAGE % json.dumps(pages))
    port = _free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), partial(SimpleHTTPRequestHandler, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        res = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                              "--disable-background-networking", "--disable-component-update", "--disable-sync",
                              f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=30000",
                              "--dump-dom", f"http://127.0.0.1:{port}/_check.html"],
                             capture_output=True, text=True, timeout=180)
    finally:
        server.shutdown()
    marker = 'data-results="'
    assert marker in res.stdout, res.stderr[-2000:]
    import html

    results = json.loads(html.unescape(res.stdout.split(marker, 1)[1].split('"', 1)[0]))
    assert set(results) == set(pages)
    for page, r in results.items():
        assert r["title"], f"{page} did not load"
        assert not r["broken"], f"{page}: images not found: {r['broken']}"
        assert r["empty_glue"] == 0 and r["errors"] == 0, f"{page}: {r}"
    # Every figure the notebooks show (a {figure} directive or an image output) is an image on
    # its page, and the glued numbers render.
    expected = 0
    for nb_path in out.glob("*.ipynb"):
        nb = nbformat.read(str(nb_path), as_version=4)
        expected += sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code"
                        for o in c.get("outputs", []))
        expected += sum(c.source.count("```{figure}") for c in nb.cells if c.cell_type == "markdown")
    figures = sum(r["images"] for p, r in results.items() if p.startswith("generated/"))
    glued = sum(r["glue"] for p, r in results.items() if p.startswith("generated/"))
    assert expected >= 9 and figures >= expected, (figures, expected)
    assert glued >= 20, glued


# --------------------------------------------------------------------------- what a reader sees

WARNING_TEXT = ("Warning", "warnings.warn", "IProgress", "No pretrained weights", "UserWarning", "FutureWarning",
                "DeprecationWarning", "RuntimeWarning", "Traceback")


def test_pages_show_no_path_of_the_building_machine(built_site, tmp_path_factory):
    """The smoke book is executed and built in pytest's tmp folders and the cache lives
    there too: none of those folders, nor the checkout's, may appear in any page."""
    machine = {str(tmp_path_factory.getbasetemp()), str(tmp_path_factory.getbasetemp().resolve()), str(ROOT)}
    for page in sorted(built_site.rglob("*.html")):
        text = page.read_text()
        leaked = [m for m in machine if m in text]
        assert not leaked, f"{page.relative_to(built_site)} shows {leaked}"


def test_no_warning_text_in_any_output(smoke_book):
    """What a notebook prints on the page (every output of a cell not removed) holds no
    warning or progress-bar text."""
    out, _, _ = smoke_book
    for nb_path in sorted(out.glob("*.ipynb")):
        nb = nbformat.read(str(nb_path), as_version=4)
        for c in nb.cells:
            tags = set(c.metadata.get("tags", []))
            if c.cell_type != "code" or {"remove-cell", "remove-output"} & tags:
                continue
            for o in c.get("outputs", []):
                if o.get("output_type") == "error":
                    continue  # test_notebook_outputs reports errors
                texts = [o.get("text", "")] + [o.get("data", {}).get(m, "") for m in ("text/plain", "text/html")]
                text = "".join("".join(t) if isinstance(t, list) else str(t) for t in texts)
                found = [w for w in WARNING_TEXT if w in text]
                assert not found, f"{nb_path.stem}: output shows {found}: {text[:300]}"


def test_no_parameter_cell_is_visible(smoke_book, built_site):
    out, _, _ = smoke_book
    for nb_path in sorted(out.glob("*.ipynb")):
        nb = nbformat.read(str(nb_path), as_version=4)
        for c in nb.cells:
            tags = set(c.metadata.get("tags", []))
            if {"parameters", "injected-parameters"} & tags:
                assert "remove-cell" in tags, f"{nb_path.stem}: a parameters cell is shown"
    for stem, html in chapter_pages(built_site).items():
        assert "tag_injected-parameters" not in html and "tag_parameters" not in html, stem
        assert "# Parameters" not in html, f"{stem}: papermill's injected parameters are on the page"


def test_every_figure_is_numbered_with_a_caption(built_site):
    """Each image on a chapter page sits in a numbered figure whose caption says what to look at."""
    import re

    total = 0
    for stem, page in chapter_pages(built_site).items():
        html = page.split('<article class="bd-article">', 1)[1].split("</article>", 1)[0]  # not the header's logos
        figures = re.findall(r"<figure.*?</figure>", html, flags=re.S)
        images = len(re.findall(r"<img ", html))
        assert images == len(figures), f"{stem}: {images} images but {len(figures)} figures with captions"
        for f in figures:
            caption = re.search(r"<figcaption>(.*?)</figcaption>", f, flags=re.S)
            assert caption, f"{stem}: a figure without a caption"
            assert "caption-number" in caption.group(1), f"{stem}: an unnumbered figure"
            words = re.sub(r"<[^>]+>", " ", caption.group(1)).split()
            assert len(words) >= 8, f"{stem}: caption too short: {' '.join(words)}"
            assert ".svg" in f, f"{stem}: a figure that is not SVG line art"
        total += len(figures)
    assert total >= 15, total


def test_every_chapter_links_its_files_and_the_links_resolve(built_site):
    import re

    for stem, html in chapter_pages(built_site).items():
        links = re.findall(r'<a class="reference download internal"[^>]*href="([^"]+)"', html)
        assert links, f"{stem}: no download links"
        assert any(h.endswith((".csv", ".json", ".tsv")) for h in links), f"{stem}: no table to download"
        for href in links:
            target = (built_site / "generated" / href).resolve()
            assert target.is_file() and target.stat().st_size > 0, f"{stem}: {href} does not resolve"
            assert "_downloads" in target.parts
    results = (built_site / "results.html").read_text()
    links = re.findall(r'<a class="reference download internal"[^>]*href="([^"]+)"', results)
    assert [h for h in links if h.endswith("results.zip")], "the All results page does not link results.zip"
    import zipfile

    for href in links:
        with zipfile.ZipFile(built_site / href) as zf:
            names = zf.namelist()
        assert any(n.startswith("03_many_shot/") and n.endswith(".csv") for n in names), names[:10]


def test_direction_words_agree_with_their_numbers(smoke_book):
    """Every word glued as ``<key>_word`` (report.glue_direction) states the direction of the
    number glued as ``<key>``: "higher" only above zero, "lower" only below, "the same" only
    for a difference too small to show."""
    from gla.report import DIRECTION_TOLERANCE, DIRECTION_WORDS

    out, _, _ = smoke_book
    checked = set()
    for nb_path in sorted(out.glob("*.ipynb")):
        values = glued(nbformat.read(str(nb_path), as_version=4))
        for key, word in values.items():
            if not key.endswith("_word"):
                continue
            number = key.removesuffix("_word")
            assert number in values, f"{nb_path.stem}: {key} glued without the number {number}"
            assert word in DIRECTION_WORDS, f"{nb_path.stem}: {key} = {word!r} is not in report.DIRECTION_WORDS"
            v, sign = float(values[number]), DIRECTION_WORDS[word]
            ok = v > 0 if sign > 0 else v < 0 if sign < 0 else abs(v) <= DIRECTION_TOLERANCE
            assert ok, f"{nb_path.stem}: {key} says {word!r} but {number} = {v}"
            checked.add(f"{nb_path.stem}:{number}")
    chapters = {c.split(":")[0] for c in checked}
    assert {"01_label_bias", "02_estimating_the_prior", "03_many_shot"} <= chapters, sorted(checked)


def test_chapter_01_says_label_bias_only_when_the_head_is_ahead(smoke_book):
    out, _, _ = smoke_book
    values = glued(nbformat.read(str(out / "01_label_bias.ipynb"), as_version=4))
    verdict = values["label_bias_verdict"]
    if values["zs_gap_word"] == "higher":
        assert "shows what the paper calls label bias" in verdict
    else:
        assert "shows what the paper calls label bias" not in verdict and "paper" in verdict


# --------------------------------------------------------------------------- the book as a reader opens it


def _pages(site: Path) -> list[str]:
    """Every page of the book (index.html only redirects)."""
    return sorted(str(p.relative_to(site)) for p in site.rglob("*.html")
                  if p.parent.name in ("html", "generated") and not p.name.startswith(("genindex", "search", "index",
                                                                                        "_check")))


def test_math_is_typeset_offline_and_no_raw_latex_is_left(built_site, tmp_path):
    """MathJax ships with the site: with every other host unreachable, no page shows a raw
    \\( \\) \\[ or \\] outside code, and the pages with math have it typeset."""
    assert_serves_its_own_scripts(built_site)
    pages = _pages(built_site)
    results = results_in_chromium(built_site, frames_page(pages, [1280], MATH_JS), tmp_path / "profile")
    assert set(results) == {f"{p}@1280" for p in pages}
    raw = {p: r["raw"] for p, r in results.items() if r["raw"]}
    assert not raw, f"raw LaTeX on the page: {raw}"
    for page in ("intro.html@1280", "method.html@1280"):
        assert results[page]["math"] > 3 and results[page]["typeset"] >= results[page]["math"], results[page]


def test_every_internal_link_and_anchor_resolves(built_site):
    """Chapters, sections, figures, downloads and glossary terms (python -m gla.book_check)."""
    from gla.book_check import _pages as site_pages
    from gla.book_check import _parse, broken_links

    assert broken_links(built_site) == []
    refs = [(p, t, r) for p in site_pages(built_site) for t, r in _parse(p).refs]
    kinds = {"chapter": [r for _, t, r in refs if t == "a" and "generated/" in r and r.endswith(".html")],
             "anchor": [r for _, t, r in refs if t == "a" and "#" in r and not r.startswith("http")],
             "figure": [r for _, t, r in refs if t == "img" and "_images/" in r],
             "download": [r for _, t, r in refs if t == "a" and "_downloads/" in r]}
    assert all(len(v) >= 10 for v in kinds.values()), {k: len(v) for k, v in kinds.items()}


def test_every_chapter_launches_its_source_notebook(built_site):
    for page in sorted((built_site / "generated").glob("*.html")):
        assert_chapter_launches_its_notebook(built_site, page.stem)


@pytest.mark.parametrize("width", [1280, 800])
def test_tables_fit_the_page(built_site, tmp_path, width):
    """At 1280 and 800 pixels no page scrolls sideways; a table wider than its box scrolls in
    it with its first column held in view. The claims table fits: its statements wrap in the
    widest column, and its numbers and verdicts stay on one line."""
    pages = _pages(built_site)
    results = results_in_chromium(built_site, frames_page(pages, [width], TABLES_JS), tmp_path / "profile")
    claims = None
    for page, r in sorted(results.items()):
        assert r["page_overflow"] <= 1, f"{page} scrolls sideways by {r['page_overflow']} px"
        for t in r["tables"]:
            if t["width"] > t["box"] + 1:
                assert t["scrolls"] and t["sticky"], f"{page}: a table wider than the page loses its first column: {t}"
            if t["head"][:1] == ["claim"]:
                claims = t
    assert claims is not None, "no claims table on the claims page"
    assert claims["width"] <= claims["box"] + 1, f"the claims table does not fit at {width} px: {claims}"
    head = claims["head"]
    widths = dict(zip(head, claims["columns"]))
    assert widths["claim"] == max(widths.values()), widths
    short = [head.index(c) for c in ("measured", "verdict")]
    assert all(row[i] == 1 for row in claims["lines"] for i in short), claims["lines"]
    assert all(row[head.index("lacks")] <= 1 for row in claims["lines"]), claims["lines"]  # empty off the world
    assert any(row[head.index("claim")] > 1 for row in claims["lines"])  # statements wrap


def test_tables_name_models_not_cache_files(built_site):
    """The many-shot table names the world's CLIP as a reader knows it; no page shows a cache
    file of the building machine (gla.report.model_label)."""
    import re

    for page in sorted(built_site.rglob("*.html")):
        text = page.read_text()
        shown = re.findall(r"\[cache\][^<\"]*|clip-[0-9a-f]{16}\.pt", text)
        assert not shown, f"{page.relative_to(built_site)} shows {shown}"
    many_shot = (built_site / "generated" / "03_many_shot.html").read_text()
    assert "the world&#39;s CLIP (seed 0)" in many_shot or "the world's CLIP (seed 0)" in many_shot
