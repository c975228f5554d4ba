"""Read files that the reference code left on disk, without installing it or running its pickles.

Two kinds of files matter to users of the paper's code:

* **Dassl few-shot splits.** CoOp's datasets (KaiyangZhou/CoOp ``datasets/oxford_pets.py``
  and ``datasets/imagenet.py``) and GLA's few-shot code (``GLA.FS.public/datasets/imagenet.py``
  in github.com/BeierZhu/GLA) cache their draws as ``split_fewshot/shot_{k}-seed_{s}.pkl``,
  a ``pickle.dump(..., protocol=pickle.HIGHEST_PROTOCOL)`` of ``{"train": [Datum, ...],
  "val": [Datum, ...]}`` (CoOp's ImageNet keeps only ``"train"``), and GLA's ImageNet caches
  the whole dataset as ``imagenet/preprocessed.pkl`` (``{"train": [...], "test": [...]}``).
  ``Datum`` is ``dassl.data.datasets.base_dataset.Datum`` (KaiyangZhou/Dassl.pytorch; the
  fork in GLA's ``Dassl.ProGrad.pytorch.zip`` keeps the same path), an object with the
  attributes ``_impath``, ``_label``, ``_domain`` and ``_classname``.
  :func:`read_dassl_split` reads such a file with an unpickler that knows exactly that one
  class (turned into a frozen :class:`DatumRecord`) and no other global at all;
  :func:`match_records` finds each record's image among the user's images, and
  :func:`cached_few_shot_split` does both for a few-shot sampler;
  :func:`preprocessed_train_order` turns GLA's ``preprocessed.pkl`` into an order of the
  user's ImageNet train set (:func:`match_listing`: one record per image), on which GLA's
  few-shot draw is reproduced.

* **WiSE-FT checkpoints.** WiSE-FT (mlfoundations/wise-ft ``src/models/modeling.py``)
  saves a whole ``ImageClassifier`` module, an image encoder holding a CLIP model plus a
  ``ClassificationHead``. Its ``ImageClassifier.save`` goes through ``src/models/utils.py``
  ``torch_save``, which is a plain ``pickle.dump`` of the module (tensor storages then sit
  inside the pickle as ``torch.storage._load_from_bytes`` calls); other code saves the same
  module with ``torch.save`` (a zip archive). :func:`load_module_state_dict` reads both, and
  plain state dicts, with an unpickler that rebuilds tensors, maps every other class to an
  inert stub that only records its state (no code of the original class runs, nothing is
  imported) and refuses globals that can reach the operating system or run code.
  :func:`split_image_classifier_state` splits the result into the CLIP weights and the head.

Why not ``pickle.load`` / ``torch.load(weights_only=False)``: unpickling calls any function
the file names, so a checkpoint from the web can run arbitrary code. The unpicklers here only
ever call the few functions listed in this module.
"""

from __future__ import annotations

import _compat_pickle
import io
import os
import pickle
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "DATUM_CLASS",
    "DatumRecord",
    "ForbiddenGlobalError",
    "cached_few_shot_split",
    "load_module_state_dict",
    "match_listing",
    "match_records",
    "preprocessed_train_order",
    "read_dassl_split",
    "split_image_classifier_state",
]

DATUM_CLASS = ("dassl.data.datasets.base_dataset", "Datum")
"""Module and name under which Dassl's ``Datum`` is pickled."""


class ForbiddenGlobalError(pickle.UnpicklingError):
    """A pickle names a global that the restricted unpickler refuses.

    ``global_name`` is the dotted name as written in the file (``"posix.system"``).
    """

    def __init__(self, global_name: str, why: str):
        self.global_name = global_name
        super().__init__(f"refusing to unpickle the global {global_name}: {why}")


def _fix_py2_name(module: str, name: str) -> tuple[str, str]:
    """Map Python 2 names (``__builtin__.set``, written by protocol 2) to Python 3 ones."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


# ----------------------------------------------------------------------------------------------
# Dassl few-shot splits
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DatumRecord:
    """One item of a Dassl split: what ``dassl...base_dataset.Datum`` holds, as plain data.

    Attributes
    ----------
    impath : str
        Image path as written by the machine that made the pickle (usually absolute).
    label : int
        Class index.
    domain : int
        Domain index (0 for every dataset of the paper).
    classname : str
        Class name as the dataset code wrote it (underscores kept).
    """

    impath: str
    label: int
    domain: int
    classname: str


class _DatumState:
    """Placeholder that receives a pickled ``Datum``'s attributes; turned into a DatumRecord."""

    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state = None

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
            merged = dict(state[0] or {})
            merged.update(state[1] or {})
            state = merged
        self.state = state


def _datum_reconstructor(cls: Any, base: Any, state: Any) -> _DatumState:
    """``copyreg._reconstructor`` of protocols 0 and 1, for the Datum placeholder only."""
    if cls is not _DatumState or base is not object or state is not None:
        raise ForbiddenGlobalError("copyreg._reconstructor",
                                   f"only allowed to rebuild {'.'.join(DATUM_CLASS)} objects")
    return _DatumState()


