"""Readers: the ImageNet class table, ImageNet-A/-R subsets, CoOp split errors, image errors."""

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from gla.data import (
    LabelledImages,
    PILTensorImages,
    imagenet_classnames,
    imagenet_wnids,
    load_dataset,
    project_labels,
    project_logits,
)
from gla.data.imagenet import imagenet_subset_wnids
from gla.data.images import ImageReadError

SUBSETS = json.loads((Path(__file__).parent / "data" / "golden" / "subsets.json").read_text())


def img(path, colour=(128, 0, 0), fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path, format=fmt)


def test_shipped_wnids_and_subsets_match_the_published_lists():
    """The sorted wnids (hendrycks/imagenet-r eval.py L19, 3131cac) and WiSE-FT's CLASS_SUBLIST
    (mlfoundations/wise-ft src/datasets/imagenet_a.py L9-26, imagenet_r.py L9-26, 58b7a4b)."""
    wnids = SUBSETS["inputs"]["imagenet_wnids_sorted"]
    assert imagenet_wnids() == wnids
    for name in ("imagenet_a", "imagenet_r"):
        sub = SUBSETS["expected"][f"{name}_class_sublist"]
        assert [wnids.index(w) for w in imagenet_subset_wnids(name)] == sub
        assert imagenet_subset_wnids(name) == SUBSETS["expected"][f"{name}_wnids_in_label_order"]


