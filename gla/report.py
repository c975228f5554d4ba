"""Reporting: tables, figures and the published numbers that may be quoted beside them.

The book has one figure style, owned here: :func:`use_book_style` sets it, and every method
has a fixed colour, marker and place in tables and legends (:data:`METHOD_ORDER`,
:func:`method_style`), so a method looks the same in every chapter. Table builders take the
tidy results of :mod:`gla.protocols` and return frames indexed by display names.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .metrics import per_class_accuracy
from .protocols.results import Method, method_label

PUBLISHED_FILE = Path(__file__).resolve().parent / "data" / "published.json"

# Order of methods in tables and legends: baselines, then fine-tuned models, then ensembles and GLA.
METHOD_ORDER: tuple[str, ...] = (
    Method.ZERO_SHOT, Method.DEBIASED, Method.LINEAR_PROBE, Method.COOP, Method.PROMPT_TUNING, Method.FINE_TUNED,
    Method.FINE_TUNED_CE, Method.FINE_TUNED_CE_ADJUSTED, Method.FINE_TUNED_LA_LOSS, Method.WISE_FT,
    Method.WISE_FT_VAL, Method.WISE_FT_SWEEP, Method.ENSEMBLE, Method.GLA,
)
# Okabe-Ito colours (distinguishable with colour-blindness); GLA is always the dark red.
METHOD_COLOURS: dict[str, str] = {
    Method.ZERO_SHOT: "#0072B2", Method.DEBIASED: "#56B4E9", Method.LINEAR_PROBE: "#999999",
    Method.COOP: "#CC79A7", Method.PROMPT_TUNING: "#E69F00", Method.FINE_TUNED: "#E69F00",
    Method.FINE_TUNED_CE: "#E69F00", Method.FINE_TUNED_CE_ADJUSTED: "#F0E442", Method.FINE_TUNED_LA_LOSS: "#8C564B",
    Method.WISE_FT: "#009E73", Method.WISE_FT_VAL: "#006D4F", Method.WISE_FT_SWEEP: "#009E73",
    Method.ENSEMBLE: "#7F7F7F", Method.GLA: "#B2182B",
}
_MARKERS = "osD^v<>ph*XP8d"


def use_book_style() -> None:
    """The book's matplotlib style: legible at the page width, SVG text kept as text."""
    import matplotlib as mpl

    mpl.rcParams.update({
        "figure.dpi": 110, "savefig.dpi": 150, "font.size": 11, "axes.titlesize": 11, "axes.labelsize": 11,
        "legend.fontsize": 10, "xtick.labelsize": 10, "ytick.labelsize": 10, "axes.spines.top": False,
        "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3, "legend.frameon": False,
        "svg.fonttype": "none",
    })


def method_style(method: str) -> dict:
    """Colour, marker, label and drawing order of a method (identifier or display name)."""
    ids = {method_label(m): m for m in METHOD_ORDER}
    m = ids.get(method, method)
    rank = METHOD_ORDER.index(m) if m in METHOD_ORDER else len(METHOD_ORDER)
    return {"color": METHOD_COLOURS.get(m, "#333333"), "marker": _MARKERS[rank % len(_MARKERS)],
            "label": method_label(m), "zorder": 3 if m == Method.GLA else 2}


def order_methods(methods: Sequence[str]) -> list[str]:
    """Methods in the book's order (unknown ones last, in their given order)."""
    known = [m for m in METHOD_ORDER if m in set(methods)]
    return known + [m for m in dict.fromkeys(methods) if m not in known]


def method_table(df: pd.DataFrame, values: Sequence[str] = ("top1", "head", "medium", "tail"), *,
                 index: Sequence[str] = (), percent: bool = True, decimals: int = 1) -> pd.DataFrame:
    """Rows of a results table as method x metric, methods in the book's order and named for
    display; ``index`` adds leading levels (e.g. ``("backbone", "pretrained")``)."""
    cols = [v for v in values if v in df.columns and df[v].notna().any()]
    t = df.set_index(list(index) + ["method"])[cols].astype(float)
    t = t.reindex(order_methods(list(df.method)), level="method") if index else t.loc[order_methods(list(df.method))]
    t = (t * (100 if percent else 1)).round(decimals)
    return t.rename(index=method_label, level="method") if index else t.rename(index=method_label)


