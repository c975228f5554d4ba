"""Procedural images of the miniature world: attribute-defined objects on noisy scenes.

A *concept* is a (shape, colour, pattern) triple. :func:`render` draws a batch of concepts
as small RGB images, vectorised in torch and deterministic given a ``torch.Generator``:
the object gets a random position, scale and rotation (its pattern rotates with it),
colour jitter, and sits on a smooth random background with distractor blobs and pixel
noise. A :class:`Style` changes the rendering for distribution-shifted test sets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

SHAPES = ("circle", "square", "triangle", "cross", "ring", "diamond", "star", "heart")
COLOURS = {
    "red": (0.85, 0.15, 0.15), "green": (0.15, 0.70, 0.20), "blue": (0.15, 0.30, 0.90),
    "yellow": (0.95, 0.85, 0.15), "purple": (0.60, 0.20, 0.75), "orange": (0.95, 0.50, 0.10),
    "cyan": (0.10, 0.80, 0.85), "pink": (0.95, 0.50, 0.70), "brown": (0.50, 0.30, 0.15),
    "grey": (0.55, 0.55, 0.55),
}
PATTERNS = ("plain", "striped", "dotted", "checkered", "gradient", "outlined")


@dataclass(frozen=True)
class Style:
    """How a scene is rendered; the defaults are the pretraining and in-distribution style.

    Shifted styles play the roles of ImageNet-V2 / -Sketch / -R / -A / ObjectNet.
    """

    name: str = "photo"
    background: tuple[float, float] = (0.25, 0.75)  # range of the background's mean grey level
    background_contrast: float = 0.35  # amplitude of the smooth background
    pixel_noise: float = 0.06
    n_distractors: tuple[int, int] = (1, 3)  # inclusive range
    distractor_size: tuple[float, float] = (0.08, 0.2)
    scale: tuple[float, float] = (0.45, 0.8)
    colour_jitter: float = 0.08
    grayscale: bool = False  # no colour, only luminance
    desaturate: float = 0.0  # sketch: mix towards luminance (0 = full colour, 1 = grey)
    edges_only: bool = False  # sketch: outline of the object
    invert: bool = False  # rendition: inverted palette
    occlusion: float = 0.0  # fraction of images with an occluding bar (adversarial-like)


STYLES = {
    "photo": Style(),
    "resample": Style(name="resample", pixel_noise=0.08, scale=(0.4, 0.85)),  # like ImageNet-V2
    "sketch": Style(name="sketch", background=(0.75, 0.9), background_contrast=0.05, desaturate=0.1,
                    pixel_noise=0.1, n_distractors=(0, 1)),
    "rendition": Style(name="rendition", colour_jitter=0.35, background_contrast=0.05, pixel_noise=0.0,
                       n_distractors=(0, 0), scale=(0.6, 0.9)),
    "adversarial": Style(name="adversarial", n_distractors=(3, 5), distractor_size=(0.15, 0.3),
                         occlusion=0.6, scale=(0.35, 0.6)),
    "clutter": Style(name="clutter", background_contrast=0.6, n_distractors=(4, 6), pixel_noise=0.1),
}


def _sdf_one(shape: int, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Approximate signed distance (negative inside) of one shape in local coordinates."""
    name = SHAPES[shape]
    au, av = u.abs(), v.abs()
    if name == "circle":
        return torch.sqrt(u * u + v * v) - 0.85
    if name == "square":
        return torch.maximum(au, av) - 0.72
    if name == "triangle":
        return torch.maximum(-v - 0.55, (au * 1.732 + v) / 2 - 0.45)
    if name == "cross":
        return torch.minimum(torch.maximum(au - 0.28, av - 0.9), torch.maximum(au - 0.9, av - 0.28))
    if name == "ring":
        return (torch.sqrt(u * u + v * v) - 0.62).abs() - 0.25
    if name == "diamond":
        return au + av - 0.95
    if name == "star":
        return torch.sqrt(u * u + v * v) - (0.55 + 0.3 * torch.cos(5 * torch.atan2(v, u)))
    # heart-like: a disc with a notch
    return torch.maximum(torch.sqrt(u * u + v * v) - 0.8, -(v + 0.25 - 0.6 * au))


