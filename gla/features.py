"""Image features on disk, keyed by everything that changes them.

:func:`cached_features` computes the image features of a dataset with a backbone, or
reads them from the cache. The key covers the backbone (name, pretrained tag, or the
checkpoint file's content hash), the preprocessing, the dataset (name, split, the exact
list of items and labels, so shots and seed are covered), and the model's precision.
Writes are atomic; an interrupted extraction resumes from its finished chunks; a corrupt
or mismatched file is detected and rebuilt. Once cached, the images are not read again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from .cache import atomic_save, cache_key, safe_load


def file_hash(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's content (for checkpoint paths in cache keys)."""
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


def features_path(backbone, dataset, cache_dir: str | os.PathLike) -> Path:
    key = cache_key({"backbone": backbone_identity(backbone), "data": dataset_identity(dataset)})
    return Path(cache_dir) / "features" / f"{dataset.name or 'data'}-{dataset.split or 'x'}-{key}.pt"


def cached_features(backbone, dataset, *, cache_dir: str | os.PathLike, batch_size: int = 256,
                    num_workers: int = 0, chunk_batches: int = 20, progress: bool = True) -> torch.Tensor:
    """L2-normalised image features ``(N, D)`` of ``dataset``, from the cache when present.

    ``dataset.transform`` is replaced by ``backbone.preprocess`` while extracting.
    Extraction is written in chunks of ``chunk_batches`` batches, so a stopped run resumes.
    """
    from tqdm import tqdm

    path = features_path(backbone, dataset, cache_dir)
    done = safe_load(path)
    if isinstance(done, dict) and done.get("features") is not None and done["features"].shape[0] == len(dataset):
        return done["features"]
    chunks_dir = path.with_suffix(".chunks")
    chunks_dir.mkdir(parents=True, exist_ok=True)
    per_chunk = batch_size * chunk_batches
    n_chunks = (len(dataset) + per_chunk - 1) // per_chunk
    old_transform = dataset.transform
    dataset.transform = backbone.preprocess
    try:
        parts = []
        bar = tqdm(total=len(dataset), desc=f"features {dataset.name}/{dataset.split}", disable=not progress)
        for c in range(n_chunks):
            lo, hi = c * per_chunk, min(len(dataset), (c + 1) * per_chunk)
            chunk_file = chunks_dir / f"{c:05d}.pt"
            feats = safe_load(chunk_file)
            if not (isinstance(feats, torch.Tensor) and feats.shape[0] == hi - lo):
                sub = torch.utils.data.Subset(dataset, range(lo, hi))
                out = []
                for images, _ in DataLoader(sub, batch_size=batch_size, num_workers=num_workers):
                    out.append(backbone.encode_images(images).cpu())
                feats = torch.cat(out)
                atomic_save(feats, chunk_file)
            parts.append(feats)
            bar.update(hi - lo)
        bar.close()
    finally:
        dataset.transform = old_transform
    features = torch.cat(parts) if parts else torch.empty(0)
    atomic_save({"features": features, "labels": dataset.labels.clone(),
                 "backbone": backbone_identity(backbone), "data": dataset_identity(dataset)}, path)
    shutil.rmtree(chunks_dir, ignore_errors=True)
    return features
