"""Labelled images: the one dataset type every loader returns.

torchvision (to turn a tensor image into PIL for a PIL transform) is imported where it is
used: it takes seconds to import and tensor datasets such as the world's never need it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset

from .classes import ClassSubset


class ImageReadError(OSError):
    """An image file that cannot be read or decoded (the message names file and dataset)."""


class LabelledImages(Dataset):
    """Images with labels, class names and prompt templates.

    Parameters
    ----------
    images : torch.Tensor or sequence of str
        A ``(N, 3, S, S)`` tensor in [0, 1] (the world) or file paths read with PIL
        (real data).
    labels : torch.Tensor or sequence of int
        ``(N,)`` class indices into ``classnames``.
    classnames, templates : sequence of str
        Class names (the model's head) and zero-shot prompt templates (``{}`` marks the
        class name).
    name, split : str
        The registry name and split; they identify the items in caches.
    transform : callable, optional
        Applied to each image (a backbone's ``preprocess``). A tensor image is handed to it
        as a tensor; see :class:`PILTensorImages` for tensors that a PIL preprocess reads.
    class_subset : ClassSubset
        The test classes among the model's classes (see :mod:`gla.data.classes`).
    meta : dict, optional
        Anything else a reader knows (wnids, folders, the world).
    crop_border : int
        Pixels cut from each side of a file image before the transform (ObjectNet's
        images carry a 2-pixel frame).

    Notes
    -----
    :meth:`subset` and :meth:`with_transform` return the same class with every
    attribute kept. A file PIL cannot decode (a truncated JPEG) raises
    :class:`ImageReadError` naming the file and the dataset.
    """

    def __init__(self, images: torch.Tensor | Sequence[str], labels: torch.Tensor | Sequence[int],
                 classnames: Sequence[str], templates: Sequence[str], *, name: str = "", split: str = "",
                 transform: Callable | None = None, class_subset: ClassSubset = None,
                 meta: dict[str, Any] | None = None, crop_border: int = 0):
        self.images = images
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        if self.labels.ndim != 1:
            raise ValueError(f"labels: expected a 1-D sequence of class indices, got shape {tuple(self.labels.shape)}")
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
        """Number of classes (``len(classnames)``)."""
        return len(self.classnames)

    def class_counts(self) -> torch.Tensor:
        """``(n_classes,)`` images per class."""
        return torch.bincount(self.labels, minlength=self.n_classes)

    def _read_file(self, i: int):
        path = self.images[i]
        try:
            with Image.open(path) as im:
                img = im.convert("RGB")
        except (OSError, SyntaxError, ValueError) as exc:  # PIL: truncated/corrupt files, unknown formats
            where = f"dataset '{self.name}'" + (f" (split '{self.split}')" if self.split else "")
            raise ImageReadError(f"{where}: cannot read image '{path}' ({type(exc).__name__}: {exc}); "
                                 "the file is missing, truncated or not an image") from exc
        if self.crop_border:
            b = self.crop_border
            img = img.crop((b, b, img.width - b, img.height - b))
        return img

    def _apply(self, img):
        return self.transform(img) if self.transform is not None else img

    def __getitem__(self, i: int):
        img = self.images[i] if isinstance(self.images, torch.Tensor) else self._read_file(i)
        return self._apply(img), int(self.labels[i])

    def _copy(self, **changes) -> LabelledImages:
        new = copy.copy(self)
        new.meta = dict(self.meta)
        for k, v in changes.items():
            setattr(new, k, v)
        return new

    def subset(self, indices: Sequence[int] | torch.Tensor, split: str | None = None) -> LabelledImages:
        """The items at ``indices`` (in that order), same class and attributes.

        Parameters
        ----------
        indices : sequence of int or torch.Tensor
            Positions into this dataset.
        split : str, optional
            A new split name (default: keep this one).
        """
        idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        imgs = self.images[idx] if isinstance(self.images, torch.Tensor) else [self.images[i] for i in idx.tolist()]
        return self._copy(images=imgs, labels=self.labels[idx], split=split or self.split)

    def with_transform(self, transform: Callable | None) -> LabelledImages:
        """The same items with another transform (same class, every attribute kept)."""
        return self._copy(transform=transform)


class PILTensorImages(LabelledImages):
    """Tensor images that a PIL-based preprocess can read (CIFAR-100).

    ``images`` is a ``(N, 3, S, S)`` tensor in [0, 1]. Without a transform an item is the
    tensor. With one, the image is converted to a PIL image first (what open_clip's
    preprocess expects); a transform that rejects PIL images with a ``TypeError`` (a
    tensor-only transform, such as the world backbone's normalisation) gets the tensor.
    """

    def __getitem__(self, i: int):
        img = self.images[i]
        if self.transform is None:
            return img, int(self.labels[i])
        from torchvision.transforms.functional import to_pil_image  # torchvision: seconds to import, used here only

        try:
            return self.transform(to_pil_image(img)), int(self.labels[i])
        except TypeError:
            return self.transform(img), int(self.labels[i])
