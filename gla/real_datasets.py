"""Readers for the paper's datasets in the layouts their users already have.

Nothing here downloads anything. Each reader checks the layout first and, when it is
wrong, raises a ``FileNotFoundError`` that prints the layout it expected. Roots come from
``root=`` or ``GLA_DATA_ROOT``; the folder names below are CoOp's (DATASETS.md of
KaiyangZhou/CoOp), which most users of these benchmarks already have.

Splits. ``test`` is always the official evaluation split. The prior and every choice
(temperature, alpha, epoch) are made on ``val``: CoOp's validation split for the few-shot
datasets, the official val list for the LT sets, and for ImageNet (whose official val is
the test set) a class-balanced hold-out of ``val_per_class`` training images per class,
drawn by seed and removed from ``train``.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from pathlib import Path

import torch

from .datasets import ClassGroups, ClassSubset, DatasetEntry, LabelledImages, register

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def _imagenet_templates() -> list[str]:
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    return [t("{}") for t in OPENAI_IMAGENET_TEMPLATES]


def imagenet_classnames() -> list[str]:
    """OpenAI's 1000 ImageNet class names, in synset (sorted wnid) order.

    Two names repeat (``crane`` and ``maillot``); join per-class data by index, not name.
    """
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    return list(IMAGENET_CLASSNAMES)


# Zero-shot prompts per dataset (GLA_NOTES section 3): the 80 ImageNet templates for the
# ImageNet family, Caltech101 and SUN397; one template elsewhere (CoOp's).
SINGLE_TEMPLATES = {
    "oxford_pets": "a photo of a {}, a type of pet.",
    "oxford_flowers": "a photo of a {}, a type of flower.",
    "fgvc_aircraft": "a photo of a {}, a type of aircraft.",
    "dtd": "{} texture.",
    "eurosat": "a centered satellite photo of {}.",
    "stanford_cars": "a photo of a {}.",
    "food101": "a photo of {}, a type of food.",
    "ucf101": "a photo of a person doing {}.",
    "cifar100": "a photo of a {}.",
    "places365_lt": "a photo of a {}.",
}


def templates_for(name: str) -> list[str]:
    """The zero-shot prompt templates of a real dataset."""
    if name in SINGLE_TEMPLATES:
        return [SINGLE_TEMPLATES[name]]
    return _imagenet_templates()


def _layout_error(name: str, root: Path, expected: str, missing: Path) -> FileNotFoundError:
    return FileNotFoundError(
        f"{name}: '{missing}' not found. Expected this layout under the data root {root}:\n{expected}")


def _require(name: str, root: Path, expected: str, *paths: Path) -> None:
    for p in paths:
        if not p.exists():
            raise _layout_error(name, root, expected, p)


def _list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)


# --------------------------------------------------------------------------- ImageNet family

IMAGENET_LAYOUT = """  imagenet/
    images/train/<wnid>/*.JPEG      (1000 synset folders)
    images/val/<wnid>/*.JPEG        (the official 50,000 validation images, sorted into synset folders)"""


def _imagenet_wnids(root: Path) -> list[str]:
    train = root / "imagenet" / "images" / "train"
    _require("imagenet", root, IMAGENET_LAYOUT, train)
    wnids = sorted(d.name for d in train.iterdir() if d.is_dir())
    if not wnids:
        raise _layout_error("imagenet", root, IMAGENET_LAYOUT, train / "<wnid>")
    return wnids


def _classnames_for(wnids: list[str]) -> list[str]:
    names = imagenet_classnames()
    return names if len(wnids) == len(names) else [w for w in wnids]


def load_imagenet(split: str, root: str | os.PathLike, transform: Callable | None = None, *,
                  val_per_class: int = 10, seed: int = 0) -> LabelledImages:
    """ImageNet from ``imagenet/images/{train,val}/<wnid>/`` (CoOp's layout).

    Splits: ``train`` (minus the hold-out), ``val`` (``val_per_class`` training images per
    class, by seed), ``test`` (the official validation images).
    """
    root = Path(root)
    wnids = _imagenet_wnids(root)
    index = {w: i for i, w in enumerate(wnids)}
    sub = "val" if split == "test" else "train"
    folder = root / "imagenet" / "images" / sub
    _require("imagenet", root, IMAGENET_LAYOUT, folder)
    paths, labels = [], []
    for w in wnids:
        d = folder / w
        if not d.is_dir():
            raise _layout_error("imagenet", root, IMAGENET_LAYOUT, d)
        files = _list_images(d)
        paths += [str(p) for p in files]
        labels += [index[w]] * len(files)
    if split in ("train", "val"):
        rng = random.Random(seed)
        held = set()
        by_class: dict[int, list[int]] = {}
        for i, y in enumerate(labels):
            by_class.setdefault(y, []).append(i)
        for y in sorted(by_class):
            held.update(rng.sample(by_class[y], min(val_per_class, len(by_class[y]) - 1)))
        keep = [i for i in range(len(labels)) if (i in held) == (split == "val")]
        paths, labels = [paths[i] for i in keep], [labels[i] for i in keep]
    return LabelledImages(paths, labels, _classnames_for(wnids), templates_for("imagenet"), name="imagenet",
                          split=split, transform=transform, meta={"wnids": wnids})


SHIFT_LAYOUTS = {
    "imagenet_v2": ("imagenetv2/imagenetv2-matched-frequency-format-val", "<class index 0..999>/*.jpeg"),
    "imagenet_sketch": ("imagenet-sketch/images", "<wnid>/*.JPEG"),
    "imagenet_a": ("imagenet-adversarial/imagenet-a", "<wnid>/*.jpg (200 synsets)"),
    "imagenet_r": ("imagenet-rendition/imagenet-r", "<wnid>/*.jpg (200 synsets)"),
}


def load_imagenet_shift(name: str, split: str, root: str | os.PathLike, transform: Callable | None = None,
                        ) -> LabelledImages:
    """ImageNet-V2 / -Sketch / -A / -R test sets with 1000-way labels.

    ImageNet-A and -R cover 200 classes: ``class_subset`` lists their indices among the
    1000, and :func:`project_logits` keeps those columns of 1000-way logits. Class order is
    the sorted ImageNet wnids (``imagenet_wnids.json`` shipped with the package when the
    ImageNet train folder is absent).
    """
    root = Path(root)
    rel, pattern = SHIFT_LAYOUTS[name]
    folder = root / rel
    layout = f"  {rel}/\n    {pattern}"
    _require(name, root, layout, folder)
    wnids = _reference_wnids(root)
    index = {w: i for i, w in enumerate(wnids)}
    paths, labels = [], []
    for d in sorted(p for p in folder.iterdir() if p.is_dir()):
        if name == "imagenet_v2":
            if not d.name.isdigit():
                raise _layout_error(name, root, layout, d)
            y = int(d.name)
        else:
            if d.name not in index:
                raise ValueError(f"{name}: folder '{d.name}' is not an ImageNet wnid")
            y = index[d.name]
        files = _list_images(d)
        paths += [str(p) for p in files]
        labels += [y] * len(files)
    if not paths:
        raise _layout_error(name, root, layout, folder / pattern.split()[0])
    subset = None
    if name in ("imagenet_a", "imagenet_r"):
        subset = torch.tensor(sorted(set(labels)))
    return LabelledImages(paths, labels, _classnames_for(wnids), templates_for("imagenet"), name=name, split=split,
                          transform=transform, class_subset=subset)


def _reference_wnids(root: Path) -> list[str]:
    train = root / "imagenet" / "images" / "train"
    if train.is_dir():
        return _imagenet_wnids(root)
    shipped = Path(__file__).resolve().parent / "data" / "imagenet_wnids.json"
    if shipped.is_file():
        return json.loads(shipped.read_text())
    raise _layout_error("imagenet", root, IMAGENET_LAYOUT, train)


def project_logits(logits: torch.Tensor, class_subset: ClassSubset) -> torch.Tensor:
    """Logits over a test set's classes from logits over the model's classes.

    ``None``: unchanged. An index tensor (ImageNet-R/-A, 200 of the 1000 classes): those
    columns. :class:`~gla.datasets.ClassGroups` (ObjectNet): the maximum over each group.
    """
    if class_subset is None:
        return logits
    if isinstance(class_subset, ClassGroups):
        return torch.stack([logits[:, list(g)].max(dim=1).values for g in class_subset.groups], dim=1)
    return logits[:, class_subset.to(logits.device)]


def project_labels(labels: torch.Tensor, class_subset: ClassSubset) -> torch.Tensor:
    """Labels in the test set's class space: positions within an index subset; group
    labels (ObjectNet) are already group indices and are only checked."""
    if class_subset is None:
        return labels
    if isinstance(class_subset, ClassGroups):
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= len(class_subset)):
            raise ValueError(f"labels: expected group indices 0..{len(class_subset) - 1}")
        return labels
    pos = torch.full((max(int(class_subset.max()), int(labels.max())) + 1,), -1, dtype=torch.long)
    pos[class_subset] = torch.arange(len(class_subset))
    out = pos[labels]
    if (out < 0).any():
        raise ValueError("labels: some labels are outside the class subset")
    return out


def project_log_prior(log_prior: torch.Tensor, class_subset: ClassSubset) -> torch.Tensor:
    """A log prior over the model's classes restricted to a test set's classes and
    renormalised (a group's mass is the sum over its members)."""
    if class_subset is None:
        return log_prior
    if isinstance(class_subset, ClassGroups):
        lq = torch.stack([torch.logsumexp(log_prior[list(g)], 0) for g in class_subset.groups])
    else:
        lq = log_prior[class_subset.to(log_prior.device)]
    return lq - torch.logsumexp(lq, 0)


# --------------------------------------------------------------------------- ObjectNet

OBJECTNET_LAYOUT = """  objectnet-1.0/
    images/<folder>/*.png                      (313 object folders; the 113 mapped to ImageNet are read)
    mappings/folder_to_objectnet_label.json    ({"<folder>": "<ObjectNet class>", ...})
    mappings/objectnet_to_imagenet_1k.json     ({"<ObjectNet class>": "<ImageNet label>; <ImageNet label>", ...})
    mappings/imagenet_to_label_2012_v2         (1000 lines: the ImageNet label of each 2012 class id)
    mappings/pytorch_to_imagenet_2012_id.json  ({"<sorted-wnid index>": <2012 class id>, ...})"""


def objectnet_mapping(root: str | os.PathLike) -> tuple[list[str], list[str], ClassGroups]:
    """ObjectNet's classes that overlap ImageNet, from the mapping files shipped with it.

    Returns the image folders and the ObjectNet class names of the 113 overlapping classes
    (sorted by folder) and, for each, the indices of its ImageNet classes in sorted-wnid
    order (the order of :func:`imagenet_classnames`).
    """
    root = Path(root)
    maps = root / "objectnet-1.0" / "mappings"
    files = ["folder_to_objectnet_label.json", "objectnet_to_imagenet_1k.json", "imagenet_to_label_2012_v2",
             "pytorch_to_imagenet_2012_id.json"]
    _require("objectnet", root, OBJECTNET_LAYOUT, *(maps / f for f in files))
    folder_of = {label: folder for folder, label in json.loads((maps / files[0]).read_text()).items()}
    to_imagenet = json.loads((maps / files[1]).read_text())
    label_2012 = [ln.strip() for ln in (maps / files[2]).read_text().splitlines() if ln.strip()]
    index_of_2012 = {int(v): int(k) for k, v in json.loads((maps / files[3]).read_text()).items()}
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


def load_objectnet(split: str, root: str | os.PathLike, transform: Callable | None = None) -> LabelledImages:
    """ObjectNet's 113 ImageNet-overlapping classes as a test set for 1000-way models.

    Labels index the 113 classes (sorted by folder); ``class_subset`` is a
    :class:`~gla.datasets.ClassGroups` that max-pools 1000-way logits onto them (as in
    the WiSE-FT evaluation); the 2-pixel frame of each image is cropped before the
    transform. ``classnames`` are ImageNet's (the model's head); the ObjectNet names are in
    ``meta["objectnet_classnames"]``.
    """
    root = Path(root)
    folders, obj_names, groups = objectnet_mapping(root)
    images = root / "objectnet-1.0" / "images"
    _require("objectnet", root, OBJECTNET_LAYOUT, images)
    paths, labels = [], []
    for y, f in enumerate(folders):
        d = images / f
        if not d.is_dir():
            raise _layout_error("objectnet", root, OBJECTNET_LAYOUT, d)
        files = _list_images(d)
        paths += [str(p) for p in files]
        labels += [y] * len(files)
    if not paths:
        raise _layout_error("objectnet", root, OBJECTNET_LAYOUT, images / "<folder>" / "*.png")
    return LabelledImages(paths, labels, imagenet_classnames(), templates_for("imagenet"), name="objectnet",
                          split=split, transform=transform, class_subset=groups, crop_border=2,
                          meta={"objectnet_classnames": obj_names, "folders": folders})


# --------------------------------------------------------------------------- CoOp few-shot sets

COOP = {
    # name: (folder, image subfolder, split file)
    "caltech101": ("caltech-101", "101_ObjectCategories", "split_zhou_Caltech101.json"),
    "oxford_pets": ("oxford_pets", "images", "split_zhou_OxfordPets.json"),
    "stanford_cars": ("stanford_cars", "", "split_zhou_StanfordCars.json"),
    "oxford_flowers": ("oxford_flowers", "jpg", "split_zhou_OxfordFlowers.json"),
    "food101": ("food-101", "images", "split_zhou_Food101.json"),
    "sun397": ("sun397", "SUN397", "split_zhou_SUN397.json"),
    "dtd": ("dtd", "images", "split_zhou_DescribableTextures.json"),
    "eurosat": ("eurosat", "2750", "split_zhou_EuroSAT.json"),
    "ucf101": ("ucf101", "UCF-101-midframes", "split_zhou_UCF101.json"),
}


def load_coop(name: str, split: str, root: str | os.PathLike, transform: Callable | None = None) -> LabelledImages:
    """A CoOp dataset from its ``split_zhou_*.json`` (``{"train"|"val"|"test": [[relpath,
    label, classname], ...]}``, relpaths relative to the image folder)."""
    root = Path(root)
    folder, images, split_file = COOP[name]
    base = root / folder
    layout = f"  {folder}/\n    {split_file}\n    {images or '.'}/<relpath from the split file>"
    _require(name, root, layout, base / split_file)
    data = json.loads((base / split_file).read_text())
    if split not in data:
        raise ValueError(f"{name}: {split_file} has no '{split}' list (it has {sorted(data)})")
    items = data[split]
    names: dict[int, str] = {}
    for split_items in data.values():
        for _, y, c in split_items:
            names[int(y)] = c
    if sorted(names) != list(range(len(names))):
        raise ValueError(f"{name}: labels in {split_file} are not 0..K-1")
    paths = [str(base / images / rel) for rel, _, _ in items]
    if items and not Path(paths[0]).exists():
        raise _layout_error(name, root, layout, Path(paths[0]))
    return LabelledImages(paths, [int(y) for _, y, _ in items], [names[i] for i in range(len(names))],
                          templates_for(name), name=name, split=split, transform=transform)


AIRCRAFT_LAYOUT = """  fgvc_aircraft/
    images/<image id>.jpg
    variants.txt                       (one class name per line)
    images_variant_{train,val,test}.txt  (lines '<image id> <variant name>')"""


def load_fgvc_aircraft(split: str, root: str | os.PathLike, transform: Callable | None = None) -> LabelledImages:
    """FGVC-Aircraft from its own files (CoOp reads them the same way)."""
    root = Path(root)
    base = root / "fgvc_aircraft"
    _require("fgvc_aircraft", root, AIRCRAFT_LAYOUT, base / "variants.txt", base / f"images_variant_{split}.txt")
    classes = [ln.strip() for ln in (base / "variants.txt").read_text().splitlines() if ln.strip()]
    index = {c: i for i, c in enumerate(classes)}
    paths, labels = [], []
    for ln in (base / f"images_variant_{split}.txt").read_text().splitlines():
        if not ln.strip():
            continue
        image_id, variant = ln.strip().split(" ", 1)
        if variant not in index:
            raise ValueError(f"fgvc_aircraft: variant '{variant}' is not in variants.txt")
        paths.append(str(base / "images" / f"{image_id}.jpg"))
        labels.append(index[variant])
    return LabelledImages(paths, labels, classes, templates_for("fgvc_aircraft"), name="fgvc_aircraft", split=split,
                          transform=transform)


# --------------------------------------------------------------------------- long-tailed sets

LT = {
    "imagenet_lt": ("ImageNet_LT", "ImageNet_LT_{split}.txt", "imagenet/images"),
    "places365_lt": ("Places_LT", "Places_LT_{split}.txt", "places365"),
}


def load_lt(name: str, split: str, root: str | os.PathLike, transform: Callable | None = None, *,
            image_root: str | os.PathLike | None = None) -> LabelledImages:
    """ImageNet-LT / Places365-LT from their split files (``relpath label`` per line).

    ``image_root`` is where the relpaths start (default ``<root>/imagenet/images`` or
    ``<root>/places365``). Places365 class names come from ``categories_places365.txt``
    in the image root when present, else from the relpaths' folders.
    """
    root = Path(root)
    folder, pattern, default_images = LT[name]
    split_file = root / folder / pattern.format(split=split)
    img_root = Path(image_root) if image_root else root / default_images
    layout = (f"  {folder}/{pattern.format(split='{train,val,test}')}   (lines '<relpath> <label>')\n"
              f"  {default_images}/<relpath>   (or pass image_root=...)")
    _require(name, root, layout, split_file)
    paths, labels = [], []
    for ln in split_file.read_text().splitlines():
        if not ln.strip():
            continue
        rel, y = ln.rsplit(maxsplit=1)
        paths.append(str(img_root / rel.lstrip("/")))
        labels.append(int(y))
    if paths and not Path(paths[0]).exists():
        raise _layout_error(name, root, layout, Path(paths[0]))
    n_classes = max(labels) + 1 if labels else 0
    if name == "imagenet_lt" and n_classes == len(imagenet_classnames()):
        classnames = imagenet_classnames()
    elif name == "imagenet_lt":  # a subset (e.g. a test fixture): name classes by their wnid folders
        classnames = _folder_names(paths, labels)
    else:
        classnames = _places_classnames(img_root, paths, labels)
    return LabelledImages(paths, labels, classnames, templates_for(name), name=name, split=split,
                          transform=transform)


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
    return [names.get(i, str(i)) for i in range(max(names) + 1)]


def _pretty_place(category: str) -> str:
    # '/a/airfield' -> 'airfield'; '/b/bakery/shop' -> 'bakery shop'
    parts = [p for p in category.split("/") if p]
    if len(parts) > 1 and len(parts[0]) == 1:
        parts = parts[1:]
    return " ".join(parts).replace("_", " ")


# --------------------------------------------------------------------------- CIFAR-100

CIFAR_LAYOUT = "  cifar-100-python/{train,test,meta}   (torchvision's CIFAR-100 files)"


def load_cifar100(split: str, root: str | os.PathLike, transform: Callable | None = None, *,
                  val_per_class: int = 10, seed: int = 0) -> LabelledImages:
    """CIFAR-100 from torchvision's files; ``val`` is a balanced hold-out of train."""
    import pickle

    root = Path(root)
    base = root / "cifar-100-python"
    _require("cifar100", root, CIFAR_LAYOUT, base / "meta", base / ("test" if split == "test" else "train"))
    with open(base / "meta", "rb") as fh:
        classes = [c.replace("_", " ") for c in pickle.load(fh, encoding="latin1")["fine_label_names"]]
    with open(base / ("test" if split == "test" else "train"), "rb") as fh:
        d = pickle.load(fh, encoding="latin1")
    images = torch.from_numpy(d["data"].reshape(-1, 3, 32, 32)).float() / 255.0
    labels = torch.tensor(d["fine_labels"])
    if split in ("train", "val"):
        rng = random.Random(seed)
        held = set()
        for y in range(len(classes)):
            idx = torch.nonzero(labels == y).flatten().tolist()
            held.update(rng.sample(idx, min(val_per_class, len(idx) - 1)))
        keep = torch.tensor([(i in held) == (split == "val") for i in range(len(labels))])
        images, labels = images[keep], labels[keep]
    return _TensorImages(images, labels, classes, templates_for("cifar100"), name="cifar100", split=split,
                         transform=transform)


class _TensorImages(LabelledImages):
    """Tensor images that a PIL-based preprocess can still read."""

    def __getitem__(self, i: int):
        img = self.images[i]
        if self.transform is not None:
            from torchvision.transforms.functional import to_pil_image

            try:
                return self.transform(to_pil_image(img)), int(self.labels[i])
            except TypeError:
                return self.transform(img), int(self.labels[i])
        return img, int(self.labels[i])


# --------------------------------------------------------------------------- registration

def _register_all() -> None:
    def shift(n):
        return lambda split, root, transform=None: load_imagenet_shift(n, split, root, transform)

    def coop(n):
        return lambda split, root, transform=None: load_coop(n, split, root, transform)

    def lt(n):
        return lambda split, root, transform=None, image_root=None: load_lt(n, split, root, transform,
                                                                            image_root=image_root)

    all_splits = ("train", "val", "test")
    register(DatasetEntry("imagenet", load_imagenet, all_splits, "real", "ImageNet"))
    for name in SHIFT_LAYOUTS:
        register(DatasetEntry(name, shift(name), ("test",), "real", name))
    register(DatasetEntry("objectnet", load_objectnet, ("test",), "real", "ObjectNet"))
    for name in COOP:
        register(DatasetEntry(name, coop(name), all_splits, "real", name))
    register(DatasetEntry("fgvc_aircraft", load_fgvc_aircraft, all_splits, "real", "FGVC-Aircraft"))
    for name in LT:
        register(DatasetEntry(name, lt(name), all_splits, "real", name))
    register(DatasetEntry("cifar100", load_cifar100, all_splits, "real", "CIFAR-100"))


_register_all()
