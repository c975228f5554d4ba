"""CIFAR-100 from torchvision's files (``cifar-100-python/{train,test,meta}``)."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path

import torch

from ._files import require
from .images import PILTensorImages
from .registry import DatasetEntry, data_root, register_dataset
from .sampling import balanced_holdout
from .templates import zero_shot_templates

CIFAR_LAYOUT = "  cifar-100-python/{train,test,meta}   (torchvision's CIFAR-100 files)"


def load_cifar100(split: str, *, root: str | os.PathLike | None, transform: Callable | None = None,
                  val_per_class: int = 10, seed: int = 0) -> PILTensorImages:
    """CIFAR-100 from torchvision's files.

    Parameters
    ----------
    split : {"train", "val", "test"}
        ``val`` is a class-balanced hold-out of ``val_per_class`` training images per
        class (by ``seed``, :func:`gla.data.sampling.balanced_holdout`), removed from
        ``train``; ``test`` is the official test set.
    root : path
        Data root (or ``GLA_DATA_ROOT``).
    transform : callable, optional
        Receives PIL images (:class:`~gla.data.images.PILTensorImages`).
    val_per_class, seed : int
        The hold-out.

    Returns
    -------
    PILTensorImages
        ``(N, 3, 32, 32)`` images in [0, 1], fine labels, class names with ``_`` as spaces.
    """
    root = Path(data_root("cifar100", root))
    base = root / "cifar-100-python"
    part = base / ("test" if split == "test" else "train")
    require("cifar100", root, CIFAR_LAYOUT, base / "meta", part)
    try:
        with open(base / "meta", "rb") as fh:
            classes = [c.replace("_", " ") for c in pickle.load(fh, encoding="latin1")["fine_label_names"]]
        with open(part, "rb") as fh:
            d = pickle.load(fh, encoding="latin1")
        data, fine = d["data"], d["fine_labels"]
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError) as exc:
        raise ValueError(f"cifar100: {base} does not hold torchvision's CIFAR-100 pickles ({exc!r})") from exc
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32)).float() / 255.0
    labels = torch.tensor(fine)
    if split in ("train", "val"):
        held = torch.zeros(len(labels), dtype=torch.bool)
        held[balanced_holdout(labels, val_per_class, seed)] = True
        keep = held if split == "val" else ~held
        images, labels = images[keep], labels[keep]
    return PILTensorImages(images, labels, classes, zero_shot_templates("cifar100"), name="cifar100", split=split,
                           transform=transform)


register_dataset(DatasetEntry("cifar100", load_cifar100, ("train", "val", "test"), "real", "CIFAR-100",
                              "CIFAR-100 (torchvision files); val = balanced hold-out of train",
                              options=("val_per_class", "seed"), layout=CIFAR_LAYOUT))
