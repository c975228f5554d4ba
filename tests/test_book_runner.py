from pathlib import Path

import nbformat
import pytest

from gla.book import declared_parameters, notebook_parameters, plan_lanes, run_notebooks
from gla.errors import UsageError

ROOT = Path(__file__).resolve().parent.parent


def write_nb(path, source_params, body):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    p = nbformat.v4.new_code_cell(source_params)
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbformat.v4.new_code_cell(body)]
    nbformat.write(nb, str(path))


def test_declared_and_routed_parameters(tmp_path):
    write_nb(tmp_path / "01_a.ipynb", "x = 1\ny: int = 2\nsmoke = False", "print(x)")
    assert declared_parameters(tmp_path / "01_a.ipynb") == ["x", "y", "smoke"]
    params = {"x": 5, "other": 1, "notebooks": {"01_a": {"y": 7}}}
    assert notebook_parameters("01_a", ["x", "y"], params) == {"x": 5, "y": 7}
    with pytest.raises(ValueError, match="unknown parameter"):
        notebook_parameters("01_a", ["x"], {"notebooks": {"01_a": {"z": 1}}})


def test_run_notebooks_executes_with_parameters(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    write_nb(src / "01_a.ipynb", "x = 1\noutput_dir = 'unset'",
             "import pathlib\npathlib.Path(output_dir).mkdir(parents=True, exist_ok=True)\n"
             "pathlib.Path(output_dir, 'x.txt').write_text(str(x * 2))")
    out = tmp_path / "out"
    done = run_notebooks({"x": 21}, out, notebooks_dir=src)
    assert [p.name for p in done] == ["01_a.ipynb"]
    assert (out / "results" / "01_a" / "x.txt").read_text() == "42"
    with pytest.raises(ValueError, match="declared by no notebook"):
        run_notebooks({"nope": 1}, out, notebooks_dir=src)


@pytest.mark.parametrize("params_file", ["default.yaml", "vit-b-16-openai.yaml"])
def test_shipped_parameter_files_name_only_declared_parameters(params_file):
    from gla.book import NOTEBOOKS_DIR, list_notebooks, load_params

    params = load_params(NOTEBOOKS_DIR / "params" / params_file)
    declared_anywhere = set()
    for nb in list_notebooks():
        declared = declared_parameters(nb)
        declared_anywhere |= set(declared)
        notebook_parameters(nb.stem, declared, params)  # raises on an unknown override
    from gla.book import RESERVED

    assert set(params) - set(RESERVED) <= declared_anywhere
    stems = {nb.stem for nb in list_notebooks()}
    assert set(params.get("notebooks") or {}) <= stems
    assert {s for lane in params.get("lanes") or [] for s in lane} | set(params.get("after_lanes") or []) <= stems


def test_plan_lanes():
    stems = ["00", "01", "02", "03", "04"]
    assert plan_lanes(stems, [["01", "03"], ["02"]], jobs=1) == (stems, [], [])
    assert plan_lanes(stems, None, jobs=2) == (stems, [], [])
    assert plan_lanes(stems, [["01", "03"], ["02"]], jobs=2) == (["00", "04"], [["01", "03"], ["02"]], [])
    assert plan_lanes(["00", "02"], [["01", "03"], ["02"]], jobs=2) == (["00"], [["02"]], [])
    # chapters that read the others' results run after every lane, with one job or several
    assert plan_lanes(stems, [["01", "03"], ["02"]], jobs=2, after=["00"]) == (["04"], [["01", "03"], ["02"]], ["00"])
    assert plan_lanes(stems, None, jobs=1, after=["00", "99"]) == (["01", "02", "03", "04"], [], ["00"])
    with pytest.raises(ValueError, match="more than one lane"):
        plan_lanes(stems, [["01"], ["01", "02"]], jobs=2)


def test_lanes_run_side_by_side_on_one_thread_each(tmp_path, monkeypatch):
    import os

    src = tmp_path / "src"
    src.mkdir()
    body = ("import os, pathlib, time\nt0 = time.time()\ntime.sleep(3)\n"
            "pathlib.Path(output_dir).mkdir(parents=True, exist_ok=True)\n"
            "pathlib.Path(output_dir, 'run.txt').write_text(f\"{t0} {time.time()} {os.environ.get('OMP_NUM_THREADS')}\")")
    for stem in ["00_first", "01_a", "02_b"]:
        write_nb(src / f"{stem}.ipynb", "output_dir = 'unset'", body)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    out = tmp_path / "out"
    done = run_notebooks({"lanes": [["01_a"], ["02_b"]]}, out, notebooks_dir=src, jobs=2)
    assert sorted(p.name for p in done) == ["00_first.ipynb", "01_a.ipynb", "02_b.ipynb"]
    runs = {s: (out / "results" / s / "run.txt").read_text().split() for s in ["00_first", "01_a", "02_b"]}
    assert runs["00_first"][2] == "None" and runs["01_a"][2] == runs["02_b"][2] == "1"
    (a0, a1), (b0, b1) = [(float(runs[s][0]), float(runs[s][1])) for s in ["01_a", "02_b"]]
    assert float(runs["00_first"][1]) <= min(a0, b0)  # the first notebook ran before the lanes
    assert a0 < b1 and b0 < a1  # the two lanes overlapped in time
    assert "OMP_NUM_THREADS" not in os.environ  # restored
    with pytest.raises(ValueError, match="no notebook named"):
        run_notebooks({"lanes": [["99_nope"]]}, out, notebooks_dir=src, jobs=2)


# --------------------------------------------------------------------------- keep-going, paths, packaged notebooks

def test_keep_going_runs_the_rest_and_reports_every_failure(tmp_path, monkeypatch):
    """A parameter file with relative paths, run from another folder: paths resolve against
    the file's folder (not --out, the notebooks' working folder, nor the current folder)."""
    from gla.book import NotebookFailures

    src = tmp_path / "src"
    src.mkdir()
    write_nb(src / "01_fails.ipynb", "output_dir = 'unset'", "raise RuntimeError('planted failure')")
    write_nb(src / "02_ok.ipynb", "output_dir = 'unset'\ndata_root = ''\npretrained = 'world'",
             "import pathlib\npathlib.Path(output_dir).mkdir(parents=True, exist_ok=True)\n"
             "pathlib.Path(output_dir, 'seen.txt').write_text(data_root + '|' + pretrained)")
    write_nb(src / "03_fails_too.ipynb", "output_dir = 'unset'", "1 / 0")
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (tmp_path / "data").mkdir()  # checked before the first kernel
    (cfg / "params.yaml").write_text("data_root: ../data\nnotebooks:\n  02_ok: {pretrained: ckpt/model.pt}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    out = tmp_path / "out"
    with pytest.raises(NotebookFailures) as e:
        run_notebooks(cfg / "params.yaml", out, notebooks_dir=src, keep_going=True)
    assert [stem for stem, _ in e.value.failures] == ["01_fails", "03_fails_too"]
    msg = str(e.value)
    assert "2 notebook(s) failed" in msg and "RuntimeError: planted failure" in msg and "ZeroDivisionError" in msg
    seen = (out / "results" / "02_ok" / "seen.txt").read_text()
    assert seen == f"{(tmp_path / 'data').resolve()}|{(cfg / 'ckpt' / 'model.pt').resolve()}"
    assert (out / "01_fails.ipynb").is_file()  # the partial notebook is kept

    out2 = tmp_path / "out2"  # without keep-going the first failure stops the run
    with pytest.raises(NotebookFailures) as e:
        run_notebooks(cfg / "params.yaml", out2, notebooks_dir=src)
    assert [stem for stem, _ in e.value.failures] == ["01_fails"]
    assert not (out2 / "02_ok.ipynb").exists()


def test_keep_going_in_lanes(tmp_path, monkeypatch):
    import gla.book as book

    src = tmp_path / "src"
    src.mkdir()
    for stem in ["00_first", "01_a", "02_b", "03_c"]:
        write_nb(src / f"{stem}.ipynb", "x = 1", "pass")
    ran = []

    def fake_execute(s, nb_params, out, *, progress_bar):
        ran.append(s.stem)
        if s.stem in ("01_a", "00_first"):
            raise RuntimeError(f"{s.stem} broke")
        return out / s.name

    monkeypatch.setattr(book, "_execute", fake_execute)
    params = {"lanes": [["01_a", "03_c"], ["02_b"]]}
    with pytest.raises(book.NotebookFailures) as e:
        run_notebooks(params, tmp_path / "o", notebooks_dir=src, jobs=2, keep_going=True)
    assert sorted(ran) == ["00_first", "01_a", "02_b", "03_c"]
    assert sorted(s for s, _ in e.value.failures) == ["00_first", "01_a"]
    ran.clear()
    with pytest.raises(book.NotebookFailures):
        run_notebooks(params, tmp_path / "o", notebooks_dir=src, jobs=2)
    assert ran == ["00_first"]  # a failure before the lanes stops the run


def test_params_resolve_relative_paths_against_the_file(tmp_path):
    from gla.book import load_params

    (tmp_path / "p.yaml").write_text(
        "data_root: data\ncache_dir: /abs/cache\npretrained: openai\ncounts_file: ''\n"
        "extra_backbones: [[ViT-B-32, openai], [RN50, ckpts/rn50.pt]]\n"
        "notebooks:\n  13_x: {counts_file: counts/c.txt, pretrained: laion2b_s34b_b88k}\n")
    p = load_params(tmp_path / "p.yaml")
    assert p["data_root"] == str((tmp_path / "data").resolve()) and p["cache_dir"] == "/abs/cache"
    assert p["pretrained"] == "openai" and p["counts_file"] == ""
    assert p["extra_backbones"] == [["ViT-B-32", "openai"], ["RN50", str((tmp_path / "ckpts/rn50.pt").resolve())]]
    assert p["notebooks"]["13_x"] == {"counts_file": str((tmp_path / "counts/c.txt").resolve()),
                                      "pretrained": "laion2b_s34b_b88k"}


def test_only_keeps_the_unknown_parameter_check(tmp_path, monkeypatch):
    import gla.book as book

    src = tmp_path / "src"
    src.mkdir()
    write_nb(src / "01_a.ipynb", "x = 1", "pass")
    write_nb(src / "02_b.ipynb", "y = 1", "pass")
    ran = []
    monkeypatch.setattr(book, "_execute", lambda s, p, out, progress_bar: ran.append((s.stem, p)) or out / s.name)
    # y is declared by a notebook that --only leaves out: not an error, and not passed to 01_a
    run_notebooks({"x": 2, "y": 3}, tmp_path / "o", notebooks_dir=src, only=["01_a"])
    assert ran == [("01_a", {"x": 2})]
    with pytest.raises(ValueError, match=r"\['nope'\] are declared by no notebook"):
        run_notebooks({"nope": 1}, tmp_path / "o", notebooks_dir=src, only=["01_a"])
    with pytest.raises(ValueError, match="unknown parameter"):  # an override of a notebook left out is checked too
        run_notebooks({"notebooks": {"02_b": {"z": 1}}}, tmp_path / "o", notebooks_dir=src, only=["01_a"])
    with pytest.raises(ValueError, match="not notebooks"):
        run_notebooks({"notebooks": {"09_gone": {"x": 1}}}, tmp_path / "o", notebooks_dir=src, only=["01_a"])
    assert len(ran) == 1


def test_notebooks_are_found_in_the_installed_package_without_a_checkout(tmp_path, monkeypatch):
    import importlib.resources

    import gla.book as book
    import gla.book_source as book_source

    site = tmp_path / "site-packages" / "gla"
    nb_dir = site / "_book" / "notebooks"
    (nb_dir / "params").mkdir(parents=True)
    write_nb(nb_dir / "01_a.ipynb", "x = 1", "pass")
    (nb_dir / "params" / "default.yaml").write_text("x: 5\n")
    real_files = importlib.resources.files
    monkeypatch.setattr(importlib.resources, "files", lambda pkg: site if pkg == "gla" else real_files(pkg))
    no_checkout = tmp_path / "no-checkout"
    assert book.find_source_dir("notebooks", no_checkout) == nb_dir
    assert book.find_source_dir("notebooks", ROOT) == ROOT / "notebooks"  # a checkout wins
    monkeypatch.setattr(book_source, "CHECKOUT_ROOT", no_checkout)
    ran = []
    monkeypatch.setattr(book, "_execute", lambda s, p, out, progress_bar: ran.append((s, p)) or out / s.name)
    run_notebooks(None, tmp_path / "o")  # the packaged notebooks with their default parameters
    assert ran == [(nb_dir / "01_a.ipynb", {"x": 5})]
    monkeypatch.setattr(importlib.resources, "files", lambda pkg: tmp_path / "empty")
    with pytest.raises(ValueError, match="no 'notebooks' folder"):
        book.find_source_dir("notebooks", no_checkout)


def test_book_build_assembles_pages_and_generated_notebooks(tmp_path, capsys):
    """A tiny fake book (one page, one generated notebook) built by 'gla book build'
    (the smoke-book test in test_book.py builds the real one)."""
    from gla.cli import main

    site = tmp_path / "project"
    pages = site / "book"
    pages.mkdir(parents=True)
    (site / "_config.yml").write_text('title: "Tiny"\nonly_build_toc_files: true\n'
                                      'execute:\n  execute_notebooks: "off"\n')
    (pages / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: generated/01_a\n")
    (pages / "intro.md").write_text("# Tiny book\n\nAn introduction.\n")
    (pages / "generated").mkdir()
    (pages / "generated" / "stale.txt").write_text("not copied")
    gen = tmp_path / "gen"
    gen.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell("# Chapter A"), nbformat.v4.new_code_cell("print(42)")]
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="42\n")]
    nb.metadata["papermill"] = {"parameters": {"x": 1}}  # as papermill records what it injected
    nbformat.write(nb, str(gen / "01_a.ipynb"))
    (gen / "results" / "01_a").mkdir(parents=True)
    (gen / "results" / "01_a" / "a.csv").write_text("x\n1\n")
    out = tmp_path / "out"
    assert main(["book", "build", "--generated", str(gen), "--pages", str(pages), "--out", str(out)]) == 0
    html = out / "_build" / "html"
    assert "Tiny book" in (html / "intro.html").read_text() and (html / "index.html").is_file()
    chapter = (html / "generated" / "01_a.html").read_text()
    assert "Chapter A" in chapter and "42" in chapter
    assert not (out / "book" / "generated" / "stale.txt").exists()
    assert str(html / "index.html") in capsys.readouterr().out
    assert main(["book", "build", "--generated", str(tmp_path / "nothing"), "--pages", str(pages),
                 "--out", str(out)]) == 2
    assert "no executed notebooks" in capsys.readouterr().err


