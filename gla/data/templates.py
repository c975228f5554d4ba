"""Prompt templates per dataset, as explicit tables.

Two zero-shot conventions are kept, because the paper's baselines use both:

- ``style="gla"``: the zero-shot model of GLA's few-shot code (``ENSEMBLE_TEMPLATES`` in
  ``GLA.FS.public/trainers/util.py`` L156-173 of BeierZhu/GLA): the 80 OpenAI ImageNet
  templates for the ImageNet family, Caltech101 and SUN397; one template elsewhere. For
  OxfordPets, Flowers102 and Food101 it differs from CoOp's
  (``a type of pet, a photo of a {}.``).
- ``style="coop"``: CoOp's zero-shot CLIP (``CUSTOM_TEMPLATES`` in KaiyangZhou/CoOp
  ``trainers/zsclip.py`` L13-29), one template per dataset.

:func:`prompt_tuning_template` gives the hand-written prompt that GLA's prompt tuning
starts from (``CUSTOM_TEMPLATES`` in ``GLA.FS.public/trainers/util.py`` L51-70, used by
``trainers/gla.py`` L75-84). Class names are formatted with :func:`prompt_classname`
(``_`` becomes a space, as in CoOp ``trainers/zsclip.py`` L43 and GLA ``util.py`` L355).

Datasets neither reference covers use ``a photo of a {}.`` in both styles (Places365-LT)
or their family's templates (ObjectNet: the ImageNet family; ImageNet-LT in CoOp's style:
ImageNet's). Plug-ins add their own with :func:`register_templates`.
"""

from __future__ import annotations

from collections.abc import Sequence

from .registry import ensure_loaded

# The 80 prompt templates of OpenAI's ImageNet zero-shot evaluation (CLIP's notebook
# "Prompt_Engineering_for_ImageNet"; GLA.FS.public/trainers/util.py L72-153, same order).
IMAGENET_TEMPLATES: tuple[str, ...] = (
    "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.", "a photo of the hard to see {}.",
    "a low resolution photo of the {}.", "a rendering of a {}.", "graffiti of a {}.", "a bad photo of the {}.",
    "a cropped photo of the {}.", "a tattoo of a {}.", "the embroidered {}.", "a photo of a hard to see {}.",
    "a bright photo of a {}.", "a photo of a clean {}.", "a photo of a dirty {}.", "a dark photo of the {}.",
    "a drawing of a {}.", "a photo of my {}.", "the plastic {}.", "a photo of the cool {}.",
    "a close-up photo of a {}.", "a black and white photo of the {}.", "a painting of the {}.",
    "a painting of a {}.", "a pixelated photo of the {}.", "a sculpture of the {}.", "a bright photo of the {}.",
    "a cropped photo of a {}.", "a plastic {}.", "a photo of the dirty {}.", "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.", "a photo of the {}.", "a good photo of the {}.", "a rendering of the {}.",
    "a {} in a video game.", "a photo of one {}.", "a doodle of a {}.", "a close-up photo of the {}.",
    "a photo of a {}.", "the origami {}.", "the {} in a video game.", "a sketch of a {}.", "a doodle of the {}.",
    "a origami {}.", "a low resolution photo of a {}.", "the toy {}.", "a rendition of the {}.",
    "a photo of the clean {}.", "a photo of a large {}.", "a rendition of a {}.", "a photo of a nice {}.",
    "a photo of a weird {}.", "a blurry photo of a {}.", "a cartoon {}.", "art of a {}.", "a sketch of the {}.",
    "a embroidered {}.", "a pixelated photo of a {}.", "itap of the {}.", "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.", "a plushie {}.", "a photo of the nice {}.", "a photo of the small {}.",
    "a photo of the weird {}.", "the cartoon {}.", "art of the {}.", "a drawing of the {}.",
    "a photo of the large {}.", "a black and white photo of a {}.", "the plushie {}.", "a dark photo of a {}.",
    "itap of a {}.", "graffiti of the {}.", "a toy {}.", "itap of my {}.", "a photo of a cool {}.",
    "a photo of a small {}.", "a tattoo of the {}.",
)

_PHOTO = "a photo of a {}."
_IMAGENET_FAMILY = ("imagenet", "imagenet_v2", "imagenet_sketch", "imagenet_a", "imagenet_r", "objectnet",
                    "imagenet_lt")

