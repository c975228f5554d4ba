"""Expected errors: one message on stderr, no traceback, status 2 for bad input (found
before any compute) and 1 for a run that failed; ``--debug`` shows the traceback."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import gla.backbones
import gla.hub
import gla.notebook
import gla.protocols as ex
from gla.cli import main
from gla.errors import RunError, UsageError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def no_compute(monkeypatch):
    """Every entry point that computes (world pretraining, backbone loading, protocols,
    fine-tuning) fails the test when called."""
    def forbidden(name):
        def f(*a, **k):
            pytest.fail(f"{name} was called before the input was checked")
        return f

    for fn in ("run_many_shot", "run_few_shot", "run_long_tail", "finetune_to_cache"):
        monkeypatch.setattr(ex, fn, forbidden(fn))
    monkeypatch.setattr(gla.notebook, "context", forbidden("context (world pretraining)"))
    monkeypatch.setattr(gla.backbones, "load_backbone", forbidden("load_backbone"))


def _one_message(err: str) -> str:
    assert "Traceback" not in err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert lines and lines[0].startswith("gla ")
    return err


def test_a_shifted_typo_fails_before_any_compute(no_compute, tmp_path, capsys):
    """The typo used to surface after the fine-tune and the WiSE-FT sweep."""
    code = main(["run", "many-shot", "--datasets", "world-main", "--shifted", "world-main-skecth",
                 "--out", str(tmp_path)])
    assert code == 2
    err = _one_message(capsys.readouterr().err)
    assert "unknown dataset 'world-main-skecth'" in err and "world-main-sketch" in err  # the suggestion


@pytest.mark.parametrize("argv, message", [
    (["run", "many-shot", "--datasets", "world-mian"], "unknown dataset 'world-mian'"),
    (["run", "many-shot", "--datasets", "world-main-sketch"], "this needs train, val, test"),
    (["run", "long-tail", "--datasets", "world-lt", "--backbone", "ViT-B-61"], "unknown model 'ViT-B-61'"),
    (["run", "long-tail", "--datasets", "world-lt", "--backbone", "ViT-B-16", "--pretrained", "opneai"],
     "'opneai' is not a pretrained tag"),
    (["run", "long-tail", "--datasets", "world-lt", "--pretrained", "/no/such/world.pt"], "no checkpoint file"),
    (["run", "few-shot", "--datasets", "world-shapes", "--shifted", "world-shapes=world-skecth"],
     "unknown dataset 'world-skecth'"),
    (["run", "many-shot", "--datasets", "world-small", "world-main", "--shifted", "world-main-sketch"],
     "'world-main-sketch' is a shifted test set of world-main, not of world-small; write 'world-main=world-main-sketch'"),
    (["run", "few-shot", "--datasets", "world-shapes", "--shifted", "world-sketch"],
     "'world-sketch' is not a shifted test set"),
    (["finetune", "world-mian"], "unknown dataset 'world-mian'"),
    (["finetune", "world-small", "--backbone", "RN51"], "unknown model 'RN51'"),
    (["finetune", "world-small", "--pretrained", "missing.pt"], "no checkpoint file at missing.pt"),
])
def test_bad_names_and_paths_exit_2_with_one_message(no_compute, tmp_path, capsys, argv, message):
    assert main([*argv, "--out", str(tmp_path)] if argv[0] == "run" else argv) == 2
    err = _one_message(capsys.readouterr().err)
    assert message in err


def test_real_data_without_root_or_with_a_layout_typo(no_compute, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("GLA_DATA_ROOT", raising=False)
    assert main(["run", "long-tail", "--datasets", "imagenet_lt", "--out", str(tmp_path / "o")]) == 2
    assert "pass --data-root or set GLA_DATA_ROOT" in _one_message(capsys.readouterr().err)
    (tmp_path / "ImageNet-LT").mkdir()  # a typo: the reader expects ImageNet_LT/
    (tmp_path / "ImageNet-LT" / "ImageNet_LT_train.txt").write_text("a/b.jpg 0\n")
    assert main(["run", "long-tail", "--datasets", "imagenet_lt", "--data-root", str(tmp_path),
                 "--out", str(tmp_path / "o")]) == 2
    err = _one_message(capsys.readouterr().err)
    assert "ImageNet_LT_train.txt' not found" in err and "Expected this layout" in err
    assert "ImageNet_LT/ImageNet_LT_{train,val,test}.txt" in err


def test_a_bad_prior_file_is_found_before_compute(no_compute, tmp_path, capsys):
    torch.save({"wrong": torch.ones(3)}, tmp_path / "q.pt")
    assert main(["run", "long-tail", "--datasets", "world-lt", "--prior-file", str(tmp_path / "q.pt"),
                 "--out", str(tmp_path)]) == 2
    assert "expected 'q' or a plain tensor" in _one_message(capsys.readouterr().err)


def test_missing_offline_weights_is_a_run_failure_with_one_message(tmp_path, monkeypatch, capsys):
    ckpt = tmp_path / "w.pt"
    ckpt.write_bytes(b"x")

    def offline(*a, **k):
        raise RuntimeError("Could not load weights for model 'ViT-B-16' with pretrained='openai': offline\n"
                           "- Offline: set HF_HUB_OFFLINE=1 and HF_HOME to a cache that holds them.")

    monkeypatch.setattr(ex, "run_long_tail", offline)
    argv = ["run", "long-tail", "--datasets", "world-lt", "--pretrained", str(ckpt), "--out", str(tmp_path / "o"),
            "--cache-dir", str(tmp_path / "c")]
    assert main(argv) == 1
    err = _one_message(capsys.readouterr().err)
    assert "Could not load weights" in err and "HF_HUB_OFFLINE" in err and "--debug" in err
    with pytest.raises(RunError) as e:  # --debug: the traceback, with the cause chained
        main(["--debug", *argv])
    assert isinstance(e.value.__cause__, RuntimeError)
    with pytest.raises(RunError):
        main([*argv, "--debug"])  # also accepted after the subcommand


def test_debug_raises_the_usage_error(no_compute, tmp_path):
    with pytest.raises(UsageError, match="unknown dataset"):
        main(["--debug", "run", "many-shot", "--datasets", "nope", "--out", str(tmp_path)])


def test_bad_parameter_files(tmp_path, capsys):
    assert main(["book", "run", "--params", str(tmp_path / "none.yaml"), "--out", str(tmp_path / "o")]) == 2
    assert "no parameter file" in _one_message(capsys.readouterr().err)
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    assert main(["book", "run", "--params", str(tmp_path / "list.yaml"), "--out", str(tmp_path / "o")]) == 2
    assert "expected a mapping" in _one_message(capsys.readouterr().err)
    (tmp_path / "typo.yaml").write_text("backbone: RN50\nnotebooks:\n  03_many_shot: {datset: imagenet}\n")
    assert main(["book", "run", "--params", str(tmp_path / "typo.yaml"), "--out", str(tmp_path / "o")]) == 2
    assert "unknown parameter(s) ['datset']" in _one_message(capsys.readouterr().err)
    (tmp_path / "bad.yaml").write_text("backbone: [unclosed\n")
    assert main(["book", "run", "--params", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "o")]) == 2
    assert "not valid YAML" in _one_message(capsys.readouterr().err)
    assert not (tmp_path / "o").exists()  # nothing ran


def test_apply_names_the_files_whose_shapes_disagree(tmp_path, capsys):
    torch.save(torch.zeros(4, 3), tmp_path / "zs.pt")
    torch.save(torch.zeros(4, 5), tmp_path / "ft.pt")
    torch.save(torch.tensor([0, 1, 2, 0]), tmp_path / "y.pt")
    torch.save(torch.tensor([0.5, 0.3, 0.2]), tmp_path / "q.pt")
    base = ["apply", "many-shot", "--zs", str(tmp_path / "zs.pt"), "--labels", str(tmp_path / "y.pt"),
            "--prior-file", str(tmp_path / "q.pt"), "--out", str(tmp_path)]
    assert main([*base, "--ft", str(tmp_path / "ft.pt")]) == 2
    err = _one_message(capsys.readouterr().err)
    assert f"ft ({tmp_path / 'ft.pt'}): expected 3 classes" in err
    torch.save(torch.zeros(6, 3), tmp_path / "ft6.pt")
    assert main([*base, "--ft", str(tmp_path / "ft6.pt")]) == 2
    err = _one_message(capsys.readouterr().err)
    assert "ft6.pt) has 6 rows" in err and "y.pt) has shape (4,)" in err
    torch.save(torch.tensor([0.5, 0.5]), tmp_path / "q2.pt")
    assert main([*base[:-4], "--ft", str(tmp_path / "zs.pt"), "--prior-file", str(tmp_path / "q2.pt")]) == 2
    assert "q2.pt): expected 3 values" in _one_message(capsys.readouterr().err)
    assert main(["apply", "long-tail", "--zs", str(tmp_path / "zs.pt"), "--ft", str(tmp_path / "zs.pt"),
                 "--labels", str(tmp_path / "y.pt"), "--prior-file", str(tmp_path / "q.pt")]) == 2
    assert "--train-counts" in _one_message(capsys.readouterr().err)
    assert main(["apply", "many-shot", "--zs", str(tmp_path / "zs.pt"), "--ft", str(tmp_path / "zs.pt"),
                 "--labels", str(tmp_path / "y.pt")]) == 2
    assert "--prior-file" in _one_message(capsys.readouterr().err)


def test_the_installed_command_prints_no_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "gla", "run", "many-shot", "--datasets", "world-main",
                        "--shifted", "world-main-skecth", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path,
                       env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "world-main-skecth" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())  # no output folder content, no cache: nothing ran


def test_missing_offline_weights_are_found_before_compute(no_compute, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    assert main(["run", "long-tail", "--datasets", "world-lt", "--backbone", "ViT-B-16", "--pretrained", "openai",
                 "--out", str(tmp_path / "o")]) == 2
    err = _one_message(capsys.readouterr().err)
    assert "Could not load weights for model 'ViT-B-16-quickgelu'" in err and "not in the Hugging Face cache" in err
    assert "HF_HUB_OFFLINE=1 is set" in err


def test_bad_world_settings_exit_2(capsys):
    assert main(["world", "info", "--name-prob", "1.5"]) == 2
    err = _one_message(capsys.readouterr().err)
    assert err.startswith("gla world info: error:") and "name_prob: expected a number in [0, 1], got 1.5" in err


def test_an_error_raised_in_a_loader_worker_is_reported_by_its_last_line():
    from gla.checks import error_message as _message

    exc = RuntimeError("Caught ImageReadError in DataLoader worker process 0.\nOriginal Traceback (most recent call "
                       "last):\n  File \"x.py\", line 1, in f\ngla.data.images.ImageReadError: imagenet/train: cannot "
                       "read image file /d/n1/1.JPEG (truncated)\n")
    assert _message(exc) == ("gla.data.images.ImageReadError: imagenet/train: cannot read image file /d/n1/1.JPEG "
                             "(truncated)")


# --------------------------------------------------------------------------- messages of issue 20, section 4

def test_estimate_reads_the_files_apply_reads(tmp_path, capsys):
    """.npy logits with --labels, a .npz, and a torch dict give the same prior; logits
    without labels name --labels (they used to give an UnpicklingError traceback)."""
    import json

    import numpy as np

    from tests.conftest import planted_logits

    logits, labels, _ = planted_logits(60, 4, seed=1)
    torch.save({"logits": logits, "labels": labels}, tmp_path / "z.pt")
    np.save(tmp_path / "z.npy", logits.numpy())
    np.save(tmp_path / "y.npy", labels.numpy())
    np.savez(tmp_path / "z.npz", logits=logits.numpy(), labels=labels.numpy())
    priors = []
    for argv in (["z.pt"], ["z.npy", "--labels", "y.npy"], ["z.npz"]):
        out = tmp_path / f"{argv[0]}.json"
        assert main(["estimate", *[str(tmp_path / a) if "." in a else a for a in argv], "--out", str(out)]) == 0
        priors.append(json.loads(out.read_text())["log_prior"])
    assert np.allclose(priors[0], priors[1]) and np.allclose(priors[0], priors[2])
    assert main(["estimate", str(tmp_path / "z.npy")]) == 2
    err = _one_message(capsys.readouterr().err)
    assert "holds no labels" in err and "--labels FILE" in err


@pytest.mark.parametrize("value, shown", [("abc", "'abc'"), ("-1", "-1.0"), ("0", "0.0")])
def test_a_bad_temperature_names_the_option(tmp_path, capsys, value, shown):
    """The estimator checks its temperature (once, in the library); the message names the option."""
    torch.save({"logits": torch.randn(4, 3), "labels": torch.tensor([0, 1, 2, 0])}, tmp_path / "z.pt")
    assert main(["estimate", str(tmp_path / "z.pt"), "--temperature", value]) == 2
    err = _one_message(capsys.readouterr().err)
    assert f"--temperature: expected a positive number or 'search', got {shown}" in err


def test_an_unreachable_hub_fails_at_once_with_the_message(no_compute, tmp_path, monkeypatch, capsys):
    """Without HF_HUB_OFFLINE and without network, a tag whose weights are not cached is
    refused before compute, with no call to the hub (it used to retry for a minute)."""
    import time

    import open_clip.pretrained

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setattr(gla.hub, "hub_unreachable", lambda timeout=3.0: "huggingface.co:443: no route")
    monkeypatch.setattr(open_clip.pretrained, "hf_hub_download",
                        lambda *a, **k: pytest.fail("the hub was asked although it cannot be reached"))
    t0 = time.perf_counter()
    assert main(["run", "long-tail", "--datasets", "world-lt", "--backbone", "ViT-B-16", "--pretrained", "openai",
                 "--out", str(tmp_path / "o")]) == 2
    assert time.perf_counter() - t0 < 30
    err = _one_message(capsys.readouterr().err)
    assert "the hub cannot be reached: huggingface.co:443: no route" in err and "not in the Hugging Face cache" in err
    assert "HF_HUB_OFFLINE=1" in err  # the advice


def test_a_dataset_name_in_the_wrong_case_gets_a_suggestion(no_compute, tmp_path, capsys):
    assert main(["run", "few-shot", "--datasets", "DTD", "--out", str(tmp_path)]) == 2
    assert "unknown dataset 'DTD' (did you mean dtd?)" in _one_message(capsys.readouterr().err)
    from gla.data import dataset_entry

    with pytest.raises(ValueError, match=r"unknown dataset 'Caltech101' \(did you mean caltech101\?\)"):
        dataset_entry("Caltech101")


def test_world_pretrain_takes_the_cache_of_the_other_commands(tmp_path, monkeypatch, capsys):
    import importlib

    wp = importlib.import_module("gla.world.pretrain")  # the module (gla.world.pretrain is also a function)
    from gla.cli import build_parser

    seen = {}

    def fake_pretrain(world, cfg, *, cache_dir, progress):
        seen["cache_dir"] = cache_dir
        torch.save({"timing": {"seconds": 1.0}}, tmp_path / "ckpt.pt")
        return tmp_path / "ckpt.pt"

    monkeypatch.setattr(wp, "pretrain", fake_pretrain)
    monkeypatch.setenv("GLA_CACHE_DIR", str(tmp_path / "env-cache"))
    assert main(["world", "pretrain", "--smoke", "--quiet"]) == 0
    assert seen["cache_dir"] == str(tmp_path / "env-cache")
    capsys.readouterr()
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["world", "pretrain", "--help"])
    assert "(default: GLA_CACHE_DIR or .gla_cache)" in " ".join(capsys.readouterr().out.split())