def test_run_notebooks_writes_one_archive_of_every_table(tmp_path):
    """`gla book run` leaves <out>/results.zip with each chapter's tables (not its figures),
    named <chapter>/<file>, the same bytes for the same tables."""
    import zipfile

    from gla.book import write_results_archive

    src = tmp_path / "src"
    src.mkdir()
    write_nb(src / "01_a.ipynb", "output_dir = 'unset'",
             "import pathlib\np = pathlib.Path(output_dir)\np.mkdir(parents=True, exist_ok=True)\n"
             "(p / 't.csv').write_text('a,b\\n1,2\\n')\n(p / 't.json').write_text('[]')\n"
             "(p / 'f.svg').write_text('<svg/>')")
    out = tmp_path / "out"
    run_notebooks({}, out, notebooks_dir=src)
    archive = out / "results.zip"
    with zipfile.ZipFile(archive) as zf:
        assert sorted(zf.namelist()) == ["01_a/t.csv", "01_a/t.json"]
        assert zf.read("01_a/t.csv") == b"a,b\n1,2\n"
    first = archive.read_bytes()
    assert write_results_archive(out) == archive and archive.read_bytes() == first
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_results_archive_needs_a_folder(tmp_path):
    from gla.book import write_results_archive
    from gla.errors import UsageError

    with pytest.raises(UsageError, match="folder of executed notebooks"):
        write_results_archive(tmp_path / "missing")