# CoOp trainers/zsclip.py L13-29 (one template each).
_COOP = {
    "oxford_pets": "a photo of a {}, a type of pet.",
    "oxford_flowers": "a photo of a {}, a type of flower.",
    "fgvc_aircraft": "a photo of a {}, a type of aircraft.",
    "dtd": "{} texture.",
    "eurosat": "a centered satellite photo of {}.",
    "stanford_cars": _PHOTO,
    "food101": "a photo of {}, a type of food.",
    "sun397": _PHOTO,
    "caltech101": _PHOTO,
    "ucf101": "a photo of a person doing {}.",
    **{n: _PHOTO for n in _IMAGENET_FAMILY},
    "cifar100": _PHOTO,
    "places365_lt": _PHOTO,
}

# GLA.FS.public/trainers/util.py L156-173 (ENSEMBLE_TEMPLATES); None = the 80 ImageNet templates.
_GLA_ZERO_SHOT: dict[str, tuple[str, ...]] = {
    "oxford_pets": ("a type of pet, a photo of a {}.",),
    "oxford_flowers": ("a type of flower, a photo of a {}.",),
    "fgvc_aircraft": ("a photo of a {}, a type of aircraft.",),
    "dtd": ("{} texture.",),
    "eurosat": ("a centered satellite photo of {}.",),
    "stanford_cars": (_PHOTO,),
    "food101": ("a type of food, a photo of {}.",),
    "sun397": IMAGENET_TEMPLATES,
    "caltech101": IMAGENET_TEMPLATES,
    "ucf101": ("a photo of a person doing {}.",),
    **{n: IMAGENET_TEMPLATES for n in _IMAGENET_FAMILY},
    "cifar100": (_PHOTO,),  # GLA's CUSTOM_TEMPLATES["Cifar100"]; its ensemble table has no CIFAR
    "places365_lt": (_PHOTO,),
}

# GLA.FS.public/trainers/util.py L51-70 (CUSTOM_TEMPLATES) as used by trainers/gla.py L75-84:
# the prompt is the template with " {}." removed, then " <class>.".
_GLA_PROMPT_TUNING = {
    "oxford_pets": "a type of pet, a photo of a {}.",
    "oxford_flowers": "a type of flower, a photo of a {}.",
    # Official template "a type of aircraft, a photo of a {}" lacks the final "."; GLA's
    # code then keeps a literal "{}" in the prompt. We use the evident intent (with ".");
    # prompt_tuning_template(..., official=True) reproduces the official string.
    "fgvc_aircraft": "a type of aircraft, a photo of a {}.",
    "dtd": "a texture of {}.",
    "eurosat": "a centered satellite photo of {}.",
    "stanford_cars": _PHOTO,
    "food101": "a type of food, a photo of {}.",
    "sun397": _PHOTO,
    "caltech101": _PHOTO,
    "ucf101": "a photo of a person doing {}.",
    **{n: _PHOTO for n in _IMAGENET_FAMILY},
    "cifar100": _PHOTO,
    "places365_lt": _PHOTO,
}
_OFFICIAL_PROMPT_TUNING = {"fgvc_aircraft": "a type of aircraft, a photo of a {{}} {}."}

_REGISTERED: dict[str, dict[str, tuple[str, ...] | str]] = {}
STYLES = ("gla", "coop")


def register_templates(name: str, *, zero_shot: Sequence[str], prompt_tuning: str | None = None,
                       replace: bool = False) -> None:
    """Register a plug-in dataset's templates (used by both styles).

    Parameters
    ----------
    name : str
        The dataset's registry name.
    zero_shot : sequence of str
        Zero-shot templates, each with one ``{}``.
    prompt_tuning : str, optional
        The prompt tuning starts from (default: the first zero-shot template).
    replace : bool
        Allow replacing templates already registered under ``name``.
    """
    zs = (zero_shot,) if isinstance(zero_shot, str) else tuple(zero_shot)
    pt = prompt_tuning if prompt_tuning is not None else (zs[0] if zs else None)
    for t in zs + ((pt,) if pt is not None else ()):
        if not isinstance(t, str) or t.count("{}") != 1:
            raise ValueError(f"templates for '{name}': expected strings with exactly one '{{}}', got {t!r}")
    if not zs:
        raise ValueError(f"zero_shot: expected at least one template for '{name}'")
    if (name in _REGISTERED or name in _GLA_ZERO_SHOT) and not replace:
        raise ValueError(f"register_templates: '{name}' already has templates; pass replace=True to replace them")
    _REGISTERED[name] = {"zero_shot": zs, "prompt_tuning": pt}


