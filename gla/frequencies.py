"""Per-class concept counts in a pretraining corpus, read from the files people publish.

Public formats are read (the per-class LAION counts published with their papers):

- ``json``: a JSON object ``{"<concept>": <count>, ...}`` in class order, as in
  bethgelab/frequency_determines_performance (``search_counts/*_search_counts.json``;
  keys may use ``_`` for spaces and need not spell the dataset's class names exactly);
- ``tsv``: one ``<class name><TAB><count>`` line per class in class order, as in
  CVMI-Lab/clip-beyond-tail (``metadata/freqs/class_frequency_*.txt``);
- ``metrics``: the per-class JSON of REAL / NeglectedTailsVLM (Parashar et al., CVPR 2024;
  ``analysis/laion/<dataset>/metrics-LAION400M.json`` and ``metrics-LAION2B.json``): an
  object keyed by the class index as a string, ``{"0": {"name": ..., "alternates":
  {synonym: count, ...}, "most_common_name": ..., "actual_freq": <captions matching any
  synonym>, "relevant_total": <those judged relevant by an LLM>, ...}, ...}``. Some
  files (e.g. EuroSAT's ``metrics-LAION400M-satellite.json``) have no ``relevant_total``;
  ImageNet's also carry ``freq`` and sometimes ``corrected_name``. The count read is
  ``relevant_total`` when every entry has it (the frequency that paper reports), else
  ``actual_freq``; ``count_field`` chooses.

:func:`read_concept_counts` aligns a file to a dataset's class names: by position when the
file has one entry per class (both formats list classes in order), otherwise by
normalised name, and it fails naming the classes it could not find. Such counts only make
sense against a model pretrained on the counted corpus (a LAION-trained open_clip tag for
LAION counts).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch

from .cache import atomic_write_text

FORMATS = ("json", "tsv", "metrics")
METRICS_COUNT_FIELDS = ("relevant_total", "actual_freq", "freq")


def _normalise(name: str) -> str:
    return re.sub(r"\s+", " ", name.replace("_", " ").strip().lower())


def _is_metrics(data) -> bool:
    return (isinstance(data, dict) and bool(data) and all(isinstance(v, dict) for v in data.values())
            and all(("actual_freq" in v or "relevant_total" in v) and "name" in v for v in data.values()))


def detect_format(path: str | os.PathLike) -> str:
    """The format of a count file, from its content.

    ``metrics`` for a JSON object of per-class objects with ``name`` and ``actual_freq`` or
    ``relevant_total`` (REAL / NeglectedTailsVLM), ``json`` for another JSON object,
    ``tsv`` otherwise (lines ending in a count).
    """
    text = Path(path).read_text(encoding="utf-8").lstrip()
    if not text.startswith("{"):
        return "tsv"
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return "json"  # the parser reports the error
    return "metrics" if _is_metrics(data) else "json"


def _parse_metrics(path: Path, data, count_field: str | None) -> list[tuple[str, object]]:
    if not _is_metrics(data):
        raise ValueError(f"{path}: expected a REAL metrics object {{\"<class index>\": {{\"name\": ..., "
                         f"\"actual_freq\": ..., ...}}, ...}}")
    try:
        keys = sorted(data, key=int)
    except ValueError:
        raise ValueError(f"{path}: expected class indices as keys (\"0\", \"1\", ...), got "
                         f"{[k for k in data if not k.lstrip('-').isdigit()][:5]}") from None
    if [int(k) for k in keys] != list(range(len(keys))):
        raise ValueError(f"{path}: expected the class indices 0 to {len(keys) - 1} once each, got "
                         f"{[int(k) for k in keys][:10]} ...")
    entries = [data[k] for k in keys]
    if count_field is None:
        count_field = "relevant_total" if all("relevant_total" in e for e in entries) else "actual_freq"
    if count_field not in METRICS_COUNT_FIELDS:
        raise ValueError(f"count_field: expected one of {METRICS_COUNT_FIELDS}, got {count_field!r}")
    lacking = [k for k, e in zip(keys, entries) if count_field not in e]
    if lacking:
        raise ValueError(f"{path}: count_field {count_field!r} is missing for classes {lacking[:10]}")
    return [(str(e["name"]), e[count_field]) for e in entries]


def _parse(path: Path, fmt: str, count_field: str | None = None) -> list[tuple[str, float]]:
    text = path.read_text(encoding="utf-8")
    if fmt == "metrics":
        try:
            items = _parse_metrics(path, json.loads(text), count_field)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: expected a REAL metrics JSON object ({e})") from None
    elif fmt == "json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: expected a JSON object {{concept: count}} ({e})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object {{concept: count}}, got {type(data).__name__}")
        items = list(data.items())
    else:
        items = []
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            parts = line.rstrip("\n").split("\t") if "\t" in line else line.rsplit(maxsplit=1)
            if len(parts) < 2:
                raise ValueError(f"{path}, line {i}: expected '<class name><TAB><count>', got {line!r}")
            items.append(("\t".join(parts[:-1]), parts[-1]))
    out = []
    for name, count in items:
        try:
            value = float(count)
        except (TypeError, ValueError):
            raise ValueError(f"{path}: the count of '{name}' is not a number: {count!r}") from None
        if value < 0:
            raise ValueError(f"{path}: the count of '{name}' is negative ({value})")
        out.append((str(name), value))
    if not out:
        raise ValueError(f"{path}: no counts found")
    return out


def read_concept_counts(path: str | os.PathLike, classnames: Sequence[str] | None = None, *,
                        fmt: str | None = None, count_field: str | None = None) -> pd.DataFrame:
    """Read a concept-count file and align it to ``classnames``.

    Parameters
    ----------
    path : path
        A ``json``, ``tsv`` or ``metrics`` count file (see the module docstring).
    classnames : sequence of str, optional
        The dataset's class names in label order. Without them the file's order is kept
        (for ``metrics``, the order of the class indices).
    fmt : {"json", "tsv", "metrics"}, optional
        Default: detected from the content (:func:`detect_format`).
    count_field : {"relevant_total", "actual_freq", "freq"}, optional
        ``metrics`` only: which count to read. Default ``relevant_total`` when every class
        has it, else ``actual_freq``.

    Returns
    -------
    DataFrame
        One row per class, in label order: ``class_index``, ``classname``,
        ``file_name`` (the key in the file), ``count``, and ``name_match`` (the
        normalised names agree; False where alignment is positional and the names differ).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such count file")
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise ValueError(f"fmt: expected one of {FORMATS}, got {fmt!r}")
    if count_field is not None and fmt != "metrics":
        raise ValueError(f"count_field: only the 'metrics' format has count fields; {path} is {fmt!r}")
    items = _parse(path, fmt, count_field)
    if classnames is None:
        names = [n for n, _ in items]
        return pd.DataFrame({"class_index": range(len(items)), "classname": names, "file_name": names,
                             "count": [c for _, c in items], "name_match": True})
    classnames = list(classnames)
    if len(items) == len(classnames):
        rows = items
    else:
        by_name = {}
        for n, c in items:
            by_name.setdefault(_normalise(n), (n, c))
        missing = [c for c in classnames if _normalise(c) not in by_name]
        if missing:
            shown = ", ".join(repr(m) for m in missing[:10]) + (" ..." if len(missing) > 10 else "")
            raise ValueError(f"{path}: {len(items)} entries for {len(classnames)} classes, and {len(missing)} class "
                             f"names are not in the file ({shown}); expected one entry per class in label order, "
                             "or entries named after the classes")
        rows = [by_name[_normalise(c)] for c in classnames]
    return pd.DataFrame({"class_index": range(len(classnames)), "classname": classnames,
                         "file_name": [n for n, _ in rows], "count": [c for _, c in rows],
                         "name_match": [_normalise(n) == _normalise(c) for (n, _), c in zip(rows, classnames)]})


