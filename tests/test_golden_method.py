"""Golden tests: the method core against values the official GLA code produced.

The JSON files under ``tests/data/golden/`` record what the reference code outputs on small
explicit inputs; each keeps its ``reference`` block (repository, file, lines, commit). The
official sources live in zips committed to github.com/BeierZhu/GLA at commit efbcd60
(``Code.zip``, ``GLA.FS.public.zip``, ``Dassl.ProGrad.pytorch.zip``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import gla
from gla.adjust import gla_logits
from gla.metrics import accuracy_by_count_group, accuracy_by_prior_group, count_groups, prior_groups
from gla.prior import PriorEstimator, official_lagrangian_prior, prior_objective
from gla.temperature import fit_temperature, search_temperature_official

GOLDEN = Path(__file__).parent / "data" / "golden"


def load(name: str) -> dict:
    return json.loads((GOLDEN / f"{name}.json").read_text())


TEMP = load("temperature_search")
PRIOR = load("official_prior")
COMB = load("gla_combination")
GROUPS = load("groups")

TEMP_CASES = {c["name"]: c for c in TEMP["inputs"]["cases"]}
CONVERGING = [(name, th) for name in TEMP_CASES for th in (0.1, 1.0)
              if TEMP["expected"][name]["float32"][f"thres={th}"]["converged"]]


@pytest.fixture(autouse=True)
def one_thread():
    """Every input here is tiny and the solvers take thousands of small steps: with several
    threads on a busy machine, thread synchronisation dominates (seconds instead of less)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def temp_case(name):
    c = TEMP_CASES[name]
    return torch.tensor(c["logits"], dtype=torch.float32), torch.tensor(c["labels"])


# --------------------------------------------------------------------------- temperature

@pytest.mark.parametrize("name, thres", CONVERGING)
def test_official_temperature_search_float32(name, thres):
    """``Calibrater.search_T`` / ``search_recurse`` (GLA.FS.public.zip, trainers/util.py
    L178-224; thres 0.1 at L416-419, 1.0 in trainers/gla.py L285-290): T to rtol 1e-5, the
    call count exactly, and the whole sequence of trial temperatures."""
    z, y = temp_case(name)
    want = TEMP["expected"][name]["float32"][f"thres={thres}"]
    fit = search_temperature_official(z, y, thres=thres)
    assert fit.converged and fit.reason == "" and fit.method == "official"
    assert fit.temperature == pytest.approx(want["T"], rel=1e-5)
    assert fit.n_calls == want["n_search_recurse_calls"]
    assert len(fit.trials) == len(want["T_mid_sequence"])
    assert fit.trials == pytest.approx(want["T_mid_sequence"], rel=1e-5)
    assert fit.trials[-1] == fit.temperature
    assert 100 * fit.accuracy == pytest.approx(want["accuracy_percent"], abs=1e-4)
    assert 100 * fit.confidence == pytest.approx(want["confidence_percent"], abs=1e-4)
    assert fit.gap_pp == pytest.approx(want["gap_pp"], abs=1e-4)
    assert fit.gap_pp <= thres
    # The front door gives the same answer.
    front = fit_temperature(z, y, method="official", thres=thres)
    assert front == fit


@pytest.mark.parametrize("name, thres", CONVERGING)
def test_official_temperature_search_float64(name, thres):
    """Same search with float64 softmax and accuracy (golden ``expected_float64``)."""
    z, y = temp_case(name)
    want = TEMP["expected"][name]["float64"][f"thres={thres}"]
    fit = search_temperature_official(z.double(), y, thres=thres, dtype=torch.float64)
    assert fit.converged
    assert fit.temperature == pytest.approx(want["T"], rel=1e-5)
    assert fit.n_calls == want["n_search_recurse_calls"]


