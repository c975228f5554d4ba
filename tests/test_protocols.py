"""The protocols: tidy rows with fixed columns, typed outputs, the procedure's settings in
every row, seeds that change the model, and the test split never used for a choice."""

import json

import pandas as pd
import pytest
import torch
from PIL import Image

import gla.protocols as pr
import gla.protocols.common as common
from gla.estimators import MODEL_PRIOR, list_estimators, make_estimator
from gla.finetune import FinetuneConfig
from gla.protocols import Method, PromptRecipe, ProtocolSettings, RunConfig
from gla.world import WorldConfig

TINY = FinetuneConfig(epochs=1, lr=1e-3, batch_size=64, warmup_steps=1)
MANY = {Method.ZERO_SHOT, Method.DEBIASED, Method.FINE_TUNED, Method.WISE_FT, Method.WISE_FT_VAL, Method.ENSEMBLE,
        Method.GLA}
FEW = {Method.ZERO_SHOT, Method.LINEAR_PROBE, Method.COOP, Method.PROMPT_TUNING, Method.ENSEMBLE, Method.GLA}


def world_config(tmp_path, scale):
    return RunConfig(cache_dir=tmp_path, progress=False, dataset_options={"world": WorldConfig(), "scale": scale})


@pytest.fixture
def spy(monkeypatch):
    """Record every split a choice is made on, and every prior/temperature fit."""
    seen = {"choices": [], "fits": 0, "temps": 0}
    orig_choose, orig_make, orig_temp = common.choose_on, common.make_estimator, common._fit_temperature

    def choose(split, what):
        seen["choices"].append((split, what))
        return orig_choose(split, what)

    def make(*a, **kw):
        seen["fits"] += 1
        return orig_make(*a, **kw)

    def temp(logits, labels, **kw):
        seen["temps"] += 1
        return orig_temp(logits, labels, **kw)

    monkeypatch.setattr(common, "choose_on", choose)
    monkeypatch.setattr(common, "make_estimator", make)
    monkeypatch.setattr(common, "_fit_temperature", temp)
    for mod in ("gla.protocols.few_shot",):
        monkeypatch.setattr(f"{mod}.choose_on", choose)
    return seen


def assert_no_test_choices(seen):
    assert seen["choices"], "no choice was recorded"
    assert all(not s.startswith("test") for s, _ in seen["choices"]), seen["choices"]
    n_prior = sum(w == "the prior" for _, w in seen["choices"])
    n_temp = sum(w == "a temperature" for _, w in seen["choices"])
    # Every fit went through the guarded helpers.
    assert seen["fits"] == n_prior and seen["temps"] == n_temp


def test_guard_refuses_test_data():
    out = pr.Outputs(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]), "test")
    for call in (lambda: pr.fit_prior(out), lambda: pr.fit_temperature(out), lambda: pr.choose_alpha({0.5: out})):
        with pytest.raises(pr.TestSplitUsedError):
            call()


def test_settings_are_validated_and_resolve_the_paper_defaults(tmp_path):
    with pytest.raises(ValueError, match="protocol"):
        ProtocolSettings(protocol="official")
    with pytest.raises(ValueError, match="templates"):
        ProtocolSettings(templates="clip")
    with pytest.raises(FileNotFoundError, match="prior_file"):
        ProtocolSettings(prior_file=str(tmp_path / "missing.pt"))
    paper, exact = ProtocolSettings(), ProtocolSettings(protocol="exact")
    assert (paper.estimator_id, paper.temperature_method) == ("official", "official")
    assert (exact.estimator_id, exact.temperature_method) == ("exact", "exact")
    # The official many-shot code applies no log p_s on ImageNet (treated as balanced).
    assert paper.source_prior_for("imagenet") == "uniform" and exact.source_prior_for("imagenet") == "counts"
    assert paper.source_prior_for("world-main") == "counts"
    assert ProtocolSettings(source_prior="counts").source_prior_for("imagenet") == "counts"


