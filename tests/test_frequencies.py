"""Concept-count files in their published formats: bethgelab's JSON, clip-beyond-tail's TSV,
and REAL / NeglectedTailsVLM's per-class metrics JSON."""

import json
from pathlib import Path

import pytest
import torch

from gla.frequencies import (
    detect_format,
    log_frequency_prior,
    read_concept_counts,
    read_count_files,
    write_concept_counts,
)

DATA = Path(__file__).parent / "data" / "frequencies"

NAMES = ["tench", "goldfish", "great white shark"]


def test_counts_in_both_published_formats_round_trip(tmp_path):
    # bethgelab's search_counts JSON: {concept: count}, underscores for spaces
    (tmp_path / "c.json").write_text(json.dumps({"tench": 917, "goldfish": 30282, "great_white_shark": 19521}))
    # clip-beyond-tail's class_frequency txt: name<TAB>count per line
    (tmp_path / "c.txt").write_text("tench\t917\ngoldfish\t30282\ngreat white shark\t19521\n")
    a = read_concept_counts(tmp_path / "c.json", NAMES)
    b = read_concept_counts(tmp_path / "c.txt", NAMES)
    assert a["count"].tolist() == b["count"].tolist() == [917, 30282, 19521]
    assert a.name_match.all() and b.name_match.all()
    for fmt in ("json", "tsv"):
        p = write_concept_counts(tmp_path / f"w.{fmt}", NAMES, [1, 2, 3], fmt)
        assert read_concept_counts(p, NAMES)["count"].tolist() == [1, 2, 3]


def test_counts_align_by_name_when_the_file_lists_other_concepts(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"great_white_shark": 5, "carp": 1, "Goldfish": 2, "tench": 3}))
    df = read_concept_counts(tmp_path / "c.json", NAMES)
    assert df["count"].tolist() == [3, 2, 5]
    (tmp_path / "d.json").write_text(json.dumps({"tench": 1, "carp": 2}))
    with pytest.raises(ValueError, match="'goldfish', 'great white shark'"):
        read_concept_counts(tmp_path / "d.json", NAMES)


def test_positional_alignment_flags_names_that_differ(tmp_path):
    (tmp_path / "c.txt").write_text("tench\t1\ngold fish\t2\ngreat white shark\t3\n")
    df = read_concept_counts(tmp_path / "c.txt", NAMES)
    assert df.name_match.tolist() == [True, False, True]


