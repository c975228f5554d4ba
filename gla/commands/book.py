"""``gla book run|build``: run the book's notebooks; build the HTML book.

Run the book's notebooks with a parameter file, and build the HTML book from them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..book import build_book, run_notebooks
from .options import command_parser

DESCRIPTIONS = {
    "run": "Execute the book's notebooks with papermill into --out, each with the parameters of the file "
           "(shared ones, then its overrides under 'notebooks:'), and put every chapter's tables in "
           "<out>/results.zip. Before the first kernel starts, every parameter name, backbone and checkpoint "
           "(with its activation), data root, dataset name and layout, and input file is checked.",
    "build": "Build the HTML book into <out>/_build/html: execute the notebooks into <out>/book/generated "
             "(as 'gla book run') unless --generated names executed ones, then assemble the pages and run "
             "Jupyter Book. The introduction and the 'All results' page say what each chapter's executed "
             "notebook ran and wrote; a tree with some chapters only gives a book of those chapters.",
}


def add_parser(sub, **kw) -> argparse.ArgumentParser:
    """Add ``gla book run`` and ``gla book build`` to the subcommands ``sub``."""
    book = command_parser(sub, "book", __doc__, **kw)
    book_sub = book.add_subparsers(dest="book_command", required=True, metavar="command")
    for name, helptext in [("run", "execute every notebook with papermill"),
                           ("build", "execute the notebooks into <out>/book/generated and build the HTML book")]:
        b = book_sub.add_parser(name, help=helptext, description=DESCRIPTIONS[name], **kw)
        b.add_argument("--params", help="parameter YAML file; relative paths in it resolve against its folder "
                       "(default: the shipped notebooks/params/default.yaml)")
        if name == "run":
            b.add_argument("--out", default="book/generated", help="folder for executed notebooks")
        else:
            b.add_argument("--out", required=True, help="folder for the assembled book and its _build/html")
            b.add_argument("--generated", help="build from these already executed notebooks (run nothing)")
            b.add_argument("--pages", help="the book's pages with _toc.yml, _config.yml in the folder above "
                           "(default: the checkout's book/ or the installed copy)")
        b.add_argument("--only", nargs="*", help="notebook stems to run (default: all)")
        b.add_argument("--smoke", action="store_true", help="run every notebook in its smoke setting")
        b.add_argument("--jobs", type=int, default=1,
                       help="kernels side by side (one thread each), following the file's 'lanes'")
        b.add_argument("--keep-going", action="store_true",
                       help="after a failing notebook run the others, and report every failure at the end")
        b.set_defaults(func=book_run if name == "run" else book_build)
    return book


def _run_notebooks(args: argparse.Namespace, out: Path) -> None:
    overrides = {"smoke": True} if args.smoke else None
    run_notebooks(args.params, out, only=args.only or None, overrides=overrides, jobs=args.jobs,
                  keep_going=args.keep_going)


def book_run(args: argparse.Namespace) -> int:
    """``gla book run``."""
    _run_notebooks(args, Path(args.out))
    return 0


def book_build(args: argparse.Namespace) -> int:
    """``gla book build``: run the notebooks unless ``--generated`` names executed ones, then build."""
    out = Path(args.out)
    generated = Path(args.generated) if args.generated else out / "book" / "generated"
    if not args.generated:
        _run_notebooks(args, generated)
    html = build_book(generated, out, book_dir=args.pages)
    print(f"Book built: {html / 'index.html'}")
    return 0
