"""The ``gla`` command line.

``gla datasets``      list the dataset registry (and the file layout each real dataset expects)
``gla run ...``       run the many-shot, few-shot or long-tail protocol, write CSV/JSON
``gla finetune ...``  fine-tune end to end into the cache the protocols read; runs under
                      ``torchrun`` (DDP) as is: ``torchrun --nproc_per_node 8 -m gla finetune ...``
``gla apply ...``     GLA on zero-shot and fine-tuned logits saved by another harness
``gla estimate ...``  estimate a prior from saved logits and labels
``gla book run|build``  execute the book's notebooks with papermill; build the HTML book
``gla world ...``     build the miniature world and pretrain its CLIP (see ``gla world -h``)

Errors a user can act on (an unknown name, a missing file, a wrong data layout) print one
message on stderr and exit with status 2 before anything is computed; a run that fails
part-way exits with status 1 and keeps what it finished. ``gla --debug ...`` shows the
traceback instead.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from .backbones import is_checkpoint_path
from .checks import check_backbone, check_datasets
from .checks import error_message as _message
from .checks import usage_errors as _usage
from .errors import GLAError, RunError, UsageError

EXPECTED_ERRORS = (GLAError, ValueError, FileNotFoundError, RuntimeError, OSError)


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults shown in every ``-h``: appended to an option's help unless the help text
    already says its default (options whose default is None say it in words)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default is None or action.default is argparse.SUPPRESS:
            return text
        return super()._get_help_string(action)


# --------------------------------------------------------------------------- checks before compute
# (check_backbone and check_datasets live in gla.checks, shared with the book runner)

def shift_parent(name: str) -> str | None:
    """The dataset whose classes a shifted test set shares (None: not a shifted set)."""
    from .data import dataset_entry

    return dataset_entry(name).shift_of


def check_shifted_parents(target: str, sets: Sequence[str]) -> None:
    """Raise :class:`UsageError` unless every set is a shifted test set of ``target``."""
    for s in sets:
        parent = shift_parent(s)
        if parent is None:
            raise UsageError(f"--shifted: '{s}' is not a shifted test set (those have the classes of another "
                             "dataset, e.g. world-main-sketch for world-main, imagenet_v2 for imagenet)")
        if parent != target:
            raise UsageError(f"--shifted: '{s}' is a shifted test set of {parent}, not of {target}; write "
                             f"'{parent}={s}' with {parent} among --datasets")


def parse_shifted(values: Sequence[str] | None, datasets: Sequence[str]) -> dict[str, list[str]]:
    """``--shifted`` values as ``{dataset: [shifted sets]}``.

    ``name=set1,set2`` gives a dataset's shifted sets; a bare name belongs to the first
    dataset of ``--datasets``.
    """
    out: dict[str, list[str]] = {}
    for v in values or ():
        if "=" in v:
            target, sets = v.split("=", 1)
            if target not in datasets:
                raise UsageError(f"--shifted {v}: '{target}' is not one of --datasets ({', '.join(datasets)})")
            names = [s for s in sets.split(",") if s]
            if not names:
                raise UsageError(f"--shifted {v}: expected '{target}=set1,set2'")
        else:
            target, names = datasets[0], [s for s in v.split(",") if s]
        out.setdefault(target, []).extend(n for n in names if n not in out.get(target, []))
    return out


# --------------------------------------------------------------------------- gla run

@dataclass
class RunOptions:
    """Settings of ``gla run`` beyond the backbone and datasets, passed as one object to the
    protocol functions and recorded beside the results (``<stem>.settings.json``).

    ``protocol``: "paper" (the official code's temperature search and prior solver) or
    "exact" (exact solutions); ``templates``: GLA's zero-shot templates or CoOp's;
    ``prior_file``: a prior to use instead of estimating one; ``source_prior``: ``log p_s``
    uniform or from training counts (None: the protocol's own); ``precision``: autocast
    precision (None: fp32 on CPU, fp16 on CUDA); ``num_workers``: data-loading workers
    (None: from the CPU count). See :class:`gla.protocols.ProtocolSettings` and
    :class:`gla.protocols.RunConfig`.
    """

    protocol: str = "paper"
    templates: str = "gla"
    prior_file: str | None = None
    source_prior: str | None = None
    precision: str | None = None
    num_workers: int | None = None
    shots: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16])
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    epochs: int | None = None
    lr: float | None = None
    shifted: dict[str, list[str]] = field(default_factory=dict)
    finetuned: str | None = None


def _run_many_shot(ctx, recipe, dataset: str, opts: RunOptions):
    """One dataset of the many-shot protocol."""
    from .protocols import run_many_shot

    return run_many_shot(ctx.backbone, ctx.pretrained, dataset, shifted=opts.shifted.get(dataset, ()),
                         recipe=recipe, finetuned=opts.finetuned, **ctx.run()).table


def _run_few_shot(ctx, recipe, dataset: str, opts: RunOptions):
    """One dataset of the few-shot protocol (prompt learning: ``opts.epochs``/``opts.lr``)."""
    from .protocols import run_few_shot

    tuning = {k: v for k, v in (("epochs", opts.epochs), ("lr", opts.lr)) if v is not None}
    result = run_few_shot(ctx.backbone, ctx.pretrained, [dataset], shots=opts.shots, seeds=opts.seeds,
                          prompts=replace(ctx.prompts, **tuning),
                          shifted={dataset: opts.shifted[dataset]} if opts.shifted.get(dataset) else None, **ctx.run())
    return result.table


def _run_long_tail(ctx, recipe, dataset: str, opts: RunOptions):
    """One dataset of the long-tail protocol."""
    from .protocols import run_long_tail

    return run_long_tail(ctx.backbone, ctx.pretrained, dataset, recipe=recipe, **ctx.run()).table


RUNNERS = {"many-shot": _run_many_shot, "few-shot": _run_few_shot, "long-tail": _run_long_tail}


def results_stem(protocol: str, backbone: str, pretrained: str | None) -> str:
    """File stem of a run's results: protocol, backbone and pretrained tag (a checkpoint
    path becomes its file name and a short hash of the full path), so two backbones
    written to one folder never overwrite each other."""

    p = "" if pretrained is None else str(pretrained)
    if is_checkpoint_path(p):
        digest = hashlib.sha256(str(Path(p).expanduser().resolve()).encode()).hexdigest()[:8]
        tag = f"{Path(p).stem}-{digest}"
    else:
        tag = p or "random"
    slug = lambda s: re.sub(r"[^A-Za-z0-9._-]+", "-", s).strip("-")
    return f"{protocol.replace('-', '_')}_{slug(backbone)}_{slug(tag)}"


def _validate_run(args: argparse.Namespace) -> RunOptions:
    """Everything a run needs, checked before any compute; returns its options."""
    proto = args.experiment
    given = {k for k in ("shots", "seeds") if getattr(args, k) is not None}
    if proto != "few-shot" and given:
        raise UsageError(f"--{'/--'.join(sorted(given))}: only the few-shot protocol takes shots and seeds")
    if args.finetuned is not None:
        if proto != "many-shot" or len(args.datasets) != 1:
            raise UsageError("--finetuned: a fine-tuned model file is evaluated by the many-shot protocol on the one "
                             "dataset it was fine-tuned on (one name in --datasets)")
        if not Path(args.finetuned).expanduser().is_file():
            raise UsageError(f"--finetuned: no file at {args.finetuned}")
    if args.batch_size is not None and (proto == "few-shot" or args.batch_size < 1):
        raise UsageError("--batch-size: a positive global batch of the fine-tuning recipe (many-shot and long-tail)")
    if proto == "long-tail" and args.shifted:
        raise UsageError("--shifted: the long-tail protocol has no shifted test sets (many-shot and few-shot have)")
    if args.epochs is not None and args.epochs < 1:
        raise UsageError(f"--epochs: expected a positive number, got {args.epochs}")
    if args.lr is not None and not args.lr > 0:
        raise UsageError(f"--lr: expected a positive learning rate, got {args.lr}")
    if args.num_workers is not None and args.num_workers < 0:
        raise UsageError(f"--num-workers: expected 0 or more, got {args.num_workers}")
    if proto == "few-shot" and any(k < 1 for k in args.shots or ()):
        raise UsageError(f"--shots: expected positive numbers of images per class, got {args.shots}")
    repeated = sorted({d for d in args.datasets if args.datasets.count(d) > 1})
    if repeated:
        raise UsageError(f"--datasets: {', '.join(repeated)} named more than once")
    shifted = parse_shifted(args.shifted, args.datasets)
    check_backbone(args.backbone, args.pretrained, args.quick_gelu)
    check_datasets(args.datasets, ("train", "val", "test"), args.data_root, "--datasets")
    for target, sets in shifted.items():
        check_datasets(sets, ("test",), args.data_root, f"--shifted (for {target})")
        check_shifted_parents(target, sets)
    if args.prior_file:
        from .apply import load_prior_file

        with _usage():
            load_prior_file(args.prior_file)
    opts = RunOptions(protocol=args.protocol, templates=args.templates, prior_file=args.prior_file,
                      source_prior=args.source_prior, precision=args.precision, num_workers=args.num_workers,
                      epochs=args.epochs, lr=args.lr, shifted=shifted, finetuned=args.finetuned)
    if proto == "few-shot":
        opts.shots = list(args.shots or opts.shots)
        opts.seeds = list(args.seeds or opts.seeds)
    else:
        opts.shots, opts.seeds = [], []
    return opts


def _run(args: argparse.Namespace) -> int:
    import pandas as pd

    from . import __version__
    from .cache import atomic_write_text
    from .protocols import save_results

    opts = _validate_run(args)
    ctx, recipe = _context_and_recipe(args)
    stem = results_stem(args.experiment, args.backbone, args.pretrained)
    out = Path(ctx.output_dir)
    settings = {"gla_version": __version__, "command": ["gla", *sys.argv[1:]] if args._argv is None else args._argv,
                "protocol": args.experiment, "backbone": args.backbone, "pretrained": str(args.pretrained),
                "resolved_pretrained": str(ctx.pretrained), "quick_gelu": args.quick_gelu,
                "datasets": args.datasets, "options": asdict(opts),
                "recipe": asdict(recipe) if args.experiment != "few-shot" else None, "smoke": args.smoke,
                "files": {}, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    settings_path = out / f"{stem}.settings.json"
    frames = []
    for dataset in args.datasets:
        try:
            df = RUNNERS[args.experiment](ctx, recipe, dataset, opts)
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            settings["failed"] = {"dataset": dataset, "error": _message(exc)}
            atomic_write_text(settings_path, json.dumps(settings, indent=1, default=str))
            kept = ", ".join(settings["files"]) or "none"
            raise RunError(f"{args.experiment} on {dataset} failed: {type(exc).__name__}: {_message(exc)}\n"
                           f"finished datasets kept in {out}: {kept}") from exc
        csv, _ = save_results(df, out, f"{stem}_{dataset}")
        settings["files"][dataset] = csv.name
        atomic_write_text(settings_path, json.dumps(settings, indent=1, default=str))
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    csv, js = save_results(df, out, stem)
    settings["combined"] = csv.name
    settings["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    atomic_write_text(settings_path, json.dumps(settings, indent=1, default=str))
    print(f"{len(df)} rows -> {csv} and {js}")
    return 0


def _context_and_recipe(args: argparse.Namespace):
    """The resolved context and fine-tuning recipe of ``gla run`` / ``gla finetune``
    (both resolve them the same way, so a checkpoint of one is found by the other).
    An explicit ``--epochs`` wins over ``--smoke``'s one epoch."""
    from dataclasses import replace

    from .notebook import context

    ctx = context(args.backbone, args.pretrained, smoke=args.smoke, cache_dir=args.cache_dir,
                  output_dir=getattr(args, "out", None), device=args.device, data_root=args.data_root,
                  protocol=getattr(args, "protocol", "paper"), templates=getattr(args, "templates", "gla"),
                  prior_file=getattr(args, "prior_file", None), source_prior=getattr(args, "source_prior", None),
                  precision=getattr(args, "precision", None), num_workers=getattr(args, "num_workers", None),
                  quick_gelu=args.quick_gelu, progress=not args.quiet)
    recipe = ctx.recipe
    if args.epochs is not None:
        recipe = replace(recipe, epochs=int(args.epochs))
    if args.lr is not None:
        recipe = replace(recipe, lr=args.lr)
    if getattr(args, "batch_size", None) is not None:
        recipe = replace(recipe, batch_size=args.batch_size)
    return ctx, recipe


# --------------------------------------------------------------------------- other commands

def _finetune(args: argparse.Namespace) -> int:
    from .protocols import finetune_to_cache

    check_backbone(args.backbone, args.pretrained, args.quick_gelu)
    check_datasets([args.dataset], ("train",), args.data_root, "dataset")
    for name, v in (("--epochs", args.epochs), ("--batch-size", args.batch_size)):
        if v is not None and v < 1:
            raise UsageError(f"{name}: expected a positive number, got {v}")
    if args.lr is not None and not args.lr > 0:
        raise UsageError(f"--lr: expected a positive learning rate, got {args.lr}")
    ctx, recipe = _context_and_recipe(args)
    path = finetune_to_cache(ctx.backbone, ctx.pretrained, args.dataset, loss=args.loss, recipe=recipe,
                             seed=args.seed, **ctx.run())
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"fine-tuned checkpoint: {path}")
    return 0


