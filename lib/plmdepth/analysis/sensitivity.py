"""Threshold sensitivity: which verdicts survive other reasonable thresholds.

The thresholds of the claims' tests (`ClaimParameters`: `kl_share` of (b), `dip` of (d),
`last_quarter_share` of (e)) and of the lens-or-layers verdict (`TruncationParameters.kept_threshold`)
were chosen by hand. `sweep(folders)` recomputes every verdict of the trained models with each
threshold multiplied by each of `FACTORS` (the others at their defaults) and returns one row per
(threshold, factor, claim, model) with the verdict (`kept_threshold`, a share kept, is swept through
the share it allows to be lost: 1 - (1 - kept_threshold) x factor, so that it stays below 1);
`stability` says, per (claim, model), whether
its verdict is the same across the whole sweep of the thresholds its test uses. The thresholds
that are part of a claim's statement (ratio < 1, difference < 0, at least one dip) are not swept.
"""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from plmdepth.analysis.claims import NOT_TESTABLE, ClaimParameters, claims, read_runs
from plmdepth.analysis.truncation import TruncationParameters, truncation_accuracy

FACTORS = (0.5, 0.75, 1.0, 1.5, 2.0)
#: threshold -> (what it is, the claims whose verdict uses it)
SWEPT = {"kl_share": ("(b) KL share at 3/4 depth", "b"),
         "dip": ("(d) dip: below this times both neighbours", "d"),
         "last_quarter_share": ("(e) last quarter's share of the gain", "e"),
         "kept_threshold": ("lens or layers: accuracy kept at 3/4", "lens-or-layers")}


def sweep(folders, factors=FACTORS, params: ClaimParameters | None = None,
          truncation: TruncationParameters | None = None) -> pd.DataFrame:
    """Per swept threshold and factor: every trained model's verdict on the claims that use it."""
    params, truncation = params or ClaimParameters(), truncation or TruncationParameters()
    runs = read_runs(folders)
    rows = []
    for name, (_, uses) in SWEPT.items():
        for factor in factors:
            if name == "kept_threshold":
                value = 1 - (1 - truncation.kept_threshold) * factor  # the share allowed to be lost, scaled
                table = truncation_accuracy(folders, replace(truncation, kept_threshold=value))
                part = table.assign(claim=uses)[["claim", "model", "verdict"]]
            else:
                value = getattr(params, name) * factor
                table = claims(folders, replace(params, **{name: value}), runs=runs)
                part = table[(table["claim"] == uses) & table["twin_of"].isna()][["claim", "model", "verdict"]]
            rows += [{"threshold": name, "factor": factor, "value": value, **r} for r in part.to_dict("records")]
    return pd.DataFrame(rows, columns=["threshold", "factor", "value", "claim", "model", "verdict"])


def counts(table: pd.DataFrame) -> pd.DataFrame:
    """Per threshold and factor, how many testable models get each verdict ("2 agree, 1 inconclusive")."""
    testable = table[table["verdict"] != NOT_TESTABLE]
    out = (testable.groupby(["threshold", "factor", "value"], sort=False)["verdict"]
           .agg(lambda v: ", ".join(f"{n} {verdict}" for verdict, n in v.value_counts().sort_index().items()))
           .rename("verdicts").reset_index())
    return out


def stability(table: pd.DataFrame) -> pd.DataFrame:
    """Per (claim, model): the verdict at the default thresholds, whether it holds across the sweep, and
    the verdicts it flips to (with the factors)."""
    rows = []
    testable = table[table["verdict"] != NOT_TESTABLE]
    for (claim, model), part in testable.groupby(["claim", "model"], sort=False):
        default = part.loc[part["factor"] == 1.0, "verdict"].iloc[0]
        flips = part[part["verdict"] != default]
        rows.append({"claim": claim, "model": model, "default": default, "holds": flips.empty,
                     "flips": "; ".join(f"{v} at ×{f:g}" for f, v in zip(flips["factor"], flips["verdict"]))})
    return pd.DataFrame(rows, columns=["claim", "model", "default", "holds", "flips"])
