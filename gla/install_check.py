"""Check that the installed stack imports (run by ``make`` after installing).

The classic failure: a CPU-only torch wheel picked from a local folder, next to a
torchvision wheel built against another torch, makes ``import torchvision`` (and so
``import open_clip``) fail. This module turns that into an explanation.
"""

from __future__ import annotations

import sys


def main() -> int:
    import torch

    try:
        import open_clip  # noqa: F401
        import torchvision
    except Exception as exc:  # pragma: no cover - only on a broken install
        print(
            f"gla: the installed torch {torch.__version__} and torchvision do not work together "
            f"({type(exc).__name__}: {exc}).\n"
            "Install them together from the package index so that pip picks matching builds, e.g.\n"
            "  .venv/bin/pip install --upgrade --force-reinstall torch torchvision\n"
            "and do not pin torch alone to a version that only a local wheel provides.",
            file=sys.stderr,
        )
        return 1
    print(f"gla: torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"open_clip {open_clip.__version__}, CUDA available: {torch.cuda.is_available()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