class _DasslUnpickler(pickle.Unpickler):
    """Knows ``Datum`` and nothing else: every other global is refused."""

    def find_class(self, module: str, name: str) -> Any:
        module, name = _fix_py2_name(module, name)
        if (module, name) == DATUM_CLASS:
            return _DatumState
        # Protocols 0 and 1 write plain objects through copyreg._reconstructor(cls, object, None).
        if (module, name) == ("copyreg", "_reconstructor"):
            return _datum_reconstructor
        if (module, name) == ("builtins", "object"):
            return object
        raise ForbiddenGlobalError(f"{module}.{name}", f"a Dassl split may only contain {'.'.join(DATUM_CLASS)} "
                                   "objects inside dicts, lists, strings and numbers")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError(f"unexpected persistent id {pid!r} in a Dassl split")


_DATUM_KEYS = {"_impath": str, "_label": int, "_domain": int, "_classname": str}


def _to_record(obj: Any, where: str) -> DatumRecord:
    if not isinstance(obj, _DatumState):
        raise ValueError(f"{where}: expected a {'.'.join(DATUM_CLASS)} object, got {type(obj).__name__}")
    state = obj.state
    if not isinstance(state, dict):
        raise ValueError(f"{where}: a Datum without attributes (state {state!r})")
    values = {}
    for key, kind in _DATUM_KEYS.items():
        if key not in state:
            raise ValueError(f"{where}: the Datum has no attribute {key!r} (has {sorted(state)})")
        value = state[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ValueError(f"{where}: Datum.{key} should be {kind.__name__}, got {type(value).__name__}")
        values[key[1:]] = value
    return DatumRecord(**values)


def read_dassl_split(path: str | os.PathLike) -> dict[str, list[DatumRecord]]:
    """Read a pickled Dassl split without Dassl and without running the pickle.

    Reads the caches written by CoOp (``split_fewshot/shot_{k}-seed_{s}.pkl``:
    ``{"train": [...], "val": [...]}``, KaiyangZhou/CoOp ``datasets/oxford_pets.py``) and
    GLA (``imagenet/preprocessed.pkl``: ``{"train": [...], "test": [...]}``, BeierZhu/GLA
    ``GLA.FS.public/datasets/imagenet.py``). Any pickle protocol is accepted.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.pkl`` file.

    Returns
    -------
    dict of str to list of DatumRecord
        The file's keys, each with its items in file order. An item repeated in the file
        (Dassl's sampling with replacement) is repeated here.

    Raises
    ------
    ForbiddenGlobalError
        The pickle names any global other than ``dassl.data.datasets.base_dataset.Datum``;
        the message names that global. Nothing of it was run.
    ValueError
        The file is not a dict of lists of Datum, or a Datum lacks one of its attributes.
    FileNotFoundError
        No file at ``path``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: no Dassl split file at {path}")
    with open(path, "rb") as fh:
        try:
            data = _DasslUnpickler(fh).load()
        except ForbiddenGlobalError as exc:
            raise ForbiddenGlobalError(exc.global_name, f"found in {path}; {str(exc).split(': ', 1)[1]}") from None
        except (EOFError, pickle.UnpicklingError) as exc:
            raise pickle.UnpicklingError(f"{path} is not a readable pickle: {exc}") from exc
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise ValueError(f"{path}: expected a dict like {{'train': [Datum, ...], 'val': [...]}}, "
                         f"got {type(data).__name__}")
    out: dict[str, list[DatumRecord]] = {}
    for key, items in data.items():
        if not isinstance(items, list):
            raise ValueError(f"{path}: expected a list of Datum under {key!r}, got {type(items).__name__}")
        out[key] = [_to_record(item, f"{path}[{key!r}][{i}]") for i, item in enumerate(items)]
    return out


def _components(path: str) -> tuple[str, ...]:
    """Path components, splitting on ``/`` and ``\\`` (a split written on Windows), no empties or dots."""
    return tuple(p for p in path.replace("\\", "/").split("/") if p not in ("", "."))


def _relative_components(path: str | os.PathLike, root: str, i: int) -> tuple[str, ...]:
    """Components of ``path`` below ``root`` (a normalised path); a relative path is already below it."""
    text = os.fspath(path)
    prefix = root if root.endswith(os.sep) else root + os.sep
    if text.startswith(prefix):  # the common case: no normalisation needed
        return _components(text[len(prefix):])
    norm = os.path.normpath(text)
    if norm.startswith(prefix):
        return _components(norm[len(prefix):])
    if not os.path.isabs(norm):
        return _components(norm)
    abs_root = os.path.abspath(root)
    abs_prefix = abs_root if abs_root.endswith(os.sep) else abs_root + os.sep
    if norm.startswith(abs_prefix):
        return _components(norm[len(abs_prefix):])
    raise ValueError(f"image_paths[{i}] = {text!r} is not under image_root {root!r}")


def match_records(records: Sequence[DatumRecord], image_paths: Sequence[str | os.PathLike],
                  image_root: str | os.PathLike, *, labels: Sequence[int] | None = None) -> list[int]:
    """Find each record's image among the user's images; return its index in ``image_paths``.

    Paths in a Dassl pickle are absolute paths on the machine that wrote it
    (``/home/someone/data/oxford_pets/images/Abyssinian_1.jpg``). The rule: each image path
    is made relative to ``image_root`` (``Abyssinian_1.jpg``; a path that already is relative
    is taken as relative to ``image_root``), and a record matches an image when that whole
    relative path is a suffix, in path components, of the record's path. When several
    images qualify (one relative path a suffix of another) the longest wins, so the match is
    the image with the longest common suffix, and it is unique because relative paths are.
    A shorter common suffix is never accepted: file names repeat across class folders
    (Caltech101's ``image_0001.jpg``), so only the full path below ``image_root`` identifies
    an image. ``image_root`` may be the image folder or any folder above it whose names
    below are the same as on the writer's machine (CoOp's ImageNet paths continue with
    ``train/<wnid>/<file>``).

    Parameters
    ----------
    records : sequence of DatumRecord
        From :func:`read_dassl_split`.
    image_paths : sequence of str or os.PathLike
        The user's images, absolute or relative to ``image_root``.
    image_root : str or os.PathLike
        Folder the relative paths start from.
    labels : sequence of int, optional
        The user's label of each image; when given, every match must carry the record's
        label (a mismatch means the two class orders differ).

    Returns
    -------
    list of int
        ``out[j]`` is the index in ``image_paths`` of ``records[j]``; repeated records give
        repeated indices.

    Raises
    ------
    ValueError
        The first record that matches no image (named with its position, path and label),
        two image paths that are the same below ``image_root``, an image outside
        ``image_root``, or a label mismatch.
    """
    root = os.path.normpath(os.fspath(image_root))
    if labels is not None and len(labels) != len(image_paths):
        raise ValueError(f"labels: expected one label per image path ({len(image_paths)}), got {len(labels)}")
    table, depths = _image_table(image_paths, root)
    out = []
    for j, rec in enumerate(records):
        idx = _find_record(rec, j, table, depths)
        if idx is None:
            comps = _components(rec.impath)
            same_name = [os.fspath(image_paths[i]) for k, i in table.items() if comps and k[-1] == comps[-1]][:3]
            hint = (f"; images with the same file name: {same_name}" if same_name
                    else "; no image has that file name")
            raise ValueError(f"records[{j}] ({rec.impath!r}, label {rec.label}) matches none of the "
                             f"{len(table)} images below image_root {root!r}{hint}")
        if labels is not None and int(labels[idx]) != rec.label:
            raise ValueError(f"records[{j}] ({rec.impath!r}) has label {rec.label} but its image "
                             f"image_paths[{idx}] has label {int(labels[idx])}: the class orders differ")
        out.append(idx)
    return out


def _image_table(image_paths: Sequence[str | os.PathLike], root: str
                 ) -> tuple[dict[tuple[str, ...], int], list[int]]:
    """Each image's components below ``root`` -> its index, and the depths present (deepest first)."""
    table: dict[tuple[str, ...], int] = {}
    for i, p in enumerate(image_paths):
        key = _relative_components(p, root, i)
        if not key:
            raise ValueError(f"image_paths[{i}] = {os.fspath(p)!r} is image_root itself, not an image")
        if key in table:
            raise ValueError(f"image_paths[{table[key]}] and image_paths[{i}] are the same image "
                             f"below image_root: {'/'.join(key)}")
        table[key] = i
    return table, sorted({len(k) for k in table}, reverse=True)


def _find_record(rec: DatumRecord, j: int, table: dict[tuple[str, ...], int], depths: list[int]) -> int | None:
    """Index of the image whose path below the root is the longest suffix of the record's path."""
    if not isinstance(rec, DatumRecord):
        raise TypeError(f"records[{j}]: expected a DatumRecord, got {type(rec).__name__}")
    comps = _components(rec.impath)
    return next((table[comps[-d:]] for d in depths if d <= len(comps) and comps[-d:] in table), None)


def _examples(items: Sequence[str], n: int = 3) -> str:
    return ", ".join(repr(x) for x in items[:n]) + (", ..." if len(items) > n else "")


def match_listing(records: Sequence[DatumRecord], image_paths: Sequence[str | os.PathLike],
                  image_root: str | os.PathLike, *, labels: Sequence[int] | None = None,
                  source: str = "records") -> list[int]:
    """Match a whole listing of a dataset to the user's images, one to one.

    Like :func:`match_records` (same matching rule), but the records must list every
    image exactly once: this is how GLA's ``imagenet/preprocessed.pkl`` (BeierZhu/GLA
    ``GLA.FS.public/datasets/imagenet.py``: the ImageNet train folder listed once, in the
    order ``os.listdir`` gave on the writer's machine) is turned into an order of the
    user's train set.

    Parameters
    ----------
    records : sequence of DatumRecord
        The listing, in its order.
    image_paths : sequence of str or os.PathLike
        The user's images, absolute or relative to ``image_root``.
    image_root : str or os.PathLike
        Folder the relative paths start from (see :func:`match_records`).
    labels : sequence of int, optional
        The user's label of each image; when given, every record must carry its image's label.
    source : str
        What the records are (a file name), for error messages.

    Returns
    -------
    list of int
        A permutation of ``range(len(image_paths))``: ``out[j]`` is the image of ``records[j]``.

    Raises
    ------
    ValueError
        The listing and the images differ: records that match no image, images that no
        record lists, or images listed more than once (each named with its count and up
        to three examples); or, when the two agree, the first record whose label differs
        from its image's (named with its position, path and both labels).
    """
    root = os.path.normpath(os.fspath(image_root))
    if labels is not None and len(labels) != len(image_paths):
        raise ValueError(f"labels: expected one label per image path ({len(image_paths)}), got {len(labels)}")
    table, depths = _image_table(image_paths, root)
    owner = [-1] * len(image_paths)  # which record lists each image
    out: list[int] = []
    missing: list[str] = []
    repeated: list[str] = []
    for j, rec in enumerate(records):
        idx = _find_record(rec, j, table, depths)
        if idx is None:
            missing.append(f"records[{j}] {rec.impath}")
        elif owner[idx] >= 0:
            repeated.append(f"records[{owner[idx]}] and records[{j}] {rec.impath}")
        else:
            owner[idx] = j
            out.append(idx)
    unlisted = [os.fspath(image_paths[i]) for i, j in enumerate(owner) if j < 0]
    if missing or unlisted or repeated:
        parts = []
        if missing:
            parts.append(f"{len(missing)} of its {len(records)} records match none of the {len(image_paths)} images "
                         f"below image_root {root!r} (images missing here?), e.g. {_examples(missing)}")
        if unlisted:
            parts.append(f"{len(unlisted)} of the {len(image_paths)} images below image_root {root!r} are not in it "
                         f"(images added here?), e.g. {_examples(unlisted)}")
        if repeated:
            parts.append(f"{len(repeated)} images are listed more than once, e.g. {_examples(repeated)}")
        raise ValueError(f"{source} does not list the same images as the dataset: {'; '.join(parts)}")
    if labels is not None:
        for j, (rec, idx) in enumerate(zip(records, out)):
            if int(labels[idx]) != rec.label:
                raise ValueError(f"{source}: records[{j}] ({rec.impath!r}) has label {rec.label} but its image "
                                 f"image_paths[{idx}] ({os.fspath(image_paths[idx])!r}) has label "
                                 f"{int(labels[idx])}: the class orders differ")
    return out


def preprocessed_train_order(dataset_dir: str | os.PathLike, train_paths: Sequence[str | os.PathLike],
                             image_root: str | os.PathLike, *, train_labels: Sequence[int] | None = None
                             ) -> list[int] | None:
    """The order in which GLA listed the ImageNet train set, as indices into ``train_paths``.

    GLA's few-shot ImageNet dataset (BeierZhu/GLA ``GLA.FS.public/datasets/imagenet.py``,
    after KaiyangZhou/CoOp ``datasets/imagenet.py``) lists ``images/train/<wnid>/`` once,
    folders sorted but files in ``os.listdir`` order, and caches the list as
    ``<dataset_dir>/preprocessed.pkl`` (``{"train": [Datum, ...], "test": [Datum, ...]}``).
    Its few-shot draws are made on that order, so drawing on the train set put in this
    order reproduces them. The file is read with :func:`read_dassl_split` (nothing in it
    runs) and its ``"train"`` records matched one to one with :func:`match_listing`.

    Parameters
    ----------
    dataset_dir : str or os.PathLike
        The ImageNet folder (``<root>/imagenet``, holding ``images/`` and ``preprocessed.pkl``).
    train_paths : sequence of str or os.PathLike
        The user's full ImageNet train set.
    image_root : str or os.PathLike
        Folder the records' paths are matched below (``<root>/imagenet/images``, so that
        ``train/<wnid>/<file>`` identifies an image).
    train_labels : sequence of int, optional
        Labels of ``train_paths``; when given, each record's label must agree.

    Returns
    -------
    list of int or None
        ``None`` when there is no ``preprocessed.pkl``; otherwise a permutation of
        ``range(len(train_paths))`` in the file's order.

    Raises
    ------
    ValueError
        A file without ``"train"``, or a listing that differs from ``train_paths`` or
        from their labels (see :func:`match_listing`).
    ForbiddenGlobalError
        The file is not a plain Dassl pickle (see :func:`read_dassl_split`).
    """
    path = Path(dataset_dir) / "preprocessed.pkl"
    if not path.is_file():
        return None
    data = read_dassl_split(path)
    if "train" not in data:
        raise ValueError(f"{path}: expected a 'train' list, found keys {sorted(data)}")
    return match_listing(data["train"], train_paths, image_root, labels=train_labels, source=f"{path} ['train']")


def cached_few_shot_split(dataset_dir: str | os.PathLike, shots: int, seed: int,
                          train_paths: Sequence[str | os.PathLike],
                          val_paths: Sequence[str | os.PathLike] | None,
                          image_root: str | os.PathLike, *,
                          train_labels: Sequence[int] | None = None,
                          val_labels: Sequence[int] | None = None,
                          ) -> tuple[list[int], list[int] | None] | None:
    """The few-shot draw the reference code cached for ``(shots, seed)``, as indices, if any.

    Looks for ``<dataset_dir>/split_fewshot/shot_{shots}-seed_{seed}.pkl`` (the name CoOp
    and GLA use, KaiyangZhou/CoOp ``datasets/oxford_pets.py``), reads it with
    :func:`read_dassl_split` and matches its ``"train"`` records to ``train_paths`` and its
    ``"val"`` records to ``val_paths`` with :func:`match_records`. Using the cached draw
    reproduces a run exactly even where a fresh draw would differ (another Python, another
    list order).

    Parameters
    ----------
    dataset_dir : str or os.PathLike
        The dataset folder (``<root>/oxford_pets``).
    shots, seed : int
        Shots per class and seed of the run.
    train_paths, val_paths : sequence of str or os.PathLike
        Images of the lists the draw was made from: CoOp draws train from the train split
        and val from the val split; GLA's ImageNet draws both from the train split.
        ``val_paths`` may be ``None`` when the caller has no val list.
    image_root : str or os.PathLike
        See :func:`match_records`.
    train_labels, val_labels : sequence of int, optional
        Labels of ``train_paths`` / ``val_paths``; when given, each match is checked.

    Returns
    -------
    tuple of (list of int, list of int or None), or None
        ``None`` when there is no such file. Otherwise ``(train_idx, val_idx)`` with
        indices into ``train_paths`` and ``val_paths``; ``val_idx`` is ``None`` when the file
        has no ``"val"`` list (CoOp's ImageNet) or ``val_paths`` is ``None``.

    Raises
    ------
    ValueError
        Bad ``shots``/``seed``, a file without ``"train"``, or a record with no image
        (see :func:`match_records`).
    ForbiddenGlobalError
        The file is not a plain Dassl split (see :func:`read_dassl_split`).
    """
    for name, v, low in (("shots", shots, 1), ("seed", seed, 0)):
        if not isinstance(v, int) or isinstance(v, bool) or v < low:
            raise ValueError(f"{name}: expected an integer >= {low}, got {v!r}")
    path = Path(dataset_dir) / "split_fewshot" / f"shot_{shots}-seed_{seed}.pkl"
    if not path.is_file():
        return None
    split = read_dassl_split(path)
    if "train" not in split:
        raise ValueError(f"{path}: expected a 'train' list, found keys {sorted(split)}")
    train_idx = match_records(split["train"], train_paths, image_root, labels=train_labels)
    val_idx = None
    if "val" in split and val_paths is not None:
        val_idx = match_records(split["val"], val_paths, image_root, labels=val_labels)
    return train_idx, val_idx


# ----------------------------------------------------------------------------------------------
# Whole pickled modules (WiSE-FT checkpoints)
# ----------------------------------------------------------------------------------------------


class _Stub:
    """Inert stand-in for an instance of a class the unpickler does not know.

    It records what the pickle gave it and nothing else: ``stub_args`` (constructor
    arguments of REDUCE / NEWOBJ), ``stub_kwargs``, ``stub_state`` (BUILD), ``stub_items``
    (dict-like items) and ``stub_list`` (list-like items). ``stub_class`` is the dotted
    name of the original class. No method of the original class exists here.
    """

    stub_class = "?"
    dump_patches = False  # torch's legacy loader asks containers this; never write patch files

    def __new__(cls, *args: Any, **kwargs: Any) -> _Stub:
        self = object.__new__(cls)
        self.stub_args = args
        self.stub_kwargs = kwargs
        self.stub_state = None
        self.stub_items: dict = {}
        self.stub_list: list = []
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # REDUCE calls cls(*args): record only
        pass

    def __setstate__(self, state: Any) -> None:
        if (isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict)
                and (state[0] is None or isinstance(state[0], dict))):  # (dict state, slot state)
            merged = dict(state[0] or {})
            merged.update(state[1])
            state = merged
        self.stub_state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.stub_items[key] = value

    def append(self, value: Any) -> None:
        self.stub_list.append(value)

    def extend(self, values: Any) -> None:
        self.stub_list.extend(values)

    def __repr__(self) -> str:
        return f"<stub of {self.stub_class}>"


