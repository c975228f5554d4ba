"""Each real-dataset reader on a generated fixture in its exact on-disk layout."""

import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from gla.data import few_shot_split, imagenet_wnids, load_dataset, project_labels, project_logits
from gla.data.imagenet import imagenet_subset_wnids


def img(path, colour=(128, 0, 0)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)


@pytest.fixture
def imagenet_root(tmp_path):
    wnids = ["n01440764", "n01443537", "n01484850"]
    for w in wnids:
        for i in range(12):
            img(tmp_path / "imagenet" / "images" / "train" / w / f"{w}_{i}.JPEG")
        for i in range(3):
            img(tmp_path / "imagenet" / "images" / "val" / w / f"ILSVRC2012_val_{w}_{i}.JPEG")
    return tmp_path


def test_imagenet_train_val_test_are_disjoint_and_balanced(imagenet_root):
    tr = load_dataset("imagenet", "train", root=imagenet_root)
    va = load_dataset("imagenet", "val", root=imagenet_root, val_per_class=4)
    te = load_dataset("imagenet", "test", root=imagenet_root)
    assert va.class_counts().tolist() == [4, 4, 4]
    tr4 = load_dataset("imagenet", "train", root=imagenet_root, val_per_class=4)
    assert not set(tr4.images) & set(va.images)
    assert len(tr4) + len(va) == 36 and len(tr) == 36 - 3 * 10
    assert te.class_counts().tolist() == [3, 3, 3]
    assert all("/val/" in p for p in te.images)
    x, y = te[0]
    assert x.size == (8, 8) and y == 0
    assert len(te.templates) == 80 and te.classnames == ["tench", "goldfish", "great white shark"]
    full = load_dataset("imagenet", "train_full", root=imagenet_root)
    assert len(full) == 36 and full.meta["holdout_per_class"] == 0 and tr.meta["holdout_per_class"] == 10


def test_imagenet_bad_layout_prints_the_expected_one(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"images/train/<wnid>"):
        load_dataset("imagenet", "test", root=tmp_path)


def test_imagenet_r_subset_and_projection(tmp_path):
    wnids = imagenet_subset_wnids("imagenet_r")
    for w in wnids[:2]:
        img(tmp_path / "imagenet-rendition" / "imagenet-r" / w / "a.jpg")
    for w in wnids[2:]:
        (tmp_path / "imagenet-rendition" / "imagenet-r" / w).mkdir(parents=True)
    r = load_dataset("imagenet_r", "test", root=tmp_path)  # no imagenet/images/train needed
    all_wnids = imagenet_wnids()
    assert r.class_subset.tolist() == [all_wnids.index(w) for w in wnids] and len(r.class_subset) == 200
    assert r.labels.tolist() == r.class_subset[:2].tolist() and r.n_classes == 1000
    logits = torch.arange(2 * 1000, dtype=torch.float32).reshape(2, 1000)
    assert project_logits(logits, r.class_subset).tolist() == logits[:, r.class_subset].tolist()
    assert project_labels(r.labels, r.class_subset).tolist() == [0, 1]


def test_objectnet_mapping_groups_crop_and_max_projection(imagenet_root, objectnet_fixture):
    from gla.data import ClassGroups, project_log_prior
    from gla.data.imagenet import objectnet_mapping

    objectnet_fixture(imagenet_root)
    folders, names, groups = objectnet_mapping(imagenet_root)
    assert folders == ["fish_bowl", "shark_toy"] and names == ["fish", "shark"]
    assert groups == ClassGroups(((1, 0), (2,)))  # goldfish is index 1, tench 0 in sorted-wnid order
    on = load_dataset("objectnet", "test", root=imagenet_root)
    assert on.labels.tolist() == [0, 0, 1] and on.meta["objectnet_classnames"] == ["fish", "shark"]
    x, _ = on[0]
    assert x.size == (8, 8) and x.getcolors() == [(64, (0, 0, 200))]  # the frame is cut off
    assert on.subset([2]).crop_border == 2
    logits = torch.tensor([[1.0, 5.0, 2.0], [3.0, 0.0, 4.0]])
    assert project_logits(logits, on.class_subset).tolist() == [[5.0, 2.0], [3.0, 4.0]]
    assert project_labels(on.labels, on.class_subset).tolist() == [0, 0, 1]
    lq = project_log_prior(torch.log(torch.tensor([0.5, 0.3, 0.2])), on.class_subset)
    assert torch.allclose(lq.exp(), torch.tensor([0.8, 0.2]))
    with pytest.raises(ValueError, match="group indices"):
        project_labels(torch.tensor([2]), on.class_subset)


def test_objectnet_bad_mapping_and_layout(imagenet_root, tmp_path, objectnet_fixture):
    with pytest.raises(FileNotFoundError, match=r"mappings/objectnet_to_imagenet_1k.json"):
        load_dataset("objectnet", "test", root=tmp_path)
    objectnet_fixture(imagenet_root)
    maps = imagenet_root / "objectnet-1.0" / "mappings"
    (maps / "objectnet_to_imagenet_1k.json").write_text(json.dumps({"Fish": "goldfish; carp"}))
    with pytest.raises(ValueError, match="'carp'"):
        load_dataset("objectnet", "test", root=imagenet_root)


def test_objectnet_features_are_keyed_by_the_crop(imagenet_root, objectnet_fixture):
    from gla.features import dataset_identity

    objectnet_fixture(imagenet_root)
    on = load_dataset("objectnet", "test", root=imagenet_root)
    plain = on.subset(range(len(on)))
    plain.crop_border = 0
    assert dataset_identity(on) != dataset_identity(plain)


