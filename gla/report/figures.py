"""The book's figures, in one style (:func:`use_book_style`); every method keeps its
colour, marker and place in legends (:attr:`gla.protocols.Method.style`).

matplotlib is imported inside each function: ``import matplotlib.pyplot`` takes about a
second, and the tables, words and published numbers of :mod:`gla.report` (read by
:mod:`gla.claims` and :mod:`gla.pages`) need none of it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..protocols.results import Method, method_style, order_methods


def use_book_style() -> None:
    """The book's matplotlib style: legible at the page width, SVG text kept as text."""
    import matplotlib as mpl

    mpl.rcParams.update({
        "figure.dpi": 110, "savefig.dpi": 150, "font.size": 11, "axes.titlesize": 11, "axes.labelsize": 11,
        "legend.fontsize": 10, "xtick.labelsize": 10, "ytick.labelsize": 10, "axes.spines.top": False,
        "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3, "legend.frameon": False,
        "svg.fonttype": "none",
    })


def save_figure(fig, out_dir: str | os.PathLike, name: str) -> Path:
    """Save a matplotlib figure as SVG (line art for the page) and PNG in ``out_dir``;
    returns the SVG path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    svg = out / f"{name}.svg"
    fig.savefig(svg, bbox_inches="tight")
    fig.savefig(out / f"{name}.png", dpi=150, bbox_inches="tight")
    return svg


def placeholder_figure(message: str, *, figsize: tuple[float, float] = (6.0, 1.2)):
    """A figure that only states ``message``, saved where a chapter has no data for its
    figure (e.g. the true prior of a real backbone), so that the page's numbered figure and
    its download link still point at a file; returns the matplotlib figure."""
    import matplotlib.pyplot as plt

    if not isinstance(message, str) or not message.strip():
        raise ValueError(f"placeholder_figure: expected a non-empty message, got {message!r}")
    fig, ax = plt.subplots(figsize=figsize)
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, transform=ax.transAxes)
    return fig


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
        style = {k: v for k, v in method_style(name).items() if k != "marker"}
        ax.plot(np.arange(len(order)), 100 * smooth(np.asarray(a, dtype=float)[order], window), **style)
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
    """Mean (and std over seeds) of ``y`` against ``x`` for each ``hue`` value; methods
    (``hue="method"``) in their fixed colours and order."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(4, 3))
    scale = 100 if percent else 1
    groups = dict(list(df.groupby(hue, sort=False)))
    keys = order_methods(list(groups)) if hue == "method" else list(groups)
    for name in keys:
        g = groups[name]
        style = method_style(name) if hue == "method" else {"label": name}
        s = g.groupby(x)[y].agg(["mean", "std"]).sort_index()
        if errorbar:
            ax.errorbar(s.index, s["mean"] * scale, yerr=s["std"].fillna(0) * scale, ms=4, capsize=2, **style)
        else:
            ax.plot(s.index, s["mean"] * scale, ms=4, **({"marker": "o"} | style))
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    return ax


def few_shot_figure(test: pd.DataFrame, average: pd.DataFrame, datasets: Sequence[str], *, cols: int = 3):
    """The few-shot figure: the average over tasks in a large panel on top, one small panel
    per task below in a grid; x = shots (log scale), y = top-1 (%), mean ± std over seeds."""
    import matplotlib.pyplot as plt

    rows = (len(datasets) + cols - 1) // cols
    fig = plt.figure(figsize=(10, 4.2 + 2.6 * rows))
    grid = fig.add_gridspec(1 + rows, cols, height_ratios=[1.7] + [1] * rows, hspace=0.55, wspace=0.3)
    ax0 = fig.add_subplot(grid[0, :])
    plot_lines(average, "shots", "top1", "method", ax=ax0, title="average over tasks")
    ax0.set_xscale("log", base=2)
    ax0.set_ylabel("top-1 (%)")
    ax0.legend(loc="center left", bbox_to_anchor=(1.0, 0.5))
    for i, name in enumerate(datasets):
        ax = fig.add_subplot(grid[1 + i // cols, i % cols])
        plot_lines(test[test.dataset == name], "shots", "top1", "method", ax=ax, title=name, errorbar=False)
        ax.set_xscale("log", base=2)
        ax.tick_params(labelsize=8)
    return fig


def group_bars(df: pd.DataFrame, groups: Sequence[str] = ("head", "medium", "tail"), *, ax=None,
               ylabel: str = "top-1 (%)"):
    """Grouped bars: one group per class group (head / medium / tail, or many / medium /
    few), one bar per method in its colour, with the value on top."""
    import matplotlib.pyplot as plt

    methods = order_methods(list(df.method))
    t = df.set_index("method").loc[methods, list(groups)].astype(float) * 100
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3.4))
    width = 0.8 / max(1, len(methods))
    x = np.arange(len(groups))
    for i, m in enumerate(methods):
        st = method_style(m)
        bars = ax.bar(x + (i - (len(methods) - 1) / 2) * width, t.loc[m].values, width, color=st["color"],
                      label=st["label"])
        ax.bar_label(bars, fmt="%.0f", fontsize=7, padding=1)
    ax.set_xticks(x, list(groups))
    ax.set_ylabel(ylabel)
    ax.legend(ncol=min(4, len(methods)), loc="upper center", bbox_to_anchor=(0.5, -0.12))
    return ax


