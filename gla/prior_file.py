"""A prior read from a file: the official GLA ``q.pt``, a ``.npy`` vector, or the JSON
that ``gla estimate`` writes.

``gla apply``, ``gla run --prior-file`` and the protocols (``ProtocolSettings.prior_file``)
read a given prior here, normalised on load, with the file's original sum kept (the
official ``q.pt`` sums to about 0.804: its constraint is met only approximately).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import UsageError


@dataclass
class PriorFile:
    """A prior read from a file: the normalised log prior and the file's original sum."""

    log_prior: torch.Tensor
    original_sum: float
    path: str


def load_prior_file(path: str | os.PathLike) -> PriorFile:
    """Read a prior ``q`` and normalise it to sum to 1.

    Parameters
    ----------
    path : path
        A torch file with a dict holding ``"q"`` (the official GLA ``q.pt``, read with
        ``weights_only=True``) or a plain 1-D tensor; a ``.npy`` vector; or the JSON written
        by ``gla estimate`` (its ``log_prior``).

    Returns
    -------
    PriorFile
        ``log_prior`` (K,) float64 with ``logsumexp == 0``; ``original_sum`` is the sum of
        the values as stored (about 0.804 for the official ``q.pt``: its constraint is met
        only approximately).
    """
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"prior file: no file at {p}")
    if p.suffix == ".json":
        try:
            data = json.loads(p.read_text())
            q = torch.tensor(data["log_prior"], dtype=torch.float64).exp()
        except Exception as exc:
            raise UsageError(f"prior file: expected {p} to be the JSON of 'gla estimate' with a 'log_prior' list "
                             f"({exc})") from exc
    else:
        try:
            obj = (torch.as_tensor(np.load(p, allow_pickle=False)) if p.suffix == ".npy"
                   else torch.load(p, map_location="cpu", weights_only=True))
        except Exception as exc:
            raise UsageError(f"prior file: could not read {p} ({exc})") from exc
        if isinstance(obj, Mapping):
            if "q" not in obj:
                raise UsageError(f"prior file: {p} holds keys {sorted(map(str, obj))}; expected 'q' or a plain tensor")
            obj = obj["q"]
        if not isinstance(obj, torch.Tensor):
            raise UsageError(f"prior file: expected a tensor of class probabilities in {p}, got {type(obj).__name__}")
        q = obj.detach().to(torch.float64).flatten() if obj.ndim == 2 and 1 in obj.shape else obj.to(torch.float64)
    if q.ndim != 1 or q.numel() < 2:
        raise UsageError(f"prior file: expected a 1-D vector of class probabilities in {p}, got shape {tuple(q.shape)}")
    if not torch.isfinite(q).all() or (q <= 0).any():
        raise UsageError(f"prior file: expected positive finite probabilities in {p} "
                         f"({int((q <= 0).sum())} entries are zero or negative)")
    total = float(q.sum())
    return PriorFile((q / total).log(), total, str(p))
