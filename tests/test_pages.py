"""The pages of a book built for a real backbone (gla.pages, gla.book.build_book): written
from what the executed notebooks recorded, the parameters papermill injected and the
results rows each chapter wrote."""

from __future__ import annotations

import subprocess

import nbformat
import pandas as pd
import pytest
from book_pages import assert_chapter_launches_its_notebook, assert_serves_its_own_scripts

from gla.book import executed_chapters
from gla.errors import UsageError
from gla.pages import chapter_runs, intro_page, needs_run_pages, published_beside_measured, real_pages

SHARED = {"backbone": "ViT-B-16", "pretrained": "openai", "data_root": "/data/somewhere", "smoke": False}
# chapter -> the parameters its notebook was executed with (papermill's record)
REAL = {"00_the_world": {**SHARED, "backbone": "gla-world-tiny", "pretrained": "world"},
        "03_many_shot": {**SHARED, "dataset": "imagenet", "extra_backbones": [["ViT-B-32", "/ckpt/b32.pt"]]},
        "04_distribution_shift": {**SHARED, "dataset": "imagenet", "shifted": ["imagenet_v2"]},
        "06_few_shot": {**SHARED, "backbone": "RN50", "datasets": ["imagenet", "dtd"],
                        "shifted": {"imagenet": ["imagenet_a"]}},
        "13_real_frequencies": {**SHARED, "pretrained": "laion2b_s34b_b88k", "counts_file": "/data/counts/freq.txt"}}


