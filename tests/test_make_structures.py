"""data/make_structures.py without its .deb: the committed chains' own records, put back into one
source entry per PDB id, are written again byte for byte (chain files, FASTA and checksums),
and the record filter keeps a chain's first-model ATOM records of N, CA, C and O only."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1] / "data"
STRUCTURES = DATA / "structures"


@pytest.fixture(scope="module")
def make_structures():
    """data/make_structures.py as a module (it imports nothing from data/)."""
    spec = importlib.util.spec_from_file_location("make_structures", DATA / "make_structures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_chains_are_written_again_byte_for_byte(make_structures, tmp_path):
    texts: dict[str, list[str]] = {}
    for chain_id, source, _ in make_structures.CHAINS:
        lines = (STRUCTURES / f"{chain_id}.pdb").read_text().splitlines()
        assert lines[-2:] == ["TER", "END"]
        texts.setdefault(source, lines[:1]).extend(lines[1:-2])  # one HEADER, then every chain's records
    make_structures.write_all(tmp_path, {source: "\n".join(lines) + "\n" for source, lines in texts.items()})
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted(p.name for p in STRUCTURES.iterdir() if p.name != "README.md")
    for name in written:
        assert (tmp_path / name).read_bytes() == (STRUCTURES / name).read_bytes(), name


def test_only_the_backbone_atom_records_of_the_chain_in_the_first_model_are_kept(make_structures):
    records = [
        "ATOM      1  N   GLY A   1       0.000   0.000   0.000  1.00  0.00           N",
        "ATOM      2  CA AGLY A   1       1.000   0.000   0.000  0.50  0.00           C",
        "ATOM      3  CA BGLY A   1       9.000   9.000   9.000  0.50  0.00           C",
        "ATOM      4  CB  ALA A   2       2.000   1.000   0.000  1.00  0.00           C",
        "HETATM    5  N   MSE A   3       3.000   1.000   0.000  1.00  0.00           N",
        "ATOM      6  N   XYZ A   3A      5.000   1.000   0.000  1.00  0.00           N",
        "HETATM    7  O   HOH A 101       7.000   7.000   7.000  1.00  0.00           O",
        "ATOM      8  N   ALA B   1       8.000   1.000   0.000  1.00  0.00           N",
        "ENDMDL",
        "ATOM      9  N   TRP A   9       8.000   1.000   0.000  1.00  0.00           N",
    ]
    text = "HEADER    TEST\n" + "\n".join(line + "  " for line in records) + "\n"
    lines, sequence = make_structures.chain_records(text, "A")
    assert sequence == "GAX"  # residue 2 has no backbone atom but is a residue; MSE is a HETATM here
    assert lines == [records[i] for i in (0, 1, 2, 5)]  # verbatim, trailing blanks stripped
    assert make_structures.chain_records(text, "B") == ([records[7]], "A")
