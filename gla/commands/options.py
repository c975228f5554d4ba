"""What several ``gla`` subcommands share: their common options, the translation of the
library's errors into messages that name an option, and the run context of ``gla run`` and
``gla finetune``.

The values of options are checked once, by the library that takes them (the protocol
settings, the run configuration, the recipes, the estimators): :func:`option_errors` turns
the library's ``"<parameter>: <what was expected>"`` into ``"--<option>: ..."``.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from .. import notebook
from ..backbones import default_backbone, resolve_backbone
from ..checks import error_message
from ..errors import UsageError
from ..loading import PRECISIONS
from ..protocols.config import PROTOCOLS, TEMPLATE_STYLES, RunConfig


def command_parser(sub, name: str, doc: str, **kw) -> argparse.ArgumentParser:
    r"""A subcommand's parser, its help and description read from its module's docstring:
    the first line (``\`\`gla <name>\`\`: <help>.``) gives the help, the second paragraph
    the description."""
    first, _, rest = doc.strip().partition("\n\n")
    description = " ".join(rest.split("\n\n", 1)[0].split())
    return sub.add_parser(name, help=first.split(": ", 1)[1].removesuffix("."), description=description, **kw)


def option_names(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Destination -> the long option that sets it, for the options of ``parser``
    (argparse keeps them in ``_actions``, its only listing)."""
    return {a.dest: max(a.option_strings, key=len) for a in parser._actions if a.option_strings}


def with_options(parser: argparse.ArgumentParser, handler) -> argparse.ArgumentParser:
    """Make ``handler`` the subcommand's function and record its options, so that
    :func:`option_errors` names them. Call it after the last ``add_argument``."""
    parser.set_defaults(func=handler, options_=option_names(parser))
    return parser


def as_option(message: str, options: dict[str, str]) -> str:
    """``message`` with a leading ``"<parameter>: "`` replaced by the option that sets it."""
    head, sep, rest = message.partition(": ")
    return f"{options[head]}: {rest}" if sep and head in options else message


@contextlib.contextmanager
def option_errors(args: argparse.Namespace) -> Iterator[None]:
    """Within: the library's input errors (``ValueError``, ``TypeError``,
    ``FileNotFoundError``, ``KeyError``) become one :class:`UsageError` (exit status 2)
    whose message names the subcommand's option where the library names its parameter."""
    options = getattr(args, "options_", {})
    try:
        yield
    except UsageError as exc:
        raise UsageError(as_option(str(exc), options)) from exc
    except (ValueError, TypeError, FileNotFoundError, KeyError) as exc:
        raise UsageError(as_option(error_message(exc), options)) from exc


# --------------------------------------------------------------------------- shared options

def default_backbone_text() -> str:
    """How the help of ``--backbone`` names its default (the registered default backbone)."""
    found = default_backbone()
    return (f"the registered default backbone, {found[0]}" if found
            else "none registered: name one")


def add_backbone_options(parser: argparse.ArgumentParser) -> None:
    """``--backbone``, ``--pretrained`` and ``--quick-gelu``."""
    found = default_backbone()
    parser.add_argument("--backbone", help="an open_clip model name or one a plug-in serves (default: "
                        f"{default_backbone_text()})")
    parser.add_argument("--pretrained", help="an open_clip tag, a checkpoint file, or a value the backbone's plug-in "
                        "takes (default: nothing for a named open_clip model; the default backbone's weights" +
                        (f", '{found[1]}'" if found and found[1] else "") + ")")
    parser.add_argument("--quick-gelu", action=argparse.BooleanOptionalAction, default=None,
                        help="for a checkpoint file of a model that exists with GELU and with QuickGELU (ViT-B-32, "
                        "ViT-B-16, RN50, ...): --quick-gelu for weights trained with QuickGELU (OpenAI's), "
                        "--no-quick-gelu for GELU (LAION's, DataComp's). Default: detected from a tag or a "
                        "TorchScript file or a '-quickgelu' name; a state dict with a plain name needs it")


def add_procedure_options(parser: argparse.ArgumentParser, templates_help: str = "zero-shot prompt templates"
                          ) -> None:
    """``--protocol`` and ``--templates`` (the values of :class:`gla.protocols.ProtocolSettings`)."""
    parser.add_argument("--protocol", choices=PROTOCOLS, default="paper",
                        help="paper: the official code's temperature search and 1000-step prior solver; exact: "
                        "the exact solutions (everything else is the same)")
    parser.add_argument("--templates", choices=TEMPLATE_STYLES, default="gla", help=templates_help)


def add_recipe_options(parser: argparse.ArgumentParser, epochs: str, lr: str, batch_size: str) -> None:
    """``--epochs``, ``--lr`` and ``--batch-size`` of a fine-tuning (or prompt) recipe."""
    parser.add_argument("--epochs", type=int, help=epochs)
    parser.add_argument("--lr", type=float, help=lr)
    parser.add_argument("--batch-size", type=int, help=batch_size)


def add_machine_options(parser: argparse.ArgumentParser, device: str, smoke: str) -> None:
    """Where and how a run computes: precision, workers, data root, cache, device, smoke
    mode and progress bars."""
    parser.add_argument("--precision", choices=PRECISIONS,
                        help="autocast precision of features, predictions and fine-tuning (default: fp32 on CPU, "
                        "fp16 on CUDA)")
    parser.add_argument("--num-workers", type=int,
                        help="data-loading worker processes (default: from the CPU count; 0 for in-memory data)")
    parser.add_argument("--data-root", help="root of real datasets (default: GLA_DATA_ROOT)")
    parser.add_argument("--cache-dir", help="cache folder (default: GLA_CACHE_DIR or .gla_cache)")
    parser.add_argument("--device", default="cpu", help=device)
    parser.add_argument("--smoke", action="store_true", help=smoke)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def named_backbone(args: argparse.Namespace) -> tuple[str, str | None]:
    """``(--backbone, --pretrained)``, the registered default filled in."""
    with option_errors(args):
        return resolve_backbone(args.backbone, args.pretrained, option="--backbone")


def recipe_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The recipe fields the command line sets (``--epochs``, ``--lr``, ``--batch-size``)."""
    return {k: getattr(args, k, None) for k in ("epochs", "lr", "batch_size") if getattr(args, k, None) is not None}


def check_values(args: argparse.Namespace, recipe: Any) -> None:
    """The values of the shared options (precision, workers, and ``--epochs``, ``--lr``,
    ``--batch-size`` over ``recipe``), checked by the classes that take them before anything
    runs (a provider's ``prepare`` may pretrain)."""
    with option_errors(args):
        RunConfig(precision=args.precision, num_workers=args.num_workers)
        replace(recipe, **recipe_overrides(args))


def context_and_recipe(args: argparse.Namespace, backbone: str, pretrained: str | None
                       ) -> tuple[notebook.Context, Any]:
    """The resolved context and fine-tuning recipe of ``gla run`` / ``gla finetune`` (both
    resolve them the same way, so a checkpoint of one is found by the other). An explicit
    ``--epochs`` wins over ``--smoke``'s one epoch."""
    with option_errors(args):
        ctx = notebook.context(backbone, pretrained, smoke=args.smoke, cache_dir=args.cache_dir,
                      output_dir=getattr(args, "out", None), device=args.device, data_root=args.data_root,
                      protocol=getattr(args, "protocol", "paper"), templates=getattr(args, "templates", "gla"),
                      prior_file=getattr(args, "prior_file", None), source_prior=getattr(args, "source_prior", None),
                      estimator=getattr(args, "estimator", None), precision=args.precision,
                      num_workers=args.num_workers, quick_gelu=args.quick_gelu, progress=not args.quiet)
        return ctx, replace(ctx.recipe, **recipe_overrides(args))
