"""``gla apply``: GLA on logits saved by another evaluation harness.

Combine zero-shot and fine-tuned logits of the same test images with GLA and score the
protocol's models. Tensors come from .pt (a tensor, or a dict with
'logits'/'labels'/'counts') or .npy files. The prior comes from --prior-file or is
estimated on --zs-val/--labels-val (never on the test split), and few-shot temperatures
are searched on the validation split, both as 'gla run' does under --protocol.
"""

from __future__ import annotations

import argparse
import sys

from ..apply import apply_protocol, load_tensor
from ..prior_file import load_prior_file
from ..protocols import save_results
from ..protocols.config import PROTOCOLS
from .options import command_parser, option_errors, with_options

EXPERIMENTS = ("many-shot", "few-shot", "long-tail")


def add_parser(sub, **kw) -> argparse.ArgumentParser:
    """Add ``gla apply`` to the subcommands ``sub`` (``kw``: formatter class, parents)."""
    p = command_parser(sub, "apply", __doc__, **kw)
    p.add_argument("which", metavar="experiment", choices=EXPERIMENTS, help="many-shot, few-shot or long-tail")
    p.add_argument("--zs", required=True, help="zero-shot test logits (N, K)")
    p.add_argument("--ft", required=True, help="fine-tuned test logits (N, K)")
    p.add_argument("--labels", required=True, help="test labels (N,)")
    p.add_argument("--zs-val", help="zero-shot validation logits: the prior's estimation set (few-shot: T_zs)")
    p.add_argument("--ft-val", help="few-shot: fine-tuned validation logits, where T_ft is searched")
    p.add_argument("--labels-val", help="validation labels")
    p.add_argument("--prior-file", help="prior q: torch file with 'q' (official q.pt), a tensor, .npy, or the "
                   "JSON of 'gla estimate'; normalised on load")
    p.add_argument("--train-counts", help="training images per class (K,): long-tail groups and log p_s "
                   "(many-shot: adds - log p_s to GLA)")
    p.add_argument("--t-zs", type=float, help="few-shot: zero-shot temperature (default: searched on --zs-val)")
    p.add_argument("--t-ft", type=float, help="few-shot: fine-tuned temperature (default: searched on --ft-val)")
    p.add_argument("--protocol", choices=PROTOCOLS, default="paper",
                   help="paper: the official code's temperature search and 1000-step prior solver; exact: "
                   "the exact solutions (as 'gla run --protocol')")
    p.add_argument("--out", default="results", help="output folder")
    p.add_argument("--name", help="file stem (default: apply_many_shot, apply_few_shot or apply_long_tail)")
    return with_options(p, apply)


def apply(args: argparse.Namespace) -> int:
    """``gla apply``: read the tensors, score the protocol's models, write the tidy table."""
    files = {"zs": args.zs, "ft": args.ft, "labels": args.labels, "zs_val": args.zs_val, "ft_val": args.ft_val,
             "labels_val": args.labels_val, "train_counts": args.train_counts}
    what = {"labels": "labels", "labels_val": "labels", "train_counts": "counts"}
    with option_errors(args):
        arrays = {k: (load_tensor(p, what.get(k, "logits")) if p else None) for k, p in files.items()}
        prior = load_prior_file(args.prior_file) if args.prior_file else None
        df = apply_protocol(args.which, arrays["zs"], arrays["ft"], arrays["labels"], protocol=args.protocol,
                            prior=prior, zs_val=arrays["zs_val"], ft_val=arrays["ft_val"],
                            labels_val=arrays["labels_val"], train_counts=arrays["train_counts"], t_zs=args.t_zs,
                            t_ft=args.t_ft, sources={k: str(v) for k, v in files.items() if v})
    csv, js = save_results(df, args.out, args.name or f"apply_{args.which.replace('-', '_')}")
    for name, fit in df.attrs.get("temperatures", {}).items():
        if not fit.converged:
            print(f"note: the {args.protocol} protocol's temperature search for {name} did not converge "
                  f"({fit.reason or 'no trial met its threshold'}); "
                  f"{name} = {fit.temperature:g} (the rows say {name}_converged = False)", file=sys.stderr)
    print(df[["method", "top1"]].to_string(index=False))
    print(f"{len(df)} rows -> {csv} and {js}")
    return 0
