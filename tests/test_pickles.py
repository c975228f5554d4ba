"""Reading the reference code's pickles without its code: Dassl splits and WiSE-FT checkpoints.

The fake classes below mirror the real ones where it matters for pickling:
``Datum`` is KaiyangZhou/Dassl.pytorch ``dassl/data/datasets/base_dataset.py`` (attributes
``_impath``, ``_label``, ``_domain``, ``_classname``), pickled as CoOp does in
KaiyangZhou/CoOp ``datasets/oxford_pets.py`` (``pickle.dump({"train": ..., "val": ...}, f,
protocol=pickle.HIGHEST_PROTOCOL)``); ``ImageEncoder``/``ClassificationHead``/
``ImageClassifier`` follow mlfoundations/wise-ft ``src/models/modeling.py``, saved as its
``src/models/utils.py`` ``torch_save`` does (``pickle.dump``) and with ``torch.save``.
"""

from __future__ import annotations

import os
import pickle
import sys
import types

import pytest
import torch

from gla.pickles import (
    DatumRecord,
    ForbiddenGlobalError,
    cached_few_shot_split,
    load_module_state_dict,
    match_records,
    read_dassl_split,
    split_image_classifier_state,
)

# --------------------------------------------------------------------------- fake modules


def _install_modules(tree: dict[str, dict]) -> list[str]:
    """Put fake modules (dotted name -> attributes) and their parents into sys.modules."""
    added = []
    for dotted, attrs in tree.items():
        parts = dotted.split(".")
        for i in range(1, len(parts) + 1):
            name = ".".join(parts[:i])
            if name not in sys.modules:
                sys.modules[name] = types.ModuleType(name)
                added.append(name)
        for key, value in attrs.items():
            if isinstance(value, type):
                value.__module__ = dotted
                value.__qualname__ = key
            setattr(sys.modules[dotted], key, value)
    return added


def _remove_modules(names: list[str]) -> None:
    for name in names:
        sys.modules.pop(name, None)


def _fake_datum_class():
    class Datum:
        def __init__(self, impath="", label=0, domain=0, classname=""):
            self._impath = impath
            self._label = label
            self._domain = domain
            self._classname = classname

    return Datum


OLD_ROOT = "/home/someone/DATA/oxford_pets/images"
ITEMS = [("Abyssinian_1.jpg", 0, "abyssinian"), ("Bengal_3.jpg", 5, "bengal"),
         ("Abyssinian_7.jpg", 0, "abyssinian"), ("pug_2.jpg", 27, "pug")]


def _write_split(path, split: dict[str, list[tuple[str, int, str]]], protocol=pickle.HIGHEST_PROTOCOL,
                 repeat_first: bool = False, extra=None):
    """Pickle ``split`` as CoOp does, with a fake Dassl installed only while dumping."""
    added = _install_modules({"dassl.data.datasets.base_dataset": {"Datum": _fake_datum_class()}})
    try:
        Datum = sys.modules["dassl.data.datasets.base_dataset"].Datum
        data = {key: [Datum(impath=p, label=y, classname=c) for p, y, c in items] for key, items in split.items()}
        if repeat_first:  # random.choices in Dassl may pick the same Datum twice
            data["train"].append(data["train"][0])
        if extra is not None:
            data["train"].append(extra)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            pickle.dump(data, fh, protocol=protocol)
    finally:
        _remove_modules(added)
    assert "dassl" not in sys.modules
    return path


def _coop_split(root=OLD_ROOT):
    return {"train": [(f"{root}/{f}", y, c) for f, y, c in ITEMS[:3]],
            "val": [(f"{root}/{f}", y, c) for f, y, c in ITEMS[3:]]}


