"""Writers of scaled-down real datasets in the exact on-disk layouts their users have.

Every dataset that the book's real parameter set reads is written here in its documented
layout (book/reproduce.md, "Dataset layouts"; the readers' ``*_LAYOUT`` strings in
``gla/data``), with tiny solid-colour images (one colour per class) and the fewest images
per class that the protocols accept:

- ImageNet: all 1000 wnids under ``imagenet/images/{train,val}/<wnid>/`` (3 train images per
  class: the many-shot hold-out keeps one and holds out two, as many as chapter 2's smoke
  study draws per class; GLA's 1-shot split takes 2);
- ImageNet-V2 (index folders), -Sketch (a subset of wnid folders), -A and -R (exactly their
  published 200 wnids), ObjectNet (images with a 2-pixel frame, the four mapping files);
- CoOp's nine ``split_zhou_*.json`` datasets (3 classes each, class names with underscores)
  and FGVC-Aircraft's own files; a CoOp cached few-shot split pickle
  (``caltech-101/split_fewshot/shot_1-seed_1.pkl``) written with a stand-in for Dassl's
  ``Datum`` class (KaiyangZhou/Dassl.pytorch ``dassl/data/datasets/base_dataset.py``, pickled
  as KaiyangZhou/CoOp ``datasets/oxford_pets.py`` does);
- ImageNet-LT and Places365-LT split files (``relpath label`` lines) with many / medium / few
  classes; CIFAR-100 as torchvision's pickles;
- a per-class concept-count file (CVMI-Lab/clip-beyond-tail TSV format) for ImageNet.

:func:`write_backbones` saves randomly initialised open_clip models of reduced-resolution
configs of RN50 (QuickGELU, as OpenAI's) and ViT-B-32 as local state-dict files.
"""

from __future__ import annotations

import copy
import json
import pickle
import sys
import types
from pathlib import Path

import numpy as np
from PIL import Image

from gla.data.coop import COOP
from gla.data.imagenet import imagenet_classnames, imagenet_subset_wnids, imagenet_wnids

# Three classes per CoOp dataset, spelled as in CoOp's split files (underscores).
COOP_CLASSES = {
    "caltech101": ["face", "leopard", "yellow_lady_slipper"],
    "oxford_pets": ["abyssinian", "american_bulldog", "great_pyrenees"],
    "stanford_cars": ["2000 AM General Hummer SUV", "2012 Acura RL Sedan", "2012 Tesla Model S Sedan"],
    "oxford_flowers": ["pink_primrose", "hard-leaved_pocket_orchid", "canterbury_bells"],
    "food101": ["apple_pie", "baby_back_ribs", "eggs_benedict"],
    "sun397": ["abbey", "airplane_cabin", "alley"],
    "dtd": ["banded", "blotchy", "braided"],
    "eurosat": ["Annual Crop Land", "Herbaceous Vegetation Land", "Sea or Lake"],
    "ucf101": ["Apply_Eye_Makeup", "Baby_Crawling", "Playing_Daf"],
}
AIRCRAFT_VARIANTS = ["707-320", "A300B4", "Boeing 717"]
CIFAR100_CLASSES = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can "
    "castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin "
    "elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster "
    "man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck "
    "pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk "
    "skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger "
    "tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm").split()
PLACES = ["/a/airfield", "/b/bakery/shop", "/c/canyon", "/d/desert/sand", "/f/forest_path", "/h/harbor"]
OLD_ROOT = "/home/someone/DATA"  # where the cached split's paths pointed when it was written

SIZE = 8


def colour(i: int) -> tuple[int, int, int]:
    """A distinct solid colour per class index."""
    return ((37 * i) % 256, (91 * i + 64) % 256, (151 * i + 128) % 256)


