"""gla.claims: the paper's claims checked on small synthetic results folders, laid out as
the book's chapters write them (``<results>/<notebook>/<table>.csv``)."""

import math

import pandas as pd
import pytest

from gla import claims
from gla.claims import DOES_NOT_HOLD, HOLDS, NOT_MEASURED, check_claims, environment, list_claims
from gla.errors import UsageError

GOOD = {"zero_shot": (0.50, 0.70, 0.30), "debiased_zero_shot": (0.55, 0.60, 0.50), "fine_tuned": (0.70, 0.75, 0.65),
        "ensemble": (0.72, 0.76, 0.68), "wise_ft": (0.73, 0.77, 0.69), "gla": (0.76, 0.78, 0.74)}


def many_shot(values=GOOD, *, extra_backbone=None):
    """A many-shot table: test rows per method (top1, head, tail), a sweep and val rows
    that must be ignored, and optionally a second backbone's rows after the first."""
    rows = []
    for backbone, vals in [("tiny", values)] + ([("other", extra_backbone)] if extra_backbone else []):
        for m, (top1, head, tail) in vals.items():
            rows.append({"backbone": backbone, "pretrained": "world", "dataset": "world-main", "split": "test",
                         "method": m, "alpha": 0.5 if m == "wise_ft" else None, "top1": top1, "head": head,
                         "medium": top1, "tail": tail})
            rows.append({"backbone": backbone, "pretrained": "world", "dataset": "world-main", "split": "val",
                         "method": m, "top1": 0.0, "head": 0.0, "tail": 1.0})
        rows.append({"backbone": backbone, "pretrained": "world", "dataset": "world-main", "split": "test",
                     "method": "wise_ft_sweep", "alpha": 0.3, "top1": 0.99, "head": 0.99, "tail": 0.99})
    return pd.DataFrame(rows)


def few_shot(gla_gain=0.02):
    """Two datasets, shots 1 and 2, one seed; GLA is ``gla_gain`` above the best other."""
    rows = []
    for d in ["a", "b"]:
        for k in [1, 2]:
            base = {"zero_shot": 0.50, "prompt_tuning": 0.50 + 0.05 * k, "ensemble": 0.52 + 0.05 * k}
            base["gla"] = base["ensemble"] + gla_gain
            for m, v in base.items():
                rows.append({"dataset": d, "method": m, "split": "test", "shots": k, "seed": 1, "top1": v,
                             "t_zs": 1.0, "t_ft": 1.0})
                rows.append({"dataset": d, "method": m, "split": "test:shifted", "shots": k, "seed": 1,
                             "top1": 0.0, "t_zs": 1.0, "t_ft": 1.0})
    return pd.DataFrame(rows)


def gains_over_ensemble(values=(0.5, 1.2)):
    return pd.DataFrame({"dataset": [f"d{i}" for i in range(len(values))],
                         "GLA - ensemble (points)": list(values)})


def long_tail(gla=0.60):
    rows = []
    for d in ["lt-a", "lt-b"]:
        for m, v in {"fine_tuned_ce": 0.50, "fine_tuned_ce_adjusted": 0.55, "gla": gla}.items():
            rows.append({"dataset": d, "method": m, "many": v, "medium": v, "few": v, "mean_per_class": v})
    return pd.DataFrame(rows)


def write(root, tables):
    for rel, df in tables.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(path, index=False)
    return root


def full(root, **over):
    tables = {"03_many_shot/many_shot.csv": many_shot(), "06_few_shot/few_shot.csv": few_shot(),
              "07_few_shot_robustness/gla_gain_over_ensemble.csv": gains_over_ensemble(),
              "08_long_tail/long_tail.csv": long_tail()}
    tables.update(over)
    return write(root, tables)


def by_id(df):
    return df.set_index("id")


def test_one_row_per_claim_with_the_documented_columns(tmp_path):
    df = check_claims(full(tmp_path))
    assert list(df.columns) == list(claims.COLUMNS)
    assert list(df.id) == list_claims()
    assert set(df.chapter) <= {"01_label_bias", "02_estimating_the_prior", "03_many_shot", "06_few_shot",
                               "07_few_shot_robustness", "08_long_tail"}
    assert set(df.verdict) <= set(claims.VERDICTS)


def test_every_claim_holds_on_good_results(tmp_path):
    df = by_id(check_claims(full(tmp_path)))
    assert (df.verdict == HOLDS).all(), df[["verdict", "detail"]]
    # measured numbers in points, computed from the tables (the sweep and val rows ignored)
    assert df.loc["label_bias", "measured"] == pytest.approx(40.0)
    assert df.loc["debiasing_helps", "measured"] == pytest.approx(5.0)
    assert df.loc["many_shot_vs_fine_tuned", "measured"] == pytest.approx(6.0)
    assert df.loc["many_shot_vs_ensemble", "measured"] == pytest.approx(4.0)
    assert df.loc["many_shot_vs_wise_ft", "measured"] == pytest.approx(3.0)
    assert df.loc["few_shot_gain", "measured"] == pytest.approx(2.0)
    assert df.loc["few_shot_no_negative_gain", "measured"] == pytest.approx(0.5)
    assert df.loc["long_tail_vs_ce", "measured"] == pytest.approx(10.0)
    assert df.loc["long_tail_vs_logit_adjusted", "measured"] == pytest.approx(5.0)
    assert df.loc["label_bias", "evidence"] == "03_many_shot/many_shot.csv"  # 01's file absent: the next one


