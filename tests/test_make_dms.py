"""data/make_dms.py's conversion rules (data/dms_convert.py) on small hand-made inputs: the wild
type of a dataset, mutants numbered on the full-length target and applied to it, the cleaning of
a dataset, the rows of a variant set and their CSV bytes. The script's inputs (the mavenn wheel,
ProteinGym's targets) are not needed: its functions are called directly."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pandas as pd
import pytest

DATA = Path(__file__).resolve().parents[1] / "data"
#: A full-length target of 7 residues whose positions 3-6 (KTAY) are the mutated fragment.
TARGET = "MGKTAYQ"
TARGETS = {"T": {"target_seq": TARGET, "region": (3, 6), "singles": 0, "multiples": 0}}


def _script_module(name: str):
    """data/<name>.py, imported as `python data/make_dms.py` imports its modules (from beside it)."""
    sys.path.insert(0, str(DATA))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(DATA))


@pytest.fixture(scope="module")
def dms():
    """The conversion rules (data/dms_convert.py)."""
    return _script_module("dms_convert")


@pytest.fixture(scope="module")
def make_dms():
    return _script_module("make_dms")


def test_the_wild_type_is_the_most_common_letter_at_each_position_ties_alphabetical(dms):
    assert dms.consensus(["MKT", "MKA", "AKT", "ARA"]) == "AKA"
    assert dms.consensus(["KSAY", "KSAY", "KTAF", "*TAY", "KTZY", "KTAY"]) == "KTAY"


def test_mutants_are_numbered_on_the_full_length_target_and_applied_to_it(dms):
    changes = dms.diffs("KSAF", "KTAY")
    assert changes == [(2, "T", "S"), (4, "Y", "F")]  # 1-based on the fragment
    assert dms.mutant_string(changes, 2) == "T4S:Y6F"  # the fragment starts at target position 3
    assert dms.mutant_string([], 2) == ""
    assert dms.substitutions("T4S:Y6F", TARGET) == [(3, "T", "S"), (5, "Y", "F")]
    assert dms.apply_mutant(TARGET, "T4S:Y6F") == "MGKSAFQ"
    assert dms.apply_mutant(TARGET, "M1A") == "AGKTAYQ"


def test_a_mutant_that_is_not_the_targets_stops_the_script(dms):
    with pytest.raises(SystemExit, match="says position 4 is A, but the wild type has T there"):
        dms.apply_mutant(TARGET, "A4S")
    with pytest.raises(SystemExit, match="says position 8 is Q, but the wild type has nothing there"):
        dms.apply_mutant(TARGET, "Q8A")
    with pytest.raises(SystemExit, match="is not of the form A23V"):
        dms.apply_mutant(TARGET, "T4S:6F")


def test_rows_are_ordered_by_depth_then_by_position_as_a_number(dms):
    wt = "MKTAYIAKQRQ"
    items = [("R10A", 0.5), ("K2A:R10W", 0.0), ("K2C", 0.2), ("K2A:T3W", 0.3), ("K2A", 0.1)]
    ordered = sorted(items, key=lambda item: dms.sort_key(item, wt))
    assert [m for m, _ in ordered] == ["K2A", "K2C", "R10A", "K2A:T3W", "K2A:R10W"]


def test_a_seeded_subset_is_the_same_indices_every_time_in_increasing_order(dms):
    assert dms.seeded_subset(10, 4, 0) == [1, 2, 3, 8]
    assert dms.seeded_subset(10, 4, 1) == [2, 4, 7, 9]
    assert dms.seeded_subset(5, 5, 0) == [0, 1, 2, 3, 4]
    with pytest.raises(SystemExit, match="cannot draw 6 of 5 items"):
        dms.seeded_subset(5, 6, 0)


def test_the_background_substitutions_are_put_on_the_target(dms):
    spec = {"proteingym_target": "T", "background": [(4, "T", "S")]}
    assert dms.full_length_wild_type("k", spec, TARGETS) == ("MGKSAYQ", 3, 6)
    with pytest.raises(SystemExit, match="has T at 4, not Q"):
        dms.full_length_wild_type("k", {**spec, "background": [(4, "Q", "S")]}, TARGETS)


def test_a_dataset_is_cleaned_signed_and_merged_in_full_length_numbering(dms, monkeypatch):
    monkeypatch.setattr(dms, "check_tdp43", lambda df, spec: "checked")  # the sign check wants real data
    raw = pd.DataFrame({
        "x": ["KTAY", "KSAY", "KSAY", "KTAF", "*TAY", "KTZY", "KSAF", "KTAY"],
        "y": [0.0, 1.0, 3.0, 2.0, 5.0, 4.0, 6.0, 0.5],
        "dist": [0, 1, 1, 1, 1, 1, 2, 0],
    })
    spec = {"proteingym_target": "T", "background": [], "sign": -1}
    src = dms.convert_source("tdp43", spec, raw, TARGETS, Path("targets.csv"))
    assert src["full_wt"] == TARGET and src["region"] == (3, 6) and src["observed_region"] == (4, 6)
    assert src["singles"] == [("T4S", -2.0), ("Y6F", -2.0)]  # T4S: the mean of -1 and -3
    assert src["multiples"] == [("T4S:Y6F", -6.0)]
    assert (src["dropped_wildtype"], src["dropped_stop"], src["dropped_noncanonical"]) == (2, 1, 1)
    assert (src["duplicates_averaged"], src["source_rows"], src["evidence"]) == (1, 8, "checked")
    assert src["wt_basis"] == "consensus of the single mutants"
    with pytest.raises(SystemExit, match="does not equal target_seq"):
        dms.convert_source("tdp43", spec, raw.assign(x=raw["x"].str.replace("K", "R")), TARGETS, Path("t.csv"))


def _source(singles, multiples):
    spec = {**_script_module("dms_sources").SOURCES["tdp43"], "proteingym_target": "T"}
    return {"spec": spec, "full_wt": TARGET, "region": (3, 6), "observed_region": (3, 6), "wt_basis": "consensus",
            "singles": singles, "multiples": multiples, "evidence": "checked", "source_rows": 9,
            "dropped_wildtype": 1, "dropped_stop": 0, "dropped_noncanonical": 0, "duplicates_averaged": 0}


def test_a_set_of_singles_is_sorted_applied_and_binarised_at_its_median(dms, make_dms):
    src = _source([("Y6F", 1.0), ("T4S", 3.0), ("K3A", 2.0)], [("T4S:Y6F", 9.0)])
    sspec = {"DMS_id": "S", "singles": True, "doubles": None, "proteingym_DMS_id": "", "kind": "none",
             "relation": "{n_single} singles"}
    rows, ref = dms.build_set(sspec, src, TARGETS)
    assert make_dms.csv_bytes(make_dms.ASSAY_COLUMNS, rows) == (b"mutant,mutated_sequence,DMS_score,DMS_score_bin\n"
                                                      b"K3A,MGATAYQ,2.0,0\nT4S,MGKSAYQ,3.0,1\nY6F,MGKTAFQ,1.0,0\n")
    assert ref["DMS_binarization_cutoff"] == "2.0" and ref["relation_to_proteingym"] == "3 singles"
    assert (ref["DMS_number_single_mutants"], ref["DMS_number_multiple_mutants"]) == (3, 0)
    assert (ref["available_multiple_mutants"], ref["target_seq"], ref["region_mutated"]) == (1, TARGET, "3-6")


def test_a_subset_of_doubles_is_drawn_with_the_seed_and_binarised_on_all_of_them(dms):
    doubles = [("K3A:T4S", -1.0), ("T4S:Y6F", 4.0), ("K3R:A5G", 0.5)]
    sspec = {"DMS_id": "D", "singles": False, "doubles": 2, "proteingym_DMS_id": "T", "kind": "outside",
             "relation": "{n_multiple} of {avail_multiple}"}
    rows, ref = dms.build_set(sspec, _source([("K3A", 2.0)], doubles), TARGETS)
    # seeded_subset(3, 2, 0) picks doubles 1 and 2; the cutoff is the median of all three (0.5)
    assert [(r["mutant"], r["mutated_sequence"], r["DMS_score_bin"]) for r in rows] == [
        ("K3R:A5G", "MGRTGYQ", 0), ("T4S:Y6F", "MGKSAFQ", 1)]
    assert ref["DMS_binarization_cutoff"] == "0.5" and ref["relation_to_proteingym"] == "2 of 3"
    assert ref["includes_multiple_mutants"] == "TRUE" and ref["DMS_number_single_mutants"] == 0


def test_scores_are_written_as_the_shortest_round_trip_decimal(dms, make_dms):
    assert make_dms.csv_bytes(["a", "b"], [{"a": -0.0, "b": "x,y"}, {"a": 0.1 + 0.2, "b": 3}]) == \
        b'a,b\n0.0,"x,y"\n0.30000000000000004,3\n'
    with pytest.raises(SystemExit, match="non-finite score"):
        dms.fmt_float(float("nan"))


def test_the_targets_file_is_refused_unless_it_is_the_pinned_one(make_dms, tmp_path):
    with pytest.raises(SystemExit, match="not found; pass --targets PATH"):
        make_dms.read_targets(tmp_path / "missing.csv")
    (tmp_path / "targets.csv").write_text("DMS_id,target_seq,seq_len,region_mutated\nT,MKT,3,1-3\n")
    with pytest.raises(SystemExit, match="not the pinned"):
        make_dms.read_targets(tmp_path / "targets.csv")