def test_official_search_that_cycles_stops_and_reports_it():
    """Case E at 0.1 pp: the official update enters a cycle and ends in RecursionError
    (trainers/util.py L178-224). We stop when the bracket repeats, report converged=False
    and return the trial with the smallest gap."""
    z, y = temp_case("E_official_cycles_at_0.1_40x5")
    want = TEMP["expected"]["E_official_cycles_at_0.1_40x5"]["float32"]["thres=0.1"]
    fit = search_temperature_official(z, y, thres=0.1)
    assert not fit.converged
    assert "cycles" in fit.reason
    first = want["T_mid_first_12"]
    assert fit.trials[:12] == pytest.approx(first, rel=1e-5)
    # The bracket repeats exactly (68 rounds here), well before the official code's ~495
    # calls and before the default cap of 100, inside the cycle between about 4.137 and
    # 4.157 that the official trace ends in.
    assert 12 < fit.n_calls < 100
    for t in fit.trials[-4:]:
        assert min(abs(t - w) for w in want["T_mid_last_4"]) < 1e-5
    # The temperature is the trial with the smallest gap, which is above the threshold.
    acc = want["accuracy_percent"]
    gaps = [abs(100 * gla.temperature.mean_confidence(z, t) - acc) for t in fit.trials]
    assert fit.temperature == fit.trials[min(range(len(gaps)), key=gaps.__getitem__)]
    assert 0.1 < fit.gap_pp == pytest.approx(min(gaps), abs=1e-9)
    # A call cap stops it too.
    capped = search_temperature_official(z, y, thres=0.1, max_calls=5)
    assert not capped.converged and capped.n_calls == 5 and "max_calls=5" in capped.reason
    assert capped.trials == pytest.approx(first[:5], rel=1e-5)
    # fit_temperature does not raise either.
    assert fit_temperature(z, y, thres=0.1) == fit


# --------------------------------------------------------------------------- prior


@pytest.mark.parametrize("case", PRIOR["inputs"]["cases"], ids=lambda c: c["name"])
def test_official_prior_solver(case):
    """``pp_solver`` (GLA.FS.public.zip, trainers/util.py L17-48) on cooper v0's
    simultaneous primal/dual SGD (cooper constrained_optimizer.py 05625a1,
    formulation/lagrangian.py 10d565d): float32 to 1e-7, float64 to 1e-10, unnormalised."""
    z = torch.tensor(case["logits"], dtype=torch.float32)
    y = torch.tensor(case["labels"])
    want = PRIOR["expected"][case["name"]]
    q32 = official_lagrangian_prior(z, y).exp()
    assert q32.dtype == torch.float64
    assert torch.allclose(q32, torch.tensor(want["official_q"], dtype=torch.float64), rtol=0, atol=1e-7)
    assert float(q32.sum()) == pytest.approx(want["official_q_sum"], abs=1e-6)
    q64 = official_lagrangian_prior(z.double(), y, dtype=torch.float64).exp()
    assert torch.allclose(q64, torch.tensor(want["official_q_float64"], dtype=torch.float64), rtol=0, atol=1e-10)
    assert float(q64.sum()) == pytest.approx(want["official_q_float64_sum"], abs=1e-10)
    # The two precisions really differ (the reason for the dtype option).
    assert float((q32 - q64).abs().max()) > 1e-7
    # Its objective value is the official one, far above the exact optimum.
    assert prior_objective(z, y, q64.log()) == pytest.approx(want["objective_ce_at_official_q"], abs=1e-5)


@pytest.mark.parametrize("case", PRIOR["inputs"]["cases"], ids=lambda c: c["name"])
def test_exact_prior_matches_the_exact_optimum(case):
    """The exact estimator against scipy's optimum of the same objective (golden
    ``exact_log_q_normalised``, KKT gradient ~1e-16)."""
    z = torch.tensor(case["logits"], dtype=torch.float32)
    y = torch.tensor(case["labels"])
    want = PRIOR["expected"][case["name"]]
    fit = PriorEstimator().fit(z, y)
    exact = torch.tensor(want["exact_log_q_normalised"], dtype=torch.float64)
    assert torch.allclose(fit.log_prior_, exact, rtol=0, atol=1e-7)
    assert fit.objective_ == pytest.approx(want["objective_ce_at_exact_q"], abs=1e-7)  # exp() in float32
    uniform = torch.full((z.shape[1],), -math.log(z.shape[1]), dtype=torch.float64)
    assert prior_objective(z, y, uniform) == pytest.approx(want["objective_ce_at_uniform"], abs=1e-6)


