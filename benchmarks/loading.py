"""Benchmark: feature extraction throughput against the bare forward pass, and fine-tuning
steps/s with and without autocast.

Run on demand (not part of the test suite)::

    .venv/bin/python benchmarks/loading.py                         # ViT-B-32, 256 JPEGs
    .venv/bin/python benchmarks/loading.py --model RN50 --images 512 --device cuda

Part 1 writes ``--images`` random JPEGs (500 x 375, ImageNet's typical size) to a
temporary folder, loads a randomly initialised open_clip model (no download), and times

- ``bare``: ``backbone.encode_images`` on the same batches, decoded and preprocessed
  beforehand (not timed): the model alone;
- ``cached_features`` with ``--workers`` loader processes (and with 0 for comparison),
  into a fresh cache: reading, decoding, preprocessing and encoding.

The ratio of the two throughputs is the share of the model's speed that the loading path
keeps (target: at least 0.8 with workers). Part 2 (CUDA only; skipped on the CPU with a
message) times :func:`gla.finetune.finetune` steps on in-memory tensors at fp32 and with
``--precision`` autocast. Results go to stdout and, one JSON record each, to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import torch


def write_jpegs(folder: str, n: int, seed: int = 0) -> list[str]:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        # Smooth random colour fields (noise upsampled) compress like photographs, not like static.
        small = rng.integers(0, 256, size=(24, 32, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((500, 375), Image.BILINEAR)
        p = os.path.join(folder, f"{i:05d}.jpg")
        img.save(p, quality=90)
        paths.append(p)
    return paths


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_features(args, device: torch.device) -> list[dict]:
    from gla.backbones import load_backbone
    from gla.data import LabelledImages
    from gla.features import cached_features
    from gla.loading import autocast, resolve_precision

    records = []
    torch.manual_seed(0)
    bb = load_backbone(args.model, None, device=device)
    prec = resolve_precision(args.feature_precision, device)
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_jpegs(tmp, args.images)
        data = LabelledImages(paths, [0] * len(paths), ["x"], ["{}"], name="bench", split="test")
        # Bare: the same batches, decoded and preprocessed beforehand.
        data.transform = bb.preprocess
        batches = [torch.stack([data[i][0] for i in range(lo, min(lo + args.batch_size, len(data)))])
                   for lo in range(0, len(data), args.batch_size)]
        data.transform = None
        with autocast(prec, device):  # warm-up
            bb.encode_images(batches[0].to(device))
        sync(device)
        t0 = time.perf_counter()
        for x in batches:
            with autocast(prec, device):
                bb.encode_images(x.to(device, non_blocking=True))
        sync(device)
        bare = len(data) / (time.perf_counter() - t0)
        base = {"model": args.model, "device": str(device), "precision": prec, "images": len(data),
                "batch_size": args.batch_size, "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                "torch": torch.__version__, "machine": platform.machine()}
        records.append({**base, "what": "bare forward", "images_per_s": round(bare, 2)})
        for workers in sorted({args.workers, 0}, reverse=True):
            with tempfile.TemporaryDirectory() as cache:
                t0 = time.perf_counter()
                cached_features(bb, data, cache_dir=cache, batch_size=args.batch_size, num_workers=workers,
                                precision=prec, progress=False)
                sync(device)
                rate = len(data) / (time.perf_counter() - t0)
            records.append({**base, "what": f"cached_features, {workers} workers", "num_workers": workers,
                            "images_per_s": round(rate, 2), "share_of_bare": round(rate / bare, 3)})
    return records


def bench_finetune(args, device: torch.device) -> list[dict]:
    from gla.backbones import load_backbone
    from gla.data import LabelledImages
    from gla.finetune import FinetuneConfig, ImageClassifier, finetune

    torch.manual_seed(0)
    bb = load_backbone(args.model, None, device=device)
    size = bb.model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    k = 1000
    n = args.batch_size * (args.steps + 1)
    x = torch.randn(n, 3, size, size)
    data = LabelledImages(x, torch.randint(0, k, (n,)), [str(i) for i in range(k)], ["{}"])
    head = torch.nn.functional.normalize(torch.randn(bb.model.text_projection.shape[1], k), dim=0)
    records = []
    for prec in ("fp32", args.precision):
        clf = ImageClassifier(bb.model, head, 100.0)
        cfg = FinetuneConfig(epochs=1, batch_size=args.batch_size, warmup_steps=1, train_transform="none",
                             precision=prec, num_workers=0)
        # The first step (allocation, cuDNN autotuning) is in the time; it is one of steps + 1.
        sync(device)
        t0 = time.perf_counter()
        finetune(clf, data, cfg, device=device, progress=False)
        sync(device)
        dt = time.perf_counter() - t0
        records.append({"what": f"finetune steps, {prec}", "model": args.model, "device": str(device),
                        "batch_size": args.batch_size, "steps": args.steps + 1,
                        "steps_per_s": round((args.steps + 1) / dt, 3),
                        "images_per_s": round(n / dt, 1)})
    return records


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=None, help="default: gla.loading.default_num_workers()")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--feature-precision", default=None, help="autocast for part 1 (default: fp32 CPU, fp16 CUDA)")
    ap.add_argument("--precision", default="fp16", help="autocast compared with fp32 in part 2")
    ap.add_argument("--steps", type=int, default=20, help="timed fine-tuning steps (part 2)")
    ap.add_argument("--out", default="benchmarks/loading_results.json")
    args = ap.parse_args()
    from gla.loading import default_num_workers

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.workers is None:
        args.workers = max(1, default_num_workers())
    device = torch.device(args.device)
    records = bench_features(args, device)
    if device.type == "cuda":
        records += bench_finetune(args, device)
    else:
        print("fine-tuning with and without autocast: skipped (needs CUDA; run with --device cuda on a GPU)")
    for r in records:
        print(json.dumps(r))
    with open(args.out, "w") as fh:
        json.dump(records, fh, indent=1)


if __name__ == "__main__":
    main()
