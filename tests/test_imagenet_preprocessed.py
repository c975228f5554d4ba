"""GLA's few-shot ImageNet draw reproduced from its cached listing ``imagenet/preprocessed.pkl``.

GLA's ImageNet dataset (BeierZhu/GLA ``GLA.FS.public/datasets/imagenet.py``, after
KaiyangZhou/CoOp ``datasets/imagenet.py``) lists ``images/train/<wnid>/`` once (folders
sorted, files in ``os.listdir`` order), pickles ``{"train": [Datum, ...], "test": [Datum,
...]}`` as ``imagenet/preprocessed.pkl`` with ``protocol=pickle.HIGHEST_PROTOCOL``, and draws
its few-shot split on that list. The fixture below writes such a file with a stand-in for
Dassl's ``Datum`` (``dassl.data.datasets.base_dataset.Datum``, attributes ``_impath``,
``_label``, ``_domain``, ``_classname``), installed under Dassl's module path only while
dumping, and paths of another machine.
"""

from __future__ import annotations

import os
import random
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from real_layouts import dump_dassl_pickle

from gla.data import dataset_entry, imagenet_few_shot_split, load_dataset, sample_few_shot
from gla.pickles import ForbiddenGlobalError
from gla.protocols.few_shot import _cached_split, _draw

WNIDS = ["n01440764", "n01443537", "n01484850"]  # the first three ImageNet wnids (sorted)
NAMES = ["tench", "goldfish", "great white shark"]
OTHER_MACHINE = "/home/someone/data/imagenet/images"  # where the pickle's writer kept ImageNet


# --------------------------------------------------------------------------- fixture helpers


def write_tiny_imagenet(root: Path, per_class: int = 12, lt_val: bool = False) -> Path:
    """``<root>/imagenet/images/{train,val}/<wnid>/`` for :data:`WNIDS` (empty ``.JPEG`` files:
    the draw never opens them). ``lt_val`` adds ``ImageNet_LT/ImageNet_LT_val.txt`` listing 20
    training images per class (as ImageNet-LT's val list does). Returns ``<root>/imagenet``."""
    base = root / "imagenet" / "images"
    lines = []
    for y, w in enumerate(WNIDS):
        for i in range(per_class):
            f = base / "train" / w / f"{w}_{i:03d}.JPEG"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(b"")
            if lt_val and i % 2 == 1 and i < 40:
                lines.append(f"train/{w}/{f.name} {y}")
        f = base / "val" / w / f"ILSVRC2012_val_{y:08d}.JPEG"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"")
    if lt_val:
        (root / "ImageNet_LT").mkdir(exist_ok=True)
        (root / "ImageNet_LT" / "ImageNet_LT_val.txt").write_text("\n".join(lines) + "\n")
    return root / "imagenet"


def gla_listing(dataset_dir: Path, seed: int = 7) -> list[tuple[str, int, str]]:
    """The train list GLA would have written: class folders sorted, files of each class in a
    shuffled (``os.listdir``-like) order; ``(path below images/, label, classname)``."""
    rows = []
    for y, w in enumerate(WNIDS):
        files = sorted(p.name for p in (dataset_dir / "images" / "train" / w).iterdir())
        random.Random(seed + y).shuffle(files)
        rows += [(f"train/{w}/{f}", y, NAMES[y]) for f in files]
    return rows


def write_datum_pickle(path: Path, lists: dict[str, list], extra=None) -> Path:
    """Pickle ``{key: [Datum, ...]}`` as GLA does, from ``(path below images/, label, classname)``
    rows with paths under :data:`OTHER_MACHINE`; ``extra`` is appended to ``"train"`` as is."""
    def make(Datum):
        data = {key: [Datum(impath=f"{OTHER_MACHINE}/{rel}", label=y, classname=c) for rel, y, c in rows]
                for key, rows in lists.items()}
        if extra is not None:
            data["train"].append(extra)
        return data

    dump_dassl_pickle(path, make)
    assert "dassl" not in sys.modules
    return path


def write_preprocessed(dataset_dir: Path, train_rows, extra=None) -> Path:
    """``<dataset_dir>/preprocessed.pkl``: ``{"train": [...], "test": [...]}`` (GLA's ``imagenet.py`` L40-42)."""
    test_rows = [(f"val/{w}/ILSVRC2012_val_{y:08d}.JPEG", y, NAMES[y]) for y, w in enumerate(WNIDS)]
    return write_datum_pickle(dataset_dir / "preprocessed.pkl", {"train": train_rows, "test": test_rows}, extra)


def load_full(root: Path) -> dict:
    """What the few-shot protocol loads: the full train pool and the many-shot val split."""
    return {"train": load_dataset("imagenet", "train_full", root=root), "val": load_dataset("imagenet", "val", root=root)}