# --------------------------------------------------------------------------- combination

def f32(x):
    return torch.tensor(x, dtype=torch.float32)


@pytest.mark.parametrize("variant", ["p_None", "p_given"])
def test_gla_many_shot_form(variant):
    """``gla_inference`` (Code.zip, src/models/modeling.py L11-17; used in src/gla.py L59):
    zs + ft - log q - log p with p uniform 1/K unless given, q unnormalised."""
    inp, want = COMB["inputs"]["many_shot"], COMB["expected"]["many_shot"][variant]
    zs, ft, q = f32(inp["zs_logits"]), f32(inp["ft_logits"]), f32(inp["q"])
    k = zs.shape[1]
    p = f32(inp["p_given"]) if variant == "p_given" else torch.full((k,), 1.0 / k)
    out = gla_logits(zs, ft, torch.log(q), log_source_prior=torch.log(p))
    assert torch.allclose(out, torch.tensor(want["gla_logits"], dtype=torch.float64), rtol=0, atol=1e-4)
    assert out.argmax(1).tolist() == want["predictions"]
    labels = torch.tensor(COMB["inputs"]["labels"])
    assert gla.topk_accuracy(out, labels) == pytest.approx(want["accuracy"], abs=1e-12)
    if variant == "p_None":  # without the uniform term the logits shift, predictions do not
        plain = gla_logits(zs, ft, torch.log(q))
        assert torch.allclose(out - plain, torch.full_like(out, math.log(k)))
    ref = COMB["expected"]["many_shot"]["reference_points"]
    assert zs.argmax(1).tolist() == ref["zs_only"]["predictions"]
    assert ft.argmax(1).tolist() == ref["ft_only"]["predictions"]
    assert gla.ensemble_logits(zs, ft).argmax(1).tolist() == ref["zs_plus_ft_no_prior"]["predictions"]


def test_gla_few_shot_form():
    """``post_hoc_gla`` (GLA.FS.public.zip, trainers/gla.py L273-275, L285-306; util.py
    L396-406): ft / T_ft + zs / T_zs - log(pp + 1e-12), pp unnormalised."""
    inp, want = COMB["inputs"]["few_shot"], COMB["expected"]["few_shot"]
    zs, ft, pp = f32(inp["zs_raw_logits"]), f32(inp["ft_raw_logits"]), f32(inp["pp"])
    out = gla_logits(zs, ft, torch.log(pp + 1e-12), zs_temperature=inp["T_zs"], ft_temperature=inp["T_ft"])
    assert torch.allclose(out, torch.tensor(want["gla_logits"], dtype=torch.float64), rtol=0, atol=1e-4)
    assert out.argmax(1).tolist() == want["predictions"]
    labels = torch.tensor(COMB["inputs"]["labels"])
    assert 100 * gla.topk_accuracy(out, labels) == pytest.approx(want["accuracy_percent"], abs=1e-9)
    ref = want["reference_points"]
    assert (ft / inp["T_ft"]).argmax(1).tolist() == ref["ft_over_T_only"]["predictions"]
    assert (zs / inp["T_zs"]).argmax(1).tolist() == ref["zs_over_T_only"]["predictions"]
    untempered = gla_logits(zs, ft, torch.log(pp + 1e-12))
    assert untempered.argmax(1).tolist() == ref["untempered_sum_minus_log_pp"]["predictions"]


