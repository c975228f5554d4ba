"""CONTRIBUTING's recipes, carried out in a temporary copy of the project.

Each test follows one recipe of ``CONTRIBUTING.md`` in a copy of the package, its notebooks
and its book, and checks two things: the recipe needs exactly the files its **Files** line
names (every file the test writes or changes is one of them, and each of them is
written), and what it adds works, run in a separate process that imports the copy (the
dataset is listed and loads; the estimator keeps the contract and runs from ``gla run``
and ``gla estimate``; the chapter runs, feeds a claim and gets into the book; the plug-in's
backbone runs ``gla run``, is checked by what it declares, and gets its own book pages).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
COPIED = ("gla", "notebooks", "book", "_config.yml", "pyproject.toml", "tests/conftest.py")
NOT_SOURCE = ("__pycache__", ".pytest_cache", ".gla_cache", ".hypothesis", ".ipynb_checkpoints")


# --------------------------------------------------------------------------- the recipes' files

def recipe_files(section: str, where: str = "here") -> list[str]:
    """The paths of the **Files** line under ``## <section>`` of CONTRIBUTING.md, with
    ``<...>`` placeholders: those in this project (``where="here"``), or those after "in
    the plug-in's own project" (``where="plugin"``)."""
    text = (ROOT / "CONTRIBUTING.md").read_text()
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    line = " ".join(body.split("**Files:**", 1)[1].split("\n\n", 1)[0].split())
    here, _, plugin = line.partition("in the plug-in's own project")
    return re.findall(r"`([^`]+)`", here if where == "here" else plugin)


def _pattern(path: str) -> re.Pattern:
    return re.compile("".join("[^/]+" if part.startswith("<") else re.escape(part)
                              for part in re.split(r"(<[^>]+>)", path)) + r"\Z")


def assert_touches_exactly(touched: set[str], section: str, where: str = "here") -> None:
    """Every touched file is one the recipe names, and every file it names is touched."""
    named = recipe_files(section, where)
    unnamed = sorted(f for f in touched if not any(_pattern(p).match(f) for p in named))
    untouched = [p for p in named if not any(_pattern(p).match(f) for f in touched)]
    assert not unnamed and not untouched, (f"{section}: touched but not named in CONTRIBUTING: {unnamed}; "
                                           f"named but not needed: {untouched}")


# --------------------------------------------------------------------------- a copy of the project

