import math

import pytest
import torch

import gla
from tests.conftest import planted_logits


def test_debias_and_logit_adjust_formulas():
    z = torch.randn(5, 4, dtype=torch.float64)
    lq = torch.log(torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=torch.float64))
    assert torch.allclose(gla.debias(z, lq, temperature=2.0), z / 2 - lq)
    lp_s = gla.log_prior_from_counts([40, 30, 20, 10])
    assert torch.allclose(lp_s, lq)
    lp_t = torch.full((4,), -math.log(4), dtype=torch.float64)
    assert torch.allclose(gla.logit_adjust(z, lp_s, log_target_prior=lp_t, tau=0.5), z - 0.5 * lp_s + lp_t)


def test_gla_reduces_to_la_when_zero_shot_term_is_constant():
    torch.manual_seed(0)
    ft = torch.randn(50, 6, dtype=torch.float64)
    lp_s = gla.log_prior_from_counts(torch.arange(1, 7) * 10)
    # A zero-shot model that is constant per row, with its prior removed exactly.
    lq = torch.log(torch.softmax(torch.randn(6, dtype=torch.float64), 0))
    zs = torch.randn(50, 1, dtype=torch.float64) + lq  # f_zs - log q is constant per row
    out = gla.gla_logits(zs, ft, lq, log_source_prior=lp_s)
    la = gla.logit_adjust(ft, lp_s)
    diff = out - la
    assert torch.allclose(diff, diff[:, :1].expand_as(diff))
    assert torch.equal(out.argmax(1), la.argmax(1))


def test_gla_formula_with_temperatures_and_target_prior():
    zs, ft = torch.randn(3, 5), torch.randn(3, 5)
    lq = gla.log_prior_from_counts([1, 2, 3, 4, 5])
    lps = gla.log_prior_from_counts([5, 4, 3, 2, 1])
    lpt = gla.log_prior_from_counts([1, 1, 2, 2, 3])
    got = gla.gla_logits(zs, ft, lq, log_source_prior=lps, log_target_prior=lpt, zs_temperature=2, ft_temperature=0.5)
    want = zs.double() / 2 + ft.double() / 0.5 - lq - lps + lpt
    assert torch.allclose(got, want)


def test_gla_helps_on_planted_bias():
    # Zero-shot logits with a planted prior; a "fine-tuned" model trained on a long-tailed
    # source prior. Removing both priors beats the plain ensemble on a balanced test set.
    zs, y, true_lp = planted_logits(300, 10, seed=7, bias_scale=2.0, signal=1.5)
    lps = gla.log_prior_from_counts(torch.logspace(2, 0, 10))
    g = torch.Generator().manual_seed(8)
    ft = torch.randn(zs.shape, generator=g, dtype=torch.float64) + lps
    ft[torch.arange(len(y)), y] += 1.5
    half = len(y) // 2
    idx = torch.randperm(len(y), generator=g)
    est, test = idx[:half], idx[half:]
    lq = gla.estimate_log_prior(zs[est], y[est])
    acc = lambda z: gla.topk_accuracy(z, y[test])  # noqa: E731
    assert acc(gla.gla_logits(zs[test], ft[test], lq, log_source_prior=lps)) > acc(gla.ensemble_logits(zs[test], ft[test])) + 0.05


def test_ensemble():
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    assert torch.allclose(gla.ensemble_logits(a, b, alpha=0.25), 0.75 * a.double() + 0.25 * b.double())


@pytest.mark.parametrize("call, match", [
    (lambda: gla.debias(torch.randn(3, 4), torch.zeros(5)), "4 log-probabilities"),
    (lambda: gla.debias(torch.randn(3, 4), torch.tensor([0.0, -float("inf"), 0.0, 0.0])), "finite"),
    (lambda: gla.log_prior_from_counts([3, 0, 1]), "strictly positive"),
    (lambda: gla.log_prior_from_counts([3, -1, 1]), "strictly positive"),
    (lambda: gla.logit_adjust(torch.randn(2, 3), torch.zeros(2)), "3 log-probabilities"),
    (lambda: gla.gla_logits(torch.randn(2, 3), torch.randn(3, 3), torch.zeros(3)), "same shape"),
    (lambda: gla.ensemble_logits(torch.randn(2, 3), torch.randn(2, 3), alpha=1.5), r"\[0, 1\]"),
    (lambda: gla.debias(torch.randn(2, 3), torch.zeros(3), temperature=0), "positive"),
])
def test_bad_priors_and_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_wise_ft_interpolation_and_sweep():
    torch.manual_seed(0)
    m0, m1 = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2)), None
    m1 = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    m1[1].num_batches_tracked += 7
    sd0, sd1 = m0.state_dict(), m1.state_dict()
    mid = gla.interpolate_state_dicts(sd0, sd1, 0.5)
    assert torch.allclose(mid["0.weight"], (sd0["0.weight"] + sd1["0.weight"]) / 2)
    assert int(mid["1.num_batches_tracked"]) == 7
    assert torch.equal(gla.interpolate_state_dicts(sd0, sd1, 0.0)["0.weight"], sd0["0.weight"])
    assert torch.equal(gla.interpolate_state_dicts(sd0, sd1, 1.0)["0.weight"], sd1["0.weight"])
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    res = gla.wise_ft_sweep(model, sd0, sd1, [0.0, 0.5, 1.0], lambda m: m[0].weight.detach().clone())
    assert [a for a, _ in res] == [0.0, 0.5, 1.0]
    assert torch.allclose(res[1][1], mid["0.weight"])
    assert torch.equal(model[0].weight, sd1["0.weight"])


def test_wise_ft_bad_inputs():
    a = {"w": torch.zeros(2, 2), "b": torch.zeros(2)}
    with pytest.raises(ValueError, match="same keys"):
        gla.interpolate_state_dicts(a, {"w": torch.zeros(2, 2)}, 0.5)
    with pytest.raises(ValueError, match="same shape for 'w'"):
        gla.interpolate_state_dicts(a, {"w": torch.zeros(3, 2), "b": torch.zeros(2)}, 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        gla.interpolate_state_dicts(a, a, -0.1)


def test_interpolation_follows_the_fine_tuned_weights_device():
    # The many-shot protocol keeps the zero-shot model where the backbone loaded and the
    # fine-tuned one where it trained; on a GPU the two differ (found on CUDA). A 'meta'
    # tensor stands in for a GPU one here.
    from gla.adjust import interpolate_state_dicts

    out = interpolate_state_dicts({"w": torch.ones(2)}, {"w": torch.ones(2, device="meta")}, 0.5)
    assert out["w"].device.type == "meta"
