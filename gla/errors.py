"""The errors a user can act on.

The command line prints one message for these (no traceback) and exits non-zero:
:class:`UsageError` (a name, a path or a setting that is wrong before anything runs) with
status 2, :class:`RunError` (a run that failed part-way) with status 1. The library's own
``ValueError``, ``FileNotFoundError`` and ``RuntimeError`` are treated as expected too
(status 1 when raised during a run).
"""

from __future__ import annotations

from collections.abc import Iterable


class GLAError(Exception):
    """Base class of the errors the command line reports as one message."""

    exit_code = 1


class UsageError(GLAError, ValueError):
    """Bad input found before any compute: unknown name, missing file, wrong layout."""

    exit_code = 2


class RunError(GLAError, RuntimeError):
    """A run failed part-way (what finished before it is kept)."""

    exit_code = 1


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` (did you mean a, b?)`` for the known names closest to ``name`` (letter case
    ignored, so ``DTD`` finds ``dtd``), or ``""`` when none is close."""
    import difflib

    by_lower: dict[str, list[str]] = {}
    for k in known:
        by_lower.setdefault(k.lower(), []).append(k)
    near = difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.6)
    names = [k for n in near for k in by_lower[n]][:3]
    return f" (did you mean {', '.join(names)}?)" if names else ""
