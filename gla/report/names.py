"""How the book names a model: one rule for every table and page.

A results row says which model made it with two columns, ``backbone`` (a model name) and
``pretrained`` (an open_clip tag, a checkpoint path or ``""``). A reader needs neither the
building machine's paths nor a cache file's hash, so tables show one label instead
(:func:`model_label`):

- a model that a registered provider serves, named by the provider's label
  (:func:`gla.backbones.register_backbone_label`): the miniature world's CLIP reads
  "the world's CLIP (seed 0)";
- an open_clip model with its pretrained tag: "ViT-B-32 (laion2b_s34b_b79k)";
- an open_clip model with a checkpoint file: the file's name, "ViT-B-32 (b32.pt)";
- a model without weights: "RN50 (random weights)".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import pandas as pd

from ..backbones import backbone_label

RANDOM_WEIGHTS = "random weights"


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    return str(value)


def weights_label(pretrained: Any) -> str:
    """The weights as a reader sees them: a pretrained tag as it is, a checkpoint path as its
    file name (never the building machine's folders), ``""`` for none (None or NaN)."""
    return re.split(r"[\\/]", _text(pretrained))[-1]  # a Windows path too, wherever the table is read


def model_label(backbone: Any, pretrained: Any) -> str:
    """The label of a model in the book's tables (see the module docstring).

    Parameters
    ----------
    backbone : str
        The model name of a results row (``"ViT-B-32"``, ``"gla-world-tiny"``).
    pretrained : str or None
        Its weights: an open_clip tag, a checkpoint path, or ``""`` / None / NaN for none.

    Returns
    -------
    str
        The provider's label when one is registered for the name and gives one, else
        ``"<backbone> (<tag or file name>)"``, or ``"<backbone> (random weights)"``.
    """
    name, weights = _text(backbone), _text(pretrained)
    provided = backbone_label(name, weights) if name else None
    if provided:
        return provided
    return f"{name} ({weights_label(weights) or RANDOM_WEIGHTS})"


def with_model_labels(df: pd.DataFrame, columns: Sequence[str] = ("backbone", "pretrained"),
                      name: str = "model") -> pd.DataFrame:
    """``df`` with the columns ``backbone`` and ``pretrained`` replaced by one column
    ``name`` that holds :func:`model_label` of each row, where the first of them stood.

    Each distinct pair is labelled once (a provider's label may read its checkpoint).
    """
    backbone, pretrained = columns
    pairs = list(zip(df[backbone], df[pretrained]))
    labels = {pair: model_label(*pair) for pair in dict.fromkeys(pairs)}
    out = df.drop(columns=[pretrained]).rename(columns={backbone: name})
    out[name] = [labels[pair] for pair in pairs]
    return out