def test_every_claim_can_fail(tmp_path):
    bad = {"zero_shot": (0.50, 0.30, 0.70), "debiased_zero_shot": (0.45, 0.6, 0.5), "fine_tuned": (0.80, 0.8, 0.8),
           "ensemble": (0.80, 0.8, 0.8), "wise_ft": (0.81, 0.8, 0.8), "gla": (0.78, 0.8, 0.8)}
    df = by_id(check_claims(full(tmp_path, **{
        "03_many_shot/many_shot.csv": many_shot(bad), "06_few_shot/few_shot.csv": few_shot(gla_gain=-0.01),
        "07_few_shot_robustness/gla_gain_over_ensemble.csv": gains_over_ensemble((0.4, -0.1)),
        "08_long_tail/long_tail.csv": long_tail(gla=0.52)})))
    assert df.loc["long_tail_vs_ce", "verdict"] == HOLDS  # 0.52 > 0.50
    rest = df.drop(index="long_tail_vs_ce")
    assert (rest.verdict == DOES_NOT_HOLD).all(), rest[["verdict", "detail"]]
    assert df.loc["few_shot_no_negative_gain", "measured"] == pytest.approx(-0.1)
    assert "1 of 2 tasks" in df.loc["few_shot_no_negative_gain", "detail"]


def test_a_claim_names_the_regime_properties_it_needs_that_the_model_lacks(tmp_path):
    """A world's CLIP that lacks a property of real CLIP's regime (P1-P6) does not test the
    claims that rest on it fairly: the table says which property is missing, beside a
    verdict it leaves as measured."""
    plain = by_id(check_claims(full(tmp_path)))
    assert (plain.missing == "").all()  # a model not measured (real CLIP): nothing is missing
    assert plain.loc["many_shot_vs_fine_tuned", "needs"] == "P2, P3, P4"
    assert all(plain.needs != "")  # every claim says what it rests on
    has = {"P1": True, "P2": True, "P3": True, "P4": True, "P5": False, "P6": True}
    df = by_id(check_claims(full(tmp_path), properties=has))
    assert df.loc["debiasing_helps", "missing"] == "P5" and df.loc["label_bias", "missing"] == "P5"
    assert df.loc["many_shot_vs_fine_tuned", "missing"] == ""  # P2-P4 hold
    assert (df.verdict == plain.verdict).all() and (df.measured == plain.measured).all()
    none = by_id(check_claims(full(tmp_path), properties=dict.fromkeys(has, False)))
    assert none.loc["many_shot_vs_fine_tuned", "missing"] == "P2, P3, P4"
    with pytest.raises(UsageError, match="properties: expected whether the model has P6"):
        check_claims(full(tmp_path), properties={k: v for k, v in has.items() if k != "P6"})


def test_a_tie_is_no_gain_but_no_negative_gain():
    beats = next(c for c in claims.CLAIMS if c.id == "many_shot_vs_fine_tuned")
    never_below = next(c for c in claims.CLAIMS if c.id == "few_shot_no_negative_gain")
    assert beats.verdict(0.0) == DOES_NOT_HOLD
    assert never_below.verdict(0.0) == HOLDS
    assert beats.verdict(float("nan")) == NOT_MEASURED
    assert beats.verdict((0.1 + 0.2 - 0.3) * 100) == DOES_NOT_HOLD  # rounding is not a gain
    assert never_below.verdict((0.1 + 0.2 - 0.3) * -100) == HOLDS
    assert never_below.verdict(-0.01) == DOES_NOT_HOLD


def test_missing_files_are_not_measured(tmp_path):
    df = by_id(check_claims(write(tmp_path, {"08_long_tail/long_tail.csv": long_tail()})))
    measured = {"long_tail_vs_ce", "long_tail_vs_logit_adjusted"}
    assert (df.loc[list(measured), "verdict"] == HOLDS).all()
    rest = df.drop(index=list(measured))
    assert (rest.verdict == NOT_MEASURED).all()
    assert rest.measured.isna().all() and (rest.evidence == "").all()
    assert "absent: 03_many_shot/many_shot.csv" in df.loc["many_shot_vs_ensemble", "detail"]


def test_an_empty_results_folder_measures_nothing(tmp_path):
    df = check_claims(tmp_path)
    assert (df.verdict == NOT_MEASURED).all() and len(df) == len(claims.CLAIMS)


def test_a_method_not_run_is_not_measured(tmp_path):
    no_wise = {k: v for k, v in GOOD.items() if k != "wise_ft"}
    df = by_id(check_claims(full(tmp_path, **{"03_many_shot/many_shot.csv": many_shot(no_wise)})))
    assert df.loc["many_shot_vs_wise_ft", "verdict"] == NOT_MEASURED
    assert "wise_ft" in df.loc["many_shot_vs_wise_ft", "detail"]
    assert df.loc["many_shot_vs_ensemble", "verdict"] == HOLDS