def _estimate(args: argparse.Namespace) -> int:
    from .apply import load_tensor
    from .prior import PriorEstimator

    with _usage():
        logits = load_tensor(args.logits, "logits")
        labels = load_tensor(args.labels or args.logits, "labels")
        if args.labels is None and labels.ndim != 1:
            raise UsageError(f"labels: {args.logits} holds no labels (a dict or .npz with 'labels' beside 'logits'); "
                             "pass them with --labels FILE (.pt or .npy of shape (N,))")
        fit = PriorEstimator(temperature=args.temperature, balance=not args.no_balance).fit(logits, labels)
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


def _datasets(args: argparse.Namespace) -> int:
    from .data import dataset_entry, list_datasets

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


def _apply(args: argparse.Namespace) -> int:
    from .apply import apply_protocol, load_prior_file, load_tensor
    from .protocols import save_results

    files = {"zs": args.zs, "ft": args.ft, "labels": args.labels, "zs_val": args.zs_val, "ft_val": args.ft_val,
             "labels_val": args.labels_val, "train_counts": args.train_counts}
    what = {"labels": "labels", "labels_val": "labels", "train_counts": "counts"}
    with _usage():
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


def _book_run(args: argparse.Namespace) -> int:
    from .book import run_notebooks

    overrides = {"smoke": True} if args.smoke else None
    run_notebooks(args.params, args.out, only=args.only or None, overrides=overrides, jobs=args.jobs,
                  keep_going=args.keep_going)
    return 0


