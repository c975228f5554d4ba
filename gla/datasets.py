"""One registry of datasets, world tasks and real datasets alike.

``load_dataset(name, split, ...)`` returns a :class:`LabelledImages`: a torch ``Dataset``
of ``(image, label)`` pairs with the class names, the zero-shot prompt templates and the
labels as a tensor. World tasks are rendered on demand from a
:class:`gla.world.WorldConfig`; real datasets are read from a data root in the layouts
their users already have (see :mod:`gla.real_datasets`).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import torch
from torch.utils.data import Dataset


@dataclass(frozen=True)
class ClassGroups:
    """Test classes that each stand for a group of the model's classes.

    ObjectNet's 113 ImageNet-overlapping classes each map to one or more of ImageNet's
    1000 classes; a 1000-way model's logit for an ObjectNet class is the maximum over its
    group (:func:`gla.real_datasets.project_logits`). Labels are already group indices.
    """

    groups: tuple[tuple[int, ...], ...]

    def __len__(self) -> int:
        return len(self.groups)


# A test set's classes among the model's: None (all), a 1-D index tensor (a subset, as
# ImageNet-R/-A), or ClassGroups (ObjectNet).
ClassSubset = Union[torch.Tensor, ClassGroups, None]


class LabelledImages(Dataset):
    """Images with labels, class names and prompt templates.

    ``images`` is either a ``(N, 3, S, S)`` tensor in [0, 1] (the world) or a list of file
    paths read with PIL (real data); ``transform`` is applied to each image.
    ``crop_border`` pixels are cut from each side of a file image before the transform
    (ObjectNet's images carry a 2-pixel frame).
    """

    def __init__(self, images: torch.Tensor | Sequence[str], labels: torch.Tensor | Sequence[int],
                 classnames: Sequence[str], templates: Sequence[str], *, name: str = "", split: str = "",
                 transform: Callable | None = None, class_subset: ClassSubset = None,
                 meta: dict[str, Any] | None = None, crop_border: int = 0):
        self.images = images
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        if len(images) != len(self.labels):
            raise ValueError(f"images and labels: expected the same length, got {len(images)} and {len(self.labels)}")
        self.classnames = list(classnames)
        self.templates = list(templates)
        self.name, self.split = name, split
        self.transform = transform
        self.class_subset = class_subset
        self.meta = dict(meta or {})
        if crop_border < 0:
            raise ValueError(f"crop_border: expected a non-negative number of pixels, got {crop_border}")
        self.crop_border = crop_border

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def n_classes(self) -> int:
        return len(self.classnames)

    def class_counts(self) -> torch.Tensor:
        return torch.bincount(self.labels, minlength=self.n_classes)

    def __getitem__(self, i: int):
        if isinstance(self.images, torch.Tensor):
            img = self.images[i]
        else:
            from PIL import Image

            with Image.open(self.images[i]) as im:
                img = im.convert("RGB")
            if self.crop_border:
                b = self.crop_border
                img = img.crop((b, b, img.width - b, img.height - b))
        if self.transform is not None:
            img = self.transform(img)
        return img, int(self.labels[i])

    def subset(self, indices: Sequence[int] | torch.Tensor, split: str | None = None) -> "LabelledImages":
        idx = torch.as_tensor(indices, dtype=torch.long)
        imgs = self.images[idx] if isinstance(self.images, torch.Tensor) else [self.images[i] for i in idx.tolist()]
        return LabelledImages(imgs, self.labels[idx], self.classnames, self.templates, name=self.name,
                              split=split or self.split, transform=self.transform,
                              class_subset=self.class_subset, meta=self.meta, crop_border=self.crop_border)


def few_shot_indices(labels: Sequence[int] | torch.Tensor, shots: int, seed: int) -> list[int]:
    """CoOp's few-shot sampling: per class (in label order) ``shots`` items without
    replacement (all of them when a class has fewer), with Python's ``random`` seeded by
    ``seed``. CoOp draws the validation set after the training set with the same
    generator and ``min(shots, 4)``; :func:`few_shot_split` does both."""
    if shots < 1:
        raise ValueError(f"shots: expected a positive number of images per class, got {shots}")
    rng = random.Random(seed)
    return _sample(torch.as_tensor(labels).tolist(), shots, rng)


def _sample(labels: list[int], shots: int, rng: random.Random) -> list[int]:
    by_class: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        by_class.setdefault(y, []).append(i)
    out: list[int] = []
    for y in sorted(by_class):
        items = by_class[y]
        out.extend(rng.sample(items, shots) if len(items) >= shots else items)
    return out


def few_shot_split(train: LabelledImages, val: LabelledImages, shots: int, seed: int
                   ) -> tuple[LabelledImages, LabelledImages]:
    """k-shot training set and min(k, 4)-shot validation set, CoOp's protocol, by seed."""
    if shots < 1:
        raise ValueError(f"shots: expected a positive number of images per class, got {shots}")
    rng = random.Random(seed)
    tr = _sample(train.labels.tolist(), shots, rng)
    va = _sample(val.labels.tolist(), min(shots, 4), rng)
    return train.subset(tr), val.subset(va)


@dataclass
class DatasetEntry:
    """A registered dataset: its loader and what it is."""

    name: str
    loader: Callable[..., LabelledImages]
    splits: tuple[str, ...]
    kind: str  # "world" or "real"
    role: str = ""
    description: str = ""
    extra: dict = field(default_factory=dict)


REGISTRY: dict[str, DatasetEntry] = {}


def register(entry: DatasetEntry) -> None:
    REGISTRY[entry.name] = entry


def list_datasets(kind: str | None = None) -> list[str]:
    """Names of registered datasets (``kind``: "world" or "real")."""
    _ensure_registered()
    return [n for n, e in REGISTRY.items() if kind is None or e.kind == kind]


def load_dataset(name: str, split: str, *, root: str | os.PathLike | None = None, transform: Callable | None = None,
                 **kwargs: Any) -> LabelledImages:
    """Load one split of a registered dataset.

    Parameters
    ----------
    name : str
        A name from :func:`list_datasets`.
    split : str
        ``train``, ``val`` or ``test`` (what the dataset has).
    root : path, optional
        Data root of real datasets (default: the ``GLA_DATA_ROOT`` environment variable).
    transform : callable, optional
        Applied to each image (a backbone's ``preprocess``).
    **kwargs
        Passed to the loader (world tasks take ``world=WorldConfig(...)`` and ``seed``).
    """
    _ensure_registered()
    if name not in REGISTRY:
        raise ValueError(f"name: unknown dataset '{name}'; known: {', '.join(list_datasets())}")
    entry = REGISTRY[name]
    if split not in entry.splits:
        raise ValueError(f"split: dataset '{name}' has splits {entry.splits}, not '{split}'")
    if entry.kind == "real":
        root = root or os.environ.get("GLA_DATA_ROOT")
        if not root:
            raise ValueError(f"root: dataset '{name}' is read from disk; pass root=... or set GLA_DATA_ROOT")
        return entry.loader(split=split, root=root, transform=transform, **kwargs)
    return entry.loader(split=split, transform=transform, **kwargs)


def _world_loader(task: str):
    def load(split: str, transform: Callable | None = None, world=None, seed: int = 0,
             scale: float = 1.0) -> LabelledImages:
        from .world import World, WorldConfig, make_split
        from .world.tasks import TASKS

        w = World(world if world is not None else WorldConfig())
        s = make_split(w, task, split, seed=seed, scale=scale)
        return LabelledImages(s.images, s.labels, s.classnames, TASKS[task].templates, name=task, split=split,
                              transform=transform, class_subset=s.class_subset,
                              meta={"concepts": s.concepts, "world": w})
    return load


_registered = False


def _ensure_registered() -> None:
    global _registered
    if _registered:
        return
    _registered = True
    from .world.tasks import TASKS

    for name, spec in TASKS.items():
        register(DatasetEntry(name, _world_loader(name), spec.splits, "world", spec.role, spec.description))
    try:
        from . import real_datasets  # noqa: F401  (registers the real datasets)
    except ImportError:
        pass
