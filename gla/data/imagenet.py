"""ImageNet and its distribution-shift test sets, in the layouts their users have.

Class order and names come from the table shipped with the package
(``gla/data/imagenet_classes.json``): the 1000 ImageNet wnids sorted (the label order of
an ``ImageFolder`` over the train folder, and of WiSE-FT) with OpenAI's CLIP class names,
and the published 200-wnid lists of ImageNet-A and ImageNet-R. So the shifted sets load
without the ImageNet train folder, a folder holding a subset of ImageNet (ImageNet-100)
gets the real names of its wnids, and an unknown wnid is an error that names it. Hidden
folders (``.ipynb_checkpoints``) are ignored.

Splits of ``imagenet`` and which protocol uses which:

- ``test``: the official 50,000 validation images (every protocol's test set);
- ``train_full``: the full official train set. The few-shot protocol draws from it
  (GLA's split, :func:`gla.data.sampling.imagenet_few_shot_split`);
- ``train`` and ``val``: the many-shot protocol's train set and its class-balanced
  hold-out of ``val_per_class`` training images per class (by ``seed``;
  :func:`gla.data.sampling.balanced_holdout`), on which the prior and every choice are made.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import torch

from ._files import class_folder_images, layout_error, list_images, require, visible_dirs
from .classes import ClassGroups
from .images import LabelledImages
from .registry import DatasetEntry, data_root, register_dataset
from .sampling import balanced_holdout
from .templates import zero_shot_templates

_TABLE = Path(__file__).resolve().parent / "imagenet_classes.json"


@lru_cache(maxsize=1)
def _table() -> dict:
    data = json.loads(_TABLE.read_text())
    data["wnids"] = [w for w, _ in data["classes"]]
    data["names"] = [n for _, n in data["classes"]]
    data["index"] = {w: i for i, w in enumerate(data["wnids"])}
    return data


def imagenet_wnids() -> list[str]:
    """The 1000 ImageNet wnids, sorted: the class order of every 1000-way model here."""
    return list(_table()["wnids"])


def imagenet_classnames(wnids: list[str] | None = None) -> list[str]:
    """OpenAI's CLIP class names of ImageNet classes.

    Parameters
    ----------
    wnids : list of str, optional
        Wnids to name (default: all 1000, in sorted-wnid order). An unknown wnid is an error.

    Returns
    -------
    list of str
        Names in the order given. Two names repeat (``crane``, ``maillot``): join
        per-class data by index, not by name.
    """
    t = _table()
    if wnids is None:
        return list(t["names"])
    return [t["names"][i] for i in imagenet_indices(wnids)]


def imagenet_indices(wnids: list[str], dataset: str = "imagenet") -> list[int]:
    """Positions of ``wnids`` among the 1000 sorted wnids; unknown wnids are named in the error."""
    index = _table()["index"]
    unknown = [w for w in wnids if w not in index]
    if unknown:
        raise ValueError(f"{dataset}: folder(s) {', '.join(unknown[:10])}{' ...' if len(unknown) > 10 else ''} "
                         "are not ImageNet-1k wnids (expected folders named like 'n01440764')")
    return [index[w] for w in wnids]


def imagenet_subset_wnids(name: str) -> list[str]:
    """The published 200 wnids of ``imagenet_a`` or ``imagenet_r``, in label order.

    Their positions among the 1000 sorted wnids equal WiSE-FT's ``CLASS_SUBLIST``
    (``src/datasets/imagenet_a.py`` L9-26, ``imagenet_r.py`` L9-26).
    """
    if name not in ("imagenet_a", "imagenet_r"):
        raise ValueError(f"name: expected 'imagenet_a' or 'imagenet_r', got '{name}'")
    return list(_table()[f"{name}_wnids"])


IMAGENET_LAYOUT = """  imagenet/
    images/train/<wnid>/*.JPEG      (1000 synset folders, or a subset such as ImageNet-100)
    images/val/<wnid>/*.JPEG        (the official 50,000 validation images, sorted into synset folders)"""


def _class_wnids(root: Path) -> list[str]:
    base = root / "imagenet" / "images"
    for sub in ("train", "val"):
        folder = base / sub
        if folder.is_dir():
            wnids = [d.name for d in visible_dirs(folder)]
            if not wnids:
                raise layout_error("imagenet", root, IMAGENET_LAYOUT, folder / "<wnid>")
            imagenet_indices(wnids)
            return wnids
    raise layout_error("imagenet", root, IMAGENET_LAYOUT, base / "train")


def load_imagenet(split: str, *, root: str | os.PathLike | None, transform: Callable | None = None,
                  val_per_class: int = 10, seed: int = 0) -> LabelledImages:
    """ImageNet from ``imagenet/images/{train,val}/<wnid>/`` (CoOp's layout).

    Parameters
    ----------
    split : {"train", "val", "test", "train_full"}
        See the module docstring: ``train_full`` is the full official train set (few-shot
        pool), ``train``/``val`` the many-shot split with its hold-out, ``test`` the
        official validation images.
    root : path
        Data root (or ``GLA_DATA_ROOT``).
    transform : callable, optional
        Applied to each image.
    val_per_class : int
        Hold-out images per class (``train``/``val`` only).
    seed : int
        Seed of the hold-out.

    Returns
    -------
    LabelledImages
        Classes: the wnid folders of ``images/train`` (``images/val`` when there is no
        train folder), sorted, named from the shipped table; ``meta["wnids"]`` and
        ``meta["imagenet_indices"]`` (positions among the 1000).
    """
    root = Path(data_root("imagenet", root))
    wnids = _class_wnids(root)
    sub = "val" if split == "test" else "train"
    folder = root / "imagenet" / "images" / sub
    require("imagenet", root, IMAGENET_LAYOUT, folder)
    paths, labels = class_folder_images("imagenet", root, IMAGENET_LAYOUT, folder, wnids)
    holdout = 0
    if split in ("train", "val"):
        holdout = val_per_class
        counts = torch.bincount(torch.tensor(labels), minlength=len(wnids))
        few = [wnids[i] for i in torch.nonzero(counts < 2).flatten().tolist()]
        if few:
            raise ValueError(f"imagenet: the many-shot split holds out {val_per_class} training images per class as "
                             f"val and needs at least 2 images in every class of {folder}; {len(few)} class(es) have "
                             f"fewer: {', '.join(few[:5])}{' ...' if len(few) > 5 else ''} (the few-shot protocol "
                             "reads 'train_full' and has no such need)")
        held = set(balanced_holdout(labels, val_per_class, seed))
        keep = [i for i in range(len(labels)) if (i in held) == (split == "val")]
        paths, labels = [paths[i] for i in keep], [labels[i] for i in keep]
    meta = {"wnids": wnids, "imagenet_indices": imagenet_indices(wnids),
            "holdout_per_class": holdout if split == "train" else 0}
    return LabelledImages(paths, labels, imagenet_classnames(wnids), zero_shot_templates("imagenet"),
                          name="imagenet", split=split, transform=transform, meta=meta)


SHIFT_LAYOUTS = {
    "imagenet_v2": ("imagenetv2/imagenetv2-matched-frequency-format-val", "<class index 0..999>/*.jpeg"),
    "imagenet_sketch": ("imagenet-sketch/images", "<wnid>/*.JPEG"),
    "imagenet_a": ("imagenet-adversarial/imagenet-a", "<wnid>/*.jpg (the 200 published synsets)"),
    "imagenet_r": ("imagenet-rendition/imagenet-r", "<wnid>/*.jpg (the 200 published synsets)"),
}


def _some(names: list[str], n: int = 10) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def load_imagenet_shift(name: str, split: str, *, root: str | os.PathLike | None,
                        transform: Callable | None = None) -> LabelledImages:
    """ImageNet-V2 / -Sketch / -A / -R test sets with 1000-way labels.

    Parameters
    ----------
    name : {"imagenet_v2", "imagenet_sketch", "imagenet_a", "imagenet_r"}
    split : "test"
    root : path
        Data root (or ``GLA_DATA_ROOT``); the ImageNet train folder is not needed.
    transform : callable, optional

    Returns
    -------
    LabelledImages
        Labels index the 1000 sorted wnids; ``classnames`` are the 1000 names (the
        model's head). For ImageNet-A/-R ``class_subset`` is the published 200-class
        sublist (WiSE-FT's ``CLASS_SUBLIST``, in label order); a folder set that differs
        from it (a partial download) is an error naming the missing wnids.
    """
    root = Path(data_root(name, root))
    rel, pattern = SHIFT_LAYOUTS[name]
    folder = root / rel
    layout = f"  {rel}/\n    {pattern}"
    require(name, root, layout, folder)
    dirs = visible_dirs(folder)
    subset = None
    if name in ("imagenet_a", "imagenet_r"):  # the published 200 synsets, checked before any other rule
        published = imagenet_subset_wnids(name)
        have = {d.name for d in dirs}
        missing = [w for w in published if w not in have]
        extra = sorted(have - set(published))
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing {len(missing)} of the 200 published wnids: {_some(missing)} "
                             "(a partial download?)")
            if extra:
                parts.append(f"{len(extra)} folder(s) not recognised (not among the 200 published wnids): "
                             f"{_some(extra)}")
            raise ValueError(f"{name}: {folder}: {'; '.join(parts)}")
        subset = torch.tensor(imagenet_indices(published, name))
    if name == "imagenet_v2":
        bad = [d.name for d in dirs if not d.name.isdigit() or int(d.name) >= 1000]
        if bad:
            raise ValueError(f"{name}: folder(s) {', '.join(bad[:10])} under {folder} are not class indices 0..999")
        ys = [int(d.name) for d in dirs]
    else:
        ys = imagenet_indices([d.name for d in dirs], name)
    paths, labels = [], []
    for d, y in zip(dirs, ys):
        files = list_images(d)
        paths += [str(p) for p in files]
        labels += [y] * len(files)
    if not paths:
        raise layout_error(name, root, layout, folder / pattern.split()[0])
    return LabelledImages(paths, labels, imagenet_classnames(), zero_shot_templates(name), name=name, split=split,
                          transform=transform, class_subset=subset)


OBJECTNET_LAYOUT = """  objectnet-1.0/
    images/<folder>/*.png                      (313 object folders; the 113 mapped to ImageNet are read)
    mappings/folder_to_objectnet_label.json    ({"<folder>": "<ObjectNet class>", ...})
    mappings/objectnet_to_imagenet_1k.json     ({"<ObjectNet class>": "<ImageNet label>; <ImageNet label>", ...})
    mappings/imagenet_to_label_2012_v2         (1000 lines: the ImageNet label of each 2012 class id)
    mappings/pytorch_to_imagenet_2012_id.json  ({"<sorted-wnid index>": <2012 class id>, ...})"""


def objectnet_mapping(root: str | os.PathLike) -> tuple[list[str], list[str], ClassGroups]:
    """ObjectNet's classes that overlap ImageNet, from the mapping files shipped with it.

    Parameters
    ----------
    root : path
        Data root holding ``objectnet-1.0/``.

    Returns
    -------
    (list of str, list of str, ClassGroups)
        The image folders and the ObjectNet class names of the overlapping classes
        (sorted by folder) and, for each, the indices of its ImageNet classes in
        sorted-wnid order.
    """
    root = Path(root)
    maps = root / "objectnet-1.0" / "mappings"
    files = ["folder_to_objectnet_label.json", "objectnet_to_imagenet_1k.json", "imagenet_to_label_2012_v2",
             "pytorch_to_imagenet_2012_id.json"]
    require("objectnet", root, OBJECTNET_LAYOUT, *(maps / f for f in files))
    try:
        folder_of = {label: folder for folder, label in json.loads((maps / files[0]).read_text()).items()}
        to_imagenet = json.loads((maps / files[1]).read_text())
        index_of_2012 = {int(v): int(k) for k, v in json.loads((maps / files[3]).read_text()).items()}
    except (json.JSONDecodeError, AttributeError, ValueError) as exc:
        raise ValueError(f"objectnet: a mapping file under {maps} is not in the expected format ({exc})") from exc
    label_2012 = [ln.strip() for ln in (maps / files[2]).read_text().splitlines() if ln.strip()]
    index_of_label = {lab: index_of_2012[i] for i, lab in enumerate(label_2012) if i in index_of_2012}
    groups: dict[str, tuple[int, ...]] = {}
    names: dict[str, str] = {}
    for obj_name, imagenet_labels in to_imagenet.items():
        if obj_name not in folder_of:
            raise ValueError(f"objectnet: class '{obj_name}' of objectnet_to_imagenet_1k.json has no folder in "
                             "folder_to_objectnet_label.json")
        ids = []
        for lab in imagenet_labels.split("; "):
            if lab not in index_of_label:
                raise ValueError(f"objectnet: ImageNet label '{lab}' (for '{obj_name}') is not a line of "
                                 "imagenet_to_label_2012_v2 with an index in pytorch_to_imagenet_2012_id.json")
            ids.append(index_of_label[lab])
        groups[folder_of[obj_name]] = tuple(ids)
        names[folder_of[obj_name]] = obj_name
    folders = sorted(groups)
    return folders, [names[f].lower() for f in folders], ClassGroups(tuple(groups[f] for f in folders))


def load_objectnet(split: str, *, root: str | os.PathLike | None, transform: Callable | None = None
                   ) -> LabelledImages:
    """ObjectNet's ImageNet-overlapping classes as a test set for 1000-way models.

    Labels index the overlapping classes (sorted by folder); ``class_subset`` is a
    :class:`~gla.data.classes.ClassGroups` that max-pools 1000-way logits onto them (as
    in the WiSE-FT evaluation); the 2-pixel frame of each image is cropped before the
    transform. ``classnames`` are ImageNet's (the model's head); the ObjectNet names are
    in ``meta["objectnet_classnames"]``.
    """
    root = Path(data_root("objectnet", root))
    folders, obj_names, groups = objectnet_mapping(root)
    images = root / "objectnet-1.0" / "images"
    require("objectnet", root, OBJECTNET_LAYOUT, images)
    paths, labels = class_folder_images("objectnet", root, OBJECTNET_LAYOUT, images, folders)
    if not paths:
        raise layout_error("objectnet", root, OBJECTNET_LAYOUT, images / "<folder>" / "*.png")
    return LabelledImages(paths, labels, imagenet_classnames(), zero_shot_templates("objectnet"), name="objectnet",
                          split=split, transform=transform, class_subset=groups, crop_border=2,
                          meta={"objectnet_classnames": obj_names, "folders": folders})


def _shift_loader(name: str):
    def load(split: str, *, root=None, transform=None):
        return load_imagenet_shift(name, split, root=root, transform=transform)
    load.__name__ = f"load_{name}"
    return load


register_dataset(DatasetEntry("imagenet", load_imagenet, ("train", "val", "test", "train_full"), "real", "ImageNet",
                              "ImageNet-1k (CoOp layout); train_full = official train, train/val = hold-out split",
                              options=("val_per_class", "seed"), few_shot="gla-imagenet", layout=IMAGENET_LAYOUT))
for _name, _role in [("imagenet_v2", "ImageNet-V2"), ("imagenet_sketch", "ImageNet-Sketch"),
                     ("imagenet_a", "ImageNet-A"), ("imagenet_r", "ImageNet-R")]:
    register_dataset(DatasetEntry(_name, _shift_loader(_name), ("test",), "real", _role,
                                  f"{_role} test set, 1000-way labels", shift_of="imagenet",
                                  layout=f"  {SHIFT_LAYOUTS[_name][0]}/\n    {SHIFT_LAYOUTS[_name][1]}"))
register_dataset(DatasetEntry("objectnet", load_objectnet, ("test",), "real", "ObjectNet",
                              "ObjectNet's ImageNet-overlapping classes, max-pooled groups", shift_of="imagenet",
                              layout=OBJECTNET_LAYOUT))
