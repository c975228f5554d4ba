"""Tables of the book: tidy results (:mod:`gla.protocols.results`) as method x metric,
methods in the book's order (:attr:`gla.protocols.Method.order`) and named for display."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from ..metrics import per_class_accuracy
from ..protocols.results import method_label, order_methods
from .names import with_model_labels


def method_table(df: pd.DataFrame, values: Sequence[str] = ("top1", "head", "medium", "tail"), *,
                 index: Sequence[str] = (), percent: bool = True, decimals: int = 1) -> pd.DataFrame:
    """Rows of a results table as method x metric, methods in the book's order and named for
    display; ``index`` adds leading levels (e.g. ``("backbone", "pretrained")``).

    The levels ``backbone`` and ``pretrained`` together become one level ``model`` that
    names each model as every table does (:func:`gla.report.model_label`: "the world's
    CLIP (seed 0)", "ViT-B-32 (openai)", a checkpoint's file name).
    """
    index = list(index)
    if {"backbone", "pretrained"} <= set(index):
        df = with_model_labels(df)
        index = [level for level in index if level != "pretrained"]
        index[index.index("backbone")] = "model"
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
