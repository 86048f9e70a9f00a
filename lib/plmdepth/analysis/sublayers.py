"""Which sublayer of the late blocks matters: part skipping's output change pooled over the late blocks.

From `part_skipping_per_sequence.csv` (one model or several, with a `model` column): per model,
part (attention, mlp, block) and effect (total, direct), the mean output change (M3, L2 of
probabilities, max over positions, mean over units) over the blocks in the last `late` fraction
of the depth (s / L >= 1 - late), pooled as the measurement pools units, with a bootstrap
interval over sequences (`analysis.bootstrap`); and the paired difference MLP − attention
(the same resamples for both parts: they were measured on the same sequences).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from plmdepth.analysis.bootstrap import estimate, resampled_means

LATE = 0.5  # the last half of the blocks


def late_part_effects(per_sequence: pd.DataFrame, late: float = LATE, value: str = "prob_l2_sum") -> pd.DataFrame:
    """One row per (model, part, effect): `mean`, `low`, `high` over the late blocks; and per (model,
    effect) a row with part "mlp − attention", the paired difference."""
    rows = []
    frame = per_sequence if "model" in per_sequence else per_sequence.assign(model="model")
    for model, table in frame.groupby("model", sort=False):
        n_layers = int(table["skipped"].max()) + 1  # every block 0..L-1 is skipped in "current" and "local" modes
        table = table[table["skipped"] >= (1 - late) * n_layers]
        means = resampled_means(table, ["part", "effect"], value, "n_units")
        for key in means.keys:
            point, low, high = estimate(means.column(key))
            rows.append({"model": model, "part": key[0], "effect": key[1], "mean": point, "low": low, "high": high,
                         "blocks": f"{int(table['skipped'].min())}-{n_layers - 1}", "n_layers": n_layers})
        for effect in sorted(set(table["effect"])):
            if ("mlp", effect) in means.keys and ("attention", effect) in means.keys:
                diff = means.column(("mlp", effect)) - means.column(("attention", effect))
                point, low, high = estimate(diff)
                rows.append({"model": model, "part": "mlp − attention", "effect": effect, "mean": point, "low": low,
                             "high": high, "blocks": f"{int(table['skipped'].min())}-{n_layers - 1}",
                             "n_layers": n_layers})
    out = pd.DataFrame(rows)
    return out if len(out) else pd.DataFrame(columns=["model", "part", "effect", "mean", "low", "high", "blocks",
                                                      "n_layers"])


def larger_part(row: pd.Series) -> str:
    """What a "mlp − attention" row says: "the MLP", "the attention" or "neither, resolved"."""
    if not (np.isfinite(row["low"]) and np.isfinite(row["high"])):
        return "neither, resolved"
    return "the MLP" if row["low"] > 0 else "the attention" if row["high"] < 0 else "neither, resolved"
