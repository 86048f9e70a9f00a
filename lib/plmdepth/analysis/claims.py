"""The paper's claims tested by numbers computed from the results: functions from tables to tables.

`claims(folders)` reads the results folders of a build and returns one row per (claim, model):
the number that tests the claim, its 95% interval (a bootstrap over sequences, `analysis.bootstrap`;
over variants for (e)), the direction the paper reports, and a verdict: "agrees" when the whole
interval lies on the paper's side of the threshold, "disagrees" when it lies on the other side,
"inconclusive" when it spans the threshold, or "not testable here" with the reason. The
sentences the book writes from it are `publish.verdicts`'. The definitions (Methods, "Testing
the paper's claims"):

(a) Later blocks depend less on earlier computations (paper Fig. 1). e(s) = mean over later
    blocks j > s of M2's `effect_mean` when block s is skipped. The number is the late / early
    ratio: mean e(s) over the later half of the skippable blocks divided by the mean over the
    earlier half (the middle block is left out when their count is odd). Agrees when < 1.
(b) Later blocks mainly refine the output distribution (paper Figs. 2-4). Two numbers: the
    share of the first readable layer's logit-lens KL left at 3/4 depth, KL(3L/4) / KL(first),
    and the late / early ratio of M3's `prob_l2_mean` (output change when one block is skipped).
    Agrees when the share is at most `kl_share` and the ratio is below 1 (both intervals);
    disagrees when either interval lies on the other side. `kl` chooses the lens KL's direction.
(c) These effects are more pronounced in deeper models (paper Figs. 1-4, across sizes). For
    each pair of comparable models of different depth (same family, or a pair named in
    `depth_pairs`), the difference deeper - shallower of (a)'s ratio. Agrees when < 0. The two
    models are resampled together when they ran on the same sequences (a paired bootstrap).
(d) Localized low-effect regions among early blocks (paper Figs. 1-2). The number of early
    blocks (the earlier half of the skippable blocks, the first excluded) whose e(s) is below
    `dip` times both neighbours'. Agrees when at least one; needs `min_early` such blocks.
    (Its interval is that of the count over resamples: agrees when even its low end is 1.)
(e) Diminishing returns of the final layers for variant effects (paper Fig. 5). On the mean
    Spearman (ProteinGym's average over proteins), the gain over the last quarter of depth,
    rho(L) - rho(3L/4), as a share of the whole gain rho(L) - rho(first). Agrees when rho improves
    with depth and the last quarter brings at most `last_quarter_share` of the gain. Its interval
    comes from the measurement's bootstrap over variants (`variant_effects_replicates.csv`; the same
    resample at every layer); a resample in which rho does not improve counts as failing the test.

Every claim is computed the same way for the point estimate and for each resample: `Resampled`
holds both (row 0, then the resamples), and the statistics below are numpy over its rows.

Blocks whose skip effect is zero by construction (in "future" mode the last block cannot reach
the held-out positions) are excluded everywhere. Values at 3/4 depth are linearly
interpolated between layers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from plmdepth.analysis.bootstrap import N_RESAMPLES, Resampled, estimate, resampled_means, side
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
VERDICTS = ("agrees", "disagrees", "inconclusive")
COLUMNS = ["claim", "statement", "paper", "model", "number", "value", "low", "high", "second", "second_low",
           "second_high", "paper direction", "verdict", "why", "twin_of", "init_seed"]


@dataclass(frozen=True)
class ClaimParameters:
    """The thresholds of the claims' tests, and the bootstrap's size."""

    kl_share: float = 0.25  # (b): at most this share of the first layer's lens KL left at 3/4 depth
    dip: float = 0.5  # (d): an early block is a dip when its effect is below dip x both neighbours'
    min_early: int = 2  # (d): early blocks (after the first) needed to look for a dip
    last_quarter_share: float = 0.25  # (e): the last quarter of depth brings at most this share of the gain
    depth_pairs: tuple = (("antiberty", "sapiens-vh"),)  # (c): comparable models of different families
    kl: str = "kl"  # (b): the lens KL's direction, "kl" = KL(p_l || p_L) or "kl_reverse" = KL(p_L || p_l)
    n_resamples: int = N_RESAMPLES  # bootstrap resamples of the sequences
    seed: int = 0  # of the resamples


@dataclass
class Run:
    """One results folder: the model's name, depth and family, its tables, and whose untrained twin
    it is (with the twin's initialisation seed), if it is one."""

    name: str
    family: str
    objective: str
    blocks: int
    tables: dict = field(default_factory=dict)
    twin_of: str | None = None
    init_seed: int | None = None


def read_runs(folders) -> list[Run]:
    """Every results folder (in name order), with the tables of the measurements its run.json records
    (a CSV it does not record is not read)."""
    return [Run(r.model.display, r.model.family, r.model.objective, r.model.blocks,
                {name: table for m in r.measurements if r.outputs(m) for name, table in r.tables(m).items()},
                r.model.twin_of, r.model.init_seed)
            for r in Results(sorted(Path(f) for f in folders))]


def _at(x: np.ndarray, y: np.ndarray, where: float) -> float:
    return float(np.interp(where, x, y))


def _at_rows(x: np.ndarray, values: np.ndarray, where: float) -> np.ndarray:
    """`values` (rows x len(x)) linearly interpolated at `where`, row by row."""
    return np.array([np.interp(where, x, row) for row in values])


def late_early(values: np.ndarray) -> np.ndarray:
    """Mean over the later half of the last axis / mean over the earlier half (middle one left out)."""
    values = np.asarray(values, float)
    half = values.shape[-1] // 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return values[..., -half:].mean(-1) / values[..., :half].mean(-1)


def output_profile(run: Run) -> pd.Series | None:
    """M3's `prob_l2_mean` per skipped block, without the blocks whose effect is zero by construction."""
    table = run.tables.get("skip_output")
    if table is None or table.empty:
        return None
    return table[~zero_by_construction(table)].set_index("skipped")["prob_l2_mean"]


def _missing(run: Run, table: str) -> bool:
    return run.tables.get(table) is None or run.tables[table].empty


def resampled_skip_profile(run: Run, params: ClaimParameters) -> Resampled | None:
    """e(s) per skipped block (columns, in block order) for the point estimate and every resample."""
    if _missing(run, "skip_effect_per_sequence"):
        return None
    pairs = resampled_means(run.tables["skip_effect_per_sequence"], ["skipped", "affected"], "effect_sum",
                            "n_units", params.n_resamples, params.seed)
    skipped = pairs.keys.get_level_values("skipped")
    blocks = sorted(set(skipped))
    return Resampled(pd.Index(blocks, name="skipped"),
                     np.stack([pairs.values[:, skipped == s].mean(1) for s in blocks], axis=1))


def resampled_output_profile(run: Run, params: ClaimParameters) -> Resampled | None:
    """M3's mean output change per skipped block (zero-by-construction blocks left out), resampled."""
    if _missing(run, "skip_output_per_sequence") or _missing(run, "skip_output"):
        return None
    table = run.tables["skip_output"]
    kept = set(table.loc[~zero_by_construction(table), "skipped"])
    per_sequence = run.tables["skip_output_per_sequence"]
    per_sequence = per_sequence[per_sequence["skipped"].isin(kept)]
    return resampled_means(per_sequence, "skipped", "prob_l2_sum", "n_units", params.n_resamples, params.seed)


def resampled_lens(run: Run, params: ClaimParameters, column: str | None = None) -> tuple[np.ndarray, Resampled] | None:
    """The logit lens's KL (`params.kl`'s direction, or `column`) per readable layer, resampled, and the
    layers' relative depths."""
    if _missing(run, "logit_lens_per_sequence") or _missing(run, "logit_lens"):
        return None
    column = column or params.kl
    lens = resampled_means(run.tables["logit_lens_per_sequence"], "layer", f"{column}_sum", "n_positions",
                           params.n_resamples, params.seed)
    depth = run.tables["logit_lens"].set_index("layer")["relative_depth"]
    return depth.loc[lens.keys].to_numpy(float), lens


def _row(claim: str, run: Run | str, number: str, estimate_: tuple, direction: str, verdict: str, why: str = "",
         second: tuple = (np.nan, np.nan, np.nan), twin: Run | None = None) -> dict:
    text, figure = CLAIMS[claim]
    name = run.name if isinstance(run, Run) else run
    twin = twin if twin is not None else run if isinstance(run, Run) else None
    value, low, high = estimate_
    return {"claim": claim, "statement": text, "paper": figure, "model": name, "number": number, "value": value,
            "low": low, "high": high, "second": second[0], "second_low": second[1], "second_high": second[2],
            "paper direction": direction, "verdict": verdict, "why": why,
            "twin_of": twin.twin_of if twin is not None else None,
            "init_seed": twin.init_seed if twin is not None else None}


NAN3 = (np.nan, np.nan, np.nan)


def _claim_a(run: Run, params: ClaimParameters) -> dict | None:
    profile = resampled_skip_profile(run, params)
    if profile is None:
        return None
    if len(profile.keys) < 2:
        return _row("a", run, "late/early skip effect", NAN3, "< 1", NOT_TESTABLE,
                    f"{run.blocks} blocks: fewer than two blocks have a later block")
    ratio = estimate(late_early(profile.values))
    return _row("a", run, "late/early skip effect", ratio, "< 1", side(ratio[1], ratio[2], 1.0, below=True))


def _claim_b(run: Run, params: ClaimParameters) -> dict | None:
    lens, output = resampled_lens(run, params), resampled_output_profile(run, params)
    if lens is None or output is None:
        return None
    number = "KL share at 3/4 depth; late/early output change"
    direction = f"share <= {params.kl_share:g}; ratio < 1"
    if len(output.keys) < 2:
        return _row("b", run, number, NAN3, direction, NOT_TESTABLE,
                    f"{run.blocks} blocks: fewer than two blocks whose skipping can change the output")
    depth, kl = lens
    with np.errstate(invalid="ignore", divide="ignore"):
        share = estimate(_at_rows(depth, kl.values, 0.75) / kl.values[:, 0])
    ratio = estimate(late_early(output.values))
    sides = (side(share[1], share[2], params.kl_share, below=True, inclusive=True),
             side(ratio[1], ratio[2], 1.0, below=True))
    verdict = ("agrees" if sides == ("agrees", "agrees") else "disagrees" if "disagrees" in sides
               else "inconclusive")
    return _row("b", run, number, share, direction, verdict,
                f"KL share {_interval_text(share)}, output-change ratio {_interval_text(ratio)}", second=ratio)


def _interval_text(est: tuple) -> str:
    value, low, high = est
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def _pairs(runs: list[Run], params: ClaimParameters) -> list[tuple[Run, Run]]:
    """(deeper, shallower) pairs with layer-skipping results: same family and objective, or named in
    `depth_pairs`. Twins pair with the twins of the same seed (their trained models' pair)."""
    runs = [r for r in runs if not _missing(r, "skip_effect_per_sequence")]
    by_name = {r.name: r for r in runs}
    pairs = {}
    for a in runs:
        for b in runs:
            if (a.blocks > b.blocks and a.family == b.family and a.objective == b.objective
                    and (a.twin_of is None) == (b.twin_of is None) and a.init_seed == b.init_seed):
                pairs[(a.name, b.name)] = (a, b)
    trained = {r.name for r in runs if r.twin_of is None}
    for x, y in params.depth_pairs:
        if x in trained and y in trained and by_name[x].blocks != by_name[y].blocks:
            deep, shallow = sorted((by_name[x], by_name[y]), key=lambda r: -r.blocks)
            pairs[(deep.name, shallow.name)] = (deep, shallow)
            for t in runs:  # the same pair among the twins, seed by seed
                partner = next((u for u in runs if u.twin_of == shallow.name and u.init_seed == t.init_seed), None)
                if t.twin_of == deep.name and partner is not None:
                    pairs[(t.name, partner.name)] = (t, partner)
    return list(pairs.values())


def pair_name(deep: Run, shallow: Run) -> str:
    return f"{deep.name} ({deep.blocks}) vs {shallow.name} ({shallow.blocks})"


def _claim_c(runs: list[Run], params: ClaimParameters) -> list[dict]:
    rows = []
    for deep, shallow in _pairs(runs, params):
        a, b = resampled_skip_profile(deep, params), resampled_skip_profile(shallow, params)
        name = pair_name(deep, shallow)
        twin = Run(name, "", "", 0, twin_of=pair_name(*[_trained(r, runs) for r in (deep, shallow)])
                   if deep.twin_of else None, init_seed=deep.init_seed)
        if len(a.keys) < 2 or len(b.keys) < 2:
            rows.append(_row("c", name, "difference of late/early skip effect", NAN3, "< 0", NOT_TESTABLE,
                             "fewer than two blocks have a later block", twin=twin))
            continue
        deep_ratio, shallow_ratio = late_early(a.values), late_early(b.values)
        diff = estimate(deep_ratio - shallow_ratio)  # paired when both ran on the same sequences
        rows.append(_row("c", name, "difference of late/early skip effect", diff, "< 0",
                         side(diff[1], diff[2], 0.0, below=True),
                         f"{deep_ratio[0]:.3f} vs {shallow_ratio[0]:.3f}", twin=twin))
    return rows


def _trained(run: Run, runs: list[Run]) -> Run:
    """The trained model a twin belongs to (a trained run itself)."""
    return next((r for r in runs if r.name == run.twin_of), run) if run.twin_of else run


def dips(values: np.ndarray, dip: float) -> np.ndarray:
    """Per row of `values` (rows x blocks), whether each early block (1 .. n//2) is a dip: below `dip`
    times both neighbours' effects."""
    candidates = np.arange(1, values.shape[-1] // 2 + 1)
    return values[:, candidates] < dip * np.minimum(values[:, candidates - 1], values[:, candidates + 1])


def _claim_d(run: Run, params: ClaimParameters) -> dict | None:
    profile = resampled_skip_profile(run, params)
    if profile is None:
        return None
    n_candidates = len(profile.keys) // 2
    if n_candidates < params.min_early:
        return _row("d", run, "early dips", NAN3, ">= 1", NOT_TESTABLE,
                    f"{run.blocks} blocks: fewer than {params.min_early} early blocks to look for a dip")
    is_dip = dips(profile.values, params.dip)
    count = estimate(is_dip.sum(1).astype(float))
    found = [str(profile.keys[i + 1]) for i in np.flatnonzero(is_dip[0])]
    where = f" (block {', '.join(found)})" if found else ""
    return _row("d", run, "early dips", count, ">= 1", side(count[1], count[2], 1.0, below=False, inclusive=True),
                f"{int(count[0])} of {n_candidates} early blocks below {params.dip:g} x both neighbours{where}")


def _claim_e(run: Run, params: ClaimParameters) -> dict | None:
    table = run.tables.get("variant_effects")
    if table is None:
        return None
    direction = f"<= {params.last_quarter_share:g}"
    mean = table[table["assay"] == "mean"].sort_values("relative_depth")
    if len(mean) < 3:
        return _row("e", run, "last-quarter share of the gain", NAN3, direction, NOT_TESTABLE,
                    f"{len(mean)} readable layer(s): too few for a depth profile")
    x, y = mean["relative_depth"].to_numpy(), mean["spearman"].to_numpy()
    values = np.vstack([y[None], _variant_replicates(run, mean["layer"].to_numpy())])
    gain, last = values[:, -1] - values[:, 0], values[:, -1] - _at_rows(x, values, 0.75)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(gain > 0, last / gain, np.inf)  # rho not improving fails the test
    share = estimate(share) if len(values) > 1 else (share[0], np.nan, np.nan)
    text = f"rho {y[0]:.3f} first, {_at(x, y, 0.75):.3f} at 3/4, {y[-1]:.3f} last"
    if gain[0] <= 0:
        return _row("e", run, "last-quarter share of the gain", (np.nan, share[1], share[2]), direction,
                    "disagrees" if share[1] == np.inf else "inconclusive",
                    f"rho does not improve with depth ({y[0]:.3f} first, {y[-1]:.3f} last)")
    return _row("e", run, "last-quarter share of the gain", share, direction,
                side(share[1], share[2], params.last_quarter_share, below=True, inclusive=True), text)


def _variant_replicates(run: Run, layers: np.ndarray) -> np.ndarray:
    """The bootstrap replicates of the mean Spearman rho (replicates x layers), none when not written."""
    table = run.tables.get("variant_effects_replicates")
    if table is None or table.empty:
        return np.zeros((0, len(layers)))
    boot = table[(table["assay"] == "mean") & (table["kind"] == "bootstrap")]
    return boot.pivot(index="replicate", columns="layer", values="spearman")[list(layers)].to_numpy(float)


def claims(folders, params: ClaimParameters | None = None, runs: list[Run] | None = None) -> pd.DataFrame:
    """One row per (claim, model): the test number, its 95% interval, the paper's direction and the
    verdict. Untrained twins get rows of their own (`twin_of` names their trained model). `runs`, the
    folders already read (`read_runs`), spares reading them again."""
    params = params or ClaimParameters()
    runs = read_runs(folders) if runs is None else runs
    rows = []
    for run in runs:
        rows += [r for r in (_claim_a(run, params), _claim_b(run, params), _claim_d(run, params),
                             _claim_e(run, params)) if r]
    rows += _claim_c(runs, params)
    return pd.DataFrame(rows, columns=COLUMNS).sort_values(["claim", "model"], kind="stable").reset_index(drop=True)


BEYOND, NOT_BEYOND, NO_TWINS = "beyond architecture", "not beyond architecture", "no twins"
BELOW = {"a": True, "b": True, "c": True, "d": False, "e": True,  # the paper's side of each claim's threshold
         "updates": True}


def update_ratios(folders, params: ClaimParameters | None = None) -> pd.DataFrame:
    """The contributions chapter's test, in the claims table's columns (claim "updates"): per model,
    the late / early ratio of the mean relative block update ‖Δ_l‖ / ‖h_l‖ over residue tokens, with
    its 95% interval over sequences; below 1, later blocks change the stream less than earlier ones."""
    params = params or ClaimParameters()
    rows = []
    for run in read_runs(folders):
        if _missing(run, "contributions_per_sequence"):
            continue
        table = run.tables["contributions_per_sequence"]
        means = resampled_means(table[table["part"] == "block"], "layer", "ratio_sum", "n_tokens",
                                params.n_resamples, params.seed)
        ratio = estimate(late_early(means.values)) if len(means.keys) >= 2 else NAN3
        verdict = side(ratio[1], ratio[2], 1.0, below=True) if len(means.keys) >= 2 else NOT_TESTABLE
        rows.append({"claim": "updates", "statement": "Later blocks change the stream less", "paper": "Fig. 1",
                     "model": run.name, "number": "late/early relative update", "value": ratio[0], "low": ratio[1],
                     "high": ratio[2], "second": np.nan, "second_low": np.nan, "second_high": np.nan,
                     "paper direction": "< 1", "verdict": verdict, "why": "", "twin_of": run.twin_of,
                     "init_seed": run.init_seed})
    return pd.DataFrame(rows, columns=COLUMNS)


def with_twins(table: pd.DataFrame) -> pd.DataFrame:
    """The trained models' rows of a claims table, each with its untrained twins' numbers (mean and
    range over seeds, `twins_*`, also for the second number) and the second verdict, `architecture`:
    "beyond architecture" when the trained model's interval lies beyond the twins' whole range on
    the paper's side (for every number its verdict uses), "not beyond architecture" otherwise, "no
    twins" when none ran (or the claim is not testable)."""
    trained = table[table["twin_of"].isna()].copy()
    twins = table[table["twin_of"].notna()]
    for prefix in ("twins", "twins_second"):
        for stat in ("mean", "low", "high"):
            trained[f"{prefix}_{stat}"] = np.nan
    trained["twins_n"], trained["architecture"] = 0, NO_TWINS
    for index, row in trained.iterrows():
        mine = twins[(twins["claim"] == row["claim"]) & (twins["twin_of"] == row["model"])]
        mine = mine[mine["verdict"] != NOT_TESTABLE]
        if mine.empty or row["verdict"] == NOT_TESTABLE:
            continue
        trained.loc[index, "twins_n"] = len(mine)
        beyond = []
        for prefix, column in (("twins", "value"), ("twins_second", "second")):
            values = mine[column].dropna()
            if values.empty:
                continue
            trained.loc[index, [f"{prefix}_mean", f"{prefix}_low", f"{prefix}_high"]] = \
                [values.mean(), values.min(), values.max()]
            low, high = row["low" if column == "value" else "second_low"], row["high" if column == "value" else
                                                                              "second_high"]
            beyond.append(high < values.min() if BELOW[row["claim"]] else low > values.max())
        trained.loc[index, "architecture"] = BEYOND if beyond and all(beyond) else NOT_BEYOND
    return trained.reset_index(drop=True)