class Copy:
    """A copy of the project's sources, the hash of each file, and a way to run Python in it."""

    def __init__(self, root: Path):
        self.root = root
        for item in COPIED:
            src, dst = ROOT / item, root / item
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns(*NOT_SOURCE, "generated*", "_build"))
            else:
                shutil.copy2(src, dst)
        self.before = self._hashes()

    def _hashes(self) -> dict[str, str]:
        return {p.relative_to(self.root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in self.root.rglob("*") if p.is_file() and not set(p.relative_to(self.root).parts) & set(NOT_SOURCE)}

    def touched(self) -> set[str]:
        now = self._hashes()
        return {f for f, h in now.items() if self.before.get(f) != h} | (set(self.before) - set(now))

    def write(self, rel: str, text: str) -> None:
        (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
        (self.root / rel).write_text(textwrap.dedent(text).lstrip("\n"))

    def edit(self, rel: str, old: str, new: str) -> None:
        text = (self.root / rel).read_text()
        assert old in text, f"{rel}: {old!r} not found"
        (self.root / rel).write_text(text.replace(old, new, 1))

    def run(self, *args: str, extra_path: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
        """``python <args>`` in the copy, importing the copy's gla (and ``extra_path``)."""
        path = [str(self.root)] + ([str(extra_path)] if extra_path else [])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(path), "PYTHONDONTWRITEBYTECODE": "1",
               "OMP_NUM_THREADS": "1"}
        r = subprocess.run([sys.executable, *args], cwd=self.root, env=env, capture_output=True, text=True,
                           timeout=900)
        if check:
            assert r.returncode == 0, f"python {' '.join(args)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        return r


@pytest.fixture
def copy(tmp_path) -> Copy:
    return Copy(tmp_path / "project")


def test_every_recipe_names_its_files():
    sections = ["Adding a dataset", "Adding an estimator of the prior", "Adding a backbone", "Adding a chapter"]
    assert all(recipe_files(s) for s in sections if s != "Adding a backbone")
    assert recipe_files("Adding a backbone") == []  # a plug-in is a project of its own
    assert recipe_files("Adding a backbone", "plugin") == ["pyproject.toml", "<package>/__init__.py"]
    assert _pattern("tests/test_<family>.py").match("tests/test_toys.py")
    assert not _pattern("gla/data/<family>.py").match("gla/data/sub/toys.py")


# --------------------------------------------------------------------------- adding a dataset

READER = '''
    """Toy shapes in class folders: ``toy_shapes/<split>/<class>/*.png`` under the data root."""

    from __future__ import annotations

    import os
    from collections.abc import Callable
    from pathlib import Path

    from ._files import class_folder_images, require, visible_dirs
    from .images import LabelledImages
    from .registry import DatasetEntry, data_root, register_dataset
    from .templates import register_templates, zero_shot_templates

    LAYOUT = "  toy_shapes/{train,val,test}/<class>/*.png"


    def load_toy_shapes(split: str, *, root: str | os.PathLike | None, transform: Callable | None = None
                        ) -> LabelledImages:
        """One split of the toy shapes (classes: the folders of ``train``, sorted)."""
        base = Path(data_root("toy_shapes", root))
        require("toy_shapes", base, LAYOUT, base / "toy_shapes" / "train", base / "toy_shapes" / split)
        classes = [d.name for d in visible_dirs(base / "toy_shapes" / "train")]
        paths, labels = class_folder_images("toy_shapes", base, LAYOUT, base / "toy_shapes" / split, classes)
        return LabelledImages(paths, labels, classes, zero_shot_templates("toy_shapes"), name="toy_shapes",
                              split=split, transform=transform)


    register_dataset(DatasetEntry("toy_shapes", load_toy_shapes, ("train", "val", "test"), "real", "a toy task",
                                  "coloured shapes in class folders", layout=LAYOUT))
    register_templates("toy_shapes", zero_shot=("a photo of a {}.", "a drawing of a {}."),
                       prompt_tuning="a photo of a {}.")
'''

READER_TEST = '''
    """The toy shapes reader on a fixture in its exact layout."""

    import pytest
    from PIL import Image

    from gla.data import load_dataset, zero_shot_templates


    def test_the_toy_shapes_are_read_from_their_layout(tmp_path):
        for split, n in [("train", 3), ("val", 1), ("test", 2)]:
            for c, colour in [("circle", (255, 0, 0)), ("square", (0, 0, 255))]:
                (tmp_path / "toy_shapes" / split / c).mkdir(parents=True)
                for i in range(n):
                    Image.new("RGB", (8, 8), colour).save(tmp_path / "toy_shapes" / split / c / f"{i}.png")
        test = load_dataset("toy_shapes", "test", root=str(tmp_path))
        assert test.classnames == ["circle", "square"] and test.labels.tolist() == [0, 0, 1, 1]
        assert zero_shot_templates("toy_shapes")[0] == "a photo of a {}."
        with pytest.raises(FileNotFoundError, match="Expected this layout") as info:
            load_dataset("toy_shapes", "train", root=str(tmp_path / "elsewhere"))
        assert "toy_shapes/{train,val,test}/<class>/*.png" in str(info.value)
'''


def test_adding_a_dataset(copy):
    copy.write("gla/data/toyshapes.py", READER)
    copy.edit("gla/data/registry.py", '"gla.data.cifar")', '"gla.data.cifar", "gla.data.toyshapes")')
    copy.write("tests/test_toyshapes.py", READER_TEST)
    copy.edit("book/reproduce.md", "\n## ", "\n## Toy shapes\n\n```\ntoy_shapes/{train,val,test}/<class>/*.png\n```\n\n## ")
    assert_touches_exactly(copy.touched(), "Adding a dataset")
    copy.run("-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_toyshapes.py")
    rows = {r["name"]: r for r in json.loads(copy.run("-m", "gla", "datasets", "--json").stdout)}
    assert rows["toy_shapes"]["layout"].strip() == "toy_shapes/{train,val,test}/<class>/*.png"
    assert rows["toy_shapes"]["kind"] == "real" and "imagenet" in rows


# --------------------------------------------------------------------------- adding an estimator

ESTIMATOR = '''


    class ShrunkExactEstimator(PriorEstimatorBase):
        """The exact estimate shrunk towards the uniform prior: ``(1 - shrink) * log q`` (renormalised)."""

        id = "exact-shrunk"
        name = "exact, shrunk towards uniform"
        requires_labels = True
        estimates = MODEL_PRIOR
        description = "The exact estimator's log prior times (1 - shrink)."

        def __init__(self, temperature: float | str = 1.0, shrink: float = 0.5):
            self.temperature = temperature
            self.shrink = shrink

        def _fit(self, z, y, temperature):
            exact = PriorEstimator(temperature=temperature).fit(z, y)
            return exact.log_prior_ * (1 - self.shrink), exact.diagnostics_


    register_estimator(ShrunkExactEstimator)
'''

ESTIMATOR_TEST = '''


    def test_the_shrunk_estimator_is_the_exact_one_shrunk_towards_uniform(planted):
        logits, labels, true_lp = planted
        exact = make_estimator("exact", temperature=2.0).fit(logits, labels).log_prior_
        shrunk = make_estimator("exact-shrunk", temperature=2.0, shrink=0.25).fit(logits, labels).log_prior_
        assert torch.allclose(shrunk - shrunk.mean(), 0.75 * (exact - exact.mean()))
'''


def test_adding_an_estimator(copy, tmp_path, smoke_checkpoint):
    (copy.root / "gla" / "estimators.py").write_text((copy.root / "gla" / "estimators.py").read_text()
                                                     + textwrap.dedent(ESTIMATOR))
    (copy.root / "tests" / "test_estimators.py").write_text((ROOT / "tests" / "test_estimators.py").read_text()
                                                            + textwrap.dedent(ESTIMATOR_TEST))
    touched = copy.touched()
    assert_touches_exactly(touched, "Adding an estimator of the prior")
    # the contract test runs every registered estimator, the new one among them
    r = copy.run("-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_estimators.py", "-k", "shrunk")
    assert "2 passed" in r.stdout, r.stdout[-2000:]
    import torch

    from tests.conftest import planted_logits

    logits, labels, _ = planted_logits(100, 5, seed=2)
    torch.save({"logits": logits, "labels": labels}, tmp_path / "z.pt")
    copy.run("-m", "gla", "estimate", str(tmp_path / "z.pt"), "--estimator", "exact-shrunk", "--out",
             str(tmp_path / "q.json"))
    assert json.loads((tmp_path / "q.json").read_text())["estimator"] == "exact-shrunk"
    copy.run("-m", "gla", "run", "many-shot", "--datasets", "world-colours", "--pretrained", str(smoke_checkpoint),
             "--smoke", "--estimator", "exact-shrunk", "--cache-dir", str(tmp_path / "cache"), "--out",
             str(tmp_path / "out"), "--quiet")
    import pandas as pd

    (table,) = [p for p in (tmp_path / "out").glob("many_shot_*.csv") if not p.stem.endswith("world-colours")]
    assert set(pd.read_csv(table).prior_source) == {"exact-shrunk"}


# --------------------------------------------------------------------------- adding a chapter

STEM = "15_toy_chapter"


def _chapter() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["gla"] = {"claims": {"measures": {"toy.csv": {"debiasing_helps": 3}}}}
    params = nbformat.v4.new_code_cell(
        'backbone = "gla-world-tiny"\npretrained = "world"\ndata_root = None\ncache_dir = None\n'
        'output_dir = "results"\ndevice = "cpu"\nsmoke = False\nprotocol = "paper"')
    params.metadata["tags"] = ["parameters"]
    glue = nbformat.v4.new_code_cell('glue("toy_gain", float(gain), display=False)')
    glue.metadata["tags"] = ["remove-input"]
    nb.cells = [
        nbformat.v4.new_markdown_cell("# A toy chapter\n\n**What this shows.** Removing an estimated prior from "
                                      "planted logits.\n\n**What it needs.** Nothing."),
        params,
        nbformat.v4.new_code_cell(
            "import pandas as pd\nimport torch\nfrom myst_nb import glue\n\nimport gla\nfrom gla import Method\n"
            "from gla.metrics import topk_accuracy\n\n"
            "ctx = gla.notebook.setup(backbone, pretrained, smoke=smoke, cache_dir=cache_dir, "
            "output_dir=output_dir, device=device, data_root=data_root, protocol=protocol)"),
        nbformat.v4.new_code_cell(
            "labels = torch.arange(4).repeat(50)  # zero-shot logits with a planted prior\n"
            "logits = torch.randn(200, 4, generator=torch.Generator().manual_seed(0)) + torch.tensor([1.0, 0.5, 0, -1])\n"
            "logits[torch.arange(200), labels] += 2.0\n"
            'fit = gla.estimators.make_estimator("exact").fit(logits, labels)\n'
            "rows = [{**ctx.run()['settings'].columns(), 'backbone': ctx.backbone, 'dataset': 'planted', "
            "'split': 'test', 'method': m, 'top1': float(topk_accuracy(z, labels))}\n"
            "        for m, z in [(Method.ZERO_SHOT, logits), (Method.DEBIASED, fit.debias(logits))]]\n"
            "table = pd.DataFrame(rows)\n"
            'gla.save_results(table, ctx.output_dir, "toy")\n'
            "gain = 100 * (table.top1[1] - table.top1[0])\ntable"),
        glue,
        nbformat.v4.new_markdown_cell("**Reading.** Removing the prior changes top-1 by "
                                      "{glue:text}`toy_gain:+.1f` points."),
    ]
    return nb


@pytest.mark.slow
def test_adding_a_chapter(copy, tmp_path, smoke_checkpoint):
    nbformat.write(_chapter(), str(copy.root / "notebooks" / f"{STEM}.ipynb"))
    copy.edit("book/_toc.yml", "      - file: generated/13_real_frequencies\n",
              f"      - file: generated/13_real_frequencies\n      - file: generated/{STEM}\n")
    copy.edit("notebooks/params/default.yaml", "10_prior_vs_truth]", f"10_prior_vs_truth, {STEM}]")
    assert_touches_exactly(copy.touched(), "Adding a chapter")
    out, site = tmp_path / "generated", tmp_path / "site"
    script = f"""
        import json
        from pathlib import Path

        from gla.book import build_book, list_notebooks, run_notebooks
        from gla.chapters import book_chapters, chapter_stems, claim_sources
        from gla.claims import check_claims

        out = Path({str(out)!r})
        # what tests/test_book.py and tests/test_real_run.py derive their chapters from
        assert set(chapter_stems()) == {{p.stem for p in list_notebooks()}}
        run_notebooks(None, out, only=[{STEM!r}], overrides={{"smoke": True, "pretrained": {str(smoke_checkpoint)!r},
                      "cache_dir": {str(tmp_path / "cache")!r}}})
        claims = check_claims(out / "results", sources=claim_sources(book_chapters())).set_index("id")
        html = build_book(out, Path({str(site)!r}))
        print(json.dumps({{"stems": chapter_stems(), "part": [c.opened_by for c in book_chapters() if c.stem == {STEM!r}],
                          "evidence": claims.loc["debiasing_helps", "evidence"],
                          "verdict": claims.loc["debiasing_helps", "verdict"],
                          "pages": sorted(p.relative_to(html).as_posix() for p in html.rglob("*.html"))}}))
    """
    result = json.loads(copy.run("-c", textwrap.dedent(script)).stdout.strip().splitlines()[-1])
    assert result["stems"][-1] == STEM and result["part"] == ["beyond"]
    assert result["evidence"] == f"{STEM}/toy.csv" and result["verdict"] in ("holds", "does not hold")
    assert f"generated/{STEM}.html" in result["pages"] and "generated/03_many_shot.html" not in result["pages"]
    assert copy.touched() == {f"notebooks/{STEM}.ipynb", "book/_toc.yml", "notebooks/params/default.yaml"}


# --------------------------------------------------------------------------- adding a backbone (a plug-in)

PLUGIN = '''
    """A toy family of CLIP models for gla, with a toy task: registered through gla's plug-ins."""

    from __future__ import annotations

    import torch
    from open_clip import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD, tokenize
    from open_clip.model import CLIP

    from gla.backbones import Backbone, register_backbone_provider
    from gla.data import DatasetEntry, LabelledImages, register_dataset, register_templates

    SEEDS = {"": 0, "toy-v1": 1, "toy-v2": 2}  # the pretrained values: weights drawn from a seed
    COLOURS = {"red": (1.0, 0.0, 0.0), "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0)}


    def load(name: str, pretrained: str, device, precision: str) -> Backbone:
        torch.manual_seed(SEEDS.get(pretrained, 0))
        model = CLIP(32, {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
                     {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1})
        if pretrained not in SEEDS:  # a checkpoint file
            model.load_state_dict(torch.load(pretrained, map_location="cpu", weights_only=True))
        mean, std = torch.tensor(OPENAI_DATASET_MEAN)[:, None, None], torch.tensor(OPENAI_DATASET_STD)[:, None, None]
        return Backbone(model.to(device).eval(), lambda x: (x - mean) / std, lambda t: tokenize(t, context_length=16),
                        name, pretrained, device, {})


    def load_colours(split: str, *, root=None, transform=None) -> LabelledImages:
        g = torch.Generator().manual_seed({"train": 0, "val": 1, "test": 2}[split])
        labels = torch.arange(len(COLOURS)).repeat(8)
        colours = torch.tensor(list(COLOURS.values()))[labels][:, :, None, None]
        images = 0.7 * colours.expand(-1, 3, 32, 32) + 0.3 * torch.rand(len(labels), 3, 32, 32, generator=g)
        return LabelledImages(images, labels, list(COLOURS), ["a photo of a {} square."], name="toy-colours",
                              split=split, transform=transform)


    def register() -> None:
        register_backbone_provider("toy-clip", load, default_pretrained="toy-v1", models=("toy-clip-s",),
                                   tags=("toy-v2",))
        register_dataset(DatasetEntry("toy-colours", load_colours, ("train", "val", "test"), "toy", "a toy task",
                                      "three colours"), replace=True)
        register_templates("toy-colours", zero_shot=("a photo of a {} square.",), replace=True)
'''

PYPROJECT = '''
    [build-system]
    requires = ["setuptools"]
    build-backend = "setuptools.build_meta"

    [project]
    name = "toyclip"
    version = "0.1"

    [project.entry-points."gla.plugins"]
    toyclip = "toyclip:register"
'''

PAGES = """
    import json
    import sys
    from pathlib import Path

    from gla.pages import chapter_runs, needs_run_pages, real_pages

    results = Path(sys.argv[1])
    records = {"03_many_shot": {"backbone": "toy-clip-s", "pretrained": "toy-v2", "dataset": "toy-colours"}}
    pages = real_pages(chapter_runs(records, results), results)
    print(json.dumps({"needs": needs_run_pages(records), **pages}))
"""


@pytest.mark.slow
def test_adding_a_backbone_plugin(copy, tmp_path):
    """A plug-in that is not the world: installed from its own project, its models run
    ``gla run``, are checked by what the provider declares, and a book of them gets its
    own pages."""
    project = tmp_path / "toyclip"
    (project / "toyclip").mkdir(parents=True)
    (project / "toyclip" / "__init__.py").write_text(textwrap.dedent(PLUGIN).lstrip("\n"))
    (project / "pyproject.toml").write_text(textwrap.dedent(PYPROJECT).lstrip("\n"))
    site = tmp_path / "site-packages"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--no-build-isolation", "--target", str(site), str(project)], check=True, capture_output=True)
    out = tmp_path / "out"
    common = ["--datasets", "toy-colours", "--smoke", "--cache-dir", str(tmp_path / "cache"), "--out", str(out),
              "--quiet"]
    refused = copy.run("-m", "gla", "run", "many-shot", "--backbone", "toy-clip-s", "--pretrained", "openai", *common,
                       extra_path=site, check=False)
    assert refused.returncode == 2 and "expected 'toy-v1', 'toy-v2' or a checkpoint file for toy-clip-s" in refused.stderr
    copy.run("-m", "gla", "run", "many-shot", "--backbone", "toy-clip-s", "--pretrained", "toy-v2", *common,
             extra_path=site)
    import pandas as pd

    table = pd.read_csv(out / "many_shot_toy-clip-s_toy-v2.csv")
    assert set(table.backbone) == {"toy-clip-s"} and {"gla", "fine_tuned", "zero_shot"} <= set(table.method)
    (tmp_path / "results" / "03_many_shot").mkdir(parents=True)
    shutil.copy(out / "many_shot_toy-clip-s_toy-v2.csv", tmp_path / "results" / "03_many_shot" / "many_shot.csv")
    pages = json.loads(copy.run("-c", textwrap.dedent(PAGES), str(tmp_path / "results"), extra_path=site).stdout)
    assert pages["needs"], "the world's pages do not describe a book on another plug-in's model"
    assert pages["intro.md"].startswith("# Generalized Logit Adjustment with toy-clip-s (toy-v2)")
    row = next(line for line in pages["intro.md"].splitlines() if "generated/03_many_shot`" in line)
    assert "`toy-clip-s` (`toy-v2`)" in row and "`toy-colours`" in row
    assert pages["beyond.md"] is None and "`many_shot.csv`" in pages["results.md"]
    assert_touches_exactly(copy.touched(), "Adding a backbone")  # nothing in this project
    assert_touches_exactly({p.relative_to(project).as_posix() for p in project.rglob("*") if p.is_file()
                            and not set(p.relative_to(project).parts) & {"build", "toyclip.egg-info"}},
                           "Adding a backbone", "plugin")