@pytest.mark.parametrize("estimator", list_estimators(estimates=MODEL_PRIOR))
def test_any_registered_estimator_of_the_prior_serves_a_protocol(estimator):
    from dataclasses import replace

    from tests.conftest import planted_logits

    z, y, _ = planted_logits(20, 5, seed=1)
    settings = ProtocolSettings(estimator=estimator)
    assert settings.estimator_id == estimator and settings.columns()["prior_source"] == estimator
    assert replace(settings, protocol="exact").estimator_id == estimator  # an explicit id stays
    fit = pr.fit_prior(pr.Outputs(z, y, "val"), settings, temperature=2.0)
    want = make_estimator(estimator).fit(z.double() / 2.0, y)
    assert fit.source == estimator and torch.equal(fit.log_prior, want.log_prior_.float())
    assert fit.diagnostics == pytest.approx({k: float(v) for k, v in want.diagnostics_.as_dict().items()},
                                            nan_ok=True)
    # without an id the protocol decides, also after replace()
    assert replace(ProtocolSettings(), protocol="exact").estimator_id == "exact"


def test_settings_refuse_an_unknown_estimator_and_one_of_the_target_distribution():
    with pytest.raises(ValueError, match="estimator: expected the id of an estimator of the model's prior"):
        ProtocolSettings(estimator="exactly")
    with pytest.raises(ValueError, match="target label distribution"):
        ProtocolSettings(estimator="em")


def test_a_given_prior_file_is_normalised_and_its_sum_reported(tmp_path):
    q = torch.tensor([0.4, 0.3, 0.104])  # sums to 0.804, like the released ImageNet q.pt
    torch.save({"q": q}, tmp_path / "q.pt")
    given = pr.load_prior_file(tmp_path / "q.pt")
    log_q, total = given.log_prior, given.original_sum
    assert total == pytest.approx(0.804, abs=1e-6)
    assert float(torch.logsumexp(log_q, 0)) == pytest.approx(0.0, abs=1e-9)
    assert torch.allclose(log_q.exp(), (q / q.sum()).double(), atol=1e-9)
    fit = pr.fit_prior(pr.Outputs(torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2]), "val"),
                       ProtocolSettings(prior_file=str(tmp_path / "q.pt")))
    assert fit.source == "file:q.pt" and fit.diagnostics["raw_sum"] == pytest.approx(0.804, abs=1e-6)
    torch.save(torch.tensor([0.5, -0.1]), tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="positive finite"):
        pr.load_prior_file(tmp_path / "bad.pt")
    torch.save(torch.tensor([0.5, 0.5]), tmp_path / "two.pt")
    with pytest.raises(ValueError, match="3 classes"):
        pr.fit_prior(pr.Outputs(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]), "val"),
                     ProtocolSettings(prior_file=str(tmp_path / "two.pt")))


def test_a_search_that_cannot_match_is_recorded_not_fatal():
    # Perfect accuracy: no temperature matches; the protocols go on with T = 1 and record it.
    logits = torch.eye(3).repeat(4, 1) * 5
    t = pr.fit_temperature(pr.Outputs(logits, torch.arange(3).repeat(4), "val"))
    assert t.converged is False and t.temperature == 1.0 and t.reason


