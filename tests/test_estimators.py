"""The estimator contract and registry (gla.estimators), and what each estimator finds."""

import dataclasses
import inspect
import math

import pytest
import torch

from gla import PriorEstimator, official_lagrangian_prior
from gla.estimators import (
    Diagnostics,
    PriorEstimatorBase,
    clone,
    get_estimator_class,
    list_estimators,
    make_estimator,
    register_estimator,
)
from gla.studies import in_model_logits
from tests.conftest import planted_logits

ALL = ["exact", "official", "mean-probability", "balanced-prediction", "eigenvector", "eigenvector-pseudo", "em"]
FAST = {"official": {"n_steps": 20}, "em": {"n_iter": 30}}


def _centred(a):
    return a - a.mean()


def test_registry_lists_ids_in_order_and_filters_by_labels_and_quantity():
    assert list_estimators() == ALL
    assert list_estimators(label_free=True) == ["mean-probability", "balanced-prediction", "eigenvector-pseudo", "em"]
    assert list_estimators(label_free=False) == ["exact", "official", "eigenvector"]
    assert list_estimators(estimates="target label distribution") == ["em"]
    assert "em" not in list_estimators(estimates="model prior")
    with pytest.raises(ValueError, match="expected one of"):
        list_estimators(estimates="prior")
    for i in ALL:
        cls = get_estimator_class(i)
        assert cls.id == i and cls.name and cls.description and isinstance(cls.requires_labels, bool)


def test_make_estimator_passes_params_and_names_unknown_ids():
    est = make_estimator("official", n_steps=7, temperature=2.0)
    assert est.n_steps == 7 and est.get_params()["temperature"] == 2.0 and "n_steps=7" in repr(est)
    with pytest.raises(ValueError, match="'exact'"):
        make_estimator("exactly")
    with pytest.raises(TypeError, match="make_estimator\\('exact'\\)"):
        make_estimator("exact", n_steps=3)


def test_register_estimator_refuses_duplicates_and_incomplete_classes():
    class Again(PriorEstimatorBase):
        id = "exact"
        name = "again"
        description = "duplicate"

    with pytest.raises(ValueError, match="already registered"):
        register_estimator(Again)

    class NoKind(PriorEstimatorBase):
        id = "test-no-kind"
        name = "x"
        description = "x"
        estimates = "something else"

    with pytest.raises(ValueError, match="estimates must be one of"):
        register_estimator(NoKind)
    assert "test-no-kind" not in list_estimators()


def test_a_new_estimator_is_one_class_and_one_registration():
    from gla.estimators import _REGISTRY

    class Uniform(PriorEstimatorBase):
        id = "test-uniform"
        name = "uniform (test)"
        requires_labels = False
        description = "always uniform"

        def _fit(self, z, y, temperature):
            return torch.zeros(z.shape[1], dtype=torch.float64), Diagnostics(0.0, 0.0, 0, True)

    try:
        register_estimator(Uniform)
        assert list_estimators()[-1] == "test-uniform"
        est = make_estimator("test-uniform").fit(torch.randn(5, 4))
        assert torch.allclose(est.log_prior_, torch.full((4,), -math.log(4), dtype=torch.float64))
    finally:
        _REGISTRY.pop("test-uniform", None)


