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
    assert set(pub.method) == {"zero_shot", "fine_tuned"} and pub.source.str.len().gt(0).all()
    assert report.published(backbone="gla-world-tiny").empty


def _many_shot_rows():
    from gla.protocols import Method

    rows = []
    for i, m in enumerate([Method.GLA, Method.ZERO_SHOT, Method.ENSEMBLE, Method.FINE_TUNED]):
        rows.append({"backbone": "b", "pretrained": "p", "method": m, "split": "test", "eval_set": "x",
                     "top1": 0.5 + 0.1 * i, "head": 0.6, "medium": 0.5, "tail": 0.2 + 0.1 * i})
    return pd.DataFrame(rows)


def test_method_table_orders_methods_and_names_them_for_display():
    t = report.method_table(_many_shot_rows())
    assert list(t.index) == ["zero-shot", "fine-tuned", "ensemble", "GLA"]  # the book's order, not the rows'
    assert t.loc["GLA", "top1"] == pytest.approx(50.0) and list(t.columns) == ["top1", "head", "medium", "tail"]
    t2 = report.method_table(_many_shot_rows(), index=("backbone", "pretrained"))
    assert t2.index.names == ["model", "method"] and t2.index[-1] == ("b (p)", "GLA")


# --------------------------------------------------------------------------- model labels


def _world_checkpoint(path, seed, **extra):
    """A file as gla.world.pretrain writes it: weights, vocabulary and the settings it was made with."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {"w": torch.zeros(2)}, "vocabulary": ["a", "b"], "model": "gla-world-tiny",
                "world_config": {"seed": seed, "n_concepts": 8}, "pretrain_config": {"seed": seed}, **extra}, path)
    return path


def test_model_labels_name_models_not_files(tmp_path):
    """One rule: an open_clip name with its tag or its checkpoint's file name; a provider's label."""
    assert report.model_label("ViT-B-32", "laion2b_s34b_b79k") == "ViT-B-32 (laion2b_s34b_b79k)"
    assert report.model_label("ViT-B-32", "/machine/ckpt/b32.pt") == "ViT-B-32 (b32.pt)"
    assert report.model_label("RN50", None) == report.model_label("RN50", float("nan")) == "RN50 (random weights)"
    assert report.weights_label("C:\\ckpt\\rn50.pt") == "rn50.pt" and report.weights_label("openai") == "openai"
    # the world's CLIP, from what its checkpoint recorded
    cache = _world_checkpoint(tmp_path / "cache" / "world" / "clip-d6b70e19015990cc.pt", 3)
    assert report.model_label("gla-world-tiny", str(cache)) == "the world's CLIP (seed 3)"
    named = _world_checkpoint(tmp_path / "named.pt", 1, preset="photo-only")
    assert report.model_label("gla-world-tiny", str(named)) == "the world's CLIP (photo-only preset, seed 1)"
    assert report.model_label("gla-world-tiny", "") == "the world's CLIP (random weights)"


def test_shipped_world_checkpoints_are_named_by_preset_and_seed(tmp_path):
    """gla/world/checkpoints/<preset>-seed<s>.pt: from the manifest beside it, from the file's
    settings, or from its name alone where the file is not on this machine."""
    import json

    shipped = _world_checkpoint(tmp_path / "checkpoints" / "default-seed0.pt", 0)
    assert report.model_label("gla-world-tiny", str(shipped)) == "the world's CLIP (default preset, seed 0)"
    (tmp_path / "checkpoints" / "manifest.json").write_text(json.dumps(
        {"checkpoints": [{"preset": "photo-only", "seed": 0, "file": "default-seed0.pt"}]}))
    relabelled = _world_checkpoint(tmp_path / "checkpoints" / "default-seed0.pt", 0)  # a new file: read again
    assert report.model_label("gla-world-tiny", str(relabelled)) == "the world's CLIP (photo-only preset, seed 0)"
    elsewhere = "/other/machine/gla/world/checkpoints/default-seed2.pt"
    assert report.model_label("gla-world-tiny", elsewhere) == "the world's CLIP (default preset, seed 2)"
    # a file that is not a world checkpoint, or a path that says nothing: the file's name
    other = tmp_path / "other.pt"
    other.write_bytes(b"not a checkpoint")
    assert report.model_label("gla-world-tiny", str(other)) == "gla-world-tiny (other.pt)"
    assert report.model_label("gla-world-tiny", "/gone/clip-0123.pt") == "gla-world-tiny (clip-0123.pt)"


def test_a_providers_label_is_asked_first(monkeypatch):
    """A plug-in names its own models (gla.backbones.register_backbone_label); None leaves a
    name to the default rule, and the longest registered prefix wins."""
    from gla import backbones

    monkeypatch.setattr(backbones, "_labels", dict(backbones._labels))
    backbones.register_backbone_label("toy", lambda name, pre: f"the toy model ({pre or 'untrained'})")
    backbones.register_backbone_label("toy-big", lambda name, pre: None)
    assert report.model_label("toy-small", "") == "the toy model (untrained)"
    assert report.model_label("toy-big", "w.pt") == "toy-big (w.pt)"
    with pytest.raises(ValueError, match="prefix"):
        backbones.register_backbone_label("", lambda n, p: None)
    with pytest.raises(TypeError, match="label"):
        backbones.register_backbone_label("toy", "not callable")


def test_the_many_shot_table_shows_model_labels_not_paths(tmp_path):
    """The many-shot chapter's table (index backbone and pretrained) names each model once."""
    cache = _world_checkpoint(tmp_path / "world" / "clip-d6b70e19015990cc.pt", 0)
    df = pd.concat([_many_shot_rows().assign(backbone="gla-world-tiny", pretrained=str(cache)),
                    _many_shot_rows().assign(backbone="ViT-B-32", pretrained="/ckpt/b32.pt")])
    t = report.method_table(df, index=("backbone", "pretrained"))
    assert list(dict.fromkeys(t.index.get_level_values("model"))) == ["the world's CLIP (seed 0)",
                                                                        "ViT-B-32 (b32.pt)"]
    assert not any("/" in str(v) or ".pt" in str(v) and "b32" not in str(v) for v in t.index.to_flat_index())


