import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import gla
from gla.prior import class_weights
from tests.conftest import planted_logits


def moment_residual(logits, labels, log_prior, temperature=1.0, balance=True):
    k = logits.shape[1]
    w = class_weights(labels, k, balance)
    p = torch.softmax(logits.double() / temperature - log_prior, dim=1)
    pi = torch.zeros(k, dtype=torch.float64).index_add_(0, labels, w)
    return float((pi - (w[:, None] * p).sum(0)).abs().max())


def test_recovers_planted_bias():
    logits, labels, true_lp = planted_logits(2000, 8, seed=1)
    est = gla.estimate_log_prior(logits, labels)
    # Noise around a planted additive bias: the optimum is the planted prior up to sampling error.
    assert torch.allclose(est, true_lp, atol=0.08)
    assert abs(float(torch.logsumexp(est, 0))) < 1e-12


def test_optimality_moment_condition_and_diagnostics(planted):
    logits, labels, _ = planted
    fit = gla.PriorEstimator().fit(logits, labels)
    assert fit.converged_
    assert fit.grad_norm_ <= 1e-9
    assert moment_residual(logits, labels, fit.log_prior_) < 1e-6
    assert fit.objective_ == pytest.approx(gla.prior_objective(logits, labels, fit.log_prior_), abs=1e-10)
    assert fit.n_iter_ >= 1 and fit.temperature_ == 1.0


def test_is_a_minimum_against_perturbations(planted):
    logits, labels, _ = planted
    lp = gla.estimate_log_prior(logits, labels)
    f0 = gla.prior_objective(logits, labels, lp)
    g = torch.Generator().manual_seed(3)
    for _ in range(20):
        d = torch.randn(lp.shape[0], generator=g, dtype=torch.float64) * 1e-2
        assert gla.prior_objective(logits, labels, lp + d) >= f0 - 1e-12


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), shift=st.floats(-50, 50), k=st.integers(2, 12))
def test_invariant_to_row_constants(seed, shift, k):
    logits, labels, _ = planted_logits(20, k, seed=seed)
    g = torch.Generator().manual_seed(seed)
    row_shift = torch.randn(logits.shape[0], 1, generator=g, dtype=torch.float64) * 10 + shift
    a = gla.estimate_log_prior(logits, labels)
    b = gla.estimate_log_prior(logits + row_shift, labels)
    assert torch.allclose(a, b, atol=1e-7)
    assert moment_residual(logits, labels, a) < 1e-6


def test_balance_reweights_unbalanced_set():
    logits, labels, _ = planted_logits(300, 5, seed=4)
    # Drop most examples of class 0: an unbalanced estimation set.
    keep = (labels != 0) | (torch.arange(labels.shape[0]) % 10 == 0)
    lz, ly = logits[keep], labels[keep]
    balanced = gla.estimate_log_prior(lz, ly, balance=True)
    unweighted = gla.estimate_log_prior(lz, ly, balance=False)
    full = gla.estimate_log_prior(logits, labels)
    # Reweighting brings the estimate close to the full balanced set's; not reweighting
    # confounds the estimation set's own label shares with the model's prior.
    assert (balanced - full).abs().max() < 0.3
    assert (unweighted - full).abs().max() > 1.0
    assert moment_residual(lz, ly, unweighted, balance=False) < 1e-6


def test_temperature_search_option(planted):
    logits, labels, _ = planted
    fit = gla.PriorEstimator(temperature="search").fit(logits * 3, labels)
    t = gla.search_temperature(logits * 3, labels)
    assert fit.temperature_ == pytest.approx(t)
    assert moment_residual(logits * 3, labels, fit.log_prior_, temperature=t) < 1e-6
    # debias() uses the same temperature.
    assert torch.allclose(fit.debias(logits * 3), logits * 3 / t - fit.log_prior_)


@pytest.mark.parametrize("bad, match", [
    (lambda z, y: (z.clone().index_put_((torch.tensor([0]), torch.tensor([0])), torch.tensor(float("nan"), dtype=z.dtype)), y), "finite"),
    (lambda z, y: (z.clone().index_put_((torch.tensor([1]), torch.tensor([1])), torch.tensor(float("inf"), dtype=z.dtype)), y), "finite"),
    (lambda z, y: (z[0], y), "2-D"),
    (lambda z, y: (z[None], y), "2-D"),
    (lambda z, y: (z, y[:-1]), "expected 2000 labels"),
    (lambda z, y: (z, y + 5), r"class indices in \[0, 9\]"),
    (lambda z, y: (z, -y - 1), r"class indices in \[0, 9\]"),
    (lambda z, y: (z[y != 3], y[y != 3]), "every class needs at least one example"),
])
def test_bad_input_is_named(planted, bad, match):
    logits, labels, _ = planted
    z, y = bad(logits, labels)
    with pytest.raises(ValueError, match=match):
        gla.estimate_log_prior(z, y)


