"""Backbone providers, checkpoint formats, QuickGELU detection and wrong-architecture errors.

OpenAI's released CLIP files are TorchScript archives and their models use QuickGELU
(open_clip builds them through ``load_openai_model`` and names the models ``*-quickgelu``).
Here a random-init tiny open_clip model stands in for them, saved both as a state dict
(``torch.save``) and as a TorchScript archive (``torch.jit.save`` of the scripted model).
"""

import json
import warnings

import pytest
import torch

import gla.backbones as backbones
import gla.hub
from gla import plugins
from gla.backbones import (
    Backbone,
    backbone_providers,
    checkpoint_format,
    load_backbone,
    register_backbone_provider,
)
from gla.world.backbone import WORLD_PREFIX

CFG = {"embed_dim": 32,
       "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16},
       "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 1}}


@pytest.fixture(scope="module")
def oai(tmp_path_factory):
    """A tiny OpenAI-style model (with a ``-quickgelu`` twin and a wider cousin), saved both ways."""
    import open_clip

    d = tmp_path_factory.mktemp("oai_configs")
    (d / "gla-test-oai.json").write_text(json.dumps(CFG))
    (d / "gla-test-oai-quickgelu.json").write_text(json.dumps({**CFG, "quick_gelu": True}))
    wide = {**CFG, "vision_cfg": {**CFG["vision_cfg"], "width": 128},
            "text_cfg": {**CFG["text_cfg"], "width": 128, "heads": 2}}
    (d / "gla-test-wide.json").write_text(json.dumps(wide))
    open_clip.add_model_config(d)
    torch.manual_seed(0)
    model = open_clip.create_model("gla-test-oai-quickgelu")
    files = tmp_path_factory.mktemp("weights")
    torch.save(model.state_dict(), files / "state.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.script / save are deprecated, still what OpenAI shipped
        torch.jit.save(torch.jit.script(model), files / "openai.pt")
    return {"state": str(files / "state.pt"), "script": str(files / "openai.pt"), "weights": model.state_dict()}


def _same_weights(model, weights) -> bool:
    sd = model.state_dict()
    return set(sd) == set(weights) and all(torch.equal(sd[k], weights[k]) for k in weights)


def _uses_quick_gelu(model) -> bool:
    import open_clip

    return any(isinstance(m, open_clip.transformer.QuickGELU) for m in model.modules())


def test_a_pretrained_value_is_a_checkpoint_path_or_a_tag():
    from gla.backbones import is_checkpoint_path

    for path in ("ckpt/w.pt", "/abs/weights", "w.pth", "w.bin", "w.safetensors"):
        assert is_checkpoint_path(path), path
    for tag in ("openai", "laion2b_s34b_b88k", "world", "", None):
        assert not is_checkpoint_path(tag), tag


def test_checkpoint_format_reads_the_layout(oai, tmp_path):
    assert checkpoint_format(oai["script"]) == "torchscript"
    assert checkpoint_format(oai["state"]) == "state_dict"
    (tmp_path / "w.safetensors").write_bytes(b"{}")
    assert checkpoint_format(tmp_path / "w.safetensors") == "safetensors"
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    assert checkpoint_format(tmp_path / "junk.pt") == "unknown"


def test_torchscript_file_gets_the_quickgelu_model(oai):
    bb = load_backbone("gla-test-oai", oai["script"])
    assert bb.name == "gla-test-oai-quickgelu" and _uses_quick_gelu(bb.model)
    assert _same_weights(bb.model, oai["weights"])
    assert bb.encode_images(torch.rand(2, 3, 32, 32)).shape == (2, 32)


def test_state_dict_with_a_plain_name_is_refused_with_advice(oai):
    with pytest.raises(ValueError, match="gla-test-oai-quickgelu.*quick_gelu=False"):
        load_backbone("gla-test-oai", oai["state"])


@pytest.mark.parametrize("quick_gelu, name, expected", [
    (False, "gla-test-oai", "gla-test-oai"),
    (True, "gla-test-oai", "gla-test-oai-quickgelu"),
    (None, "gla-test-oai-quickgelu", "gla-test-oai-quickgelu"),
])
def test_explicit_quick_gelu_is_obeyed(oai, quick_gelu, name, expected):
    bb = load_backbone(name, oai["state"], quick_gelu=quick_gelu)
    assert bb.name == expected and _uses_quick_gelu(bb.model) == expected.endswith("-quickgelu")
    assert _same_weights(bb.model, oai["weights"])


def test_torchscript_file_with_quick_gelu_false_keeps_gelu(oai):
    bb = load_backbone("gla-test-oai", oai["script"], quick_gelu=False)
    assert bb.name == "gla-test-oai" and not _uses_quick_gelu(bb.model)


def test_contradictory_quick_gelu_is_an_error(oai):
    with pytest.raises(ValueError, match="contradicts"):
        load_backbone("gla-test-oai-quickgelu", oai["state"], quick_gelu=False)
    with pytest.raises(ValueError, match="quick_gelu"):
        load_backbone("gla-test-oai", oai["state"], quick_gelu="yes")


def test_checkpoint_of_another_architecture_names_file_and_model(oai):
    with pytest.raises(ValueError) as info:
        load_backbone("gla-test-wide", oai["state"])
    msg = str(info.value)
    assert oai["state"] in msg and "'gla-test-wide'" in msg and "width 128" in msg
    assert "pos_embed width changed" in msg  # the original cause is kept in the message
    with pytest.raises(ValueError, match="does not fit model 'gla-test-wide'"):
        load_backbone("gla-test-wide", oai["script"])


def test_providers_dispatch_by_longest_prefix(monkeypatch):
    monkeypatch.setattr(backbones, "_providers", {})
    monkeypatch.setattr(plugins, "_state", {"loaded": True})
    calls = []

    def fake(tag):
        def loader(name, pretrained, device, precision):
            calls.append((tag, name, pretrained, device, precision))
            return Backbone(torch.nn.Identity(), lambda x: x, lambda t: t, name, pretrained, device, {})
        return loader

    register_backbone_provider("toy", fake("short"))
    register_backbone_provider("toy-big", fake("long"))
    assert set(backbone_providers()) == {"toy", "toy-big"}
    bb = load_backbone("toy-small", None, precision="bf16")
    assert bb.name == "toy-small" and calls[-1] == ("short", "toy-small", "", torch.device("cpu"), "bf16")
    load_backbone("toy-big-1", "/some/ckpt.pt")
    assert calls[-1][:3] == ("long", "toy-big-1", "/some/ckpt.pt")
    with pytest.raises(ValueError, match="prefix"):
        register_backbone_provider("", fake("x"))
    with pytest.raises(TypeError, match="loader"):
        register_backbone_provider("x", None)


def test_a_provider_declares_its_models_tags_and_the_default(monkeypatch, tmp_path):
    """check_backbone asks the providers first and takes whatever pretrained values a
    provider declares; the default backbone and the book's pages follow the declarations,
    never a provider's name."""
    from gla.checks import check_backbone
    from gla.errors import UsageError
    from gla.pages import needs_run_pages

    others = {p: v for p, v in backbone_providers().items() if not v.default}  # the plug-ins loaded, less the world
    monkeypatch.setattr(backbones, "_providers", others)
    loader = lambda name, pretrained, device, precision: None  # never called: nothing is loaded here
    register_backbone_provider("toy-", loader, default_pretrained="toy-v1", models=("toy-small", "toy-big"),
                               tags=("toy-v2",), default=True)
    assert backbones.default_backbone() == ("toy-small", "toy-v1")
    assert backbones.resolve_backbone(None, None) == ("toy-small", "toy-v1")
    assert backbones.resolve_backbone(None, "toy-v2") == ("toy-small", "toy-v2")
    assert backbones.list_backbones()[:2] == ["toy-small", "toy-big"]
    # not open_clip models, yet known: the provider is asked first
    for pretrained in ("", "toy-v1", "toy-v2"):
        assert check_backbone("toy-big", pretrained) == "toy-big"
    ckpt = tmp_path / "w.pt"
    ckpt.write_bytes(b"x")
    assert check_backbone("toy-big", str(ckpt)) == "toy-big"
    with pytest.raises(UsageError, match="expected 'toy-v1', 'toy-v2' or a checkpoint file for toy-big"):
        check_backbone("toy-big", "openai")
    with pytest.raises(UsageError, match="unknown model 'toy-bigger'.*declares toy-small, toy-big"):
        check_backbone("toy-bigger", "toy-v1")
    with pytest.raises(UsageError, match="quick_gelu"):
        check_backbone("toy-small", "toy-v1", quick_gelu=True)
    # the world's pages describe the world only: a book on this plug-in's model gets its own pages
    assert needs_run_pages({"03_many_shot": {"backbone": "toy-small"}})
    # two defaults are none: the message says what to pass
    register_backbone_provider("toy2-", loader, models=("toy2-a",), default=True, shipped_pages=True)
    assert backbones.default_backbone() is None
    with pytest.raises(ValueError, match=r"backbone: no default backbone .*several plug-ins declare one \(toy-small, "
                                         r"toy2-a\)\); name a model"):
        backbones.resolve_backbone(None, None)
    assert not needs_run_pages({"03_many_shot": {"backbone": "toy2-a"}})
    register_backbone_provider("toy-", loader, models=("toy-small",), shipped_pages=True)
    assert backbones.default_backbone() == ("toy2-a", "")
    assert not needs_run_pages({"03_many_shot": {"backbone": "toy-small"}, "00": {"backbone": "toy2-a"}})
    with pytest.raises(ValueError, match="start with the prefix"):
        register_backbone_provider("toy-", loader, models=("other",))
    with pytest.raises(ValueError, match="default"):
        register_backbone_provider("toy-", loader, default=True)


def test_world_provider_serves_world_names():
    # registered by the world's plug-in, with nothing for the caller to do
    provider = backbones.backbone_provider("gla-world-tiny")
    assert provider is not None and provider.prefix == WORLD_PREFIX and provider.prepare is not None
    bb = load_backbone("gla-world-tiny")
    assert bb.name == "gla-world-tiny" and bb.tokenizer(["a photo of a cat."]).shape[0] == 1
    feats = bb.encode_images(bb.preprocess(torch.rand(2, 3, 32, 32)))
    assert torch.allclose(feats.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_core_backbones_do_not_import_the_world():
    import subprocess
    import sys

    code = "import sys, gla.backbones; print(any(m.startswith('gla.world') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _hub_cache(root, repo: str, filename: str, state) -> None:
    """A Hugging Face hub cache holding one file of ``repo`` (the layout huggingface_hub reads)."""
    folder = root / f"models--{repo.replace('/', '--')}"
    commit = "0" * 40
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    (folder / "snapshots" / commit).mkdir(parents=True)
    torch.save(state, folder / "snapshots" / commit / filename)


def test_cached_weights_load_without_the_hub_when_it_cannot_be_reached(oai, tmp_path, monkeypatch):
    """A tag whose weights are in the cache loads from it with the hub client offline (no
    retries); one that is not fails at once with the message, before open_clip is asked."""
    import open_clip.pretrained as pretrained
    from huggingface_hub import constants

    monkeypatch.setitem(pretrained._PRETRAINED, "gla-test-oai-quickgelu",
                        {"gla_cached": pretrained._pcfg(hf_hub="gla-test/cached/"),
                         "gla_missing": pretrained._pcfg(hf_hub="gla-test/missing/")})
    _hub_cache(tmp_path / "hub", "gla-test/cached", "open_clip_pytorch_model.bin", oai["weights"])
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(gla.hub, "hub_unreachable", lambda timeout=3.0: "huggingface.co:443: no route")
    real_download, offline_during = pretrained.hf_hub_download, []

    def download(*a, cache_dir=None, **k):
        offline_during.append(constants.is_offline_mode())
        return real_download(*a, cache_dir=cache_dir or str(tmp_path / "hub"), **k)

    monkeypatch.setattr(pretrained, "hf_hub_download", download)
    bb = load_backbone("gla-test-oai-quickgelu", "gla_cached")
    assert _same_weights(bb.model, oai["weights"]) and offline_during and all(offline_during)
    assert not constants.is_offline_mode()  # restored after the load
    offline_during.clear()
    with pytest.raises(RuntimeError, match="the hub cannot be reached: huggingface.co:443: no route"):
        load_backbone("gla-test-oai-quickgelu", "gla_missing")
    assert not offline_during  # refused before open_clip asked the hub