def test_imagenet_v2_uses_index_folders(imagenet_root):
    base = imagenet_root / "imagenetv2" / "imagenetv2-matched-frequency-format-val"
    img(base / "0" / "a.jpeg")
    img(base / "2" / "b.jpeg")
    v2 = load_dataset("imagenet_v2", "test", root=imagenet_root)
    assert v2.labels.tolist() == [0, 2] and v2.class_subset is None


@pytest.fixture
def coop_root(tmp_path):
    base = tmp_path / "dtd"
    split = {}
    classes = ["banded", "blotchy", "braided"]
    for s, n in [("train", 20), ("val", 6), ("test", 5)]:
        split[s] = []
        for y, c in enumerate(classes):
            for i in range(n):
                rel = f"{c}/{c}_{s}_{i}.jpg"
                img(base / "images" / rel)
                split[s].append([rel, y, c])
    (base / "split_zhou_DescribableTextures.json").write_text(json.dumps(split))
    return tmp_path


def test_coop_split_file_and_few_shot_protocol(coop_root):
    tr = load_dataset("dtd", "train", root=coop_root)
    va = load_dataset("dtd", "val", root=coop_root)
    assert tr.classnames == ["banded", "blotchy", "braided"] and tr.templates == ["{} texture."]
    for shots, val_shots in [(1, 1), (2, 2), (4, 4), (8, 4), (16, 4)]:
        ktr, kva = few_shot_split(tr, va, shots, seed=1)
        assert ktr.class_counts().tolist() == [shots] * 3
        assert kva.class_counts().tolist() == [val_shots] * 3
    a = few_shot_split(tr, va, 4, seed=1)[0].images
    assert a == few_shot_split(tr, va, 4, seed=1)[0].images != few_shot_split(tr, va, 4, seed=2)[0].images


def test_coop_missing_split_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="split_zhou_EuroSAT.json"):
        load_dataset("eurosat", "train", root=tmp_path)


def test_fgvc_aircraft_own_files(tmp_path):
    base = tmp_path / "fgvc_aircraft"
    base.mkdir()
    (base / "variants.txt").write_text("707-320\nA300B4\n")
    (base / "images_variant_test.txt").write_text("1025794 707-320\n1340192 A300B4\n")
    img(base / "images" / "1025794.jpg")
    img(base / "images" / "1340192.jpg")
    te = load_dataset("fgvc_aircraft", "test", root=tmp_path)
    assert te.labels.tolist() == [0, 1] and te.classnames == ["707-320", "A300B4"]
    with pytest.raises(FileNotFoundError, match="images_variant_"):
        load_dataset("fgvc_aircraft", "train", root=tmp_path)


def test_lt_split_files(tmp_path):
    lines = []
    for y, w in enumerate(["n01440764", "n01443537"]):
        for i in range(3 - y):
            rel = f"train/{w}/{w}_{i}.JPEG"
            img(tmp_path / "imagenet" / "images" / rel)
            lines.append(f"{rel} {y}")
    (tmp_path / "ImageNet_LT").mkdir()
    (tmp_path / "ImageNet_LT" / "ImageNet_LT_train.txt").write_text("\n".join(lines) + "\n")
    tr = load_dataset("imagenet_lt", "train", root=tmp_path)
    assert tr.class_counts().tolist() == [3, 2] and tr.classnames == ["tench", "goldfish"]
    # Places-LT with categories file.
    (tmp_path / "places365" / "a").mkdir(parents=True)
    img(tmp_path / "places365" / "a" / "airfield" / "1.jpg")
    img(tmp_path / "places365" / "b" / "bakery" / "shop" / "1.jpg")
    (tmp_path / "places365" / "categories_places365.txt").write_text("/a/airfield 0\n/b/bakery/shop 1\n")
    (tmp_path / "Places_LT").mkdir()
    (tmp_path / "Places_LT" / "Places_LT_test.txt").write_text("/a/airfield/1.jpg 0\n/b/bakery/shop/1.jpg 1\n")
    te = load_dataset("places365_lt", "test", root=tmp_path)
    assert te.classnames == ["airfield", "bakery shop"] and te.labels.tolist() == [0, 1]
    with pytest.raises(FileNotFoundError, match="Places_LT_val.txt"):
        load_dataset("places365_lt", "val", root=tmp_path)


def test_cifar100_torchvision_files(tmp_path):
    base = tmp_path / "cifar-100-python"
    base.mkdir()
    names = [f"class_{i}" for i in range(100)]
    with open(base / "meta", "wb") as fh:
        pickle.dump({"fine_label_names": names}, fh)
    labels = [i % 100 for i in range(300)]
    data = np.random.default_rng(0).integers(0, 255, (300, 3072), dtype=np.uint8)
    for s in ("train", "test"):
        with open(base / s, "wb") as fh:
            pickle.dump({"data": data, "fine_labels": labels}, fh)
    va = load_dataset("cifar100", "val", root=tmp_path, val_per_class=1)
    tr = load_dataset("cifar100", "train", root=tmp_path, val_per_class=1)
    assert len(va) == 100 and len(tr) == 200 and va.classnames[3] == "class 3"
    x, y = load_dataset("cifar100", "test", root=tmp_path)[5]
    assert x.shape == (3, 32, 32) and y == 5


def test_root_is_required_for_real_data(monkeypatch):
    monkeypatch.delenv("GLA_DATA_ROOT", raising=False)
    with pytest.raises(ValueError, match="GLA_DATA_ROOT"):
        load_dataset("imagenet", "test")
