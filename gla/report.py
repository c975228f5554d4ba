"""Reporting: tables, figures and the published numbers that may be quoted beside them."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

PUBLISHED_FILE = Path(__file__).resolve().parent / "data" / "published.json"


def published(**filters) -> pd.DataFrame:
    """Published numbers with their sources (GLA_NOTES section 5 only), filtered by column.

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


def average_over_datasets(df: pd.DataFrame, value: str = "top1") -> pd.DataFrame:
    """Mean of ``value`` over datasets for each method, shots and seed (``dataset="average"``)."""
    return (df.groupby(["method", "shots", "seed"], sort=False)[value].mean().reset_index()
            .assign(dataset="average"))


def gain_over(df: pd.DataFrame, method: str, baseline: str, by: str = "dataset", value: str = "top1") -> pd.Series:
    """``method`` minus ``baseline`` in points (mean over seeds), one entry per ``by``, ascending."""
    t = df.pivot_table(index=by, columns="method", values=value, aggfunc="mean") * 100
    return (t[method] - t[baseline]).sort_values()


def mean_std_table(df: pd.DataFrame, index: str | Sequence[str], columns: str | Sequence[str],
                   values: str = "top1") -> pd.DataFrame:
    """``mean ± std`` over seeds as strings, in percent."""
    g = df.groupby(list(np.atleast_1d(index)) + list(np.atleast_1d(columns)), sort=False)[values]
    agg = g.agg(["mean", "std"]).fillna(0.0) * 100
    text = agg.apply(lambda r: f"{r['mean']:.1f} ± {r['std']:.1f}", axis=1)
    return text.unstack(list(np.atleast_1d(columns)))


def save_figure(fig, out_dir: str | os.PathLike, name: str) -> Path:
    """Save a matplotlib figure as PNG (and SVG) in ``out_dir``; returns the PNG path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / f"{name}.svg", bbox_inches="tight")
    png = out / f"{name}.png"
    fig.savefig(png, dpi=120, bbox_inches="tight")
    return png


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average that ignores NaN (classes absent from the test set)."""
    v = np.asarray(values, dtype=float)
    if window <= 1:
        return v
    ok = ~np.isnan(v)
    num = np.convolve(np.where(ok, v, 0.0), np.ones(window), mode="same")
    den = np.convolve(ok.astype(float), np.ones(window), mode="same")
    return num / np.maximum(den, 1e-12)


def plot_per_class(acc: Mapping[str, torch.Tensor | np.ndarray], order_by: torch.Tensor, *, window: int = 9,
                   ax=None, xlabel: str = "classes, by estimated prior (largest first)"):
    """Per-class accuracy of several models, classes ordered by ``order_by`` descending and
    smoothed with a moving average (the paper's first figure)."""
    import matplotlib.pyplot as plt

    order = np.argsort(-np.asarray(order_by, dtype=float), kind="stable")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.5))
    for name, a in acc.items():
        ax.plot(np.arange(len(order)), 100 * smooth(np.asarray(a, dtype=float)[order], window), label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"accuracy (%), moving average of {window}")
    ax.legend(frameon=False)
    ax.grid(alpha=0.3)
    return ax


def plot_prior_scatter(estimated: torch.Tensor, reference: torch.Tensor, *, ax=None,
                       xlabel: str = "true log prior", ylabel: str = "estimated log q"):
    """Scatter of an estimated log prior against a reference, with both correlations."""
    import matplotlib.pyplot as plt
    from scipy.stats import pearsonr, spearmanr

    x, y = np.asarray(reference, dtype=float), np.asarray(estimated, dtype=float)
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(x, y, s=12, alpha=0.7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"Spearman {spearmanr(x, y).correlation:.2f}, Pearson {pearsonr(x, y)[0]:.2f}", fontsize=10)
    ax.grid(alpha=0.3)
    return ax


def plot_lines(df: pd.DataFrame, x: str, y: str, hue: str, *, ax=None, title: str | None = None,
               percent: bool = True, errorbar: bool = True):
    """Mean (and std over seeds) of ``y`` against ``x`` for each ``hue`` value."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(4, 3))
    scale = 100 if percent else 1
    for name, g in df.groupby(hue, sort=False):
        s = g.groupby(x)[y].agg(["mean", "std"]).sort_index()
        if errorbar:
            ax.errorbar(s.index, s["mean"] * scale, yerr=s["std"].fillna(0) * scale, marker="o", ms=3,
                        capsize=2, label=name)
        else:
            ax.plot(s.index, s["mean"] * scale, marker="o", ms=3, label=name)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    return ax


def plot_reliability(bins: pd.DataFrame, ece: Mapping[str, float], *, axes=None):
    """Reliability diagrams, one panel per model: accuracy per confidence bin against the
    diagonal. ``bins`` holds :func:`gla.studies.calibration_table`'s bins (a ``model``
    column); ``ece`` maps each model to its expected calibration error (a fraction)."""
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(bins["model"]))
    if axes is None:
        _, axes = plt.subplots(1, len(models), figsize=(3 * len(models), 3), sharey=True, squeeze=False)
        axes = axes[0]
    for ax, name in zip(axes, models):
        b = bins[(bins["model"] == name) & (bins["count"] > 0)]
        ax.bar(b["lower"], b["accuracy"], width=b["upper"] - b["lower"], align="edge", alpha=0.7,
               edgecolor="k", lw=0.3)
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8)
        ax.set_title(f"{name}\nECE {ece[name] * 100:.1f}%", fontsize=9)
        ax.set_xlabel("confidence")
    axes[0].set_ylabel("accuracy")
    return axes
