#!/usr/bin/env python
"""Tuned lens: training time per model, and the held-out KL gap it closes against the logit lens per layer.

Run by hand from the repository root (it is not a test):

    .venv/bin/python benchmarks/tuned_lens.py                       # the book's four antibody models, 200 VH
    .venv/bin/python benchmarks/tuned_lens.py --models antiberty --n-sequences 40   # quick

For each model it runs `plmdepth.probes.tuned_lens.tuned_lens` (the measurement the
lens-or-layers chapter shows) with the chapter's defaults: a seeded half of the first
`--n-sequences` records of data/antibody_vh.fasta for training (50 epochs of Adam), the other
half held out, the logit lens's masking plan (15%, seed 0). It prints the wall time of
training and of reading both lenses, and per layer the held-out KL(p_l || p_L) of the logit
and the tuned lens and the share of the gap closed, 1 - KL_tuned / KL_logit.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))

from plmdepth.fasta import read_fasta  # noqa: E402
from plmdepth.models import load_model  # noqa: E402
from plmdepth.plan import make_plan  # noqa: E402
from plmdepth.probes import tuned_lens as tl  # noqa: E402
from common import machine  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="antiberty,sapiens-vh,iglm,iglm-s")
    parser.add_argument("--n-sequences", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=tl.TunedLensConfig.epochs)
    args = parser.parse_args()
    print(machine())
    records = read_fasta(ROOT / "data/antibody_vh.fasta", limit=args.n_sequences)
    print(f"\ndata/antibody_vh.fasta: first {len(records)} records; epochs {args.epochs}\n")
    summary = []
    for name in args.models.split(","):
        lm = load_model(name)
        plan = make_plan(records, lm.objective, seed=0)
        config = tl.TunedLensConfig(epochs=args.epochs)
        train, held = tl.split_records(records, config.train_fraction, config.seed)
        started = time.perf_counter()
        tl.train_tuned_lens(lm, records, plan, config)
        trained = time.perf_counter() - started
        started = time.perf_counter()
        table = tl.tuned_lens(lm, records, plan, config, progress=False)[0]
        whole = time.perf_counter() - started
        kl = table.pivot_table(index="layer", columns="lens", values="kl")
        kl["gap closed"] = 1 - kl["tuned"] / kl["logit"]
        print(f"{name}: {lm.n_layers} blocks, {len(train)} training / {len(held)} held-out sequences; "
              f"training {trained:.1f} s, the whole measurement (training + reading both lenses) {whole:.1f} s")
        print(kl.to_string(float_format=lambda v: f"{v:.3f}"), "\n")
        summary.append((name, trained, whole, kl["gap closed"].iloc[:-1].min(), kl["gap closed"].iloc[:-1].max()))
    print(f"{'model':12} {'training s':>11} {'measurement s':>14} {'gap closed (min..max over layers < L)':>40}")
    for name, trained, whole, low, high in summary:
        print(f"{name:12} {trained:>11.1f} {whole:>14.1f} {low:>32.0%} .. {high:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