def test_many_shot_world(smoke_checkpoint, tmp_path, spy):
    config = world_config(tmp_path, 0.05)
    res = pr.run_many_shot("gla-world-tiny", str(smoke_checkpoint), "world-main", shifted=["world-main-rendition"],
                           recipe=TINY, alphas=(0.0, 0.5, 1.0), config=config)
    df, out = res.table, res.outputs
    assert_no_test_choices(spy)
    assert list(df.columns[:len(pr.COLUMNS)]) == list(pr.COLUMNS)
    main = df[(df.split == "test") & (df.method != Method.WISE_FT_SWEEP)]
    assert set(main.method) == MANY
    assert set(df[df.split == "test:world-main-rendition"].method) == MANY
    assert len(df[df.method == Method.WISE_FT_SWEEP]) == 6
    # alpha is a column, not part of a method name
    assert main.set_index("method").loc[Method.WISE_FT, "alpha"] == 0.5
    assert main.set_index("method").loc[Method.WISE_FT_VAL, "alpha"] == out.alpha
    assert set(df.protocol) == {"paper"} and set(df.prior_source) == {"official"}
    assert df.top1.between(0, 1).all()
    # typed outputs
    assert set(out.test.logits) == MANY and out.test.labels.shape[0] == out.test.logits[Method.GLA].shape[0]
    assert out.prior.source == "official" and float(torch.logsumexp(out.log_prior, 0)) == pytest.approx(0, abs=1e-5)
    assert set(out.eval_sets) == {"world-main", "world-main-rendition"}
    csv, js = pr.save_results(df, tmp_path / "out", "many_shot")
    back = json.loads(js.read_text())
    assert len(pd.read_csv(csv)) == len(df) and len(back) == len(df)
    # full precision in JSON: a tiny gradient norm is not rounded to 0
    assert back[0]["prior_grad_norm"] == pytest.approx(float(df.prior_grad_norm.iloc[0]), rel=1e-12)
    # Cached: a rerun reads fine-tuned weights and logits from the cache and agrees.
    again = pr.run_many_shot("gla-world-tiny", str(smoke_checkpoint), "world-main",
                             shifted=["world-main-rendition"], recipe=TINY, alphas=(0.0, 0.5, 1.0), config=config)
    pd.testing.assert_frame_equal(df, again.table)
    # Another seed is another fine-tuned model (the seed is in the recipe and its cache key).
    other = pr.run_many_shot("gla-world-tiny", str(smoke_checkpoint), "world-main", recipe=TINY, alphas=(0.5,),
                             seed=1, config=config)
    ft = lambda t: t.table.set_index(["split", "method"]).loc[("test", Method.FINE_TUNED), "top1"]  # noqa: E731
    assert set(other.table.seed) == {1}
    assert not torch.equal(other.outputs.test.logits[Method.FINE_TUNED], out.test.logits[Method.FINE_TUNED])
    assert 0 <= ft(other) <= 1


def test_exact_protocol_differs_only_by_the_solver(smoke_checkpoint, tmp_path):
    config = world_config(tmp_path, 0.05)
    runs = {p: pr.run_many_shot("gla-world-tiny", str(smoke_checkpoint), "world-main", recipe=TINY, alphas=(0.5,),
                                settings=ProtocolSettings(protocol=p), config=config) for p in ("paper", "exact")}
    paper, exact = runs["paper"].outputs, runs["exact"].outputs
    assert exact.prior.source == "exact" and exact.prior.diagnostics["grad_norm"] < 1e-6
    # same models, so zero-shot and fine-tuned logits agree; the prior differs
    for m in (Method.ZERO_SHOT, Method.FINE_TUNED):
        assert torch.equal(paper.test.logits[m], exact.test.logits[m])
    assert not torch.allclose(paper.log_prior, exact.log_prior)


def test_few_shot_world(smoke_checkpoint, tmp_path, spy):
    res = pr.run_few_shot("gla-world-tiny", str(smoke_checkpoint), ["world-patterns"], shots=(1, 4), seeds=(1, 2),
                          prompts=PromptRecipe(epochs=3, coop_n_ctx=4), config=world_config(tmp_path, 0.25))
    df = res.table
    # typed: the fits behind each draw's rows
    assert set(res.fits) == {("world-patterns", k, s) for k in (1, 4) for s in (1, 2)}
    fit = res.fits[("world-patterns", 4, 2)]
    row = df[(df.method == Method.GLA) & (df.shots == 4) & (df.seed == 2)].iloc[0]
    assert (row.t_zs, row.t_ft, row.prompt_epoch) == (fit.t_zs.temperature, fit.t_ft.temperature, fit.prompt_epoch)
    assert row.prior_objective == fit.prior.columns()["prior_objective"] and fit.prior.split == "train+val"
    assert_no_test_choices(spy)
    assert set(df.method) == FEW
    assert len(df) == 6 * 2 * 2 and set(df.shots) == {1, 4} and set(df.seed) == {1, 2}
    gla_rows = df[df.method == Method.GLA]
    assert gla_rows.t_zs_converged.notna().all() and gla_rows.t_ft_converged.notna().all()
    # a search that did not converge falls back to T = 1, and says so
    assert (gla_rows.loc[~gla_rows.t_zs_converged.astype(bool), "t_zs"] == 1.0).all()
    assert df[df.method == Method.PROMPT_TUNING].prompt_epoch.between(0, 3).all()
    assert set(df.sampling) <= {"coop"} and set(df.protocol) == {"paper"}
    with pytest.raises(ValueError, match="not among the datasets"):
        pr.run_few_shot("gla-world-tiny", str(smoke_checkpoint), ["world-patterns"], shots=(1,), seeds=(1,),
                        shifted={"world-main": ["world-main-sketch"]}, config=world_config(tmp_path, 0.25))


