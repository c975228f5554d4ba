import nbformat
import pytest

from gla.book import declared_parameters, notebook_parameters, plan_lanes, run_notebooks


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
    assert set(params) - {"notebooks", "lanes"} <= declared_anywhere
    stems = {nb.stem for nb in list_notebooks()}
    assert set(params.get("notebooks") or {}) <= stems
    assert {s for lane in params.get("lanes") or [] for s in lane} <= stems


def test_plan_lanes():
    stems = ["00", "01", "02", "03", "04"]
    assert plan_lanes(stems, [["01", "03"], ["02"]], jobs=1) == (stems, [])
    assert plan_lanes(stems, None, jobs=2) == (stems, [])
    assert plan_lanes(stems, [["01", "03"], ["02"]], jobs=2) == (["00", "04"], [["01", "03"], ["02"]])
    assert plan_lanes(["00", "02"], [["01", "03"], ["02"]], jobs=2) == (["00"], [["02"]])
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
