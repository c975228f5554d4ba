"""The pages of a book built for a real backbone (gla.pages, gla.book.build_book(params=...))."""

from __future__ import annotations

import subprocess

import pandas as pd
import pytest

from gla.pages import intro_page, published_beside_measured, real_pages, serves_real_backbone

REAL = {"backbone": "ViT-B-16", "pretrained": "openai", "data_root": "/data/somewhere",
        "notebooks": {"00_the_world": {"backbone": "gla-world-tiny", "pretrained": "world"},
                      "03_many_shot": {"dataset": "imagenet", "extra_backbones": [["ViT-B-32", "/ckpt/b32.pt"]]},
                      "04_distribution_shift": {"dataset": "imagenet", "shifted": ["imagenet_v2"]},
                      "06_few_shot": {"backbone": "RN50", "datasets": ["imagenet", "dtd"],
                                      "shifted": {"imagenet": ["imagenet_a"]}},
                      "13_real_frequencies": {"pretrained": "laion2b_s34b_b88k",
                                              "counts_file": "/data/counts/freq.txt"}}}


def _row(**kw):
    row = {"backbone": "ViT-B-16-quickgelu", "pretrained": "openai", "dataset": "imagenet", "eval_set": "imagenet",
           "split": "test", "shots": "all", "seed": 0, "method": "zero_shot", "top1": 0.675}
    row.update(kw)
    return row


@pytest.fixture
def results(tmp_path):
    root = tmp_path / "results"
    (root / "03_many_shot").mkdir(parents=True)
    pd.DataFrame([
        _row(),
        _row(method="fine_tuned", top1=0.80, pretrained="/machine/ckpt/ViT-B-16.pt"),  # a file: not 'openai'
        _row(split="val", top1=0.10),  # a validation row is not the published test number
        _row(backbone="gla-world-tiny", pretrained="/x/clip.pt", dataset="world-main", eval_set="world-main"),
    ]).to_csv(root / "03_many_shot" / "many_shot.csv", index=False)
    (root / "04_distribution_shift").mkdir()
    pd.DataFrame([_row(eval_set="imagenet_v2", top1=0.60, seed=s) for s in (0, 1)]
                 + [_row(eval_set="imagenet_v2", top1=0.62, seed=2)]).to_csv(
        root / "04_distribution_shift" / "distribution_shift.csv", index=False)
    (root / "06_few_shot").mkdir()
    pd.DataFrame([_row(backbone="RN50", shots="16", seed=s, method="gla", top1=v)
                  for s, v in enumerate((0.65, 0.66, 0.67))]).to_csv(root / "06_few_shot" / "few_shot.csv",
                                                                     index=False)
    (root / "06_few_shot" / "notes.csv").write_text("")  # an empty table is skipped
    return root


def test_published_numbers_are_matched_to_measured_test_rows(results):
    """Published values from gla/data/published.json (VRF Table 2: ViT-B/16 zero-shot 68.3 on
    ImageNet, 61.9 on ImageNet-V2; the official few-shot logs: RN50 GLA at 16 shots 65.63)."""
    pub = published_beside_measured(results)
    got = {(r.chapter, r.backbone, r.dataset, r.method, r.shots): (r.published, round(r.measured, 2), r.seeds)
           for r in pub.itertuples()}
    assert got == {
        ("03_many_shot", "ViT-B-16-quickgelu", "imagenet", "zero_shot", "all"): (68.3, 67.5, 1),
        ("04_distribution_shift", "ViT-B-16-quickgelu", "imagenet_v2", "zero_shot", "all"): (61.9, 60.67, 3),
        ("06_few_shot", "RN50", "imagenet", "gla", "16"): (65.63, 66.0, 3),
    }
    assert set(pub.source) == {"VRF (NeurIPS 2024), Table 2", "official GLA few-shot README, example logs"}


def test_no_published_number_for_the_world(tmp_path):
    (tmp_path / "03").mkdir()
    pd.DataFrame([_row(backbone="gla-world-tiny", dataset="world-main", eval_set="world-main")]).to_csv(
        tmp_path / "03" / "t.csv", index=False)
    assert published_beside_measured(tmp_path).empty
    assert published_beside_measured(tmp_path / "missing").empty


def test_the_intro_names_the_run_and_never_the_world(results):
    text = intro_page(REAL, results, "`vit.yaml`")
    assert "ViT-B-16" in text and "`openai`" in text and "`vit.yaml`" in text
    assert "world" not in text.lower()
    assert "/data/somewhere" not in text and "/machine" not in text and "/ckpt" not in text
    assert "`b32.pt`" in text and "`freq.txt`" in text and "`laion2b_s34b_b88k`" in text
    assert "| 68.3 | 67.5 | -0.8 |" in text and "VRF (NeurIPS 2024), Table 2" in text
    assert "`imagenet`, `dtd`; shifted: `imagenet_a`" in text
    for page in real_pages(REAL, results).values():
        assert "miniature world" not in page


def test_which_books_are_real():
    assert serves_real_backbone(REAL)
    assert not serves_real_backbone({})  # the notebooks' default: the world's CLIP
    assert not serves_real_backbone({"backbone": "gla-world-tiny"})


def test_build_book_writes_the_run_pages_for_a_real_backbone(tmp_path, results, monkeypatch):
    """build_book(params=...) puts the run's intro in the assembled book; the world keeps
    book/'s pages. (jupyter-book itself is not run here: test_book.py builds the real book.)"""
    import yaml

    import gla.book as book

    gen = tmp_path / "gen"
    gen.mkdir()
    (gen / "01_label_bias.ipynb").write_text("{}")
    (results.parent / "results").rename(gen / "results")
    monkeypatch.setattr(book.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, "", ""))
    params = tmp_path / "vit.yaml"
    params.write_text(yaml.safe_dump(REAL))
    book.build_book(gen, tmp_path / "real", params=params)
    intro = (tmp_path / "real" / "book" / "intro.md").read_text()
    assert intro.startswith("# Generalized Logit Adjustment with ViT-B-16 (openai)") and "`vit.yaml`" in intro
    assert "miniature world" not in (tmp_path / "real" / "book" / "results.md").read_text()
    book.build_book(gen, tmp_path / "world", params={})
    shipped = book.find_source_dir("book") / "intro.md"
    assert (tmp_path / "world" / "book" / "intro.md").read_text() == shipped.read_text()


def test_rows_of_different_settings_are_not_averaged(tmp_path):
    """Rows that differ in more than the seed (here the protocol) give one measured value each."""
    (tmp_path / "09").mkdir()
    pd.DataFrame([_row(protocol="paper", top1=0.60), _row(protocol="exact", top1=0.70)]).to_csv(
        tmp_path / "09" / "t.csv", index=False)
    pub = published_beside_measured(tmp_path).set_index("protocol")
    assert pub.loc["paper", "measured"] == pytest.approx(60.0) and pub.loc["exact", "measured"] == pytest.approx(70.0)
