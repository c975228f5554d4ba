import json

import torch

from gla.cli import main
from tests.conftest import planted_logits


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


def test_gla_run_writes_tidy_results(tiny_openclip, tmp_path):
    import pandas as pd
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
    df = pd.read_csv(tmp_path / "out" / "long_tail.csv")
    assert len(df) == 7 and {"method", "many", "medium", "few", "mean_per_class"} <= set(df.columns)


def test_finetune_under_torchrun_lands_where_the_protocol_looks(smoke_checkpoint, tmp_path, monkeypatch, capsys):
    """Two CPU processes (gloo) launched by torchrun fine-tune through DDP; the single-process
    entry point then finds the checkpoint and trains nothing."""
    import os
    import re
    import subprocess
    import sys

    import torch

    import gla.experiments as ex

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

    monkeypatch.setattr(ex, "finetune", no_training)
    assert main(args) == 0
    assert printed[0] in capsys.readouterr().out
