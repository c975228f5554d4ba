"""Benchmark: the exact prior estimator against the official algorithm.

Run on demand (not part of the test suite)::

    .venv/bin/python benchmarks/estimator.py            # 50,000 x 1,000, full official run
    .venv/bin/python benchmarks/estimator.py --official-steps 100   # quicker

On synthetic logits with a planted prior it reports, for each method, the wall time, the
objective (mean cross-entropy of ``z - log q``) and its gap to a high-precision
reference, the largest moment residual, and the distance to the planted prior. Results go
to stdout and, as one JSON record per method, to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

import gla
from gla.prior import class_weights


def planted(n: int, k: int, seed: int, bias_scale: float = 1.5, signal: float = 3.0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(k).repeat_interleave(n // k)
    raw = torch.randn(k, generator=g) * bias_scale
    true_lp = raw - torch.logsumexp(raw, 0)
    logits = torch.randn(labels.shape[0], k, generator=g)
    logits[torch.arange(labels.shape[0]), labels] += signal
    return logits + true_lp, labels, true_lp.double()


def moment_residual(z, y, lp):
    k = z.shape[1]
    w = class_weights(y, k, True)
    p = torch.softmax(z.double() - lp, dim=1)
    pi = torch.zeros(k, dtype=torch.float64).index_add_(0, y, w)
    return float((pi - (w[:, None] * p).sum(0)).abs().max())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--k", type=int, default=1_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--official-steps", type=int, default=1000)
    ap.add_argument("--methods", nargs="+", default=["exact", "official"], choices=["exact", "official"])
    ap.add_argument("--out", default="benchmarks/estimator_results.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    z, y, true_lp = planted(args.n, args.k, args.seed)

    ref = gla.PriorEstimator(tol=1e-13, max_iter=200).fit(z, y)
    f_ref = gla.prior_objective(z, y, ref.log_prior_)
    records = []

    def record(name, lp, seconds, extra=None):
        lp = lp - torch.logsumexp(lp, 0)
        rec = {
            "method": name, "n": args.n, "k": args.k, "threads": args.threads, "seconds": seconds,
            "objective": gla.prior_objective(z, y, lp), "gap": gla.prior_objective(z, y, lp) - f_ref,
            "moment_residual": moment_residual(z, y, lp),
            "max_abs_err_vs_planted": float((lp - true_lp).abs().max()),
            "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
        }
        rec.update(extra or {})
        records.append(rec)
        print(json.dumps(rec))

    times = []
    for _ in range(args.repeats if "exact" in args.methods else 0):
        t0 = time.perf_counter()
        fit = gla.PriorEstimator().fit(z, y)
        times.append(time.perf_counter() - t0)
    if times:
        record("exact newton-cg (gla.PriorEstimator, defaults)", fit.log_prior_, min(times),
               {"n_iter": fit.n_iter_, "n_matvec": fit.n_matvec_, "all_seconds": times})
    if "official" not in args.methods:
        _write(records, args.out)
        return
    t0 = time.perf_counter()
    off = gla.official_lagrangian_prior(z, y, n_steps=args.official_steps)
    sec = time.perf_counter() - t0
    record(f"official lagrangian sgd ({args.official_steps} steps)", off, sec,
           {"sum_q_unnormalised": float(off.exp().sum())})

    _write(records, args.out)


def _write(records: list, out: str) -> None:
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out, "w") as fh:
        json.dump(records, fh, indent=1)


if __name__ == "__main__":
    main()
