import pandas as pd
import pytest

from gla import report


def rows():
    return pd.DataFrame([
        {"dataset": d, "method": m, "shots": 4, "seed": s, "top1": v}
        for d, base in [("a", 0.5), ("b", 0.7)] for s in (1, 2)
        for m, v in [("GLA", base + 0.01 * s), ("ensemble", base + (0.03 if d == "a" else -0.01))]
    ])


def test_average_over_datasets():
    avg = report.average_over_datasets(rows())
    got = avg.set_index(["method", "seed"]).top1
    assert got[("GLA", 1)] == pytest.approx((0.51 + 0.71) / 2)
    assert set(avg.dataset) == {"average"}


def test_gain_over_by_dataset():
    g = report.gain_over(rows(), "GLA", "ensemble")
    assert list(g.index) == ["a", "b"]  # ascending: a is a negative gain
    assert g["a"] == pytest.approx((0.015 - 0.03) * 100) and g["b"] == pytest.approx((0.015 + 0.01) * 100)


def test_published_numbers_carry_sources_and_match_quickgelu_names():
    pub = report.published(backbone="ViT-B-16-quickgelu", pretrained="openai", dataset="imagenet")
    assert set(pub.method) == {"zero-shot", "fine-tuned"} and pub.source.str.len().gt(0).all()
    assert report.published(backbone="gla-world-tiny").empty