def _book_build(args: argparse.Namespace) -> int:
    from .book import build_book, run_notebooks

    out = Path(args.out)
    generated = Path(args.generated) if args.generated else out / "book" / "generated"
    if not args.generated:
        overrides = {"smoke": True} if args.smoke else None
        run_notebooks(args.params, generated, only=args.only or None, overrides=overrides, jobs=args.jobs,
                      keep_going=args.keep_going)
    html = build_book(generated, out, book_dir=args.pages)
    print(f"Book built: {html / 'index.html'}")
    return 0


# --------------------------------------------------------------------------- the parser

def _version() -> str:
    from . import __version__

    return __version__


def _temperature(text: str) -> float | str:
    """``--temperature``: a positive number or ``search``."""
    if text == "search":
        return text
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number or 'search', got {text!r}")
    return value


def _add_activation(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick-gelu", action=argparse.BooleanOptionalAction, default=None,
                        help="for a checkpoint file of a model that exists with GELU and with QuickGELU (ViT-B-32, "
                        "ViT-B-16, RN50, ...): --quick-gelu for weights trained with QuickGELU (OpenAI's), "
                        "--no-quick-gelu for GELU (LAION's, DataComp's). Default: detected from a tag or a "
                        "TorchScript file or a '-quickgelu' name; a state dict with a plain name needs it")