def draw(root: Path, full: dict, shots: int, seed: int):
    """The protocol's draw (:func:`gla.protocols.few_shot._draw`): global indices and ``how``."""
    tr, va, how = _draw("imagenet", dataset_entry("imagenet"), full, shots, seed, SimpleNamespace(data_root=root))
    return tr.tolist(), va.tolist(), how


def expected_on(train, order, shots, seed, lt_val=None):
    """Indices (into ``train``) of GLA's draw made on ``train`` put in ``order``."""
    index = {p: i for i, p in enumerate(train.images)}
    tr, va = imagenet_few_shot_split(train.subset(order), shots, seed, lt_val=lt_val)
    return [index[p] for p in tr.images], [index[p] for p in va.images]


def pickle_order(dataset_dir: Path, train, rows) -> list[int]:
    """Positions in ``train`` of the listing's rows, found independently of gla.pickles."""
    by_rel = {Path(p).relative_to(dataset_dir / "images").as_posix(): i for i, p in enumerate(train.images)}
    return [by_rel[rel] for rel, _, _ in rows]


# --------------------------------------------------------------------------- tests


def test_draw_follows_the_order_of_preprocessed_pkl(tmp_path):
    dataset_dir = write_tiny_imagenet(tmp_path)
    rows = gla_listing(dataset_dir)
    write_preprocessed(dataset_dir, rows)
    full = load_full(tmp_path)
    order = pickle_order(dataset_dir, full["train"], rows)
    assert order != list(range(len(order)))  # the listing is not our sorted order
    differs = False
    for shots in (1, 2, 4):
        for seed in (1, 2, 3):
            tr, va, how = draw(tmp_path, full, shots, seed)
            assert (tr, va) == expected_on(full["train"], order, shots, seed)
            assert how == "gla-imagenet:order from imagenet/preprocessed.pkl"
            assert len(tr) == len(va) == shots * len(WNIDS) and not set(tr) & set(va)
            differs |= (tr, va) != expected_on(full["train"], list(range(len(order))), shots, seed)
    assert differs  # the order matters: drawing on our sorted list gives other images


def test_draw_with_imagenet_lt_val_follows_the_pickle_order(tmp_path):
    dataset_dir = write_tiny_imagenet(tmp_path, per_class=70, lt_val=True)
    rows = gla_listing(dataset_dir)
    write_preprocessed(dataset_dir, rows)
    full = load_full(tmp_path)
    order = pickle_order(dataset_dir, full["train"], rows)
    lt_val = load_dataset("imagenet_lt", "val", root=tmp_path)
    tr, va, how = draw(tmp_path, full, 32, 1)
    assert how == "gla-imagenet+lt-val:order from imagenet/preprocessed.pkl"
    assert (tr, va) == expected_on(full["train"], order, 32, 1, lt_val=lt_val)
    assert len(va) == 20 * len(WNIDS) and len(tr) == 32 * len(WNIDS)
    assert (tr, va) != expected_on(full["train"], list(range(len(order))), 32, 1, lt_val=lt_val)


def test_without_the_pickle_the_draw_is_unchanged(tmp_path):
    dataset_dir = write_tiny_imagenet(tmp_path)
    (dataset_dir / "split_fewshot").mkdir()  # GLA's code always creates it; empty here
    full = load_full(tmp_path)
    for seed in (1, 2):
        tr, va, how = draw(tmp_path, full, 2, seed)
        assert how == "gla-imagenet"
        assert (tr, va) == expected_on(full["train"], list(range(len(full["train"]))), 2, seed)


def test_a_cached_split_file_wins_over_the_listing(tmp_path):
    """GLA's split file (train and val, both from the train folder) wins over the listing; a
    train-only ImageNet file (CoOp's, whose val is not drawn by GLA's rule) is not GLA's
    split, so the listing's draw is used."""
    dataset_dir = write_tiny_imagenet(tmp_path)
    rows = gla_listing(dataset_dir)
    write_preprocessed(dataset_dir, rows)
    write_datum_pickle(dataset_dir / "split_fewshot" / "shot_1-seed_1.pkl", {"train": rows[-1:], "val": rows[:1]})
    write_datum_pickle(dataset_dir / "split_fewshot" / "shot_1-seed_2.pkl", {"train": rows[-1:]})
    full = load_full(tmp_path)
    tr, va, how = draw(tmp_path, full, 1, 1)
    assert how == "cached:imagenet/split_fewshot/shot_1-seed_1.pkl"
    assert [full["train"].images[i] for i in tr] == [str(dataset_dir / "images" / rows[-1][0])]
    assert [full["train"].images[i] for i in va] == [str(dataset_dir / "images" / rows[0][0])]
    assert draw(tmp_path, full, 1, 2)[2] == "gla-imagenet:order from imagenet/preprocessed.pkl"


