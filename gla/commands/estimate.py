"""``gla estimate``: estimate the label prior from saved logits.

Estimate the label prior q of a zero-shot model from its logits on labelled images (by
default the paper's estimator, solved exactly) and print or write it as JSON, with its
temperature and convergence diagnostics; 'gla run --prior-file' and 'gla apply
--prior-file' read that JSON. Files are read as 'gla apply' reads them: .pt (a tensor,
or a dict with 'logits' and 'labels'), .npy or .npz.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math

from ..apply import load_tensor
from ..cache import atomic_write_text
from ..errors import UsageError
from ..estimators import get_estimator_class, list_estimators, make_estimator
from .options import command_parser, option_errors, with_options


def add_parser(sub, **kw) -> argparse.ArgumentParser:
    """Add ``gla estimate`` to the subcommands ``sub`` (``kw``: formatter class, parents)."""
    p = command_parser(sub, "estimate", __doc__, **kw)
    p.add_argument("logits", help="logits (N, K): .pt (a tensor, or a dict with 'logits' and 'labels'), .npy or .npz")
    p.add_argument("--labels", help="labels (N,), .pt or .npy (default: the 'labels' entry of the logits file)")
    p.add_argument("--estimator", default="exact",
                   help=f"an estimator id of gla.estimators ({', '.join(list_estimators())})")
    p.add_argument("--temperature", default=1.0, type=number_or_text,
                   help="divide the logits by this positive number before estimating, or 'search' for the "
                   "temperature at which confidence matches accuracy")
    p.add_argument("--no-balance", action="store_true", help="do not reweight to balanced classes (estimators with "
                   "a 'balance' parameter)")
    p.add_argument("--out", help="write the JSON result here (default: stdout)")
    return with_options(p, estimate)


def number_or_text(text: str) -> float | str:
    """``--temperature``: a number where the text is one, else the text (``search``); the
    estimator says which values it takes."""
    try:
        return float(text)
    except ValueError:
        return text


def _nan_as_none(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


def estimate(args: argparse.Namespace) -> int:
    """``gla estimate``: read the logits (and labels), fit the estimator, print or write the JSON."""
    with option_errors(args):
        cls = get_estimator_class(args.estimator)
        params = {"temperature": args.temperature}
        if args.no_balance:
            if "balance" not in inspect.signature(cls).parameters:
                raise UsageError(f"--no-balance: the estimator '{args.estimator}' does not reweight classes "
                                 "(only those with a 'balance' parameter do, such as 'exact')")
            params["balance"] = False
        estimator = make_estimator(args.estimator, **params)
        logits = load_tensor(args.logits, "logits")
        labels = load_tensor(args.labels or args.logits, "labels")
        if args.labels is None and labels.ndim != 1:
            if cls.requires_labels or args.temperature == "search":
                raise UsageError(f"labels: {args.logits} holds no labels (a dict or .npz with 'labels' beside "
                                 "'logits'); pass them with --labels FILE (.pt or .npy of shape (N,))")
            labels = None
        fit = estimator.fit(logits, labels)
    d = fit.diagnostics_
    record = {"estimator": args.estimator, "log_prior": fit.log_prior_.tolist(), "temperature": fit.temperature_,
              "objective": _nan_as_none(d.objective), "grad_norm": _nan_as_none(d.grad_norm), "n_iter": d.n_iter,
              "converged": d.converged}
    text = json.dumps(record, indent=1)
    if args.out:
        atomic_write_text(args.out, text)
    else:
        print(text)
    return 0