def check_estimator(cls: type, params: dict | None = None, temperature: float = 2.0) -> None:
    """The contract of :class:`gla.base.PriorEstimatorBase` (scikit-learn's conventions), as
    scikit-learn's ``check_estimator`` runs it: parameters, clone, fitted attributes, and a
    fit at a temperature other than 1 (2, so that dividing by it is exact in floating point)."""
    z, y, _ = planted_logits(30, 6, seed=0)
    params = dict(params or {})
    est = cls(**params)
    # __init__ stores its parameters under their names and computes nothing
    names = [n for n in inspect.signature(cls.__init__).parameters if n != "self"]
    assert "temperature" in names and list(est.get_params()) == names
    assert est.get_params(deep=False) == est.get_params() and all(est.get_params()[k] == v for k, v in params.items())
    assert not [k for k in vars(est) if k.endswith("_")] and not hasattr(est, "log_prior_")
    with pytest.raises(AttributeError, match="not fitted"):
        _ = est.objective_
    assert est.set_params(temperature=temperature) is est and est.temperature == temperature
    with pytest.raises(ValueError, match="no parameter 'nonsense'"):
        est.set_params(nonsense=1)
    # fit returns the estimator, learns attributes with a trailing underscore
    assert est.fit(z, y) is est
    assert est.log_prior_.shape == (6,) and est.log_prior_.dtype == torch.float64
    assert abs(float(torch.logsumexp(est.log_prior_, 0))) < 1e-12
    assert torch.allclose(est.prior_.sum(), torch.tensor(1.0, dtype=torch.float64))
    assert est.temperature_ == temperature and est.n_classes_ == 6
    d = est.diagnostics_
    assert isinstance(d, Diagnostics) and set(d.as_dict()) == {"objective", "grad_norm", "n_iter", "converged",
                                                                "raw_sum"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.converged = True
    assert (est.objective_, est.grad_norm_, est.n_iter_, est.converged_) == (d.objective, d.grad_norm, d.n_iter,
                                                                             d.converged) or math.isnan(d.objective)
    assert torch.allclose(est.debias(z), z.double() / temperature - est.log_prior_)
    # clone: a new unfitted estimator with the same parameters
    twin = clone(est)
    assert type(twin) is cls and twin.get_params() == est.get_params() and not hasattr(twin, "log_prior_")
    # the temperature divides the logits: fitting at T is fitting z / T at T = 1 ...
    at_one = clone(est).set_params(temperature=1.0)
    assert torch.allclose(est.log_prior_, at_one.fit(z / temperature, y).log_prior_, rtol=0, atol=1e-9), \
        f"{cls.id}: a fit at temperature {temperature} is not a fit of logits / {temperature}"
    # ... and is not fitting z itself (an estimator that ignores it fails here)
    ignored = clone(est).set_params(temperature=1.0).fit(z, y)
    assert float((est.log_prior_ - ignored.log_prior_).abs().max()) > 1e-6, f"{cls.id} ignores its temperature"
    if not est.requires_labels:  # label-free estimators ignore labels, as sklearn's do y
        assert torch.equal(clone(est).fit(z).log_prior_, est.log_prior_)


@pytest.mark.parametrize("id", list_estimators())
def test_every_registered_estimator_keeps_the_contract(id):
    check_estimator(get_estimator_class(id), FAST.get(id, {}))


def test_the_contract_check_fails_an_estimator_that_ignores_its_temperature():
    from gla.estimators import MeanProbabilityEstimator
    from gla.prior import mean_probability_prior

    class Careless(MeanProbabilityEstimator):
        def _fit(self, z, y, temperature):
            return mean_probability_prior(z), Diagnostics(float("nan"), 0.0, 0, True)

    with pytest.raises(AssertionError, match="is not a fit of logits / 2.0"):
        check_estimator(Careless)


def test_parameters_must_be_stored_unchanged_under_their_names():
    from gla.estimators import MeanProbabilityEstimator

    class Renamed(MeanProbabilityEstimator):
        def __init__(self, temperature: float = 1.0, smoothing: float = 0.0):
            self.temperature = temperature
            self.smooth = smoothing

    class Copying(MeanProbabilityEstimator):
        def __init__(self, temperature: float = 1.0, classes: tuple = (1, 2)):
            self.temperature = temperature
            self.classes = list(classes)  # a copy of the argument, not the argument

    with pytest.raises(AttributeError):
        Renamed().get_params()
    with pytest.raises(RuntimeError, match="does not store the parameter 'classes'"):
        clone(Copying())


def test_prior_estimator_is_the_registered_exact_estimator_with_one_set_of_diagnostics(planted):
    from gla.estimators import ExactEstimator

    assert get_estimator_class("exact") is PriorEstimator is ExactEstimator
    z, y, _ = planted
    est = make_estimator("exact", temperature="search").fit(z, y)
    assert isinstance(est, PriorEstimatorBase) and est.temperature_ != 1.0
    assert est.grad_norm_ == est.diagnostics_.grad_norm <= 1e-9 and est.converged_ and est.n_matvec_ > 0
    assert "objective_" not in vars(est) and "grad_norm_" not in vars(est)  # stored once, in diagnostics_
    assert repr(PriorEstimator(tol=1e-6)) == "PriorEstimator(temperature=1.0, balance=True, tol=1e-06, max_iter=100)"


def test_inputs_are_checked_with_clear_messages():
    z, y, _ = planted_logits(5, 4, seed=0)
    with pytest.raises(ValueError, match="needs the labels"):
        make_estimator("exact").fit(z)
    with pytest.raises(ValueError, match="every class needs at least one example"):
        make_estimator("eigenvector").fit(z[y != 2], y[y != 2])
    with pytest.raises(ValueError, match="'search' needs labels"):
        make_estimator("balanced-prediction", temperature="search").fit(z)
    with pytest.raises(ValueError, match="positive number"):
        make_estimator("eigenvector", temperature=-1.0).fit(z, y)
    with pytest.raises(ValueError, match="2-D"):
        make_estimator("mean-probability").fit(z[0])


def test_exact_and_official_wrap_the_prior_module():
    z, y, _ = planted_logits(40, 5, seed=4)
    exact = make_estimator("exact", temperature="search").fit(z, y)
    ref = PriorEstimator(temperature="search").fit(z, y)
    assert torch.allclose(exact.log_prior_, ref.log_prior_) and exact.temperature_ == ref.temperature_
    assert exact.diagnostics_.converged and exact.diagnostics_.grad_norm <= 1e-9

    off = make_estimator("official", n_steps=30).fit(z, y)
    raw = official_lagrangian_prior(z, y, n_steps=30)
    assert torch.allclose(off.log_prior_, raw - torch.logsumexp(raw, 0))
    assert off.diagnostics_.raw_sum == pytest.approx(float(raw.exp().sum()))
    assert off.diagnostics_.n_iter == 30 and not off.diagnostics_.converged


def test_balanced_prediction_makes_the_mean_debiased_prediction_uniform():
    z, y, true_lp = planted_logits(200, 7, seed=5)
    est = make_estimator("balanced-prediction").fit(z)
    mean_pred = torch.softmax(z.double() - est.log_prior_, 1).mean(0)
    assert torch.allclose(mean_pred, torch.full((7,), 1 / 7, dtype=torch.float64), atol=1e-9)
    assert est.diagnostics_.converged and est.diagnostics_.grad_norm <= 1e-9
    # on a balanced labelled set the exact estimator's moment condition is the same one
    assert torch.allclose(est.log_prior_, make_estimator("exact").fit(z, y).log_prior_, atol=1e-8)
    # on unbalanced data it is not: it absorbs the class shares, the exact one reweights
    keep = (y != 0) | (torch.arange(len(y)) % 4 == 0)
    unbalanced = make_estimator("balanced-prediction").fit(z[keep]).log_prior_
    exact = make_estimator("exact").fit(z[keep], y[keep]).log_prior_
    exact_err = (_centred(exact) - _centred(true_lp)).abs()
    absorbed = (_centred(unbalanced) - _centred(true_lp)).abs()
    assert float(exact_err.mean()) < 0.1
    assert int(absorbed.argmax()) == 0 and float(absorbed[0]) > max(0.25, 3 * float(exact_err[0]))


def test_eigenvector_is_the_stationary_vector_of_class_conditional_mean_predictions():
    z, y, true_lp = planted_logits(50, 6, seed=6)
    est = make_estimator("eigenvector").fit(z, y)
    p = torch.softmax(z.double(), 1)
    C = torch.stack([p[y == j].mean(0) for j in range(6)])
    assert torch.allclose(est.confusion_, C)
    assert torch.allclose(est.prior_ @ C, est.prior_, atol=1e-12) and est.diagnostics_.converged


def test_eigenvector_recovers_the_prior_under_the_model_whatever_the_class_shares():
    _, _, true_lp = planted_logits(1, 5, seed=7)
    z, y = in_model_logits(true_lp, 4000, signal=1.5, seed=0)
    est = make_estimator("eigenvector").fit(z, y)
    assert float((_centred(est.log_prior_) - _centred(true_lp)).abs().max()) < 0.05
    keep = (y >= 2) | (torch.arange(len(y)) % 5 == 0)  # classes 0 and 1 keep a fifth of their images
    sub = make_estimator("eigenvector").fit(z[keep], y[keep])
    assert float((_centred(sub.log_prior_) - _centred(true_lp)).abs().max()) < 0.08


def test_pseudo_eigenvector_uses_argmax_groups_and_survives_unpredicted_classes():
    z, y, _ = planted_logits(40, 5, seed=8)
    pseudo = make_estimator("eigenvector-pseudo", max_rounds=1).fit(z)
    with_argmax = make_estimator("eigenvector").fit(z, z.argmax(1))
    assert torch.allclose(pseudo.log_prior_, with_argmax.log_prior_) and pseudo.n_unpredicted_classes_ == 0
    assert pseudo.diagnostics_.n_iter == 1
    z2 = z.clone()
    z2[:, 3] -= 20.0  # nobody is predicted as class 3
    est = make_estimator("eigenvector-pseudo", max_rounds=1).fit(z2)
    assert est.n_unpredicted_classes_ == 1 and torch.isfinite(est.log_prior_).all()
    assert int(est.log_prior_.argmin()) == 3
    # repeated, it finds the same fixed point as without the shift, shifted
    full = make_estimator("eigenvector-pseudo").fit(z).log_prior_
    shifted = make_estimator("eigenvector-pseudo").fit(z2)
    assert shifted.diagnostics_.converged
    expected = full - 20.0 * torch.nn.functional.one_hot(torch.tensor(3), 5)
    assert torch.allclose(_centred(shifted.log_prior_), _centred(expected), atol=1e-3)


def test_repeated_pseudo_eigenvector_reaches_its_fixed_point_near_the_prior():
    """Under the model, one pass is biased towards the classes the model over-predicts;
    repeating it on the debiased logits (as Frolic does) converges close to q."""
    _, _, true_lp = planted_logits(1, 6, seed=10)
    z, y = in_model_logits(true_lp, 1000, signal=1.5, seed=3)
    est = make_estimator("eigenvector-pseudo").fit(z)
    one = make_estimator("eigenvector-pseudo", max_rounds=1).fit(z)
    err = float((_centred(est.log_prior_) - _centred(true_lp)).abs().mean())
    assert est.diagnostics_.converged and est.diagnostics_.n_iter > 1 and est.diagnostics_.grad_norm < 1e-4
    assert err < 0.08 and err < float((_centred(one.log_prior_) - _centred(true_lp)).abs().mean()) / 3
    # at the fixed point the debiased model's own pseudo-label eigenvector is uniform
    again = make_estimator("eigenvector-pseudo", max_rounds=1).fit(z.double() - est.log_prior_)
    assert float((again.log_prior_ - again.log_prior_.mean()).abs().max()) < 1e-4
    with pytest.raises(ValueError, match="max_rounds"):
        make_estimator("eigenvector-pseudo", max_rounds=0).fit(z)


def test_em_estimates_the_target_distribution_and_collapses_on_a_biased_model():
    est = make_estimator("em")
    assert est.estimates == "target label distribution" and not est.requires_labels
    z, y, true_lp = planted_logits(100, 6, seed=0)
    est.fit(z)
    # the bias feeds back into itself: classes the model under-predicts lose their mass,
    # and -log pi becomes a huge logit
    assert float(est.log_prior_.min()) < -20
    assert int(est.log_prior_.argmin()) == int(true_lp.argmin())