def test_the_many_shot_train_split_is_still_refused(tmp_path):
    dataset_dir = write_tiny_imagenet(tmp_path)
    write_preprocessed(dataset_dir, gla_listing(dataset_dir))
    full = load_full(tmp_path)
    many = load_dataset("imagenet", "train", root=tmp_path)
    with pytest.raises(ValueError, match="train_full"):
        sample_few_shot("imagenet", many, full["val"], 1, 1, root=tmp_path, cached=_cached_split(full))


def test_a_label_mismatch_names_the_first_mismatching_record(tmp_path):
    dataset_dir = write_tiny_imagenet(tmp_path)
    rows = gla_listing(dataset_dir)
    j = len(rows) // 2  # a record of the second class, labelled with the third
    rel = rows[j][0]
    rows[j] = (rel, 2, NAMES[2])
    write_preprocessed(dataset_dir, rows)
    full = load_full(tmp_path)
    with pytest.raises(ValueError, match=rf"preprocessed\.pkl \['train'\]: records\[{j}\] "
                                         rf"\('{OTHER_MACHINE}/{rel}'\) has label 2 but its image .*"
                                         rf"{Path(rel).name}'\) has label 1: the class orders differ"):
        draw(tmp_path, full, 1, 1)


def test_images_missing_here_or_not_listed_are_counted_and_named(tmp_path):
    dataset_dir = write_tiny_imagenet(tmp_path)
    rows = gla_listing(dataset_dir)
    write_preprocessed(dataset_dir, rows)
    gone = [dataset_dir / "images" / rel for rel, _, _ in rows[:2]]
    for f in gone:
        f.unlink()
    full = load_full(tmp_path)
    with pytest.raises(ValueError, match=rf"preprocessed\.pkl \['train'\] does not list the same images as the "
                                         rf"dataset: 2 of its {len(rows)} records match none of the "
                                         rf"{len(rows) - 2} images .*e\.g\. 'records\[0\] {OTHER_MACHINE}/{rows[0][0]}'"):
        draw(tmp_path, full, 1, 1)
    # and the other way round: images here that the listing lacks
    for f in gone:
        f.write_bytes(b"")
    new = dataset_dir / "images" / "train" / WNIDS[0] / "added_000.JPEG"
    new.write_bytes(b"")
    full = load_full(tmp_path)
    with pytest.raises(ValueError, match=rf"1 of the {len(rows) + 1} images below image_root .* are not in it "
                                         rf"\(images added here\?\), e\.g\. '{re.escape(str(new))}'"):
        draw(tmp_path, full, 1, 1)


def test_the_listing_is_read_without_running_it(tmp_path):
    class CallsSystem:  # unpickling it runs os.system(command)
        def __init__(self, command):
            self.command = command

        def __reduce__(self):
            return (os.system, (self.command,))

    dataset_dir = write_tiny_imagenet(tmp_path)
    marker = tmp_path / "ran"
    write_preprocessed(dataset_dir, gla_listing(dataset_dir), extra=CallsSystem(f"touch {marker}"))
    with pytest.raises(ForbiddenGlobalError, match=r"system"):
        draw(tmp_path, load_full(tmp_path), 1, 1)
    assert not marker.exists()


def test_a_gla_imagenet_split_file_draws_val_from_the_train_pool(tmp_path):
    """GLA's ImageNet ``split_fewshot/shot_{k}-seed_{s}.pkl`` (its ``datasets/imagenet.py``)
    holds train and val items both taken from the train folder: both are matched there, and
    the draw is the file's exactly."""
    dataset_dir = write_tiny_imagenet(tmp_path)
    full = load_full(tmp_path)
    rel = [Path(p).relative_to(dataset_dir / "images").as_posix() for p in full["train"].images]
    labels = full["train"].labels.tolist()
    train_pick, val_pick = [0, 13, 26], [5, 17, 30]  # one per class each, all from the train folder
    write_datum_pickle(dataset_dir / "split_fewshot" / "shot_1-seed_2.pkl",
                       {"train": [(rel[i], labels[i], NAMES[labels[i]]) for i in train_pick],
                        "val": [(rel[i], labels[i], NAMES[labels[i]]) for i in val_pick]})
    tr, va, how = draw(tmp_path, full, 1, 2)
    assert (tr, va) == (train_pick, val_pick) and how == "cached:imagenet/split_fewshot/shot_1-seed_2.pkl"
