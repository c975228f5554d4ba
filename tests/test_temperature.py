import math

import pytest
import torch

import gla
from gla.temperature import TemperatureFit, fit_temperature, mean_confidence, search_temperature_official
from tests.conftest import planted_logits


def accuracy(z, y):
    return float((z.argmax(1) == y).double().mean())


def test_confidence_matches_accuracy():
    logits, labels, _ = planted_logits(100, 10, seed=5)
    for scale, side in ((0.01, "below"), (1.0, None), (40.0, "above")):  # widen both ways
        z = logits * scale
        t = gla.search_temperature(z, labels)
        assert mean_confidence(z.double(), t) == pytest.approx(accuracy(z, labels), abs=1e-6)
        if side == "below":
            assert t < 0.1
        elif side == "above":
            assert t > 10


def test_official_tolerance_is_looser():
    logits, labels, _ = planted_logits(100, 10, seed=6)
    t = gla.search_temperature(logits, labels, tol=1e-3)
    acc = accuracy(logits, labels)
    assert abs(mean_confidence(logits.double(), t) - acc) < 1e-3
    assert abs(mean_confidence(logits.double(), gla.search_temperature(logits, labels)) - acc) < 1e-6


def test_impossible_accuracy_is_explained():
    labels = torch.arange(4)
    perfect = torch.eye(4) * 5
    with pytest.raises(ValueError, match="1/K"):
        gla.search_temperature(perfect, labels)
    with pytest.raises(ValueError, match="lower < upper"):
        gla.search_temperature(torch.randn(4, 4), labels, lower=2.0, upper=1.0)


@pytest.mark.parametrize("scale", [0.01, 1.0, 40.0])
@pytest.mark.parametrize("thres", [0.1, 1.0])
def test_official_search_meets_its_threshold(scale, thres):
    logits, labels, _ = planted_logits(100, 10, seed=5)
    z = (logits * scale).float()
    fit = search_temperature_official(z, labels, thres=thres)
    assert isinstance(fit, TemperatureFit) and fit.converged and fit.reason == ""
    assert fit.accuracy == pytest.approx(accuracy(z, labels), abs=1e-6)
    assert fit.gap_pp <= thres
    assert fit.confidence == pytest.approx(mean_confidence(z, fit.temperature))
    assert fit.n_calls == len(fit.trials) and fit.trials[-1] == fit.temperature
    # Only the last trial is within the threshold: the search returns the first one.
    for t in fit.trials[:-1]:
        assert 100 * abs(mean_confidence(z, t) - fit.accuracy) > thres


def test_official_search_is_regula_falsi_not_bisection():
    logits, labels, _ = planted_logits(100, 10, seed=5)
    z = logits.float()
    fit = search_temperature_official(z, labels)
    acc = 100 * fit.accuracy
    g_lo = abs(100 * mean_confidence(z, 0.1) - acc)
    g_hi = abs(100 * mean_confidence(z, 10.0) - acc)
    a = g_lo / (g_lo + g_hi)
    assert fit.trials[0] == pytest.approx(0.1 * (1 - a) + 10.0 * a, rel=1e-12)
    assert fit.trials[0] != pytest.approx(math.sqrt(0.1 * 10.0)) and fit.trials[0] != pytest.approx(5.05)


def test_official_search_precision_option():
    logits, labels, _ = planted_logits(60, 5, seed=3)
    f32 = search_temperature_official(logits, labels, thres=0.1)
    f64 = search_temperature_official(logits, labels, thres=0.1, dtype=torch.float64)
    assert f32.temperature == pytest.approx(f64.temperature, rel=1e-4)
    with pytest.raises(ValueError, match="dtype"):
        search_temperature_official(logits, labels, dtype=torch.float16)


@pytest.mark.parametrize("kwargs, match", [
    ({"thres": 0.0}, "thres"),
    ({"thres": -1.0}, "thres"),
    ({"lower": 5.0, "upper": 1.0}, "lower < upper"),
    ({"max_calls": 0}, "max_calls"),
])
def test_official_search_bad_arguments(kwargs, match):
    logits, labels, _ = planted_logits(10, 4, seed=1)
    with pytest.raises(ValueError, match=match):
        search_temperature_official(logits, labels, **kwargs)


def test_fit_temperature_methods_agree_with_their_functions():
    logits, labels, _ = planted_logits(100, 10, seed=7)
    z = logits * 4
    exact = fit_temperature(z, labels, method="exact")
    assert exact.method == "exact" and exact.converged
    assert exact.temperature == gla.search_temperature(z, labels)
    assert exact.n_calls == len(exact.trials) and exact.trials[-1] == pytest.approx(exact.temperature)
    assert abs(exact.confidence - exact.accuracy) < 1e-6
    official = fit_temperature(z, labels, thres=1.0)
    assert official == search_temperature_official(z, labels, thres=1.0)
    assert official.temperature != exact.temperature and official.gap_pp <= 1.0
    fixed = fit_temperature(z, labels, method="fixed", temperature=2.5)
    assert (fixed.temperature, fixed.converged, fixed.n_calls, fixed.trials) == (2.5, True, 0, ())
    assert fixed.confidence == pytest.approx(mean_confidence(z.double(), 2.5))
    assert fit_temperature(z, labels, method="fixed", fallback=0.7).temperature == 0.7


@pytest.mark.parametrize("method", ["official", "exact"])
def test_fit_temperature_never_raises_for_an_impossible_target(method):
    labels = torch.arange(4).repeat(3)
    perfect = torch.eye(4)[labels] * 5  # accuracy 1
    chance = torch.zeros(12, 4)  # argmax 0 everywhere: accuracy 1/4 = chance
    for z, word in ((perfect, "perfect"), (chance, "chance")):
        fit = fit_temperature(z, labels, method=method, fallback=1.3)
        assert not fit.converged and fit.temperature == 1.3 and fit.method == method
        assert word in fit.reason and "fallback" in fit.reason
        assert fit.n_calls == 0 and fit.trials == ()
    assert fit_temperature(chance, labels).accuracy == 0.25


@pytest.mark.parametrize("kwargs, match", [
    ({"method": "bisection"}, "method"),
    ({"fallback": 0.0}, "fallback"),
    ({"method": "fixed", "temperature": -1.0}, "temperature"),
])
def test_fit_temperature_bad_arguments(kwargs, match):
    logits, labels, _ = planted_logits(10, 4, seed=1)
    with pytest.raises(ValueError, match=match):
        fit_temperature(logits, labels, **kwargs)
    with pytest.raises(ValueError, match="labels"):
        fit_temperature(logits, labels[:-1])
