"""Data loaders and mixed precision for the real (GPU, ImageNet-sized) path.

Two small helpers shared by feature extraction, zero-shot heads, fine-tuning and
prediction, so that every loop reads images the same way:

- :func:`make_loader` builds a ``DataLoader`` with worker processes (their number from the
  CPU count unless given; none for images already in memory as a tensor, such as the
  miniature world's), pinned memory and persistent workers on CUDA.
- :func:`resolve_precision` and :func:`autocast` turn a ``precision`` setting (``"fp32"``,
  ``"bf16"``, ``"fp16"``; ``None`` picks ``"fp32"`` on the CPU and ``"fp16"`` on CUDA,
  open_clip's ``"amp"`` training default) into a ``torch.autocast`` context.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset

PRECISIONS = ("fp32", "bf16", "fp16")
_ALIASES = {"amp": "fp16", "amp_fp16": "fp16", "amp_bf16": "bf16", "amp_bfloat16": "bf16", "float32": "fp32",
            "float16": "fp16", "bfloat16": "bf16"}
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def default_num_workers() -> int:
    """Worker processes for loading image files: ``min(8, cpu_count - 1)``, at least 0."""
    return max(0, min(8, (os.cpu_count() or 1) - 1))


def in_memory(dataset: Any) -> bool:
    """True when ``dataset`` serves images already held in memory as a tensor.

    Recognises :class:`gla.data.LabelledImages` over a tensor (the world's images),
    ``torch.utils.data.TensorDataset`` and ``Subset`` of either; worker processes would
    only copy such data between processes.
    """
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    if isinstance(dataset, torch.utils.data.TensorDataset):
        return True
    return isinstance(getattr(dataset, "images", None), torch.Tensor)


def resolve_num_workers(num_workers: int | None, dataset: Any) -> int:
    """``num_workers`` checked, or the default for ``dataset`` when None (0 for in-memory data)."""
    if num_workers is None:
        return 0 if in_memory(dataset) else default_num_workers()
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers: expected a non-negative integer or None (automatic), got {num_workers!r}")
    return num_workers


def make_loader(dataset: Dataset, *, batch_size: int, device: str | torch.device = "cpu",
                num_workers: int | None = None, shuffle: bool = False, sampler: Any = None,
                generator: torch.Generator | None = None, drop_last: bool = False) -> DataLoader:
    """The project's ``DataLoader``: workers for files, pinned memory and persistent workers on CUDA.

    Parameters
    ----------
    dataset : Dataset
        Yields ``(image, label)`` pairs.
    batch_size : int
        Images per batch (positive).
    device : str or torch.device
        Where the batches go; on CUDA memory is pinned and workers persist across epochs.
    num_workers : int, optional
        Worker processes; None picks :func:`default_num_workers` for image files and 0 for
        in-memory tensors (:func:`in_memory`).
    shuffle, sampler, generator, drop_last
        As in ``torch.utils.data.DataLoader``. With ``generator`` the shuffling order and the
        workers' seeds follow it, so a run is reproducible (and resumable, see
        :func:`gla.finetune.finetune`).

    Returns
    -------
    torch.utils.data.DataLoader
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
    workers = resolve_num_workers(num_workers, dataset)
    cuda = torch.device(device).type == "cuda"
    kwargs: dict[str, Any] = {}
    if workers > 0:
        kwargs.update(persistent_workers=cuda, prefetch_factor=4 if cuda else 2)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle if sampler is None else False,
                      sampler=sampler, generator=generator, num_workers=workers, pin_memory=cuda,
                      drop_last=drop_last, **kwargs)


def resolve_precision(precision: str | None, device: str | torch.device = "cpu") -> str:
    """The canonical precision name (``"fp32"``, ``"bf16"`` or ``"fp16"``).

    ``None`` (or ``"auto"``) is ``"fp32"`` on the CPU and ``"fp16"`` autocast on CUDA
    (open_clip's ``"amp"``). open_clip's spellings ``"amp"`` and ``"amp_bf16"`` are
    accepted as ``"fp16"`` and ``"bf16"``.
    """
    if precision is None or precision == "auto":
        return "fp16" if torch.device(device).type == "cuda" else "fp32"
    if not isinstance(precision, str):
        raise ValueError(f"precision: expected one of {PRECISIONS} or None, got {precision!r}")
    p = _ALIASES.get(precision.lower(), precision.lower())
    if p not in PRECISIONS:
        raise ValueError(f"precision: expected one of {PRECISIONS} (or 'amp', 'amp_bf16', None), got {precision!r}")
    return p


def autocast(precision: str | None, device: str | torch.device = "cpu") -> AbstractContextManager:
    """``torch.autocast`` for ``precision`` on ``device`` (a disabled one for ``"fp32"``)."""
    p = resolve_precision(precision, device)
    dev = torch.device(device)
    if p == "fp32":
        return torch.autocast(device_type=dev.type, enabled=False)
    return torch.autocast(device_type=dev.type, dtype=_DTYPES[p])