def test_projection_equals_the_sublist_columns(tmp_path):
    """project_logits(z, subset) == z[:, CLASS_SUBLIST] (wise-ft src/datasets/imagenet.py L89-95, 58b7a4b)."""
    for w in imagenet_subset_wnids("imagenet_a"):
        img(tmp_path / "imagenet-adversarial" / "imagenet-a" / w / "0.jpg")
    a = load_dataset("imagenet_a", "test", root=tmp_path)
    sub = SUBSETS["expected"]["imagenet_a_class_sublist"]
    assert a.class_subset.tolist() == sub and a.labels.tolist() == sub
    z = torch.randn(4, 1000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(project_logits(z, a.class_subset), z[:, sub])
    assert project_labels(a.labels, a.class_subset).tolist() == list(range(200))


def test_partial_imagenet_r_download_names_the_missing_wnids(tmp_path):
    wnids = imagenet_subset_wnids("imagenet_r")
    for w in wnids[3:]:
        img(tmp_path / "imagenet-rendition" / "imagenet-r" / w / "0.jpg")
    with pytest.raises(ValueError, match=f"missing 3 of the 200 published wnids: {wnids[0]}, {wnids[1]}, {wnids[2]}"):
        load_dataset("imagenet_r", "test", root=tmp_path)


@pytest.mark.parametrize("name, folder", [("imagenet_a", "imagenet-adversarial/imagenet-a"),
                                          ("imagenet_r", "imagenet-rendition/imagenet-r")])
def test_the_completeness_error_names_the_folders_it_did_not_recognise(tmp_path, name, folder):
    """A renamed synset folder (and a stray one) beside the published 200: one message
    names the missing wnid and every folder not recognised, with the folder they sit in."""
    wnids = imagenet_subset_wnids(name)
    for w in wnids[1:]:
        img(tmp_path / folder / w / "0.jpg")
    img(tmp_path / folder / f"{wnids[0]} (1)" / "0.jpg")  # renamed by a copy
    (tmp_path / folder / "__MACOSX").mkdir()
    with pytest.raises(ValueError) as info:
        load_dataset(name, "test", root=tmp_path)
    text = str(info.value)
    assert f"missing 1 of the 200 published wnids: {wnids[0]}" in text
    assert f"2 folder(s) not recognised (not among the 200 published wnids): __MACOSX, {wnids[0]} (1)" in text
    assert str(tmp_path / folder) in text


def test_classnames_come_from_the_table():
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    assert imagenet_classnames() == list(IMAGENET_CLASSNAMES)
    assert imagenet_classnames(["n01484850", "n01440764"]) == ["great white shark", "tench"]
    with pytest.raises(ValueError, match="n99999999"):
        imagenet_classnames(["n99999999"])


def test_imagenet_subset_folder_hidden_folders_and_unknown_wnids(tmp_path):
    train = tmp_path / "imagenet" / "images" / "train"
    for w in ["n01443537", "n01484850"]:  # an ImageNet-100-like subset
        for i in range(3):
            img(train / w / f"{i}.JPEG")
        img(tmp_path / "imagenet" / "images" / "val" / w / "v.JPEG")
    (train / ".ipynb_checkpoints").mkdir()
    img(train / "n01443537" / ".hidden.JPEG")
    ds = load_dataset("imagenet", "train_full", root=tmp_path)
    assert ds.classnames == ["goldfish", "great white shark"] and len(ds) == 6
    assert ds.meta["imagenet_indices"] == [1, 2]
    assert load_dataset("imagenet", "test", root=tmp_path).labels.tolist() == [0, 1]
    (train / "n99999999").mkdir()
    with pytest.raises(ValueError, match="n99999999"):
        load_dataset("imagenet", "train_full", root=tmp_path)


def test_shifted_sets_load_without_imagenet_train(tmp_path):
    img(tmp_path / "imagenet-sketch" / "images" / "n01484850" / "a.JPEG")
    (tmp_path / "imagenet-sketch" / "images" / ".ipynb_checkpoints").mkdir()
    sk = load_dataset("imagenet_sketch", "test", root=tmp_path)
    assert sk.labels.tolist() == [2] and sk.n_classes == 1000 and sk.classnames[2] == "great white shark"
    img(tmp_path / "imagenetv2" / "imagenetv2-matched-frequency-format-val" / "999" / "a.jpeg")
    assert load_dataset("imagenet_v2", "test", root=tmp_path).labels.tolist() == [999]


def test_truncated_jpeg_names_file_and_dataset(tmp_path):
    p = tmp_path / "imagenet" / "images" / "val" / "n01440764" / "bad.JPEG"
    img(p, fmt="JPEG")
    p.write_bytes(p.read_bytes()[:40])
    ds = load_dataset("imagenet", "test", root=tmp_path)
    with pytest.raises(ImageReadError, match=r"dataset 'imagenet' \(split 'test'\): cannot read image '.*bad.JPEG'"):
        ds[0]


def test_with_transform_and_subset_keep_class_and_attributes():
    data = PILTensorImages(torch.rand(4, 3, 8, 8), [0, 1, 0, 1], ["a", "b"], ["{}."], name="c", split="train",
                           meta={"k": 1})
    assert isinstance(data[0][0], torch.Tensor)
    seen = []
    t = data.with_transform(lambda im: seen.append(type(im).__name__) or 0)
    assert type(t) is PILTensorImages and t.name == "c" and t.meta == {"k": 1} and data.transform is None
    t[0]
    assert seen == ["Image"]
    s = t.subset([3, 1], split="val")
    assert type(s) is PILTensorImages and s.split == "val" and s.labels.tolist() == [1, 1] and s.transform is t.transform
    plain = LabelledImages(["x.png"], [0], ["a"], ["{}."], crop_border=2, name="o")
    assert plain.with_transform(None).crop_border == 2 and plain.subset([0]).crop_border == 2


@pytest.fixture
def dtd(tmp_path):
    base = tmp_path / "dtd"
    split = {"train": [], "val": [], "test": []}
    for s in split:
        for y, c in enumerate(["banded", "blotchy"]):
            rel = f"{c}/{s}.jpg"
            img(base / "images" / rel)
            split[s].append([rel, y, c])
    return tmp_path, base / "split_zhou_DescribableTextures.json", split


def test_coop_split_errors_name_dataset_and_file(dtd):
    root, path, split = dtd
    split["test"].append(["banded/test.jpg", 5, "ghost"])
    path.write_text(json.dumps(split))
    with pytest.raises(ValueError, match=r"dtd: split file .*split_zhou_DescribableTextures.json: 'test' has "
                                         r"label\(s\) \[5\] that 'train' lacks"):
        load_dataset("dtd", "test", root=root)
    assert len(load_dataset("dtd", "train", root=root)) == 2
    path.write_text("{not json")
    with pytest.raises(ValueError, match=r"dtd: split file .*DescribableTextures.json is not valid JSON"):
        load_dataset("dtd", "train", root=root)
    split["test"] = [["banded/test.jpg", "0"]]
    path.write_text(json.dumps(split))
    with pytest.raises(ValueError, match=r"dtd: split file .*: row 0 of 'test'"):
        load_dataset("dtd", "train", root=root)

