"""The studies beyond the paper: estimators compared, planted priors recovered, what the
prior absorbs, plateaus and calibration tables (count files: tests/test_frequencies.py)."""

import numpy as np
import pandas as pd
import pytest
import torch

from gla.estimators import list_estimators
from gla.studies import (
    calibration_table,
    class_predictors,
    compare_estimators,
    explain_prior,
    in_model_logits,
    planted_prior_study,
    planted_priors,
    plateau,
    summarise_seeds,
)
from tests.conftest import planted_logits


def test_compare_estimators_iterates_the_registry_by_id():
    z, y, true_lp = planted_logits(400, 8, seed=0)
    logits, labels, test_logits, test_labels = z[0::2], y[0::2], z[1::2], y[1::2]
    df = compare_estimators(logits, labels, test_logits, test_labels, ft_test=test_logits,
                            true_log_prior=true_lp, official_steps=20,
                            params={"em": {"n_iter": 30}})
    assert df.id.tolist() == list_estimators() + ["uniform"]
    rows = df.set_index("id")
    exact = rows.loc["exact"]
    assert exact.estimator == "exact (paper's objective)" and exact.labels and exact.converged
    assert exact.spearman_true > 0.95 and exact.mae_true < 0.1 and exact.mae_to_exact == 0
    uniform = rows.loc["uniform"]
    assert np.isnan(uniform.spearman_true) and exact.debiased_top1 > uniform.debiased_top1
    assert uniform.sum_q == pytest.approx(1.0)  # a normalised uniform prior, not K ones
    assert rows.loc["official"].sum_q < 1 and not rows.loc["official"].converged
    assert set(df.columns) >= {"gla_top1", "seconds", "sum_q", "labels", "pearson_true", "estimates", "grad_norm"}
    # EM is reported, but as what it estimates, and never scored as a prior estimate
    em = rows.loc["em"]
    assert em.estimates == "target label distribution" and not em.labels
    assert np.isnan(em.mae_true) and np.isnan(em.spearman_true) and np.isnan(em.mae_to_exact)
    assert (rows.drop(index=["em", "uniform"]).estimates == "model prior").all()


def test_compare_estimators_over_seeds_gives_mean_and_std():
    z, y, true_lp = planted_logits(60, 5, seed=1)
    df = compare_estimators(z, y, z, y, estimators=["exact", "balanced-prediction"], true_log_prior=true_lp,
                            seeds=[1, 2, 3], images_per_class=20)
    assert len(df) == 3 * 3 and sorted(set(df.seed)) == [1, 2, 3]
    exact = df[df.id == "exact"]
    assert exact.mae_true.nunique() == 3  # different subsets, different estimates
    s = summarise_seeds(df).set_index("id")
    assert s.loc["exact", "n_seeds"] == 3
    assert s.loc["exact", "mae_true_mean"] == pytest.approx(exact.mae_true.mean())
    assert s.loc["exact", "mae_true_std"] == pytest.approx(exact.mae_true.std())
    again = compare_estimators(z, y, z, y, estimators=["exact"], seeds=[2], images_per_class=20,
                               include_uniform=False)
    assert again.debiased_top1.item() == df[(df.id == "exact") & (df.seed == 2)].debiased_top1.item()
    with pytest.raises(ValueError, match=r"estimator: expected an estimator id, one of \[.*'exact'.*got 'no-such"):
        compare_estimators(z, y, z, y, estimators=["no-such-estimator"])
    with pytest.raises(ValueError, match="not among the estimators"):
        compare_estimators(z, y, z, y, estimators=["exact"], official_steps=5)


# --------------------------------------------------------------------------- planted priors


def test_planted_priors_are_the_true_prior_at_each_strength_and_a_random_one():
    _, _, lq = planted_logits(1, 12, seed=0)
    p = planted_priors(lq, strengths=(0.5, 1, 2), seed=0)
    assert list(p) == ["true^0.5", "true^1", "true^2", "random"]
    for name, s in [("true^0.5", 0.5), ("true^1", 1.0), ("true^2", 2.0)]:
        assert torch.logsumexp(p[name], 0).abs() < 1e-12
        assert torch.allclose(p[name] - p[name].mean(), s * (lq - lq.mean()))
    assert torch.equal(p["random"].sort().values, lq.sort().values) and not torch.equal(p["random"], lq)
    assert torch.equal(planted_priors(lq, seed=0)["random"], p["random"])