def test_long_tail_world(smoke_checkpoint, tmp_path, spy):
    res = pr.run_long_tail("gla-world-tiny", str(smoke_checkpoint), "world-lt", recipe=TINY,
                           config=world_config(tmp_path, 0.2))
    df = res.table
    assert res.prior.source == "official" and len(res.train_counts) == len(res.log_source_prior)
    assert float(torch.logsumexp(res.log_source_prior.double(), 0)) == pytest.approx(0, abs=1e-6)
    assert_no_test_choices(spy)
    assert {"many", "medium", "few", "mean_per_class"} <= set(df.columns)
    assert set(df.method) == {Method.ZERO_SHOT, Method.DEBIASED, Method.FINE_TUNED_CE, Method.FINE_TUNED_CE_ADJUSTED,
                              Method.FINE_TUNED_LA_LOSS, Method.WISE_FT, Method.GLA}
    assert set(df.source_prior) == {"counts"}


def test_dataset_options_reach_only_the_datasets_that_declare_them(tmp_path, tiny_openclip, real_root):
    # A world option in the run's options must not reach a real dataset's loader.
    config = RunConfig(cache_dir=tmp_path, data_root=str(real_root), progress=False,
                       dataset_options={"world": WorldConfig(), "scale": 0.1})
    assert len(config.load("dtd", "train")) == 24


def _img(path, colour):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 40), colour).save(path)


@pytest.fixture
def real_root(tmp_path, objectnet_fixture):
    """ImageNet-LT and CoOp (DTD) fixtures in their exact on-disk formats."""
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
    wnids = ["n01440764", "n01443537", "n01484850"]
    lt = {"train": [9, 4, 2], "val": [3, 3, 3], "test": [3, 3, 3]}
    (tmp_path / "ImageNet_LT").mkdir()
    for split, counts in lt.items():
        lines = []
        for y, (w, n) in enumerate(zip(wnids, counts)):
            for i in range(n):
                rel = f"{'val' if split == 'test' else 'train'}/{w}/{w}_{split}_{i}.JPEG"
                _img(tmp_path / "imagenet" / "images" / rel, colours[y])
                lines.append(f"{rel} {y}")
        (tmp_path / "ImageNet_LT" / f"ImageNet_LT_{split}.txt").write_text("\n".join(lines))
    split_json = {}
    for split, n in [("train", 8), ("val", 4), ("test", 3)]:
        split_json[split] = []
        for y, c in enumerate(["banded", "blotchy", "braided"]):
            for i in range(n):
                rel = f"{c}/{split}_{i}.jpg"
                _img(tmp_path / "dtd" / "images" / rel, colours[y])
                split_json[split].append([rel, y, c])
    (tmp_path / "dtd" / "split_zhou_DescribableTextures.json").write_text(json.dumps(split_json))
    objectnet_fixture(tmp_path)
    return tmp_path


def test_real_path_end_to_end_on_fixtures(tiny_openclip, real_root, tmp_path, spy):
    config = RunConfig(cache_dir=tmp_path / "c", data_root=str(real_root), progress=False)
    recipe = FinetuneConfig(epochs=1, lr=1e-4, batch_size=8, warmup_steps=1)
    lt = pr.run_long_tail(tiny_openclip, None, "imagenet_lt", recipe=recipe, config=config).table
    fs = pr.run_few_shot(tiny_openclip, None, ["dtd"], shots=(2,), seeds=(1,), prompts=PromptRecipe(epochs=2, coop_n_ctx=4),
                         config=config).table
    ms = pr.run_many_shot(tiny_openclip, None, "imagenet_lt", recipe=recipe, alphas=(0.0, 1.0), shifted=["objectnet"],
                          config=config).table
    assert_no_test_choices(spy)
    assert len(lt) == 7 and len(fs) == 6 and ((ms.split == "test") & (ms.method != Method.WISE_FT_SWEEP)).sum() == 7
    on = ms[ms.split == "test:objectnet"]
    assert len(on) == 7 and on.top1.between(0, 1).all()
    assert set(lt.dataset) == {"imagenet_lt"} and set(fs.dataset) == {"dtd"}


