"""Few-shot draws and hold-outs, matching the reference code draw for draw.

- :func:`few_shot_indices` / :func:`few_shot_split`: Dassl's ``generate_fewshot_dataset``
  as CoOp calls it (KaiyangZhou/Dassl.pytorch ``dassl/data/datasets/base_dataset.py``
  L167-223; CoOp ``datasets/oxford_pets.py`` L44-45): classes in the order their labels
  first appear, ``random.sample`` per class, train then val (``min(k, 4)``) on one
  generator seeded with the run's seed.
- :func:`imagenet_few_shot_split`: GLA's ImageNet split (BeierZhu/GLA
  ``GLA.FS.public/datasets/imagenet.py`` L59-77 and L116-146 with ``Dassl.ProGrad.pytorch``
  ``base_dataset.py`` L199-249): ``2k`` per class drawn from the full train set, the
  first ``k`` train and the next ``k`` val; for ``k >= 32`` val is ImageNet-LT's val list
  (images of the ImageNet train folder) and train a ``k``-shot draw from the rest.
- :func:`balanced_holdout`: the class-balanced hold-out that serves as val where a
  dataset has no official val split (ImageNet and CIFAR-100 in the many-shot protocol).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import PurePath

import torch

from .images import LabelledImages
from .registry import dataset_entry, load_dataset

IMAGENET_LT_VAL_FROM_SHOTS = 32


def _labels_list(labels, what: str = "labels") -> list[int]:
    t = torch.as_tensor(labels)
    if t.ndim != 1:
        raise ValueError(f"{what}: expected a 1-D sequence of class indices, got shape {tuple(t.shape)}")
    if t.numel() and (t.dtype.is_floating_point or t.dtype == torch.bool):
        raise ValueError(f"{what}: expected integer class indices, got dtype {t.dtype}")
    return t.tolist()


def _check_shots(shots: int) -> int:
    if isinstance(shots, bool) or not isinstance(shots, int) or shots < 1:
        raise ValueError(f"shots: expected a positive integer number of images per class, got {shots!r}")
    return shots


def _by_class(labels: list[int]) -> dict[int, list[int]]:
    """Positions per class, classes in order of first appearance (Dassl's defaultdict)."""
    by_class: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        by_class.setdefault(y, []).append(i)
    return by_class


def _draw(labels: list[int], shots: int, rng: random.Random) -> list[int]:
    out: list[int] = []
    for items in _by_class(labels).values():
        # A class with fewer items keeps all of them in list order and draws nothing.
        out.extend(rng.sample(items, shots) if len(items) >= shots else items)
    return out


def few_shot_indices(labels: Sequence[int] | torch.Tensor, shots: int, seed: int) -> list[int]:
    """Dassl's few-shot draw: ``shots`` items per class, as CoOp samples them.

    Parameters
    ----------
    labels : sequence of int or torch.Tensor
        ``(N,)`` labels in split-file order.
    shots : int
        Items per class (a class with fewer keeps all of them, in list order).
    seed : int
        Seed of the one ``random.Random`` (Dassl seeds the global ``random`` with it).

    Returns
    -------
    list of int
        Positions into ``labels``: classes in the order their labels first appear (not
        sorted), within a class in the order ``random.sample`` draws them.
    """
    _check_shots(shots)
    return _draw(_labels_list(labels), shots, random.Random(seed))


def few_shot_split(train: LabelledImages, val: LabelledImages, shots: int, seed: int
                   ) -> tuple[LabelledImages, LabelledImages]:
    """CoOp's few-shot protocol: ``shots`` per class from train, then ``min(shots, 4)``
    per class from val, both on one generator seeded with ``seed``.

    Parameters
    ----------
    train, val : LabelledImages
        The full train and val splits (CoOp's ``split_zhou_*.json`` order).
    shots : int
        Training images per class.
    seed : int
        The run's seed.

    Returns
    -------
    (LabelledImages, LabelledImages)
        The k-shot train and val sets.
    """
    _check_shots(shots)
    rng = random.Random(seed)
    tr = _draw(train.labels.tolist(), shots, rng)
    va = _draw(val.labels.tolist(), min(shots, 4), rng)
    return train.subset(tr), val.subset(va)


def _gla_imagenet_indices(labels: list[int], shots: int, rng: random.Random) -> tuple[list[int], list[int]]:
    tr: list[int] = []
    va: list[int] = []
    for items in _by_class(labels).values():
        picked = rng.sample(items, 2 * shots) if len(items) >= 2 * shots else items
        tr.extend(picked[:shots])
        va.extend(picked[shots:])
    return tr, va


def _item_key(path) -> str:
    """``<wnid>/<file>``: identifies an ImageNet train image whatever the root."""
    p = PurePath(str(path))
    return f"{p.parent.name}/{p.name}"


def imagenet_few_shot_split(train: LabelledImages, shots: int, seed: int, lt_val: LabelledImages | None = None
                            ) -> tuple[LabelledImages, LabelledImages]:
    """GLA's ImageNet few-shot split.

    For ``shots < 32`` (BeierZhu/GLA ``GLA.FS.public/datasets/imagenet.py`` L60-68 and
    ``Dassl.ProGrad.pytorch`` ``base_dataset.py`` L199-249): per class, in order of first
    appearance, ``random.sample(items, 2k)`` after seeding; the first ``k`` are train and
    the next ``k`` val; a class with fewer than ``2k`` items keeps list order (first
    ``k`` train, the rest val).

    For ``shots >= 32`` (``imagenet.py`` L69-77 and L116-146): val is ImageNet-LT's val
    list (``ImageNet_LT/ImageNet_LT_val.txt``, 20 images per class, all taken from the
    ImageNet train folder), kept in train-folder order; train is Dassl's ``k``-per-class
    draw from the remaining train images.

    Parameters
    ----------
    train : LabelledImages
        The FULL official ImageNet train set (``load_dataset("imagenet", "train_full")``),
        in its listing order (ours is sorted; GLA lists folders unsorted, so exact draws
        need the same order, or GLA's cached split files).
    shots : int
        k.
    seed : int
        The run's seed.
    lt_val : LabelledImages, optional
        ImageNet-LT's val split (``load_dataset("imagenet_lt", "val")``); required when
        ``shots >= 32``. Its images are matched to ``train`` by ``<wnid>/<file name>``.

    Returns
    -------
    (LabelledImages, LabelledImages)
        Train and val, both subsets of ``train`` (val named split ``"val"``).
    """
    _check_shots(shots)
    rng = random.Random(seed)
    labels = train.labels.tolist()
    if shots >= IMAGENET_LT_VAL_FROM_SHOTS:
        if lt_val is None:
            raise ValueError(f"lt_val: GLA's ImageNet split with shots >= {IMAGENET_LT_VAL_FROM_SHOTS} (got {shots}) "
                             "takes val from ImageNet-LT's val list; pass load_dataset('imagenet_lt', 'val')")
        if isinstance(train.images, torch.Tensor):
            raise ValueError("train: expected ImageNet's file images (paths) to match ImageNet-LT's val list")
        wanted = {_item_key(p) for p in lt_val.images}
        is_val = [_item_key(p) in wanted for p in train.images]
        found = sum(is_val)
        if found != len(wanted):
            raise ValueError(f"lt_val: {len(wanted) - found} of ImageNet-LT's {len(wanted)} val images are not in the "
                             "ImageNet train set given (they are matched by '<wnid>/<file name>')")
        va = [i for i, v in enumerate(is_val) if v]
        pool = [i for i, v in enumerate(is_val) if not v]
        tr = [pool[j] for j in _draw([labels[i] for i in pool], shots, rng)]
        return train.subset(tr), train.subset(va, split="val")
    tr, va = _gla_imagenet_indices(labels, shots, rng)
    return train.subset(tr), train.subset(va, split="val")


def balanced_holdout(labels: Sequence[int] | torch.Tensor, per_class: int, seed: int) -> list[int]:
    """A class-balanced hold-out: ``per_class`` items of each class, drawn by seed.

    Classes are visited in ascending label order; each gives ``min(per_class, n - 1)``
    items (``random.sample``), so at least one item of every class stays behind.

    Parameters
    ----------
    labels : sequence of int or torch.Tensor
        ``(N,)`` labels.
    per_class : int
        Items held out per class (positive).
    seed : int
        Seed of the ``random.Random``.

    Returns
    -------
    list of int
        Sorted positions of the held-out items.
    """
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"per_class: expected a positive number of held-out images per class, got {per_class!r}")
    by_class = _by_class(_labels_list(labels))
    small = sorted(y for y, items in by_class.items() if len(items) < 2)
    if small:
        raise ValueError(f"balanced_holdout: class(es) {small[:10]}{' ...' if len(small) > 10 else ''} have a single "
                         "image; a hold-out needs at least 2 per class (one to hold out, one to keep for training)")
    rng = random.Random(seed)
    held: list[int] = []
    for y in sorted(by_class):
        items = by_class[y]
        held.extend(rng.sample(items, min(per_class, len(items) - 1)))
    return sorted(held)


