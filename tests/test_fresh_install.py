"""A chapter opened from its page runs where only the package is installed, as in Colab: a
notebook of the checkout runs its smoke parameters in a fresh virtual environment into which
its own first cell installs the package, built as a wheel from the checkout (not the
editable tree).

The environment: a new venv (no system site packages) that sees the third-party packages of
the environment running the tests through one ``.pth`` line, pointing at a folder of links to
them that leaves out every trace of ``gla`` (its editable finder, its ``.pth`` and its
metadata). That spares a fresh download of torch and the rest (several GB, and no network
here), while ``gla`` can come only from the wheel: the notebook's install cell installs it
(``GLA_INSTALL_FROM`` = the wheel, pip offline), and the test checks where the kernel found
it. The world's smoke checkpoint comes from the session's cache (``smoke_checkpoint``), so
the chapter does not pretrain it again.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = "03_many_shot"  # the many-shot chapter: a model, fine-tuning, the book's tables


def _checkout_files() -> list[str]:
    """The checkout's files as a commit would take them: tracked, and new files git does not ignore."""
    try:
        out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout
    except (FileNotFoundError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [f for f in out.split("\0") if f and ((ROOT / f).exists() or (ROOT / f).is_symlink())]


def build_wheel(dest: Path) -> Path:
    """A wheel of the checkout's working tree, built from a copy (the checkout stays clean)."""
    src = dest / "src"
    for rel in _checkout_files():
        target = src / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / rel).is_symlink():
            target.symlink_to(os.readlink(ROOT / rel))
        else:
            shutil.copy2(ROOT / rel, target)
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                          "--quiet", "-w", str(dest / "dist"), str(src)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    (wheel,) = (dest / "dist").glob("gla-*.whl")
    return wheel


def _is_gla(name: str) -> bool:
    n = name.lower()
    return n == "gla" or n.startswith(("gla-", "gla.", "__editable__")) or n.endswith(".pth")


def third_party_site(dest: Path) -> Path:
    """A folder of links to every package of this interpreter's site-packages except gla."""
    folder = dest / "third-party"
    folder.mkdir()
    for sp in site.getsitepackages():
        for entry in Path(sp).iterdir():
            if not _is_gla(entry.name) and not (folder / entry.name).exists():
                (folder / entry.name).symlink_to(entry)
    return folder


def fresh_venv(dest: Path, third_party: Path) -> Path:
    """A new venv, without system site packages, that also sees ``third_party``; its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(dest / "venv")], check=True)
    python = dest / "venv" / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    (Path(purelib) / "third_party.pth").write_text(f"{third_party}\n")
    return python


def _env(dest: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "JUPYTER_PATH")}
    env.update(PYTHONNOUSERSITE="1", JUPYTER_DATA_DIR=str(dest / "jupyter"), PIP_NO_INDEX="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1", **extra)
    return env


@pytest.mark.slow
def test_a_notebook_runs_where_its_first_cell_installed_the_package(tmp_path, smoke_checkpoint):
    wheel = build_wheel(tmp_path)
    python = fresh_venv(tmp_path, third_party_site(tmp_path))
    where = [str(python), "-c", "import importlib.util as u; s = u.find_spec('gla'); print(s and s.origin)"]
    before = subprocess.run(where, capture_output=True, text=True, env=_env(tmp_path), cwd=tmp_path)
    assert before.returncode == 0 and before.stdout.strip() == "None", before.stdout + before.stderr

    run = tmp_path / "run"
    run.mkdir()
    out = run / f"{NOTEBOOK}.ipynb"
    cache = Path(smoke_checkpoint).parent.parent  # <cache>/world/clip-<key>.pt
    res = subprocess.run([str(python), "-m", "papermill", str(ROOT / "notebooks" / f"{NOTEBOOK}.ipynb"), str(out),
                          "-k", "python3", "--cwd", str(run), "-p", "smoke", "True", "-p", "cache_dir", str(cache),
                          "--no-progress-bar"],
                         capture_output=True, text=True, env=_env(tmp_path, GLA_INSTALL_FROM=str(wheel)), cwd=run,
                         timeout=1500)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]

    after = subprocess.run(where, capture_output=True, text=True, env=_env(tmp_path), cwd=tmp_path)
    origin = Path(after.stdout.strip())
    assert (tmp_path / "venv") in origin.parents, f"gla imported from {origin}, not from the fresh venv"
    assert not any(p.name.startswith("__editable__") for p in origin.parent.parent.iterdir())
    nb = nbformat.read(str(out), as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, [f"{e.ename}: {e.evalue}" for e in errors]
    assert nb.metadata.papermill.parameters["smoke"] is True
    (table,) = run.rglob("many_shot.csv")
    assert "gla-world-tiny" in table.read_text()
