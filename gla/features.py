"""Image features on disk, keyed by everything that changes them.

:func:`cached_features` computes the image features of a dataset with a backbone, or
reads them from the cache. The key covers the backbone (name, pretrained tag, or the
checkpoint file's content hash), the preprocessing, the dataset (name, split, the exact
list of items and labels, so shots and seed are covered), and the model's precision.
Writes are atomic; an interrupted extraction resumes from its finished chunks; a corrupt
or mismatched file is detected and rebuilt. Once cached, the images are not read again.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from .cache import atomic_save, cache_key, safe_load
from .loading import autocast, make_loader, resolve_precision


def file_hash(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's content (for checkpoint paths in cache keys), first 16 hex digits.

    Remembered per (path, size, modification time) within a process, so a large checkpoint
    is hashed once however many caches it keys.
    """
    st = os.stat(path)
    return _file_hash(os.path.abspath(path), st.st_size, st.st_mtime_ns, chunk)


@functools.lru_cache(maxsize=64)
def _file_hash(path: str, size: int, mtime_ns: int, chunk: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()[:16]


def backbone_identity(backbone) -> dict[str, Any]:
    """What identifies a backbone's features: name, weights, preprocessing, precision."""
    pre = backbone.pretrained
    weights = f"file:{file_hash(pre)}" if pre and Path(pre).is_file() else (pre or "random-init")
    dtype = str(next(backbone.model.parameters()).dtype)
    return {"model": backbone.name, "weights": weights, "preprocess": repr(backbone.preprocess), "dtype": dtype}


def dataset_identity(dataset) -> dict[str, Any]:
    """What identifies a dataset's items: name, split, and a hash of the items and labels."""
    h = hashlib.sha256()
    if isinstance(dataset.images, torch.Tensor):
        h.update(dataset.images.contiguous().numpy().tobytes())
    else:
        h.update("\n".join(map(str, dataset.images)).encode())
    h.update(dataset.labels.numpy().tobytes())
    ident = {"dataset": dataset.name, "split": dataset.split, "n": len(dataset), "items": h.hexdigest()[:16]}
    if getattr(dataset, "crop_border", 0):
        ident["crop_border"] = dataset.crop_border
    return ident


def features_path(backbone, dataset, cache_dir: str | os.PathLike, *, precision: str | None = None) -> Path:
    """Where :func:`cached_features` keeps ``dataset``'s features for ``backbone`` at ``precision``.

    ``precision`` is resolved as in :func:`gla.loading.resolve_precision` (None: fp32 on
    the CPU, fp16 autocast on CUDA) and is part of the key.
    """
    prec = resolve_precision(precision, backbone.device)
    key = cache_key({"backbone": backbone_identity(backbone), "data": dataset_identity(dataset), "precision": prec})
    return Path(cache_dir) / "features" / f"{dataset.name or 'data'}-{dataset.split or 'x'}-{key}.pt"


def cached_features(backbone, dataset, *, cache_dir: str | os.PathLike, batch_size: int = 256,
                    num_workers: int | None = None, precision: str | None = None, chunk_batches: int = 20,
                    progress: bool = True) -> torch.Tensor:
    """L2-normalised image features ``(N, D)`` of ``dataset``, from the cache when present.

    Parameters
    ----------
    backbone : gla.backbones.Backbone
    dataset : gla.data.LabelledImages
        ``dataset.transform`` is replaced by ``backbone.preprocess`` while extracting.
    cache_dir : path
        Features go to ``cache_dir/features/`` (see :func:`features_path`).
    batch_size : int
        Images per forward pass.
    num_workers : int, optional
        Loader worker processes; None: from the CPU count for image files, 0 for in-memory
        tensors (:func:`gla.loading.make_loader`).
    precision : str, optional
        ``"fp32"``, ``"bf16"`` or ``"fp16"`` autocast; None: fp32 on the CPU, fp16 on CUDA.
        Part of the cache key.
    chunk_batches : int
        Extraction is written in chunks of this many batches, so a stopped run resumes
        from its last finished chunk.
    progress : bool
        Show a progress bar.

    Returns
    -------
    torch.Tensor
        ``(N, D)`` float32 features on the CPU, in the dataset's order.
    """
    prec = resolve_precision(precision, backbone.device)
    path = features_path(backbone, dataset, cache_dir, precision=prec)
    done = safe_load(path)
    if isinstance(done, dict) and isinstance(done.get("features"), torch.Tensor) \
            and done["features"].shape[0] == len(dataset):
        return done["features"]
    if isinstance(chunk_batches, bool) or not isinstance(chunk_batches, int) or chunk_batches < 1:
        raise ValueError(f"chunk_batches: expected a positive integer, got {chunk_batches!r}")
    chunks_dir = path.with_suffix(".chunks")
    chunks_dir.mkdir(parents=True, exist_ok=True)
    per_chunk = batch_size * chunk_batches
    n_chunks = (len(dataset) + per_chunk - 1) // per_chunk
    bounds = [(c * per_chunk, min(len(dataset), (c + 1) * per_chunk)) for c in range(n_chunks)]
    parts: list[torch.Tensor | None] = []
    for c, (lo, hi) in enumerate(bounds):
        feats = safe_load(chunks_dir / f"{c:05d}.pt")
        parts.append(feats if isinstance(feats, torch.Tensor) and feats.shape[0] == hi - lo else None)
    missing = [c for c, p in enumerate(parts) if p is None]
    bar = tqdm(total=len(dataset), desc=f"features {dataset.name}/{dataset.split}", disable=not progress)
    bar.update(len(dataset) - sum(bounds[c][1] - bounds[c][0] for c in missing))
    if missing:
        # One loader over every missing chunk (workers start once); every chunk but the
        # dataset's last holds a whole number of batches, so batches never straddle chunks.
        indices = [i for c in missing for i in range(*bounds[c])]
        old_transform = dataset.transform
        dataset.transform = backbone.preprocess
        try:
            loader = make_loader(torch.utils.data.Subset(dataset, indices), batch_size=batch_size,
                                 device=backbone.device, num_workers=num_workers)
            batches = iter(loader)
            for c in missing:
                lo, hi = bounds[c]
                out, n = [], 0
                while n < hi - lo:
                    images, _ = next(batches)
                    with autocast(prec, backbone.device):
                        out.append(backbone.encode_images(images.to(backbone.device, non_blocking=True)).float().cpu())
                    n += len(images)
                    bar.update(len(images))
                parts[c] = torch.cat(out)
                atomic_save(parts[c], chunks_dir / f"{c:05d}.pt")
            del batches, loader
        finally:
            dataset.transform = old_transform
    bar.close()
    features = torch.cat(parts) if parts else torch.empty(0)
    atomic_save({"features": features, "labels": dataset.labels.clone(), "precision": prec,
                 "backbone": backbone_identity(backbone), "data": dataset_identity(dataset)}, path)
    shutil.rmtree(chunks_dir, ignore_errors=True)
    return features
