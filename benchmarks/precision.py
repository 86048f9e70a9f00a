#!/usr/bin/env python
"""Precision: how far float64 and mixed bfloat16 move each measurement, and what bfloat16 costs here.

Run from the repository root:

    .venv/bin/python benchmarks/precision.py                         # sapiens-vh and iglm-s, 8 sequences
    .venv/bin/python benchmarks/precision.py --models antiberty,iglm --sequences 16 --bf16-sequences 4

Per model it runs `plmdepth.probes.noise_floor` (the same code the book runs) on the first
sequences of data/antibody_vh.fasta and prints, per measurement table, the largest difference
relative to the column's scale for float64 vs float32 (the float32 rounding floor), the null
skip, and mixed bfloat16 vs float32 (matrix products in bfloat16 through torch.autocast), with
the ratio bfloat16 / floor. Then one forward pass of the model in float32 and in mixed bfloat16,
timed (best of 3): the speed-up bfloat16 would bring on this machine (CPUs with AMX and GPUs run
bfloat16 products much faster than float32 ones; CPUs without bfloat16 matrix units far slower).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from common import machine  # benchmarks/common.py (this folder is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))

from plmdepth.fasta import read_fasta  # noqa: E402
from plmdepth.models import load_model  # noqa: E402
from plmdepth.plan import make_plan  # noqa: E402
from plmdepth.probes.noise_floor import NoiseFloorConfig, noise_floor  # noqa: E402


def forward_seconds(lm, records, mixed: bool) -> float:
    batch = lm.tokenize([r.id for r in records], [r.sequence for r in records])
    best = float("inf")
    with torch.no_grad():
        for _ in range(3):
            started = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mixed):
                lm(batch)
            best = min(best, time.perf_counter() - started)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="sapiens-vh,iglm-s")
    parser.add_argument("--fasta", default=str(ROOT / "data" / "antibody_vh.fasta"))
    parser.add_argument("--sequences", type=int, default=8)
    parser.add_argument("--bf16-sequences", type=int, default=2)
    args = parser.parse_args()
    print(machine())
    records = read_fasta(args.fasta)[:args.sequences]
    for name in args.models.split(","):
        lm = load_model(name)
        plan = make_plan(records, lm.objective, seed=0)
        started = time.perf_counter()
        table = noise_floor(lm, records, plan, NoiseFloorConfig(bfloat16_sequences=args.bf16_sequences), progress=False)
        wall = time.perf_counter() - started
        rel = table.pivot_table(index="table", columns="comparison", values="relative", aggfunc="max")
        rel["bf16 / floor"] = rel["bfloat16 (mixed)"] / rel["float64"]
        print(f"\n{name}: {len(records)} sequences (bfloat16: {args.bf16_sequences}); noise floor run {wall:.1f} s")
        print("largest |difference| / column scale, per table:")
        print(rel.to_string(float_format=lambda x: f"{x:.2e}"))
        f32, bf16 = forward_seconds(lm, records, False), forward_seconds(lm, records, True)
        print(f"forward pass of {len(records)} sequences: float32 {f32 * 1e3:.1f} ms, mixed bfloat16 "
              f"{bf16 * 1e3:.1f} ms (bfloat16 runs at {f32 / bf16:.2f}x the float32 speed here)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
