"""Does a world's CLIP behave like CLIP where the paper's argument rests? P1-P6 over seeds.

    .venv/bin/python benchmarks/world_regime.py --seeds 0 1 2                   # the default world
    .venv/bin/python benchmarks/world_regime.py --preset photo-only --seeds 0 1 2
    .venv/bin/python benchmarks/world_regime.py --seeds 0 --set style_share=0.5 label_noise=0.2 \\
        --pretrain steps=3000 --finetune lr=3e-4 epochs=10 --name my-candidate

For each seed s (world seed = pretraining seed = fine-tuning seed = s) it pretrains the
world's CLIP (or reuses the cached checkpoint), runs the many-shot protocol on world-main
and its five shifted sets exactly as the book's chapters 03-04 do (``gla.run_many_shot``,
protocol ``paper``), and reads P1-P6 off the run (``gla.world.regime``). It prints one
table, the world's per-seed values beside real CLIP's (CLIP ViT-B/16, computed from
``gla/data/published.json``), and writes every number as JSON (``--out``; the default
world's file ships with the package as ``gla/world/regime.json``).
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from gla.cache import atomic_write_text
from gla.world.presets import PRESETS
from gla.world.regime import (
    PROPERTIES,
    REGIME_FILE,
    measure_regime,
    real_clip_measures,
    shipped_regimes,
    summarise,
)


def _assignments(items: list[str], what: str) -> dict:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"{what}: expected key=value, got {item!r}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def table(name: str, per_seed: list[dict], real: dict) -> str:
    # every property's measures, with the numbers they are made of (and the protocol's estimate) beside them
    context = {"ft_minus_zs": ["ft_id"], "ratio_gap": ["zs_ood_ratio", "ft_ood_ratio"],
               "wise_val_gain_id": ["wise_alpha"], "wise_half_gain_ood": ["ensemble_gain_id"],
               "prior_max_min": ["prior_max_min_protocol"]}
    keys = [k for p in PROPERTIES for m in p.measures for k in (m, *context.get(m, []))] + ["logit_scale"]
    head = "| measure | " + " | ".join(f"{name} s{r['seed']}" for r in per_seed) + " | CLIP ViT-B/16 |"
    lines = [head, "|" + "---|" * (len(per_seed) + 2)]
    for k in keys:
        ref = real.get(k)
        lines.append(f"| {k} | " + " | ".join(f"{r[k]:.2f}" for r in per_seed)
                     + f" | {'' if ref is None else f'{ref:.2f}'} |")
    for p in PROPERTIES:
        lines.append(f"| {p.id} holds | " + " | ".join("yes" if r["checks"][p.id] else "no" for r in per_seed) + " | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="default", choices=sorted(PRESETS))
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="WorldConfig settings to change")
    ap.add_argument("--pretrain", nargs="*", default=[], metavar="KEY=VALUE", help="PretrainConfig settings")
    ap.add_argument("--finetune", nargs="*", default=[], metavar="KEY=VALUE", help="FinetuneConfig settings")
    ap.add_argument("--name", default=None, help="the candidate's name in the table (default: the preset's)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=None, help="pretraining and evaluation threads")
    ap.add_argument("--cache-dir", default=".gla_cache")
    ap.add_argument("--out", default=None, help="JSON file (default benchmarks/regime-<name>.json)")
    ap.add_argument("--ship", action="store_true",
                    help="also record the result as the preset's shipped regime (gla/world/regime.json); only for "
                    "a preset measured as it is")
    args = ap.parse_args(argv)
    base = PRESETS[args.preset]
    preset = replace(base, name=args.name or base.name,
                     world=replace(base.world, **_assignments(args.set, "--set")),
                     pretrain=replace(base.pretrain, **_assignments(args.pretrain, "--pretrain")),
                     finetune=replace(base.finetune, **_assignments(args.finetune, "--finetune")))
    threads = args.threads or preset.pretrain.threads
    torch.set_num_threads(threads)
    per_seed = []
    for s in args.seeds:
        t0 = time.perf_counter()
        rec = measure_regime(preset, s, cache_dir=args.cache_dir, threads=threads)
        rec["wall_seconds_here"] = time.perf_counter() - t0
        per_seed.append(rec)
        print(json.dumps(rec), file=sys.stderr, flush=True)
    real = real_clip_measures()
    doc = {"name": preset.name, "preset": preset.describe(), "seeds": args.seeds, "threads": threads,
           "torch": torch.__version__, "measured": time.strftime("%Y-%m-%d"),
           "command": "benchmarks/world_regime.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "per_seed": per_seed, "summary": summarise(per_seed),
           "holds_in_every_seed": {p.id: all(r["checks"][p.id] for r in per_seed) for p in PROPERTIES},
           "real_clip": {"backbone": "ViT-B-16", "pretrained": "openai", **real},
           "properties": [asdict(p) for p in PROPERTIES]}
    out = Path(args.out or f"benchmarks/regime-{preset.name}.json")
    atomic_write_text(out, json.dumps(doc, indent=1))
    if args.ship:
        if preset != base or args.threads:
            raise SystemExit("--ship: only a preset measured as it is (no --set/--pretrain/--finetune/--threads)")
        regimes = shipped_regimes()
        regimes[preset.name] = doc
        atomic_write_text(REGIME_FILE, json.dumps({"_note": "P1-P6 of each world preset over seeds, measured with "
                                                   "benchmarks/world_regime.py (gla.world.regime).",
                                                   "presets": regimes}, indent=1) + "\n")
        print(f"shipped: {REGIME_FILE}")
    print(table(preset.name, per_seed, real))
    print(f"written: {out}")


if __name__ == "__main__":
    main()
