"""CoOp's few-shot datasets from their ``split_zhou_*.json`` files, and FGVC-Aircraft.

Folder names are CoOp's (``DATASETS.md`` of KaiyangZhou/CoOp). A split file is
``{"train"|"val"|"test": [[relpath, label, classname], ...]}`` with relpaths relative to
the image folder; the class names of the train list name the classes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from ._files import layout_error, require
from .images import LabelledImages
from .registry import DatasetEntry, data_root, register_dataset
from .templates import zero_shot_templates

COOP = {
    # name: (folder, image subfolder, split file, role)
    "caltech101": ("caltech-101", "101_ObjectCategories", "split_zhou_Caltech101.json", "Caltech101"),
    "oxford_pets": ("oxford_pets", "images", "split_zhou_OxfordPets.json", "OxfordPets"),
    "stanford_cars": ("stanford_cars", "", "split_zhou_StanfordCars.json", "StanfordCars"),
    "oxford_flowers": ("oxford_flowers", "jpg", "split_zhou_OxfordFlowers.json", "Flowers102"),
    "food101": ("food-101", "images", "split_zhou_Food101.json", "Food101"),
    "sun397": ("sun397", "SUN397", "split_zhou_SUN397.json", "SUN397"),
    "dtd": ("dtd", "images", "split_zhou_DescribableTextures.json", "DTD"),
    "eurosat": ("eurosat", "2750", "split_zhou_EuroSAT.json", "EuroSAT"),
    "ucf101": ("ucf101", "UCF-101-midframes", "split_zhou_UCF101.json", "UCF101"),
}


def _read_split_file(name: str, path: Path) -> dict[str, list[tuple[str, int, str]]]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{name}: split file {path} is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{name}: split file {path}: expected an object with lists 'train', 'val', 'test'")
    out = {}
    for split, rows in data.items():
        if not isinstance(rows, list):
            raise ValueError(f"{name}: split file {path}: '{split}' is not a list of [relpath, label, classname]")
        parsed = []
        for i, row in enumerate(rows):
            if (not isinstance(row, (list, tuple)) or len(row) != 3 or not isinstance(row[0], str)
                    or isinstance(row[1], bool) or not isinstance(row[1], int) or row[1] < 0
                    or not isinstance(row[2], str)):
                raise ValueError(f"{name}: split file {path}: row {i} of '{split}' is {row!r}; expected "
                                 "[relpath, label (a non-negative integer), classname]")
            parsed.append((row[0], row[1], row[2]))
        out[split] = parsed
    return out


def coop_layout(name: str) -> str:
    """The files a CoOp dataset's reader expects under the data root."""
    folder, images, split_file, _ = COOP[name]
    return f"  {folder}/\n    {split_file}\n    {images or '.'}/<relpath from the split file>"


def load_coop(name: str, split: str, *, root: str | os.PathLike | None, transform: Callable | None = None
              ) -> LabelledImages:
    """A CoOp dataset from its ``split_zhou_*.json``.

    Parameters
    ----------
    name : str
        A key of :data:`COOP`.
    split : {"train", "val", "test"}
    root : path
        Data root (or ``GLA_DATA_ROOT``).
    transform : callable, optional

    Returns
    -------
    LabelledImages
        Items in split-file order (the order CoOp's few-shot draw depends on); class
        names from the train list. A label of val/test that train lacks, labels that are
        not ``0..K-1`` in train, or a malformed file is an error naming the dataset and
        the file.
    """
    root = Path(data_root(name, root))
    folder, images, split_file, _ = COOP[name]
    base = root / folder
    path = base / split_file
    layout = coop_layout(name)
    require(name, root, layout, path)
    data = _read_split_file(name, path)
    for s in ("train", split):
        if s not in data:
            raise ValueError(f"{name}: split file {path} has no '{s}' list (it has {sorted(data)})")
    names: dict[int, str] = {}
    for _, y, c in data["train"]:
        if names.setdefault(y, c) != c:
            raise ValueError(f"{name}: split file {path}: label {y} is named both '{names[y]}' and '{c}' in 'train'")
    if sorted(names) != list(range(len(names))):
        raise ValueError(f"{name}: split file {path}: the labels of 'train' are not 0..K-1 "
                         f"(got {len(names)} labels from {min(names, default=None)} to {max(names, default=None)})")
    items = data[split]
    foreign = sorted({y for _, y, _ in items} - set(names))
    if foreign:
        raise ValueError(f"{name}: split file {path}: '{split}' has label(s) {foreign[:10]} that 'train' lacks")
    paths = [str(base / images / rel) for rel, _, _ in items]
    if items and not Path(paths[0]).exists():
        raise layout_error(name, root, layout, Path(paths[0]))
    return LabelledImages(paths, [y for _, y, _ in items], [names[i] for i in range(len(names))],
                          zero_shot_templates(name), name=name, split=split, transform=transform,
                          meta={"split_file": str(path)})


AIRCRAFT_LAYOUT = """  fgvc_aircraft/
    images/<image id>.jpg
    variants.txt                       (one class name per line)
    images_variant_{train,val,test}.txt  (lines '<image id> <variant name>')"""


def load_fgvc_aircraft(split: str, *, root: str | os.PathLike | None, transform: Callable | None = None
                       ) -> LabelledImages:
    """FGVC-Aircraft from its own files (CoOp ``datasets/fgvc_aircraft.py`` reads them the same way).

    Classes are the lines of ``variants.txt`` in order; items follow
    ``images_variant_<split>.txt``. An unknown variant or a malformed line is an error
    naming the file and line.
    """
    root = Path(data_root("fgvc_aircraft", root))
    base = root / "fgvc_aircraft"
    split_file = base / f"images_variant_{split}.txt"
    require("fgvc_aircraft", root, AIRCRAFT_LAYOUT, base / "variants.txt", split_file)
    classes = [ln.strip() for ln in (base / "variants.txt").read_text().splitlines() if ln.strip()]
    index = {c: i for i, c in enumerate(classes)}
    paths, labels = [], []
    for n, ln in enumerate(split_file.read_text().splitlines(), 1):
        if not ln.strip():
            continue
        parts = ln.strip().split(" ", 1)
        if len(parts) != 2:
            raise ValueError(f"fgvc_aircraft: {split_file} line {n} is {ln!r}; expected '<image id> <variant name>'")
        image_id, variant = parts
        if variant not in index:
            raise ValueError(f"fgvc_aircraft: {split_file} line {n}: variant '{variant}' is not in variants.txt")
        paths.append(str(base / "images" / f"{image_id}.jpg"))
        labels.append(index[variant])
    return LabelledImages(paths, labels, classes, zero_shot_templates("fgvc_aircraft"), name="fgvc_aircraft",
                          split=split, transform=transform, meta={"split_file": str(split_file)})


def _coop_loader(name: str):
    def load(split: str, *, root=None, transform=None):
        return load_coop(name, split, root=root, transform=transform)
    load.__name__ = f"load_{name}"
    return load


_SPLITS = ("train", "val", "test")
for _name, (_folder, _images, _file, _role) in COOP.items():
    register_dataset(DatasetEntry(_name, _coop_loader(_name), _SPLITS, "real", _role,
                                  f"{_role} with CoOp's {_file}", layout=coop_layout(_name)))
register_dataset(DatasetEntry("fgvc_aircraft", load_fgvc_aircraft, _SPLITS, "real", "FGVCAircraft",
                              "FGVC-Aircraft with its own variant files", layout=AIRCRAFT_LAYOUT))