def executed(folder, stem, params, *, error=None, parameters_cell="backbone = 'gla-world-tiny'"):
    """A notebook as papermill leaves it: the parameters cell, papermill's record of the
    injected parameters, a heading and an output (or an error)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = nbformat.v4.new_code_cell(parameters_cell)
    cell.metadata["tags"] = ["parameters"]
    code = nbformat.v4.new_code_cell("print(42)")
    code.outputs = [nbformat.v4.new_output("error", ename=error[0], evalue=error[1], traceback=[]) if error
                    else nbformat.v4.new_output("stream", name="stdout", text="42\n")]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# Chapter {stem}"), cell, code]
    if params is not None:
        nb.metadata["papermill"] = {"parameters": params, "exception": bool(error)}
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(folder / f"{stem}.ipynb"))


def tree(root, records, results):
    """A tree of executed chapters: <root>/<stem>.ipynb and <root>/results (``results``)."""
    for stem, params in records.items():
        executed(root, stem, params)
        folder = root / "results" / stem
        folder.mkdir(parents=True, exist_ok=True)
        if not any(folder.iterdir()):
            pd.DataFrame([{"x": 1}]).to_csv(folder / "other.csv", index=False)
    return root


def _row(**kw):
    row = {"backbone": "ViT-B-16-quickgelu", "pretrained": "openai", "dataset": "imagenet", "eval_set": "imagenet",
           "split": "test", "shots": "all", "seed": 0, "method": "zero_shot", "top1": 0.675}
    row.update(kw)
    return row


@pytest.fixture
def results(tmp_path):
    root = tmp_path / "results"
    (root / "03_many_shot").mkdir(parents=True)
    pd.DataFrame([
        _row(),
        _row(method="fine_tuned", top1=0.80, pretrained="/machine/ckpt/ViT-B-16.pt"),  # a file: not 'openai'
        _row(split="val", top1=0.10),  # a validation row is not the published test number
        _row(backbone="gla-world-tiny", pretrained="/x/clip.pt", dataset="world-main", eval_set="world-main"),
    ]).to_csv(root / "03_many_shot" / "many_shot.csv", index=False)
    (root / "04_distribution_shift").mkdir()
    pd.DataFrame([_row(eval_set="imagenet_v2", top1=0.60, seed=s) for s in (0, 1)]
                 + [_row(eval_set="imagenet_v2", top1=0.62, seed=2)]).to_csv(
        root / "04_distribution_shift" / "distribution_shift.csv", index=False)
    (root / "06_few_shot").mkdir()
    pd.DataFrame([_row(backbone="RN50", shots="16", seed=s, method="gla", top1=v)
                  for s, v in enumerate((0.65, 0.66, 0.67))]).to_csv(root / "06_few_shot" / "few_shot.csv",
                                                                     index=False)
    (root / "06_few_shot" / "notes.csv").write_text("")  # an empty table is skipped
    return root


def test_published_numbers_are_matched_to_measured_test_rows(results):
    """Published values from gla/data/published.json (VRF Table 2: ViT-B/16 zero-shot 68.3 on
    ImageNet, 61.9 on ImageNet-V2; the official few-shot logs: RN50 GLA at 16 shots 65.63)."""
    pub = published_beside_measured(results)
    got = {(r.chapter, r.backbone, r.dataset, r.method, r.shots): (r.published, round(r.measured, 2), r.seeds)
           for r in pub.itertuples()}
    assert got == {
        ("03_many_shot", "ViT-B-16-quickgelu", "imagenet", "zero_shot", "all"): (68.3, 67.5, 1),
        ("04_distribution_shift", "ViT-B-16-quickgelu", "imagenet_v2", "zero_shot", "all"): (61.9, 60.67, 3),
        ("06_few_shot", "RN50", "imagenet", "gla", "16"): (65.63, 66.0, 3),
    }
    assert set(pub.source) == {"VRF (NeurIPS 2024), Table 2", "official GLA few-shot README, example logs"}


def test_no_published_number_for_the_world(tmp_path):
    (tmp_path / "03").mkdir()
    pd.DataFrame([_row(backbone="gla-world-tiny", dataset="world-main", eval_set="world-main")]).to_csv(
        tmp_path / "03" / "t.csv", index=False)
    assert published_beside_measured(tmp_path).empty
    assert published_beside_measured(tmp_path / "missing").empty


@pytest.fixture
def real_tree(tmp_path, results):
    gen = tmp_path / "gen"
    gen.mkdir()
    results.rename(gen / "results")
    pd.DataFrame([_row(), _row(backbone="ViT-B-32", pretrained="/ckpt/b32.pt", top1=0.6)]).to_csv(
        gen / "results" / "03_many_shot" / "many_shot.csv", index=False)
    return tree(gen, REAL, gen / "results")


def test_the_intro_names_the_run_and_never_the_world(real_tree):
    records = executed_chapters(real_tree)
    text = intro_page(chapter_runs(records, real_tree / "results"), real_tree / "results")
    assert text.startswith("# Generalized Logit Adjustment with ViT-B-16-quickgelu (openai)")
    assert "world" not in text.lower()
    assert "/data/somewhere" not in text and "/machine" not in text and "/ckpt" not in text
    assert "`b32.pt`" in text and "`freq.txt`" in text and "`laion2b_s34b_b88k`" in text
    assert "| 68.3 | 67.5 | -0.8 |" in text and "VRF (NeurIPS 2024), Table 2" in text
    # 06 wrote rows: what they hold (RN50 on imagenet), not its parameters (dtd, imagenet_a)
    assert "| {doc}`generated/06_few_shot` | `RN50` (`openai`) | `imagenet` |" in text
    # 13 wrote no results rows: its recorded parameters
    assert "| {doc}`generated/13_real_frequencies` | `ViT-B-16` (`laion2b_s34b_b88k`) | the chapter's default; " \
           "concept counts: `freq.txt` |" in text
    for page in real_pages(chapter_runs(records, real_tree / "results"), real_tree / "results").values():
        assert page is None or "miniature world" not in page
    assert "{doc}`generated/14_claims`" not in text  # a chapter the tree lacks is not named


def test_the_intro_follows_a_chapter_rerun_with_other_parameters(real_tree):
    """A chapter rerun with other data: the introduction says what the new run did."""
    runs = chapter_runs(executed_chapters(real_tree), real_tree / "results")
    assert "shifted: `imagenet_v2`" in intro_page(runs, real_tree / "results")
    pd.DataFrame([_row(eval_set="imagenet", top1=0.6)]).to_csv(
        real_tree / "results" / "04_distribution_shift" / "distribution_shift.csv", index=False)
    executed(real_tree, "13_real_frequencies", {**REAL["13_real_frequencies"], "counts_file": "/d/other.tsv"})
    runs = chapter_runs(executed_chapters(real_tree), real_tree / "results")
    text = intro_page(runs, real_tree / "results")
    assert "imagenet_v2" not in text and "`other.tsv`" in text and "`freq.txt`" not in text


def test_the_results_page_lists_each_chapters_tables_and_settings(real_tree):
    executed(real_tree, "03_many_shot", {**REAL["03_many_shot"], "protocol": "exact", "smoke": True})
    page = real_pages(chapter_runs(executed_chapters(real_tree), real_tree / "results"),
                      real_tree / "results")["results.md"]
    assert "| {doc}`generated/03_many_shot` | `many_shot.csv` | protocol `exact`, smoke run (scaled down) |" in page
    assert "| {doc}`generated/06_few_shot` | `few_shot.csv`, `notes.csv` |" in page
    assert "{download}`results.zip <generated/results.zip>`" in page


def test_a_chapter_whose_results_are_missing_fails_loudly(real_tree):
    import shutil

    shutil.rmtree(real_tree / "results" / "04_distribution_shift")
    executed(real_tree, "06_few_shot", REAL["06_few_shot"], error=("ZeroDivisionError", "division by zero"))
    executed(real_tree, "12_calibration", None)  # copied, not executed
    with pytest.raises(UsageError) as info:
        executed_chapters(real_tree)
    text = str(info.value)
    assert "3 chapter(s)" in text and "04_distribution_shift: its results are missing" in text
    assert "06_few_shot: it failed (ZeroDivisionError: division by zero)" in text
    assert "12_calibration: not executed by 'gla book run'" in text
    assert "gla book run --only 04_distribution_shift 06_few_shot 12_calibration" in text


def test_which_books_are_real():
    assert needs_run_pages(REAL)
    assert not needs_run_pages({"00_the_world": REAL["00_the_world"]})
    assert not needs_run_pages({"01_a": {"backbone": "gla-world-tiny"}, "02_b": {}})


def test_build_book_writes_the_run_pages_for_a_real_backbone(tmp_path, real_tree, monkeypatch):
    """build_book puts the run's intro in the assembled book when the executed notebooks
    ran a real backbone; the world keeps book/'s pages. (jupyter-book itself is not run
    here: test_book_build_of_a_partial_tree runs it.)"""
    import gla.book as book

    monkeypatch.setattr(book.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, "", ""))
    book.build_book(real_tree, tmp_path / "real")
    intro = (tmp_path / "real" / "book" / "intro.md").read_text()
    assert intro.startswith("# Generalized Logit Adjustment with ViT-B-16-quickgelu (openai)")
    assert "miniature world" not in (tmp_path / "real" / "book" / "results.md").read_text()
    world = tree(tmp_path / "world-gen", {"01_label_bias": {"backbone": "gla-world-tiny"}}, None)
    book.build_book(world, tmp_path / "world")
    shipped = book.find_source_dir("book") / "intro.md"
    assert (tmp_path / "world" / "book" / "intro.md").read_text().startswith(shipped.read_text().split("\n")[0])


def test_rows_of_different_settings_are_not_averaged(tmp_path):
    """Rows that differ in more than the seed (here the protocol) give one measured value each."""
    (tmp_path / "09").mkdir()
    pd.DataFrame([_row(protocol="paper", top1=0.60), _row(protocol="exact", top1=0.70)]).to_csv(
        tmp_path / "09" / "t.csv", index=False)
    pub = published_beside_measured(tmp_path).set_index("protocol")
    assert pub.loc["paper", "measured"] == pytest.approx(60.0) and pub.loc["exact", "measured"] == pytest.approx(70.0)


@pytest.mark.parametrize("kind", ["world", "real"])
def test_book_build_of_a_partial_tree(tmp_path, kind):
    """A tree with two chapters builds, warnings as errors, into a book of those chapters: no
    page links a chapter it lacks (chapter 14 links chapter 3, which did not run)."""
    from gla.book import build_book, write_results_archive

    backbone = {"world": "gla-world-tiny", "real": "ViT-B-32"}[kind]
    records = {"01_label_bias": {"backbone": backbone, "pretrained": "w.pt", "dataset": "imagenet"},
               "14_claims": {"backbone": backbone, "pretrained": "w.pt"}}
    gen = tree(tmp_path / "gen", records, None)
    nb = nbformat.read(str(gen / "14_claims.ipynb"), as_version=4)
    nb.cells.append(nbformat.v4.new_markdown_cell("{doc}`Many-shot <03_many_shot>`, {doc}`Label bias <01_label_bias>`"))
    nbformat.write(nb, str(gen / "14_claims.ipynb"))
    write_results_archive(gen)
    html = build_book(gen, tmp_path / "out")
    built = {p.relative_to(html).as_posix() for p in html.rglob("*.html")}
    assert {"generated/01_label_bias.html", "generated/14_claims.html", "intro.html", "results.html"} <= built
    assert not {"generated/03_many_shot.html", "beyond.html"} & built
    claims = (html / "generated" / "14_claims.html").read_text()
    assert "Many-shot" in claims and 'href="01_label_bias.html"' in claims and "03_many_shot.html" not in claims
    intro = (html / "intro.html").read_text()
    assert "03_many_shot.html" not in intro and ("ViT-B-32" in intro) == (kind == "real")
    assert_chapter_launches_its_notebook(html, "01_label_bias")
    assert_serves_its_own_scripts(html)



def test_build_book_fits_the_tables_of_a_tree_executed_before(tmp_path, monkeypatch):
    """A tree executed before tables were fitted to the page gets the classes in the book's
    copy (gla.report.html.fit_tables); the tree itself is left as it was."""
    import gla.book as book

    monkeypatch.setattr(book.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, "", ""))
    gen = tree(tmp_path / "gen", {"01_label_bias": {"backbone": "gla-world-tiny"}}, None)
    nb = nbformat.read(str(gen / "01_label_bias.ipynb"), as_version=4)
    nb.cells[2].outputs = [nbformat.v4.new_output("display_data", data={
        "text/html": pd.DataFrame({"claim": ["a statement long enough to be prose, not a name"]}).to_html(),
        "text/plain": "table"})]
    nbformat.write(nb, str(gen / "01_label_bias.ipynb"))
    before = (gen / "01_label_bias.ipynb").read_text()
    book.build_book(gen, tmp_path / "out")
    copy = nbformat.read(str(tmp_path / "out" / "book" / "generated" / "01_label_bias.ipynb"), as_version=4)
    assert 'class="dataframe gla-fit"' in copy.cells[2].outputs[0]["data"]["text/html"]
    assert (gen / "01_label_bias.ipynb").read_text() == before