def image(path: Path, cls: int, *, frame: bool = False) -> Path:
    """A tiny solid-colour image of class ``cls`` (format from the suffix); ``frame`` adds
    ObjectNet's 2-pixel border."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if frame:
        im = Image.new("RGB", (SIZE + 4, SIZE + 4), (255, 0, 0))
        im.paste(colour(cls), (2, 2, SIZE + 2, SIZE + 2))
    else:
        im = Image.new("RGB", (SIZE, SIZE), colour(cls))
    im.save(path, format="PNG" if path.suffix.lower() == ".png" else "JPEG")
    return path


# --------------------------------------------------------------------------- ImageNet family

def write_imagenet(root: Path, train_per_class: int = 3, val_per_class: int = 1) -> None:
    """``imagenet/images/{train,val}/<wnid>/`` with all 1000 wnids."""
    base = root / "imagenet" / "images"
    for y, w in enumerate(imagenet_wnids()):
        for i in range(train_per_class):
            image(base / "train" / w / f"{w}_{i}.JPEG", y)
        for i in range(val_per_class):
            image(base / "val" / w / f"ILSVRC2012_val_{y * val_per_class + i:08d}.JPEG", y)


def write_imagenet_shifts(root: Path, n_v2: int = 10, n_sketch: int = 10) -> None:
    """ImageNet-V2 (index folders), -Sketch (a subset of wnids), -A and -R (their 200 wnids)."""
    wnids = imagenet_wnids()
    for y in range(n_v2):
        image(root / "imagenetv2" / "imagenetv2-matched-frequency-format-val" / str(y) / "0.jpeg", y)
    for y in range(n_sketch):
        image(root / "imagenet-sketch" / "images" / wnids[y] / "sketch_0.JPEG", y)
    index = {w: i for i, w in enumerate(wnids)}
    for name, rel in [("imagenet_a", "imagenet-adversarial/imagenet-a"),
                      ("imagenet_r", "imagenet-rendition/imagenet-r")]:
        for w in imagenet_subset_wnids(name):
            image(root / rel / w / f"{name}_{w}.jpg", index[w])


def write_objectnet(root: Path) -> None:
    """ObjectNet's layout with its four mapping files over the 1000 ImageNet classes.

    The 2012 class ids are a permutation of the sorted-wnid order (as in the real
    ``pytorch_to_imagenet_2012_id.json``); one folder maps to no ImageNet class."""
    maps = root / "objectnet-1.0" / "mappings"
    maps.mkdir(parents=True, exist_ok=True)
    wnids, names = imagenet_wnids(), imagenet_classnames()
    labels = [f"{n}, {w}" for n, w in zip(names, wnids)]  # unique ImageNet labels
    perm = np.random.default_rng(0).permutation(1000).tolist()  # 2012 id -> sorted-wnid index
    (maps / "imagenet_to_label_2012_v2").write_text("".join(labels[perm[i]] + "\n" for i in range(1000)))
    (maps / "pytorch_to_imagenet_2012_id.json").write_text(json.dumps({str(perm[i]): i for i in range(1000)}))
    objects = {"fish_bowl": ("Fish", [1, 0]), "banana": ("Banana", [954]), "chair": ("Chair", None)}
    (maps / "folder_to_objectnet_label.json").write_text(json.dumps({f: o for f, (o, _) in objects.items()}))
    (maps / "objectnet_to_imagenet_1k.json").write_text(json.dumps(
        {o: "; ".join(labels[i] for i in ids) for o, ids in objects.values() if ids}))
    for folder, (_, ids) in objects.items():
        for i in range(2):
            image(root / "objectnet-1.0" / "images" / folder / f"{i}.png", (ids or [999])[0], frame=True)


# --------------------------------------------------------------------------- CoOp datasets

def write_coop(root: Path, name: str, counts=(("train", 4), ("val", 2), ("test", 2))) -> Path:
    """``<folder>/split_zhou_<Name>.json`` and its images (3 classes)."""
    folder, images, split_file, _ = COOP[name]
    base = root / folder
    split = {}
    for s, n in counts:
        split[s] = []
        for y, c in enumerate(COOP_CLASSES[name]):
            for i in range(n):
                rel = f"{c}/{s}_{i}.jpg"
                image(base / images / rel, y)
                split[s].append([rel, y, c])
    base.mkdir(parents=True, exist_ok=True)
    (base / split_file).write_text(json.dumps(split))
    return base


def write_fgvc_aircraft(root: Path, counts=(("train", 4), ("val", 2), ("test", 2))) -> None:
    """``fgvc_aircraft/`` with ``variants.txt`` and ``images_variant_{train,val,test}.txt``."""
    base = root / "fgvc_aircraft"
    base.mkdir(parents=True, exist_ok=True)
    (base / "variants.txt").write_text("\n".join(AIRCRAFT_VARIANTS) + "\n")
    n_id = 1000000
    for s, n in counts:
        lines = []
        for y, v in enumerate(AIRCRAFT_VARIANTS):
            for _ in range(n):
                n_id += 1
                image(base / "images" / f"{n_id:07d}.jpg", y)
                lines.append(f"{n_id:07d} {v}")
        (base / f"images_variant_{s}.txt").write_text("\n".join(lines) + "\n")


def _fake_datum():
    class Datum:  # the attributes of Dassl's Datum that CoOp's pickles hold
        def __init__(self, impath="", label=0, domain=0, classname=""):
            self._impath, self._label, self._domain, self._classname = impath, label, domain, classname
    return Datum


def write_coop_cached_split(dataset_dir: Path, images: str, shots: int, seed: int) -> Path:
    """``split_fewshot/shot_{shots}-seed_{seed}.pkl`` as CoOp pickles it: ``{"train": [Datum],
    "val": [Datum]}`` with absolute paths of the machine that wrote it. It picks the LAST
    ``shots`` training images of each class (a fresh draw would differ) and the first val ones."""
    split = json.loads(next(dataset_dir.glob("split_zhou_*.json")).read_text())
    old = f"{OLD_ROOT}/{dataset_dir.name}/{images}"

    def lists(Datum):
        data = {}
        for s, take in (("train", lambda rows: rows[-shots:]), ("val", lambda rows: rows[:min(shots, 4)])):
            data[s] = [Datum(impath=f"{old}/{rel}", label=y, classname=c)
                       for y in sorted({r[1] for r in split[s]})
                       for rel, _, c in take([r for r in split[s] if r[1] == y])]
        return data

    return dump_dassl_pickle(dataset_dir / "split_fewshot" / f"shot_{shots}-seed_{seed}.pkl", lists)


def dump_dassl_pickle(path: Path, make_data) -> Path:
    """Pickle ``make_data(Datum)`` as Dassl-based code does, with a stand-in for Dassl's
    ``Datum`` installed under ``dassl.data.datasets.base_dataset`` only while dumping (so
    that the pickle names Dassl's class and no ``dassl`` module is left behind)."""
    module = "dassl.data.datasets.base_dataset"
    added = [m for m in ("dassl", "dassl.data", "dassl.data.datasets", module) if m not in sys.modules]
    for m in added:
        sys.modules[m] = types.ModuleType(m)
    Datum = _fake_datum()
    Datum.__module__, Datum.__qualname__ = module, "Datum"
    sys.modules[module].Datum = Datum
    try:
        data = make_data(Datum)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            pickle.dump(data, fh, protocol=pickle.HIGHEST_PROTOCOL)
    finally:
        for m in added:
            sys.modules.pop(m, None)
    return path


# --------------------------------------------------------------------------- long-tailed, CIFAR

LT_TRAIN = (101, 30)  # images of the first classes (many: > 100, medium: 20..100); the rest get 1 (few)


def write_imagenet_lt(root: Path) -> None:
    """``ImageNet_LT/ImageNet_LT_{train,val,test}.txt`` over the 1000 classes; images under
    ``imagenet/images`` (extra train images for the many / medium classes). Val is taken from
    the train folder and test from the val folder, as in ImageNet-LT."""
    wnids = imagenet_wnids()
    base = root / "imagenet" / "images"
    lines = {"train": [], "val": [], "test": []}
    for y, w in enumerate(wnids):
        n = LT_TRAIN[y] if y < len(LT_TRAIN) else 1
        for i in range(n):
            rel = f"train/{w}/{w}_{i}.JPEG" if i < 1 else f"train/{w}/{w}_lt_{i}.JPEG"
            if i >= 1:
                image(base / rel, y)
            lines["train"].append(f"{rel} {y}")
        lines["val"].append(f"train/{w}/{w}_1.JPEG {y}")
        test = sorted((base / "val" / w).iterdir())[0].name
        lines["test"].append(f"val/{w}/{test} {y}")
    (root / "ImageNet_LT").mkdir(parents=True, exist_ok=True)
    for s, ls in lines.items():
        (root / "ImageNet_LT" / f"ImageNet_LT_{s}.txt").write_text("\n".join(ls) + "\n")


def write_places365_lt(root: Path) -> None:
    """``Places_LT/Places_LT_{train,val,test}.txt``; images and ``categories_places365.txt``
    under ``places365/`` (a few categories; many / medium / few classes)."""
    img_root = root / "places365"
    img_root.mkdir(parents=True, exist_ok=True)
    (img_root / "categories_places365.txt").write_text("".join(f"{c} {i}\n" for i, c in enumerate(PLACES)))
    train_counts = [101, 30, 25, 5, 3, 2]
    lines = {"train": [], "val": [], "test": []}
    for y, c in enumerate(PLACES):
        for s, n in (("train", train_counts[y]), ("val", 2), ("test", 2)):
            sub = "data_large" if s == "train" else "val_256"
            for i in range(n):
                rel = f"{sub}{c}/{s}_{i:08d}.jpg" if s == "train" else f"{sub}/Places365_{s}_{y:03d}{i:02d}.jpg"
                image(img_root / rel, y)
                lines[s].append(f"{rel} {y}")
    (root / "Places_LT").mkdir(parents=True, exist_ok=True)
    for s, ls in lines.items():
        (root / "Places_LT" / f"Places_LT_{s}.txt").write_text("\n".join(ls) + "\n")


def write_cifar100(root: Path, train_per_class: int = 2, test_per_class: int = 1) -> None:
    """``cifar-100-python/{train,test,meta}`` as torchvision's pickles (uint8 rows of 3072)."""
    assert len(CIFAR100_CLASSES) == 100
    base = root / "cifar-100-python"
    base.mkdir(parents=True, exist_ok=True)
    with open(base / "meta", "wb") as fh:
        pickle.dump({"fine_label_names": CIFAR100_CLASSES, "coarse_label_names": [f"super_{i}" for i in range(20)]},
                    fh)
    for part, n in (("train", train_per_class), ("test", test_per_class)):
        labels = [y for y in range(100) for _ in range(n)]
        data = np.stack([np.repeat(np.array(colour(y), dtype=np.uint8), 1024) for y in labels])
        with open(base / part, "wb") as fh:
            pickle.dump({"batch_label": f"{part} batch", "fine_labels": labels,
                         "coarse_labels": [y // 5 for y in labels], "filenames": [f"{i}.png" for i in range(len(labels))],
                         "data": data}, fh)


def write_counts(path: Path) -> Path:
    """A TSV count file for ImageNet (clip-beyond-tail ``class_frequency_*.txt``: one
    ``<class name>\\t<count>`` line per class, in class order), with long-tailed counts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    counts = np.random.default_rng(1).zipf(1.5, 1000).clip(max=10 ** 6)
    path.write_text("".join(f"{n}\t{int(c)}\n" for n, c in zip(imagenet_classnames(), counts)))
    return path


def write_all(root: str | Path) -> Path:
    """Every layout of the real parameter set under ``root`` (the data root); returns it."""
    root = Path(root)
    write_imagenet(root)
    write_imagenet_shifts(root)
    write_objectnet(root)
    for name in COOP:
        write_coop(root, name)
    write_fgvc_aircraft(root)
    folder, images, _, _ = COOP["caltech101"]
    write_coop_cached_split(root / folder, images, shots=1, seed=1)
    write_imagenet_lt(root)
    write_places365_lt(root)
    write_cifar100(root)
    write_counts(root / "counts" / "class_frequency_e2e_imagenet.txt")
    return root


# --------------------------------------------------------------------------- backbones

#: Reduced configs of open_clip's own architectures: (new name, open_clip config it copies).
#: ViT-B-32 comes with GELU and with QuickGELU, as in open_clip, so a state-dict file of the
#: plain name must say which activation its weights were trained with.
E2E_MODELS = {"e2e-RN50-quickgelu": "RN50-quickgelu", "e2e-ViT-B-32": "ViT-B-32",
              "e2e-ViT-B-32-quickgelu": "ViT-B-32-quickgelu"}
#: The models whose random-init state dicts are saved: a GELU ViT-B-32 (weights that are not
#: OpenAI's) and a QuickGELU RN50.
E2E_WEIGHTS = ("e2e-RN50-quickgelu", "e2e-ViT-B-32")
E2E_IMAGE_SIZE = 32
# The text tower keeps open_clip's text transformer and tokenizer (context 77) but is narrow
# and shallow: prompt learning encodes every class prompt at every step (1000 on ImageNet).
E2E_TEXT = {"width": 64, "heads": 2, "layers": 1}
# The image towers keep their type, width, patch size or stem, attention pooling and
# QuickGELU, with fewer blocks: ViT-B/32 with 2 of its 12 transformer blocks, RN50 with one
# bottleneck per stage instead of 3-4-6-3 (state dicts keep open_clip's key names).
E2E_VISION_LAYERS = {"e2e-RN50-quickgelu": [1, 1, 1, 1], "e2e-ViT-B-32": 2, "e2e-ViT-B-32-quickgelu": 2}


def write_model_configs(folder: str | Path) -> Path:
    """open_clip JSON configs of :data:`E2E_MODELS` (the image towers' architectures kept with
    fewer blocks, smaller input images, a small text tower) for ``open_clip.add_model_config``."""
    from open_clip.factory import get_model_config

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for new, base in E2E_MODELS.items():
        cfg = copy.deepcopy(get_model_config(base))
        cfg["vision_cfg"]["image_size"] = E2E_IMAGE_SIZE
        cfg["vision_cfg"]["layers"] = E2E_VISION_LAYERS[new]
        cfg["text_cfg"].update(E2E_TEXT)
        (folder / f"{new}.json").write_text(json.dumps(cfg, indent=1))
    return folder


def write_backbones(folder: str | Path, config_dir: str | Path) -> dict[str, Path]:
    """Random-init state dicts of :data:`E2E_WEIGHTS` saved as ``<folder>/<name>.pt``."""
    import open_clip
    import torch

    open_clip.add_model_config(str(config_dir))
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in E2E_WEIGHTS:
        torch.manual_seed(0)
        model = open_clip.create_model(name)
        out[name] = folder / f"{name}.pt"
        torch.save(model.state_dict(), out[name])
    return out


if __name__ == "__main__":  # python tests/real_layouts.py DATA_ROOT
    print(write_all(sys.argv[1]))
