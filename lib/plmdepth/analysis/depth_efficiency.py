"""Depth efficiency: from which relative depth every layer of a model is refinement.

d* is the smallest l / L with logit-lens KL(l) < `kappa` and output change (M3's `prob_l2_mean`)
< `tau` for every skipped block s >= l (blocks whose effect is zero by construction excluded);
1 - d* is the share of depth spent refining.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from plmdepth.results import Results
from plmdepth.analysis.claims import output_profile, read_runs


@dataclass(frozen=True)
class EfficiencyParameters:
    tau: float = 0.1  # output change (mean L2) below which a block counts as refining
    kappa: float = 0.5  # lens KL [nats] below which a layer counts as refining


def depth_efficiency(folders, params: EfficiencyParameters | None = None) -> pd.DataFrame:
    """Per model, the relative depth d* from which every layer is refinement: the smallest l / L
    with lens KL(l) < kappa and output change (M3 prob_l2_mean) < tau for every skipped block s >= l
    (blocks whose effect is zero by construction excluded). 1 - d* is the share of depth spent refining."""
    params = params or EfficiencyParameters()
    rows = []
    order = {r.model.display: i for i, r in enumerate(Results(folders))}  # the chapter's model order
    for run in sorted(read_runs(folders), key=lambda run: order.get(run.name, len(order))):
        lens, output = run.tables.get("logit_lens"), output_profile(run)
        if lens is None or output is None:
            continue
        kl = lens.set_index("layer")["kl"]
        start = next(layer for layer in sorted(kl.index)
                     if kl[layer] < params.kappa and (output[output.index >= layer] < params.tau).all())
        rows.append({"model": run.name, "family": run.family, "blocks": run.blocks,
                     "refining from l / L": start / run.blocks, "refining share of depth": 1 - start / run.blocks,
                     "tau": params.tau, "kappa": params.kappa, "twin_of": run.twin_of})
    return pd.DataFrame(rows, columns=["model", "family", "blocks", "refining from l / L", "refining share of depth",
                                       "tau", "kappa", "twin_of"])
