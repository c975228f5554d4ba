"""Why the Zipf sweep pretrains worlds side by side (run on demand, not in the tests).

    .venv/bin/python benchmarks/sweep_parallel.py --steps 100

Times one world pretraining with two threads, one with one thread, and two one-thread
pretrainings at once (separate processes, fresh caches), and prints the wall time of each.
On two cores, two one-thread runs side by side finish about 1.5 times sooner than the
same two runs one after another with two threads each.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time

RUN = """
import sys, time, torch
from gla.world import PretrainConfig, WorldConfig, pretrain
threads, seed, steps, cache = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
cfg = PretrainConfig(steps=steps, batch_size=128, warmup=10, checkpoint_every=10_000, threads=threads, seed=seed)
t = time.perf_counter()
pretrain(WorldConfig(seed=seed, zipf_exponent=1.25), cfg, cache_dir=cache, progress=False)
print(f"{time.perf_counter() - t:.1f}")
"""


def _start(threads: int, seed: int, steps: int) -> subprocess.Popen:
    cache = tempfile.mkdtemp(prefix="sweep-bench-")
    return subprocess.Popen([sys.executable, "-c", RUN, str(threads), str(seed), str(steps), cache],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100)
    args = ap.parse_args()
    for label, jobs in [("one run, 2 threads", [(2, 0)]), ("one run, 1 thread", [(1, 1)]),
                        ("two runs side by side, 1 thread each", [(1, 2), (1, 3)])]:
        t = time.perf_counter()
        procs = [_start(th, seed, args.steps) for th, seed in jobs]
        inner = [p.communicate()[0].strip() for p in procs]
        print(f"{label}: wall {time.perf_counter() - t:.1f} s (pretraining {', '.join(inner)} s)")


if __name__ == "__main__":
    main()