# Standard-library and torch modules whose globals can reach the operating system, load
# other files or run code. Referring to one of them is refused outright, with its name.
_FORBIDDEN_MODULES = (
    "os", "posix", "nt", "posixpath", "ntpath", "subprocess", "sys", "shutil", "importlib", "runpy",
    "socket", "ctypes", "pickle", "_pickle", "copyreg", "marshal", "types", "code", "codeop", "pty",
    "multiprocessing", "signal", "builtins", "operator", "_operator", "pdb", "bdb", "timeit",
    "webbrowser", "asyncio", "threading", "_thread", "tempfile", "io", "_io", "glob", "urllib", "http",
    "ftplib", "smtplib", "zipimport", "pkgutil", "site", "sysconfig", "inspect", "gc", "weakref", "codecs",
    "_codecs",
    "torch.serialization", "torch.hub", "torch.jit", "torch.package", "torch.utils.cpp_extension",
    "torch._utils", "torch._tensor", "torch.storage", "torch.ops", "torch._ops", "torch._dynamo",
)


def _forbidden_module(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in _FORBIDDEN_MODULES)


def _latin1_encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as protocol 2 uses it for ``bytes``: ``encode(str, "latin1")`` only."""
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise ForbiddenGlobalError("_codecs.encode", "only encode(str, 'latin1') is allowed (protocol 2 bytes)")
    return obj.encode("latin1")


def _stub_reconstructor(cls: Any, base: Any, state: Any) -> _Stub:
    """``copyreg._reconstructor`` of protocols 0 and 1, for stubbed classes only."""
    if not (isinstance(cls, type) and issubclass(cls, _Stub)):
        raise ForbiddenGlobalError("copyreg._reconstructor", f"may only rebuild stubbed classes, not {cls!r}")
    return cls() if state is None else cls(state)


def _tensor_rebuilders() -> dict[str, Any]:
    names = ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter",
             "_rebuild_parameter_with_state")
    return {n: getattr(torch._utils, n) for n in names if hasattr(torch._utils, n)}


def _rebuild_from_type(func: Any, new_type: Any, args: Any, state: Any) -> torch.Tensor:
    """``torch._tensor._rebuild_from_type_v2`` limited to plain tensors and parameters.

    A tensor of an unknown subclass comes back as a plain tensor (its subclass is a stub).
    """
    if func not in _tensor_rebuilders().values():
        raise ForbiddenGlobalError("torch._tensor._rebuild_from_type_v2",
                                   f"may only call torch's tensor rebuild functions, not {func!r}")
    if new_type not in (torch.Tensor, torch.nn.Parameter):
        new_type, state = torch.Tensor, None
    return torch._tensor._rebuild_from_type_v2(func, new_type, args, state)


def _load_storage_bytes(data: bytes) -> Any:
    """``torch.storage._load_from_bytes`` (how ``pickle.dump`` writes storages), weights only."""
    if not isinstance(data, (bytes, bytearray)):
        raise ForbiddenGlobalError("torch.storage._load_from_bytes", f"expected bytes, got {type(data).__name__}")
    storage = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if not isinstance(storage, (torch.UntypedStorage, torch.storage.TypedStorage)):
        raise pickle.UnpicklingError(f"torch.storage._load_from_bytes held a {type(storage).__name__}, "
                                     "not a storage")
    return storage


def _allowed_globals() -> dict[tuple[str, str], Any]:
    allowed: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): OrderedDict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "bytearray"): bytearray,
        ("builtins", "bytes"): bytes,
        ("builtins", "complex"): complex,
        ("builtins", "slice"): slice,
        ("builtins", "object"): object,
        ("copyreg", "_reconstructor"): _stub_reconstructor,
        ("_codecs", "encode"): _latin1_encode,
        ("torch", "Size"): torch.Size,
        ("torch", "device"): torch.device,
        ("torch", "Tensor"): torch.Tensor,
        ("torch._tensor", "Tensor"): torch.Tensor,
        ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,
        ("torch", "UntypedStorage"): torch.UntypedStorage,
        ("torch.storage", "UntypedStorage"): torch.UntypedStorage,
        ("torch.serialization", "_get_layout"): torch.serialization._get_layout,
        ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
        ("torch.storage", "_load_from_bytes"): _load_storage_bytes,
    }
    for name, fn in _tensor_rebuilders().items():
        allowed[("torch._utils", name)] = fn
    kinds = tuple(k for k in (torch.dtype, torch.memory_format, torch.layout, getattr(torch, "qscheme", None))
                  if isinstance(k, type))
    for name, value in vars(torch).items():
        if isinstance(value, kinds):
            allowed[("torch", name)] = value
    return allowed


class _ModuleUnpickler(pickle.Unpickler):
    """Rebuilds tensors, stubs every unknown class, refuses what can run code."""

    _allowed: dict[tuple[str, str], Any] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if _ModuleUnpickler._allowed is None:
            _ModuleUnpickler._allowed = _allowed_globals()
        self._stubs: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str) -> Any:
        module, name = _fix_py2_name(module, name)
        allowed = self._allowed.get((module, name))
        if allowed is not None:
            return allowed
        if _forbidden_module(module):
            raise ForbiddenGlobalError(f"{module}.{name}", "its module can reach the operating system, load "
                                       "files or run code, and a checkpoint has no reason to name it")
        key = (module, name)
        if key not in self._stubs:
            self._stubs[key] = type(name.rsplit(".", 1)[-1], (_Stub,), {
                "__module__": __name__, "__qualname__": f"_Stub[{module}.{name}]", "stub_class": f"{module}.{name}"})
        return self._stubs[key]


def _restricted_load(fh: Any, **kwargs: Any) -> Any:
    return _ModuleUnpickler(fh, **kwargs).load()


class _PickleModule:
    """What ``torch.load(pickle_module=...)`` uses: ``Unpickler``, ``load`` and ``__name__``."""

    __name__ = "gla.pickles"
    Unpickler = _ModuleUnpickler
    load = staticmethod(_restricted_load)


_TORCH_MAGIC = 0x1950A86A20F9469CFC6C  # first object of torch's legacy (pre-zip) format


def _load_inert(path: Path) -> Any:
    """Unpickle ``path`` (torch zip, torch legacy or plain pickle) with the restricted unpickler."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            if any(n.endswith("constants.pkl") or "/code/" in n for n in zf.namelist()):
                raise ValueError(f"{path} is a TorchScript archive, which holds code; it is not read here "
                                 "(load it with torch.jit.load only if you trust it)")
    else:
        with open(path, "rb") as fh:
            first = _restricted_load(fh)
        if not (type(first) is int and first == _TORCH_MAGIC):
            return first  # a plain pickle, e.g. WiSE-FT's utils.torch_save
    try:
        with warnings.catch_warnings():  # the legacy format wants the source of each (stubbed) class
            warnings.filterwarnings("ignore", message="Couldn't retrieve source code for container")
            return torch.load(path, map_location="cpu", pickle_module=_PickleModule, weights_only=False)
    except RuntimeError as exc:
        if "pickle_module" in str(exc):  # TORCH_FORCE_WEIGHTS_ONLY_LOAD forbids a pickle_module
            raise RuntimeError(f"{path}: torch refused the restricted unpickler ({exc}); unset "
                               "TORCH_FORCE_WEIGHTS_ONLY_LOAD to read whole pickled modules") from exc
        raise


