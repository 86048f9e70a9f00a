"""Claim (c) with depth as the only variable: trends across the rungs of one ladder.

The paper's claim (c), "these effects are more pronounced in deeper models", compares models
that differ in more than depth. Across the rungs of the depth ladder (`models/ladder.py`: one
width, one recipe, one corpus) only the depth changes, so a trend across the rungs is the effect
of depth. Two numbers per rung, both from `analysis.claims`:

- claim (a)'s late/early ratio of the skip effect e(s) (below 1: later blocks depend less on earlier
  computations; a rung of 2 blocks has one block with a later block and no ratio);
- claim (b)'s KL share at 3/4 depth, KL(3L/4) / KL(first readable layer) of the logit lens (small:
  little is left to do in the last quarter).

The trend of each is the least-squares slope of the number against log2(blocks), that is its change
per doubling of depth, computed on the point estimate and on every bootstrap resample of the
sequences. All rungs ran on the same sequences, so one resample reweights the same sequences in
every rung (a paired bootstrap) and the slope's interval carries the rungs' shared sequence noise
once. Claim (c) agrees when the whole interval of the ratio's slope lies below 0 (deeper: a smaller
late/early ratio), disagrees when it lies above. The KL share's slope is reported beside it: below
0, deeper rungs leave less of the output's distribution to their last quarter.

The same slopes of the untrained twins (one ladder per initialisation seed) say what the
architecture produces at each depth before any training.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from plmdepth.analysis.bootstrap import estimate, side
from plmdepth.analysis.claims import (ClaimParameters, Run, _at_rows, late_early, read_runs, resampled_lens,
                                      resampled_skip_profile)

NUMBERS = {"ratio": "late/early skip effect", "share": "KL share at 3/4 depth"}


def _rung_numbers(run: Run, params: ClaimParameters) -> dict[str, np.ndarray]:
    """Each of the rung's two numbers on the point estimate and every resample (absent when not defined)."""
    out = {}
    profile = resampled_skip_profile(run, params)
    if profile is not None and len(profile.keys) >= 2:
        out["ratio"] = late_early(profile.values)
    lens = resampled_lens(run, params)
    if lens is not None:
        depth, kl = lens
        with np.errstate(invalid="ignore", divide="ignore"):
            out["share"] = _at_rows(depth, kl.values, 0.75) / kl.values[:, 0]
    return out


def slope(blocks, values: np.ndarray) -> np.ndarray:
    """Least-squares slope of `values` (rows: point estimate then resamples; columns: rungs) against
    log2(blocks), row by row."""
    x = np.log2(np.asarray(blocks, float))
    x = x - x.mean()
    values = np.asarray(values, float)
    return (values - values.mean(1, keepdims=True)) @ x / (x @ x)


def _group(run: Run) -> str:
    return "trained" if run.twin_of is None else f"untrained, seed {run.init_seed}"


def ladder_numbers(folders, params: ClaimParameters | None = None) -> tuple[pd.DataFrame, dict]:
    """One row per (rung, number): the rung's value with its 95% interval, whether it is trained or an
    untrained twin (`group`); and the replicates of each (group, number) by rung for `ladder_trends`."""
    params = params or ClaimParameters()
    rows, replicates = [], {}
    for run in sorted(read_runs(folders), key=lambda r: r.blocks):
        group = _group(run)
        for number, values in _rung_numbers(run, params).items():
            value, low, high = estimate(values)
            rows.append({"group": group, "model": run.name, "trained_model": run.twin_of or run.name,
                         "blocks": run.blocks, "number": NUMBERS[number], "value": value, "low": low,
                         "high": high})
            replicates.setdefault((group, number), {})[run.blocks] = values
    return pd.DataFrame(rows, columns=["group", "model", "trained_model", "blocks", "number", "value", "low",
                                       "high"]), replicates


def ladder_trends(replicates: dict) -> pd.DataFrame:
    """One row per (group, number): the slope per doubling of depth with its interval, the rungs it
    spans, and for the trained ratio the verdict on claim (c)."""
    rows = []
    for (group, number), by_blocks in sorted(replicates.items()):
        blocks = sorted(by_blocks)
        if len(blocks) < 3:
            continue
        est = estimate(slope(blocks, np.stack([by_blocks[b] for b in blocks], axis=1)))
        verdict = side(est[1], est[2], 0.0, below=True) if group == "trained" and number == "ratio" else ""
        rows.append({"group": group, "number": NUMBERS[number], "slope": est[0], "low": est[1], "high": est[2],
                     "rungs": ", ".join(map(str, blocks)), "verdict": verdict})
    return pd.DataFrame(rows, columns=["group", "number", "slope", "low", "high", "rungs", "verdict"])
