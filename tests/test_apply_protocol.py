"""``gla apply`` follows the protocol switch (``paper`` or ``exact``) as the protocols do.

``paper``: the official code's 1000-step Lagrangian prior solver (GLA.FS.public.zip,
``trainers/util.py``, ``pp_solver``), normalised afterwards, and its regula-falsi
temperature search (``trainers/util.py``, ``search_T``; 0.1 pp for the zero-shot model,
1.0 pp for the fine-tuned one, ``trainers/gla.py``). ``exact``: the exact prior and a
converged bisection.
"""

import json

import pytest
import torch

from gla import gla_logits
from gla.apply import apply_protocol, protocol_settings
from gla.cli import main
from gla.errors import UsageError
from gla.estimators import make_estimator
from gla.protocols import COLUMNS, Method, Outputs, ProtocolSettings, fit_prior
from gla.temperature import search_temperature, search_temperature_official
from tests.conftest import planted_logits

K = 6


@pytest.fixture(scope="module")
def logits():
    """Zero-shot logits with a planted prior and noisy fine-tuned logits, val and test."""
    zs_val, y_val, _ = planted_logits(40, K, seed=1)
    zs, y, _ = planted_logits(30, K, seed=2)
    g = torch.Generator().manual_seed(3)
    ft_val = 2.0 * torch.nn.functional.one_hot(y_val, K) + torch.randn(len(y_val), K, generator=g,
                                                                       dtype=torch.float64)
    ft = 2.0 * torch.nn.functional.one_hot(y, K) + torch.randn(len(y), K, generator=g, dtype=torch.float64)
    return {"zs": zs, "ft": ft, "labels": y, "zs_val": zs_val, "ft_val": ft_val, "labels_val": y_val}


def _few_shot(d, protocol):
    return apply_protocol("few-shot", d["zs"], d["ft"], d["labels"], zs_val=d["zs_val"], ft_val=d["ft_val"],
                          labels_val=d["labels_val"], protocol=protocol)


def test_paper_uses_the_official_solver_and_search(logits):
    d = logits
    df = _few_shot(d, "paper")
    t_zs = search_temperature_official(d["zs_val"], d["labels_val"], thres=0.1)
    t_ft = search_temperature_official(d["ft_val"], d["labels_val"], thres=1.0)
    rows = df.set_index("method")
    assert (rows["t_zs"] == t_zs.temperature).all() and (rows["t_ft"] == t_ft.temperature).all()
    assert rows["t_zs_converged"].tolist() == [t_zs.converged] * len(rows)
    est = make_estimator("official").fit(d["zs_val"].double() / t_zs.temperature, d["labels_val"])
    fit = df.attrs["prior"]
    assert torch.allclose(fit.log_prior.double(), est.log_prior_, atol=1e-6)
    assert float(fit.log_prior.double().exp().sum()) == pytest.approx(1.0, abs=1e-6)  # normalised q
    assert est.diagnostics_.raw_sum != pytest.approx(1.0, abs=1e-6)  # the raw q is not
    assert rows.loc[Method.GLA, "prior_sum"] == pytest.approx(est.diagnostics_.raw_sum)
    assert rows.loc[Method.GLA, "prior_grad_norm"] == pytest.approx(est.diagnostics_.grad_norm)
    # exactly what the protocols' fit_prior gives on the same inputs
    same = fit_prior(Outputs(d["zs_val"], d["labels_val"], "val"), ProtocolSettings(protocol="paper"),
                     temperature=t_zs.temperature, temperature_converged=t_zs.converged)
    assert torch.equal(fit.log_prior, same.log_prior) and fit.columns() == same.columns()
    want = gla_logits(d["zs"], d["ft"], est.log_prior_, zs_temperature=t_zs.temperature,
                      ft_temperature=t_ft.temperature).argmax(1).eq(d["labels"]).double().mean()
    assert rows.loc[Method.GLA, "top1"] == pytest.approx(float(want))
    assert set(rows["protocol"]) == {"paper"} and set(rows["prior_source"]) == {"official"}
    assert set(rows["experiment"]) == {"few-shot"}


def test_exact_uses_the_exact_prior_and_bisection(logits):
    d = logits
    df = _few_shot(d, ProtocolSettings(protocol="exact"))
    t_zs, t_ft = search_temperature(d["zs_val"], d["labels_val"]), search_temperature(d["ft_val"], d["labels_val"])
    rows = df.set_index("method")
    assert rows.loc[Method.GLA, "t_zs"] == pytest.approx(t_zs, abs=1e-12)
    assert rows.loc[Method.GLA, "t_ft"] == pytest.approx(t_ft, abs=1e-12)
    assert bool(rows.loc[Method.GLA, "t_zs_converged"]) and bool(rows.loc[Method.GLA, "t_ft_converged"])
    est = make_estimator("exact", temperature=rows.loc[Method.GLA, "t_zs"]).fit(d["zs_val"], d["labels_val"])
    assert torch.allclose(df.attrs["prior"].log_prior.double(), est.log_prior_, atol=1e-6)
    assert rows.loc[Method.GLA, "prior_grad_norm"] < 1e-8
    assert set(rows["protocol"]) == {"exact"} and set(rows["prior_source"]) == {"exact"}