def test_bad_count_files_say_what_was_expected(tmp_path):
    (tmp_path / "a.txt").write_text("tench\tmany\n")
    with pytest.raises(ValueError, match="not a number"):
        read_concept_counts(tmp_path / "a.txt")
    (tmp_path / "b.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        read_concept_counts(tmp_path / "b.json", fmt="json")
    (tmp_path / "c.txt").write_text("justaname\n")
    with pytest.raises(ValueError, match="<TAB><count>"):
        read_concept_counts(tmp_path / "c.txt")
    with pytest.raises(FileNotFoundError):
        read_concept_counts(tmp_path / "missing.txt")


def test_log_frequency_prior_handles_zero_counts():
    lp = log_frequency_prior([0, 1, 3])
    assert torch.isfinite(lp).all() and abs(float(torch.logsumexp(lp, 0))) < 1e-12
    assert torch.allclose(lp.exp(), torch.tensor([1 / 7, 2 / 7, 4 / 7], dtype=torch.float64))


def test_count_files_must_agree(tmp_path):
    from gla.frequencies import read_count_files

    a = write_concept_counts(tmp_path / "a.json", NAMES, [1, 2, 3], "json")
    b = write_concept_counts(tmp_path / "b.tsv", NAMES, [1, 2, 3], "tsv")
    c = write_concept_counts(tmp_path / "c.tsv", NAMES, [1, 2, 4], "tsv")
    assert read_count_files([a, b], NAMES)["count"].tolist() == [1, 2, 3]
    with pytest.raises(ValueError, match="differ"):
        read_count_files([a, c], NAMES)


# --------------------------------------------------------------------------- REAL metrics files


def test_real_metrics_file_is_detected_and_read_by_class_index():
    """The fixture is the first three entries of NeglectedTailsVLM's
    ``analysis/laion/imagenet_1k/metrics-LAION2B.json`` (commit 22e15f67), verbatim."""
    path = DATA / "metrics-LAION2B.json"
    assert detect_format(path) == "metrics"
    df = read_concept_counts(path, NAMES)
    assert df["count"].tolist() == [771, 23411, 49328]  # relevant_total: the LLM-filtered count
    assert df.file_name.tolist() == NAMES and df.name_match.all()
    raw = read_concept_counts(path, NAMES, count_field="actual_freq")
    assert raw["count"].tolist() == [5079, 136211, 55508]
    assert read_concept_counts(path, count_field="freq")["count"].tolist() == [813, 30297, 10024]


def test_real_metrics_without_relevant_total_fall_back_to_actual_freq(tmp_path):
    """First entries of NeglectedTailsVLM's ``eurosat/metrics-LAION400M-satellite.json``."""
    path = DATA / "metrics-LAION400M-satellite.json"
    assert detect_format(path) == "metrics"
    assert read_concept_counts(path)["count"].tolist() == [0, 542, 3]
    with pytest.raises(ValueError, match="'relevant_total' is missing"):
        read_concept_counts(path, count_field="relevant_total")


def test_real_metrics_keys_give_the_class_order_not_the_file_order(tmp_path):
    data = json.loads((DATA / "metrics-LAION2B.json").read_text())
    shuffled = {k: data[k] for k in ["2", "0", "1"]}
    (tmp_path / "m.json").write_text(json.dumps(shuffled))
    assert read_concept_counts(tmp_path / "m.json", NAMES)["count"].tolist() == [771, 23411, 49328]


def test_bad_real_metrics_files_say_what_was_expected(tmp_path):
    data = json.loads((DATA / "metrics-LAION2B.json").read_text())
    (tmp_path / "gap.json").write_text(json.dumps({"0": data["0"], "2": data["2"]}))
    with pytest.raises(ValueError, match="class indices 0 to 1"):
        read_concept_counts(tmp_path / "gap.json")
    (tmp_path / "names.json").write_text(json.dumps({"a": data["0"]}))
    with pytest.raises(ValueError, match="class indices as keys"):
        read_concept_counts(tmp_path / "names.json")
    with pytest.raises(ValueError, match="count_field"):
        read_concept_counts(DATA / "metrics-LAION2B.json", count_field="llama_relevance_ratio")
    (tmp_path / "c.txt").write_text("tench\t1\n")
    with pytest.raises(ValueError, match="only the 'metrics' format"):
        read_concept_counts(tmp_path / "c.txt", count_field="actual_freq")
    (tmp_path / "plain.json").write_text(json.dumps({"tench": 1}))
    with pytest.raises(ValueError, match="REAL metrics object"):
        read_concept_counts(tmp_path / "plain.json", fmt="metrics")


def test_plain_json_counts_are_not_mistaken_for_metrics(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"tench": 917, "goldfish": 30282}))
    assert detect_format(tmp_path / "c.json") == "json"
    (tmp_path / "c.txt").write_text("tench\t917\n")
    assert detect_format(tmp_path / "c.txt") == "tsv"


def test_metrics_round_trip_and_agree_with_the_other_formats(tmp_path):
    m = write_concept_counts(tmp_path / "metrics-LAION400M.json", NAMES, [5, 0, 7], "metrics")
    assert detect_format(m) == "metrics"
    t = write_concept_counts(tmp_path / "c.tsv", NAMES, [5, 0, 7], "tsv")
    assert read_count_files([m, t], NAMES)["count"].tolist() == [5, 0, 7]
    lp = log_frequency_prior(read_concept_counts(m, NAMES)["count"])
    assert torch.isfinite(lp).all()
