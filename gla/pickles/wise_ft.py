"""Whole pickled modules (WiSE-FT checkpoints) read as state dicts, with an unpickler that
rebuilds tensors, stubs every other class and refuses what can run code (see :mod:`gla.pickles`)."""

from __future__ import annotations

import io
import os
import pickle
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .refusals import ForbiddenGlobalError, fix_py2_name


class _Stub:
    """Inert stand-in for an instance of a class the unpickler does not know.

    It records what the pickle gave it and nothing else: ``stub_args`` (constructor
    arguments of REDUCE / NEWOBJ), ``stub_kwargs``, ``stub_state`` (BUILD), ``stub_items``
    (dict-like items) and ``stub_list`` (list-like items). ``stub_class`` is the dotted
    name of the original class. No method of the original class exists here.
    """

    stub_class = "?"
    dump_patches = False  # torch's legacy loader asks containers this; never write patch files

    def __new__(cls, *args: Any, **kwargs: Any) -> _Stub:
        self = object.__new__(cls)
        self.stub_args = args
        self.stub_kwargs = kwargs
        self.stub_state = None
        self.stub_items: dict = {}
        self.stub_list: list = []
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # REDUCE calls cls(*args): record only
        pass

    def __setstate__(self, state: Any) -> None:
        if (isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict)
                and (state[0] is None or isinstance(state[0], dict))):  # (dict state, slot state)
            merged = dict(state[0] or {})
            merged.update(state[1])
            state = merged
        self.stub_state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.stub_items[key] = value

    def append(self, value: Any) -> None:
        self.stub_list.append(value)

    def extend(self, values: Any) -> None:
        self.stub_list.extend(values)

    def __repr__(self) -> str:
        return f"<stub of {self.stub_class}>"


# Standard-library and torch modules whose globals can reach the operating system, load
# other files or run code. Referring to one of them is refused outright, with its name.
_FORBIDDEN_MODULES = (
    "os", "posix", "nt", "posixpath", "ntpath", "subprocess", "sys", "shutil", "importlib", "runpy",
    "socket", "ctypes", "pickle", "_pickle", "copyreg", "marshal", "types", "code", "codeop", "pty",
    "multiprocessing", "signal", "builtins", "operator", "_operator", "pdb", "bdb", "timeit",
    "webbrowser", "asyncio", "threading", "_thread", "tempfile", "io", "_io", "glob", "urllib", "http",
    "ftplib", "smtplib", "zipimport", "pkgutil", "site", "sysconfig", "inspect", "gc", "weakref", "codecs",
    "_codecs",
    "torch.serialization", "torch.hub", "torch.jit", "torch.package", "torch.utils.cpp_extension",
    "torch._utils", "torch._tensor", "torch.storage", "torch.ops", "torch._ops", "torch._dynamo",
)


def _forbidden_module(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in _FORBIDDEN_MODULES)