def _unknown(name: str) -> ValueError:
    ensure_loaded()  # plug-ins register their templates on load
    known = sorted(set(_GLA_ZERO_SHOT) | set(_REGISTERED))
    return ValueError(f"name: no prompt templates for dataset '{name}'; known: {', '.join(known)}")


def _plugin(name: str) -> dict | None:
    if name not in _REGISTERED and name not in _GLA_ZERO_SHOT:
        ensure_loaded()
    return _REGISTERED.get(name)


def zero_shot_templates(name: str, style: str = "gla") -> list[str]:
    """Zero-shot prompt templates of a dataset.

    Parameters
    ----------
    name : str
        A registry name (``imagenet``, ``oxford_pets``, ...; plug-ins' names too).
    style : {"gla", "coop"}
        GLA's zero-shot ensemble (``GLA.FS.public/trainers/util.py`` L156-173) or CoOp's
        zero-shot CLIP (``trainers/zsclip.py`` L13-29). Plug-in templates serve both.

    Returns
    -------
    list of str
        Templates with one ``{}`` each (80 for the ImageNet family, Caltech101 and SUN397
        in GLA's style).
    """
    if style not in STYLES:
        raise ValueError(f"style: expected one of {STYLES}, got '{style}'")
    plug = _plugin(name)
    if plug is not None:
        return list(plug["zero_shot"])
    if name not in _GLA_ZERO_SHOT:
        raise _unknown(name)
    return [_COOP[name]] if style == "coop" else list(_GLA_ZERO_SHOT[name])


def prompt_tuning_template(name: str, *, official: bool = False) -> str:
    """The hand-written prompt GLA's prompt tuning starts from, as a template.

    Parameters
    ----------
    name : str
        A registry name.
    official : bool
        FGVC-Aircraft only: GLA's template lacks its final ``.``, so its code keeps a
        literal ``{}`` in every prompt (``a type of aircraft, a photo of a {} 707-320.``;
        ``GLA.FS.public/trainers/util.py`` L54 with ``trainers/gla.py`` L75-84). By default
        the evident intent (``a type of aircraft, a photo of a {}.``) is returned;
        ``official=True`` returns a template that reproduces the official prompt.

    Returns
    -------
    str
        A template with one ``{}`` for the class name (``a photo of a {}.`` for ImageNet,
        Caltech101, SUN397; ``a texture of {}.`` for DTD; ...).
    """
    plug = _plugin(name)
    if plug is not None:
        return str(plug["prompt_tuning"])
    if name not in _GLA_PROMPT_TUNING:
        raise _unknown(name)
    if official and name in _OFFICIAL_PROMPT_TUNING:
        return _OFFICIAL_PROMPT_TUNING[name]
    return _GLA_PROMPT_TUNING[name]


def prompt_classname(classname: str) -> str:
    """A class name as it goes into a prompt: ``_`` replaced by a space.

    As CoOp ``trainers/zsclip.py`` L43 and GLA ``GLA.FS.public/trainers/util.py`` L355,
    ``trainers/gla.py`` L82 do (split files keep ``american_bulldog``).
    """
    if not isinstance(classname, str):
        raise TypeError(f"classname: expected a string, got {type(classname).__name__}")
    return classname.replace("_", " ")


def format_prompts(template: str, classnames: Sequence[str]) -> list[str]:
    """``template`` filled with each class name (after :func:`prompt_classname`).

    Parameters
    ----------
    template : str
        A template with one ``{}``.
    classnames : sequence of str
        Class names as the dataset spells them.

    Returns
    -------
    list of str
        One prompt per class, in order.
    """
    if not isinstance(template, str) or "{}" not in template:
        raise ValueError(f"template: expected a string with a '{{}}' for the class name, got {template!r}")
    return [template.format(prompt_classname(c)) for c in classnames]
