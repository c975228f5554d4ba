"""``gla world`` commands: pretrain the world's CLIP, describe the world, measure its regime."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from dataclasses import asdict, fields, replace

# Command-line option -> WorldConfig field; None defaults mean "the preset's".
WORLD_OPTIONS = {"n_concepts": "n_concepts", "image_size": "image_size", "zipf": "zipf_exponent",
                 "zipf_offset": "zipf_offset", "name_prob": "name_prob", "style_share": "style_share",
                 "instance_prob": "instance_prob", "label_noise": "label_noise"}


def _cache_dir(args: argparse.Namespace) -> str:
    return args.cache_dir or os.environ.get("GLA_CACHE_DIR", ".gla_cache")


def _configs(args: argparse.Namespace):
    """The preset, world and pretraining settings of the command line; a bad value is a
    :class:`gla.errors.UsageError` (exit status 2)."""
    from ..errors import UsageError
    from .concepts import World
    from .presets import get_preset
    from .pretrain import SMOKE_PRETRAIN, PretrainConfig

    try:
        preset = get_preset(args.preset)
        world = replace(preset.world_config(args.world_seed),
                        **{f: getattr(args, o) for o, f in WORLD_OPTIONS.items() if getattr(args, o) is not None})
        World(world)  # checks the settings (cheap: no image is rendered)
        base = SMOKE_PRETRAIN if args.smoke else preset.pretrain
        overrides = {f.name: getattr(args, f.name) for f in fields(PretrainConfig)
                     if getattr(args, f.name, None) is not None}
        cfg = PretrainConfig(**{**asdict(base), "seed": args.world_seed, **overrides})
        return preset, world, cfg
    except (ValueError, TypeError) as exc:
        raise UsageError(f"world settings: {exc}") from exc


def _is_the_preset(preset, world, cfg, seed: int) -> bool:
    return world == preset.world_config(seed) and cfg == preset.pretrain_config(seed)


def _pretrain(args: argparse.Namespace) -> int:
    import torch

    from ..errors import UsageError
    from .pretrain import pretrain
    from .shipped import ship, shipped_checkpoint

    preset, world, cfg = _configs(args)
    exact = _is_the_preset(preset, world, cfg, args.world_seed)
    if args.ship and not exact:
        raise UsageError(f"--ship: only a checkpoint of preset '{preset.name}' as it is can ship (options that change "
                         "its world or recipe make another world)")
    path = pretrain(world, cfg, cache_dir=_cache_dir(args), progress=not args.quiet)
    timing = torch.load(path, map_location="cpu", weights_only=True)["timing"]
    print(json.dumps({"checkpoint": str(path), **timing}))
    if args.ship:
        command = "gla " + " ".join(shlex.quote(a) for a in (args.argv_ or sys.argv)[1:])
        entry = ship(path, preset, args.world_seed, command)
        print(f"shipped as gla/world/checkpoints/{entry.file} (sha256 {entry.sha256})")
    if args.no_regime or args.smoke or not exact:
        return 0
    shipped = shipped_checkpoint(preset, args.world_seed)
    if shipped is None:
        print(f"no checkpoint of preset '{preset.name}' at seed {args.world_seed} ships with the package; "
              "nothing to compare with", file=sys.stderr)
        return 0
    lost = _compare(preset, args.world_seed, path, shipped, _cache_dir(args))
    if lost and args.strict:
        print(f"--strict: {', '.join(lost)} held for the shipped checkpoint and not for the regenerated one",
              file=sys.stderr)
        return 1
    return 0


def _compare(preset, seed: int, mine, shipped, cache_dir: str) -> list[str]:
    """Print P1-P6's measures of a regenerated checkpoint beside the shipped one's; returns
    the properties that hold for the shipped checkpoint and not for the regenerated one."""
    from .regime import PROPERTIES, measure_regime, shipped_regime

    if _same_file(mine, shipped):
        print("the regenerated checkpoint is byte for byte the shipped one")
        return []
    print("measuring the regime (P1-P6) of the regenerated checkpoint ...", file=sys.stderr)
    new = measure_regime(preset, seed, checkpoint=mine, cache_dir=cache_dir)
    ref = shipped_regime(preset.name, seed)
    if ref is None:
        print("the shipped regime file has no entry for this preset and seed; measuring the shipped checkpoint too",
              file=sys.stderr)
        ref = measure_regime(preset, seed, checkpoint=shipped, cache_dir=cache_dir)
    for p in PROPERTIES:
        parts = [f"{m} {new[m]:.2f} (shipped {ref[m]:.2f}, {new[m] - ref[m]:+.2f})" for m in p.measures]
        verdict = "holds" if new["checks"][p.id] else "does not hold"
        print(f"{p.id} {verdict} (shipped: {'holds' if ref['checks'][p.id] else 'does not hold'}): {'; '.join(parts)}")
    return [p.id for p in PROPERTIES if ref["checks"][p.id] and not new["checks"][p.id]]


def _same_file(a, b) -> bool:
    from .shipped import file_sha256

    return file_sha256(a) == file_sha256(b)


def _info(args: argparse.Namespace) -> int:
    from .concepts import World
    from .tasks import TASKS

    _, world_cfg, _ = _configs(args)
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
    from .presets import PRESETS
    from .pretrain import PretrainConfig

    kw = {"formatter_class": argparse.ArgumentDefaultsHelpFormatter, **parser_kwargs}
    world = sub.add_parser("world", help="the miniature world", description="The miniature world: its presets, "
                           "concepts and tasks, and its CLIP (shipped with the package, or pretrained here).", **kw)
    ws = world.add_subparsers(dest="world_command", required=True, metavar="command")
    for name, func, helptext in [
            ("pretrain", _pretrain, "pretrain (or reuse) the world's CLIP; compare its regime with the shipped one"),
            ("info", _info, "print the world's concepts, true prior and tasks")]:
        p = ws.add_parser(name, help=helptext, description=helptext[0].upper() + helptext[1:] + ".", **kw)
        p.add_argument("--preset", default="default", choices=sorted(PRESETS),
                       help="a named world (gla/world/presets.py); the options below change it")
        p.add_argument("--world-seed", type=int, default=0, help="seed of the world's concepts, corpus and recipe")
        p.add_argument("--n-concepts", type=int, help="number of concepts (default: the preset's)")
        p.add_argument("--image-size", type=int, help="image side in pixels (default: the preset's)")
        p.add_argument("--zipf", type=float, help="exponent of the corpus' frequency law (default: the preset's)")
        p.add_argument("--zipf-offset", type=float,
                       help="offset q of the Zipf-Mandelbrot law (rank + q) ** -exponent; 0 is Zipf's law "
                       "(default: the preset's)")
        p.add_argument("--name-prob", type=float, help="probability that a caption names its concept "
                       "(default: the preset's)")
        p.add_argument("--style-share", type=float, help="share of pretraining images drawn in a non-photo style "
                       "(default: the preset's)")
        p.add_argument("--instance-prob", type=float, help="probability of each word that describes a caption's "
                       "own image (default: the preset's)")
        p.add_argument("--label-noise", type=float, help="share of world-main's training labels flipped "
                       "(default: the preset's)")
        p.add_argument("--smoke", action="store_true", help="the short smoke recipe")
        if name == "pretrain":
            for f in fields(PretrainConfig):
                if f.name in ("model", "seed"):
                    continue
                p.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=type(f.default), default=None,
                               help=f"pretraining {f.name.replace('_', ' ')} (default: the preset's, or the "
                               "smoke recipe's with --smoke)")
            p.add_argument("--cache-dir", help="cache folder for the checkpoint (default: GLA_CACHE_DIR or .gla_cache)")
            p.add_argument("--no-regime", action="store_true",
                           help="do not measure P1-P6 against the shipped checkpoint after pretraining")
            p.add_argument("--strict", action="store_true",
                           help="exit with status 1 when a property that holds for the shipped checkpoint does not "
                           "hold for the regenerated one (the scheduled regeneration's check)")
            p.add_argument("--ship", action="store_true",
                           help="maintainers: copy the checkpoint into gla/world/checkpoints and record it in the "
                           "manifest with this command")
            p.add_argument("--quiet", action="store_true", help="no progress bars")
        p.set_defaults(func=func)