def pivot_methods(df: pd.DataFrame, columns: str, value: str = "top1", *, column_order: Sequence[str] | None = None,
                  percent: bool = True) -> pd.DataFrame:
    """method x ``columns`` table of ``value`` (mean over seeds), methods in the book's order
    (identifiers as the index: use :func:`display_names` to show it)."""
    t = df.pivot_table(index="method", columns=columns, values=value, aggfunc="mean", sort=False)
    t = t.loc[order_methods(list(t.index))]
    if column_order is not None:
        t = t[list(column_order)]
    return t * (100 if percent else 1)


def display_names(table: pd.DataFrame) -> pd.DataFrame:
    """A table indexed by method identifiers, with their display names."""
    return table.rename(index=method_label)


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


# Words that state a direction in the book's prose, with the sign of the number they
# describe: +1 for a positive difference, -1 for a negative one, 0 for none. A word glued
# as ``<key>_word`` beside the number ``<key>`` must agree with its sign (tests/test_book.py).
DIRECTION_WORDS: dict[str, int] = {
    "higher": 1, "lower": -1, "above": 1, "below": -1, "level with": 0, "the same": 0,
    "a gain": 1, "a loss": -1, "no change": 0, "helps": 1, "hurts": -1, "does not change": 0,
    "raises": 1, "lowers": -1, "leaves unchanged": 0, "grows": 1, "shrinks": -1, "stays the same": 0,
    "more": 1, "less": -1, "larger": 1, "smaller": -1, "a gap": 1, "a reversed gap": -1, "no gap": 0,
}
DIRECTION_TOLERANCE = 0.05  # half a unit of the last digit the book shows (values printed with .1f)


def direction(value: float, positive: str = "higher", negative: str = "lower", zero: str = "the same", *,
              tol: float = DIRECTION_TOLERANCE) -> str:
    """The word that states the direction of a signed difference, for prose that must not
    contradict its numbers.

    Parameters
    ----------
    value : float
        The difference the sentence describes (e.g. GLA minus fine-tuned, in points).
    positive, negative, zero : str
        Words for ``value > tol``, ``value < -tol`` and ``|value| <= tol``.
    tol : float
        Differences up to ``tol`` in size count as none (default: half of the last digit a
        ``.1f`` number shows, so "the same" goes with a printed ``+0.0``).

    Returns
    -------
    str
        One of ``positive``, ``negative``, ``zero``.

    Raises
    ------
    ValueError
        When ``value`` is not a finite number or ``tol`` is negative.
    """
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"direction: expected a number, got {value!r}") from None
    if not np.isfinite(v):
        raise ValueError(f"direction: expected a finite number, got {v}")
    if tol < 0:
        raise ValueError(f"direction: tol must be >= 0, got {tol}")
    return positive if v > tol else negative if v < -tol else zero


def glue_direction(key: str, value: float, positive: str = "higher", negative: str = "lower",
                   zero: str = "the same", *, tol: float = DIRECTION_TOLERANCE) -> None:
    """Glue (``myst_nb.glue``, not displayed) the number ``key`` and the word ``<key>_word``
    that states its direction (:func:`direction`), so a page can write
    ``{glue:text}`<key>_word` ({glue:text}`<key>:+.1f` points)``. Returns nothing, so that
    a call that ends a notebook cell prints nothing on the page.

    Every word must be in :data:`DIRECTION_WORDS` (the book's tests check it against the
    sign of the number); an unknown word is a ``ValueError``.
    """
    from myst_nb import glue

    unknown = [w for w in (positive, negative, zero) if w not in DIRECTION_WORDS]
    if unknown:
        raise ValueError(f"glue_direction: {unknown} not in report.DIRECTION_WORDS; expected words from "
                         f"{sorted(DIRECTION_WORDS)}")
    signs = (DIRECTION_WORDS[positive], DIRECTION_WORDS[negative], DIRECTION_WORDS[zero])
    if signs != (1, -1, 0):
        raise ValueError(f"glue_direction: words {positive!r}, {negative!r}, {zero!r} have signs {signs}; "
                         "expected a positive, a negative and a neutral word in that order")
    word = direction(value, positive, negative, zero, tol=tol)
    glue(key, float(value), display=False)
    glue(f"{key}_word", word, display=False)


