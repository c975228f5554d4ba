"""The book's words: sentences and direction words chosen from numbers, in the library
where a test reaches them (a chapter's prose must not contradict its numbers)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

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
    from myst_nb import glue  # a notebook's kernel has myst_nb; the package need not

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
    "gla": ("GLA", "points"), "ensemble": ("the output ensemble", "points"), "wise_ft": ("WiSE-FT (0.5)", "points"),
    "gla_gain": ("GLA's gain over the fine-tuned model", "points"),
    "zero_shot_shifts": ("zero-shot's mean over the shifted sets", "points"),
    "fine_tuned_shifts": ("the fine-tuned model's mean over the shifted sets", "points"),
    "gla_shifts": ("GLA's mean over the shifted sets", "points"),
}


# Differences of two measured metrics (per seed) that a chapter may quote.
_SPREAD_DIFFERENCES = {"debiasing_gain": ("debiased", "zero_shot"), "fine_tuned_gain": ("fine_tuned", "zero_shot"),
                       "gla_gain": ("gla", "fine_tuned")}


def seed_spread_note(spread: Mapping[str, Any] | None, metrics: Sequence[str], *, unmeasured: Sequence[str] = ()
                     ) -> str:
    """One sentence that says how far a chapter's single-seed numbers move across seeds.

    Parameters
    ----------
    spread : mapping or None
        ``{"seeds": [...], "values": {metric: [one value per seed]}, "source": str}`` (the
        world's ``regime.json``, from :attr:`gla.notebook.Context.seed_spread`), or
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
    glue_markdown(key, seed_spread_note(spread, metrics, unmeasured=unmeasured))


def glue_markdown(key: str, text: str) -> None:
    """Glue ``text`` as Markdown under ``key`` (not displayed), for a page to show with
    ``{glue:md}`<key>```; returns nothing, so a cell that ends with it prints nothing."""
    from IPython.display import Markdown  # a notebook's kernel has IPython and myst_nb; the package need not
    from myst_nb import glue

    glue(key, Markdown(text), display=False)


def sets_where_ahead(table: pd.DataFrame, method: str, other: str, columns: Sequence[str]) -> list[str]:
    """The ``columns`` (evaluation sets of a methods-by-sets table, e.g. :func:`pivot_methods`)
    on which ``method``'s value is above ``other``'s, in the order given."""
    return [c for c in columns if table.loc[method, c] > table.loc[other, c]]


def shift_robustness_finding(wins: Sequence[str], n_shifts: int) -> str:
    """The sentence that says on how many shifted test sets the zero-shot model beats the
    fine-tuned one, and whether that is what real CLIP does (zero-shot ahead on most of
    ImageNet's five shifts: ViT-B/16 against its fine-tuned model, ``gla/data/published.json``).

    Parameters
    ----------
    wins : sequence of str
        The shifted sets on which zero-shot top-1 is above fine-tuned's.
    n_shifts : int
        How many shifted sets were evaluated.
    """
    if n_shifts <= 0:
        return "No shifted set was evaluated."
    names = ", ".join(f"`{w}`" for w in wins)
    count = f"The zero-shot model beats the fine-tuned one on {len(wins)} of the {n_shifts} shifted sets"
    count += f" ({names})" if wins else ""
    if 2 * len(wins) > n_shifts:
        return (count + ", as real CLIP does on most of ImageNet's shifts: fine-tuning on one distribution costs "
                "part of the robustness that pretraining gave, which is what an ensemble with the zero-shot model, "
                "GLA's included, can recover.")
    return (count + ", unlike real CLIP, which beats its fine-tuned model on most of ImageNet's shifts: here the "
            "zero-shot model brings little robustness of its own for an ensemble to recover.")


def label_bias_finding(head_minus_tail: float) -> str:
    """The sentences that say whether a zero-shot model shows the paper's label bias: its
    head third of classes (by the estimated prior) ahead of its tail third.

    Parameters
    ----------
    head_minus_tail : float
        The zero-shot model's head-third minus tail-third accuracy, in points; the words
        follow :func:`direction` (higher, lower, the same).

    Returns
    -------
    str
        Two sentences (Markdown), the second saying what the next chapter does.
    """
    return {
        "higher": "This world shows what the paper calls label bias: the zero-shot model favours the classes "
                  "its estimated prior puts first. The next chapter estimates that prior and removes it.",
        "lower": "This is the opposite of the paper's label bias, where the head third scores higher: on this "
                 "run the zero-shot model does better on the classes its estimated prior puts last. The next "
                 "chapter estimates the prior all the same and shows what removing it does here.",
        "the same": "The paper's label bias would show as a higher head third; this run shows no gap between "
                    "head and tail, so there is little label bias to remove here. The next chapter estimates "
                    "the prior all the same.",
    }[direction(head_minus_tail)]


#: The paper's many-shot result as chapter 03's reading quotes it.
MANY_SHOT_PAPER = ("the paper, whose abstract reports a gain of 1.5 points over fine-tuning on ImageNet, "
                   "with GLA above zero-shot too")


def many_shot_vs_paper(gain_over_fine_tuned: float, gain_over_zero_shot: float) -> str:
    """The sentence that sets a many-shot run beside the paper: whether GLA beats the
    fine-tuned and the zero-shot model it combines, as the paper's does.

    Parameters
    ----------
    gain_over_fine_tuned, gain_over_zero_shot : float
        GLA's top-1 minus each model's, in points; the words follow :func:`direction`
        (differences within :data:`DIRECTION_TOLERANCE` are ties).

    Returns
    -------
    str
        One sentence (Markdown) that agrees with the direction words of the same numbers.
    """
    words = tuple(direction(g, "above", "below", "level with") for g in (gain_over_fine_tuned, gain_over_zero_shot))
    sentences = {
        ("above", "above"): f"As in {MANY_SHOT_PAPER}, GLA beats both models it combines here.",
        ("above", "below"): f"Unlike {MANY_SHOT_PAPER}: GLA beats the fine-tuned model but not the zero-shot one on "
                            "this run, so combining the two does not recover all of what fine-tuning lost.",
        ("below", "above"): f"Unlike {MANY_SHOT_PAPER}: GLA beats the zero-shot model but not the fine-tuned one on "
                            "this run.",
        ("below", "below"): f"Unlike {MANY_SHOT_PAPER}: GLA beats neither model it combines on this run.",
    }
    return sentences.get(words, f"Unlike {MANY_SHOT_PAPER}: on this run GLA ties with a model it combines.")


def debiasing_vs_paper(gain: float) -> str:
    """The clause that sets the gain of removing the estimated prior beside the paper's
    (Section 4: it improves zero-shot accuracy); it follows the direction word of ``gain``
    (:func:`direction` with "raises", "lowers", "leaves unchanged").

    Parameters
    ----------
    gain : float
        Debiased minus zero-shot top-1, in points.

    Returns
    -------
    str
        A clause (Markdown) that ends a sentence.
    """
    claim = "the paper, where removing the estimated prior improves zero-shot accuracy (Section 4)"
    return {"raises": f"as in {claim}.",
            "lowers": f"unlike {claim}: on this run the prior the model carries is not what hurts it.",
            "leaves unchanged": f"unlike {claim}: on this run it makes no difference.",
            }[direction(gain, "raises", "lowers", "leaves unchanged")]


def _join(items: Sequence[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]

def zipf_sweep_finding(sweep: pd.DataFrame | None, *, offset: float | None = None, images: int | None = None,
                       backbone: str = "") -> str:
    """The sentence that states the Zipf sweep's finding (markdown).

    Parameters
    ----------
    sweep : pandas.DataFrame or None
        :func:`gla.world.evaluate.zipf_sweep`'s rows (one per world), or None / empty when
        the sweep did not run (a backbone whose pretraining prior is unknown).
    offset : float
        The law's offset (the worlds').
    images : int
        Pretraining images of each world in the sweep.
    backbone : str
        The chapter's backbone, named when the sweep did not run.

    Returns
    -------
    str
        For a sweep: how the rank correlation and the slope of the estimated on the true
        log prior, and the zero-shot head-minus-tail gap, move from the lowest exponent
        to the highest (means over seeds). Otherwise one sentence saying that the sweep
        needs the world and what the chapter shows instead.
    """
    if sweep is None or not len(sweep):
        who = f"`{backbone}`" if backbone else "this backbone"
        return (f"The sweep needs the miniature world, whose pretraining prior is known; that of {who} is not, "
                "so the sweep is not run here, and the chapter shows what else the estimated prior follows.")
    means = sweep.groupby("world_zipf_exponent").mean(numeric_only=True)
    lo, hi = means.iloc[0], means.iloc[-1]
    return (f"Over {len(sweep)} pretrained worlds ({images} images each), the rank correlation between the "
            f"estimated and the true log prior is {lo.spearman_estimated_true:.2f} at exponent {means.index[0]:.1f} "
            f"(offset {offset:.0f}) and {hi.spearman_estimated_true:.2f} at {means.index[-1]:.1f} (mean over "
            f"seeds); the slope of the estimate on the truth goes from {lo.bias_slope:.2f} to {hi.bias_slope:.2f}, "
            f"while the zero-shot head-minus-tail gap goes from {lo.head_minus_tail * 100:.1f} to "
            f"{hi.head_minus_tail * 100:.1f} points.")