def _pattern_one(pattern: int, u: torch.Tensor, v: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Pattern intensity in [0, 1] (1 = base colour, 0 = pale secondary colour)."""
    name = PATTERNS[pattern]
    if name in ("plain", "outlined"):  # outlined is handled with the mask
        return torch.ones_like(u)
    if name == "gradient":
        return ((u + 1) / 2).clamp(0, 1)
    su = torch.sin(u * f)
    if name == "striped":
        return (su > 0).float()
    sv = torch.sin(v * f)
    if name == "dotted":
        return 1.0 - ((su * sv) > 0.55).float()
    return ((su * sv) > 0).float()  # checkered


def _per_group(index: torch.Tensor, fn, *tensors: torch.Tensor) -> torch.Tensor:
    """Apply ``fn(value, *rows)`` to the rows of each distinct index value; reassemble."""
    out = torch.empty_like(tensors[0])
    for value in torch.unique(index).tolist():
        rows = torch.nonzero(index == value).flatten()
        out[rows] = fn(value, *(t[rows] for t in tensors))
    return out


def _smooth_noise(b: int, size: int, cells: int, g: torch.Generator) -> torch.Tensor:
    coarse = torch.rand(b, 3, cells, cells, generator=g)
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)


def render(shape: torch.Tensor, colour: torch.Tensor, pattern: torch.Tensor, *, size: int = 32,
           style: Style = Style(), generator: torch.Generator | None = None, return_params: bool = False):
    """Render one image per (shape, colour, pattern) index triple.

    Parameters
    ----------
    shape, colour, pattern : (B,) long tensors
        Indices into :data:`SHAPES`, :data:`COLOURS` (in order) and :data:`PATTERNS`.
    size : int
        Image side in pixels.
    style : Style
        Rendering style.
    generator : torch.Generator
        Source of randomness (deterministic for a seeded generator).
    return_params : bool
        Also return what was drawn for each image (the same draws either way).

    Returns
    -------
    (B, 3, size, size) float32 tensor in [0, 1]; with ``return_params`` also a dict of
    ``(B,)`` tensors: the object's centre ``x`` and ``y`` (in [-1, 1], ``y`` down), its
    ``scale``, the ``background`` grey level and the number of ``distractors``.
    """
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    b = shape.shape[0]
    lin = torch.linspace(-1, 1, size)
    yy, xx = torch.meshgrid(lin, lin, indexing="ij")
    xx, yy = xx.expand(b, size, size), yy.expand(b, size, size)

    def uni(lo, hi, n=b):
        return lo + (hi - lo) * torch.rand(n, generator=g)

    # Background: smooth colour field around a random grey level, plus distractor blobs.
    base = uni(*style.background).view(b, 1, 1, 1)
    img = base + style.background_contrast * (_smooth_noise(b, size, 4, g) - 0.5)
    palette = torch.tensor(list(COLOURS.values()), dtype=torch.float32)
    lo_d, hi_d = style.n_distractors
    n_d = torch.randint(lo_d, hi_d + 1, (b,), generator=g)
    for j in range(hi_d):
        cx, cy = uni(-0.9, 0.9), uni(-0.9, 0.9)
        rad = uni(*style.distractor_size)
        col = palette[torch.randint(0, len(palette), (b,), generator=g)] * uni(0.6, 1.0).view(b, 1)
        d = torch.sqrt((xx - cx.view(b, 1, 1)) ** 2 + (yy - cy.view(b, 1, 1)) ** 2) - rad.view(b, 1, 1)
        m = torch.sigmoid(-d * 40) * (j < n_d).float().view(b, 1, 1)
        img = img * (1 - m[:, None]) + col.view(b, 3, 1, 1) * m[:, None]

    # The object, in its own rotated and scaled frame.
    cx, cy = uni(-0.3, 0.3), uni(-0.3, 0.3)
    sc = uni(*style.scale)
    ang = uni(0, 2 * math.pi)
    dx, dy = xx - cx.view(b, 1, 1), yy - cy.view(b, 1, 1)
    ca, sa = torch.cos(ang).view(b, 1, 1), torch.sin(ang).view(b, 1, 1)
    u = (dx * ca + dy * sa) / sc.view(b, 1, 1)
    v = (-dx * sa + dy * ca) / sc.view(b, 1, 1)
    sdf = _per_group(shape, _sdf_one, u, v)
    sharp = 12.0 * sc.view(b, 1, 1) * size / 32
    mask = torch.sigmoid(-sdf * sharp * 2)
    outlined = (pattern == PATTERNS.index("outlined")).view(b, 1, 1)
    edge = torch.sigmoid(-(sdf.abs() - 0.1) * sharp * 2)
    mask = torch.where(outlined, edge, mask)
    freq = uni(5.0, 8.0).view(b, 1, 1).expand(b, size, size)
    pat = _per_group(pattern, _pattern_one, u, v, freq)
    col = palette[colour] + style.colour_jitter * (torch.rand(b, 3, generator=g) - 0.5)
    col = col.clamp(0, 1)
    second = col * 0.35 + 0.65 * torch.tensor([0.95, 0.95, 0.9])  # pale version of the colour
    obj = col.view(b, 3, 1, 1) * pat[:, None] + second.view(b, 3, 1, 1) * (1 - pat[:, None])
    if style.edges_only:
        mask = torch.sigmoid(-(sdf.abs() - 0.08) * sharp * 2)
        obj = torch.zeros_like(obj)
    img = img * (1 - mask[:, None]) + obj * mask[:, None]

    if style.occlusion > 0:
        occ = (torch.rand(b, generator=g) < style.occlusion).float().view(b, 1, 1)
        off = uni(-0.4, 0.4).view(b, 1, 1)
        bar = (((xx - off) * ca + (yy - off) * sa).abs() < 0.18).float() * occ
        grey = uni(0.2, 0.8).view(b, 1, 1, 1)
        img = img * (1 - bar[:, None]) + grey * bar[:, None]
    if style.invert:
        img = 1.0 - img
    if style.grayscale:
        img = img.mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)
    elif style.desaturate > 0:
        img = (1 - style.desaturate) * img + style.desaturate * img.mean(dim=1, keepdim=True)
    img = img + style.pixel_noise * torch.randn(img.shape, generator=g)
    img = img.clamp(0, 1).contiguous()
    if return_params:
        return img, {"x": cx, "y": cy, "scale": sc, "background": base.view(b), "distractors": n_d}
    return img