def test_many_shot_estimates_at_temperature_one_and_the_protocols_differ(logits):
    d = logits
    q = {}
    for p in ("paper", "exact"):
        df = apply_protocol("many-shot", d["zs"], d["ft"], d["labels"], zs_val=d["zs_val"],
                            labels_val=d["labels_val"], protocol=p)
        est = make_estimator("official" if p == "paper" else "exact").fit(d["zs_val"], d["labels_val"])
        q[p] = df.attrs["prior"].log_prior.double()
        assert torch.allclose(q[p], est.log_prior_, atol=1e-6)
        assert set(df["prior_temperature"]) == {1.0} and set(df["protocol"]) == {p}
        assert df["t_zs"].isna().all()  # a protocol's columns, empty where the experiment has no value
    assert (q["paper"] - q["exact"]).abs().max() > 1e-2


def test_rows_name_the_fit_as_the_protocols_do(logits):
    df = _few_shot(logits, "paper")
    named = {"protocol", "prior_source", "prior_objective", "prior_grad_norm", "prior_sum", "t_zs", "t_zs_converged",
             "t_ft", "t_ft_converged", "split", "method", "top1", "top5", "head", "medium", "tail", "ece"}
    assert named <= set(df.columns) and named <= set(COLUMNS)


def test_claims_and_the_books_tables_read_apply_rows_as_a_protocols(logits, tmp_path):
    """``gla apply`` writes a protocol's table: Method identifiers, the fixed columns, one
    writer. The claims check and the book's tables read it with no translation."""
    import pandas as pd

    from gla import report
    from gla.claims import NOT_MEASURED, check_claims
    from gla.protocols import save_results

    d = logits
    val = {"zs_val": d["zs_val"], "labels_val": d["labels_val"]}
    many = apply_protocol("many-shot", d["zs"], d["ft"], d["labels"], protocol="exact", **val)
    assert list(many.columns[:len(COLUMNS)]) == list(COLUMNS) and set(many.method) <= {m.value for m in Method}
    counts = torch.tensor([500, 150, 60, 30, 10, 5])
    lt = apply_protocol("long-tail", d["zs"], d["ft"], d["labels"], train_counts=counts, protocol="exact",
                        columns={"dataset": "my-lt"}, **val)
    few = pd.concat([apply_protocol("few-shot", d["zs"], d["ft"], d["labels"], ft_val=d["ft_val"], protocol="exact",
                                    columns={"dataset": "my-set", "shots": 16, "seed": s}, **val) for s in (1, 2)])
    for df, chapter, name in ((many, "03_many_shot", "many_shot"), (lt, "08_long_tail", "long_tail"),
                              (few, "06_few_shot", "few_shot")):
        save_results(df, tmp_path / chapter, name)
    claims = check_claims(tmp_path).set_index("id")
    assert set(claims.index[claims.verdict != NOT_MEASURED]) == {
        "label_bias", "debiasing_helps", "many_shot_vs_fine_tuned", "many_shot_vs_ensemble", "few_shot_gain",
        "long_tail_vs_ce", "long_tail_vs_logit_adjusted"}, claims[["verdict", "detail"]]
    top1 = many.set_index("method").top1 * 100
    assert claims.loc["many_shot_vs_fine_tuned", "measured"] == pytest.approx(top1[Method.GLA] - top1[Method.FINE_TUNED])
    assert claims.loc["many_shot_vs_wise_ft", "verdict"] == NOT_MEASURED  # no WiSE-FT from logits alone
    # the book's tables: the book's order and display names, from the file as written
    t = report.method_table(pd.read_csv(tmp_path / "03_many_shot" / "many_shot.csv"))
    assert list(t.index) == [Method.ZERO_SHOT.label, Method.DEBIASED.label, Method.FINE_TUNED.label,
                             Method.ENSEMBLE.label, Method.GLA.label]
    assert t.loc["GLA", "top1"] == pytest.approx(round(top1[Method.GLA], 1))
    p = report.pivot_methods(lt, "dataset", "mean_per_class")
    assert list(p.index) == [Method.ZERO_SHOT, Method.DEBIASED, Method.FINE_TUNED_CE, Method.FINE_TUNED_CE_ADJUSTED,
                             Method.ENSEMBLE, Method.GLA] and list(p.columns) == ["my-lt"]
    # without shots and seed the few-shot claim says so instead of failing
    bare = apply_protocol("few-shot", d["zs"], d["ft"], d["labels"], ft_val=d["ft_val"], protocol="exact", **val)
    save_results(bare, tmp_path / "06_few_shot", "few_shot")
    again = check_claims(tmp_path).set_index("id")
    assert again.loc["few_shot_gain", "verdict"] == NOT_MEASURED and "shots and seed" in again.loc["few_shot_gain",
                                                                                                    "detail"]


