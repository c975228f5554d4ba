"""The world's CLIPs that ship with the package, as real CLIP's weights ship.

People who reproduce the paper download CLIP; they do not retrain it. The world's default
CLIP works the same way: its checkpoint (a few MB) lies in ``gla/world/checkpoints/`` with
a manifest (``manifest.json``) that records, for each file, the preset and seed it was made
with, its sha256, the exact command that made it and the software it was made on. The book
loads it (:func:`shipped_checkpoint`); ``gla world pretrain --preset NAME --world-seed S``
regenerates it and reports how far the regime of its result (P1-P6, :mod:`gla.world.regime`)
lies from the shipped one's.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..cache import atomic_write_text
from .presets import WorldPreset, get_preset

SHIPPED_DIR = Path(__file__).resolve().parent / "checkpoints"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class ShippedCheckpoint:
    """One entry of the manifest."""

    preset: str
    seed: int
    file: str
    sha256: str
    command: str
    made: str
    torch: str
    world: dict
    pretrain: dict


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def shipped_checkpoints(folder: str | os.PathLike = SHIPPED_DIR) -> list[ShippedCheckpoint]:
    """Every entry of the manifest in ``folder`` (none when there is no manifest)."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return []
    return [ShippedCheckpoint(**e) for e in json.loads(path.read_text())["checkpoints"]]


def _recipe_of(preset: WorldPreset, seed: int) -> tuple[dict, dict]:
    return preset.world_config(seed).corpus_settings(), preset.pretrain_config(seed).settings()


def shipped_checkpoint(preset: str | WorldPreset, seed: int, folder: str | os.PathLike = SHIPPED_DIR
                       ) -> Path | None:
    """The shipped checkpoint of a preset and world seed, or None when none ships for them
    (or the preset's settings have changed since it was made: then it is not that world).

    Raises
    ------
    ValueError
        The file is there but its sha256 is not the manifest's (a damaged or replaced file).
    """
    p = get_preset(preset) if isinstance(preset, str) else preset
    world, pretrain = _recipe_of(p, seed)
    for entry in shipped_checkpoints(folder):
        if entry.preset != p.name or entry.seed != seed or entry.world != world or entry.pretrain != pretrain:
            continue
        path = Path(folder) / entry.file
        if not path.is_file():
            return None
        digest = file_sha256(path)
        if digest != entry.sha256:
            raise ValueError(f"shipped world checkpoint {path}: sha256 {digest}, but the manifest says {entry.sha256}; "
                             f"the file is damaged or was replaced (regenerate it with: {entry.command})")
        return path
    return None


def ship(checkpoint: str | os.PathLike, preset: str | WorldPreset, seed: int, command: str,
         folder: str | os.PathLike = SHIPPED_DIR) -> ShippedCheckpoint:
    """Copy a pretrained checkpoint into the package's folder and record it in the manifest
    (replacing an entry of the same preset and seed). For maintainers: the result is committed.

    Raises
    ------
    ValueError
        The checkpoint was not made with the preset's settings for this seed.
    """
    p = get_preset(preset) if isinstance(preset, str) else preset
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    world, pretrain = _recipe_of(p, seed)
    if ckpt.get("world_config") != world or ckpt.get("pretrain_config") != pretrain:
        raise ValueError(f"{checkpoint} was made with world {ckpt.get('world_config')} and recipe "
                         f"{ckpt.get('pretrain_config')}, not with preset '{p.name}' at seed {seed} "
                         f"({world}, {pretrain})")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{p.name}-seed{seed}.pt"
    tmp = folder / f".{name}.tmp"
    shutil.copyfile(checkpoint, tmp)
    os.replace(tmp, folder / name)
    entry = ShippedCheckpoint(p.name, int(seed), name, file_sha256(folder / name), command, time.strftime("%Y-%m-%d"),
                              torch.__version__, world, pretrain)
    entries = [e for e in shipped_checkpoints(folder) if (e.preset, e.seed) != (p.name, seed)] + [entry]
    entries.sort(key=lambda e: (e.preset, e.seed))
    atomic_write_text(folder / MANIFEST, json.dumps(
        {"_note": "The world's CLIPs shipped with the package (gla.world.shipped); regenerate one with its command.",
         "checkpoints": [asdict(e) for e in entries]}, indent=1) + "\n")
    return entry