def test_every_method_has_one_style_everywhere():
    from gla.protocols import Method

    styles = {m: report.method_style(m) for m in Method}
    assert styles[Method.GLA] == report.method_style("GLA")  # by identifier or by display name
    assert all(s["color"].startswith("#") for s in styles.values())
    shown = [Method.ZERO_SHOT, Method.DEBIASED, Method.FINE_TUNED, Method.WISE_FT, Method.ENSEMBLE, Method.GLA,
             Method.LINEAR_PROBE, Method.COOP, Method.PROMPT_TUNING]
    assert len({styles[m]["color"] for m in shown}) == len(shown) - 1  # prompt tuning shares fine-tuned's colour
    assert report.order_methods(["zz", Method.GLA, Method.ZERO_SHOT]) == [Method.ZERO_SHOT, Method.GLA, "zz"]
    assert report.method_style("zz")["label"] == "zz" and report.method_label("zz") == "zz"


def test_a_method_is_its_identifier_and_carries_label_order_and_style():
    import json

    from gla.protocols import Method

    # the identifiers are those of every results file written so far
    assert [m.value for m in Method] == [
        "zero_shot", "debiased_zero_shot", "linear_probe", "coop", "prompt_tuning", "fine_tuned", "fine_tuned_ce",
        "fine_tuned_ce_adjusted", "fine_tuned_la_loss", "wise_ft", "wise_ft_val", "wise_ft_sweep", "ensemble", "gla"]
    g = Method.GLA
    assert g == "gla" and str(g) == "gla" and f"{g}" == "gla" and json.dumps({"m": g}) == '{"m": "gla"}'
    assert {"gla": 1}[g] == 1 and Method("gla") is g and Method.find("GLA") is g and Method.find("nope") is None
    assert pd.Series([1], index=["gla"]).loc[g] == 1
    assert g.label == "GLA" and g.order == len(Method) - 1 and g.style["zorder"] == 3
    assert [m.order for m in Method] == list(range(len(Method)))
    assert g.style == {"color": g.colour, "marker": g.style["marker"], "label": "GLA", "zorder": 3}
    assert len({m.style["marker"] for m in Method}) == len(Method)


