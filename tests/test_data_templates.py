"""Prompt templates against the strings CoOp and GLA build (golden prompts.json)."""

import json
from pathlib import Path

import pytest

from gla.data import (
    format_prompts,
    list_datasets,
    prompt_classname,
    prompt_tuning_template,
    register_templates,
    zero_shot_templates,
)

GOLDEN = json.loads((Path(__file__).parent / "data" / "golden" / "prompts.json").read_text())
KEYS = sorted(GOLDEN["expected"]["per_dataset"])


@pytest.mark.parametrize("key", KEYS)
def test_prompts_match_coop_and_gla(key):
    """CoOp's zero-shot CLIP (KaiyangZhou/CoOp trainers/zsclip.py L13-29, L42-43, ff61507), GLA's
    zero-shot ensemble and prompt-tuning prompts (BeierZhu/GLA GLA.FS.public.zip
    trainers/util.py L51-173, L346-365 and trainers/gla.py L75-84, L196, efbcd60)."""
    names = GOLDEN["inputs"]["class_names_as_in_split_file"][key]
    exp = GOLDEN["expected"]["per_dataset"][key]
    coop = zero_shot_templates(key, style="coop")
    assert len(coop) == 1 and format_prompts(coop[0], names) == exp["coop_zsclip_prompts"]
    gla = zero_shot_templates(key, style="gla")
    assert [format_prompts(t, names) for t in gla] == exp["gla_zero_shot_prompts_per_template"]
    official = prompt_tuning_template(key, official=True)
    assert format_prompts(official, names) == exp["gla_prompt_tuning"]["prompts"]


def test_the_80_templates_and_which_datasets_use_them():
    """GLA.FS.public.zip trainers/util.py L72-153 (IMAGENET_TEMPLATES) and L156-173 (efbcd60)."""
    t80 = GOLDEN["expected"]["imagenet_templates_80"]
    assert zero_shot_templates("imagenet") == t80 and len(t80) == 80
    for key in ["caltech101", "sun397", "imagenet_v2", "imagenet_sketch", "imagenet_a", "imagenet_r",
                "imagenet_lt", "objectnet"]:
        assert zero_shot_templates(key) == t80, key
    for key, coop_gla in [("oxford_pets", "OxfordPets"), ("food101", "Food101"), ("oxford_flowers", "OxfordFlowers")]:
        diff = GOLDEN["expected"]["gla_zero_shot_differs_from_coop_single_template"][coop_gla]
        assert zero_shot_templates(key, "coop") == [diff["coop_zsclip"]]
        assert zero_shot_templates(key, "gla") == diff["gla_ensemble"]


def test_prompt_tuning_table_and_the_fgvc_decision():
    """GLA's prompt-tuning table (GLA.FS.public.zip trainers/util.py L51-70 with trainers/gla.py L75-84)."""
    table = GOLDEN["expected"]["gla_prompt_tuning_table"]
    assert prompt_tuning_template("imagenet") == prompt_tuning_template("caltech101") == "a photo of a {}."
    assert prompt_tuning_template("sun397") == "a photo of a {}."
    assert prompt_tuning_template("dtd") == "a texture of {}."
    assert prompt_tuning_template("oxford_pets").format("{CLASS}") == table["OxfordPets"]["prompts"][0]
    assert prompt_tuning_template("cifar100").format("{CLASS}") == table["Cifar100"]["prompts"][0]
    # The official FGVC prompt keeps a literal '{}'; by default we use the evident intent.
    assert format_prompts(prompt_tuning_template("fgvc_aircraft"), ["A300B4"]) == ["a type of aircraft, a photo of a A300B4."]
    assert format_prompts(prompt_tuning_template("fgvc_aircraft", official=True), ["A300B4"]) == [
        "a type of aircraft, a photo of a {} A300B4."]


def test_every_registered_dataset_has_templates():
    for name in list_datasets():
        assert zero_shot_templates(name) and "{}" in prompt_tuning_template(name), name
    assert zero_shot_templates("world-main") == ["a photo of a {}.", "a {}.", "this is a {}."]


def test_unknown_name_and_style_raise():
    with pytest.raises(ValueError, match="no prompt templates for dataset 'mnist'"):
        zero_shot_templates("mnist")
    with pytest.raises(ValueError, match="no prompt templates"):
        prompt_tuning_template("mnist")
    with pytest.raises(ValueError, match="style"):
        zero_shot_templates("imagenet", style="clip")


def test_register_templates_for_a_plugin(monkeypatch):
    from gla.data import templates

    monkeypatch.setattr(templates, "_REGISTERED", dict(templates._REGISTERED))
    register_templates("toy-set", zero_shot=["a toy {}.", "a {}."])
    assert zero_shot_templates("toy-set") == zero_shot_templates("toy-set", "coop") == ["a toy {}.", "a {}."]
    assert prompt_tuning_template("toy-set") == "a toy {}."
    with pytest.raises(ValueError, match="already has templates"):
        register_templates("toy-set", zero_shot=["x {}."])
    with pytest.raises(ValueError, match="already has templates"):
        register_templates("imagenet", zero_shot=["x {}."])
    with pytest.raises(ValueError, match="exactly one"):
        register_templates("bad", zero_shot=["no placeholder"])


def test_prompt_classname():
    """Underscores become spaces (CoOp trainers/zsclip.py L43; GLA trainers/util.py L355)."""
    assert prompt_classname("outdoor apartment_building") == "outdoor apartment building"
    assert format_prompts("a photo of a {}.", ["Apply_Eye_Makeup"]) == ["a photo of a Apply Eye Makeup."]
    with pytest.raises(ValueError, match="template"):
        format_prompts("no placeholder", ["a"])
