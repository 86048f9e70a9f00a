"""Results that prove themselves: run.json records every table's size and sha256, and every reader
checks them (a missing, truncated or edited table is recomputed or refused, never read)."""

import json

import pytest

from conftest import tiny_esm_hf
from plmdepth.results import DamagedResults, Results, discard_damaged, read_record
from plmdepth.runner import measure


@pytest.fixture
def finished(tmp_path, fasta_file):
    folder_arg = tmp_path / "tiny_esm"
    tiny_esm_hf(seed=5).save_pretrained(folder_arg)
    out = tmp_path / "results"
    folder = measure("logit_lens", str(folder_arg), fasta_file, out=out, progress=False)
    return folder, str(folder_arg), fasta_file, out


def _damage(path, how):
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[:300])
    elif how == "edited":  # same size, one digit changed
        i = next(i for i, c in enumerate(data) if chr(c).isdigit() and i > data.index(b"\n"))
        path.write_bytes(data[:i] + (b"1" if data[i:i + 1] != b"1" else b"2") + data[i + 1:])
    else:
        path.unlink()


def test_run_json_records_each_tables_size_and_sha256(finished):
    folder = finished[0]
    entry = json.loads((folder / "run.json").read_text())["measurements"]["logit_lens"]
    assert set(entry["tables"]) == set(entry["outputs"]) == {"logit_lens.csv", "logit_lens_per_sequence.csv"}
    for name, digest in entry["tables"].items():
        assert digest["bytes"] == (folder / name).stat().st_size and digest["sha256"].startswith("sha256:")


@pytest.mark.parametrize("how", ["truncated", "edited", "deleted"])
def test_a_damaged_table_is_refused_in_one_sentence_and_recomputed_identically(finished, how):
    folder, model, fasta, out = finished
    table = folder / "logit_lens.csv"
    original = table.read_bytes()
    _damage(table, how)
    with pytest.raises(DamagedResults) as err:
        Results([folder]).tables("logit_lens")
    said = str(err.value)
    assert str(table) in said and "recompute it: `python -m plmdepth book`" in said
    assert ("is missing" if how == "deleted" else "differs from what its run wrote") in said
    assert not read_record(folder).has("logit_lens")
    measure("logit_lens", model, fasta, out=out, progress=False)  # the runner's cache check sees it too
    assert table.read_bytes() == original


def test_the_book_build_removes_damaged_tables_so_the_workflow_recomputes_them(finished):
    folder, *_ = finished
    _damage(folder / "logit_lens.csv", "edited")
    intact = (folder / "logit_lens_per_sequence.csv").read_bytes()
    assert discard_damaged(folder.parent) == [folder / "logit_lens.csv"]
    assert not (folder / "logit_lens.csv").exists()
    assert (folder / "logit_lens_per_sequence.csv").read_bytes() == intact
    assert discard_damaged(folder.parent) == []  # a missing table is the workflow's to redo