def test_tidy_for_the_page_hides_parameters_and_the_machine_paths(tmp_path):
    from gla.book import machine_paths, tidy_for_the_page

    out = tmp_path / "out"
    out.mkdir()
    cache = tmp_path / "cache"
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(f"cache_dir = '{cache}'")
    params.metadata["tags"] = ["injected-parameters"]
    setup = nbformat.v4.new_code_cell("ctx = gla.notebook.setup(backbone)")
    setup.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"cache {cache}/features, out {out}/results\n"),
                     nbformat.v4.new_output("stream", name="stderr", text="UserWarning: careful\n"),
                     nbformat.v4.new_output("display_data", data={"text/plain": f"'{out}/results/a.csv'"})]
    nb.cells = [params, setup]
    path = out / "a.ipynb"
    nbformat.write(nb, str(path))
    tidy_for_the_page(path, machine_paths(out, {"cache_dir": str(cache)}))
    got = nbformat.read(str(path), as_version=4)
    assert "remove-cell" in got.cells[0].metadata["tags"] and "remove-input" in got.cells[1].metadata["tags"]
    outputs = got.cells[1].outputs
    assert [o.get("name") for o in outputs] == ["stdout", None]  # stderr dropped
    assert outputs[0].text == "cache [cache]/features, out ./results\n"
    assert outputs[1].data["text/plain"] == "'./results/a.csv'"
    assert str(tmp_path) not in nbformat.writes(got).replace(got.cells[0].source, "")


