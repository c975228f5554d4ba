import pytest
import torch

import gla
from gla.temperature import mean_confidence
from tests.conftest import planted_logits


def test_confidence_matches_accuracy():
    logits, labels, _ = planted_logits(100, 10, seed=5)
    for scale in (0.05, 1.0, 40.0):  # forces the bracket to widen both ways
        z = logits * scale
        t = gla.search_temperature(z, labels)
        acc = float((z.argmax(1) == labels).double().mean())
        assert mean_confidence(z.double(), t) == pytest.approx(acc, abs=1e-6)
        assert t > 0


def test_official_tolerance_is_looser():
    logits, labels, _ = planted_logits(100, 10, seed=6)
    t = gla.search_temperature(logits, labels, tol=1e-3)
    acc = float((logits.argmax(1) == labels).double().mean())
    assert abs(mean_confidence(logits.double(), t) - acc) < 1e-3


def test_impossible_accuracy_is_explained():
    labels = torch.arange(4)
    perfect = torch.eye(4) * 5
    with pytest.raises(ValueError, match="1/K"):
        gla.search_temperature(perfect, labels)
    with pytest.raises(ValueError, match="lower < upper"):
        gla.search_temperature(torch.randn(4, 4), labels, lower=2.0, upper=1.0)
