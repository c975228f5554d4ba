"""Published numbers with their sources (``gla/data/published.json``), which a page may
quote beside the book's measured ones."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

PUBLISHED_FILE = Path(__file__).resolve().parents[1] / "data" / "published.json"


def published(**filters) -> pd.DataFrame:
    """Published numbers with their sources (``gla/data/published.json``), filtered by column.

    Backbone names are matched with and without a ``-quickgelu`` suffix, so
    ``published(backbone="ViT-B-16-quickgelu", pretrained="openai")`` finds the OpenAI
    ViT-B/16 rows. Returns an empty frame when nothing matches (e.g. the world).
    """
    records = json.loads(PUBLISHED_FILE.read_text())["records"]
    df = pd.DataFrame(records)
    for col, val in filters.items():
        if val is None or col not in df:
            continue
        if col == "backbone":
            val = str(val).removesuffix("-quickgelu")
        df = df[df[col].astype(str) == str(val)]
    return df.reset_index(drop=True)