def test_a_given_wise_ft_checkpoint_is_evaluated_without_fine_tuning(tiny_openclip, real_root, tmp_path, monkeypatch):
    """WiSE-FT saves a pickled ImageClassifier (mlfoundations/wise-ft src/models/modeling.py): keys
    image_encoder.model.<CLIP key> and classification_head.weight/bias. Here its state dict, with a
    head whose bias always picks class 0."""
    import open_clip

    clip = open_clip.create_model(tiny_openclip)
    state = {f"image_encoder.model.{k}": v for k, v in clip.state_dict().items()}
    k, d = 3, clip.visual.output_dim
    state["classification_head.weight"] = torch.zeros(k, d)
    state["classification_head.bias"] = torch.tensor([5.0, 0.0, 0.0])
    torch.save(state, tmp_path / "wise.pt")
    monkeypatch.setattr(common, "finetune", lambda *a, **kw: pytest.fail("a given model must not be fine-tuned"))
    config = RunConfig(cache_dir=tmp_path / "c", data_root=str(real_root), progress=False)
    res = pr.run_many_shot(tiny_openclip, None, "imagenet_lt", alphas=(0.5,), finetuned=str(tmp_path / "wise.pt"),
                           config=config)
    test = res.outputs.test
    assert bool((test.logits[Method.FINE_TUNED].argmax(1) == 0).all())
    ft = res.table.set_index(["split", "method"]).loc[("test", Method.FINE_TUNED)]
    assert ft.top1 == pytest.approx(float((test.labels == 0).double().mean()))
    assert json.loads(ft.recipe) == {"finetuned": "wise.pt"}
    torch.save({"classification_head.weight": torch.zeros(7, d), "classification_head.bias": torch.zeros(7)},
               tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a fine-tuned model of this backbone"):
        pr.run_many_shot(tiny_openclip, None, "imagenet_lt", alphas=(0.5,), finetuned=str(tmp_path / "other.pt"),
                         config=config)


def test_compare_protocols_sets_the_two_tables_side_by_side():
    import pandas as pd

    from gla.protocols import compare_protocols

    def rows(protocol, gla_top1):
        return pd.DataFrame([
            {"dataset": "d", "shots": 1, "seed": s, "method": m, "split": split, "top1": v, "protocol": protocol}
            for s in (1, 2) for m, v in (("zero_shot", 0.5), ("gla", gla_top1 + 0.01 * s))
            for split in ("val", "test")])

    out = compare_protocols(rows("paper", 0.60), rows("exact", 0.62))
    got = out.set_index("method")
    assert list(out.columns) == ["dataset", "shots", "method", "paper", "exact", "difference"]
    assert got.loc["zero_shot", "difference"] == pytest.approx(0.0)
    assert got.loc["gla", "paper"] == pytest.approx(61.5) and got.loc["gla", "difference"] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="expected rows of protocol 'exact'"):
        compare_protocols(rows("paper", 0.6), rows("paper", 0.6))
    with pytest.raises(ValueError, match="none of"):
        compare_protocols(rows("paper", 0.6), rows("exact", 0.6), by=("backbone",))


def test_chapter_09_compares_few_shot_rows_by_default_only_where_prompts_train_on_features():
    """The world's recipe (cached features) compares the chapter's task; GLA's end-to-end
    recipe for an open_clip backbone (minutes per run) compares none unless named."""
    from gla.protocols import PAPER_PROMPTS, PromptRecipe, comparison_few_shot_dataset

    assert comparison_few_shot_dataset("default", "world-main", PromptRecipe(trainer="features")) == "world-main"
    assert comparison_few_shot_dataset("default", "imagenet", PAPER_PROMPTS) is None
    assert comparison_few_shot_dataset("dtd", "imagenet", PAPER_PROMPTS) == "dtd"
    assert comparison_few_shot_dataset(None, "world-main", PromptRecipe()) is None