def test_the_chapters_first_backbone_is_read(tmp_path):
    worse = {k: (0.1, 0.1, 0.1) if k == "gla" else v for k, v in GOOD.items()}
    df = by_id(check_claims(full(tmp_path, **{"03_many_shot/many_shot.csv": many_shot(extra_backbone=worse)})))
    assert df.loc["many_shot_vs_fine_tuned", "measured"] == pytest.approx(6.0)


def test_label_bias_prefers_chapter_01(tmp_path):
    flipped = {**GOOD, "zero_shot": (0.5, 0.2, 0.6)}
    df = by_id(check_claims(full(tmp_path, **{"01_label_bias/label_bias_rows.csv": many_shot(flipped)})))
    assert df.loc["label_bias", "evidence"] == "01_label_bias/label_bias_rows.csv"
    assert df.loc["label_bias", "verdict"] == DOES_NOT_HOLD
    assert df.loc["label_bias", "measured"] == pytest.approx(-40.0)


def test_published_numbers_carry_their_source(tmp_path):
    df = by_id(check_claims(tmp_path))
    assert df.loc["many_shot_vs_fine_tuned", "published"] == "+1.5"
    assert df.loc["few_shot_gain", "published"] == "+1.4 to +4.6"
    assert df.loc["long_tail_vs_ce", "published"] == "+2.4"
    assert "abstract" in df.loc["long_tail_vs_ce", "published_source"]
    assert df.loc["label_bias", "published"] == "" and df.loc["label_bias", "published_source"] == ""


def test_bad_input_names_what_was_expected(tmp_path):
    with pytest.raises(UsageError, match="expected a folder"):
        check_claims(tmp_path / "nowhere")
    write(tmp_path, {"08_long_tail/long_tail.csv": pd.DataFrame({"dataset": ["a"], "top1": [0.5]})})
    with pytest.raises(UsageError, match="long_tail.csv.*mean_per_class"):
        check_claims(tmp_path)


def test_an_empty_file_is_not_measured(tmp_path):
    (tmp_path / "06_few_shot").mkdir()
    (tmp_path / "06_few_shot" / "few_shot.csv").write_text("")
    df = by_id(check_claims(tmp_path))
    assert df.loc["few_shot_gain", "verdict"] == NOT_MEASURED
    assert "empty" in df.loc["few_shot_gain", "detail"]


def test_environment_lists_versions_and_the_lock_file(tmp_path):
    env = environment(tmp_path).set_index("item").value
    for item in ["python", "torch", "torchvision", "open_clip", "numpy", "cpu", "cpu_count", "torch_threads"]:
        assert env[item], item
    assert env["lock_file"] == "absent"
    (tmp_path / "requirements").mkdir()
    (tmp_path / "requirements" / "lock.txt").write_text("torch==0\n")
    assert environment(tmp_path).set_index("item").value["lock_file"].startswith("present")
    assert int(env["cpu_count"]) >= 1 and not math.isnan(float(env["torch_threads"]))


def test_the_chapters_declare_where_every_claim_is_shown_and_measured():
    """No module names a chapter: the book's notebooks declare which claims they show and
    which of their tables measure them (gla.chapters), and every claim is covered."""
    from gla.chapters import book_chapters, claim_sources

    sources = claim_sources(book_chapters())
    assert set(sources) == set(list_claims())
    assert all(s.chapter and s.evidence for s in sources.values())
    assert all(e.split("/", 1)[0] in {c.stem for c in book_chapters()} for s in sources.values() for e in s.evidence)


def test_claim_sources_follow_the_declared_preference_then_the_books_order(tmp_path):
    from gla.chapters import Chapter, ClaimSource, claim_sources

    chapters = [Chapter("01_a", shows=("label_bias",), measures={"a.csv": {"label_bias": 1, "debiasing_helps": 2}}),
                Chapter("02_b", measures={"many_shot.csv": {"label_bias": 2, "debiasing_helps": 1}}),
                Chapter("03_c", shows=("debiasing_helps",))]
    sources = claim_sources(chapters)
    assert sources["label_bias"] == ClaimSource("01_a", ("01_a/a.csv", "02_b/many_shot.csv"))
    assert sources["debiasing_helps"] == ClaimSource("03_c", ("02_b/many_shot.csv", "01_a/a.csv"))
    # a results folder laid out as those chapters write it is checked by what they declare
    write(tmp_path, {"02_b/many_shot.csv": many_shot()})
    df = by_id(check_claims(tmp_path, sources=sources))
    assert df.loc["debiasing_helps", "chapter"] == "03_c" and df.loc["debiasing_helps", "verdict"] == HOLDS
    assert df.loc["label_bias", "evidence"] == "02_b/many_shot.csv"
    assert df.loc["few_shot_gain", "detail"] == "no chapter declares a table that measures it"
