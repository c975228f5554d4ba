"""On-disk caching: atomic writes and keys derived from everything that changes a result."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import torch

#: The environment variable that names the cache folder.
CACHE_ENV = "GLA_CACHE_DIR"


def default_cache_dir(base: str | os.PathLike | None = None) -> Path:
    """The cache folder when none is given: ``$GLA_CACHE_DIR`` when set, else
    ``<base>/.gla_cache`` (``base``: the current folder, the path then relative)."""
    env = os.environ.get(CACHE_ENV)
    if env is not None:
        return Path(env)
    return Path(base) / ".gla_cache" if base is not None else Path(".gla_cache")


def cache_key(settings: Mapping[str, Any], length: int = 16) -> str:
    """A stable hex key for a mapping of settings (JSON with sorted keys, SHA-256)."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> Path:
    """Write a file through ``write(fh)`` on a temporary file in the same folder, then rename
    it: readers see the old file or the whole new one, never a part. Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual mode
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write text so that readers see the old file or the whole new one, never a part."""
    return atomic_write(path, lambda fh: fh.write(text.encode()))


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` through a temporary file and an atomic rename."""
    return atomic_write(path, lambda fh: torch.save(obj, fh))


def safe_load(path: str | os.PathLike) -> Any | None:
    """``torch.load`` (weights only) that returns ``None`` for a missing or corrupt file."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None
