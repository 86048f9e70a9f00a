"""The numerical noise floor of the measurements: the smallest difference each table can resolve.

The logit lens (M4), layer skipping (M2, M3) and the contributions (M1) are computed again on
the same sequences and plan, in ways that agree in exact arithmetic, and every number of their
tables is compared with the run in the model's own precision (float32 in the book):

- ``float64``: the model and every computation in float64. What float32 rounding alone moves.
- ``null skip``: layer skipping with an intervention that changes nothing (h'_{s+1} := h_{s+1}),
  in the run's precision. M2 and M3 are then zero in exact arithmetic; what remains is what the
  batched skip runs differ from the clean pass by (`layer_skipping.SkipConfig.null`).
- ``bfloat16 (mixed)``: the run's `--dtype mixed-bfloat16`: the matrix products in bfloat16
  (`models.device.computing_in`, torch.autocast: weights and inputs of
  every matrix product rounded to bfloat16, accumulated in float32), the residual stream, norms,
  softmax and KL in float32; on the first `bfloat16_sequences` sequences only (on a CPU without
  bfloat16 matrix units these products are far slower than float32 ones).

One row per (comparison, table, column): ``max_abs_diff`` over the table's cells, the column's
largest absolute value (``max_abs``) and their ratio. A difference between two models or layers
smaller than a column's floor is not resolved by this build.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from plmdepth.fasta import Record
from plmdepth.model import ProteinLM
from plmdepth.models.device import computing_in
from plmdepth.plan import MaskingPlan
from plmdepth.probes import contributions, layer_skipping, logit_lens

# columns that name a row (not compared): its coordinates and counts
KEYS = {"layer", "skipped", "affected", "part", "relative_depth", "relative_skipped", "relative_affected",
        "n_positions", "n_sequences", "n_units", "n_tokens", "mode", "norm", "model"}


@dataclass
class NoiseFloorConfig:
    """Parameters of a noise-floor run (written to run.json verbatim)."""

    bfloat16_sequences: int = 2
    batch_size: int = 8
    seed: int = 0


def _tables(lm: ProteinLM, records: list[Record], plan: MaskingPlan, config: NoiseFloorConfig,
            null: bool = False) -> dict[str, pd.DataFrame]:
    """The compared measurements' tables, by name (M4 without its bootstrap interval columns' resamples)."""
    b = config.batch_size
    ll = logit_lens.logit_lens(lm, records, plan, logit_lens.LogitLensConfig(batch_size=b, seed=config.seed),
                               progress=False)
    effect, output = layer_skipping.layer_skipping(
        lm, records, plan, layer_skipping.SkipConfig(batch_size=b, seed=config.seed, null=null), progress=False)
    tables = {"skip_effect": effect, "skip_output": output}
    if null:
        return tables
    tables["logit_lens"] = ll
    tables["contributions"] = contributions.contributions(
        lm, records, plan, contributions.ContributionsConfig(batch_size=b, seed=config.seed), progress=False)
    return tables


def compare(reference: dict[str, pd.DataFrame], other: dict[str, pd.DataFrame], comparison: str,
            exact: float | None = None) -> pd.DataFrame:
    """Per table and numeric column of `other`: the largest |other − reference| (rows in the same
    order: the same code on the same units), the reference's largest |value| and their ratio. With
    `exact`, `other` is compared with that value (what it equals in exact arithmetic) instead."""
    rows = []
    for name, table in other.items():
        ref = reference[name]
        for column in table.columns:
            if column in KEYS or not pd.api.types.is_numeric_dtype(table[column]):
                continue
            a, b = ref[column].to_numpy(float), table[column].to_numpy(float)
            finite = np.isfinite(a) & np.isfinite(b)
            target = a if exact is None else np.full_like(b, exact)
            diff = float(np.abs(target - b)[finite].max()) if finite.any() else np.nan
            scale = float(np.abs(a)[finite].max()) if finite.any() else np.nan
            rows.append({"comparison": comparison, "table": name, "column": column, "max_abs_diff": diff,
                         "max_abs": scale, "relative": diff / scale if scale else np.nan})
    return pd.DataFrame(rows)


def noise_floor(lm: ProteinLM, records: list[Record], plan: MaskingPlan, config: NoiseFloorConfig | None = None,
                progress: bool = True, checkpoint=None, key=None) -> pd.DataFrame:
    """The `noise_floor.csv` table (module docstring) of `lm` on `records` and `plan`."""
    config = config or NoiseFloorConfig()
    own = _tables(lm, records, plan, config)
    wide = copy.deepcopy(lm).to(dtype=torch.float64)
    parts = [compare(own, _tables(wide, records, plan, config), "float64"),
             compare({k: own[k] for k in ("skip_effect", "skip_output")},
                     _tables(lm, records, plan, config, null=True), "null skip", exact=0.0)]
    del wide
    k = min(config.bfloat16_sequences, len(records))
    if k and next(lm.parameters()).dtype == torch.float32:
        first = records[:k]
        base = _tables(lm, first, plan, config)
        with computing_in("mixed-bfloat16", lm.device):
            mixed = _tables(lm, first, plan, config)
        parts.append(compare(base, mixed, "bfloat16 (mixed)"))
    table = pd.concat(parts, ignore_index=True)
    table["n_sequences"] = [k if c == "bfloat16 (mixed)" else len(records) for c in table["comparison"]]
    return table

