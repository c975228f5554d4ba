"""Data loaders, autocast precision, the feature cache's precision key and the zero-shot head cache."""

import os

import pytest
import torch
from PIL import Image

from gla.data import LabelledImages
from gla.features import cached_features, features_path
from gla.loading import autocast, default_num_workers, in_memory, make_loader, resolve_precision
from gla.zeroshot import zero_shot_head, zero_shot_head_path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Twelve small PNG files of four colours, as a real dataset's file list."""
    d = tmp_path_factory.mktemp("images")
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
    paths, labels = [], []
    for i in range(12):
        p = d / f"{i}.png"
        Image.new("RGB", (40, 36), colours[i % 4]).save(p)
        paths.append(str(p))
        labels.append(i % 4)
    return LabelledImages(paths, labels, ["red", "green", "blue", "yellow"], ["a photo of a {}."],
                          name="files", split="test")


@pytest.fixture(scope="module")
def tiny_pil(tiny_openclip):
    from gla.backbones import load_backbone

    torch.manual_seed(0)
    return load_backbone(tiny_openclip)


def test_loader_workers_default_from_the_data(files):
    tensors = LabelledImages(torch.rand(8, 3, 4, 4), [0] * 8, ["a"], ["{}"])
    assert in_memory(tensors) and in_memory(torch.utils.data.Subset(tensors, [0, 1]))
    assert not in_memory(files)
    assert make_loader(tensors, batch_size=4).num_workers == 0
    assert make_loader(files, batch_size=4).num_workers == default_num_workers()
    assert default_num_workers() == max(0, min(8, (os.cpu_count() or 1) - 1))
    loader = make_loader(files, batch_size=4, num_workers=2)
    assert loader.num_workers == 2 and not loader.pin_memory and not loader.persistent_workers
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="num_workers"):
            make_loader(files, batch_size=4, num_workers=bad)
    with pytest.raises(ValueError, match="batch_size"):
        make_loader(files, batch_size=0)


def test_precision_names_and_autocast():
    assert resolve_precision(None, "cpu") == "fp32"
    assert resolve_precision(None, "cuda") == "fp16"  # open_clip's "amp" default on a GPU
    assert resolve_precision("amp") == "fp16" and resolve_precision("amp_bf16") == "bf16"
    assert resolve_precision("BF16") == "bf16"
    with pytest.raises(ValueError, match="precision.*fp32"):
        resolve_precision("fp8")
    a, b = torch.rand(4, 4), torch.rand(4, 4)
    with autocast("bf16", "cpu"):
        assert (a @ b).dtype == torch.bfloat16
    with autocast("fp32", "cpu"):
        assert (a @ b).dtype == torch.float32


def test_features_from_files_with_workers_match_and_precision_is_keyed(tiny_pil, files, tmp_path):
    f0 = cached_features(tiny_pil, files, cache_dir=tmp_path / "a", batch_size=4, num_workers=0, progress=False)
    f2 = cached_features(tiny_pil, files, cache_dir=tmp_path / "b", batch_size=4, chunk_batches=1,
                         num_workers=2, progress=False)
    assert f0.shape == (12, 32) and torch.allclose(f0, f2, atol=1e-6)
    assert features_path(tiny_pil, files, tmp_path) == features_path(tiny_pil, files, tmp_path, precision="fp32")
    assert features_path(tiny_pil, files, tmp_path, precision="bf16") != features_path(tiny_pil, files, tmp_path)
    fb = cached_features(tiny_pil, files, cache_dir=tmp_path / "a", batch_size=4, precision="bf16", progress=False)
    assert not torch.equal(fb, f0) and torch.allclose(fb, f0, atol=0.05)  # bf16 differs, a little
    saved = torch.load(features_path(tiny_pil, files, tmp_path / "a", precision="bf16"), weights_only=True)
    assert saved["precision"] == "bf16"


def test_zero_shot_head_is_cached_by_its_inputs(tiny_pil, tmp_path, monkeypatch):
    names, templates = ["cat", "dog", "cow"], ["a photo of a {}.", "a drawing of a {}."]
    head = zero_shot_head(tiny_pil, names, templates, cache_dir=tmp_path)
    assert torch.allclose(head, zero_shot_head(tiny_pil, names, templates))  # same as uncached
    path = zero_shot_head_path(tiny_pil, names, templates, tmp_path)
    assert path.exists() and path.parent.name == "heads"
    # Cached: the text encoder is not run again.
    calls = []
    orig = type(tiny_pil.model).encode_text
    monkeypatch.setattr(type(tiny_pil.model), "encode_text", lambda self, *a, **k: calls.append(1) or orig(self, *a, **k))
    assert torch.equal(zero_shot_head(tiny_pil, names, templates, cache_dir=tmp_path), head)
    assert calls == []
    # Every input is part of the key.
    others = [zero_shot_head_path(tiny_pil, names[::-1], templates, tmp_path),
              zero_shot_head_path(tiny_pil, names, templates[:1], tmp_path),
              zero_shot_head_path(tiny_pil, names, templates, tmp_path, precision="bf16")]
    assert len({path, *others}) == 4
    # A corrupt file is rebuilt.
    path.write_bytes(b"garbage")
    assert torch.allclose(zero_shot_head(tiny_pil, names, templates, cache_dir=tmp_path), head)
    assert calls and torch.load(path, weights_only=True)["classnames"] == names


def test_one_default_cache_folder_for_runs_notebooks_and_the_book(monkeypatch, tmp_path):
    import papermill

    import gla.book as book
    from gla.cache import default_cache_dir
    from gla.notebook import context
    from gla.protocols import RunConfig

    monkeypatch.delenv("GLA_CACHE_DIR", raising=False)
    assert default_cache_dir() == RunConfig().cache_dir == type(RunConfig().cache_dir)(".gla_cache")
    assert default_cache_dir(tmp_path) == tmp_path / ".gla_cache"
    monkeypatch.setenv("GLA_CACHE_DIR", str(tmp_path / "env"))
    assert default_cache_dir() == default_cache_dir(tmp_path) == RunConfig().cache_dir == tmp_path / "env"
    assert context("ViT-B-32", "openai", output_dir=tmp_path / "out").cache_dir == tmp_path / "env"
    seen = {}  # the book passes the same folder to a notebook that declares cache_dir
    monkeypatch.setattr(papermill, "execute_notebook", lambda src, dst, parameters, **kw: seen.update(parameters))
    monkeypatch.setattr(book, "declared_parameters", lambda src: ["cache_dir"])
    monkeypatch.setattr(book, "tidy_for_the_page", lambda *a, **k: None)
    book._execute(tmp_path / "01_a.ipynb", {}, tmp_path, progress_bar=False)
    assert seen["cache_dir"] == str((tmp_path / "env").resolve())


def test_cache_keys_keep_their_format_versions():
    """Changing a format constant invalidates every cache: the values stay until what they key changes."""
    from gla.protocols.common import FINETUNE_CACHE_FORMAT
    from gla.zeroshot import HEAD_CACHE_FORMAT

    assert (HEAD_CACHE_FORMAT, FINETUNE_CACHE_FORMAT) == (2, 2)
