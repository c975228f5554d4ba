"""The repository keeps generated things out of git and notebook sources clean."""

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def tracked_files():
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    except (FileNotFoundError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return out.stdout.split()


def test_notebook_sources_have_no_outputs():
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    for path in notebooks:
        nb = json.loads(path.read_text())
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                assert not cell.get("outputs"), f"{path.name}: committed with outputs (run nbstripout)"
                assert cell.get("execution_count") is None, f"{path.name}: execution counts left in"


def test_no_generated_files_tracked():
    bad = [f for f in tracked_files()
           if f.startswith(("_build/", "book/_build/", "book/generated", ".venv/")) or "/.ipynb_checkpoints/" in f]
    assert not bad, f"generated files are tracked: {bad[:5]}"


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make book" in readme and "make test" in readme
