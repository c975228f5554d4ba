"""Run the book's notebooks with papermill.

``make book`` calls :func:`run_notebooks` (through ``gla book run``): every source notebook
in ``notebooks/`` is executed with the parameters of a YAML file into an output folder
inside ``book/``, where Jupyter Book picks it up with execution off.

The parameter file holds the parameters shared by every notebook at the top level and
per-notebook overrides under ``notebooks: {<stem>: {...}}``. Only parameters that a
notebook declares in its ``parameters`` cell are passed to it; an unknown name in the
file is an error (papermill would only warn). ``quick_gelu`` describes the shared weights: a
notebook whose overrides name another ``backbone`` or ``pretrained`` does not receive it.
Before the first kernel starts, :func:`check_parameters` checks every name and path the
notebooks to run receive.

``lanes: [[<stem>, ...], [<stem>, ...]]`` (optional) lets ``jobs=2`` run two kernels side
by side, one thread each: notebooks in no lane run first, one after another (the world's
pretraining), then each lane runs its notebooks in order. On two CPU cores two
single-threaded kernels get through about 1.5 times as much work as one two-threaded
kernel. Notebooks share results only through the content-keyed cache, so any order gives
the same results; lanes only avoid computing a shared result twice.

Relative paths in a parameter file (``data_root``, ``cache_dir``, ``counts_file``, a
checkpoint ``pretrained``, ...) resolve against the file's folder. With ``keep_going`` a
failing notebook does not stop the others; every failure is reported at the end
(:class:`NotebookFailures`). After the last notebook, :func:`write_results_archive` puts
every chapter's tables in one archive, ``<out>/results.zip``, which the book's "All
results" page links. The notebooks and book pages are read from the checkout, or,
in an installed package, from its package data (``gla/_book/``). :func:`build_book`
assembles a book folder from the pages and a tree of executed notebooks, with the pages
that say what each chapter ran (:func:`executed_chapters`, :mod:`gla.pages`) and only the
chapters the tree holds (:mod:`gla.toc`), and builds it with Jupyter Book.

papermill and nbformat come with the book's extra (``gla[book]``): they are imported inside
the functions that execute or read notebooks, so that the rest of the package, ``gla --help``
included, runs without them.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from .backbones import is_checkpoint_path
from .book_source import (
    CHECKOUT_ROOT,
    RESERVED,
    TABLE_SUFFIXES,
    declared_parameters,
    find_source_dir,
    notebook_parameters,
    packaged_folder,
    parameter_defaults,
)
from .cache import atomic_write, atomic_write_text, default_cache_dir
from .chapters import book_chapters
from .checks import check_parameters
from .errors import RunError, UsageError
from .pages import chapter_runs, needs_run_pages, real_pages
from .report.html import fit_tables
from .toc import restrict_book, toc_files

# Parameters that name files or folders: relative values resolve against the parameter
# file's folder (or the current folder for a mapping), never against the output folder.
PATH_PARAMETERS = ("data_root", "cache_dir", "output_dir", "counts_file", "few_shot_csv", "prior_file",
                   "results_root")


def _default_notebooks_dir() -> Path:
    try:
        return find_source_dir("notebooks")
    except UsageError:
        return CHECKOUT_ROOT / "notebooks"


NOTEBOOKS_DIR = _default_notebooks_dir()


def resolve_paths(params: Mapping[str, Any], base: str | os.PathLike) -> dict[str, Any]:
    """Resolve relative file parameters (:data:`PATH_PARAMETERS`, a ``pretrained`` that is
    a checkpoint path, the paths in ``extra_backbones``) against ``base``, at the top level
    and in the per-notebook overrides. Absolute paths, tags and empty values are kept."""
    base = Path(base)

    def fix(key: str, v: Any) -> Any:
        if isinstance(v, str) and v and (key in PATH_PARAMETERS or (key == "pretrained" and is_checkpoint_path(v))):
            p = Path(v).expanduser()
            return str(p if p.is_absolute() else (base / p).resolve())
        if key == "extra_backbones" and isinstance(v, list):
            return [[b[0], fix("pretrained", b[1]), *b[2:]] if isinstance(b, (list, tuple)) and len(b) > 1 else b
                    for b in v]
        return v

    out = {k: (v if k in RESERVED else fix(k, v)) for k, v in params.items()}
    if isinstance(params.get("notebooks"), Mapping):
        out["notebooks"] = {stem: ({k: fix(k, v) for k, v in (ov or {}).items()} if isinstance(ov, Mapping) else ov)
                            for stem, ov in params["notebooks"].items()}
    return out


def load_params(path: str | os.PathLike | None) -> dict[str, Any]:
    """Read a parameter YAML file (``None`` gives no parameters).

    Relative paths in it (``data_root``, ``cache_dir``, ``counts_file``, a checkpoint
    ``pretrained``, ...) resolve against the file's folder, so a file means the same
    wherever it is run from.
    """
    if path is None:
        return {}
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"params: no parameter file at {p}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UsageError(f"params: {p} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise UsageError(f"params: expected a mapping at the top of {p}, got {type(data).__name__}")
    if not isinstance(data.get("notebooks") or {}, dict):
        raise UsageError(f"params: 'notebooks' in {p} must map notebook stems to their parameters")
    return resolve_paths(data, p.resolve().parent)


def list_notebooks(notebooks_dir: str | os.PathLike = NOTEBOOKS_DIR) -> list[Path]:
    """Source notebooks in book order (file names sort in chapter order)."""
    return sorted(Path(notebooks_dir).glob("*.ipynb"))


def plan_lanes(stems: Sequence[str], lanes: Sequence[Sequence[str]] | None, jobs: int,
               after: Sequence[str] = ()) -> tuple[list[str], list[list[str]], list[str]]:
    """Split notebook stems into those run first, one after another, parallel lanes, and
    those run last, after every lane (``after``: chapters that read the others' results,
    such as the claims chapter).

    With ``jobs <= 1`` or no ``lanes`` everything runs in order, the ``after`` stems last.
    Otherwise stems in no lane run first, then the lanes (restricted to ``stems``, each in
    its order), then ``after``.
    """
    last = [s for s in after if s in set(stems)]
    stems = [s for s in stems if s not in set(last)]
    if jobs <= 1 or not lanes:
        return list(stems), [], last
    named = [s for lane in lanes for s in lane]
    repeated = sorted({s for s in named if named.count(s) > 1})
    if repeated:
        raise ValueError(f"lanes: {repeated} appear in more than one lane")
    wanted = set(stems)
    lanes_here = [[s for s in lane if s in wanted] for lane in lanes]
    return [s for s in stems if s not in set(named)], [lane for lane in lanes_here if lane], last


def run_notebooks(params: Mapping[str, Any] | str | os.PathLike | None, out_dir: str | os.PathLike, *,
                  notebooks_dir: str | os.PathLike | None = None, only: Iterable[str] | None = None,
                  overrides: Mapping[str, Any] | None = None, jobs: int = 1, keep_going: bool = False,
                  check: bool = True) -> list[Path]:
    """Execute the notebooks with papermill into ``out_dir``; returns the executed paths.

    Every parameter is checked against every notebook's ``parameters`` cell before the
    first notebook starts (also with ``only``), and, with ``check``, every name and path
    the notebooks to run receive (:func:`check_parameters`).

    Parameters
    ----------
    params : mapping, path or None
        Parameters (see the module docstring), or a YAML file holding them (default, with
        ``None``: the shipped ``params/default.yaml`` when it exists). Relative paths
        resolve against the file's folder, or the current folder for a mapping.
    out_dir : path
        Where executed notebooks go (e.g. ``book/generated``).
    notebooks_dir : path, optional
        Source notebooks (default: the checkout's ``notebooks/`` or the installed copy,
        :func:`find_source_dir`).
    only : iterable of str, optional
        Notebook stems to run (default: all).
    overrides : mapping, optional
        Parameters that win over the file's shared ones (e.g. ``{"smoke": True}``).
    jobs : int
        Kernels run at once, following the file's ``lanes`` (see the module docstring).
    keep_going : bool
        After a failing notebook, run the remaining ones (in its lane, or in order) and
        raise :class:`NotebookFailures` listing every failure at the end.
    check : bool
        Check backbones, checkpoints, data roots, dataset names and layouts and input
        files before the first kernel (:func:`check_parameters`).
    """
    nb_dir = Path(notebooks_dir) if notebooks_dir is not None else find_source_dir("notebooks")
    if params is None and (nb_dir / "params" / "default.yaml").is_file():
        params = nb_dir / "params" / "default.yaml"
    if not isinstance(params, Mapping):
        params = load_params(params)
    else:
        params = resolve_paths(params, Path.cwd())
    params = dict(params)
    if overrides:
        params.update(overrides)
    out = Path(out_dir).resolve()  # absolute: lanes run in threads and papermill changes the working folder
    all_sources = list_notebooks(nb_dir)
    if not all_sources:
        raise UsageError(f"notebooks: no .ipynb file in {nb_dir}")
    sources = all_sources
    if only is not None:
        wanted = set(only)
        missing = wanted - {s.stem for s in sources}
        if missing:
            raise UsageError(f"only: no notebook named {sorted(missing)} in {nb_dir}")
        sources = [s for s in sources if s.stem in wanted]
    known = {p.stem for p in all_sources}
    strangers = sorted(set(params.get("notebooks") or {}) - known)
    if strangers:
        raise UsageError(f"params: per-notebook overrides for {strangers}, which are not notebooks in {nb_dir}")
    plan, all_declared = {}, set()
    for src in all_sources:  # every notebook is checked, also those --only leaves out
        declared = declared_parameters(src)
        all_declared |= set(declared)
        with _as_usage():
            nb_params = notebook_parameters(src.stem, declared, params)
        if src in sources:
            plan[src.stem] = (src, nb_params)
    unknown = sorted(k for k in params if k not in RESERVED and k not in all_declared)
    if unknown:
        raise UsageError(f"params: {unknown} are declared by no notebook")
    strangers = sorted(({s for lane in params.get("lanes") or [] for s in lane}
                        | set(params.get("after_lanes") or [])) - known)
    if strangers:
        raise UsageError(f"lanes: no notebook named {strangers} in {nb_dir}")
    with _as_usage():
        first, lanes, last = plan_lanes(list(plan), params.get("lanes"), jobs, params.get("after_lanes") or ())
    if check:
        check_parameters({stem: (src, nb_params) for stem, (src, nb_params) in plan.items()})
    out.mkdir(parents=True, exist_ok=True)
    failures: list[tuple[str, BaseException]] = []
    done: list[Path] = []

    def one_after_another(stems):
        for stem in stems:
            if failures and not keep_going:
                break
            try:
                done.append(_execute(*plan[stem], out, progress_bar=True))
            except Exception as exc:
                failures.append((stem, exc))

    one_after_another(first)
    if lanes and (keep_going or not failures):
        lane_done, lane_failures = _run_lanes([[plan[s] for s in lane] for lane in lanes], out, jobs, keep_going)
        done += lane_done
        failures += lane_failures
    one_after_another(last)  # chapters that read the others' results
    write_results_archive(out)  # also after failures: the archive holds what the chapters wrote
    if failures:
        raise NotebookFailures(failures, out) from failures[0][1]
    return done


ARCHIVE_NAME = "results.zip"


def write_results_archive(out_dir: str | os.PathLike, name: str = ARCHIVE_NAME) -> Path:
    """Write one zip archive of every table the chapters saved (``results/<chapter>/*.csv``,
    ``.json``, ``.tsv``) to ``<out_dir>/<name>``, atomically; returns its path.

    The book's "All results" page links it. Entries are named ``<chapter>/<file>`` and carry
    a fixed date, so the same tables give the same archive, byte for byte.

    Raises :class:`gla.errors.UsageError` when ``out_dir`` is not a folder.
    """
    out = Path(out_dir)
    if not out.is_dir():
        raise UsageError(f"results archive: expected the folder of executed notebooks, got {out}")
    results = out / "results"
    files = sorted(p for p in results.rglob("*") if p.is_file() and p.suffix in TABLE_SUFFIXES
                   and not p.name.startswith(".")) if results.is_dir() else []
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for p in files:
            info = zipfile.ZipInfo(p.relative_to(results).as_posix(), date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, p.read_bytes())
    return atomic_write(out / name, lambda fh: fh.write(buf.getvalue()))


class NotebookFailures(RunError):
    """One or more notebooks failed; ``failures`` lists ``(stem, exception)`` pairs (the
    partial executed notebooks are kept in the output folder)."""

    def __init__(self, failures: Sequence[tuple[str, BaseException]], out: Path):
        self.failures = list(failures)
        lines = [f"  {stem}: {_short(exc)}" for stem, exc in self.failures]
        super().__init__(f"{len(self.failures)} notebook(s) failed (partial outputs in {out}):\n" + "\n".join(lines))


def _short(exc: BaseException) -> str:
    """The last line of a papermill error (the cell's exception), or the message."""
    ename, evalue = getattr(exc, "ename", None), getattr(exc, "evalue", None)
    if ename:
        return f"{ename}: {evalue}"
    return f"{type(exc).__name__}: {exc}"


class _as_usage:
    """Re-raise a ValueError of the parameter checks as :class:`gla.errors.UsageError`."""

    def __enter__(self):
        return self

    def __exit__(self, typ, exc, tb):
        if exc is not None and isinstance(exc, ValueError) and not isinstance(exc, UsageError):
            raise UsageError(str(exc)) from exc
        return False


def _execute(src: Path, nb_params: dict[str, Any], out: Path, *, progress_bar: bool) -> Path:
    import papermill as pm  # the book's extra (see the module docstring)

    target = out / src.name
    nb_params = {**nb_params}
    declared_here = declared_parameters(src)
    if "output_dir" in declared_here and "output_dir" not in nb_params:
        nb_params["output_dir"] = str((out / "results" / src.stem).resolve())
    if "cache_dir" in declared_here and not nb_params.get("cache_dir"):
        root = CHECKOUT_ROOT if (CHECKOUT_ROOT / "notebooks").is_dir() else Path.cwd()
        nb_params["cache_dir"] = str(default_cache_dir(root).resolve())
    print(f"[gla book] {src.name} -> {target}", flush=True)
    pm.execute_notebook(str(src), str(target), parameters=nb_params, kernel_name="python3",
                        cwd=str(out), progress_bar=progress_bar)
    tidy_for_the_page(target, machine_paths(out, nb_params))
    return target


def machine_paths(out: Path, nb_params: Mapping[str, Any]) -> dict[str, str]:
    """Folders of the building machine that may show in a notebook's printed output, and
    what the page says instead: the output folder becomes ``.`` (links on the page are
    relative to it), the cache ``[cache]``, the data root ``[data]``, the checkout
    ``[checkout]`` and the home folder ``~``. Longest first, so a folder inside another is
    replaced whole."""
    names = {str(out.resolve()): ".", str(CHECKOUT_ROOT): "[checkout]", str(Path.home()): "~"}
    for key, label in (("cache_dir", "[cache]"), ("data_root", "[data]")):
        v = nb_params.get(key)
        if isinstance(v, str) and v and Path(v).is_absolute():
            names[str(Path(v))] = label
            names[str(Path(v).resolve())] = label
    names = {k: v for k, v in names.items() if k not in ("", "/")}
    return dict(sorted(names.items(), key=lambda kv: -len(kv[0])))


def _scrub(text: Any, replace: Mapping[str, str]) -> Any:
    if isinstance(text, list):
        return [_scrub(t, replace) for t in text]
    if not isinstance(text, str):
        return text
    for old, new in replace.items():
        text = text.replace(old, new)
    return text


# Cells a reader of the book does not need: papermill's parameter cells (they hold paths of
# the machine that built the book) go; the set-up call keeps its output (whose numbers these
# are) and loses its code.
SETUP_CALL = "gla.notebook.setup("


def tidy_for_the_page(path: str | os.PathLike, replace: Mapping[str, str] | None = None) -> None:
    """Prepare an executed notebook for the book, with Jupyter Book's cell tags: the
    ``parameters`` and ``injected-parameters`` cells are removed from the page
    (``remove-cell``), the set-up cell shows only its output (``remove-input``), and stderr
    streams (progress bars, library warnings) are dropped from every output. In the text
    of the outputs that remain, every key of ``replace`` (folders of the building machine,
    :func:`machine_paths`) becomes its value. HTML tables get the classes that fit them to
    the page (:func:`gla.report.html.fit_tables`). The file is rewritten atomically."""
    import nbformat  # the book's extra (see the module docstring)

    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tags = list(cell.metadata.get("tags", []))
        if {"parameters", "injected-parameters"} & set(tags):
            tags.append("remove-cell")
        elif SETUP_CALL in cell.source:
            tags.append("remove-input")
        if tags:
            cell.metadata["tags"] = list(dict.fromkeys(tags))
        cell.outputs = [o for o in cell.get("outputs", []) if not (o.get("output_type") == "stream"
                                                                    and o.get("name") == "stderr")]
        for o in cell.outputs if replace else ():
            if "text" in o:
                o["text"] = _scrub(o["text"], replace)
            for mime in ("text/plain", "text/html", "text/markdown", "text/latex"):
                if mime in o.get("data", {}):
                    o["data"][mime] = _scrub(o["data"][mime], replace)
        for o in cell.outputs:
            if "text/html" in o.get("data", {}):
                html = o["data"]["text/html"]
                o["data"]["text/html"] = fit_tables("".join(html) if isinstance(html, list) else html)
    atomic_write_text(path, nbformat.writes(nb))


def _run_lanes(lanes: list[list[tuple[Path, dict[str, Any]]]], out: Path, jobs: int, keep_going: bool = False
               ) -> tuple[list[Path], list[tuple[str, BaseException]]]:
    """Run lanes side by side, each kernel on one thread. A failure stops its lane (or,
    with ``keep_going``, the lane goes on); returns the executed paths and the failures
    after every lane has stopped (the other lanes' notebooks are kept)."""
    def run_lane(lane):
        done, failed = [], []
        for src, nb_params in lane:
            try:
                done.append(_execute(src, nb_params, out, progress_bar=False))
            except Exception as exc:
                failed.append((src.stem, exc))
                if not keep_going:
                    break
        return done, failed

    thread_vars = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {k: os.environ.get(k) for k in thread_vars}
    os.environ.update({k: "1" for k in thread_vars})  # inherited by the kernels started below
    try:
        with ThreadPoolExecutor(max_workers=min(jobs, len(lanes))) as pool:
            results = [f.result() for f in [pool.submit(run_lane, lane) for lane in lanes]]
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return [p for d, _ in results for p in d], [f for _, fs in results for f in fs]


# --------------------------------------------------------------------------- the HTML book

def chapter_record(notebook: str | os.PathLike) -> dict[str, Any]:
    """The parameters an executed notebook ran with, as it recorded them: the defaults of
    its ``parameters`` cell updated by those papermill injected (the notebook's
    ``metadata.papermill.parameters``).

    Raises :class:`gla.errors.UsageError` for a notebook papermill did not execute.
    """
    import nbformat  # the book's extra (see the module docstring)

    nb = nbformat.read(str(notebook), as_version=4)
    recorded = nb.metadata.get("papermill", {}).get("parameters")
    if recorded is None:
        raise UsageError(f"{Path(notebook).name}: not executed by 'gla book run' (no papermill record of its "
                         "parameters)")
    return {**parameter_defaults(notebook), **recorded}


def _failure(notebook: Path) -> str | None:
    """The error an executed notebook stopped with (None when it finished)."""
    import nbformat  # the book's extra (see the module docstring)

    nb = nbformat.read(str(notebook), as_version=4)
    for cell in nb.cells:
        for o in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if o.get("output_type") == "error":
                return f"{o.get('ename')}: {o.get('evalue')}"
    return "it stopped with an error" if nb.metadata.get("papermill", {}).get("exception") else None


def executed_chapters(generated: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Every executed chapter of a tree and the parameters it ran with (:func:`chapter_record`).

    Each ``<generated>/<stem>.ipynb`` must have been executed by papermill, have finished
    without an error, and have left its tables in ``<generated>/results/<stem>/``.

    Raises
    ------
    gla.errors.UsageError
        Listing every chapter that does not, with the command that reruns them.
    """
    gen = Path(generated)
    records, problems = {}, []
    for nb in sorted(gen.glob("*.ipynb")):
        try:
            records[nb.stem] = chapter_record(nb)
        except UsageError as exc:
            problems.append((nb.stem, str(exc).split(": ", 1)[1]))
            continue
        failed = _failure(nb)
        folder = gen / "results" / nb.stem
        tables = [p for p in folder.iterdir() if p.suffix in TABLE_SUFFIXES and not p.name.startswith(".")] \
            if folder.is_dir() else []
        if failed:
            problems.append((nb.stem, f"it failed ({failed})"))
        elif not tables:
            problems.append((nb.stem, f"its results are missing: no table in {folder}"))
    if problems:
        stems = " ".join(s for s, _ in problems)
        raise UsageError(f"generated: {len(problems)} chapter(s) of {gen} cannot go into the book:\n"
                         + "\n".join(f"  {s}: {why}" for s, why in problems)
                         + f"\nrerun them (gla book run --only {stems} --out {gen} ...) or remove their notebooks")
    return records


def build_book(generated: str | os.PathLike, out_dir: str | os.PathLike, *, book_dir: str | os.PathLike | None = None,
               config: str | os.PathLike | None = None, strict: bool = True) -> Path:
    """Build the HTML book from executed notebooks; returns the ``html`` folder.

    Assembles ``<out_dir>/book`` from the book's pages (``book/`` of the checkout or the
    installed copy, without its ``generated*`` and ``_build`` folders) and the executed
    notebooks copied to ``<out_dir>/book/generated`` (where the table of contents looks
    for them), puts ``_config.yml`` at ``<out_dir>``, and runs ``jupyter-book build``
    (Jupyter Book 1.x, warnings as errors with ``strict``) into ``<out_dir>/_build/html``.

    What the executed notebooks recorded decides the rest (:func:`executed_chapters`: a
    chapter that failed or left no table is an error). When a chapter ran a model the
    shipped pages do not describe (an open_clip model, or a plug-in's that does not declare
    them its own: :func:`gla.pages.needs_run_pages`), the introduction, the "Beyond the
    paper" opening and the "All results" page are written for that run (:mod:`gla.pages`:
    what each chapter ran, its tables and settings, and the published numbers beside the
    measured ones); for the world, the pages of ``book/`` are used as they are. A tree with
    some chapters only gives a book of those chapters (:func:`gla.toc.restrict_book`). The book's copies
    of the notebooks are prepared for the page (:func:`tidy_for_the_page`: cells shown or
    not, tables fitted), also those that an earlier version of the package executed.

    Raises :class:`gla.errors.UsageError` for a missing folder or a chapter that cannot go
    into the book, and :class:`gla.errors.RunError` with the build's last output when the
    build fails.
    """
    gen = Path(generated).resolve()
    if not gen.is_dir() or not any(gen.glob("*.ipynb")):
        raise UsageError(f"generated: no executed notebooks (*.ipynb) in {gen}; run 'gla book run' first")
    records = executed_chapters(gen)
    pages = Path(book_dir) if book_dir is not None else find_source_dir("book")
    cfg = Path(config) if config is not None else pages.parent / "_config.yml"
    if not cfg.is_file():
        packaged = packaged_folder("_book")
        cfg = packaged / "_config.yml" if packaged is not None else cfg
    if not cfg.is_file():
        raise UsageError(f"config: no Jupyter Book _config.yml at {cfg}")
    out = Path(out_dir).resolve()
    target = out / "book"
    real = needs_run_pages(records)
    if real and target.resolve() in (find_source_dir("book").resolve(), pages.resolve()):
        raise UsageError(f"out: a book for a real backbone is assembled in its own folder, not in its pages' {pages}")
    if target.resolve() != pages.resolve():
        keep = target / "generated" if (target / "generated").resolve() == gen else None
        for item in pages.iterdir():
            if item.name.startswith("generated") or item.name == "_build":
                continue
            dest = target / item.name
            if item.is_dir():
                shutil.copytree(item, dest, dirs_exist_ok=True)
            else:
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(item, dest)
        if keep is None:
            shutil.copytree(gen, target / "generated", dirs_exist_ok=True)
    leave_out = []
    if real:
        runs = chapter_runs(records, gen / "results", book_chapters(pages, gen))  # declared in each notebook
        for page, text in real_pages(runs, gen / "results").items():
            if text is None:
                leave_out.append(page.removesuffix(".md"))
            else:
                (target / page).write_text(text)
    if target.resolve() == pages.resolve():  # the pages themselves: never rewritten
        absent = [f for f in toc_files(yaml.safe_load((pages / "_toc.yml").read_text()))
                  if f.startswith("generated/") and f.split("/", 1)[1] not in records]
        if absent:
            raise UsageError(f"out: a book of some chapters only is assembled in its own folder, not in its pages' "
                             f"{pages} ({len(absent)} chapter(s) of its table of contents are not in {gen})")
    else:
        try:
            sources = find_source_dir("notebooks")
        except UsageError:
            sources = None
        restrict_book(target, records, sources, leave_out)
    for nb in sorted((target / "generated").glob("*.ipynb")):
        tidy_for_the_page(nb)  # the page rules of this version also for a tree executed by an earlier one
    if cfg.resolve() != (out / "_config.yml").resolve():
        shutil.copy2(cfg, out / "_config.yml")
    jb = shutil.which("jupyter-book") or str(Path(sys.executable).parent / "jupyter-book")
    cmd = [jb, "build", str(target), "--path-output", str(out)] + (["-W", "--keep-going"] if strict else [])
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=out)
    if r.returncode != 0:
        raise RunError(f"jupyter-book build failed (status {r.returncode}):\n{(r.stdout + r.stderr)[-3000:]}")
    return out / "_build" / "html"