def test_bad_temperature(planted):
    logits, labels, _ = planted
    with pytest.raises(ValueError, match="temperature"):
        gla.PriorEstimator(temperature="auto").fit(logits, labels)
    with pytest.raises(ValueError, match="temperature"):
        gla.PriorEstimator(temperature=-1.0).fit(logits, labels)


def test_accepts_numpy_and_float32(planted):
    logits, labels, _ = planted
    a = gla.estimate_log_prior(logits.float().numpy(), labels.numpy())
    b = gla.estimate_log_prior(logits.float(), labels)
    assert isinstance(a, torch.Tensor) and torch.allclose(a, b)


@pytest.fixture
def one_thread():
    """The official algorithm takes 1,000 small steps: with several threads on a busy
    machine, thread synchronisation dominates (a minute instead of a few seconds)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.usefixtures("one_thread")
def test_official_algorithm_moves_towards_but_does_not_reach_the_optimum():
    logits, labels, _ = planted_logits(100, 10, seed=2)
    exact = gla.estimate_log_prior(logits, labels)
    f = lambda lp: gla.prior_objective(logits, labels, lp)  # noqa: E731
    uniform = torch.full_like(exact, -math.log(10))
    for dtype in (torch.float32, torch.float64):
        official = gla.official_lagrangian_prior(logits, labels, dtype=dtype)
        assert official.dtype == torch.float64
        assert f(exact) <= f(official) - 1e-6 < f(uniform)
        # Its q is not normalised.
        assert abs(float(official.exp().sum()) - 1.0) > 1e-4


@pytest.mark.usefixtures("one_thread")
def test_official_algorithm_settings():
    logits, labels, _ = planted_logits(50, 6, seed=3)
    # No step: the uniform start. The default lr is 1e-5 * (N / K) / 50.
    assert torch.allclose(gla.official_lagrangian_prior(logits, labels, n_steps=0),
                          torch.full((6,), -math.log(6), dtype=torch.float64))
    default = gla.official_lagrangian_prior(logits, labels, n_steps=20, dtype=torch.float64)
    explicit = gla.official_lagrangian_prior(logits, labels, n_steps=20, dtype=torch.float64,
                                             lr=1e-5 * (300 / 6) / 50)
    assert torch.equal(default, explicit)
    # temperature divides the logits first.
    a = gla.official_lagrangian_prior(logits, labels, n_steps=20, temperature=2.0, dtype=torch.float64)
    b = gla.official_lagrangian_prior(logits / 2.0, labels, n_steps=20, dtype=torch.float64)
    assert torch.allclose(a, b, rtol=0, atol=1e-14) and not torch.allclose(a, default)


@pytest.mark.parametrize("kwargs, match", [
    ({"dtype": torch.float16}, "dtype"),
    ({"temperature": 0.0}, "temperature"),
    ({"lr": -1.0}, "lr"),
    ({"n_steps": -1}, "n_steps"),
])
def test_official_algorithm_bad_arguments(planted, kwargs, match):
    logits, labels, _ = planted
    with pytest.raises(ValueError, match=match):
        gla.official_lagrangian_prior(logits, labels, **kwargs)


def test_mean_probability_and_em_priors(planted):
    logits, labels, _ = planted
    mp = gla.mean_probability_prior(logits)
    assert torch.allclose(mp.exp(), torch.softmax(logits, 1).mean(0))
    # On a balanced set the paper's optimum makes the mean debiased prediction uniform,
    # i.e. it is the label-free solution of mean softmax(z - log q) = 1/K.
    lp = gla.estimate_log_prior(logits, labels)
    assert np.allclose(torch.softmax(logits - lp, 1).mean(0).numpy(), 0.1, atol=1e-8)


def test_em_recovers_the_prior_of_unlabelled_data_for_calibrated_posteriors():
    # Well-specified model: Gaussian classes, logits = exact log-likelihoods, so
    # softmax(logits) is the posterior under a uniform training prior.
    g = torch.Generator().manual_seed(0)
    r = torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=torch.float64)
    mu = torch.tensor([[0.0, 0.0], [2.5, 0.0], [0.0, 2.5], [2.5, 2.5]], dtype=torch.float64)
    y = torch.multinomial(r, 20000, replacement=True, generator=g)
    x = mu[y] + torch.randn(20000, 2, generator=g, dtype=torch.float64)
    logits = -0.5 * torch.cdist(x, mu) ** 2
    em = gla.em_prior(logits, n_iter=500)
    assert torch.allclose(em.exp(), r, atol=0.02)
    # It is a fixed point: pi = mean softmax(z + log pi).
    assert torch.allclose(torch.softmax(logits + em, 1).mean(0).log(), em, atol=1e-6)
