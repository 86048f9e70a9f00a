"""The per-assay score-direction checks of ``data/make_dms.py``: the evidence, computed from the
data, that a dataset's score times its sign is higher for fitter variants.

Each check gets the source table with columns ``changes`` (list of (pos, wt, mut)) and ``y``
(mavenn's score, unsigned) and returns the evidence text; a failed check stops the script.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

HYDROPHOBIC = frozenset("AVILMFWYC")
CHARGED = frozenset("DEKR")

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


def fmt_num(x: float, nd: int = 3) -> str:
    """Rounded number for the human-readable evidence text."""
    return f"{float(x):+.{nd}f}"


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