def test_a_given_prior_overrides_estimation_under_both_protocols(logits, tmp_path):
    d = logits
    q = torch.tensor([0.3, 0.2, 0.1, 0.1, 0.05, 0.05])  # sums to 0.8
    torch.save({"q": q}, tmp_path / "q.pt")
    for p in ("paper", "exact"):
        df = apply_protocol("many-shot", d["zs"], d["ft"], d["labels"], zs_val=d["zs_val"],
                            labels_val=d["labels_val"], protocol=ProtocolSettings(protocol=p,
                                                                                  prior_file=str(tmp_path / "q.pt")))
        assert torch.allclose(df.attrs["prior"].log_prior, (q / q.sum()).double().log(), atol=1e-7)
        assert set(df["prior_source"]) == {"file:q.pt"} and set(df["protocol"]) == {p}
        assert df["prior_sum"].iloc[0] == pytest.approx(0.8, abs=1e-6)


def test_an_unknown_protocol_is_a_usage_error(logits):
    d = logits
    with pytest.raises(UsageError, match="protocol: expected one of paper, exact"):
        apply_protocol("many-shot", d["zs"], d["ft"], d["labels"], zs_val=d["zs_val"], labels_val=d["labels_val"],
                       protocol="official")
    with pytest.raises(UsageError, match="experiment: expected one of"):
        apply_protocol("zero-shot", d["zs"], d["ft"], d["labels"], protocol="paper")
    assert protocol_settings("exact") == ProtocolSettings(protocol="exact")


def _save(d, tmp_path):
    for name, t in d.items():
        torch.save(t, tmp_path / f"{name}.pt")
    return ["--zs", str(tmp_path / "zs.pt"), "--ft", str(tmp_path / "ft.pt"), "--labels", str(tmp_path / "labels.pt"),
            "--zs-val", str(tmp_path / "zs_val.pt"), "--ft-val", str(tmp_path / "ft_val.pt"),
            "--labels-val", str(tmp_path / "labels_val.pt")]


def test_cli_passes_the_protocol_through_and_records_it(logits, tmp_path):
    d = logits
    files = _save(d, tmp_path)
    for flag, p in (([], "paper"), (["--protocol", "exact"], "exact")):
        out = tmp_path / p
        assert main(["apply", "few-shot", *files, *flag, "--out", str(out)]) == 0
        rows = json.loads((out / "apply_few_shot.json").read_text())
        assert {r["protocol"] for r in rows} == {p} and {r["experiment"] for r in rows} == {"few-shot"}
        assert {r["prior_source"] for r in rows} == {"official" if p == "paper" else "exact"}
        want = _few_shot(d, p).set_index("method")
        for r in rows:
            assert r["t_zs"] == want.loc[r["method"], "t_zs"] and r["t_ft"] == want.loc[r["method"], "t_ft"]
            assert r["top1"] == want.loc[r["method"], "top1"]
        assert "protocol" in (out / "apply_few_shot.csv").read_text().splitlines()[0].split(",")


def test_cli_rejects_an_unknown_protocol(logits, tmp_path, capsys):
    files = _save(logits, tmp_path)
    with pytest.raises(SystemExit) as e:
        main(["apply", "many-shot", *files, "--protocol", "official", "--out", str(tmp_path / "o")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--protocol: invalid choice: 'official'" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_an_unreachable_temperature_is_recorded_not_raised(logits, tmp_path, capsys):
    """As in the protocols: a target no temperature meets (accuracy 1) gives T = 1 and
    ``converged=False`` in the rows; the command says so."""
    d = dict(logits)
    d["ft_val"] = 10.0 * torch.nn.functional.one_hot(d["labels_val"], K).double()  # accuracy 1 on val
    files = _save(d, tmp_path)
    assert main(["apply", "few-shot", *files, "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "apply_few_shot.json").read_text())
    assert {r["t_ft"] for r in rows} == {1.0} and {r["t_ft_converged"] for r in rows} == {False}
    assert "did not converge" in capsys.readouterr().err