def _latin1_encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as protocol 2 uses it for ``bytes``: ``encode(str, "latin1")`` only."""
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise ForbiddenGlobalError("_codecs.encode", "only encode(str, 'latin1') is allowed (protocol 2 bytes)")
    return obj.encode("latin1")


def _stub_reconstructor(cls: Any, base: Any, state: Any) -> _Stub:
    """``copyreg._reconstructor`` of protocols 0 and 1, for stubbed classes only."""
    if not (isinstance(cls, type) and issubclass(cls, _Stub)):
        raise ForbiddenGlobalError("copyreg._reconstructor", f"may only rebuild stubbed classes, not {cls!r}")
    return cls() if state is None else cls(state)


def _tensor_rebuilders() -> dict[str, Any]:
    names = ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter",
             "_rebuild_parameter_with_state")
    return {n: getattr(torch._utils, n) for n in names if hasattr(torch._utils, n)}


def _rebuild_from_type(func: Any, new_type: Any, args: Any, state: Any) -> torch.Tensor:
    """``torch._tensor._rebuild_from_type_v2`` limited to plain tensors and parameters.

    A tensor of an unknown subclass comes back as a plain tensor (its subclass is a stub).
    """
    if func not in _tensor_rebuilders().values():
        raise ForbiddenGlobalError("torch._tensor._rebuild_from_type_v2",
                                   f"may only call torch's tensor rebuild functions, not {func!r}")
    if new_type not in (torch.Tensor, torch.nn.Parameter):
        new_type, state = torch.Tensor, None
    return torch._tensor._rebuild_from_type_v2(func, new_type, args, state)


def _load_storage_bytes(data: bytes) -> Any:
    """``torch.storage._load_from_bytes`` (how ``pickle.dump`` writes storages), weights only."""
    if not isinstance(data, (bytes, bytearray)):
        raise ForbiddenGlobalError("torch.storage._load_from_bytes", f"expected bytes, got {type(data).__name__}")
    storage = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if not isinstance(storage, (torch.UntypedStorage, torch.storage.TypedStorage)):
        raise pickle.UnpicklingError(f"torch.storage._load_from_bytes held a {type(storage).__name__}, "
                                     "not a storage")
    return storage


def _allowed_globals() -> dict[tuple[str, str], Any]:
    allowed: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): OrderedDict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "bytearray"): bytearray,
        ("builtins", "bytes"): bytes,
        ("builtins", "complex"): complex,
        ("builtins", "slice"): slice,
        ("builtins", "object"): object,
        ("copyreg", "_reconstructor"): _stub_reconstructor,
        ("_codecs", "encode"): _latin1_encode,
        ("torch", "Size"): torch.Size,
        ("torch", "device"): torch.device,
        ("torch", "Tensor"): torch.Tensor,
        ("torch._tensor", "Tensor"): torch.Tensor,
        ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,
        ("torch", "UntypedStorage"): torch.UntypedStorage,
        ("torch.storage", "UntypedStorage"): torch.UntypedStorage,
        ("torch.serialization", "_get_layout"): torch.serialization._get_layout,
        ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
        ("torch.storage", "_load_from_bytes"): _load_storage_bytes,
    }
    for name, fn in _tensor_rebuilders().items():
        allowed[("torch._utils", name)] = fn
    kinds = tuple(k for k in (torch.dtype, torch.memory_format, torch.layout, getattr(torch, "qscheme", None))
                  if isinstance(k, type))
    for name, value in vars(torch).items():
        if isinstance(value, kinds):
            allowed[("torch", name)] = value
    return allowed


class _ModuleUnpickler(pickle.Unpickler):
    """Rebuilds tensors, stubs every unknown class, refuses what can run code."""

    _allowed: dict[tuple[str, str], Any] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if _ModuleUnpickler._allowed is None:
            _ModuleUnpickler._allowed = _allowed_globals()
        self._stubs: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str) -> Any:
        module, name = fix_py2_name(module, name)
        allowed = self._allowed.get((module, name))
        if allowed is not None:
            return allowed
        if _forbidden_module(module):
            raise ForbiddenGlobalError(f"{module}.{name}", "its module can reach the operating system, load "
                                       "files or run code, and a checkpoint has no reason to name it")
        key = (module, name)
        if key not in self._stubs:
            self._stubs[key] = type(name.rsplit(".", 1)[-1], (_Stub,), {
                "__module__": __name__, "__qualname__": f"_Stub[{module}.{name}]", "stub_class": f"{module}.{name}"})
        return self._stubs[key]


def _restricted_load(fh: Any, **kwargs: Any) -> Any:
    return _ModuleUnpickler(fh, **kwargs).load()


class _PickleModule:
    """What ``torch.load(pickle_module=...)`` uses: ``Unpickler``, ``load`` and ``__name__``."""

    __name__ = "gla.pickles"
    Unpickler = _ModuleUnpickler
    load = staticmethod(_restricted_load)


_TORCH_MAGIC = 0x1950A86A20F9469CFC6C  # first object of torch's legacy (pre-zip) format


def _load_inert(path: Path) -> Any:
    """Unpickle ``path`` (torch zip, torch legacy or plain pickle) with the restricted unpickler."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            if any(n.endswith("constants.pkl") or "/code/" in n for n in zf.namelist()):
                raise ValueError(f"{path} is a TorchScript archive, which holds code; it is not read here "
                                 "(load it with torch.jit.load only if you trust it)")
    else:
        with open(path, "rb") as fh:
            first = _restricted_load(fh)
        if not (type(first) is int and first == _TORCH_MAGIC):
            return first  # a plain pickle, e.g. WiSE-FT's utils.torch_save
    try:
        with warnings.catch_warnings():  # the legacy format wants the source of each (stubbed) class
            warnings.filterwarnings("ignore", message="Couldn't retrieve source code for container")
            return torch.load(path, map_location="cpu", pickle_module=_PickleModule, weights_only=False)
    except RuntimeError as exc:
        if "pickle_module" in str(exc):  # TORCH_FORCE_WEIGHTS_ONLY_LOAD forbids a pickle_module
            raise RuntimeError(f"{path}: torch refused the restricted unpickler ({exc}); unset "
                               "TORCH_FORCE_WEIGHTS_ONLY_LOAD to read whole pickled modules") from exc
        raise