#: How a metric of :func:`seed_spread_note` is named on the page, and its unit.
SPREAD_METRICS: dict[str, tuple[str, str]] = {
    "zero_shot": ("zero-shot top-1", "points"), "debiased": ("debiased zero-shot top-1", "points"),
    "debiasing_gain": ("the gain of debiasing", "points"), "head_minus_tail": ("the head-minus-tail gap", "points"),
    "spearman_estimated_true": ("the rank correlation of the estimate with the truth", ""),
    "linear_probe": ("the linear probe", "points"), "fine_tuned": ("the fine-tuned model", "points"),
    "fine_tuned_gain": ("fine-tuning's gain over zero-shot", "points"),
}
# Differences of two measured metrics (per seed) that a chapter may quote.
_SPREAD_DIFFERENCES = {"debiasing_gain": ("debiased", "zero_shot"), "fine_tuned_gain": ("fine_tuned", "zero_shot")}


def seed_spread_note(spread: Mapping[str, Any] | None, metrics: Sequence[str], *, unmeasured: Sequence[str] = ()
                     ) -> str:
    """One sentence that says how far a chapter's single-seed numbers move across seeds.

    Parameters
    ----------
    spread : mapping or None
        ``{"seeds": [...], "values": {metric: [one value per seed]}, "source": str}`` (the
        world's ``seed_spread.json``, from :attr:`gla.notebook.Context.seed_spread`), or
        None when no spread was measured (a real backbone).
    metrics : sequence of str
        Keys of :data:`SPREAD_METRICS` the chapter quotes; ``debiasing_gain`` and
        ``fine_tuned_gain`` are computed per seed from their two metrics.
    unmeasured : sequence of str
        Names of quoted numbers whose spread was not measured (said so, not guessed).

    Returns
    -------
    str
        Markdown: the standard deviation and the range over the seeds of each metric, or,
        without ``spread``, that the numbers are one run's.
    """
    if not spread or not metrics:
        if spread and unmeasured:
            measured = _join([SPREAD_METRICS[m][0] for m in spread["values"] if m in SPREAD_METRICS])
            return (f"These are one seed's numbers; the spread of {_join(list(unmeasured))} over the world's seeds "
                    f"has not been measured ({spread['source']} gives it for {measured}).")
        return ("These numbers come from one run (one seed); their spread over seeds was not measured here, so "
                "read differences of a point or less with care.")
    values = dict(spread["values"])
    for name, (a, b) in _SPREAD_DIFFERENCES.items():
        if a in values and b in values:
            values[name] = [x - y for x, y in zip(values[a], values[b])]
    parts = []
    for m in metrics:
        if m not in SPREAD_METRICS or m not in values:
            known = sorted(set(values) & set(SPREAD_METRICS))
            raise ValueError(f"seed_spread_note: no spread for {m!r}; this spread has {known}")
        label, unit = SPREAD_METRICS[m]
        v = np.asarray(values[m], dtype=float)
        digits = 1 if unit else 2
        u = f" {unit}" if unit else ""
        parts.append(f"{label} moves by ± {v.std(ddof=1):.{digits}f}{u} "
                     f"(from {v.min():.{digits}f} to {v.max():.{digits}f})")
    seeds = _join([str(s) for s in spread["seeds"]])
    text = (f"These are one seed's numbers. Across the world's seeds {seeds} ({spread['source']}; ± is the "
            f"standard deviation), {_join(parts)}.")
    if unmeasured:
        text += f" The spread of {_join(list(unmeasured))} over seeds has not been measured."
    return text


def glue_seed_note(key: str, spread: Mapping[str, Any] | None, metrics: Sequence[str], *,
                   unmeasured: Sequence[str] = ()) -> None:
    """Glue :func:`seed_spread_note` as Markdown under ``key`` (not displayed), for a
    chapter's reading to show with ``{glue:md}`<key>```."""
    from IPython.display import Markdown
    from myst_nb import glue

    glue(key, Markdown(seed_spread_note(spread, metrics, unmeasured=unmeasured)), display=False)


def _join(items: Sequence[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


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
    colours = {"debiased_top1": METHOD_COLOURS[Method.DEBIASED], "gla_top1": METHOD_COLOURS[Method.GLA]}
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


def per_class_table(outputs, methods: Sequence[str], *, true_log_prior: torch.Tensor | None = None) -> pd.DataFrame:
    """Per-class accuracy on the test split of :class:`gla.protocols.ManyShotOutputs`, with
    the estimated (and, when known, the true) log prior of each class."""
    test = outputs.test
    table = pd.DataFrame({"class": outputs.classnames, "estimated_log_prior": outputs.log_prior.numpy()})
    for m in methods:
        table[m] = per_class_accuracy(test.logits[m], test.labels).numpy()
    if true_log_prior is not None:
        table["true_log_prior"] = true_log_prior.numpy()
    return table


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
