"""Pretrained weights from the Hugging Face hub: whether they can be reached, and what to
do when they cannot.

open_clip downloads a tag's weights from the hub (or finds them in its local cache). A
machine without network learns it here in seconds (:func:`hub_unreachable`), before any
model is built, and is told how to fill the cache, work offline or use a local file
(:func:`explain_missing_weights`); weights that are in the cache are then read without
asking the hub (:class:`hub_offline`).

open_clip and huggingface_hub are imported inside the functions that use them: they take
about a second to import, and ``import gla`` and ``gla --help`` need neither (as in
:mod:`gla.backbones`).
"""

from __future__ import annotations

import os


def list_pretrained(name: str | None = None) -> list[tuple[str, str]]:
    """(model name, pretrained tag) pairs open_clip can download, optionally for one model."""
    import open_clip

    pairs = open_clip.list_pretrained()
    return [p for p in pairs if name is None or p[0] == name]


def explain_missing_weights(name: str, pretrained: str, exc: Exception, unreachable: str = "") -> RuntimeError:
    """The error for weights that cannot be loaded: where weights come from, and what to do
    with network access, offline, or with a local file (``unreachable``: why the hub could
    not be reached, when it could not)."""
    offline = _offline_env()
    searched = (" (HF_HUB_OFFLINE=1 is set, so only the cache was searched)" if offline
                else f" (the hub cannot be reached: {unreachable}; only the cache was searched)" if unreachable else "")
    return RuntimeError(
        f"Could not load weights for model '{name}' with pretrained='{pretrained}': {exc}\n"
        "Weights come from the Hugging Face hub, from its local cache, or from a file path.\n"
        f"- With network access: run once, e.g. python -c \"import open_clip; "
        f"open_clip.create_model_and_transforms('{name}', pretrained='{pretrained}')\", to fill the cache.\n"
        "- Offline: set HF_HUB_OFFLINE=1 and HF_HOME (or pass cache_dir) to a cache that holds them"
        + searched + ".\n"
        "- Or pass a local checkpoint file as pretrained=/path/to/weights.pt (or .safetensors).\n"
        "Known tags for this model: "
        + (", ".join(t for _, t in list_pretrained(name)) or "none (check the model name)")
    )


def _offline_env() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


_HUB_PROBE: dict[str, str] = {}


def hub_unreachable(timeout: float = 3.0) -> str:
    """Why the Hugging Face hub cannot be reached (``""`` when it can), probed once per process.

    One TCP connection to the hub (``HF_ENDPOINT``, default ``https://huggingface.co``), or
    to the HTTPS proxy when one is set, with a ``timeout`` in seconds: a machine without
    network learns it in at most that long, instead of the hub client's minute of retries.
    """
    import socket
    from urllib.parse import urlsplit

    proxy = next((os.environ[k] for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy") if os.environ.get(k)),
                 "")
    url = urlsplit(proxy or os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    key = f"{host}:{port}"
    if key not in _HUB_PROBE:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            _HUB_PROBE[key] = ""
        except OSError as exc:
            _HUB_PROBE[key] = f"{key}: {exc.strerror or exc}"
    return _HUB_PROBE[key]


def _hub_files(model: str, tag: str) -> tuple[str, list[str]] | None:
    """The Hugging Face repository and the file names (preferred first) open_clip reads for a
    tag, or None for weights fetched by URL."""
    import open_clip

    hub = (open_clip.get_pretrained_cfg(model, tag) or {}).get("hf_hub", "")
    if not hub:
        return None
    repo, filename = os.path.split(hub)  # 'org/model/' means the default file name
    default = "open_clip_pytorch_model.bin"
    filename = filename or default
    candidates = [filename]
    if filename == default:
        candidates.insert(0, "open_clip_model.safetensors")
    elif filename.endswith((".bin", ".pth")):
        candidates.insert(0, filename[:-4] + ".safetensors")
    return repo, candidates


def _hub_cache(cache_dir: str | None) -> str | None:
    return cache_dir or os.environ.get("HF_HUB_CACHE") or (
        os.path.join(os.environ["HF_HOME"], "hub") if os.environ.get("HF_HOME") else None)


def check_weights_reachable(model: str, tag: str, cache_dir: str | None = None) -> bool:
    """Whether a pretrained tag's weights must be read from the local cache only, raising
    at once when they are not there (nothing is downloaded or loaded).

    They must when ``HF_HUB_OFFLINE`` is set or the hub cannot be reached
    (:func:`hub_unreachable`). Weights fetched by URL rather than from the hub, or a hub
    that answers, need no check (False).

    Raises
    ------
    RuntimeError
        The weights are not in the cache and cannot be fetched (with advice on filling the
        cache, offline use and local files).
    """
    files = _hub_files(model, tag)
    if files is None:
        return False
    offline = _offline_env()
    why = "" if offline else hub_unreachable()
    if not offline and not why:
        return False
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - open_clip loads weights through huggingface_hub
        return False
    repo, candidates = files
    cache = _hub_cache(cache_dir)
    if any(isinstance(try_to_load_from_cache(repo, f, cache_dir=cache), str) for f in candidates):
        return True
    raise explain_missing_weights(model, tag, FileNotFoundError(
        f"{repo}/{candidates[-1]} is not in the Hugging Face cache ({cache or 'the default HF_HOME'})"), why)


class hub_offline:
    """Within: the Hugging Face client reads only its cache (as with ``HF_HUB_OFFLINE=1``)."""

    def __init__(self, active: bool):
        self.active = active

    def __enter__(self):
        if self.active:
            from huggingface_hub import constants

            self.saved = constants.HF_HUB_OFFLINE
            constants.HF_HUB_OFFLINE = True
        return self

    def __exit__(self, *exc):
        if self.active:
            from huggingface_hub import constants

            constants.HF_HUB_OFFLINE = self.saved
        return False


