"""Reporting: the book's tables, figures and words, and the published numbers that may be
quoted beside them.

- :mod:`gla.report.tables`: tidy results as method x metric tables, methods in the book's
  order and named for display;
- :mod:`gla.report.figures`: the book's one figure style (:func:`use_book_style`) and its
  figures; every method has a fixed colour, marker and place in legends
  (:class:`gla.protocols.Method`, :func:`method_style`), so a method looks the same in every
  chapter;
- :mod:`gla.report.names`: one label for a model (backbone and weights) in every table
  and page (:func:`model_label`);
- :mod:`gla.report.published`: the paper's numbers with their sources;
- :mod:`gla.report.words`: the words and sentences the book's prose chooses from numbers.
"""

from ..protocols.results import method_label, method_style, order_methods
from .figures import (
    ZIPF_MEASURES,
    estimator_bars,
    few_shot_figure,
    gain_bars,
    group_bars,
    placeholder_figure,
    planted_prior_figure,
    plot_lines,
    plot_per_class,
    plot_prior_scatter,
    plot_reliability,
    save_figure,
    smooth,
    use_book_style,
    zipf_sweep_figure,
)
from .names import RANDOM_WEIGHTS, model_label, weights_label, with_model_labels
from .published import PUBLISHED_FILE, published
from .tables import (
    average_over_datasets,
    display_names,
    gain_over,
    mean_std_table,
    method_table,
    per_class_table,
    pivot_methods,
)
from .words import (
    DIRECTION_TOLERANCE,
    DIRECTION_WORDS,
    MANY_SHOT_PAPER,
    SPREAD_METRICS,
    debiasing_vs_paper,
    direction,
    glue_direction,
    glue_markdown,
    glue_seed_note,
    label_bias_finding,
    many_shot_vs_paper,
    seed_spread_note,
    sets_where_ahead,
    shift_robustness_finding,
    zipf_sweep_finding,
)

__all__ = [
    "DIRECTION_TOLERANCE", "DIRECTION_WORDS", "MANY_SHOT_PAPER", "PUBLISHED_FILE", "RANDOM_WEIGHTS", "SPREAD_METRICS",
    "ZIPF_MEASURES", "zipf_sweep_finding", "average_over_datasets", "debiasing_vs_paper", "direction", "glue_markdown",
    "label_bias_finding", "many_shot_vs_paper", "sets_where_ahead", "shift_robustness_finding",
    "display_names", "estimator_bars", "few_shot_figure", "gain_bars",
    "gain_over", "glue_direction", "glue_seed_note", "group_bars", "mean_std_table", "method_label", "method_style",
    "method_table", "model_label", "order_methods", "per_class_table", "pivot_methods", "placeholder_figure",
    "planted_prior_figure", "plot_lines", "plot_per_class", "plot_prior_scatter", "plot_reliability", "published",
    "save_figure", "seed_spread_note", "smooth", "use_book_style", "weights_label", "with_model_labels",
    "zipf_sweep_figure",
]
