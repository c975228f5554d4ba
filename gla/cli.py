"""The ``gla`` command line.

``gla book run``      execute the book's notebooks with papermill
``gla world ...``     build the miniature world and pretrain its CLIP (see ``gla world -h``)
``gla estimate ...``  estimate a prior from saved logits and labels
``gla run ...``       run the many-shot, few-shot or long-tail protocol, write CSV/JSON
``gla finetune ...``  fine-tune end to end into the cache the protocols read; runs under
                      ``torchrun`` (DDP) as is: ``torchrun --nproc_per_node 8 -m gla finetune ...``
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence


def _book_run(args: argparse.Namespace) -> int:
    from .book import run_notebooks

    overrides = {"smoke": True} if args.smoke else None
    run_notebooks(args.params, args.out, only=args.only or None, overrides=overrides, jobs=args.jobs)
    return 0


def _estimate(args: argparse.Namespace) -> int:
    import torch

    from .prior import PriorEstimator

    data = torch.load(args.logits, map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or "logits" not in data or "labels" not in data:
        print(f"gla estimate: expected {args.logits} to hold a dict with 'logits' (N, K) and 'labels' (N,)",
              file=sys.stderr)
        return 2
    temperature = "search" if args.temperature == "search" else float(args.temperature)
    fit = PriorEstimator(temperature=temperature, balance=not args.no_balance).fit(data["logits"], data["labels"])
    record = {"log_prior": fit.log_prior_.tolist(), "temperature": fit.temperature_,
              "objective": fit.objective_, "grad_norm": fit.grad_norm_, "n_iter": fit.n_iter_,
              "converged": fit.converged_}
    text = json.dumps(record, indent=1)
    if args.out:
        from .cache import atomic_write_text

        atomic_write_text(args.out, text)
    else:
        print(text)
    return 0


def _context_and_recipe(args: argparse.Namespace):
    """The resolved context and fine-tuning recipe of ``gla run`` / ``gla finetune``
    (both resolve them the same way, so a checkpoint of one is found by the other)."""
    from dataclasses import replace

    from .notebook import context

    ctx = context(args.backbone, args.pretrained, smoke=args.smoke, cache_dir=args.cache_dir,
                  output_dir=getattr(args, "out", "results"), device=args.device, data_root=args.data_root,
                  progress=not args.quiet)
    recipe = ctx.recipe_with(epochs=args.epochs)
    if args.lr is not None:
        recipe = replace(recipe, lr=args.lr)
    if getattr(args, "batch_size", None) is not None:
        recipe = replace(recipe, batch_size=args.batch_size)
    return ctx, recipe


def _finetune(args: argparse.Namespace) -> int:
    import os

    from . import experiments as ex

    ctx, recipe = _context_and_recipe(args)
    path = ex.finetune_to_cache(ctx.backbone, ctx.pretrained, args.dataset, loss=args.loss, recipe=recipe,
                                progress=not args.quiet, **ctx.kwargs())
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"fine-tuned checkpoint: {path}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from . import experiments as ex

    ctx, recipe = _context_and_recipe(args)
    common = {**ctx.kwargs(), "progress": not args.quiet}
    if args.protocol == "many-shot":
        frames = [ex.run_many_shot(ctx.backbone, ctx.pretrained, d, shifted=args.shifted or (), recipe=recipe,
                                   **common) for d in args.datasets]
    elif args.protocol == "few-shot":
        frames = [ex.run_few_shot(ctx.backbone, ctx.pretrained, args.datasets, shots=args.shots, seeds=args.seeds,
                                  **common)]
    else:
        frames = [ex.run_long_tail(ctx.backbone, ctx.pretrained, d, recipe=recipe, **common) for d in args.datasets]
    import pandas as pd

    df = pd.concat(frames, ignore_index=True)
    csv, js = ex.save_results(df, ctx.output_dir, args.protocol.replace("-", "_"))
    print(f"{len(df)} rows -> {csv} and {js}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="gla", description="Generalized Logit Adjustment companion")
    sub = ap.add_subparsers(dest="command", required=True)

    book = sub.add_parser("book", help="run the book's notebooks")
    book_sub = book.add_subparsers(dest="book_command", required=True)
    run = book_sub.add_parser("run", help="execute every notebook with papermill")
    run.add_argument("--params", default="notebooks/params/default.yaml", help="parameter YAML file")
    run.add_argument("--out", default="book/generated", help="folder for executed notebooks")
    run.add_argument("--only", nargs="*", help="notebook stems to run (default: all)")
    run.add_argument("--smoke", action="store_true", help="run every notebook in its smoke setting")
    run.add_argument("--jobs", type=int, default=1,
                     help="kernels side by side (one thread each), following the file's 'lanes'")
    run.set_defaults(func=_book_run)

    est = sub.add_parser("estimate", help="estimate the label prior from saved logits")
    est.add_argument("logits", help="torch file with a dict {'logits': (N, K), 'labels': (N,)}")
    est.add_argument("--temperature", default="1.0", help="a number or 'search'")
    est.add_argument("--no-balance", action="store_true", help="do not reweight to balanced classes")
    est.add_argument("--out", help="write the JSON result here (default: stdout)")
    est.set_defaults(func=_estimate)

    run = sub.add_parser("run", help="run one of the paper's protocols and write tidy CSV/JSON results")
    run.add_argument("protocol", choices=["many-shot", "few-shot", "long-tail"])
    run.add_argument("--backbone", default="gla-world-tiny", help="open_clip model name or gla-world-tiny")
    run.add_argument("--pretrained", default="world", help="open_clip tag, checkpoint path, or 'world'")
    run.add_argument("--datasets", nargs="+", required=True, help="names from gla.datasets.list_datasets()")
    run.add_argument("--shifted", nargs="*", help="many-shot: shifted test sets of the (first) dataset")
    run.add_argument("--shots", nargs="+", type=int, default=[1, 2, 4, 8, 16])
    run.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    run.add_argument("--epochs", type=int, help="fine-tuning epochs (default: the backbone's recipe)")
    run.add_argument("--lr", type=float, help="fine-tuning learning rate (default: the backbone's recipe)")
    run.add_argument("--data-root", help="root of real datasets (default: GLA_DATA_ROOT)")
    run.add_argument("--cache-dir", help="cache folder (default: GLA_CACHE_DIR or .gla_cache)")
    run.add_argument("--out", default="results", help="output folder for the CSV/JSON tables")
    run.add_argument("--device", default="cpu")
    run.add_argument("--smoke", action="store_true", help="scaled-down quick run")
    run.add_argument("--quiet", action="store_true")
    run.set_defaults(func=_run)

    ft = sub.add_parser("finetune", help="fine-tune end to end into the protocols' cache (torchrun-ready)",
                        description="Fine-tune a backbone on a dataset's train split with the recipe that "
                        "'gla run' uses and store the checkpoint where 'gla run' finds it. Launch with torchrun "
                        "for several GPUs: torchrun --nproc_per_node 8 -m gla finetune imagenet --backbone "
                        "ViT-B-16 --pretrained openai --device cuda (--batch-size is the global batch).")
    ft.add_argument("dataset", help="a name from gla.datasets.list_datasets()")
    ft.add_argument("--loss", choices=["ce", "la"], default="ce", help="cross-entropy or the logit-adjusted loss")
    ft.add_argument("--backbone", default="gla-world-tiny")
    ft.add_argument("--pretrained", default="world")
    ft.add_argument("--epochs", type=int)
    ft.add_argument("--lr", type=float)
    ft.add_argument("--batch-size", type=int, help="global batch size (default: the backbone's recipe)")
    ft.add_argument("--data-root")
    ft.add_argument("--cache-dir")
    ft.add_argument("--device", default="cpu", help="cpu or cuda (under torchrun: cuda:<LOCAL_RANK> each)")
    ft.add_argument("--smoke", action="store_true")
    ft.add_argument("--quiet", action="store_true")
    ft.set_defaults(func=_finetune)

    try:
        from .world.cli import add_world_parser
    except ImportError:  # pragma: no cover - world not installed
        pass
    else:
        add_world_parser(sub)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