def test_notebooks_that_fit_a_prior_take_a_given_prior_file():
    """A parameter file's ``prior_file`` (e.g. GLA's released ImageNet q.pt) and
    ``source_prior`` reach every chapter that fits a prior (the protocols accept both)."""
    from gla.book import declared_parameters, list_notebooks

    takes = {p.stem for p in list_notebooks() if {"prior_file", "source_prior"} <= set(declared_parameters(p))}
    fits = {p.stem for p in list_notebooks() if "protocol" in declared_parameters(p)}
    assert takes == fits - {"10_prior_vs_truth", "13_real_frequencies"}  # those two study the estimate itself
    assert {"01_label_bias", "03_many_shot", "06_few_shot", "08_long_tail"} <= takes


# --------------------------------------------------------------------------- every name and path, before any kernel

@pytest.fixture
def no_kernel(monkeypatch):
    import gla.book as book

    ran = []
    monkeypatch.setattr(book, "_execute", lambda s, p, out, progress_bar: ran.append(s.stem) or out / s.name)
    return ran


@pytest.mark.parametrize("params, message", [
    ({"backbone": "ViT-B-32", "pretrained": "openai", "quick_gelu": None, "notebooks": {}},
     "00_the_world: world_seed is an option of the models named gla-world*, and ViT-B-32, an open_clip model, takes "
     "none: to run this chapter on gla-world-tiny, write under 'notebooks:' in the parameter file  "
     "00_the_world: {backbone: gla-world-tiny, pretrained: world}"),
    ({"notebooks": {"03_many_shot": {"dataset": "DTD"}}},
     "03_many_shot: dataset: unknown dataset 'DTD' (did you mean dtd?)"),
    ({"notebooks": {"04_distribution_shift": {"shifted": ["world-main-skecth"]}}},
     "04_distribution_shift: shifted: unknown dataset 'world-main-skecth' (did you mean world-main-sketch"),
    ({"notebooks": {"06_few_shot": {"shifted": {"world-main": ["imagenet_b"]}}}},
     "06_few_shot: shifted: unknown dataset 'imagenet_b'"),
    ({"notebooks": {"09_ablations": {"few_shot_dataset": "world-mian"}}},
     "09_ablations: few_shot_dataset: unknown dataset 'world-mian'"),
    ({"data_root": "/no/such/data"}, "data_root: no folder at /no/such/data"),
    ({"notebooks": {"13_real_frequencies": {"counts_file": "/no/counts.tsv"}}},
     "13_real_frequencies: counts_file: no file at /no/counts.tsv"),
    ({"notebooks": {"03_many_shot": {"extra_backbones": [["ViT-B-32", "/no/b32.pt"]]}}},
     "03_many_shot: extra_backbones[0]: pretrained: no checkpoint file at /no/b32.pt"),
    ({"notebooks": {"03_many_shot": {"extra_backbones": [["ViT-B-32"]]}}},
     "03_many_shot: extra_backbones: expected [name, pretrained] or [name, pretrained, quick_gelu] entries"),
    ({"notebooks": {"11_estimators": {"backbone": "ViT-B-61"}}},
     "11_estimators: backbone: unknown model 'ViT-B-61'"),
])
def test_book_run_checks_every_name_and_path_before_the_first_kernel(tmp_path, no_kernel, params, message):
    with pytest.raises(UsageError) as info:
        run_notebooks(params, tmp_path / "out", jobs=1)
    assert message in str(info.value)
    assert not no_kernel and not (tmp_path / "out").exists()


def test_book_run_checks_data_layouts_before_the_first_kernel(tmp_path, no_kernel):
    (tmp_path / "data" / "imagenet" / "images" / "train").mkdir(parents=True)  # no synset folder
    params = {"data_root": str(tmp_path / "data"), "notebooks": {"01_label_bias": {"dataset": "imagenet"}}}
    with pytest.raises(UsageError, match="01_label_bias: dataset: .*imagenet.*Expected this layout"):
        run_notebooks(params, tmp_path / "out", only=["01_label_bias"])
    assert not no_kernel
    # only the notebooks that run are checked: 01 is left out, the world chapters pass
    run_notebooks(params, tmp_path / "out", only=["02_estimating_the_prior"])
    assert no_kernel == ["02_estimating_the_prior"]
    assert run_notebooks(params, tmp_path / "out2", only=["01_label_bias"], check=False)
