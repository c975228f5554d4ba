"""Shared helpers of the readers: layout errors and folder listings."""

from __future__ import annotations

from pathlib import Path

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def layout_error(name: str, root: Path, expected: str, missing: Path) -> FileNotFoundError:
    """A ``FileNotFoundError`` naming what is missing and the expected layout."""
    return FileNotFoundError(
        f"{name}: '{missing}' not found. Expected this layout under the data root {root}:\n{expected}")


def require(name: str, root: Path, expected: str, *paths: Path) -> None:
    """Raise :func:`layout_error` for the first of ``paths`` that does not exist."""
    for p in paths:
        if not p.exists():
            raise layout_error(name, root, expected, p)


def visible_dirs(folder: Path) -> list[Path]:
    """Sub-folders, sorted by name, without hidden ones (``.ipynb_checkpoints``)."""
    return sorted((d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")), key=lambda d: d.name)


def list_images(folder: Path) -> list[Path]:
    """Image files of a folder (by extension), sorted, without hidden files."""
    return sorted(p for p in folder.iterdir()
                  if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file())


def class_folder_images(name: str, root: Path, layout: str, folder: Path, classes: list[str]
                        ) -> tuple[list[str], list[int]]:
    """The images of ``folder/<class>/`` for each class in order, labelled by position;
    a missing class folder is a layout error naming it."""
    paths: list[str] = []
    labels: list[int] = []
    for y, c in enumerate(classes):
        d = folder / c
        if not d.is_dir():
            raise layout_error(name, root, layout, d)
        files = list_images(d)
        paths += [str(p) for p in files]
        labels += [y] * len(files)
    return paths, labels
