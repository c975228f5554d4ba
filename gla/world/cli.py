"""``gla world`` commands: pretrain the world's CLIP, describe the world, evaluate zero-shot."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict, fields


def _configs(args: argparse.Namespace):
    """The world and pretraining settings of the command line; a bad value is a
    :class:`gla.errors.UsageError` (exit status 2)."""
    from ..errors import UsageError
    from .concepts import World, WorldConfig
    from .pretrain import SMOKE_PRETRAIN, PretrainConfig

    try:
        world = WorldConfig(n_concepts=args.n_concepts, image_size=args.image_size, zipf_exponent=args.zipf,
                            zipf_offset=args.zipf_offset,
                            name_prob=args.name_prob, style_share=args.style_share, seed=args.world_seed)
        World(world)  # checks the settings (cheap: no image is rendered)
        base = SMOKE_PRETRAIN if args.smoke else PretrainConfig()
        overrides = {f.name: getattr(args, f.name) for f in fields(PretrainConfig)
                     if getattr(args, f.name, None) is not None}
        return world, PretrainConfig(**{**asdict(base), **overrides})
    except (ValueError, TypeError) as exc:
        raise UsageError(f"world settings: {exc}") from exc


def _pretrain(args: argparse.Namespace) -> int:
    from .pretrain import pretrain

    world, cfg = _configs(args)
    cache_dir = args.cache_dir or os.environ.get("GLA_CACHE_DIR", ".gla_cache")
    path = pretrain(world, cfg, cache_dir=cache_dir, progress=not args.quiet)
    import torch

    timing = torch.load(path, map_location="cpu", weights_only=True)["timing"]
    print(json.dumps({"checkpoint": str(path), **timing}))
    return 0


def _info(args: argparse.Namespace) -> int:
    from .concepts import World
    from .tasks import TASKS

    world_cfg, _ = _configs(args)
    w = World(world_cfg)
    rows = [{"concept": i, "name": w.names[i], **w.attributes(i), "true_prior": float(w.prior[i])}
            for i in range(w.n_concepts)]
    print(json.dumps({"config": asdict(world_cfg), "concepts": rows,
                      "tasks": {k: {"role": v.role, "description": v.description} for k, v in TASKS.items()}},
                     indent=1))
    return 0


def add_world_parser(sub: argparse._SubParsersAction, **parser_kwargs) -> None:
    """Add ``gla world pretrain|info`` to the ``gla`` parser; ``parser_kwargs`` (the
    formatter class, parent parsers) go to every parser created here."""
    from .concepts import WorldConfig
    from .pretrain import PretrainConfig

    kw = {"formatter_class": argparse.ArgumentDefaultsHelpFormatter, **parser_kwargs}
    d = WorldConfig()
    world = sub.add_parser("world", help="the miniature world",
                           description="The miniature world the book runs on by default: its concepts, its "
                           "long-tailed pretraining corpus and the tiny CLIP pretrained on it.", **kw)
    ws = world.add_subparsers(dest="world_command", required=True, metavar="command")
    descriptions = {"pretrain": "Pretrain the world's CLIP with open_clip's contrastive loss on the world's corpus, "
                                "or reuse the checkpoint of the same settings from the cache; prints its path and "
                                "timing as JSON.",
                    "info": "Print the world's concepts (names, attributes, true prior) and its tasks as JSON."}
    for name, func, helptext in [("pretrain", _pretrain, "pretrain (or reuse) the world's CLIP"),
                                 ("info", _info, "print the world's concepts, true prior and tasks")]:
        p = ws.add_parser(name, help=helptext, description=descriptions[name], **kw)
        p.add_argument("--n-concepts", type=int, default=d.n_concepts, help="number of concepts (classes)")
        p.add_argument("--image-size", type=int, default=d.image_size, help="image side in pixels")
        p.add_argument("--zipf", type=float, default=d.zipf_exponent, help="Zipf exponent of the corpus")
        p.add_argument("--zipf-offset", type=float, default=d.zipf_offset,
                       help="offset q of the Zipf-Mandelbrot law (rank + q) ** -exponent; 0 is Zipf's law")
        p.add_argument("--name-prob", type=float, default=d.name_prob,
                       help="probability that a caption names its concept")
        p.add_argument("--style-share", type=float, default=d.style_share,
                       help="share of pretraining images drawn in a non-photo style")
        p.add_argument("--world-seed", type=int, default=d.seed, help="seed of the world's concepts and corpus")
        p.add_argument("--smoke", action="store_true", help="the short smoke recipe")
        if name == "pretrain":
            for f in fields(PretrainConfig):
                if f.name == "model":
                    continue
                p.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=type(f.default), default=None,
                               help=f"pretraining {f.name.replace('_', ' ')} (default: {f.default!r}, or the "
                               "smoke recipe's with --smoke)")
            p.add_argument("--cache-dir", help="cache folder for the checkpoint (default: GLA_CACHE_DIR or "
                           ".gla_cache)")
            p.add_argument("--quiet", action="store_true", help="no progress bars")
        p.set_defaults(func=func)
