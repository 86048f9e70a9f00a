"""The paper's claims tested by numbers computed from the results: functions from tables to tables.

`claims(folders)` reads the results folders of a build and returns one row per (claim, model):
the number that tests the claim, the direction the paper reports, and a verdict ("agrees",
"disagrees", or "not testable here" with the reason). The sentences the book writes from it
are `publish.verdicts`'. The definitions (Methods, "Testing the paper's claims"):

(a) Later blocks depend less on earlier computations (paper Fig. 1). e(s) = mean over later
    blocks j > s of M2's `effect_mean` when block s is skipped. The number is the late / early
    ratio: mean e(s) over the later half of the skippable blocks divided by the mean over the
    earlier half (the middle block is left out when their count is odd). Agrees when < 1.
(b) Later blocks mainly refine the output distribution (paper Figs. 2-4). Two numbers: the
    share of the first readable layer's logit-lens KL left at 3/4 depth, KL(3L/4) / KL(first),
    and the late / early ratio of M3's `prob_l2_mean` (output change when one block is skipped).
    Agrees when the share is at most `kl_share` and the ratio is below 1.
(c) These effects are more pronounced in deeper models (paper Figs. 1-4, across sizes). For
    each pair of comparable models of different depth (same family, or a pair named in
    `depth_pairs`), the difference deeper - shallower of (a)'s ratio. Agrees when < 0.
(d) Localized low-effect regions among early blocks (paper Figs. 1-2). The number of early
    blocks (the earlier half of the skippable blocks, the first excluded) whose e(s) is below
    `dip` times both neighbours'. Agrees when at least one; needs `min_early` such blocks.
(e) Diminishing returns of the final layers for variant effects (paper Fig. 5). On the mean
    Spearman (ProteinGym's average over proteins), the gain over the last quarter of depth,
    rho(L) - rho(3L/4), as a share of the whole gain rho(L) - rho(first). Agrees when rho improves with depth and the
    last quarter brings at most `last_quarter_share` of the gain.

Blocks whose skip effect is zero by construction (in "future" mode the last block cannot reach
the held-out positions) are excluded everywhere. Values at 3/4 depth are linearly
interpolated between layers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from plmdepth.probes.layer_skipping import zero_by_construction
from plmdepth.results import Results

CLAIMS = {
    "a": ("Later blocks depend less on earlier computations", "Fig. 1"),
    "b": ("Later blocks mainly refine the output distribution", "Figs. 2-4"),
    "c": ("These effects are more pronounced in deeper models", "Figs. 1-4"),
    "d": ("Localized low-effect regions among early blocks", "Figs. 1-2"),
    "e": ("Diminishing returns of the final layers for variant effects", "Fig. 5"),
}
NOT_TESTABLE = "not testable here"


@dataclass(frozen=True)
class ClaimParameters:
    """The thresholds of the claims' tests."""

    kl_share: float = 0.25  # (b): at most this share of the first layer's lens KL left at 3/4 depth
    dip: float = 0.5  # (d): an early block is a dip when its effect is below dip x both neighbours'
    min_early: int = 2  # (d): early blocks (after the first) needed to look for a dip
    last_quarter_share: float = 0.25  # (e): the last quarter of depth brings at most this share of the gain
    depth_pairs: tuple = (("antiberty", "sapiens-vh"),)  # (c): comparable models of different families


@dataclass
class Run:
    """One results folder: the model's name, depth and family, and its tables."""

    name: str
    family: str
    objective: str
    blocks: int
    tables: dict = field(default_factory=dict)


def read_runs(folders) -> list[Run]:
    """Every results folder (in name order), with the tables of the measurements its run.json records
    (a CSV it does not record is not read)."""
    return [Run(r.model.display, r.model.family, r.model.objective, r.model.blocks,
                {name: table for m in r.measurements if r.has(m) for name, table in r.tables(m).items()})
            for r in Results(sorted(Path(f) for f in folders))]


def _at(x: np.ndarray, y: np.ndarray, where: float) -> float:
    return float(np.interp(where, x, y))


def skip_profile(run: Run, column: str = "effect_mean") -> pd.Series | None:
    """e(s): the mean M2 effect of skipping block s on every later block, for the blocks with one."""
    table = run.tables.get("skip_effect")
    if table is None or table.empty:
        return None
    return table.groupby("skipped")[column].mean()


def output_profile(run: Run) -> pd.Series | None:
    """M3's `prob_l2_mean` per skipped block, without the blocks whose effect is zero by construction."""
    table = run.tables.get("skip_output")
    if table is None or table.empty:
        return None
    return table[~zero_by_construction(table)].set_index("skipped")["prob_l2_mean"]


def late_early_ratio(profile: pd.Series) -> float:
    """Mean over the later half of the blocks / mean over the earlier half (middle one left out)."""
    values = profile.sort_index().to_numpy()
    half = len(values) // 2
    return float(values[-half:].mean() / values[:half].mean())


def _row(claim: str, run: Run | str, number: str, value: float, direction: str, verdict: str, why: str = "") -> dict:
    text, figure = CLAIMS[claim]
    name = run.name if isinstance(run, Run) else run
    return {"claim": claim, "statement": text, "paper": figure, "model": name, "number": number, "value": value,
            "paper direction": direction, "verdict": verdict, "why": why}


def _claim_a(run: Run) -> dict | None:
    profile = skip_profile(run)
    if profile is None:
        return None
    if len(profile) < 2:
        return _row("a", run, "late/early skip effect", np.nan, "< 1", NOT_TESTABLE,
                    f"{run.blocks} blocks: fewer than two blocks have a later block")
    ratio = late_early_ratio(profile)
    return _row("a", run, "late/early skip effect", ratio, "< 1", "agrees" if ratio < 1 else "disagrees")


