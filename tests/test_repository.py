"""The repository keeps generated things out of git and notebook sources clean, and its lock
(requirements/lock.txt) agrees with pyproject.toml."""

import json
import re
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


# --- the lock: requirements/lock.txt pins the whole resolved set --------------------------

LOCK = ROOT / "requirements" / "lock.txt"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(text: str) -> dict[str, str]:
    """``{canonical name: version}`` from a constraints file of ``name==version`` lines."""
    pins = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        assert m, f"requirements/lock.txt line {n}: expected 'name==version', got {raw!r}"
        pins[canonical(m[1])] = m[2]
    return pins


def read_pyproject() -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: pytest brings tomli there
        import tomli as tomllib
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def lock_disagreements(project: dict, pins: dict[str, str]) -> list[str]:
    """What in ``project`` (pyproject's [project] table) the lock ``pins`` fails to satisfy.

    Every dependency and every extra's requirement (the project's own extras excepted) must
    be pinned at a version inside its specifier; torch and torchvision must both be pinned,
    to registry releases (no local ``+cpu`` build) of one release line.
    """
    from packaging.requirements import Requirement
    from packaging.version import Version

    own = canonical(project["name"])
    reqs = [(None, r) for r in project.get("dependencies", [])]
    reqs += [(extra, r) for extra, rs in project.get("optional-dependencies", {}).items() for r in rs]
    problems = []
    for extra, spec in reqs:
        req = Requirement(spec)
        name = canonical(req.name)
        where = f"[{extra}] " if extra else ""
        if name == own:
            continue
        if name not in pins:
            problems.append(f"{where}{spec}: not in the lock")
        elif not req.specifier.contains(pins[name], prereleases=True):
            problems.append(f"{where}{spec}: the lock has {name}=={pins[name]}")
    for name in ("torch", "torchvision"):
        if name not in pins:
            problems.append(f"{name} is not pinned (pin torch and torchvision together)")
        elif "+" in pins[name]:
            problems.append(f"{name}=={pins[name]} is a local build, not the registry's release")
    if "torch" in pins and "torchvision" in pins:
        torch_v, tv_v = Version(pins["torch"]), Version(pins["torchvision"])
        # torchvision 0.(m+15) is built against torch 2.m (0.16 <-> 2.1, ..., 0.29 <-> 2.14).
        if (torch_v.major, tv_v.major, tv_v.minor) != (2, 0, torch_v.minor + 15):
            problems.append(f"torch=={torch_v} and torchvision=={tv_v} are not one release line")
    return problems


def test_lock_satisfies_pyproject():
    problems = lock_disagreements(read_pyproject()["project"], read_lock(LOCK.read_text()))
    assert not problems, "requirements/lock.txt disagrees with pyproject.toml (run `make lock`):\n" + \
        "\n".join(problems)


def test_lock_check_catches_disagreements():
    project = {"name": "gla", "dependencies": ["torch>=2.1", "numpy>=1.24", "scipy"],
               "optional-dependencies": {"test": ["pytest>=8"], "dev": ["gla[test]", "ruff"]}}
    good = {"torch": "2.14.1", "torchvision": "0.29.1", "numpy": "2.4.6", "scipy": "1.17.1",
            "pytest": "9.2.0", "ruff": "0.17.6"}
    assert lock_disagreements(project, good) == []
    assert lock_disagreements(project, {**good, "numpy": "1.23.5"}) == \
        ["numpy>=1.24: the lock has numpy==1.23.5"]
    assert lock_disagreements(project, {k: v for k, v in good.items() if k != "pytest"}) == \
        ["[test] pytest>=8: not in the lock"]
    assert any("torchvision is not pinned" in p
               for p in lock_disagreements(project, {k: v for k, v in good.items() if k != "torchvision"}))
    assert any("local build" in p for p in lock_disagreements(project, {**good, "torch": "2.13.0+cpu"}))
    assert any("one release line" in p for p in lock_disagreements(project, {**good, "torchvision": "0.28.0"}))


def test_lock_is_pins_only_without_the_project_itself():
    pins = read_lock(LOCK.read_text())
    assert "gla" not in pins, "the lock must not pin the project itself"
    assert len(pins) > 50, "the lock must pin the whole resolved set, not only the direct dependencies"
    assert re.search(r"^# Resolved for: CPython \d+\.\d+, Linux x86_64$", LOCK.read_text(), flags=re.M)
    with pytest.raises(AssertionError, match="line 2"):
        read_lock("torch==2.14.1\ntorchvision>=0.29\n")


def test_make_installs_with_the_lock_and_the_checkers():
    make = (ROOT / "Makefile").read_text()
    assert re.search(r"^LOCK\s*\?=\s*requirements/lock\.txt$", make, flags=re.M)
    install = [line for line in make.splitlines() if "pip install" in line and "-e '.[book,test]'" in line]
    assert len(install) == 1 and "-c $(LOCK)" in install[0] and "-r $(CHECKERS)" in install[0], install
    checkers = (ROOT / "requirements" / "checkers.txt").read_text().split()
    pins = read_lock(LOCK.read_text())
    for name in ("check-jsonschema", "zizmor"):
        assert name in checkers and name in pins, f"{name} must be in requirements/checkers.txt and the lock"