def log_frequency_prior(counts: Sequence[float] | torch.Tensor, *, pseudo_count: float = 1.0) -> torch.Tensor:
    """``log`` of the normalised counts plus ``pseudo_count`` (zero counts occur in the files)."""
    c = torch.as_tensor(list(counts) if not isinstance(counts, torch.Tensor) else counts, dtype=torch.float64)
    if c.ndim != 1 or (c < 0).any():
        raise ValueError("counts: expected a 1-D sequence of non-negative numbers")
    lp = torch.log(c + pseudo_count)
    return lp - torch.logsumexp(lp, 0)


def write_concept_counts(path: str | os.PathLike, classnames: Sequence[str], counts: Sequence[float] | torch.Tensor,
                         fmt: str) -> Path:
    """Write counts in one of the published formats (atomically); used for the world's own
    counts and for test fixtures."""
    if fmt not in FORMATS:
        raise ValueError(f"fmt: expected one of {FORMATS}, got {fmt!r}")
    counts = [float(c) for c in (counts.tolist() if isinstance(counts, torch.Tensor) else counts)]
    if len(counts) != len(classnames):
        raise ValueError(f"counts: expected {len(classnames)} values, got {len(counts)}")
    as_num = [int(c) if float(c).is_integer() else c for c in counts]
    if fmt == "metrics":
        text = json.dumps({str(i): {"name": n, "alternates": {n.lower(): c}, "most_common_name": n.lower(),
                                    "actual_freq": c} for i, (n, c) in enumerate(zip(classnames, as_num))})
    elif fmt == "json":
        text = json.dumps({n.replace(" ", "_"): c for n, c in zip(classnames, as_num)}, indent=4)
    else:
        text = "".join(f"{n}\t{c}\n" for n, c in zip(classnames, as_num))
    atomic_write_text(path, text)
    return Path(path)


def read_count_files(paths: Sequence[str | os.PathLike], classnames: Sequence[str], *,
                     fmt: str | None = None, count_field: str | None = None) -> pd.DataFrame:
    """Read one or more count files for the same classes (e.g. the same counts in both
    formats) and check that they agree; returns the first file's table."""
    paths = list(paths)
    tables = [read_concept_counts(p, classnames, fmt=fmt,
                                  count_field=count_field if (fmt or detect_format(p)) == "metrics" else None)
              for p in paths]
    if not tables:
        raise ValueError("paths: expected at least one count file")
    for p, t in zip(paths[1:], tables[1:]):
        if t["count"].tolist() != tables[0]["count"].tolist():
            raise ValueError(f"{p}: its counts differ from those of {paths[0]}")
    return tables[0]
