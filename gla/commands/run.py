"""``gla run``: run one of the paper's protocols and write tidy CSV/JSON results.

Run a protocol on each dataset in turn. Everything is checked before any compute (names,
data layouts, checkpoint). Each dataset's rows are written as soon as it is done
(<out>/<protocol>_<backbone>_<pretrained>_<dataset>.csv/.json), then the combined table
(<out>/<protocol>_<backbone>_<pretrained>.csv/.json) and <stem>.settings.json with every
setting.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import pandas as pd

from .. import protocols
from ..backbones import is_checkpoint_path
from ..cache import atomic_write_text
from ..checks import check_backbone, check_datasets, error_message
from ..data import dataset_entry
from ..errors import RunError, UsageError
from ..estimators import MODEL_PRIOR, list_estimators
from ..finetune import FinetuneConfig
from ..protocols.config import SOURCE_PRIORS
from ..protocols.few_shot import check_draws
from ..version import __version__
from .options import (
    add_backbone_options,
    add_machine_options,
    add_procedure_options,
    add_recipe_options,
    check_values,
    command_parser,
    context_and_recipe,
    named_backbone,
    option_errors,
    with_options,
)

EXPERIMENTS = ("many-shot", "few-shot", "long-tail")


def add_parser(sub, **kw) -> argparse.ArgumentParser:
    """Add ``gla run`` to the subcommands ``sub`` (``kw``: formatter class, parents)."""
    p = command_parser(sub, "run", __doc__, **kw)
    p.add_argument("experiment", metavar="experiment", choices=EXPERIMENTS, help="many-shot, few-shot or long-tail")
    add_backbone_options(p)
    p.add_argument("--datasets", nargs="+", required=True, help="names from 'gla datasets'")
    p.add_argument("--shifted", nargs="*", metavar="SET|DATASET=SET,SET",
                   help="many-shot and few-shot: shifted test sets; 'dataset=set1,set2' per dataset, bare names "
                   "belong to the first of --datasets (few-shot: evaluated with the most shots)")
    p.add_argument("--shots", nargs="+", type=int, help="few-shot only: images per class (default: 1 2 4 8 16)")
    p.add_argument("--seeds", nargs="+", type=int, help="few-shot only: sampling seeds (default: 1 2 3)")
    add_recipe_options(p, epochs="many-shot/long-tail: fine-tuning epochs (default: the backbone's recipe, 1 with "
                       "--smoke); few-shot: prompt-learning epochs (default: 40)",
                       lr="many-shot/long-tail: fine-tuning learning rate (default: the backbone's recipe); "
                       "few-shot: prompt-learning rate (default: 2e-3)",
                       batch_size="many-shot/long-tail: global fine-tuning batch, as in 'gla finetune' (default: "
                       "the backbone's recipe); the same options find the same checkpoint")
    p.add_argument("--finetuned", help="many-shot: evaluate this fine-tuned model instead of fine-tuning (this "
                   "project's checkpoint, a state dict, or a WiSE-FT checkpoint)")
    add_procedure_options(p)
    p.add_argument("--estimator", help="the prior's estimator: an id of gla.estimators that estimates the model's "
                   f"prior ({', '.join(list_estimators(estimates=MODEL_PRIOR))}; default: the protocol's, official "
                   "under paper, exact under exact)")
    p.add_argument("--prior-file", help="a prior q to use instead of estimating one (torch file with 'q', "
                   "a tensor, .npy, or the JSON of 'gla estimate')")
    p.add_argument("--source-prior", choices=SOURCE_PRIORS,
                   help="log p_s of the fine-tuning data: uniform or from training counts (default: the protocol's)")
    add_machine_options(p, device="cpu, cuda or cuda:<n>", smoke="scaled-down quick run (1 fine-tuning epoch, small "
                        "world tasks) unless --epochs says otherwise")
    p.add_argument("--out", default="results", help="output folder for the CSV/JSON tables")
    return with_options(p, run)


@dataclass
class RunOptions:
    """Settings of ``gla run`` beyond the backbone and datasets, passed as one object to the
    protocol functions and recorded beside the results (``<stem>.settings.json``).

    ``protocol``: "paper" (the official code's temperature search and prior solver) or
    "exact" (exact solutions); ``templates``: GLA's zero-shot templates or CoOp's;
    ``prior_file``: a prior to use instead of estimating one; ``source_prior``: ``log p_s``
    uniform or from training counts (None: the protocol's own); ``estimator``: the prior's
    estimator id (None: the protocol's); ``precision``: autocast precision (None: fp32 on
    CPU, fp16 on CUDA); ``num_workers``: data-loading workers (None: from the CPU count).
    See :class:`gla.protocols.ProtocolSettings` and :class:`gla.protocols.RunConfig`.
    """

    protocol: str = "paper"
    templates: str = "gla"
    prior_file: str | None = None
    source_prior: str | None = None
    estimator: str | None = None
    precision: str | None = None
    num_workers: int | None = None
    shots: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16])
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    epochs: int | None = None
    lr: float | None = None
    shifted: dict[str, list[str]] = field(default_factory=dict)
    finetuned: str | None = None


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


def check_shifted_parents(target: str, sets: Sequence[str]) -> None:
    """Raise :class:`UsageError` unless every set is a shifted test set of ``target``."""
    for s in sets:
        parent = dataset_entry(s).shift_of
        if parent is None:
            raise UsageError(f"--shifted: '{s}' is not a shifted test set (those have the classes of another "
                             "dataset, e.g. world-main-sketch for world-main, imagenet_v2 for imagenet)")
        if parent != target:
            raise UsageError(f"--shifted: '{s}' is a shifted test set of {parent}, not of {target}; write "
                             f"'{parent}={s}' with {parent} among --datasets")


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


def _check_combinations(args: argparse.Namespace) -> None:
    """The options a protocol does not take (the values themselves are the library's to check)."""
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
    if args.batch_size is not None and proto == "few-shot":
        raise UsageError("--batch-size: a global batch of the fine-tuning recipe (many-shot and long-tail)")
    if proto == "long-tail" and args.shifted:
        raise UsageError("--shifted: the long-tail protocol has no shifted test sets (many-shot and few-shot have)")
    repeated = sorted({d for d in args.datasets if args.datasets.count(d) > 1})
    if repeated:
        raise UsageError(f"--datasets: {', '.join(repeated)} named more than once")


def check_run(args: argparse.Namespace, backbone: str, pretrained: str | None) -> RunOptions:
    """Everything a run needs, checked before any compute; returns its options."""
    _check_combinations(args)
    shifted = parse_shifted(args.shifted, args.datasets)
    check_backbone(backbone, pretrained, args.quick_gelu)
    check_datasets(args.datasets, ("train", "val", "test"), args.data_root, "--datasets")
    for target, sets in shifted.items():
        check_datasets(sets, ("test",), args.data_root, f"--shifted (for {target})")
        check_shifted_parents(target, sets)
    opts = RunOptions(protocol=args.protocol, templates=args.templates, prior_file=args.prior_file,
                      source_prior=args.source_prior, estimator=args.estimator, precision=args.precision,
                      num_workers=args.num_workers, epochs=args.epochs, lr=args.lr, shifted=shifted,
                      finetuned=args.finetuned)
    with option_errors(args):  # the values, checked by the settings, recipes and readers that take them
        protocols.ProtocolSettings(protocol=opts.protocol, templates=opts.templates, source_prior=opts.source_prior,
                                   prior_file=opts.prior_file, estimator=opts.estimator)
        if opts.prior_file:
            protocols.load_prior_file(opts.prior_file)
        if args.experiment == "few-shot":
            opts.shots = list(args.shots or opts.shots)
            opts.seeds = list(args.seeds or opts.seeds)
            check_draws(opts.shots, opts.seeds)
        else:
            opts.shots, opts.seeds = [], []
    check_values(args, protocols.PromptRecipe() if args.experiment == "few-shot" else FinetuneConfig())
    return opts


def _run_dataset(ctx, recipe, experiment: str, dataset: str, opts: RunOptions) -> pd.DataFrame:
    """One dataset of a protocol: its results table."""
    if experiment == "many-shot":
        return protocols.run_many_shot(ctx.backbone, ctx.pretrained, dataset, shifted=opts.shifted.get(dataset, ()),
                                       recipe=recipe, finetuned=opts.finetuned, **ctx.run()).table
    if experiment == "long-tail":
        return protocols.run_long_tail(ctx.backbone, ctx.pretrained, dataset, recipe=recipe, **ctx.run()).table
    tuning = {k: v for k, v in (("epochs", opts.epochs), ("lr", opts.lr)) if v is not None}
    shifted = {dataset: opts.shifted[dataset]} if opts.shifted.get(dataset) else None
    return protocols.run_few_shot(ctx.backbone, ctx.pretrained, [dataset], shots=opts.shots, seeds=opts.seeds,
                                  prompts=replace(ctx.prompts, **tuning), shifted=shifted, **ctx.run()).table


def run(args: argparse.Namespace) -> int:
    """``gla run``: check everything, then run each dataset, writing its rows at once."""
    backbone, pretrained = named_backbone(args)
    opts = check_run(args, backbone, pretrained)
    ctx, recipe = context_and_recipe(args, backbone, pretrained)
    stem = results_stem(args.experiment, backbone, pretrained)
    out = Path(ctx.output_dir)
    settings = {"gla_version": __version__, "command": ["gla", *sys.argv[1:]] if args.argv_ is None else args.argv_,
                "protocol": args.experiment, "backbone": backbone, "pretrained": str(pretrained),
                "resolved_pretrained": str(ctx.pretrained), "quick_gelu": args.quick_gelu,
                "datasets": args.datasets, "options": asdict(opts),
                "recipe": asdict(recipe) if args.experiment != "few-shot" else None, "smoke": args.smoke,
                "files": {}, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    settings_path = out / f"{stem}.settings.json"
    frames = []
    for dataset in args.datasets:
        try:
            df = _run_dataset(ctx, recipe, args.experiment, dataset, opts)
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            settings["failed"] = {"dataset": dataset, "error": error_message(exc)}
            atomic_write_text(settings_path, json.dumps(settings, indent=1, default=str))
            kept = ", ".join(settings["files"]) or "none"
            raise RunError(f"{args.experiment} on {dataset} failed: {type(exc).__name__}: {error_message(exc)}\n"
                           f"finished datasets kept in {out}: {kept}") from exc
        csv, _ = protocols.save_results(df, out, f"{stem}_{dataset}")
        settings["files"][dataset] = csv.name
        atomic_write_text(settings_path, json.dumps(settings, indent=1, default=str))
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    csv, js = protocols.save_results(df, out, stem)
    settings["combined"] = csv.name
    settings["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    atomic_write_text(settings_path, json.dumps(settings, indent=1, default=str))
    print(f"{len(df)} rows -> {csv} and {js}")
    return 0
