"""Measure the miniature world's regime over seeds (run on demand, not in the tests).

    .venv/bin/python benchmarks/world.py --seeds 0 1 2          # default recipe
    .venv/bin/python benchmarks/world.py --seeds 0 --smoke      # smoke recipe

For each seed s (world seed = pretraining seed = s) it pretrains the world's CLIP (or
reuses the cached checkpoint), then records pretraining time and images/s, zero-shot
top-1 and head / medium / tail by the true prior, the debiased zero-shot model, the rank
and linear correlation between the estimated and the true log prior, and (without
--no-finetune) the linear probe and end-to-end fine-tuning on world-main. Writes
``benchmarks/world_results.csv`` and prints a summary (mean +- std).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

from gla.world import SMOKE_PRETRAIN, PretrainConfig, WorldConfig, pretrain
from gla.world.evaluate import finetune_report, zero_shot_report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--zipf", type=float, default=WorldConfig().zipf_exponent)
    ap.add_argument("--zipf-offset", type=float, default=WorldConfig().zipf_offset)
    ap.add_argument("--name-prob", type=float, default=WorldConfig().name_prob)
    ap.add_argument("--threads", type=int, default=PretrainConfig().threads,
                    help="pretraining threads (part of the checkpoint's key; 1 to run two benchmarks side by side)")
    ap.add_argument("--steps", type=int, default=None, help="pretraining steps (default: the recipe's)")
    ap.add_argument("--no-finetune", action="store_true")
    ap.add_argument("--cache-dir", default=".gla_cache")
    ap.add_argument("--out", default="benchmarks/world_results.csv")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for s in args.seeds:
        wcfg = WorldConfig(seed=s, zipf_exponent=args.zipf, zipf_offset=args.zipf_offset,
                           name_prob=args.name_prob)
        pcfg = replace(SMOKE_PRETRAIN if args.smoke else PretrainConfig(), seed=s, threads=args.threads)
        if args.steps is not None:
            pcfg = replace(pcfg, steps=args.steps)
        ckpt = pretrain(wcfg, pcfg, cache_dir=args.cache_dir, progress=False)
        t0 = time.perf_counter()
        rec = {"seed": s, "recipe": "smoke" if args.smoke else "default", "steps": pcfg.steps,
               "batch_size": pcfg.batch_size, **zero_shot_report(ckpt, wcfg)}
        if not args.no_finetune:
            rec.update({k: v for k, v in finetune_report(ckpt, wcfg).items() if k != "task"})
        rec["evaluation_seconds"] = time.perf_counter() - t0
        rows.append(rec)
        print(json.dumps(rec), flush=True)
    df = pd.DataFrame(rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out, index=False)
    cols = [c for c in ["pretrain_seconds", "pretrain_images_per_second", "zero_shot_all", "zero_shot_head",
                        "zero_shot_medium", "zero_shot_tail", "debiased_all", "debiased_head", "debiased_medium",
                        "debiased_tail", "spearman_estimated_true", "pearson_estimated_true", "linear_probe",
                        "finetuned"] if c in df]
    print(df[cols].agg(["mean", "std"]).T.to_string())


if __name__ == "__main__":
    main()