def build_parser() -> argparse.ArgumentParser:
    """The ``gla`` argument parser (every subcommand shows its defaults in ``-h``)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback of an error")
    ap = argparse.ArgumentParser(prog="gla", formatter_class=_Formatter,
                                 description="Generalized Logit Adjustment companion (Zhu et al., NeurIPS 2023)")
    ap.add_argument("--version", action="version", version=f"gla {_version()}")
    ap.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = ap.add_subparsers(dest="command", required=True, metavar="command")

    def add(sp, name, **kw):
        return sp.add_parser(name, formatter_class=_Formatter, parents=[common], **kw)

    ds = add(sub, "datasets", help="list the dataset registry and the layouts real datasets expect",
             description="Every dataset name the protocols take: its kind (world or real), splits, the role it "
             "plays (which of the paper's datasets a world task stands for) and, for real datasets, the files "
             "expected under the data root.")
    ds.add_argument("--kind", choices=["world", "real"], help="list only one kind (default: both)")
    ds.add_argument("--json", action="store_true", help="print JSON records instead of a table")
    ds.set_defaults(func=_datasets)

    run = add(sub, "run", help="run one of the paper's protocols and write tidy CSV/JSON results",
              description="Run a protocol on each dataset in turn. Everything is checked before any compute "
              "(names, data layouts, checkpoint). Each dataset's rows are written as soon as it is done "
              "(<out>/<protocol>_<backbone>_<pretrained>_<dataset>.csv/.json), then the combined table "
              "(<out>/<protocol>_<backbone>_<pretrained>.csv/.json) and <stem>.settings.json with every setting.")
    run.add_argument("experiment", metavar="experiment", choices=["many-shot", "few-shot", "long-tail"],
                     help="many-shot, few-shot or long-tail")
    run.add_argument("--backbone", default="gla-world-tiny", help="open_clip model name or gla-world-tiny")
    run.add_argument("--pretrained", default="world", help="open_clip tag, checkpoint path, or 'world'")
    _add_activation(run)
    run.add_argument("--datasets", nargs="+", required=True, help="names from 'gla datasets'")
    run.add_argument("--shifted", nargs="*", metavar="SET|DATASET=SET,SET",
                     help="many-shot and few-shot: shifted test sets; 'dataset=set1,set2' per dataset, bare names "
                     "belong to the first of --datasets (few-shot: evaluated with the most shots)")
    run.add_argument("--shots", nargs="+", type=int,
                     help="few-shot only: images per class (default: 1 2 4 8 16)")
    run.add_argument("--seeds", nargs="+", type=int, help="few-shot only: sampling seeds (default: 1 2 3)")
    run.add_argument("--epochs", type=int, help="many-shot/long-tail: fine-tuning epochs (default: the backbone's "
                     "recipe, 1 with --smoke); few-shot: prompt-learning epochs (default: 40)")
    run.add_argument("--lr", type=float, help="many-shot/long-tail: fine-tuning learning rate (default: the "
                     "backbone's recipe); few-shot: prompt-learning rate (default: 2e-3)")
    run.add_argument("--batch-size", type=int, help="many-shot/long-tail: global fine-tuning batch, as in 'gla "
                     "finetune' (default: the backbone's recipe); the same options find the same checkpoint")
    run.add_argument("--finetuned", help="many-shot: evaluate this fine-tuned model instead of fine-tuning (this "
                     "project's checkpoint, a state dict, or a WiSE-FT checkpoint)")
    run.add_argument("--protocol", choices=["paper", "exact"], default="paper",
                     help="paper: the official code's temperature search and 1000-step prior solver; exact: "
                     "the exact solutions (everything else is the same)")
    run.add_argument("--templates", choices=["gla", "coop"], default="gla", help="zero-shot prompt templates")
    run.add_argument("--prior-file", help="a prior q to use instead of estimating one (torch file with 'q', "
                     "a tensor, .npy, or the JSON of 'gla estimate')")
    run.add_argument("--source-prior", choices=["uniform", "counts"],
                     help="log p_s of the fine-tuning data: uniform or from training counts (default: the protocol's)")
    run.add_argument("--precision", choices=["fp32", "fp16", "bf16"],
                     help="autocast precision of features, predictions and fine-tuning (default: fp32 on CPU, "
                     "fp16 on CUDA)")
    run.add_argument("--num-workers", type=int,
                     help="data-loading worker processes (default: from the CPU count; 0 for in-memory data)")
    run.add_argument("--data-root", help="root of real datasets (default: GLA_DATA_ROOT)")
    run.add_argument("--cache-dir", help="cache folder (default: GLA_CACHE_DIR or .gla_cache)")
    run.add_argument("--out", default="results", help="output folder for the CSV/JSON tables")
    run.add_argument("--device", default="cpu", help="cpu, cuda or cuda:<n>")
    run.add_argument("--smoke", action="store_true", help="scaled-down quick run (1 fine-tuning epoch, small "
                     "world tasks) unless --epochs says otherwise")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.set_defaults(func=_run)

    ft = add(sub, "finetune", help="fine-tune end to end into the protocols' cache (torchrun-ready)",
             description="Fine-tune a backbone on a dataset's train split with the recipe that "
             "'gla run' uses and store the checkpoint where 'gla run' finds it. Launch with torchrun "
             "for several GPUs: torchrun --nproc_per_node 8 -m gla finetune imagenet --backbone "
             "ViT-B-16 --pretrained openai --device cuda (--batch-size is the global batch).")
    ft.add_argument("dataset", help="a name from 'gla datasets' (its train split is used)")
    ft.add_argument("--loss", choices=["ce", "la"], default="ce", help="cross-entropy or the logit-adjusted loss")
    ft.add_argument("--backbone", default="gla-world-tiny", help="open_clip model name or gla-world-tiny")
    ft.add_argument("--pretrained", default="world", help="open_clip tag, checkpoint path, or 'world'")
    _add_activation(ft)
    ft.add_argument("--epochs", type=int, help="fine-tuning epochs (default: the backbone's recipe, 1 with --smoke)")
    ft.add_argument("--lr", type=float, help="peak learning rate (default: the backbone's recipe)")
    ft.add_argument("--batch-size", type=int, help="global batch size (default: the backbone's recipe)")
    ft.add_argument("--seed", type=int, default=0,
                    help="fine-tuning seed (gla run's many-shot and long-tail protocols use 0)")
    ft.add_argument("--templates", choices=["gla", "coop"], default="gla",
                    help="zero-shot templates of the head the fine-tuning starts from (as gla run's)")
    ft.add_argument("--precision", choices=["fp32", "fp16", "bf16"],
                    help="autocast precision (default: fp32 on CPU, fp16 on CUDA)")
    ft.add_argument("--num-workers", type=int, help="data-loading worker processes (default: from the CPU count)")
    ft.add_argument("--data-root", help="root of real datasets (default: GLA_DATA_ROOT)")
    ft.add_argument("--cache-dir", help="cache folder (default: GLA_CACHE_DIR or .gla_cache)")
    ft.add_argument("--device", default="cpu", help="cpu or cuda (under torchrun: cuda:<LOCAL_RANK> each)")
    ft.add_argument("--smoke", action="store_true", help="the short smoke recipe (1 epoch, small world tasks)")
    ft.add_argument("--quiet", action="store_true", help="no progress bars")
    ft.set_defaults(func=_finetune)

    apply = add(sub, "apply", help="GLA on logits saved by another evaluation harness",
                description="Combine zero-shot and fine-tuned logits of the same test images with GLA and score "
                "the protocol's models. Tensors come from .pt (a tensor, or a dict with 'logits'/'labels'/"
                "'counts') or .npy files. The prior comes from --prior-file or is estimated on --zs-val/"
                "--labels-val (never on the test split), and few-shot temperatures are searched on the validation "
                "split, both as 'gla run' does under --protocol.")
    apply.add_argument("which", metavar="experiment", choices=["many-shot", "few-shot", "long-tail"],
                       help="many-shot, few-shot or long-tail")
    apply.add_argument("--zs", required=True, help="zero-shot test logits (N, K)")
    apply.add_argument("--ft", required=True, help="fine-tuned test logits (N, K)")
    apply.add_argument("--labels", required=True, help="test labels (N,)")
    apply.add_argument("--zs-val", help="zero-shot validation logits: the prior's estimation set (few-shot: T_zs)")
    apply.add_argument("--ft-val", help="few-shot: fine-tuned validation logits, where T_ft is searched")
    apply.add_argument("--labels-val", help="validation labels")
    apply.add_argument("--prior-file", help="prior q: torch file with 'q' (official q.pt), a tensor, .npy, or the "
                       "JSON of 'gla estimate'; normalised on load")
    apply.add_argument("--train-counts", help="training images per class (K,): long-tail groups and log p_s "
                       "(many-shot: adds - log p_s to GLA)")
    apply.add_argument("--t-zs", type=float, help="few-shot: zero-shot temperature (default: searched on --zs-val)")
    apply.add_argument("--t-ft", type=float, help="few-shot: fine-tuned temperature (default: searched on --ft-val)")
    apply.add_argument("--protocol", choices=["paper", "exact"], default="paper",
                       help="paper: the official code's temperature search and 1000-step prior solver; exact: "
                       "the exact solutions (as 'gla run --protocol')")
    apply.add_argument("--out", default="results", help="output folder")
    apply.add_argument("--name", help="file stem (default: apply_many_shot, apply_few_shot or apply_long_tail)")
    apply.set_defaults(func=_apply)

    est = add(sub, "estimate", help="estimate the label prior from saved logits",
              description="Estimate the label prior q of a zero-shot model from its logits on labelled images "
              "(the paper's estimator, solved exactly) and print or write it as JSON, with its temperature and "
              "convergence diagnostics; 'gla run --prior-file' and 'gla apply --prior-file' read that JSON. "
              "Files are read as 'gla apply' reads them: .pt (a tensor, or a dict with 'logits' and 'labels'), "
              ".npy or .npz.")
    est.add_argument("logits", help="logits (N, K): .pt (a tensor, or a dict with 'logits' and 'labels'), .npy "
                     "or .npz")
    est.add_argument("--labels", help="labels (N,), .pt or .npy (default: the 'labels' entry of the logits file)")
    est.add_argument("--temperature", default="1.0", type=_temperature,
                     help="divide the logits by this positive number before estimating, or 'search' for the "
                     "temperature at which confidence matches accuracy")
    est.add_argument("--no-balance", action="store_true", help="do not reweight to balanced classes")
    est.add_argument("--out", help="write the JSON result here (default: stdout)")
    est.set_defaults(func=_estimate)

    book = add(sub, "book", help="run the book's notebooks; build the HTML book",
               description="Run the book's notebooks with a parameter file, and build the HTML book from them.")
    book_sub = book.add_subparsers(dest="book_command", required=True, metavar="command")
    descriptions = {
        "run": "Execute the book's notebooks with papermill into --out, each with the parameters of the file "
               "(shared ones, then its overrides under 'notebooks:'), and put every chapter's tables in "
               "<out>/results.zip. Before the first kernel starts, every parameter name, backbone and checkpoint "
               "(with its activation), data root, dataset name and layout, and input file is checked.",
        "build": "Build the HTML book into <out>/_build/html: execute the notebooks into <out>/book/generated "
                 "(as 'gla book run') unless --generated names executed ones, then assemble the pages and run "
                 "Jupyter Book. The introduction and the 'All results' page say what each chapter's executed "
                 "notebook ran and wrote; a tree with some chapters only gives a book of those chapters.",
    }
    for name, helptext in [("run", "execute every notebook with papermill"),
                           ("build", "execute the notebooks into <out>/book/generated and build the HTML book")]:
        b = add(book_sub, name, help=helptext, description=descriptions[name])
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
        b.set_defaults(func=_book_run if name == "run" else _book_build)

    from .plugins import plugin_commands

    for add_parser in plugin_commands():
        add_parser(sub, formatter_class=_Formatter, parents=[common])
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``gla``; returns the exit status (0 done, 1 a run failed, 2 bad input)."""
    if list(sys.argv[1:] if argv is None else argv) == ["--version"]:  # without importing torch
        print(f"gla {_version()}")
        return 0
    args = build_parser().parse_args(argv)
    args._argv = None if argv is None else ["gla", *argv]
    try:
        return int(args.func(args) or 0)
    except EXPECTED_ERRORS as exc:
        if getattr(args, "debug", False):
            raise
        code = getattr(exc, "exit_code", 1)
        where = " ".join(x for x in (args.command, getattr(args, "book_command", None),
                                     getattr(args, "world_command", None)) if x)
        print(f"gla {where}: error: {_message(exc)}", file=sys.stderr)
        if code == 1:
            print("(run again with 'gla --debug ...' for the traceback)", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