def _is_module_stub(obj: Any) -> bool:
    return isinstance(obj, _Stub) and isinstance(obj.stub_state, dict) and "_parameters" in obj.stub_state \
        and "_modules" in obj.stub_state


def _entries(obj: _Stub, key: str, prefix: str) -> list[tuple[str, Any]]:
    value = obj.stub_state.get(key)
    if value is None:
        return []
    if not isinstance(value, Mapping):
        raise ValueError(f"module {prefix.rstrip('.') or '<root>'} ({obj.stub_class}): {key} is a "
                         f"{type(value).__name__}, expected a dict")
    return list(value.items())


def _walk_module(obj: _Stub, prefix: str, out: dict[str, torch.Tensor], active: set[int]) -> None:
    if id(obj) in active:
        raise ValueError(f"module {prefix.rstrip('.') or '<root>'} contains itself")
    active.add(id(obj))
    state = obj.stub_state
    for name, value in _entries(obj, "_parameters", prefix):
        if value is None:
            continue
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"parameter {prefix}{name} of {obj.stub_class} is a {type(value).__name__}, "
                             "not a tensor")
        out[prefix + name] = value.detach()
    skip = state.get("_non_persistent_buffers_set") or set()
    for name, value in _entries(obj, "_buffers", prefix):
        if value is None or name in skip:
            continue
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"buffer {prefix}{name} of {obj.stub_class} is a {type(value).__name__}, not a tensor")
        out[prefix + name] = value.detach()
    for name, child in _entries(obj, "_modules", prefix):
        if child is None:
            continue
        if not _is_module_stub(child):
            raise ValueError(f"submodule {prefix}{name} is a {type(child).__name__}, not a pickled nn.Module")
        _walk_module(child, f"{prefix}{name}.", out, active)
    active.discard(id(obj))


