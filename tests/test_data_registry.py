"""The dataset registry: one loader signature, declared options, plug-ins."""

import subprocess
import sys
from importlib.metadata import EntryPoint

import pytest
import torch

from gla import plugins
from gla.data import (
    DatasetEntry,
    LabelledImages,
    dataset_entry,
    list_datasets,
    load_dataset,
    register_dataset,
    registry,
)


@pytest.fixture
def fresh(monkeypatch):
    """A registry with the real readers loaded and no plug-ins yet (restored afterwards)."""
    list_datasets()  # make sure the readers registered themselves in the real registry
    real = {n: e for n, e in registry._REGISTRY.items() if e.kind == "real"}
    monkeypatch.setattr(registry, "_REGISTRY", dict(real))
    monkeypatch.setattr(registry, "_state", {"readers": True})
    monkeypatch.setattr(plugins, "_state", {"loaded": False})
    return registry


def toy_loader(split, *, root=None, transform=None, size=3):
    return LabelledImages(torch.zeros(size, 3, 2, 2), list(range(size)), ["a", "b", "c"], ["{}."], name="toy",
                          split=split, transform=transform, meta={"root": root})


def test_register_refuses_duplicates_unless_replace(fresh):
    entry = DatasetEntry("toy", toy_loader, ("test",), "real", options=("size",))
    register_dataset(entry)
    with pytest.raises(ValueError, match="'toy' is already registered"):
        register_dataset(entry)
    with pytest.raises(ValueError, match="'imagenet' is already registered"):
        register_dataset(DatasetEntry("imagenet", toy_loader, ("test",), "real"))
    other = DatasetEntry("toy", toy_loader, ("val",), "real")
    assert register_dataset(other, replace=True) is other and dataset_entry("toy").splits == ("val",)


def test_one_signature_declared_options_and_root_from_the_environment(fresh, monkeypatch, tmp_path):
    register_dataset(DatasetEntry("toy", toy_loader, ("test",), "real", options=("size",)))
    monkeypatch.setenv("GLA_DATA_ROOT", str(tmp_path))
    ds = load_dataset("toy", "test", size=2)
    assert len(ds) == 2 and ds.meta["root"] == str(tmp_path)
    assert load_dataset("toy", "test", root="/elsewhere").meta["root"] == "/elsewhere"
    with pytest.raises(TypeError, match=r"does not take the option\(s\) colour; it accepts: size"):
        load_dataset("toy", "test", colour="red")
    with pytest.raises(ValueError, match=r"has splits \('test',\), not 'train'"):
        load_dataset("toy", "train")
    with pytest.raises(TypeError, match="val_per_class"):
        load_dataset("imagenet_v2", "test", root=tmp_path, val_per_class=3)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown dataset 'mnist'; known: .*imagenet.*world-main"):
        dataset_entry("mnist")
    assert "world-main" in list_datasets("world") and "imagenet" not in list_datasets("world")
    assert dataset_entry("imagenet").few_shot == "gla-imagenet" and dataset_entry("dtd").few_shot == "coop"


def test_entry_is_validated():
    with pytest.raises(ValueError, match="few_shot"):
        DatasetEntry("x", toy_loader, ("test",), "real", few_shot="random")
    with pytest.raises(ValueError, match="options"):
        DatasetEntry("x", toy_loader, ("test",), "real", options="size")
    with pytest.raises(TypeError, match="loader"):
        DatasetEntry("x", None, ("test",), "real")


PLUGIN = """
import torch
from gla.data import DatasetEntry, LabelledImages, register_dataset
CALLS = []
def toy_loader(split, *, root=None, transform=None):
    return LabelledImages(torch.zeros(1, 3, 2, 2), [0], ["a"], ["{}."], name="plugged", split=split)
def register():
    CALLS.append(1)
    register_dataset(DatasetEntry("plugged", toy_loader, ("test",), "toykind"), replace=True)
"""


@pytest.fixture
def plugin_module(tmp_path, monkeypatch):
    (tmp_path / "toy_gla_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "toy_gla_plugin", raising=False)
    import toy_gla_plugin

    return toy_gla_plugin


def test_plugins_from_installed_entry_points(fresh, monkeypatch, plugin_module):
    """Path 1: the distribution declares entry points in the group gla.plugins."""
    import importlib.metadata

    eps = [EntryPoint("toy", "toy_gla_plugin:register", "gla.plugins"),
           EntryPoint("world", "gla.world.plugin:register", "gla.plugins")]
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group=None: [e for e in eps if e.group == group])
    monkeypatch.setattr(plugins, "BUILTIN_PLUGINS", {"world": "no_such_module:register"})  # must not be used
    assert list_datasets("toykind") == ["plugged"] and plugin_module.CALLS == [1]
    assert "world-main" in list_datasets("world")
    list_datasets()
    assert plugin_module.CALLS == [1]  # loaded once, lazily


def test_plugins_from_the_source_tree_fallback(fresh, monkeypatch, plugin_module):
    """Path 2: no entry points installed (a source checkout): the package's own plug-ins load."""
    import importlib.metadata

    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group=None: [])
    monkeypatch.setattr(plugins, "BUILTIN_PLUGINS", {"world": "gla.world.plugin:register",
                                                      "toy": "toy_gla_plugin:register"})
    assert list_datasets("toykind") == ["plugged"]
    assert "world-lt" in list_datasets("world")
    ds = load_dataset("world-main", "test", scale=0.02, seed=1)
    assert ds.name == "world-main" and ds.split == "test" and len(ds) > 0
    with pytest.raises(TypeError, match="it accepts: world, seed, scale"):
        load_dataset("world-main", "test", val_per_class=3)


def test_a_broken_plugin_or_reader_surfaces(fresh, monkeypatch):
    import importlib.metadata

    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group=None: [])
    monkeypatch.setattr(plugins, "BUILTIN_PLUGINS", {"broken": "gla_no_such_plugin_module:register"})
    with pytest.raises(ImportError, match="plug-in 'broken'"):
        list_datasets()
    monkeypatch.setattr(registry, "_state", {"readers": False})
    monkeypatch.setattr(plugins, "_state", {"loaded": True})
    monkeypatch.setattr(registry, "READER_MODULES", ("gla.data.no_such_reader",))
    with pytest.raises(ModuleNotFoundError, match="no_such_reader"):
        list_datasets()


def test_no_core_module_imports_the_world():
    code = ("import sys, gla, gla.data\n"
            "from gla.data import imagenet, coop, longtail, cifar, registry, templates, sampling\n"
            "assert not [m for m in sys.modules if m.startswith('gla.world')], sorted(sys.modules)\n"
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
