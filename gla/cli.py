"""The ``gla`` command line.

``gla datasets``      list the dataset registry (and the file layout each real dataset expects)
``gla run ...``       run the many-shot, few-shot or long-tail protocol, write CSV/JSON
``gla finetune ...``  fine-tune end to end into the cache the protocols read; runs under
                      ``torchrun`` (DDP) as is: ``torchrun --nproc_per_node 8 -m gla finetune ...``
``gla apply ...``     GLA on zero-shot and fine-tuned logits saved by another harness
``gla estimate ...``  estimate a prior from saved logits and labels, by any registered estimator
``gla book run|build``  execute the book's notebooks with papermill; build the HTML book

Plug-ins add their own subcommands (the miniature world's ``gla world ...``). Each
subcommand is one module of :mod:`gla.commands` (its options and its handler).

Errors a user can act on (an unknown name, a missing file, a wrong data layout, a value out
of range) print one message on stderr, naming the option, and exit with status 2 before
anything is computed; a run that fails part-way exits with status 1 and keeps what it
finished. ``gla --debug ...`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .checks import error_message
from .commands import COMMANDS
from .errors import GLAError
from .plugins import plugin_commands
from .version import __version__

EXPECTED_ERRORS = (GLAError, ValueError, FileNotFoundError, RuntimeError, OSError)


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults shown in every ``-h``: appended to an option's help unless the help text
    already says its default (options whose default is None say it in words)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default is None or action.default is argparse.SUPPRESS:
            return text
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    """The ``gla`` argument parser: the core subcommands (:data:`gla.commands.COMMANDS`) and
    the plug-ins' (every subcommand shows its defaults in ``-h``)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback of an error")
    ap = argparse.ArgumentParser(prog="gla", formatter_class=_Formatter,
                                 description="Generalized Logit Adjustment companion (Zhu et al., NeurIPS 2023)")
    ap.add_argument("--version", action="version", version=f"gla {__version__}")
    ap.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = ap.add_subparsers(dest="command", required=True, metavar="command")
    for add_parser in (*COMMANDS, *plugin_commands()):
        add_parser(sub, formatter_class=_Formatter, parents=[common])
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``gla``; returns the exit status (0 done, 1 a run failed, 2 bad input)."""
    if list(sys.argv[1:] if argv is None else argv) == ["--version"]:  # without building the parser
        print(f"gla {__version__}")
        return 0
    args = build_parser().parse_args(argv)
    args.argv_ = None if argv is None else ["gla", *argv]
    try:
        return int(args.func(args) or 0)
    except EXPECTED_ERRORS as exc:
        if getattr(args, "debug", False):
            raise
        code = getattr(exc, "exit_code", 1)
        where = " ".join(x for x in (args.command, getattr(args, "book_command", None),
                                     getattr(args, "world_command", None)) if x)
        print(f"gla {where}: error: {error_message(exc)}", file=sys.stderr)
        if code == 1:
            print("(run again with 'gla --debug ...' for the traceback)", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
