"""Substitution variants in ProteinGym's `mutant` notation: `A23V:G40S`, 1-based on the wild type.

    mutations = parse_mutant("A23V:G40S", wild_type)   # [(22, 'A', 'V'), (39, 'G', 'S')], 0-based
    mutated_sequence(wild_type, mutations)             # the wild type with those substitutions
    mutant_string(mutations)                           # "A23V:G40S" again

`parse_mutant` checks every wild-type letter against the wild type and raises `AssayError`, the
error of a deep-mutational-scan file that cannot be used. The variant-effects measurement reads
assays with these functions and `data/make_dms.py` writes them with them. Standard library only.
"""

from __future__ import annotations

from typing import Iterable


class AssayError(ValueError):
    """A DMS file or reference table that cannot be used, with a message that says why."""


def parse_mutant(mutant: str, wild_type: str, assay: str = "") -> list[tuple[int, str, str]]:
    """`A23V:G40S` -> [(22, 'A', 'V'), (39, 'G', 'S')], checked against the wild type."""
    out = []
    for part in str(mutant).split(":"):
        wt, pos, mut = part[:1], part[1:-1], part[-1:]
        if not (wt.isalpha() and pos.isdigit() and mut.isalpha()):
            raise AssayError(f"assay {assay}: mutant '{mutant}' is not of the form A23V[:G40S]")
        p = int(pos) - 1
        if not 0 <= p < len(wild_type) or wild_type[p] != wt:
            found = wild_type[p] if 0 <= p < len(wild_type) else "nothing"
            raise AssayError(f"assay {assay}: mutant '{mutant}' says position {pos} is {wt}, "
                             f"but the wild type has {found} there")
        out.append((p, wt, mut))
    return out


def mutated_sequence(wild_type: str, mutations: Iterable[tuple[int, str, str]]) -> str:
    """The wild type with every (0-based position, wild-type letter, new letter) substituted."""
    sequence = list(wild_type)
    for p, _, mut in mutations:
        sequence[p] = mut
    return "".join(sequence)


def mutant_string(mutations: Iterable[tuple[int, str, str]]) -> str:
    """(0-based position, wild-type letter, new letter) substitutions -> `A23V:G40S`."""
    return ":".join(f"{wt}{p + 1}{mut}" for p, wt, mut in mutations)
