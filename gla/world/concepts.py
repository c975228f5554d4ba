"""Concepts, names, the true pretraining prior, captions and the word tokenizer of the world."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, fields

import torch

from .render import COLOURS, PATTERNS, SHAPES

SYNONYMS = {
    "circle": ["circle", "disc"], "square": ["square", "box"], "triangle": ["triangle", "wedge"],
    "cross": ["cross", "plus"], "ring": ["ring", "hoop"], "diamond": ["diamond", "rhombus"],
    "star": ["star", "spiky"], "heart": ["heart", "notched"],
    "red": ["red", "crimson"], "green": ["green", "emerald"], "blue": ["blue", "azure"],
    "yellow": ["yellow", "golden"], "purple": ["purple", "violet"], "orange": ["orange", "amber"],
    "cyan": ["cyan", "teal"], "pink": ["pink", "rosy"], "brown": ["brown", "chocolate"],
    "grey": ["grey", "ashen"],
    "plain": ["plain", "solid"], "striped": ["striped", "lined"], "dotted": ["dotted", "spotty"],
    "checkered": ["checkered", "chequered"], "gradient": ["gradient", "fading"],
    "outlined": ["outlined", "hollow"],
}
NAMED_TEMPLATES = [
    "a photo of a {name}.", "a {name}.", "{name}, a {col} {shape}.", "a {col} {pat} {shape} called {name}.",
    "this {name} is {col}.", "the {name} with a {pat} look.", "my favourite {name} on a table.",
    "a {pat} {name}.",
]
PLAIN_TEMPLATES = [
    "a {col} {pat} {shape}.", "a {pat} {shape} in {col}.", "a photo of a {col} {shape}.",
    "a {shape}, {pat} and {col}.", "something {col} and {pat}.", "a {shape} on a table.",
]
ZERO_SHOT_TEMPLATES = ["a photo of a {}.", "a {}.", "this is a {}."]
# Words for one image's own rendering (WorldConfig.instance_prob), in the order they are written.
INSTANCE_WORDS = ("small", "large", "left", "right", "top", "bottom", "dark", "light", "sketch", "drawing", "cluttered")
SYLLABLES = ["ba", "ko", "ri", "zu", "te", "mo", "la", "vi", "do", "ne", "pa", "gu", "si", "ra",
             "fo", "ki", "lu", "me", "to", "ze", "bo", "ni", "ta", "go", "fe", "ju", "ha", "pe"]
VOCAB_SIZE = 1024  # fixed by the model config; the last id is the end-of-text token
PAD, SOT, UNK = 0, 1, 2
EOT = VOCAB_SIZE - 1


@dataclass(frozen=True)
class WorldConfig:
    """Settings that define a world (everything downstream derives from them).

    Parameters
    ----------
    n_concepts : int
        Number of concepts (classes); at most 8 shapes x 10 colours x 6 patterns = 480.
    image_size : int
        Image side in pixels.
    zipf_exponent : float
        Pretraining concept frequencies are proportional to
        ``(rank + zipf_offset) ** -zipf_exponent`` over a random order of the concepts
        (ranks 1 to ``n_concepts``).
    zipf_offset : float
        The offset ``q`` of the Zipf-Mandelbrot law; 0 gives Zipf's law. A positive offset
        flattens the head (the top concept takes a smaller share of the corpus) while the
        tail still falls as a power of the rank.
    name_prob : float
        Share of pretraining captions that contain the concept's name (the rest describe
        attributes only).
    style_share : float
        Share of pretraining images rendered in another style than the default photo
        (sketch, rendition, clutter or resample, drawn uniformly), as web data holds
        drawings and renditions too. The adversarial style is never seen in pretraining.
    seed : int
        Seed of the concepts, names, and frequency order.
    generic_names, generic_prob : int, float
        A mechanism studied in ``gla/world/README.md`` (off by default): ``generic_names``
        hypernym-like names, each shared by the concepts of the rarer half that have the
        same shape modulo ``generic_names``; a named caption of such a concept uses its
        generic name instead of its own with probability ``generic_prob`` (the web calls a
        rare bird "a bird").
    template_variety : float
        A mechanism studied in ``gla/world/README.md`` (0, off, by default): frequent
        concepts are named in all caption templates, rare ones in fewer. The concept of
        frequency rank ``r`` (0 = most frequent, of ``K``) keeps the first
        ``max(1, round(T * (1 - template_variety * r / (K - 1))))`` of the ``T`` named
        templates ordered from descriptive to generic, so at 1 the rarest concept is named
        only in descriptive captions and never in the generic ones that zero-shot prompts
        resemble ("a photo of a {name}.").
    subword_names : float
        A property of real tokenizers (0, off, by default): byte-pair encoders give frequent
        words a token of their own and split rare words into pieces that other words share.
        The names of this share of the concepts, the rarest first, are read as the syllables
        they are made of, so the text tower composes a rare name from pieces it has seen in
        other names instead of learning a token of its own.
    instance_prob : float
        A property of web captions (0, off, by default): they describe the image at hand,
        not only its concept. Each caption of the corpus then carries, each with this
        probability, words for what the renderer drew for that image (:data:`INSTANCE_WORDS`:
        small or large, left or right, top or bottom, a dark or light background, and a
        sketch, drawing or cluttered style), so that fewer pairs of a batch match each
        other's captions.
    label_noise : float
        Downstream, not pretraining: the share of ``world-main``'s training labels (the
        ImageNet role) replaced by another class drawn uniformly, as ImageNet's training
        labels carry documented errors and ambiguous images. 0 (clean) by default.
    main_train_per_class : int
        Downstream: training images per class of ``world-main`` (0: the task's own, 100).
        Downstream settings change no pretraining corpus, so they are left out of the
        pretraining checkpoint's key (:meth:`corpus_settings`).
    """

    n_concepts: int = 100
    image_size: int = 32
    zipf_exponent: float = 4.0
    zipf_offset: float = 17.0
    name_prob: float = 0.5
    style_share: float = 0.0
    seed: int = 0
    generic_names: int = 0
    generic_prob: float = 0.0
    template_variety: float = 0.0
    subword_names: float = 0.0
    instance_prob: float = 0.0
    label_noise: float = 0.0
    main_train_per_class: int = 0

    @classmethod
    def from_dict(cls, settings: dict) -> "WorldConfig":
        """The settings as a checkpoint stores them (:meth:`settings`). A setting added after
        the checkpoint was written takes the value that reproduces the world it was made in:
        ``zipf_offset`` 0 (Zipf's law), whatever today's default; the mechanisms off."""
        return cls(**{"zipf_offset": 0.0, **settings})

    def settings(self) -> dict:
        """The settings that define the world, as checkpoints and cache keys record them: the
        mechanisms added later appear only when switched on, so the worlds made before them
        keep their keys."""
        d = asdict(self)
        for name, off in _MECHANISMS_OFF.items():
            if d[name] == off:
                del d[name]
        return d

    def corpus_settings(self) -> dict:
        """The settings that the pretraining corpus depends on (:meth:`settings` less the
        downstream ones, :data:`DOWNSTREAM_SETTINGS`): what keys a pretrained checkpoint."""
        return {k: v for k, v in self.settings().items() if k not in DOWNSTREAM_SETTINGS}

    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.settings(), sort_keys=True).encode()).hexdigest()[:12]


_MECHANISMS = ("generic_names", "generic_prob", "template_variety", "subword_names", "instance_prob", "label_noise",
               "main_train_per_class")
DOWNSTREAM_SETTINGS = ("label_noise", "main_train_per_class")  # settings of the downstream tasks, not the corpus
_MECHANISMS_OFF = {f.name: f.default for f in fields(WorldConfig) if f.name in _MECHANISMS}
# Named templates from descriptive to generic (the order `template_variety` cuts in): the
# last two are the ones zero-shot prompts resemble.
_NAMED_BY_GENERALITY = [2, 3, 5, 7, 4, 6, 1, 0]


def _make_names(n: int, g: torch.Generator) -> list[str]:
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < n:
        k = int(torch.randint(2, 4, (1,), generator=g))
        word = "".join(SYLLABLES[int(i)] for i in torch.randint(0, len(SYLLABLES), (k,), generator=g))
        if word not in seen and word not in SYNONYMS:
            seen.add(word)
            names.append(word)
    return names


@dataclass
class World:
    """A generated world: concepts with attributes and names, and the true prior."""

    config: WorldConfig
    shapes: torch.Tensor = field(init=False)  # (K,)
    colours: torch.Tensor = field(init=False)
    patterns: torch.Tensor = field(init=False)
    names: list[str] = field(init=False)  # primary name of each concept (the class name)
    alt_names: list[str] = field(init=False)
    generic: list[str] = field(init=False)  # a rare concept's generic name ("" for none)
    named_templates: list[list[str]] = field(init=False)  # the named templates each concept appears in
    prior: torch.Tensor = field(init=False)  # (K,) true pretraining prior, float64

    def __post_init__(self) -> None:
        c = self.config
        n_all = len(SHAPES) * len(COLOURS) * len(PATTERNS)
        if not 2 <= c.n_concepts <= n_all:
            raise ValueError(f"n_concepts: expected 2 to {n_all}, got {c.n_concepts}")
        if c.zipf_exponent < 0:
            raise ValueError(f"zipf_exponent: expected a non-negative number, got {c.zipf_exponent}")
        if c.zipf_offset < 0:
            raise ValueError(f"zipf_offset: expected a non-negative number, got {c.zipf_offset}")
        if not 0 <= c.name_prob <= 1:
            raise ValueError(f"name_prob: expected a number in [0, 1], got {c.name_prob}")
        if not 0 <= c.style_share <= 1:
            raise ValueError(f"style_share: expected a number in [0, 1], got {c.style_share}")
        if c.generic_names < 0 or not 0 <= c.generic_prob <= 0.75:
            raise ValueError(f"generic_names, generic_prob: expected a count >= 0 and a probability in [0, 0.75], "
                             f"got {c.generic_names}, {c.generic_prob}")
        if not 0 <= c.template_variety <= 1:
            raise ValueError(f"template_variety: expected a number in [0, 1], got {c.template_variety}")
        if not 0 <= float(c.subword_names) <= 1:
            raise ValueError(f"subword_names: expected a share in [0, 1], got {c.subword_names}")
        if not 0 <= c.instance_prob <= 1:
            raise ValueError(f"instance_prob: expected a probability in [0, 1], got {c.instance_prob}")
        if not 0 <= c.label_noise < 1:
            raise ValueError(f"label_noise: expected a share in [0, 1), got {c.label_noise}")
        if c.main_train_per_class < 0:
            raise ValueError(f"main_train_per_class: expected 0 (the task's own) or more, got {c.main_train_per_class}")
        g = torch.Generator().manual_seed(c.seed)
        combo = torch.randperm(n_all, generator=g)[: c.n_concepts]
        n_c, n_p = len(COLOURS), len(PATTERNS)
        self.shapes = combo // (n_c * n_p)
        self.colours = (combo // n_p) % n_c
        self.patterns = combo % n_p
        names = _make_names(2 * c.n_concepts, g)
        self.names, self.alt_names = names[: c.n_concepts], names[c.n_concepts:]
        order = torch.randperm(c.n_concepts, generator=g)  # order[r] = concept of rank r
        ranks = torch.empty(c.n_concepts, dtype=torch.float64)
        ranks[order] = torch.arange(1, c.n_concepts + 1, dtype=torch.float64)
        w = (ranks + c.zipf_offset) ** (-c.zipf_exponent)
        self.prior = w / w.sum()
        # The mechanisms (drawn after everything above, so a world without them is unchanged).
        self.generic = [""] * c.n_concepts
        if c.generic_names:
            taken = set(names)
            words = [n + "x" if n in taken else n for n in _make_names(c.generic_names, g)]
            for k in range(c.n_concepts):
                if ranks[k] > c.n_concepts / 2:
                    self.generic[k] = words[int(self.shapes[k]) % c.generic_names]
        t = len(NAMED_TEMPLATES)
        rank0 = (ranks - 1) / max(1, c.n_concepts - 1)
        keep = torch.clamp(torch.round(t * (1 - c.template_variety * rank0)), min=1).long()
        self.named_templates = [[NAMED_TEMPLATES[j] for j in sorted(_NAMED_BY_GENERALITY[: int(n)])] for n in keep]

    @property
    def n_concepts(self) -> int:
        return self.config.n_concepts

    @property
    def log_prior(self) -> torch.Tensor:
        return torch.log(self.prior)

    def attributes(self, k: int) -> dict[str, str]:
        colour_names = list(COLOURS)
        return {"shape": SHAPES[int(self.shapes[k])], "colour": colour_names[int(self.colours[k])],
                "pattern": PATTERNS[int(self.patterns[k])]}

    def vocabulary(self) -> list[str]:
        words = set()
        for t in NAMED_TEMPLATES + PLAIN_TEMPLATES + ZERO_SHOT_TEMPLATES:
            words.update(tokenize_words(t.replace("{name}", "").replace("{col}", "").replace("{shape}", "")
                                        .replace("{pat}", "").replace("{}", "")))
        for syn in SYNONYMS.values():
            words.update(syn)
        pieces = self.name_pieces() or {}
        if pieces:
            words.update(SYLLABLES)
        words.update(n for n in self.names + self.alt_names if n not in pieces)
        words.update(w for w in self.generic if w)
        if self.config.instance_prob > 0:
            words.update(INSTANCE_WORDS)
        vocab = sorted(words)
        if len(vocab) + 4 > VOCAB_SIZE:
            raise ValueError(f"the world's vocabulary ({len(vocab)} words) exceeds {VOCAB_SIZE - 4}")
        return vocab

    def name_pieces(self) -> dict[str, list[str]] | None:
        """The names the tokenizer reads as pieces (their syllables): those of the rarest
        ``subword_names`` share of the concepts; None when off."""
        share = float(self.config.subword_names)
        if share <= 0:
            return None
        rare = torch.argsort(self.prior)[: round(share * self.n_concepts)].tolist()
        names = [self.names[k] for k in rare] + [self.alt_names[k] for k in rare]
        return {n: [n[i:i + 2] for i in range(0, len(n), 2)] for n in names}

    def tokenizer(self, context_length: int = 12) -> "WordTokenizer":
        """The tokenizer of this world's CLIP (its vocabulary, names read as pieces when
        ``subword_names``)."""
        return WordTokenizer(self.vocabulary(), context_length, pieces=self.name_pieces())

    def captions(self, concepts: torch.Tensor, g: torch.Generator, details: list[list[str]] | None = None
                 ) -> list[str]:
        """One random caption per concept index (names appear with probability name_prob);
        ``details``, when given, are words about each image appended to its caption."""
        out = []
        b = concepts.shape[0]
        r_named = torch.rand(b, generator=g)
        r_alt = torch.rand(b, generator=g)
        r_tpl = torch.randint(0, 10_000, (b, 4), generator=g)
        for i, k in enumerate(concepts.tolist()):
            a = self.attributes(k)
            syn = [SYNONYMS[a[x]][int(r_tpl[i, j + 1]) % 2] for j, x in enumerate(("colour", "shape", "pattern"))]
            if r_named[i] < self.config.name_prob:
                named = self.named_templates[k]
                tpl = named[int(r_tpl[i, 0]) % len(named)]
                if r_alt[i] < 0.25:
                    name = self.alt_names[k]
                elif self.generic[k] and r_alt[i] < 0.25 + self.config.generic_prob:
                    name = self.generic[k]
                else:
                    name = self.names[k]
            else:
                tpl = PLAIN_TEMPLATES[int(r_tpl[i, 0]) % len(PLAIN_TEMPLATES)]
                name = ""
            text = tpl.format(name=name, col=syn[0], shape=syn[1], pat=syn[2])
            if details is not None and details[i]:
                text = text.rstrip(".") + ", " + " ".join(details[i]) + "."
            out.append(text)
        return out


def tokenize_words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


class WordTokenizer:
    """Word-level tokenizer for the world's tiny text tower (open_clip tokenizer protocol).

    Calling it on a string or a list of strings returns a ``(B, context_length)`` long
    tensor: start token, word ids, end token (the largest id, which open_clip's text
    tower pools at), zero padding. Unknown words map to a reserved id; a word listed in
    ``pieces`` is read as its pieces (the world's ``subword_names``).
    """

    def __init__(self, vocabulary: list[str], context_length: int = 12, pieces: dict[str, list[str]] | None = None):
        self.vocabulary = list(vocabulary)
        self.context_length = context_length
        self.index = {w: i + 3 for i, w in enumerate(self.vocabulary)}
        self.pieces = dict(pieces or {})  # word -> the vocabulary words it is read as

    def __call__(self, texts: str | list[str], context_length: int | None = None) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        n = context_length or self.context_length
        out = torch.zeros(len(texts), n, dtype=torch.long)
        for i, t in enumerate(texts):
            words = [p for w in tokenize_words(t) for p in self.pieces.get(w, [w])]
            ids = [SOT] + [self.index.get(w, UNK) for w in words][: n - 2] + [EOT]
            out[i, : len(ids)] = torch.tensor(ids)
        return out
