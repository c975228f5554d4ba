import argparse
import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

import gla
import gla.protocols as ex
import gla.protocols.common
from gla.cli import build_parser, main
from gla.commands.run import parse_shifted, results_stem
from tests.conftest import planted_logits

GOLDEN = Path(__file__).parent / "data" / "golden" / "gla_combination_apply.json"


def test_gla_estimate_writes_the_prior_and_diagnostics(tmp_path, capsys):
    logits, labels, _ = planted_logits(50, 5, seed=0)
    torch.save({"logits": logits, "labels": labels}, tmp_path / "z.pt")
    assert main(["estimate", str(tmp_path / "z.pt"), "--out", str(tmp_path / "q.json")]) == 0
    rec = json.loads((tmp_path / "q.json").read_text())
    assert len(rec["log_prior"]) == 5 and rec["converged"] and rec["grad_norm"] < 1e-9
    torch.save({"wrong": 1}, tmp_path / "bad.pt")
    assert main(["estimate", str(tmp_path / "bad.pt")]) == 2
    assert "expected" in capsys.readouterr().err


def test_gla_world_info(capsys):
    assert main(["world", "info", "--n-concepts", "12", "--zipf", "1.0", "--zipf-offset", "2"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert len(info["concepts"]) == 12 and info["config"]["zipf_exponent"] == 1.0
    assert info["config"]["zipf_offset"] == 2.0
    prior = sorted((c["true_prior"] for c in info["concepts"]), reverse=True)
    assert abs(prior[0] / prior[-1] - 14 / 3) < 1e-9  # (12 + 2) / (1 + 2)
    assert abs(sum(c["true_prior"] for c in info["concepts"]) - 1) < 1e-9
    assert "world-main" in info["tasks"]


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"gla {gla.__version__}"
    with pytest.raises(SystemExit) as e:  # argparse's own flag, for the parser used elsewhere
        build_parser().parse_args(["--version"])
    assert e.value.code == 0


def test_gla_datasets_lists_the_registry_with_layouts(capsys):
    from gla.data import list_datasets

    assert main(["datasets", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(list_datasets())
    assert rows["world-main"]["kind"] == "world" and rows["world-main"]["splits"] == ["train", "val", "test"]
    assert rows["world-main"]["role"] == "ImageNet" and rows["world-main"]["layout"] == ""
    assert "images/train/<wnid>" in rows["imagenet"]["layout"]
    assert "ImageNet_LT_{train,val,test}.txt" in rows["imagenet_lt"]["layout"]
    assert "split_zhou_DescribableTextures.json" in rows["dtd"]["layout"]
    assert rows["imagenet_v2"]["splits"] == ["test"]
    assert all(r["layout"] for r in rows.values() if r["kind"] == "real")
    assert main(["datasets", "--kind", "real"]) == 0
    text = capsys.readouterr().out
    assert "imagenet_lt" in text and "world-main" not in text and "Places_LT_{train,val,test}.txt" in text


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sp in action.choices.items():
                yield name, sp
                yield from _subparsers(sp)


def test_every_option_has_help_and_its_default_in_the_help_text():
    parsers = [("gla", build_parser())] + list(_subparsers(build_parser()))
    assert {"run", "finetune", "apply", "datasets", "estimate", "book", "world", "pretrain"} <= {n for n, _ in parsers}
    for name, p in parsers:
        for a in p._actions:
            if isinstance(a, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
                continue
            assert a.help, f"{name}: {a.option_strings or a.dest} has no help"
            if a.option_strings and a.default not in (None, argparse.SUPPRESS, False):
                assert "default" in p._get_formatter()._get_help_string(a), (name, a.dest)
    ft = dict(_subparsers(build_parser()))["finetune"].format_help()
    assert "(default: ce)" in ft and "global batch size (default: the backbone's recipe)" in ft


def test_shifted_names_belong_to_the_first_dataset_or_to_the_named_one():
    assert parse_shifted(None, ["a"]) == {}
    assert parse_shifted(["s1", "s2"], ["a", "b"]) == {"a": ["s1", "s2"]}
    assert parse_shifted(["b=s3,s4", "s1"], ["a", "b"]) == {"b": ["s3", "s4"], "a": ["s1"]}
    with pytest.raises(ValueError, match="'c' is not one of --datasets"):
        parse_shifted(["c=s1"], ["a", "b"])


def test_results_stem_carries_backbone_and_pretrained(tmp_path):
    a = results_stem("many-shot", "ViT-B-16", "openai")
    b = results_stem("many-shot", "ViT-B-32", "openai")
    assert a == "many_shot_ViT-B-16_openai" and a != b
    (tmp_path / "x").mkdir()
    p1, p2 = tmp_path / "ft.pt", tmp_path / "x" / "ft.pt"
    assert results_stem("long-tail", "RN50", str(p1)) != results_stem("long-tail", "RN50", str(p2))
    assert results_stem("long-tail", "RN50", str(p1)).startswith("long_tail_RN50_ft-")


@pytest.fixture
def world_ckpt(tmp_path):
    """A file standing in for a world checkpoint: the protocol functions are replaced, so
    nothing reads it, and 'gla run' pretrains nothing for a checkpoint path."""
    p = tmp_path / "world.pt"
    p.write_bytes(b"stand-in")
    return p


def _fake_rows(backbone, dataset, value=0.5):
    return pd.DataFrame([{"backbone": backbone, "dataset": dataset, "method": "GLA", "split": "test", "top1": value,
                          "tiny": 3.25e-12}])


def _run_args(tmp_path, ckpt, protocol, *extra):
    return ["run", protocol, "--pretrained", str(ckpt), "--cache-dir", str(tmp_path / "cache"),
            "--out", str(tmp_path / "out"), "--quiet", *extra]


def test_gla_run_routes_shifted_sets_per_dataset_and_writes_each_dataset(tmp_path, world_ckpt, monkeypatch):
    calls = []

    def fake_many_shot(backbone, pretrained, dataset, *, shifted=(), recipe=None, **kw):
        calls.append((dataset, list(shifted), recipe.epochs))
        return SimpleNamespace(table=_fake_rows(backbone, dataset))

    monkeypatch.setattr(ex, "run_many_shot", fake_many_shot)
    args = _run_args(tmp_path, world_ckpt, "many-shot", "--datasets", "world-main", "world-small",
                     "--shifted", "world-main-sketch", "world-main=world-main-clutter,world-main-resample",
                     "--smoke", "--epochs", "3")
    assert main(args) == 0
    assert calls == [("world-main", ["world-main-sketch", "world-main-clutter", "world-main-resample"], 3),
                     ("world-small", [], 3)]  # --epochs wins over --smoke
    stem = results_stem("many-shot", "gla-world-tiny", str(world_ckpt))
    out = tmp_path / "out"
    for d in ("world-main", "world-small"):
        assert pd.read_csv(out / f"{stem}_{d}.csv")["dataset"].tolist() == [d]
    combined = pd.read_csv(out / f"{stem}.csv")
    assert combined["dataset"].tolist() == ["world-main", "world-small"]
    records = json.loads((out / f"{stem}.json").read_text())
    assert records[0]["tiny"] == 3.25e-12  # not rounded to 0
    settings = json.loads((out / f"{stem}.settings.json").read_text())
    assert settings["options"]["shifted"] == {"world-main": ["world-main-sketch", "world-main-clutter",
                                                             "world-main-resample"]}
    assert settings["recipe"]["epochs"] == 3 and settings["files"] == {"world-main": f"{stem}_world-main.csv",
                                                                       "world-small": f"{stem}_world-small.csv"}


def test_gla_run_few_shot_takes_its_options(tmp_path, world_ckpt, monkeypatch):
    calls = []

    def fake_few_shot(backbone, pretrained, datasets, **kw):
        calls.append((list(datasets), kw))
        return SimpleNamespace(table=_fake_rows(backbone, datasets[0]))

    monkeypatch.setattr(ex, "run_few_shot", fake_few_shot)
    args = _run_args(tmp_path, world_ckpt, "few-shot", "--datasets", "world-main", "world-colours",
                     "--shifted", "world-main-sketch", "--shots", "1", "2", "--seeds", "7", "--epochs", "5",
                     "--lr", "0.01")
    assert main(args) == 0
    (d1, kw1), (d2, kw2) = calls
    assert d1 == ["world-main"] and d2 == ["world-colours"]
    assert kw1["shifted"] == {"world-main": ["world-main-sketch"]} and kw2["shifted"] is None
    assert kw1["shots"] == [1, 2] and kw1["seeds"] == [7]
    assert kw1["prompts"].epochs == 5 and kw1["prompts"].lr == 0.01
    calls.clear()
    assert main(_run_args(tmp_path, world_ckpt, "few-shot", "--datasets", "world-shapes")) == 0
    default = ex.PromptRecipe()
    assert calls[0][1]["prompts"].epochs == default.epochs and calls[0][1]["shots"] == [1, 2, 4, 8, 16]


@pytest.mark.parametrize("protocol, extra, message", [
    ("many-shot", ["--shots", "4"], "only the few-shot protocol takes shots"),
    ("long-tail", ["--seeds", "1"], "only the few-shot protocol takes shots"),
    ("long-tail", ["--shifted", "world-main-sketch"], "long-tail protocol has no shifted"),
    ("many-shot", ["--epochs", "0"], "--epochs: expected a positive"),
    ("few-shot", ["--shots", "0"], "--shots: expected positive"),
    ("many-shot", ["world-main"], "world-main named more than once"),  # --datasets world-main world-main
    # values are checked once, by the library that takes them; the message names the option
    ("many-shot", ["--lr", "0"], "--lr: expected a positive learning rate, got 0.0"),
    ("long-tail", ["--batch-size", "0"], "--batch-size: expected a positive number, got 0"),
    ("few-shot", ["--epochs", "0"], "--epochs: expected a positive number of epochs, got 0"),
    ("many-shot", ["--num-workers", "-1"], "--num-workers: expected a non-negative number, got -1"),
    ("many-shot", ["--estimator", "nope"], "--estimator: expected the id of an estimator of the model's prior"),
    ("many-shot", ["--estimator", "em"], "it estimates the target label distribution"),
    ("many-shot", ["--prior-file", "/no/q.pt"], "--prior-file: no file at /no/q.pt"),
])
def test_gla_run_refuses_options_its_protocol_does_not_take(tmp_path, world_ckpt, monkeypatch, capsys,
                                                            protocol, extra, message):
    for fn in ("run_many_shot", "run_few_shot", "run_long_tail"):
        monkeypatch.setattr(ex, fn, lambda *a, **k: pytest.fail("nothing should run"))
    dataset = "world-lt" if protocol == "long-tail" else "world-main"
    assert main(_run_args(tmp_path, world_ckpt, protocol, "--datasets", dataset, *extra)) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_gla_run_passes_and_records_its_options(tmp_path, world_ckpt, monkeypatch, capsys):
    seen = {}

    def fake(backbone, pretrained, dataset, **kw):
        seen.update(kw)
        return SimpleNamespace(table=_fake_rows(backbone, dataset))

    monkeypatch.setattr(ex, "run_long_tail", fake)
    q = torch.tensor([0.5, 0.3, 0.2])
    torch.save({"q": q}, tmp_path / "q.pt")
    args = _run_args(tmp_path, world_ckpt, "long-tail", "--datasets", "world-lt", "--templates", "coop",
                     "--protocol", "exact", "--prior-file", str(tmp_path / "q.pt"), "--source-prior", "uniform",
                     "--precision", "bf16", "--num-workers", "2")
    assert main(args) == 0
    stem = results_stem("long-tail", "gla-world-tiny", str(world_ckpt))
    settings = json.loads((tmp_path / "out" / f"{stem}.settings.json").read_text())
    assert {k: settings["options"][k] for k in ("protocol", "templates", "source_prior", "precision",
                                                 "num_workers")} == {
        "protocol": "exact", "templates": "coop", "source_prior": "uniform", "precision": "bf16", "num_workers": 2}
    assert settings["options"]["prior_file"] == str(tmp_path / "q.pt")
    s, c = seen["settings"], seen["config"]  # what the protocol received
    assert (s.protocol, s.templates, s.source_prior, s.prior_file) == ("exact", "coop", "uniform", str(tmp_path / "q.pt"))
    assert (c.precision, c.num_workers) == ("bf16", 2)


def test_gla_run_and_gla_estimate_take_any_registered_estimator(tmp_path, world_ckpt, monkeypatch, capsys):
    """``--estimator ID`` reaches the protocol's settings (gla run) and the registry (gla
    estimate); the id is recorded with the results."""
    from gla.estimators import MODEL_PRIOR, list_estimators

    seen = {}

    def fake(backbone, pretrained, dataset, **kw):
        seen.update(kw)
        return SimpleNamespace(table=_fake_rows(backbone, dataset))

    monkeypatch.setattr(ex, "run_long_tail", fake)
    assert main(_run_args(tmp_path, world_ckpt, "long-tail", "--datasets", "world-lt", "--estimator", "eigenvector")) == 0
    assert seen["settings"].estimator_id == "eigenvector"
    stem = results_stem("long-tail", "gla-world-tiny", str(world_ckpt))
    assert json.loads((tmp_path / "out" / f"{stem}.settings.json").read_text())["options"]["estimator"] == "eigenvector"
    logits, labels, true_lp = planted_logits(200, 5, seed=3)
    torch.save({"logits": logits, "labels": labels}, tmp_path / "z.pt")
    priors = {}
    for est in list_estimators(estimates=MODEL_PRIOR):
        assert main(["estimate", str(tmp_path / "z.pt"), "--estimator", est, "--out", str(tmp_path / f"{est}.json")]) == 0
        rec = json.loads((tmp_path / f"{est}.json").read_text())
        assert rec["estimator"] == est and len(rec["log_prior"]) == 5
        priors[est] = torch.tensor(rec["log_prior"], dtype=torch.float64)
    exact = gla.estimators.make_estimator("exact").fit(logits, labels).log_prior_
    assert torch.allclose(priors["exact"], exact)
    assert main(["estimate", str(tmp_path / "z.pt"), "--estimator", "nope"]) == 2
    assert "--estimator: expected an estimator id, one of" in capsys.readouterr().err
    assert main(["estimate", str(tmp_path / "z.pt"), "--estimator", "mean-probability", "--no-balance"]) == 2
    assert "--no-balance: the estimator 'mean-probability' does not reweight" in capsys.readouterr().err


def test_two_backbones_in_one_out_folder_do_not_overwrite(tmp_path, world_ckpt, monkeypatch):
    monkeypatch.setattr(ex, "run_long_tail",
                        lambda backbone, pretrained, dataset, **kw: SimpleNamespace(table=_fake_rows(str(pretrained),
                                                                                                     dataset)))
    other = tmp_path / "other" / "world.pt"
    other.parent.mkdir()
    other.write_bytes(b"another stand-in")
    for ckpt in (world_ckpt, other):
        assert main(_run_args(tmp_path, ckpt, "long-tail", "--datasets", "world-lt")) == 0
    files = sorted((tmp_path / "out").glob("long_tail_*world-lt.csv"))
    assert len(files) == 2
    assert {pd.read_csv(f)["backbone"][0] for f in files} == {str(world_ckpt), str(other)}


def test_a_failing_second_dataset_keeps_the_first(tmp_path, world_ckpt, monkeypatch, capsys):
    def fake(backbone, pretrained, dataset, **kw):
        if dataset == "world-lt-clutter":
            raise RuntimeError("out of memory on the second dataset")
        return SimpleNamespace(table=_fake_rows(backbone, dataset))

    monkeypatch.setattr(ex, "run_long_tail", fake)
    code = main(_run_args(tmp_path, world_ckpt, "long-tail", "--datasets", "world-lt", "world-lt-clutter"))
    assert code == 1
    err = capsys.readouterr().err
    assert "world-lt-clutter failed" in err and "out of memory" in err and "Traceback" not in err
    stem = results_stem("long-tail", "gla-world-tiny", str(world_ckpt))
    out = tmp_path / "out"
    assert pd.read_csv(out / f"{stem}_world-lt.csv")["dataset"].tolist() == ["world-lt"]
    assert json.loads((out / f"{stem}_world-lt.json").read_text())[0]["dataset"] == "world-lt"
    assert not (out / f"{stem}.csv").exists() and not (out / f"{stem}_world-lt-clutter.csv").exists()
    assert json.loads((out / f"{stem}.settings.json").read_text())["failed"]["dataset"] == "world-lt-clutter"


def test_gla_run_writes_tidy_results(tiny_openclip, tmp_path):
    from PIL import Image

    lines = {"train": [], "val": [], "test": []}
    for split, n in [("train", 4), ("val", 2), ("test", 2)]:
        for y, w in enumerate(["n01440764", "n01443537"]):
            for i in range(n):
                rel = f"train/{w}/{w}_{split}_{i}.JPEG"
                (tmp_path / "imagenet" / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (40, 40), (200 * y, 50, 50)).save(tmp_path / "imagenet" / "images" / rel)
                lines[split].append(f"{rel} {y}")
    (tmp_path / "ImageNet_LT").mkdir()
    for split, ls in lines.items():
        (tmp_path / "ImageNet_LT" / f"ImageNet_LT_{split}.txt").write_text("\n".join(ls))
    code = main(["run", "long-tail", "--backbone", tiny_openclip, "--pretrained", "", "--datasets", "imagenet_lt",
                 "--data-root", str(tmp_path), "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "out"),
                 "--epochs", "1", "--quiet"])
    assert code == 0
    df = pd.read_csv(tmp_path / "out" / f"long_tail_{tiny_openclip}_random.csv")
    assert len(df) == 7 and {"method", "many", "medium", "few", "mean_per_class"} <= set(df.columns)
    assert (tmp_path / "out" / f"long_tail_{tiny_openclip}_random_imagenet_lt.json").is_file()


# --------------------------------------------------------------------------- gla apply

def _golden():
    return json.loads(GOLDEN.read_text())


def test_apply_many_shot_matches_the_official_combination(tmp_path, capsys):
    """GLA many-shot from saved logits and the official-style unnormalised q.pt.

    Golden values: BeierZhu/GLA (efbcd60) Code.zip -> GLA.public/src/models/modeling.py
    L11-17 (gla_inference) and src/gla.py L53, L59 (q from q.pt, not normalised, p uniform),
    accuracy as a fraction (src/models/eval.py L12-18); trimmed copy in
    tests/data/golden/gla_combination_apply.json."""
    g = _golden()
    inp, exp = g["inputs"]["many_shot"], g["expected"]["many_shot"]
    torch.save(torch.tensor(inp["zs_logits"]), tmp_path / "zs.pt")
    torch.save({"logits": torch.tensor(inp["ft_logits"])}, tmp_path / "ft.pt")
    import numpy as np

    np.save(tmp_path / "labels.npy", np.array(g["inputs"]["labels"]))
    q = torch.tensor(inp["q"], dtype=torch.float32)
    torch.save({"q": q}, tmp_path / "q.pt")
    assert main(["apply", "many-shot", "--zs", str(tmp_path / "zs.pt"), "--ft", str(tmp_path / "ft.pt"),
                 "--labels", str(tmp_path / "labels.npy"), "--prior-file", str(tmp_path / "q.pt"),
                 "--out", str(tmp_path / "out")]) == 0
    rows = {r["method"]: r for r in json.loads((tmp_path / "out" / "apply_many_shot.json").read_text())}
    assert rows["gla"]["top1"] == pytest.approx(exp["p_None"]["accuracy"], abs=1e-12)
    assert rows["zero_shot"]["top1"] == pytest.approx(exp["reference_points"]["zs_only"]["accuracy"], abs=1e-12)
    assert rows["fine_tuned"]["top1"] == pytest.approx(exp["reference_points"]["ft_only"]["accuracy"], abs=1e-12)
    assert rows["ensemble"]["top1"] == pytest.approx(
        exp["reference_points"]["zs_plus_ft_no_prior"]["accuracy"], abs=1e-12)
    assert rows["gla"]["prior_file_sum"] == pytest.approx(float(q.double().sum()), abs=1e-6)
    assert {"head", "medium", "tail", "ece", "top5"} <= set(rows["gla"])
    assert "gla" in capsys.readouterr().out


def test_apply_few_shot_uses_both_temperatures(tmp_path):
    """Few-shot GLA ``f_ft / T_ft + f_zs / T_zs - log pp`` with given temperatures.

    Golden values: BeierZhu/GLA (efbcd60) GLA.FS.public.zip -> trainers/gla.py L273-275,
    L285-306 and trainers/util.py L396-406; trimmed copy in
    tests/data/golden/gla_combination_apply.json (accuracy in percent there)."""
    g = _golden()
    inp, exp = g["inputs"]["few_shot"], g["expected"]["few_shot"]
    for name, key in (("zs", "zs_raw_logits"), ("ft", "ft_raw_logits")):
        torch.save(torch.tensor(inp[key]), tmp_path / f"{name}.pt")
    torch.save(torch.tensor(g["inputs"]["labels"]), tmp_path / "y.pt")
    torch.save(torch.tensor(inp["pp"]), tmp_path / "pp.pt")  # a plain tensor
    assert main(["apply", "few-shot", "--zs", str(tmp_path / "zs.pt"), "--ft", str(tmp_path / "ft.pt"),
                 "--labels", str(tmp_path / "y.pt"), "--prior-file", str(tmp_path / "pp.pt"),
                 "--t-zs", str(inp["T_zs"]), "--t-ft", str(inp["T_ft"]), "--out", str(tmp_path)]) == 0
    rows = {r["method"]: r for r in json.loads((tmp_path / "apply_few_shot.json").read_text())}
    assert 100 * rows["gla"]["top1"] == pytest.approx(exp["accuracy_percent"], abs=1e-9)
    assert 100 * rows["ensemble"]["top1"] == pytest.approx(
        exp["reference_points"]["sum_without_prior"]["accuracy_percent"], abs=1e-9)
    assert rows["gla"]["t_zs"] == inp["T_zs"] and rows["gla"]["t_ft"] == inp["T_ft"]


def test_apply_estimates_prior_and_temperatures_on_val(tmp_path):
    from gla import PriorEstimator, gla_logits, search_temperature
    from gla.apply import apply_protocol

    zs_val, y_val, _ = planted_logits(40, 6, seed=1)
    zs, y, _ = planted_logits(30, 6, seed=2)
    g = torch.Generator().manual_seed(3)
    ft_val = 2.0 * torch.nn.functional.one_hot(y_val, 6) + torch.randn(len(y_val), 6, generator=g, dtype=torch.float64)
    ft = 2.0 * torch.nn.functional.one_hot(y, 6) + torch.randn(len(y), 6, generator=g, dtype=torch.float64)
    df = apply_protocol("few-shot", zs, ft, y, zs_val=zs_val, ft_val=ft_val, labels_val=y_val, protocol="exact")
    t_zs, t_ft = search_temperature(zs_val, y_val), search_temperature(ft_val, y_val)
    row = df.set_index("method").loc["gla"]
    assert row["t_zs"] == pytest.approx(t_zs) and row["t_ft"] == pytest.approx(t_ft)
    lq = PriorEstimator(temperature=t_zs).fit(zs_val, y_val).log_prior_
    want = (gla_logits(zs, ft, lq, zs_temperature=t_zs, ft_temperature=t_ft).argmax(1) == y).double().mean()
    assert row["top1"] == pytest.approx(float(want))
    assert row["prior_source"] == "exact" and row["prior_estimated_on"] == "zs_val"

    counts = torch.tensor([500, 150, 60, 30, 10, 5])
    lt = apply_protocol("long-tail", zs, ft, y, zs_val=zs_val, labels_val=y_val, train_counts=counts,
                        protocol="exact").set_index("method")
    assert {"many", "medium", "few", "mean_per_class"} <= set(lt.columns)
    assert {"fine_tuned_ce", "fine_tuned_ce_adjusted"} <= set(lt.index)
    lq1 = PriorEstimator().fit(zs_val, y_val).log_prior_
    log_ps = torch.log(counts / counts.sum()).double()
    pred = gla_logits(zs, ft, lq1, log_source_prior=log_ps).argmax(1)
    per_class = torch.stack([(pred[y == k] == k).double().mean() for k in range(6)])
    assert lt.loc["gla", "mean_per_class"] == pytest.approx(float(per_class.mean()))
    assert lt.loc["gla", "few"] == pytest.approx(float(per_class[4:].mean()))


def test_prior_file_is_normalised_and_its_sum_reported(tmp_path):
    from gla.apply import load_prior_file

    q = torch.tensor([0.4, 0.2, 0.1, 0.104])  # sums to 0.804 like the official q.pt
    torch.save({"q": q}, tmp_path / "q.pt")
    pf = load_prior_file(tmp_path / "q.pt")
    assert pf.original_sum == pytest.approx(0.804, abs=1e-6)
    assert float(pf.log_prior.exp().sum()) == pytest.approx(1.0, abs=1e-12)
    assert torch.allclose(pf.log_prior.exp(), (q / q.sum()).double(), atol=1e-7)
    (tmp_path / "est.json").write_text(json.dumps({"log_prior": pf.log_prior.tolist()}))
    assert torch.allclose(load_prior_file(tmp_path / "est.json").log_prior, pf.log_prior)
    torch.save({"p": q}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="expected 'q' or a plain tensor"):
        load_prior_file(tmp_path / "bad.pt")
    torch.save(torch.tensor([0.5, 0.0, 0.5]), tmp_path / "zero.pt")
    with pytest.raises(ValueError, match="positive"):
        load_prior_file(tmp_path / "zero.pt")


def test_finetune_under_torchrun_lands_where_the_protocol_looks(smoke_checkpoint, tmp_path, monkeypatch, capsys):
    """Two CPU processes (gloo) launched by torchrun fine-tune through DDP; the single-process
    entry point then finds the checkpoint and trains nothing."""
    import os
    import re
    import subprocess
    import sys

    args = ["finetune", "world-small", "--pretrained", str(smoke_checkpoint), "--smoke", "--quiet",
            "--cache-dir", str(tmp_path)]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "gla", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-4000:]
    printed = re.findall(r"fine-tuned checkpoint: (\S+)", r.stdout)
    assert len(printed) == 1  # rank 0 reports
    saved = torch.load(printed[0], map_location="cpu", weights_only=False)
    assert [h["world_size"] for h in saved["history"]] == [2]

    def no_training(*a, **k):
        raise AssertionError("the cached checkpoint should have been reused")

    monkeypatch.setattr(gla.protocols.common, "finetune", no_training)
    assert main(args) == 0
    assert printed[0] in capsys.readouterr().out


def test_gla_run_passes_a_given_fine_tuned_model_to_the_many_shot_protocol(tmp_path, world_ckpt, monkeypatch,
                                                                           capsys):
    """``gla run many-shot --finetuned FILE`` evaluates that model (e.g. a WiSE-FT release,
    as the official many-shot code does) instead of fine-tuning; other protocols refuse it."""
    seen = {}

    class Result:
        def __init__(self, table):
            self.table = table

    def fake(backbone, pretrained, dataset, **kw):
        seen.update(kw)
        return Result(_fake_rows(backbone, dataset))

    monkeypatch.setattr(ex, "run_many_shot", fake)
    model = tmp_path / "wiseft_zeroshot_vit_b16.pt"
    model.write_bytes(b"a stand-in: the protocol is faked")
    assert main(_run_args(tmp_path, world_ckpt, "many-shot", "--datasets", "world-main",
                          "--finetuned", str(model))) == 0
    assert seen["finetuned"] == str(model)
    assert main(_run_args(tmp_path, world_ckpt, "long-tail", "--datasets", "world-lt", "--finetuned", str(model))) == 2
    assert "--finetuned" in capsys.readouterr().err


def test_every_command_has_a_description():
    """'gla estimate -h', 'gla book run -h' and 'gla book build -h' used to show none."""
    for name, p in _subparsers(build_parser()):
        assert p.description and len(p.description) > 40, name
    book = dict(_subparsers(build_parser()))
    assert "checked" in book["run"].description and "executed notebook" in book["build"].description


def test_only_rank_0_prints_run_messages(monkeypatch, capsys):
    from gla.protocols import RunConfig

    monkeypatch.setenv("RANK", "1")
    RunConfig(progress=True).log("fine-tuning (rank 1)")
    monkeypatch.setenv("RANK", "0")
    RunConfig(progress=True).log("fine-tuning (rank 0)")
    err = capsys.readouterr().err
    assert "rank 0" in err and "rank 1" not in err
