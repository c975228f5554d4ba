import nbformat
import pytest

from gla.book import declared_parameters, notebook_parameters, run_notebooks


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
    assert set(params) - {"notebooks"} <= declared_anywhere
    assert set(params.get("notebooks") or {}) <= {nb.stem for nb in list_notebooks()}
