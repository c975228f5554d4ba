"""The miniature world's CLIP as the book's tables name it: a plug-in (entry point
``world-labels`` of the group ``gla.plugins``) that registers the world's label with
:func:`gla.backbones.register_backbone_label`.

A table row of the world's CLIP holds a checkpoint path: a cache file
(``.../world/clip-<hash>.pt``) or a checkpoint shipped with the package
(``gla/world/checkpoints/<preset>-seed<s>.pt``). Neither means anything to a reader; the
label says which world the CLIP was pretrained on, from what the checkpoint recorded:

- "the world's CLIP (seed 0)": the world's seed, from the checkpoint's ``world_config``;
- "the world's CLIP (default preset, seed 0)": when the checkpoint names its preset (a
  ``preset`` entry, or the shipped manifest's entry for the file);
- "the world's CLIP (random weights)": no checkpoint.

A file named as shipped files are (``<preset>-seed<s>.pt``) gives its preset and seed from
its name too, also where the file is not on this machine; any other file that is not a
world checkpoint is left to the default rule (its file name).
"""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

WORLD_CLIP = "the world's CLIP"
SHIPPED_NAME = re.compile(r"^(?P<preset>.+)-seed(?P<seed>\d+)\.pt$")


def _stored(path: Path) -> dict[str, Any] | None:
    """The entries of a world checkpoint other than its weights (None: not readable as one)."""
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "vocabulary" not in ckpt:
        return None
    return {k: v for k, v in ckpt.items() if k not in ("state_dict", "vocabulary")}


def _manifest_entry(path: Path) -> dict[str, Any] | None:
    """The shipped manifest's entry for ``path`` (``manifest.json`` beside it), if any."""
    manifest = path.parent / "manifest.json"
    try:
        entries = json.loads(manifest.read_text()).get("checkpoints", [])
    except (OSError, ValueError, AttributeError):
        return None
    return next((e for e in entries if isinstance(e, dict) and e.get("file") == path.name), None)


@lru_cache(maxsize=64)
def _label(path: str, _mtime: float) -> str | None:
    p = Path(path)
    preset, seed = None, None
    if p.is_file():
        stored = _stored(p)
        if stored is None:
            return None
        world = stored.get("world_config")
        seed = world.get("seed") if isinstance(world, dict) else None
        preset = stored.get("preset")
    entry = _manifest_entry(p)
    if entry is not None:
        preset, seed = preset or entry.get("preset"), entry.get("seed", seed)
    match = SHIPPED_NAME.match(p.name)
    if match and (seed is None or str(seed) == match["seed"]):  # <preset>-seed<s>.pt, as shipped files are named
        preset, seed = preset or match["preset"], int(match["seed"])
    if seed is None:
        return None
    return f"{WORLD_CLIP} ({preset} preset, seed {seed})" if preset else f"{WORLD_CLIP} (seed {seed})"


def world_label(name: str, pretrained: str) -> str | None:
    """The label of the world's CLIP ``name`` with the weights ``pretrained`` (see the
    module docstring); None for a file that is not a world checkpoint."""
    if not pretrained:
        return f"{WORLD_CLIP} (random weights)"
    path = Path(pretrained).expanduser()
    try:
        mtime = os.stat(path).st_mtime
    except OSError:
        mtime = -1.0
    return _label(str(path), mtime)


def register() -> None:
    """Register :func:`world_label` for the world's model names."""
    from .backbones import register_backbone_label
    from .world.backbone import WORLD_PREFIX

    register_backbone_label(WORLD_PREFIX, world_label)