def test_gla_few_shot_epsilon_case():
    """A class with pp = 0 gets -log(1e-12) = +27.631021 (trainers/gla.py L273-275)."""
    inp, want = COMB["inputs"]["few_shot_epsilon_case"], COMB["expected"]["few_shot_epsilon_case"]
    pp = f32(inp["pp"])
    log_pp = torch.log(pp + 1e-12)
    assert torch.allclose(-log_pp.double(), torch.tensor(want["minus_log_pp_plus_eps"], dtype=torch.float64),
                          atol=1e-5)
    out = gla_logits(f32(inp["zs_raw"]), f32(inp["ft_raw"]), log_pp,
                     zs_temperature=inp["T_zs"], ft_temperature=inp["T_ft"])
    assert torch.allclose(out, torch.tensor(want["gla_logits"], dtype=torch.float64), rtol=0, atol=1e-4)
    assert out.argmax(1).tolist() == want["predictions"] == inp["labels"]
    # Without the epsilon the prior is log 0 and is refused with a clear error.
    with pytest.raises(ValueError, match="finite"):
        gla_logits(f32(inp["zs_raw"]), f32(inp["ft_raw"]), torch.log(pp))


# --------------------------------------------------------------------------- groups

def one_hot(preds, k):
    z = torch.zeros(len(preds), k, dtype=torch.float64)
    z[torch.arange(len(preds)), torch.tensor(preds)] = 1.0
    return z


def test_head_medium_tail_groups():
    """``breakdown_accuracy`` (Code.zip, src/gla.py L13-43): 333/333/334 classes by
    descending q, accuracy per test image of each group."""
    inp, want = GROUPS["inputs"]["head_medium_tail"], GROUPS["expected"]["head_medium_tail"]
    q = torch.tensor(inp["q"], dtype=torch.float64)
    assert q.tolist() == [((7919 * i) % 1000 + 1) / 1000 for i in range(1000)]
    groups = prior_groups(torch.log(q))
    assert torch.bincount(groups).tolist() == want["group_sizes"]
    for gi, name in enumerate(("head", "medium", "tail")):
        assert sorted(torch.nonzero(groups == gi).flatten().tolist()) == sorted(want["group_classes"][name])
    # Grouping depends on the order only: q, q / sum(q) and log q agree.
    assert torch.equal(prior_groups(q), groups) and torch.equal(prior_groups(q / q.sum()), groups)
    z, y = one_hot(inp["predictions"], inp["k"]), torch.tensor(inp["labels"])
    for lp in (torch.log(q), torch.log(q / q.sum())):
        res = accuracy_by_prior_group(z, y, lp)
        for key in ("head", "medium", "tail", "all"):
            assert res[key] == pytest.approx(want[key], abs=1e-12)


def test_many_medium_few_groups():
    """``shot_acc`` (GLA.FS.public.zip, trainers/util.py L433-475; LIFT trainer.py
    L162-164): many > 100, few < 20, each group the mean of per-class accuracies."""
    inp, want = GROUPS["inputs"]["many_medium_few"], GROUPS["expected"]["many_medium_few"]
    counts = torch.tensor(inp["train_counts"])
    names = ("many", "medium", "few")
    assert [names[g] for g in count_groups(counts).tolist()] == want["group_of_each_class"]
    z, y = one_hot(inp["test_predictions"], len(counts)), torch.tensor(inp["test_labels"])
    res = accuracy_by_count_group(z, y, counts)
    for key in names:
        assert res[key] == pytest.approx(want[key], abs=1e-12)
    assert res["all"] == pytest.approx(want["all_mean_per_class"], abs=1e-12)


def test_empty_count_group_is_nan_by_default_and_zero_as_official():
    """An empty "few" group: the official shot_acc reports 0 (trainers/util.py L463-468);
    we report NaN unless ``empty=0.0`` is asked for."""
    inp = GROUPS["inputs"]["many_medium_few_empty_few_group"]
    want = GROUPS["expected"]["many_medium_few_empty_few_group"]
    counts = torch.tensor(inp["train_counts"])
    z, y = one_hot(inp["test_predictions"], len(counts)), torch.tensor(inp["test_labels"])
    ours = accuracy_by_count_group(z, y, counts)
    assert math.isnan(ours["few"])
    official = accuracy_by_count_group(z, y, counts, empty=0.0)
    assert official["few"] == 0.0 == want["few"]
    for key in ("many", "medium"):
        assert ours[key] == official[key] == pytest.approx(want[key], abs=1e-12)
    assert ours["all"] == pytest.approx(want["all_mean_per_class"], abs=1e-12)
