"""ImageNet-LT and Places365-LT from their split files (``relpath label`` per line).

The split files are those of Liu et al. (OLTR), which ImageNet-LT/Places-LT users
already have: ``ImageNet_LT/ImageNet_LT_{train,val,test}.txt`` and
``Places_LT/Places_LT_{train,val,test}.txt``. ImageNet-LT labels are positions among the
1000 sorted wnids; its class names come from the shipped ImageNet table.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ._files import layout_error, require
from .imagenet import imagenet_classnames
from .images import LabelledImages
from .registry import DatasetEntry, data_root, register_dataset
from .templates import zero_shot_templates

LT = {
    "imagenet_lt": ("ImageNet_LT", "ImageNet_LT_{split}.txt", "imagenet/images"),
    "places365_lt": ("Places_LT", "Places_LT_{split}.txt", "places365"),
}


def lt_layout(name: str) -> str:
    """The files a long-tailed dataset's reader expects under the data root."""
    folder, pattern, default_images = LT[name]
    return (f"  {folder}/{pattern.format(split='{train,val,test}')}   (lines '<relpath> <label>')\n"
            f"  {default_images}/<relpath>   (or pass image_root=...)")


def load_lt(name: str, split: str, *, root: str | os.PathLike | None, transform: Callable | None = None,
            image_root: str | os.PathLike | None = None) -> LabelledImages:
    """ImageNet-LT / Places365-LT from their split files.

    Parameters
    ----------
    name : {"imagenet_lt", "places365_lt"}
    split : {"train", "val", "test"}
    root : path
        Data root (or ``GLA_DATA_ROOT``) holding the split-file folder.
    transform : callable, optional
    image_root : path, optional
        Where the relpaths start (default ``<root>/imagenet/images`` or ``<root>/places365``).

    Returns
    -------
    LabelledImages
        ImageNet-LT: the 1000 ImageNet classes when the labels reach 999; for a smaller
        label range (a fixture, a subset) the classes are named from the shipped table by
        the wnid folder of each label's images. Places365-LT: names from
        ``categories_places365.txt`` in the image root when present, else from the
        relpaths' folders.
    """
    root = Path(data_root(name, root))
    folder, pattern, default_images = LT[name]
    split_file = root / folder / pattern.format(split=split)
    img_root = Path(image_root) if image_root else root / default_images
    layout = lt_layout(name)
    require(name, root, layout, split_file)
    paths, labels = [], []
    for n, ln in enumerate(split_file.read_text().splitlines(), 1):
        if not ln.strip():
            continue
        parts = ln.rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].isdigit():
            raise ValueError(f"{name}: {split_file} line {n} is {ln!r}; expected '<relpath> <label>'")
        paths.append(str(img_root / parts[0].lstrip("/")))
        labels.append(int(parts[1]))
    if paths and not Path(paths[0]).exists():
        raise layout_error(name, root, layout, Path(paths[0]))
    if name == "imagenet_lt":
        classnames = _imagenet_lt_names(paths, labels, split_file)
    else:
        classnames = _places_classnames(img_root, paths, labels)
    return LabelledImages(paths, labels, classnames, zero_shot_templates(name), name=name, split=split,
                          transform=transform, meta={"split_file": str(split_file)})


def _imagenet_lt_names(paths: list[str], labels: list[int], split_file: Path) -> list[str]:
    if labels and max(labels) >= 1000:
        raise ValueError(f"imagenet_lt: {split_file} has label {max(labels)}; expected ImageNet indices 0..999")
    if labels and max(labels) == 999:
        return imagenet_classnames()
    wnids = _folder_names(paths, labels)  # a label range below 1000: name each label by its images' folder
    try:
        return imagenet_classnames(wnids)
    except ValueError as exc:
        raise ValueError(f"imagenet_lt: {split_file} covers labels 0..{len(wnids) - 1} only, so its classes are "
                         f"named by the wnid folders of their images, and {exc}") from exc


def _places_classnames(img_root: Path, paths: list[str], labels: list[int]) -> list[str]:
    cat = img_root / "categories_places365.txt"
    if cat.is_file():
        rows = [ln.split() for ln in cat.read_text().splitlines() if ln.strip()]
        names = {int(i): c for c, i in rows}
        return [_pretty_place(names[i]) for i in range(len(names))]
    return [_pretty_place(n) for n in _folder_names(paths, labels)]


def _folder_names(paths: list[str], labels: list[int]) -> list[str]:
    names: dict[int, str] = {}
    for p, y in zip(paths, labels):
        names.setdefault(y, Path(p).parent.name)
    return [names.get(i, str(i)) for i in range(max(names) + 1)] if names else []


def _pretty_place(category: str) -> str:
    # '/a/airfield' -> 'airfield'; '/b/bakery/shop' -> 'bakery shop'
    parts = [p for p in category.split("/") if p]
    if len(parts) > 1 and len(parts[0]) == 1:
        parts = parts[1:]
    return " ".join(parts).replace("_", " ")


def _lt_loader(name: str):
    def load(split: str, *, root=None, transform=None, image_root=None):
        return load_lt(name, split, root=root, transform=transform, image_root=image_root)
    load.__name__ = f"load_{name}"
    return load


register_dataset(DatasetEntry("imagenet_lt", _lt_loader("imagenet_lt"), ("train", "val", "test"), "real",
                              "ImageNet-LT", "ImageNet-LT split files (OLTR)", options=("image_root",),
                              layout=lt_layout("imagenet_lt")))
register_dataset(DatasetEntry("places365_lt", _lt_loader("places365_lt"), ("train", "val", "test"), "real",
                              "Places365-LT", "Places365-LT split files (OLTR)", options=("image_root",),
                              layout=lt_layout("places365_lt")))