def _is_module_stub(obj: Any) -> bool:
    return isinstance(obj, _Stub) and isinstance(obj.stub_state, dict) and "_parameters" in obj.stub_state \
        and "_modules" in obj.stub_state


def _entries(obj: _Stub, key: str, prefix: str) -> list[tuple[str, Any]]:
    value = obj.stub_state.get(key)
    if value is None:
        return []
    if not isinstance(value, Mapping):
        raise ValueError(f"module {prefix.rstrip('.') or '<root>'} ({obj.stub_class}): {key} is a "
                         f"{type(value).__name__}, expected a dict")
    return list(value.items())


def _walk_module(obj: _Stub, prefix: str, out: dict[str, torch.Tensor], active: set[int]) -> None:
    if id(obj) in active:
        raise ValueError(f"module {prefix.rstrip('.') or '<root>'} contains itself")
    active.add(id(obj))
    state = obj.stub_state
    for name, value in _entries(obj, "_parameters", prefix):
        if value is None:
            continue
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"parameter {prefix}{name} of {obj.stub_class} is a {type(value).__name__}, "
                             "not a tensor")
        out[prefix + name] = value.detach()
    skip = state.get("_non_persistent_buffers_set") or set()
    for name, value in _entries(obj, "_buffers", prefix):
        if value is None or name in skip:
            continue
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"buffer {prefix}{name} of {obj.stub_class} is a {type(value).__name__}, not a tensor")
        out[prefix + name] = value.detach()
    for name, child in _entries(obj, "_modules", prefix):
        if child is None:
            continue
        if not _is_module_stub(child):
            raise ValueError(f"submodule {prefix}{name} is a {type(child).__name__}, not a pickled nn.Module")
        _walk_module(child, f"{prefix}{name}.", out, active)
    active.discard(id(obj))


def _tensor_dict(obj: Mapping, where: str) -> dict[str, torch.Tensor]:
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        k = bad[0]
        raise ValueError(f"{where}: expected a state dict of str -> Tensor, but entry {k!r} is a "
                         f"{type(obj[k]).__name__}")
    return {k: v.detach() for k, v in obj.items()}


