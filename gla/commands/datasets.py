"""``gla datasets``: list the dataset registry and the layouts real datasets expect.

Every dataset name the protocols take: its kind (real, or a plug-in's such as world),
splits, the role it plays (which of the paper's datasets a synthetic task stands for)
and, for real datasets, the files expected under the data root.
"""

from __future__ import annotations

import argparse
import json

from ..data import dataset_entry, list_datasets
from .options import command_parser


def add_parser(sub, **kw) -> argparse.ArgumentParser:
    """Add ``gla datasets`` to the subcommands ``sub`` (``kw``: formatter class, parents)."""
    p = command_parser(sub, "datasets", __doc__, **kw)
    kinds = sorted({dataset_entry(n).kind for n in list_datasets()})
    p.add_argument("--kind", choices=kinds, help=f"list only one kind ({', '.join(kinds)}; default: all)")
    p.add_argument("--json", action="store_true", help="print JSON records instead of a table")
    p.set_defaults(func=datasets)
    return p


def datasets(args: argparse.Namespace) -> int:
    """``gla datasets``: print the registry as a table (or JSON records)."""
    rows = []
    for n in list_datasets(args.kind):
        e = dataset_entry(n)
        rows.append({"name": n, "kind": e.kind, "splits": list(e.splits), "role": e.role,
                     "description": e.description, "layout": e.layout, "shift_of": e.shift_of})
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    width = max(len(r["name"]) for r in rows) + 2
    kinds = max(len(r["kind"]) for r in rows) + 2
    splits = max(len(",".join(r["splits"])) for r in rows) + 2
    for r in rows:
        what = r["role"] + (f": {r['description']}" if r["description"] else "")
        print(f"{r['name']:<{width}}{r['kind']:<{kinds}}{','.join(r['splits']):<{splits}}{what}")
        if r["layout"]:
            print("\n".join(" " * width + ln for ln in r["layout"].splitlines()))
    if any(r["kind"] == "real" for r in rows):
        print("\nReal datasets are read from --data-root (or GLA_DATA_ROOT) in the layouts shown.")
    return 0
