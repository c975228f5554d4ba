"""What both restricted unpicklers share: the error for a global they refuse, and the
names Python 2 pickles use for Python 3's."""

from __future__ import annotations

import _compat_pickle
import pickle


class ForbiddenGlobalError(pickle.UnpicklingError):
    """A pickle names a global that the restricted unpickler refuses.

    ``global_name`` is the dotted name as written in the file (``"posix.system"``).
    """

    def __init__(self, global_name: str, why: str):
        self.global_name = global_name
        super().__init__(f"refusing to unpickle the global {global_name}: {why}")


def fix_py2_name(module: str, name: str) -> tuple[str, str]:
    """Map Python 2 names (``__builtin__.set``, written by protocol 2) to Python 3 ones."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name