def load_module_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """State dict of a checkpoint that pickles a whole ``nn.Module``, read without its code.

    Accepts, in this order of precedence:

    * a pickled module, as WiSE-FT writes its ``ImageClassifier`` (mlfoundations/wise-ft
      ``src/models/modeling.py`` ``ImageClassifier.save`` -> ``src/models/utils.py``
      ``torch_save``, a plain ``pickle.dump``) or as ``torch.save(module)`` writes it (zip
      archive, or torch's legacy format);
    * a dict with a ``"state_dict"`` key holding either of the above or a state dict;
    * a plain state dict (``torch.save(model.state_dict())``).

    The unpickler calls only torch's tensor rebuild functions, ``OrderedDict`` and a few
    builtins (``set``, ``bytes``, ...). Every other class, found or not on this machine, is
    replaced by an inert stub that records the state the pickle gives it; nothing is
    imported and no method of the original class runs. The state dict is then collected as
    ``nn.Module.state_dict`` would: the ``_parameters``, the persistent ``_buffers`` and,
    recursively, the ``_modules`` of each module, keys joined by dots, ``None`` entries
    skipped. What only code could add (``get_extra_state``, state-dict hooks) is not
    reproduced.

    Parameters
    ----------
    path : str or os.PathLike
        The checkpoint.

    Returns
    -------
    dict of str to torch.Tensor
        Detached CPU tensors keyed as in ``module.state_dict()``.

    Raises
    ------
    ForbiddenGlobalError
        The pickle names a global of a module that can reach the operating system, load
        files or run code (``os``, ``subprocess``, ``builtins`` other than plain containers,
        ``torch.serialization``, ...); the message names it. Nothing of it was run.
    ValueError
        A TorchScript archive, or a file that holds neither a module nor a state dict.
    FileNotFoundError
        No file at ``path``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: no checkpoint at {path}")
    obj = _load_inert(path)
    where = str(path)
    if isinstance(obj, Mapping) and "state_dict" in obj:
        obj, where = obj["state_dict"], f"{path}['state_dict']"
    if _is_module_stub(obj):
        out: dict[str, torch.Tensor] = {}
        _walk_module(obj, "", out, set())
        return out
    if isinstance(obj, Mapping):
        return _tensor_dict(obj, where)
    kind = obj.stub_class if isinstance(obj, _Stub) else type(obj).__name__
    raise ValueError(f"{where}: expected a pickled nn.Module, a state dict or a dict with 'state_dict', got {kind}")


_ENCODER_PREFIX = "image_encoder.model."
_HEAD_KEYS = ("classification_head.weight", "classification_head.bias")


def split_image_classifier_state(state_dict: Mapping[str, torch.Tensor]
                                 ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Split a WiSE-FT ``ImageClassifier`` state dict into CLIP weights and the linear head.

    WiSE-FT's ``ImageClassifier`` (mlfoundations/wise-ft ``src/models/modeling.py``) holds
    ``image_encoder`` (an ``ImageEncoder`` whose ``model`` is the CLIP model) and
    ``classification_head`` (a ``torch.nn.Linear`` subclass), so its keys are
    ``image_encoder.model.<CLIP key>`` and ``classification_head.weight`` / ``.bias``.
    The CLIP keys are those of OpenAI's ``clip`` package, which open_clip's models with
    OpenAI weights (``*-quickgelu`` names) share. WiSE-FT drops the text transformer from the
    fine-tuned model unless ``keep_lang`` was set, so the CLIP part may hold only part of
    the text tower: load it with ``strict=False`` and check the missing keys, or take the
    text tower from the zero-shot model. The head computes ``logits = x @ W.T + b`` on
    image features (normalised first when the head's ``normalize`` flag, not part of the
    state dict, is set; WiSE-FT's zero-shot heads set it and fold CLIP's logit scale into W).

    Parameters
    ----------
    state_dict : mapping of str to torch.Tensor
        E.g. from :func:`load_module_state_dict`.

    Returns
    -------
    clip_state : dict of str to torch.Tensor
        The CLIP model's state dict (prefix ``image_encoder.model.`` removed).
    head_weight : torch.Tensor
        ``(n_classes, embed_dim)``.
    head_bias : torch.Tensor
        ``(n_classes,)``.

    Raises
    ------
    ValueError
        A head key is missing, no key starts with ``image_encoder.model.``, or some key fits
        neither part (the message lists up to five).
    """
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict: expected a mapping of str -> Tensor, got {type(state_dict).__name__}")
    missing = [k for k in _HEAD_KEYS if k not in state_dict]
    if missing:
        raise ValueError(f"state_dict: missing {missing}; expected WiSE-FT's ImageClassifier keys "
                         f"'{_ENCODER_PREFIX}*', {list(_HEAD_KEYS)}")
    clip_state = {k[len(_ENCODER_PREFIX):]: v for k, v in state_dict.items() if k.startswith(_ENCODER_PREFIX)}
    if not clip_state:
        raise ValueError(f"state_dict: no key starts with {_ENCODER_PREFIX!r}; expected WiSE-FT's ImageClassifier")
    other = [k for k in state_dict if not k.startswith(_ENCODER_PREFIX) and k not in _HEAD_KEYS]
    if other:
        raise ValueError(f"state_dict: keys outside WiSE-FT's ImageClassifier layout: {other[:5]}")
    weight, bias = state_dict[_HEAD_KEYS[0]], state_dict[_HEAD_KEYS[1]]
    if weight.ndim != 2 or bias.shape != (weight.shape[0],):
        raise ValueError(f"state_dict: head weight {tuple(weight.shape)} and bias {tuple(bias.shape)} "
                         "should be (n_classes, embed_dim) and (n_classes,)")
    return clip_state, weight, bias