def _tensor_dict(obj: Mapping, where: str) -> dict[str, torch.Tensor]:
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        k = bad[0]
        raise ValueError(f"{where}: expected a state dict of str -> Tensor, but entry {k!r} is a "
                         f"{type(obj[k]).__name__}")
    return {k: v.detach() for k, v in obj.items()}


def load_module_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """State dict of a checkpoint that pickles a whole ``nn.Module``, read without its code.

    Accepts, in this order of precedence:

    * a pickled module, as WiSE-FT writes its ``ImageClassifier`` (mlfoundations/wise-ft
      ``src/models/modeling.py`` ``ImageClassifier.save`` -> ``src/models/utils.py``
      ``torch_save``, a plain ``pickle.dump``) or as ``torch.save(module)`` writes it (zip
      archive, or torch's legacy format);
    * a dict with a ``"state_dict"`` key holding either of the above or a state dict;
    * a plain state dict (``torch.save(model.state_dict())``).

    The unpickler calls only torch's tensor rebuild functions, ``OrderedDict`` and a few
    builtins (``set``, ``bytes``, ...). Every other class, found or not on this machine, is
    replaced by an inert stub that records the state the pickle gives it; nothing is
    imported and no method of the original class runs. The state dict is then collected as
    ``nn.Module.state_dict`` would: the ``_parameters``, the persistent ``_buffers`` and,
    recursively, the ``_modules`` of each module, keys joined by dots, ``None`` entries
    skipped. What only code could add (``get_extra_state``, state-dict hooks) is not
    reproduced.

    Parameters
    ----------
    path : str or os.PathLike
        The checkpoint.

    Returns
    -------
    dict of str to torch.Tensor
        Detached CPU tensors keyed as in ``module.state_dict()``.

    Raises
    ------
    ForbiddenGlobalError
        The pickle names a global of a module that can reach the operating system, load
        files or run code (``os``, ``subprocess``, ``builtins`` other than plain containers,
        ``torch.serialization``, ...); the message names it. Nothing of it was run.
    ValueError
        A TorchScript archive, or a file that holds neither a module nor a state dict.
    FileNotFoundError
        No file at ``path``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: no checkpoint at {path}")
    obj = _load_inert(path)
    where = str(path)
    if isinstance(obj, Mapping) and "state_dict" in obj:
        obj, where = obj["state_dict"], f"{path}['state_dict']"
    if _is_module_stub(obj):
        out: dict[str, torch.Tensor] = {}
        _walk_module(obj, "", out, set())
        return out
    if isinstance(obj, Mapping):
        return _tensor_dict(obj, where)
    kind = obj.stub_class if isinstance(obj, _Stub) else type(obj).__name__
    raise ValueError(f"{where}: expected a pickled nn.Module, a state dict or a dict with 'state_dict', got {kind}")


_ENCODER_PREFIX = "image_encoder.model."
_HEAD_KEYS = ("classification_head.weight", "classification_head.bias")


def split_image_classifier_state(state_dict: Mapping[str, torch.Tensor]
                                 ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Split a WiSE-FT ``ImageClassifier`` state dict into CLIP weights and the linear head.

    WiSE-FT's ``ImageClassifier`` (mlfoundations/wise-ft ``src/models/modeling.py``) holds
    ``image_encoder`` (an ``ImageEncoder`` whose ``model`` is the CLIP model) and
    ``classification_head`` (a ``torch.nn.Linear`` subclass), so its keys are
    ``image_encoder.model.<CLIP key>`` and ``classification_head.weight`` / ``.bias``.
    The CLIP keys are those of OpenAI's ``clip`` package, which open_clip's models with
    OpenAI weights (``*-quickgelu`` names) share. WiSE-FT drops the text transformer from the
    fine-tuned model unless ``keep_lang`` was set, so the CLIP part may hold only part of
    the text tower: load it with ``strict=False`` and check the missing keys, or take the
    text tower from the zero-shot model. The head computes ``logits = x @ W.T + b`` on
    image features (normalised first when the head's ``normalize`` flag, not part of the
    state dict, is set; WiSE-FT's zero-shot heads set it and fold CLIP's logit scale into W).

    Parameters
    ----------
    state_dict : mapping of str to torch.Tensor
        E.g. from :func:`load_module_state_dict`.

    Returns
    -------
    clip_state : dict of str to torch.Tensor
        The CLIP model's state dict (prefix ``image_encoder.model.`` removed).
    head_weight : torch.Tensor
        ``(n_classes, embed_dim)``.
    head_bias : torch.Tensor
        ``(n_classes,)``.

    Raises
    ------
    ValueError
        A head key is missing, no key starts with ``image_encoder.model.``, or some key fits
        neither part (the message lists up to five).
    """
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict: expected a mapping of str -> Tensor, got {type(state_dict).__name__}")
    missing = [k for k in _HEAD_KEYS if k not in state_dict]
    if missing:
        raise ValueError(f"state_dict: missing {missing}; expected WiSE-FT's ImageClassifier keys "
                         f"'{_ENCODER_PREFIX}*', {list(_HEAD_KEYS)}")
    clip_state = {k[len(_ENCODER_PREFIX):]: v for k, v in state_dict.items() if k.startswith(_ENCODER_PREFIX)}
    if not clip_state:
        raise ValueError(f"state_dict: no key starts with {_ENCODER_PREFIX!r}; expected WiSE-FT's ImageClassifier")
    other = [k for k in state_dict if not k.startswith(_ENCODER_PREFIX) and k not in _HEAD_KEYS]
    if other:
        raise ValueError(f"state_dict: keys outside WiSE-FT's ImageClassifier layout: {other[:5]}")
    weight, bias = state_dict[_HEAD_KEYS[0]], state_dict[_HEAD_KEYS[1]]
    if weight.ndim != 2 or bias.shape != (weight.shape[0],):
        raise ValueError(f"state_dict: head weight {tuple(weight.shape)} and bias {tuple(bias.shape)} "
                         "should be (n_classes, embed_dim) and (n_classes,)")
    return clip_state, weight, bias