class _CallsSystem:
    """Unpickling this runs ``os.system(command)``: what a malicious pickle does."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


SYSTEM_NAME = f"{os.system.__module__}.system"  # 'posix.system' on Linux

# --------------------------------------------------------------------------- Dassl splits


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_read_dassl_split_returns_records_without_dassl(tmp_path, protocol):
    path = _write_split(tmp_path / "shot_2-seed_1.pkl", _coop_split(), protocol=protocol, repeat_first=True)
    split = read_dassl_split(path)
    assert set(split) == {"train", "val"}
    expected_train = [DatumRecord(f"{OLD_ROOT}/{f}", y, 0, c) for f, y, c in ITEMS[:3]]
    assert split["train"] == expected_train + expected_train[:1]
    assert split["val"] == [DatumRecord(f"{OLD_ROOT}/pug_2.jpg", 27, 0, "pug")]
    with pytest.raises(AttributeError):  # frozen
        split["val"][0].label = 3
    assert "dassl" not in sys.modules


def test_read_dassl_split_refuses_os_system_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    path = _write_split(tmp_path / "evil.pkl", _coop_split(), extra=_CallsSystem(f"touch {marker}"))
    with pytest.raises(ForbiddenGlobalError, match=SYSTEM_NAME.replace(".", r"\.")) as info:
        read_dassl_split(path)
    assert info.value.global_name == SYSTEM_NAME
    assert not marker.exists()


def test_read_dassl_split_refuses_any_other_global(tmp_path):
    from collections import OrderedDict

    path = _write_split(tmp_path / "od.pkl", _coop_split(), extra=OrderedDict(a=1))
    with pytest.raises(pickle.UnpicklingError, match=r"collections\.OrderedDict"):
        read_dassl_split(path)


def test_read_dassl_split_rejects_other_shapes(tmp_path):
    p = tmp_path / "list.pkl"
    p.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(ValueError, match="expected a dict"):
        read_dassl_split(p)
    p.write_bytes(pickle.dumps({"train": [1]}))
    with pytest.raises(ValueError, match=r"\['train'\]\[0\].*Datum"):
        read_dassl_split(p)
    with pytest.raises(FileNotFoundError, match="no Dassl split"):
        read_dassl_split(tmp_path / "missing.pkl")


def _new_images(root, names):
    paths = []
    for n in names:
        p = root / n
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")
        paths.append(str(p))
    return paths


def test_match_records_by_path_below_image_root(tmp_path):
    root = tmp_path / "pets" / "images"
    names = ["pug_2.jpg", "Bengal_3.jpg", "Abyssinian_1.jpg", "Abyssinian_7.jpg", "beagle_1.jpg"]
    paths = _new_images(root, names)
    records = [DatumRecord(f"{OLD_ROOT}/{f}", y, 0, c) for f, y, c in ITEMS]
    assert match_records(records, paths, root) == [2, 1, 3, 0]
    # relative paths, and an image_root one level up (names below it still agree)
    assert match_records(records, names, root) == [2, 1, 3, 0]
    assert match_records(records, [f"images/{n}" for n in names], root.parent) == [2, 1, 3, 0]
    rel_root = os.path.relpath(root)  # a relative image_root repeated at the start of each path
    assert match_records(records, [os.path.join(rel_root, n) for n in names], rel_root) == [2, 1, 3, 0]


def test_match_records_needs_the_class_folder_when_file_names_repeat(tmp_path):
    root = tmp_path / "caltech-101" / "101_ObjectCategories"
    paths = _new_images(root, ["ant/image_0001.jpg", "bass/image_0001.jpg", "bass/image_0002.jpg"])
    old = "C:\\data\\caltech-101\\101_ObjectCategories"  # written on Windows
    records = [DatumRecord(f"{old}\\bass\\image_0001.jpg", 1, 0, "bass"),
               DatumRecord(f"{old}\\ant\\image_0001.jpg", 0, 0, "ant")]
    assert match_records(records, paths, root) == [1, 0]
    assert match_records(records, paths, root, labels=[0, 1, 1]) == [1, 0]
    with pytest.raises(ValueError, match=r"records\[0\].*label 1.*image_paths\[1\] has label 0"):
        match_records(records, paths, root, labels=[1, 0, 1])
    stray = [DatumRecord(f"{old}\\crab\\image_0001.jpg", 2, 0, "crab")]
    with pytest.raises(ValueError, match=r"records\[0\] \('C:.*crab.*same file name"):
        match_records(stray, paths, root)


def test_match_records_rejects_bad_image_lists(tmp_path):
    root = tmp_path / "images"
    with pytest.raises(ValueError, match="not under image_root"):
        match_records([], ["/elsewhere/x.jpg"], root)
    with pytest.raises(ValueError, match=r"image_paths\[0\] and image_paths\[1\] are the same image"):
        match_records([], [str(root / "x.jpg"), "x.jpg"], root)


def test_cached_few_shot_split(tmp_path):
    dataset_dir = tmp_path / "oxford_pets"
    root = dataset_dir / "images"
    train_paths = _new_images(root, ["Bengal_3.jpg", "Abyssinian_7.jpg", "Abyssinian_1.jpg"])
    val_paths = _new_images(root, ["beagle_1.jpg", "pug_2.jpg"])
    assert cached_few_shot_split(dataset_dir, 2, 1, train_paths, val_paths, root) is None
    _write_split(dataset_dir / "split_fewshot" / "shot_2-seed_1.pkl", _coop_split())
    assert cached_few_shot_split(dataset_dir, 2, 1, train_paths, val_paths, root) == ([2, 0, 1], [1])
    assert cached_few_shot_split(dataset_dir, 2, 2, train_paths, val_paths, root) is None
    # CoOp's ImageNet caches only "train"
    _write_split(dataset_dir / "split_fewshot" / "shot_1-seed_3.pkl", {"train": _coop_split()["train"]})
    assert cached_few_shot_split(dataset_dir, 1, 3, train_paths, val_paths, root,
                                 train_labels=[5, 0, 0]) == ([2, 0, 1], None)
    with pytest.raises(ValueError, match="shots"):
        cached_few_shot_split(dataset_dir, 0, 1, train_paths, val_paths, root)


# --------------------------------------------------------------------------- WiSE-FT checkpoints


def _fake_wiseft_classes():
    class ImageEncoder(torch.nn.Module):
        def __init__(self, model, preprocess):
            super().__init__()
            self.model = model
            self.train_preprocess = self.val_preprocess = preprocess
            self.cache_dir = None

    class ClassificationHead(torch.nn.Linear):
        def __init__(self, normalize, weights, biases=None):
            out_size, in_size = weights.shape
            super().__init__(in_size, out_size)
            self.normalize = normalize
            self.weight = torch.nn.Parameter(weights.clone())
            self.bias = torch.nn.Parameter(biases.clone() if biases is not None else torch.zeros(out_size))

    class ImageClassifier(torch.nn.Module):
        def __init__(self, image_encoder, classification_head, process_images=True):
            super().__init__()
            self.image_encoder = image_encoder
            self.classification_head = classification_head
            self.process_images = process_images
            self.train_preprocess = image_encoder.train_preprocess
            self.val_preprocess = image_encoder.val_preprocess

    return {"ImageEncoder": ImageEncoder, "ClassificationHead": ClassificationHead,
            "ImageClassifier": ImageClassifier}


def _save(obj, path, how):
    if how == "pickle.dump":  # WiSE-FT's src/models/utils.py torch_save
        with open(path, "wb") as fh:
            pickle.dump(obj, fh)
    elif how == "torch.save":
        torch.save(obj, path)
    else:
        torch.save(obj, path, _use_new_zipfile_serialization=False)


@pytest.fixture(scope="module")
def wiseft_model(tiny_openclip):
    """A WiSE-FT-like ImageClassifier (tiny open_clip model, 5-class head) and its state dict."""
    import open_clip

    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms(tiny_openclip)
    return model, preprocess


def _build_and_save(wiseft_model, path, how, extra=None):
    model, preprocess = wiseft_model
    added = _install_modules({"src.models.modeling": _fake_wiseft_classes()})
    try:
        m = sys.modules["src.models.modeling"]
        head = m.ClassificationHead(True, torch.randn(5, 32), torch.randn(5))
        clf = m.ImageClassifier(m.ImageEncoder(model, preprocess), head)
        if extra is not None:
            clf.image_encoder.note = extra
        expected = {k: v.clone() for k, v in clf.state_dict().items()}
        _save(clf, path, how)
    finally:
        _remove_modules(added)
    assert "src" not in sys.modules
    return expected


@pytest.mark.filterwarnings("ignore:Couldn't retrieve source code")  # torch.save's legacy format
@pytest.mark.parametrize("how", ["pickle.dump", "torch.save", "torch.save legacy"])
def test_load_module_state_dict_of_wiseft_checkpoint(tmp_path, wiseft_model, how):
    path = tmp_path / "checkpoint_10.pt"
    expected = _build_and_save(wiseft_model, path, how)
    got = load_module_state_dict(path)
    assert list(got) == list(expected)
    for k in expected:
        assert got[k].dtype == expected[k].dtype and torch.equal(got[k], expected[k]), k
    assert "src" not in sys.modules


@pytest.mark.parametrize("how", ["pickle.dump", "torch.save"])
def test_load_module_state_dict_refuses_a_forbidden_call(tmp_path, wiseft_model, how):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    _build_and_save(wiseft_model, path, how, extra=_CallsSystem(f"touch {marker}"))
    with pytest.raises(ForbiddenGlobalError, match=SYSTEM_NAME.replace(".", r"\.")) as info:
        load_module_state_dict(path)
    assert info.value.global_name == SYSTEM_NAME
    assert not marker.exists()


def test_unknown_classes_become_stubs_and_are_never_imported(tmp_path):
    class Thing:
        def __setstate__(self, state):  # would run if the real class were used
            raise AssertionError("the original class ran")

    added = _install_modules({"not_installed_anywhere.mod": {"Thing": Thing}})
    try:
        lin = torch.nn.Linear(3, 2)
        lin.tag = Thing()
        lin.blob = b"\x00\xffraw"  # protocol 2 writes bytes through _codecs.encode
        counts = torch.arange(3.0)
        counts.note = "a tensor with attributes goes through _rebuild_from_type_v2"
        lin.register_buffer("counts", counts)
        lin.register_buffer("scratch", torch.zeros(1), persistent=False)
        torch.save(lin, tmp_path / "lin.pt")
    finally:
        _remove_modules(added)
    got = load_module_state_dict(tmp_path / "lin.pt")
    assert list(got) == list(lin.state_dict()) == ["weight", "bias", "counts"]
    assert torch.equal(got["weight"], lin.weight.detach()) and torch.equal(got["counts"], counts)
    assert "not_installed_anywhere" not in sys.modules


def test_load_module_state_dict_accepts_state_dicts(tmp_path):
    lin = torch.nn.Linear(4, 3)
    sd = lin.state_dict()
    torch.save(sd, tmp_path / "sd.pt")
    torch.save({"state_dict": sd, "epoch": 3}, tmp_path / "wrapped.pt")
    torch.save({"state_dict": lin, "epoch": 3}, tmp_path / "wrapped_module.pt")
    for name in ("sd.pt", "wrapped.pt", "wrapped_module.pt"):
        got = load_module_state_dict(tmp_path / name)
        assert list(got) == ["weight", "bias"] and all(torch.equal(got[k], sd[k]) for k in sd), name
    torch.save({"a": 1}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="entry 'a' is a int"):
        load_module_state_dict(tmp_path / "bad.pt")


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit is deprecated; still what old archives are
def test_load_module_state_dict_refuses_torchscript(tmp_path):
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), tmp_path / "ts.pt")
    with pytest.raises(ValueError, match="TorchScript"):
        load_module_state_dict(tmp_path / "ts.pt")


def test_split_image_classifier_state_loads_into_open_clip(tmp_path, wiseft_model, tiny_openclip):
    import open_clip

    path = tmp_path / "checkpoint.pt"
    expected = _build_and_save(wiseft_model, path, "pickle.dump")
    clip_state, w, b = split_image_classifier_state(load_module_state_dict(path))
    fresh = open_clip.create_model(tiny_openclip)
    fresh.load_state_dict(clip_state)  # strict: the same keys as the model
    assert torch.equal(fresh.visual.conv1.weight, wiseft_model[0].visual.conv1.weight)
    assert torch.equal(w, expected["classification_head.weight"]) and w.shape == (5, 32)
    assert torch.equal(b, expected["classification_head.bias"])
    with pytest.raises(ValueError, match="classification_head.bias"):
        split_image_classifier_state({k: v for k, v in expected.items() if k != "classification_head.bias"})
    with pytest.raises(ValueError, match="outside"):
        split_image_classifier_state({**expected, "extra.weight": w})