#: Hook for cached split files (CoOp's ``split_fewshot/shot_{k}-seed_{s}.pkl``, GLA's
#: ``imagenet/preprocessed.pkl``): called as ``cached(name=, train=, val=, shots=, seed=,
#: root=)`` and returns ``(train_k, val_k, how)`` or ``None`` to draw as usual.
CachedSplit = Callable[..., "tuple[LabelledImages, LabelledImages, str] | None"]


def sample_few_shot(name: str, train: LabelledImages, val: LabelledImages | None, shots: int, seed: int, *,
                    root=None, cached: CachedSplit | None = None) -> tuple[LabelledImages, LabelledImages, str]:
    """The few-shot train and val sets of a registered dataset, drawn its own way.

    Parameters
    ----------
    name : str
        A registry name; its entry's ``few_shot`` says how to draw: ``"coop"``
        (:func:`few_shot_split`) or ``"gla-imagenet"`` (:func:`imagenet_few_shot_split`).
    train : LabelledImages
        The full train pool. For ``"gla-imagenet"`` this is the full official train set
        (``load_dataset("imagenet", "train_full")``), not the many-shot ``train`` split
        that lacks the hold-out.
    val : LabelledImages or None
        The val split (``"coop"``); unused by ``"gla-imagenet"``.
    shots, seed : int
        k and the run's seed.
    root : path, optional
        Data root, to read ImageNet-LT's val list for ``"gla-imagenet"`` with ``shots >= 32``.
    cached : callable, optional
        HOOK for cached split files (:data:`CachedSplit`, read by ``gla.pickles``): tried
        first; when it returns ``None`` the split is drawn here.

    Returns
    -------
    (LabelledImages, LabelledImages, str)
        Train, val, and ``how`` (for result rows): ``"coop"``, ``"gla-imagenet"``,
        ``"gla-imagenet+lt-val"`` or what the hook returned.
    """
    entry = dataset_entry(name)
    _check_shots(shots)
    if cached is not None:  # ---- hook: gla.pickles plugs in here
        hit = cached(name=name, train=train, val=val, shots=shots, seed=seed, root=root)
        if hit is not None:
            return hit
    if entry.few_shot == "gla-imagenet":
        held = train.meta.get("holdout_per_class", 0)
        if held:
            raise ValueError(f"train: GLA's ImageNet few-shot split draws from the full official train set, but this "
                             f"'{train.split}' split lacks a hold-out of {held} images per class; pass "
                             f"load_dataset('{name}', 'train_full')")
        lt_val = None
        if shots >= IMAGENET_LT_VAL_FROM_SHOTS:
            lt_val = load_dataset("imagenet_lt", "val", root=root)
        tr, va = imagenet_few_shot_split(train, shots, seed, lt_val=lt_val)
        return tr, va, "gla-imagenet+lt-val" if lt_val is not None else "gla-imagenet"
    if val is None:
        raise ValueError(f"val: dataset '{name}' draws CoOp's few-shot split and needs its val split")
    tr, va = few_shot_split(train, val, shots, seed)
    return tr, va, "coop"