def gain_bars(gains: pd.Series, *, ax=None, xlabel: str = "gain (points)"):
    """Horizontal bars of per-task gains, negative ones in red, each labelled with its value."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 0.35 * len(gains) + 1))
    bars = ax.barh(gains.index, gains.values, color=["#B2182B" if g < 0 else "#009E73" for g in gains.values])
    ax.bar_label(bars, fmt="%+.2f", fontsize=8, padding=2)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel(xlabel)
    return ax


def estimator_bars(summary: pd.DataFrame, measures: Sequence[str] = ("debiased_top1", "gla_top1"), *, ax=None):
    """Horizontal bars of test top-1 (%) per estimator, mean ± std over seeds, from
    :func:`gla.studies.summarise_seeds` (columns ``<measure>_mean`` and ``<measure>_std``)."""
    import matplotlib.pyplot as plt

    labels = {"debiased_top1": "debiased zero-shot", "gla_top1": "GLA"}
    colours = {"debiased_top1": Method.DEBIASED.colour, "gla_top1": Method.GLA.colour}
    names = list(summary["estimator"])
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 0.55 * len(names) + 1.2))
    height = 0.8 / len(measures)
    y = np.arange(len(names))
    for i, m in enumerate(measures):
        mean = summary[f"{m}_mean"].to_numpy(dtype=float) * 100
        std = np.nan_to_num(summary[f"{m}_std"].to_numpy(dtype=float) * 100) if f"{m}_std" in summary else None
        ax.barh(y + (i - (len(measures) - 1) / 2) * height, mean, height, xerr=std, capsize=2,
                color=colours.get(m), label=labels.get(m, m))
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    finite = summary[[f"{m}_mean" for m in measures]].to_numpy(dtype=float) * 100
    ax.set_xlim(max(0.0, np.nanmin(finite) - 10), None)
    ax.set_xlabel("test top-1 (%), mean ± std over estimation sets")
    ax.legend(loc="lower right")
    return ax


ZIPF_MEASURES = {"spearman_estimated_true": "Spearman", "pearson_estimated_true": "Pearson", "bias_slope": "slope"}


def zipf_sweep_figure(sweep: pd.DataFrame, zipf_offset: float):
    """The Zipf sweep (:func:`gla.world.evaluate.zipf_sweep`): left, how the estimated log
    prior relates to the true one (Spearman, Pearson, slope) against the law's exponent;
    right, zero-shot top-1 on the head, tail and all classes by true frequency. Mean ±
    std over world seeds."""
    import matplotlib.pyplot as plt

    names = {**ZIPF_MEASURES, "zero_shot_head": "head", "zero_shot_tail": "tail", "zero_shot_all": "all"}
    long = sweep.melt(id_vars=["world_zipf_exponent", "world_seed"], var_name="measure", value_vars=list(names))
    long["measure"] = long.measure.replace(names)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    plot_lines(long[long.measure.isin(ZIPF_MEASURES.values())], "world_zipf_exponent", "value", "measure",
               ax=axes[0], percent=False, title="estimated vs true log prior")
    axes[0].axhline(0, color="grey", lw=0.8)
    plot_lines(long[long.measure.isin(["head", "tail", "all"])], "world_zipf_exponent", "value", "measure",
               ax=axes[1], title="zero-shot top-1 (%) by true frequency")
    for ax in axes:
        ax.set_xlabel(f"exponent of the pretraining law (offset {zipf_offset:g})")
        ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def planted_prior_figure(study: pd.DataFrame, recovered: torch.Tensor, planted: torch.Tensor, *,
                         estimator: str = "exact", planted_name: str = "true^1"):
    """The planted-prior study (:func:`gla.studies.planted_prior_study`): left, the
    recovered log prior against the planted one, per class; right, the recovery error of
    ``estimator`` against labelled images per class, one line per planted prior."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    plot_prior_scatter(recovered, planted, ax=axes[0], xlabel=f"planted log prior ({planted_name})",
                       ylabel="recovered log prior")
    plot_lines(study[study.id == estimator], "images_per_class", "error", "planted", ax=axes[1], percent=False,
               title=f"recovery error, {estimator} estimator")
    axes[1].set_xscale("log", base=2)
    axes[1].set_xlabel("labelled images per class")
    axes[1].set_ylabel("mean |error| of centred log q (nats)")
    axes[1].legend()
    fig.tight_layout()
    return fig


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