def test_labelled_estimators_recover_a_planted_prior_better_with_more_images():
    z, y, true_lp = planted_logits(32, 8, seed=0)
    planted = planted_priors(true_lp, strengths=(1,), seed=0)
    df = planted_prior_study(z, y, planted, estimators=["exact", "eigenvector"], sizes=(2, 8, 32),
                             seeds=(1, 2), base_log_prior=true_lp)
    assert len(df) == 3 * 2 * 3 * 2  # planted (none + 2) x estimators x sizes x seeds
    assert set(df.planted) == {"none", "true^1", "random"}
    assert {"error", "spearman", "pearson", "images_per_class", "seed", "estimator", "estimates"} <= set(df.columns)
    err = df.groupby(["id", "images_per_class"]).error.mean().unstack()
    for i in ("exact", "eigenvector"):
        assert err.loc[i, 2] > err.loc[i, 8] > err.loc[i, 32]
    assert err.loc["exact", 32] < 0.15
    # the exact estimator moves with a planted prior exactly: its error is that of "none"
    exact = df[df.id == "exact"].pivot_table(index=["images_per_class", "seed"], columns="planted", values="error")
    assert np.allclose(exact["true^1"], exact["none"]) and np.allclose(exact["random"], exact["none"])


def test_label_free_and_eigenvector_estimators_recover_planted_priors_in_their_regime():
    """In-model logits (softmax = Bayes posterior, balanced images): balanced-prediction and
    the eigenvector estimator find the planted prior; the mean probability does not."""
    _, _, true_lp = planted_logits(1, 6, seed=3)
    z, y = in_model_logits(true_lp, 2000, signal=1.5, seed=0)
    df = planted_prior_study(z, y, planted_priors(true_lp, strengths=(0.5, 2), seed=1),
                             estimators=["balanced-prediction", "eigenvector", "mean-probability"],
                             sizes=(2000,), seeds=(1,), base_log_prior=true_lp)
    err = df.groupby(["id", "planted"]).error.max().unstack()
    assert err.loc["balanced-prediction"].max() < 0.03 and err.loc["eigenvector"].max() < 0.08
    assert err.loc["mean-probability"].min() > 0.2
    rho = df.groupby("id").spearman.min()
    assert rho["balanced-prediction"] > 0.95 and rho["eigenvector"] > 0.9


def test_planted_study_keeps_em_apart_and_uses_each_estimators_own_baseline():
    z, y, true_lp = planted_logits(8, 5, seed=2)
    df = planted_prior_study(z, y, {"true": true_lp}, sizes=(8,), seeds=(1,), params={"official": {"n_steps": 20}})
    assert set(df.id) == set(list_estimators(estimates="model prior")) and "em" not in set(df.id)
    # without a known base prior, "none" at the full pool is each estimator's own answer
    assert np.allclose(df[(df.planted == "none") & (df.id != "official")].error, 0, atol=1e-6)
    em = planted_prior_study(z, y, {"true": true_lp}, estimators=["em"], sizes=(8,), seeds=(1,))
    assert (em.estimates == "target label distribution").all()
    with pytest.raises(ValueError, match="reserved"):
        planted_prior_study(z, y, {"none": true_lp})
    with pytest.raises(ValueError, match="at least max\\(sizes\\) = 16"):
        planted_prior_study(z, y, {"true": true_lp}, sizes=(16,))


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


def test_reliability_diagram_has_a_panel_per_model():
    import matplotlib

    matplotlib.use("Agg")
    labels = torch.arange(40) % 2
    logits = torch.nn.functional.one_hot(labels, 2).float() * 3
    summary, bins = calibration_table({"a": logits, "b": -logits}, labels, n_bins=5)
    from gla.report import plot_reliability

    axes = plot_reliability(bins, summary.set_index("model")["ece"])
    assert [ax.get_title().split("\n")[0] for ax in axes] == ["a", "b"]


def test_planted_study_summarises_over_seeds_by_size():
    z, y, true_lp = planted_logits(8, 4, seed=3)
    df = planted_prior_study(z, y, {"true": true_lp}, estimators=["exact"], sizes=(2, 8), seeds=(1, 2),
                             base_log_prior=true_lp)
    s = summarise_seeds(df, by=("planted", "id", "images_per_class"))
    assert len(s) == 2 * 2 and (s.n_seeds == 2).all()
    assert {"error_mean", "error_std", "spearman_mean", "converged_mean"} <= set(s.columns)
    at8 = s[(s.planted == "true") & (s.images_per_class == 8)]
    assert at8.error_std.item() == pytest.approx(0.0)  # all 8 images: the seeds draw the same set
    with pytest.raises(ValueError, match="not in the table"):
        summarise_seeds(df, by=("nope",))
