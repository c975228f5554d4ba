"""The studies beyond the paper: estimators compared, what the prior absorbs, plateaus,
calibration tables, and the concept-count files in their published formats."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from gla.frequencies import log_frequency_prior, read_concept_counts, write_concept_counts
from gla.studies import calibration_table, class_predictors, compare_estimators, explain_prior, plateau
from tests.conftest import planted_logits


def test_compare_estimators_recovers_a_planted_prior():
    z, y, true_lp = planted_logits(1000, 8, seed=0)
    logits, labels, test_logits, test_labels = z[0::2], y[0::2], z[1::2], y[1::2]
    df = compare_estimators(logits, labels, test_logits, test_labels, ft_test=test_logits,
                            true_log_prior=true_lp, official_steps=50)
    assert list(df.estimator)[0].startswith("exact") and len(df) == 5
    exact = df.iloc[0]
    assert exact.spearman_true > 0.95 and exact.mae_true < 0.1 and exact.mae_to_exact == 0
    uniform = df.set_index("estimator").loc["uniform (no debiasing)"]
    assert np.isnan(uniform.spearman_true) and exact.debiased_top1 > uniform.debiased_top1
    assert uniform.sum_q == pytest.approx(1.0)  # a normalised uniform prior, not K ones
    assert set(df.columns) >= {"gla_top1", "seconds", "sum_q", "labels", "pearson_true"}
    assert not df.set_index("estimator").labels["EM, label-free (Saerens et al.)"]


def test_explain_prior_finds_the_predictor_that_made_it():
    g = torch.Generator().manual_seed(0)
    k = 60
    preds = pd.DataFrame({"class_index": range(k), "a": torch.randn(k, generator=g).numpy(),
                          "b": torch.randn(k, generator=g).numpy()})
    lq = torch.tensor(2.0 * preds.a.to_numpy() + 0.01 * torch.randn(k, generator=g).numpy())
    single, joint = explain_prior(lq, preds)
    s = single.set_index("predictor")
    assert s.loc["a", "pearson"] > 0.99 and abs(s.loc["b", "pearson"]) < 0.4
    j = joint.set_index("predictor")
    assert j.loc["all", "r2"] > 0.99 and j.loc["a", "unique_r2"] > 0.9 and j.loc["b", "unique_r2"] < 0.01
    with pytest.raises(ValueError, match="one per class"):
        explain_prior(lq[:10], preds)


def test_class_predictors_measure_text_hubs_and_difficulty():
    head = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]), dim=1).T  # (D, K)
    feats = head.T.repeat_interleave(2, 0)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    ft = torch.nn.functional.one_hot(torch.tensor([0, 0, 0, 1, 2, 2]), 3).float() * 5
    p = class_predictors(head, feats, labels, val_logits_ft=ft)
    assert p.text_nearest[0] > 0.99 and p.text_nearest[2] < 0.2
    assert p.difficulty.tolist() == [0.0, 0.5, 0.0]
    assert np.allclose(p.image_text_alignment, 1.0)
    with pytest.raises(ValueError, match="at least one validation image"):
        class_predictors(head, feats[:4], labels[:4])


def test_plateau_is_where_the_curve_stops_rising_beyond_noise():
    rows = [{"k": k, "seed": s, "acc": v + 0.01 * (s - 1)}
            for k, v in [(1, 0.50), (2, 0.60), (4, 0.70), (8, 0.701), (16, 0.702)] for s in range(3)]
    p = plateau(pd.DataFrame(rows), "k", "acc")
    assert p.plateau_k.item() == 4 and p.best_k.item() == 16


def test_calibration_table_reports_overconfidence():
    labels = torch.arange(100) % 2
    right = torch.nn.functional.one_hot(labels, 2).float() * 10
    wrong_half = right.clone()
    wrong_half[:50] = wrong_half[:50].flip(1)
    summary, bins = calibration_table({"right": right, "half wrong": wrong_half}, labels, n_bins=10)
    s = summary.set_index("model")
    assert s.loc["right", "ece"] < 1e-3 and s.loc["half wrong", "ece"] > 0.45
    assert set(bins.model) == {"right", "half wrong"} and {"confidence", "accuracy", "count"} <= set(bins.columns)


# --------------------------------------------------------------------------- count files

NAMES = ["tench", "goldfish", "great white shark"]


def test_counts_in_both_published_formats_round_trip(tmp_path):
    # bethgelab's search_counts JSON: {concept: count}, underscores for spaces
    (tmp_path / "c.json").write_text(json.dumps({"tench": 917, "goldfish": 30282, "great_white_shark": 19521}))
    # clip-beyond-tail's class_frequency txt: name<TAB>count per line
    (tmp_path / "c.txt").write_text("tench\t917\ngoldfish\t30282\ngreat white shark\t19521\n")
    a = read_concept_counts(tmp_path / "c.json", NAMES)
    b = read_concept_counts(tmp_path / "c.txt", NAMES)
    assert a["count"].tolist() == b["count"].tolist() == [917, 30282, 19521]
    assert a.name_match.all() and b.name_match.all()
    for fmt in ("json", "tsv"):
        p = write_concept_counts(tmp_path / f"w.{fmt}", NAMES, [1, 2, 3], fmt)
        assert read_concept_counts(p, NAMES)["count"].tolist() == [1, 2, 3]


def test_counts_align_by_name_when_the_file_lists_other_concepts(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"great_white_shark": 5, "carp": 1, "Goldfish": 2, "tench": 3}))
    df = read_concept_counts(tmp_path / "c.json", NAMES)
    assert df["count"].tolist() == [3, 2, 5]
    (tmp_path / "d.json").write_text(json.dumps({"tench": 1, "carp": 2}))
    with pytest.raises(ValueError, match="'goldfish', 'great white shark'"):
        read_concept_counts(tmp_path / "d.json", NAMES)


def test_positional_alignment_flags_names_that_differ(tmp_path):
    (tmp_path / "c.txt").write_text("tench\t1\ngold fish\t2\ngreat white shark\t3\n")
    df = read_concept_counts(tmp_path / "c.txt", NAMES)
    assert df.name_match.tolist() == [True, False, True]


def test_bad_count_files_say_what_was_expected(tmp_path):
    (tmp_path / "a.txt").write_text("tench\tmany\n")
    with pytest.raises(ValueError, match="not a number"):
        read_concept_counts(tmp_path / "a.txt")
    (tmp_path / "b.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        read_concept_counts(tmp_path / "b.json", fmt="json")
    (tmp_path / "c.txt").write_text("justaname\n")
    with pytest.raises(ValueError, match="<TAB><count>"):
        read_concept_counts(tmp_path / "c.txt")
    with pytest.raises(FileNotFoundError):
        read_concept_counts(tmp_path / "missing.txt")


def test_log_frequency_prior_handles_zero_counts():
    lp = log_frequency_prior([0, 1, 3])
    assert torch.isfinite(lp).all() and abs(float(torch.logsumexp(lp, 0))) < 1e-12
    assert torch.allclose(lp.exp(), torch.tensor([1 / 7, 2 / 7, 4 / 7], dtype=torch.float64))


def test_count_files_must_agree(tmp_path):
    from gla.frequencies import read_count_files

    a = write_concept_counts(tmp_path / "a.json", NAMES, [1, 2, 3], "json")
    b = write_concept_counts(tmp_path / "b.tsv", NAMES, [1, 2, 3], "tsv")
    c = write_concept_counts(tmp_path / "c.tsv", NAMES, [1, 2, 4], "tsv")
    assert read_count_files([a, b], NAMES)["count"].tolist() == [1, 2, 3]
    with pytest.raises(ValueError, match="differ"):
        read_count_files([a, c], NAMES)


def test_reliability_diagram_has_a_panel_per_model():
    import matplotlib

    matplotlib.use("Agg")
    labels = torch.arange(40) % 2
    logits = torch.nn.functional.one_hot(labels, 2).float() * 3
    summary, bins = calibration_table({"a": logits, "b": -logits}, labels, n_bins=5)
    from gla.report import plot_reliability

    axes = plot_reliability(bins, summary.set_index("model")["ece"])
    assert [ax.get_title().split("\n")[0] for ax in axes] == ["a", "b"]
