"""The activation of weights given as a file, at every entry point that loads a model.

ViT-B-32, ViT-B-16, RN50 and others exist with GELU (plain name) and QuickGELU
(``-quickgelu``); a state-dict file does not say which its weights were trained with. Here
a tiny open_clip ViT with both twins stands in for them: one random-init state dict is
saved from the GELU model and one from the QuickGELU model. Each must load as it was
trained when the user says so (``--quick-gelu`` / ``--no-quick-gelu`` on ``gla run`` and
``gla finetune``, ``quick_gelu`` in a notebook's parameters and the book's parameter
file), which the features show exactly; without it the error names those options.
"""

import json
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

import gla.notebook
import gla.protocols as ex
from gla.backbones import load_backbone, resolve_model_name
from gla.book import notebook_parameters
from gla.checks import check_parameters
from gla.cli import main
from gla.commands.run import results_stem
from gla.errors import UsageError

CFG = {"embed_dim": 16,
       "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
       "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
IMAGES = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    """Configs ``gla-test-act`` (GELU) and ``gla-test-act-quickgelu``, and a random-init
    state dict of each kind with the features its own model gives :data:`IMAGES`."""
    import open_clip

    d = tmp_path_factory.mktemp("act_configs")
    (d / "gla-test-act.json").write_text(json.dumps(CFG))
    (d / "gla-test-act-quickgelu.json").write_text(json.dumps({**CFG, "quick_gelu": True}))
    open_clip.add_model_config(d)
    files = tmp_path_factory.mktemp("act_weights")
    out = {}
    for kind, name, seed in (("gelu", "gla-test-act", 0), ("quickgelu", "gla-test-act-quickgelu", 1)):
        torch.manual_seed(seed)
        model = open_clip.create_model(name).eval()
        torch.save(model.state_dict(), files / f"{kind}.pt")
        with torch.no_grad():
            out[kind] = (str(files / f"{kind}.pt"), model.encode_image(IMAGES))
    return out


def _features(backbone) -> torch.Tensor:
    with torch.no_grad():
        return backbone.model.encode_image(IMAGES)


def _err(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_each_kind_loads_as_it_was_trained_only_when_told(twins):
    gelu, gelu_ref = twins["gelu"]
    qg, qg_ref = twins["quickgelu"]
    assert torch.allclose(_features(load_backbone("gla-test-act", gelu, quick_gelu=False)), gelu_ref, atol=1e-6)
    assert not torch.allclose(_features(load_backbone("gla-test-act", gelu, quick_gelu=True)), gelu_ref, atol=1e-3)
    assert torch.allclose(_features(load_backbone("gla-test-act", qg, quick_gelu=True)), qg_ref, atol=1e-6)
    assert torch.allclose(_features(load_backbone("gla-test-act-quickgelu", qg)), qg_ref, atol=1e-6)
    assert resolve_model_name("gla-test-act", gelu, False) == "gla-test-act"
    assert resolve_model_name("gla-test-act", qg, True) == "gla-test-act-quickgelu"


def test_the_error_names_the_option_of_every_entry_point(twins):
    with pytest.raises(ValueError) as info:
        load_backbone("gla-test-act", twins["gelu"][0])
    text = str(info.value)
    for option in ("--no-quick-gelu", "quick_gelu: false", "quick_gelu=False", "--quick-gelu", "quick_gelu: true",
                   "'gla-test-act-quickgelu'", "gla run", "gla finetune", "parameter file"):
        assert option in text, option
    with pytest.raises(ValueError, match="contradicts the model name 'gla-test-act-quickgelu'.*'gla-test-act'"):
        resolve_model_name("gla-test-act-quickgelu", twins["gelu"][0], False)


# --------------------------------------------------------------------------- the command line

@pytest.fixture
def forbid_compute(monkeypatch):
    def forbidden(*a, **k):
        pytest.fail("a protocol ran before the backbone was checked")

    for fn in ("run_many_shot", "finetune_to_cache"):
        monkeypatch.setattr(ex, fn, forbidden)
    monkeypatch.setattr(gla.notebook, "context", forbidden)


@pytest.mark.parametrize("command", [["run", "many-shot", "--datasets", "world-main"], ["finetune", "world-main"]])
def test_the_command_line_asks_for_the_activation_before_any_compute(twins, forbid_compute, tmp_path, capsys,
                                                                     command):
    extra = ["--out", str(tmp_path / "o")] if command[0] == "run" else []
    assert main([*command, "--backbone", "gla-test-act", "--pretrained", twins["gelu"][0], *extra]) == 2
    err = _err(capsys)
    assert "cannot tell whether" in err and "--no-quick-gelu" in err and "--quick-gelu" in err
    assert main([*command, "--backbone", "gla-test-act-quickgelu", "--pretrained", twins["gelu"][0],
                 "--no-quick-gelu", *extra]) == 2
    assert "contradicts the model name" in _err(capsys)
    assert main([*command, "--pretrained", "world", "--quick-gelu", *extra]) == 2
    assert "not an open_clip model" in _err(capsys)


def test_gla_run_loads_a_gelu_state_dict_as_gelu(twins, tmp_path, monkeypatch):
    seen = {}

    def fake_many_shot(backbone, pretrained, dataset, *, config, **kw):
        seen["features"] = _features(config.backbone(backbone, pretrained))
        seen["quick_gelu"] = config.quick_gelu
        return SimpleNamespace(table=pd.DataFrame([{"backbone": backbone, "dataset": dataset, "method": "gla",
                                                    "split": "test", "top1": 0.5}]))

    monkeypatch.setattr(ex, "run_many_shot", fake_many_shot)
    gelu, ref = twins["gelu"]
    out = tmp_path / "out"
    assert main(["run", "many-shot", "--datasets", "world-main", "--backbone", "gla-test-act", "--pretrained", gelu,
                 "--no-quick-gelu", "--out", str(out), "--cache-dir", str(tmp_path / "c"), "--quiet"]) == 0
    assert seen["quick_gelu"] is False and torch.allclose(seen["features"], ref, atol=1e-6)
    settings = json.loads((out / f"{results_stem('many-shot', 'gla-test-act', gelu)}.settings.json").read_text())
    assert settings["quick_gelu"] is False


def test_gla_finetune_loads_a_quickgelu_state_dict_and_writes_no_results_folder(twins, tmp_path, monkeypatch,
                                                                                 capsys):
    seen = {}

    def fake_finetune(backbone, pretrained, dataset, *, config, **kw):
        seen["features"] = _features(config.backbone(backbone, pretrained))
        return tmp_path / "ft.pt"

    monkeypatch.setattr(ex, "finetune_to_cache", fake_finetune)
    monkeypatch.chdir(tmp_path)
    qg, ref = twins["quickgelu"]
    assert main(["finetune", "world-main", "--backbone", "gla-test-act", "--pretrained", qg, "--quick-gelu",
                 "--cache-dir", str(tmp_path / "c"), "--quiet", "--smoke"]) == 0
    assert torch.allclose(seen["features"], ref, atol=1e-6)
    assert not (tmp_path / "results").exists()  # finetune writes its checkpoint to the cache only
    assert "fine-tuned checkpoint:" in capsys.readouterr().out


# --------------------------------------------------------------------------- notebooks and the book

def test_a_notebook_context_and_its_extra_backbones_each_get_their_own_activation(twins, tmp_path):
    gelu, gelu_ref = twins["gelu"]
    qg, qg_ref = twins["quickgelu"]
    ctx = gla.notebook.context("gla-test-act", gelu, quick_gelu=False, output_dir=tmp_path / "o",
                               cache_dir=tmp_path / "c")
    assert ctx.config.quick_gelu is False
    runs = ctx.runs([["gla-test-act-quickgelu", qg], ["gla-test-act", qg, True]])
    assert [(n, r["config"].quick_gelu) for n, _, r in runs] == [("gla-test-act", False),
                                                                  ("gla-test-act-quickgelu", None),
                                                                  ("gla-test-act", True)]
    refs = [gelu_ref, qg_ref, qg_ref]
    for (name, pre, run), ref in zip(runs, refs):
        assert torch.allclose(_features(run["config"].backbone(name, pre)), ref, atol=1e-6), name
    with pytest.raises(ValueError, match=r"extra_backbones: expected \[name, pretrained\]"):
        ctx.runs([["gla-test-act", gelu, "no"]])
    with pytest.raises(ValueError, match="quick_gelu: the activation of an open_clip checkpoint file"):
        gla.notebook.context("gla-world-tiny", "world", quick_gelu=True)


def test_the_book_passes_quick_gelu_with_the_weights_it_describes():
    params = {"backbone": "ViT-B-32", "pretrained": "laion.pt", "quick_gelu": False,
              "notebooks": {"06_few_shot": {"backbone": "RN50-quickgelu", "pretrained": "openai.pt"},
                            "13_real_frequencies": {"pretrained": "other.pt", "quick_gelu": True}}}
    declared = ["backbone", "pretrained", "quick_gelu"]
    assert notebook_parameters("03_many_shot", declared, params)["quick_gelu"] is False
    assert "quick_gelu" not in notebook_parameters("06_few_shot", declared, params)
    assert notebook_parameters("13_real_frequencies", declared, params)["quick_gelu"] is True


def test_the_book_checks_the_activation_before_any_kernel(twins, tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("backbone = 'gla-world-tiny'\npretrained = 'world'\nquick_gelu = None\n"
                                     "dataset = 'world-main'\nextra_backbones = []")
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell]
    src = tmp_path / "03_x.ipynb"
    nbformat.write(nb, str(src))
    gelu = twins["gelu"][0]
    with pytest.raises(UsageError) as info:
        check_parameters({"03_x": (src, {"backbone": "gla-test-act", "pretrained": gelu})})
    assert str(info.value).startswith("03_x: pretrained: cannot tell") and "quick_gelu: false" in str(info.value)
    check_parameters({"03_x": (src, {"backbone": "gla-test-act", "pretrained": gelu, "quick_gelu": False})})
    with pytest.raises(UsageError, match=r"03_x: extra_backbones\[0\]: pretrained: cannot tell"):
        check_parameters({"03_x": (src, {"extra_backbones": [["gla-test-act", gelu]]})})
    check_parameters({"03_x": (src, {"extra_backbones": [["gla-test-act", gelu, False]]})})
