"""Protein chains read from PDB files: one chain's residues and backbone coordinates.

    chain = read_pdb_chain("data/structures/2hhb_A.pdb")   # Chain: id, sequence, coords, residue_idx
    chain.coords[i, a]                                      # atom a (N, CA, C, O) of residue i, NaN if absent

The reader follows ProteinMPNN's own parser (`parse_PDB` in `protein_mpnn_utils.py`): the first
model only, ATOM records plus selenomethionine HETATMs read as MET, residues as (resSeq, iCode)
in file order, the first listed alternate location of an atom, the 20 standard residues to one
letter and anything else to X, and positions along the chain that keep numbering gaps.

`first_model_atoms` is the record filter on its own, for code that keeps the lines themselves
(`data/make_structures.py` copies a chain's backbone records verbatim). numpy only, no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

#: The backbone atoms, in the order of `Chain.coords`' second axis.
BACKBONE = ("N", "CA", "C", "O")
#: The 20 standard residues' one-letter codes; any other residue name reads as X.
THREE_TO_ONE = {
    "ALA": "A", "ARG": "R", "ASN": "N", "ASP": "D", "CYS": "C", "GLN": "Q", "GLU": "E", "GLY": "G",
    "HIS": "H", "ILE": "I", "LEU": "L", "LYS": "K", "MET": "M", "PHE": "F", "PRO": "P", "SER": "S",
    "THR": "T", "TRP": "W", "TYR": "Y", "VAL": "V",
}


class StructureError(ValueError):
    """A sequence that has no structure, or differs from its structure's residues."""


@dataclass(frozen=True)
class Chain:
    """One protein chain: `coords[i, a]` is backbone atom a (N, CA, C, O) of residue i, NaN
    where the file has none; `residue_idx[i]` its position along the chain, numbering gaps
    kept (ProteinMPNN's `residue_idx`)."""

    id: str
    sequence: str
    coords: np.ndarray  # [n, 4, 3] float64
    residue_idx: np.ndarray  # [n] int64


def one_letter(name: str) -> str:
    """The one-letter code of a residue name (columns 18-20): X for anything non-standard."""
    return THREE_TO_ONE.get(name, "X")


def first_model_atoms(lines: Iterable[str]) -> Iterator[tuple[int, str, str]]:
    """(line number, line, residue name) of every ATOM record of the first model; selenomethionine
    HETATMs are read as MET, as ProteinMPNN's parser does, and every other HETATM (ligands,
    waters) is skipped."""
    for line_no, line in enumerate(lines, start=1):
        record, name = line[:6], line[17:20]
        if record == "ENDMDL":
            return
        if record == "HETATM" and name == "MSE":
            name = "MET"
        elif record != "ATOM  ":
            continue
        yield line_no, line, name


def atom_records(path: str | Path) -> Iterator[tuple[str, tuple[int, str], str, str, tuple[float, float, float]]]:
    """(chain, (resSeq, iCode), residue name, atom name, xyz) of every atom record of the first
    model (`first_model_atoms`)."""
    with open(path, encoding="ascii", errors="replace") as handle:
        for line_no, line, name in first_model_atoms(handle):
            try:
                xyz = (float(line[30:38]), float(line[38:46]), float(line[46:54]))
                number = int(line[22:26])
            except ValueError:
                raise StructureError(f"{path}, line {line_no}: the ATOM record's residue number or x/y/z coordinates "
                                     "(columns 23-26, 31-54) are not numbers; give a PDB file in the fixed-column "
                                     "format.") from None
            yield line[21], (number, line[26]), name, line[12:16].strip(), xyz


def positions_along_chain(keys: Sequence[tuple[int, str]]) -> np.ndarray:
    """0, 1, 2, ... with numbering gaps kept: residue 10 after residue 5 is 5 further on; an
    insertion code (same number, next letter) is one further on."""
    idx = [0]
    for (a, _), (b, _) in zip(keys, keys[1:]):
        idx.append(idx[-1] + max(1, b - a))
    return np.array(idx, dtype=np.int64)


def read_pdb_chain(path: str | Path, chain: str | None = None, seq_id: str | None = None) -> Chain:
    """The backbone of one chain of a PDB file (the first chain if `chain` is None), named
    `seq_id` (default: the file's name without its suffix).

    Residues are (resSeq, iCode) in file order, named by their first record (the 20 standard
    residues to one letter, anything else X); of an atom's alternate locations the first
    listed is kept, as in ProteinMPNN's parser.
    """
    residues: dict[tuple[int, str], tuple[str, dict]] = {}
    for ch, key, name, atom, xyz in atom_records(path):
        chain = ch if chain is None else chain
        if ch != chain:
            continue
        letter, atoms = residues.setdefault(key, (one_letter(name), {}))
        if atom in BACKBONE and atom not in atoms:
            atoms[atom] = xyz
    if not residues:
        raise StructureError(f"{path} has no protein ATOM records{f' in chain {chain}' if chain else ''}; "
                             "pass a PDB file that holds the chain's backbone.")
    coords = np.array([[atoms.get(a, (np.nan,) * 3) for a in BACKBONE] for _, atoms in residues.values()],
                      dtype=np.float64)
    sequence = "".join(letter for letter, _ in residues.values())
    return Chain(seq_id or Path(path).stem, sequence, coords, positions_along_chain(list(residues)))
