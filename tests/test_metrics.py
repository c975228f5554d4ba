import math

import pytest
import torch

import gla


def logits_for(preds, k):
    z = torch.zeros(len(preds), k)
    z[torch.arange(len(preds)), torch.as_tensor(preds)] = 1.0
    return z


def test_topk_and_per_class():
    z = torch.tensor([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0], [1.0, 2.0, 3.0], [3.0, 1.0, 2.0]])
    y = torch.tensor([0, 2, 0, 1])
    assert gla.topk_accuracy(z, y) == 0.25
    assert gla.topk_accuracy(z, y, k=(1, 2)) == {1: 0.25, 2: 0.5}
    pc = gla.per_class_accuracy(z, y)
    assert pc.tolist() == [0.5, 0.0, 0.0]
    assert gla.mean_per_class_accuracy(z, y) == pytest.approx(0.5 / 3)
    with pytest.raises(ValueError, match="1 <= k <= 3"):
        gla.topk_accuracy(z, y, k=4)


def test_per_class_nan_for_absent_class():
    pc = gla.per_class_accuracy(logits_for([0, 1], 3), torch.tensor([0, 1]))
    assert pc[:2].tolist() == [1.0, 1.0] and math.isnan(pc[2])
    assert gla.mean_per_class_accuracy(logits_for([0, 1], 3), torch.tensor([0, 1])) == 1.0


def test_prior_groups_sizes_like_the_paper():
    g = gla.prior_groups(torch.linspace(0, -5, 1000))
    assert torch.bincount(g).tolist() == [333, 333, 334]
    assert g[:333].eq(0).all() and g[-334:].eq(2).all()
    g10 = gla.prior_groups(torch.tensor([-3.0, -1, -2, -4, -0.5, -6, -5, -7, -8, -9]))
    # Sorted descending: classes 4, 1, 2 | 0, 3, 6 | 5, 7, 8, 9
    assert g10.tolist() == [1, 0, 0, 1, 0, 2, 1, 2, 2, 2]
    with pytest.raises(ValueError, match="adding up to 10"):
        gla.prior_groups(torch.zeros(10), sizes=(3, 3, 3))


def test_accuracy_by_prior_group_by_hand():
    # 6 classes, prior descending by index: head {0,1}, medium {2,3}, tail {4,5}.
    lp = torch.log(torch.tensor([0.3, 0.25, 0.2, 0.12, 0.08, 0.05]))
    y = torch.tensor([0, 0, 1, 2, 3, 3, 4, 5, 5, 5])
    pred = [0, 1, 1, 2, 0, 0, 4, 5, 0, 0]
    res = gla.accuracy_by_prior_group(logits_for(pred, 6), y, lp)
    # head images: 0,0,1 -> correct 1,0,1 -> 2/3; medium: 2,3,3 -> 1,0,0 -> 1/3; tail: 4,5,5,5 -> 1,1,0,0
    assert res == pytest.approx({"head": 2 / 3, "medium": 1 / 3, "tail": 0.5, "all": 0.5})


def test_count_groups_and_accuracy_by_hand():
    counts = torch.tensor([500, 101, 100, 20, 19, 1])
    assert gla.count_groups(counts).tolist() == [0, 0, 1, 1, 2, 2]
    y = torch.tensor([0, 0, 1, 2, 3, 4, 5, 5])
    pred = [0, 1, 1, 2, 0, 4, 0, 5]
    res = gla.accuracy_by_count_group(logits_for(pred, 6), y, counts)
    # per class: 0: .5, 1: 1, 2: 1, 3: 0, 4: 1, 5: .5
    assert res == pytest.approx({"many": 0.75, "medium": 0.5, "few": 0.75, "all": 4 / 6})
    with pytest.raises(ValueError, match="6 counts"):
        gla.accuracy_by_count_group(logits_for(pred, 6), y, counts[:5])


def test_ece_by_hand():
    # Two-class logits with known confidences.
    conf = torch.tensor([0.95, 0.95, 0.65, 0.65])
    z = torch.stack([torch.log(conf), torch.log(1 - conf)], 1)
    y = torch.tensor([0, 1, 0, 0])
    ece, bins = gla.expected_calibration_error(z, y, n_bins=10)
    # bin [0.9, 1): acc 0.5 vs conf .95; bin [0.6, 0.7): acc 1 vs conf .65
    assert ece == pytest.approx(0.5 * 0.45 + 0.5 * 0.35)
    assert bins["count"].sum() == 4 and len(bins) == 10
    assert bins.loc[9, "accuracy"] == 0.5 and bins.loc[6, "confidence"] == pytest.approx(0.65)
    assert math.isnan(bins.loc[0, "accuracy"])


def test_empty_groups_are_nan_unless_a_value_is_asked_for():
    # Prior groups: no test image of a tail class (classes 4, 5).
    lp = torch.log(torch.tensor([0.3, 0.25, 0.2, 0.12, 0.08, 0.05]))
    y = torch.tensor([0, 1, 2, 3])
    z = logits_for([0, 0, 2, 3], 6)
    res = gla.accuracy_by_prior_group(z, y, lp)
    assert math.isnan(res["tail"]) and res["head"] == 0.5 and res["medium"] == 1.0 and res["all"] == 0.75
    assert gla.accuracy_by_prior_group(z, y, lp, empty=0.0)["tail"] == 0.0
    # Count groups: no class with fewer than 20 training images.
    counts = torch.tensor([500, 150, 50, 20])
    res = gla.accuracy_by_count_group(logits_for([0, 0, 2, 2], 4), torch.tensor([0, 1, 2, 3]), counts)
    assert math.isnan(res["few"]) and res["many"] == 0.5 and res["medium"] == 0.5
    assert gla.accuracy_by_count_group(logits_for([0, 0, 2, 2], 4), torch.tensor([0, 1, 2, 3]), counts,
                                       empty=0.0)["few"] == 0.0