def _claim_b(run: Run, params: ClaimParameters) -> dict | None:
    lens, output = run.tables.get("logit_lens"), output_profile(run)
    if lens is None or output is None:
        return None
    if len(output) < 2:
        return _row("b", run, "KL share at 3/4 depth; late/early output change", np.nan, "small; < 1", NOT_TESTABLE,
                    f"{run.blocks} blocks: fewer than two blocks whose skipping can change the output")
    first = lens.iloc[0]
    share = _at(lens["relative_depth"].to_numpy(), lens["kl"].to_numpy(), 0.75) / first["kl"]
    ratio = late_early_ratio(output)
    ok = share <= params.kl_share and ratio < 1
    return _row("b", run, "KL share at 3/4 depth; late/early output change", share,
                f"share <= {params.kl_share:g}; ratio < 1", "agrees" if ok else "disagrees",
                f"KL share {share:.3f}, output-change ratio {ratio:.3f}")


def _pairs(runs: list[Run], params: ClaimParameters) -> list[tuple[Run, Run]]:
    """(deeper, shallower) pairs with layer-skipping results: same family and objective, or named in
    `depth_pairs`."""
    runs = [r for r in runs if skip_profile(r) is not None]
    by_name = {r.name: r for r in runs}
    pairs = {}
    for a in runs:
        for b in runs:
            if a.blocks > b.blocks and a.family == b.family and a.objective == b.objective:
                pairs[(a.name, b.name)] = (a, b)
    for x, y in params.depth_pairs:
        if x in by_name and y in by_name and by_name[x].blocks != by_name[y].blocks:
            deep, shallow = sorted((by_name[x], by_name[y]), key=lambda r: -r.blocks)
            pairs[(deep.name, shallow.name)] = (deep, shallow)
    return list(pairs.values())


def _claim_c(runs: list[Run], params: ClaimParameters) -> list[dict]:
    rows = []
    for deep, shallow in _pairs(runs, params):
        a, b = skip_profile(deep), skip_profile(shallow)
        name = f"{deep.name} ({deep.blocks}) vs {shallow.name} ({shallow.blocks})"
        if len(a) < 2 or len(b) < 2:
            rows.append(_row("c", name, "difference of late/early skip effect", np.nan, "< 0", NOT_TESTABLE,
                             "fewer than two blocks have a later block"))
            continue
        deep_ratio, shallow_ratio = late_early_ratio(a), late_early_ratio(b)
        diff = deep_ratio - shallow_ratio
        rows.append(_row("c", name, "difference of late/early skip effect", diff, "< 0",
                         "agrees" if diff < 0 else "disagrees", f"{deep_ratio:.3f} vs {shallow_ratio:.3f}"))
    return rows


def _claim_d(run: Run, params: ClaimParameters) -> dict | None:
    profile = skip_profile(run)
    if profile is None:
        return None
    values = profile.sort_index().to_numpy()
    candidates = range(1, len(values) // 2 + 1)  # the early half, not the first block (it has no left neighbour)
    if len(candidates) < params.min_early:
        return _row("d", run, "early dips", np.nan, ">= 1", NOT_TESTABLE,
                    f"{run.blocks} blocks: fewer than {params.min_early} early blocks to look for a dip")
    dips = [i for i in candidates if values[i] < params.dip * min(values[i - 1], values[i + 1])]
    where = f" (block {', '.join(map(str, dips))})" if dips else ""
    return _row("d", run, "early dips", float(len(dips)), ">= 1", "agrees" if dips else "disagrees",
                f"{len(dips)} of {len(candidates)} early blocks below {params.dip:g} x both neighbours{where}")


def _claim_e(run: Run, params: ClaimParameters) -> dict | None:
    table = run.tables.get("variant_effects")
    if table is None:
        return None
    mean = table[table["assay"] == "mean"].sort_values("relative_depth")
    if len(mean) < 3:
        return _row("e", run, "last-quarter share of the gain", np.nan, f"<= {params.last_quarter_share:g}",
                    NOT_TESTABLE, f"{len(mean)} readable layer(s): too few for a depth profile")
    x, y = mean["relative_depth"].to_numpy(), mean["spearman"].to_numpy()
    gain, last = y[-1] - y[0], y[-1] - _at(x, y, 0.75)
    if gain <= 0:
        return _row("e", run, "last-quarter share of the gain", np.nan, f"<= {params.last_quarter_share:g}",
                    "disagrees", f"rho does not improve with depth ({y[0]:.3f} first, {y[-1]:.3f} last)")
    share = last / gain
    return _row("e", run, "last-quarter share of the gain", share, f"<= {params.last_quarter_share:g}",
                "agrees" if share <= params.last_quarter_share else "disagrees",
                f"rho {y[0]:.3f} first, {_at(x, y, 0.75):.3f} at 3/4, {y[-1]:.3f} last")


def claims(folders, params: ClaimParameters | None = None) -> pd.DataFrame:
    """One row per (claim, model): the test number, the paper's direction and the verdict."""
    params = params or ClaimParameters()
    runs = read_runs(folders)
    rows = []
    for run in runs:
        rows += [r for r in (_claim_a(run), _claim_b(run, params), _claim_d(run, params), _claim_e(run, params)) if r]
    rows += _claim_c(runs, params)
    columns = ["claim", "statement", "paper", "model", "number", "value", "paper direction", "verdict", "why"]
    return pd.DataFrame(rows, columns=columns).sort_values(["claim", "model"], kind="stable").reset_index(drop=True)
