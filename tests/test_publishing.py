"""Publishing: the GitHub workflows, the licence and the citation file.

The workflows are checked offline in three ways: against GitHub's workflow schema
(``check-jsonschema --builtin-schema vendor.github-workflows``), by zizmor's static security
audit (``zizmor --offline``: no high-severity finding allowed), and by the project's own
policy below (every action pinned to a full commit SHA with its version in a comment, least
privilege, the caches the README promises). CITATION.cff is checked against the Citation File
Format 1.2.0 schema that check-jsonschema ships (``vendor.citation-file-format``). Both tools
come from ``requirements/checkers.txt`` (``make venv`` installs them); the tests that need
one skip, saying so, when it is absent.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
SHA_PIN = re.compile(r"^(?P<action>[\w.-]+/[\w./-]+)@(?P<sha>[0-9a-f]{40})\s+#\s*(?P<version>v\d+(\.\d+){0,2})\s*$")


def tool(name: str) -> str:
    """The tool from this interpreter's environment (the venv's bin), else from PATH; skip if absent."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        pytest.skip(f"{name} is not installed (it comes from requirements/checkers.txt: run `make venv`)")
    return found


def run_tool(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def workflow_files() -> list[Path]:
    return sorted(WORKFLOWS.glob("*.yml")) + sorted(WORKFLOWS.glob("*.yaml"))


def load_workflow(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def triggers(wf: dict) -> dict:
    # YAML 1.1 reads the bare key `on` as the boolean True.
    on = wf.get("on", wf.get(True))
    return {on: None} if isinstance(on, str) else dict(on)


def uses_lines(text: str) -> list[str]:
    """The value of every `uses:` in a workflow, with its trailing comment."""
    return [m.group(1).strip() for m in re.finditer(r"^\s*(?:-\s+)?uses:\s*(.+)$", text, flags=re.M)]


def steps(wf: dict, job: str) -> list[dict]:
    return wf["jobs"][job]["steps"]


def step_using(wf: dict, job: str, action: str) -> list[dict]:
    return [s for s in steps(wf, job) if s.get("uses", "").split("@")[0] == action]


def lock_python() -> str:
    """The Python version requirements/lock.txt was resolved for (its `# Resolved for:` line)."""
    text = (ROOT / "requirements" / "lock.txt").read_text()
    m = re.search(r"^# Resolved for: CPython (\d+\.\d+)", text, flags=re.M)
    assert m, "requirements/lock.txt lacks its '# Resolved for: CPython X.Y, ...' header line"
    return m.group(1)


# --- the workflows: the project's policy -------------------------------------------------


def test_there_is_a_book_and_a_test_workflow():
    assert {p.name for p in workflow_files()} >= {"book.yml", "test.yml"}


@pytest.mark.parametrize("path", workflow_files(), ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_commit_sha_with_its_version(path):
    lines = uses_lines(path.read_text())
    assert lines, f"{path.name}: no `uses:` found"
    bad = [u for u in lines if not SHA_PIN.match(u)]
    assert not bad, f"{path.name}: pin these to a full commit SHA with a '# vX.Y.Z' comment: {bad}"


def test_the_same_action_has_the_same_pin_everywhere():
    pins: dict[str, set[tuple[str, str]]] = {}
    for path in workflow_files():
        for u in uses_lines(path.read_text()):
            m = SHA_PIN.match(u)
            if m:
                pins.setdefault(m["action"], set()).add((m["sha"], m["version"]))
    assert pins
    split = {a: p for a, p in pins.items() if len(p) > 1}
    assert not split, f"one action pinned to several commits: {split}"


@pytest.mark.parametrize("path", workflow_files(), ids=lambda p: p.name)
def test_least_privilege(path):
    wf = yaml.safe_load(path.read_text())
    assert wf.get("permissions") == {}, f"{path.name}: top-level permissions must be {{}} (jobs ask for theirs)"
    for name, job in wf["jobs"].items():
        perms = job.get("permissions")
        assert isinstance(perms, dict), f"{path.name}: job {name} must state its permissions"
        writes = {k for k, v in perms.items() if v == "write"}
        allowed = {"pages", "id-token"} if name == "deploy" else set()
        assert writes <= allowed, f"{path.name}: job {name} asks to write {sorted(writes - allowed)}"
        for s in job.get("steps", []):
            if s.get("uses", "").startswith("actions/checkout@"):
                assert s.get("with", {}).get("persist-credentials") is False, \
                    f"{path.name}: job {name} leaves the checkout token in .git/config"


def test_book_workflow_builds_on_main_weekly_and_deploys_pages():
    wf = load_workflow("book.yml")
    on = triggers(wf)
    assert on["push"]["branches"] == ["main"]
    crons = [c["cron"] for c in on["schedule"]]
    assert len(crons) == 1 and crons[0].split()[2:4] == ["*", "*"] and crons[0].split()[4] != "*", \
        f"expected one weekly cron (a fixed day of the week), got {crons}"
    assert any("make book" in s.get("run", "") for s in steps(wf, "build"))
    (upload,) = step_using(wf, "build", "actions/upload-pages-artifact")
    assert upload["with"]["path"] == "_build/html" and upload["if"] == "github.event_name != 'pull_request'"
    deploy = wf["jobs"]["deploy"]
    assert deploy["needs"] == "build" and deploy["if"] == "github.event_name != 'pull_request'"
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["environment"]["name"] == "github-pages"
    assert step_using(wf, "deploy", "actions/deploy-pages")
    assert wf["jobs"]["build"]["permissions"] == {"contents": "read"}


def test_book_workflow_builds_pull_requests_checks_links_and_uploads_a_preview():
    """A pull request builds the book, checks its links and uploads the site for the reviewer
    (never deployed; a new push supersedes the build in progress); the link check runs on
    every build."""
    wf = load_workflow("book.yml")
    on = triggers(wf)
    assert "pull_request" in on and "pull_request_target" not in on
    build = steps(wf, "build")
    names = [s.get("name") for s in build]
    check = next(s for s in build if "gla.book_check" in s.get("run", ""))
    assert check["run"].split()[-1] == "_build/html" and "if" not in check
    assert names.index(check["name"]) > next(i for i, s in enumerate(build) if "make book" in s.get("run", ""))
    (preview,) = step_using(wf, "build", "actions/upload-artifact")
    assert preview["if"] == "github.event_name == 'pull_request'"
    assert preview["with"]["path"] == "_build/html" and preview["with"]["if-no-files-found"] == "error"
    assert int(preview["with"]["retention-days"]) >= 7
    group, cancel = wf["concurrency"]["group"], wf["concurrency"]["cancel-in-progress"]
    assert "github.event.pull_request.number" in group and "'pages'" in group
    assert cancel == "${{ github.event_name == 'pull_request' }}"


def test_test_workflow_runs_make_test_on_pull_requests():
    wf = load_workflow("test.yml")
    assert "pull_request" in triggers(wf)
    assert "pull_request_target" not in triggers(wf)
    (job,) = wf["jobs"]
    assert any(s.get("run", "").strip() == "make test" for s in steps(wf, job))


def test_caches_pip_and_the_worlds_checkpoint_keyed_by_their_inputs():
    book = load_workflow("book.yml")
    caches = {s["with"]["path"]: s["with"]["key"] for s in step_using(book, "build", "actions/cache")}
    assert set(caches) == {"~/.cache/pip", ".gla_cache/world"}
    world_key = caches[".gla_cache/world"]
    for inp in ("gla/world/**", "gla/model_configs/**", "requirements/lock.txt"):
        assert f"'{inp}'" in world_key, f"the world's cache key must hash {inp}: {world_key}"
    assert "hashFiles(" in caches["~/.cache/pip"] and "requirements/" in caches["~/.cache/pip"]
    test = load_workflow("test.yml")
    (job,) = test["jobs"]
    assert [s["with"]["path"] for s in step_using(test, job, "actions/cache")] == ["~/.cache/pip"]


@pytest.mark.parametrize("path", workflow_files(), ids=lambda p: p.name)
def test_workflows_use_the_python_the_lock_was_resolved_for(path):
    wf = yaml.safe_load(path.read_text())
    for name in wf["jobs"]:
        for s in step_using(wf, name, "actions/setup-python"):
            assert str(s["with"]["python-version"]) == lock_python(), \
                f"{path.name}: setup-python {s['with']['python-version']} but the lock is for {lock_python()}"


# --- the workflows: offline checkers -------------------------------------------------------


def test_workflows_match_githubs_schema():
    exe = tool("check-jsonschema")
    res = run_tool(exe, "--builtin-schema", "vendor.github-workflows", *workflow_files())
    assert res.returncode == 0, res.stdout + res.stderr


def test_schema_check_rejects_a_broken_workflow(tmp_path):
    exe = tool("check-jsonschema")
    bad = tmp_path / "bad.yml"
    bad.write_text("name: bad\non: push\njobs:\n  x:\n    steps:\n      - run: true\n")  # no runs-on
    res = run_tool(exe, "--builtin-schema", "vendor.github-workflows", bad)
    assert res.returncode != 0


def zizmor_findings(exe: str, target: Path) -> list[dict]:
    res = run_tool(exe, "--offline", "--format", "json-v1", target)
    assert res.stdout.strip().startswith("["), f"zizmor gave no JSON report:\n{res.stdout}\n{res.stderr}"
    return json.loads(res.stdout)


def test_zizmor_reports_no_high_severity_finding():
    exe = tool("zizmor")
    findings = zizmor_findings(exe, WORKFLOWS)
    high = [f"{f['ident']}: {f['desc']}" for f in findings
            if f["determinations"]["severity"] == "High" and not f.get("ignored")]
    assert not high, f"zizmor --offline: {high}"


def test_zizmor_flags_an_unpinned_injectable_workflow(tmp_path):
    """The audit above must be able to fail: a known-bad workflow gets high findings."""
    exe = tool("zizmor")
    wf = tmp_path / ".github" / "workflows"
    wf.mkdir(parents=True)
    (wf / "bad.yml").write_text(
        "name: bad\non: pull_request_target\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - uses: actions/checkout@v4\n"
        "      - run: echo \"${{ github.event.pull_request.title }}\"\n")
    idents = {f["ident"] for f in zizmor_findings(exe, wf) if f["determinations"]["severity"] == "High"}
    assert {"unpinned-uses", "template-injection"} <= idents


# --- licence and citation ------------------------------------------------------------------


def test_license_is_mit_as_the_package_declares():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License")
    assert "Copyright (c)" in text and "the GLA companion authors" in text
    assert "Permission is hereby granted, free of charge" in text
    assert re.search(r'^license\s*=\s*"MIT"', (ROOT / "pyproject.toml").read_text(), flags=re.M)


def test_citation_matches_the_cff_schema():
    exe = tool("check-jsonschema")
    res = run_tool(exe, "--builtin-schema", "vendor.citation-file-format", ROOT / "CITATION.cff")
    assert res.returncode == 0, res.stdout + res.stderr


def test_cff_schema_check_rejects_a_citation_without_authors(tmp_path):
    exe = tool("check-jsonschema")
    bad = tmp_path / "CITATION.cff"
    bad.write_text("cff-version: 1.2.0\nmessage: Cite me.\ntitle: x\n")
    res = run_tool(exe, "--builtin-schema", "vendor.citation-file-format", bad)
    assert res.returncode != 0 and "authors" in res.stdout + res.stderr


def test_citation_prefers_the_paper():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software" and cff["license"] == "MIT"
    version = re.search(r'^__version__\s*=\s*"([^"]+)"', (ROOT / "gla" / "version.py").read_text(), flags=re.M)[1]
    assert cff["version"] == version, "CITATION.cff's version must follow the package's (gla/version.py)"
    paper = cff["preferred-citation"]
    assert paper["title"].startswith("Generalized Logit Adjustment: Calibrating Fine-tuned Models")
    assert [a["family-names"] for a in paper["authors"]] == ["Zhu", "Tang", "Sun", "Zhang"]
    assert paper["year"] == 2023 and "2310.08106" in paper["url"]
    assert "NeurIPS 2023" in paper["collection-title"]
    assert any(r.get("repository-code") == "https://github.com/BeierZhu/GLA" for r in cff["references"])
