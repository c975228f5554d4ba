"""Dassl few-shot splits: CoOp's and GLA's cached draws (``split_fewshot/shot_{k}-seed_{s}.pkl``)
and GLA's ImageNet listing (``imagenet/preprocessed.pkl``), read with an unpickler that knows
Dassl's ``Datum`` and nothing else, and matched to the user's images (see :mod:`gla.pickles`)."""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .refusals import ForbiddenGlobalError, fix_py2_name

DATUM_CLASS = ("dassl.data.datasets.base_dataset", "Datum")
"""Module and name under which Dassl's ``Datum`` is pickled."""





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
        module, name = fix_py2_name(module, name)
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