def test_pivot_and_group_bars(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from gla.protocols import Method

    df = _many_shot_rows()
    t = report.pivot_methods(df, "eval_set")
    assert list(t.index)[0] == Method.ZERO_SHOT and t.loc[Method.GLA, "x"] == pytest.approx(50.0)
    ax = report.group_bars(df)
    assert len(ax.patches) == 4 * 3
    svg = report.save_figure(ax.figure, tmp_path, "bars")
    assert svg.suffix == ".svg" and svg.is_file() and (tmp_path / "bars.png").is_file()


def test_few_shot_figure_has_a_large_average_panel_and_one_per_task():
    import matplotlib

    matplotlib.use("Agg")
    df = pd.DataFrame([{"dataset": d, "method": m, "shots": k, "seed": s, "top1": 0.5}
                       for d in ["a", "b", "c", "d"] for m in ["gla", "zero_shot"] for k in [1, 2] for s in [1, 2]])
    avg = report.average_over_datasets(df)
    fig = report.few_shot_figure(df, avg, ["a", "b", "c", "d"], cols=3)
    axes = fig.get_axes()
    assert len(axes) == 5 and axes[0].get_title() == "average over tasks"
    assert axes[0].get_position().width > 2.5 * axes[1].get_position().width


def test_estimator_bars_show_mean_and_spread():
    import matplotlib

    matplotlib.use("Agg")
    summary = pd.DataFrame({"estimator": ["exact", "official"], "debiased_top1_mean": [0.6, 0.5],
                            "debiased_top1_std": [0.01, 0.02], "gla_top1_mean": [0.7, 0.65],
                            "gla_top1_std": [0.0, 0.01]})
    ax = report.estimator_bars(summary)
    widths = sorted(round(p.get_width(), 6) for p in ax.patches)
    assert widths == [50.0, 60.0, 65.0, 70.0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["exact", "official"]


def test_direction_takes_the_word_from_the_sign():
    assert report.direction(1.2) == "higher" and report.direction(-0.3) == "lower"
    assert report.direction(0.04) == "the same" and report.direction(-0.05) == "the same"  # prints as 0.0
    assert report.direction(0.004, "above", "below", "level with", tol=0.001) == "above"
    assert report.direction(-2, positive="helps", negative="hurts", zero="does not change") == "hurts"


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "high", None])
def test_direction_rejects_what_is_not_a_finite_number(bad):
    with pytest.raises(ValueError, match="direction"):
        report.direction(bad)


def test_direction_rejects_a_negative_tolerance():
    with pytest.raises(ValueError, match="tol"):
        report.direction(1.0, tol=-1)


def test_glue_direction_glues_the_number_and_its_word(monkeypatch):
    import myst_nb

    glued = {}
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display=True: glued.__setitem__(name, value))
    assert report.glue_direction("gain", -1.5, "above", "below", "level with") is None  # nothing shown
    assert glued == {"gain": -1.5, "gain_word": "below"}


@pytest.mark.parametrize("words", [("upwards", "lower", "the same"), ("lower", "higher", "the same")])
def test_glue_direction_rejects_words_the_book_cannot_check(words):
    with pytest.raises(ValueError, match="DIRECTION_WORDS|signs"):
        report.glue_direction("x", 1.0, *words)


def test_direction_words_come_in_signed_sets():
    assert set(report.DIRECTION_WORDS.values()) == {-1, 0, 1}


def test_placeholder_figure_states_its_message(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    fig = report.placeholder_figure("The true prior is unknown.")
    svg = report.save_figure(fig, tmp_path, "missing")
    assert "The true prior is unknown." in svg.read_text() and (tmp_path / "missing.png").stat().st_size > 0
    with pytest.raises(ValueError, match="non-empty message"):
        report.placeholder_figure("  ")


def test_zipf_sweep_and_planted_prior_figures():
    import matplotlib
    import torch

    matplotlib.use("Agg")
    sweep = pd.DataFrame([{"world_zipf_exponent": a, "world_seed": s, "spearman_estimated_true": 0.1 * a,
                           "pearson_estimated_true": 0.2, "bias_slope": 0.5, "zero_shot_head": 0.8,
                           "zero_shot_tail": 0.4, "zero_shot_all": 0.6} for a in (2.0, 3.0) for s in (0, 1)])
    fig = report.zipf_sweep_figure(sweep, 17)
    left, right = fig.get_axes()
    assert {t.get_text() for t in left.get_legend().get_texts()} == {"Spearman", "Pearson", "slope"}
    assert {t.get_text() for t in right.get_legend().get_texts()} == {"head", "tail", "all"}
    assert "offset 17" in left.get_xlabel()
    study = pd.DataFrame([{"id": e, "planted": p, "images_per_class": k, "seed": 1, "error": 1.0 / k}
                          for e in ("exact", "official") for p in ("true^1", "random") for k in (1, 4)])
    fig = report.planted_prior_figure(study, torch.tensor([0.1, -0.1, 0.0]), torch.tensor([0.2, -0.2, 0.0]))
    scatter, lines = fig.get_axes()
    assert {t.get_text() for t in lines.get_legend().get_texts()} == {"true^1", "random"}
    assert len(lines.get_lines()) >= 2 and lines.get_xscale() == "log"


def test_seed_spread_note_gives_the_spread_of_each_quoted_number():
    from gla.report import seed_spread_note
    from gla.world.book import seed_spread

    spread = {"seeds": [0, 1, 2], "source": "a benchmark", "values": {"zero_shot": [60.0, 62.0, 64.0],
                                                                      "debiased": [63.0, 64.0, 68.0]}}
    text = seed_spread_note(spread, ["zero_shot", "debiasing_gain"], unmeasured=["GLA"])
    assert "seeds 0, 1 and 2 (a benchmark" in text
    assert "zero-shot top-1 moves by ± 2.0 points (from 60.0 to 64.0)" in text
    assert "the gain of debiasing moves by ± 1.0 points (from 2.0 to 4.0)" in text  # per seed: 3, 2, 4
    assert text.endswith("The spread of GLA over seeds has not been measured.")
    assert "one run" in seed_spread_note(None, ["zero_shot"])  # a real backbone: no spread measured
    assert "has not been measured" in seed_spread_note(spread, [], unmeasured=["the shifts"])
    with pytest.raises(ValueError, match="no spread for 'fine_tuned'"):
        seed_spread_note(spread, ["fine_tuned"])
    # The default world's shipped measurements (gla/world/regime.json, benchmarks/world_regime.py).
    from gla.world.regime import shipped_regimes

    world = seed_spread()
    recs = shipped_regimes()["default"]["per_seed"]
    assert world["seeds"] == [0, 1, 2] and world["values"]["zero_shot"] == [r["top1_zero_shot"] for r in recs]
    lo, hi = min(world["values"]["zero_shot"]), max(world["values"]["zero_shot"])
    assert f"(from {lo:.1f} to {hi:.1f})" in seed_spread_note(world, ["zero_shot", "gla", "ensemble", "wise_ft"])


def test_the_zipf_sweep_finding_says_what_ran():
    """Chapter 10's sentence: the numbers of a sweep, or, for a backbone whose pretraining
    prior is unknown, one sentence saying the sweep needs the world (never 'nan')."""
    from gla.report import zipf_sweep_finding

    sweep = pd.DataFrame({"world_zipf_exponent": [2.0, 2.0, 4.0, 4.0], "world_seed": [0, 1, 0, 1],
                          "spearman_estimated_true": [0.2, 0.4, 0.8, 0.9], "bias_slope": [0.1, 0.3, 0.5, 0.7],
                          "head_minus_tail": [0.05, 0.07, 0.3, 0.32]})
    text = zipf_sweep_finding(sweep, offset=10, images=25600)
    assert text.startswith("Over 4 pretrained worlds (25600 images each)")
    assert "is 0.30 at exponent 2.0 (offset 10) and 0.85 at 4.0" in text and "from 0.20 to 0.60" in text
    assert "from 6.0 to 31.0 points" in text
    for empty in (None, sweep.iloc[:0]):
        text = zipf_sweep_finding(empty, backbone="ViT-B-32")
        assert text.count(". ") == 0 and text.endswith(".") and "needs the miniature world" in text
        assert "`ViT-B-32`" in text and "nan" not in text.lower()


@pytest.mark.parametrize("gain_ft, gain_zs, start, says", [
    (1.2, 3.0, "As in the paper", "beats both models it combines"),
    (1.2, -0.6, "Unlike the paper", "beats the fine-tuned model but not the zero-shot one"),
    (-0.6, 2.0, "Unlike the paper", "beats the zero-shot model but not the fine-tuned one"),
    (-0.6, -2.0, "Unlike the paper", "beats neither model"),
    (0.04, 2.0, "Unlike the paper", "ties with a model it combines"),  # prints as +0.0: "level with"
])
def test_the_many_shot_sentence_follows_the_direction_words(gain_ft, gain_zs, start, says):
    text = report.many_shot_vs_paper(gain_ft, gain_zs)
    assert text.startswith(start) and says in text and "1.5 points over fine-tuning" in text


@pytest.mark.parametrize("gain, start, says", [(0.8, "as in the paper", "improves zero-shot accuracy (Section 4)."),
                                               (-0.8, "unlike the paper", "is not what hurts it."),
                                               (0.02, "unlike the paper", "makes no difference.")])
def test_the_debiasing_clause_follows_the_direction_word(gain, start, says):
    text = report.debiasing_vs_paper(gain)
    assert text.startswith(start) and text.endswith(says)
    assert report.direction(gain, "raises", "lowers", "leaves unchanged") in ("raises", "lowers", "leaves unchanged")


def test_glue_markdown_glues_without_display(monkeypatch):
    import sys
    import types

    glued = {}
    fake = types.SimpleNamespace(glue=lambda key, value, display=True: glued.update({key: (value, display)}))
    monkeypatch.setitem(sys.modules, "myst_nb", fake)
    assert report.glue_markdown("k", "*text*") is None
    value, display = glued["k"]
    assert value.data == "*text*" and display is False


@pytest.mark.parametrize("gap, says", [(4.0, "This world shows what the paper calls label bias"),
                                       (-4.0, "This is the opposite of the paper's label bias"),
                                       (0.01, "this run shows no gap between head and tail")])
def test_the_label_bias_finding_follows_the_direction_word(gap, says):
    text = report.label_bias_finding(gap)
    assert text.startswith(says) if "no gap" not in says else says in text
    assert ("shows what the paper calls label bias" in text) == (report.direction(gap) == "higher")

# --------------------------------------------------------------------------- tables that fit the page


def _claims_like():
    return pd.DataFrame({
        "claim": ["Zero-shot models are biased towards the classes frequent in pretraining.",
                  "Many-shot: GLA beats the end-to-end fine-tuned model (top-1)."],
        "chapter": ["02_estimating_the_prior", "03_many_shot"], "measured": [25.67, -0.4],
        "verdict": ["holds", "does not hold"]})


def test_fit_tables_lets_prose_wrap_and_keeps_numbers_and_verdicts_on_one_line():
    import re

    from gla.report.html import fit_tables

    html = fit_tables(_claims_like().style.hide(axis="index").to_html())
    cells = re.findall(r'<td[^>]*class="([^"]*)"[^>]*>(.*?)</td>', html)
    by_text = {re.sub("<wbr>", "", text): classes.split() for classes, text in cells}
    assert "gla-text" in by_text["Many-shot: GLA beats the end-to-end fine-tuned model (top-1)."]
    assert "gla-text" not in by_text["does not hold"] and "gla-text" not in by_text["-0.400000"]
    # an identifier breaks only after its underscores; a short one not at all
    assert "02_<wbr>estimating_<wbr>the_<wbr>prior" in html and "gla-name" in by_text["02_estimating_the_prior"]
    assert "03_many_shot<" in html and "gla-name" not in by_text["03_many_shot"]
    # the first cell of each row is its label (kept in view when the table scrolls sideways)
    assert all(("gla-key" in c) == (t.startswith(("Zero-shot", "Many-shot"))) for t, c in by_text.items())
    assert re.search(r'<table[^>]*class="gla-fit"', html)
    assert fit_tables(html) == html  # once is enough


def test_fit_tables_marks_the_label_of_a_multiindex_row_once():
    """The many-shot table: a model label spanning its methods' rows, then one row per method."""
    import re

    from gla.report.html import fit_tables

    t = pd.DataFrame({"top1": [19.6, 17.6, 30.1]}, index=pd.MultiIndex.from_tuples(
        [("the world's CLIP (seed 0)", "zero-shot"), ("the world's CLIP (seed 0)", "GLA"), ("ViT-B-32 (b32.pt)", "GLA")],
        names=["model", "method"]))
    html = fit_tables(t.to_html())
    keys = re.findall(r'<th[^>]*class="gla-key"[^>]*>([^<]*)</th>', html)
    assert keys[-2:] == ["the world's CLIP (seed 0)", "ViT-B-32 (b32.pt)"]  # not the method under a spanning label
    assert 'class="dataframe gla-fit"' in html and "<td>19.6</td>" in html
    assert fit_tables("<p>no table</p>") == "<p>no table</p>"


def test_the_shift_sentence_says_whether_zero_shot_is_robust_as_clip_is():
    text = report.shift_robustness_finding(["world-main-sketch", "world-main-clutter", "world-main-rendition"], 5)
    assert text.startswith("The zero-shot model beats the fine-tuned one on 3 of the 5 shifted sets (`world-main-sketch`")
    assert "as real CLIP does on most of ImageNet's shifts" in text
    text = report.shift_robustness_finding(["world-main-sketch"], 2)  # a tie is not "most"
    assert "unlike real CLIP" in text and "(`world-main-sketch`)" in text
    assert "on 0 of the 5 shifted sets, unlike real CLIP" in report.shift_robustness_finding([], 5)
    assert report.shift_robustness_finding([], 0) == "No shifted set was evaluated."


def test_sets_where_ahead_lists_the_sets_one_method_wins_in_order():
    t = pd.DataFrame({"a": [50.0, 40.0], "b": [30.0, 35.0], "c": [20.0, 20.0]}, index=["zero_shot", "fine_tuned"])
    assert report.sets_where_ahead(t, "zero_shot", "fine_tuned", ["c", "a"]) == ["a"]  # a tie is not ahead
    assert report.sets_where_ahead(t, "fine_tuned", "zero_shot", ["a", "b", "c"]) == ["b"]
