"""Does this build agree with the paper? Each claim tested by a number computed from the results.

`claims(folders)` reads the results folders of a build and returns one row per (claim, model):
the number that tests the claim, the direction the paper reports, and a verdict ("agrees",
"disagrees", or "not testable here" with the reason). `summary(table)` condenses it to one
row per claim. The definitions (Methods, "Testing the paper's claims"):

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

Beyond the paper, `lens_or_layers(folders)` answers {ref}`chapter-lens-or-layers` (Methods M7): does
"late layers mainly refine" survive a learned readout, i.e. does the model cut after round(3L/4) of
its blocks keep at least `kept_threshold` of its top-1 accuracy through the tuned lens; and does the
variant-effect model cut there keep that share of its Spearman rho. `lens_or_layers_markdown` is the
chapter's verdict, `lens_or_layers_key_line` the front page's line, from the same numbers.

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
from plmdepth.results import read_run

CLAIMS = {
    "a": ("Later blocks depend less on earlier computations", "Fig. 1"),
    "b": ("Later blocks mainly refine the output distribution", "Figs. 2-4"),
    "c": ("These effects are more pronounced in deeper models", "Figs. 1-4"),
    "d": ("Localized low-effect regions among early blocks", "Figs. 1-2"),
    "e": ("Diminishing returns of the final layers for variant effects", "Fig. 5"),
}
NOT_TESTABLE = "not testable here"


@dataclass(frozen=True)
class VerdictParameters:
    kl_share: float = 0.25  # (b): at most this share of the first layer's lens KL left at 3/4 depth
    dip: float = 0.5  # (d): an early block is a dip when its effect is below dip x both neighbours'
    min_early: int = 2  # (d): early blocks (after the first) needed to look for a dip
    last_quarter_share: float = 0.25  # (e): the last quarter of depth brings at most this share of the gain
    depth_pairs: tuple = (("antiberty", "sapiens-vh"),)  # (c): comparable models of different families
    tau: float = 0.1  # depth efficiency: output change (mean L2) below which a block counts as refining
    kappa: float = 0.5  # depth efficiency: lens KL [nats] below which a layer counts as refining
    kept_threshold: float = 0.9  # lens or layers: a model cut at 3/4 of its blocks keeps at least this share
    #                              of the full model's top-1 accuracy (tuned lens) and of its Spearman rho
    basis_share: float = 0.5  # lens or layers: the tuned lens removing at least this share of the logit
    #                           lens's KL at 3/4 depth reads as "mostly a change of basis"


@dataclass
class Run:
    """One results folder: the model's name, depth and family, and its tables."""

    name: str
    family: str
    objective: str
    blocks: int
    tables: dict = field(default_factory=dict)


def read_runs(folders) -> list[Run]:
    """Every results folder with a run.json, with the CSVs it holds."""
    runs = []
    for folder in sorted(Path(f) for f in folders):
        run = read_run(folder)
        if run is None:
            continue
        tables = {p.stem: pd.read_csv(p) for p in sorted(folder.glob("*.csv"))}
        model = next(iter(tables.values()))["model"].iloc[0] if tables else run["model"]["name"]
        runs.append(Run(str(model), run["model"]["family"], run["model"]["objective"], run["model"]["n_layers"], tables))
    return runs


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


def _claim_b(run: Run, params: VerdictParameters) -> dict | None:
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


def _pairs(runs: list[Run], params: VerdictParameters) -> list[tuple[Run, Run]]:
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


def _claim_c(runs: list[Run], params: VerdictParameters) -> list[dict]:
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


def _claim_d(run: Run, params: VerdictParameters) -> dict | None:
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


def _claim_e(run: Run, params: VerdictParameters) -> dict | None:
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


def claims(folders, params: VerdictParameters | None = None) -> pd.DataFrame:
    """One row per (claim, model): the test number, the paper's direction and the verdict."""
    params = params or VerdictParameters()
    runs = read_runs(folders)
    rows = []
    for run in runs:
        rows += [r for r in (_claim_a(run), _claim_b(run, params), _claim_d(run, params), _claim_e(run, params)) if r]
    rows += _claim_c(runs, params)
    columns = ["claim", "statement", "paper", "model", "number", "value", "paper direction", "verdict", "why"]
    return pd.DataFrame(rows, columns=columns).sort_values(["claim", "model"], kind="stable").reset_index(drop=True)


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per claim: how many testable models agree, and a one-sentence verdict."""
    rows = []
    for claim, (statement, figure) in CLAIMS.items():
        part = table[table["claim"] == claim]
        testable = part[part["verdict"] != NOT_TESTABLE]
        agree = testable[testable["verdict"] == "agrees"]
        if testable.empty:
            verdict = NOT_TESTABLE
            sentence = "No model of this build can test it" + (
                f" ({part['why'].iloc[0]})." if len(part) else " (no results for it).")
        else:
            verdict = ("agrees" if len(agree) == len(testable) else "disagrees" if agree.empty else "mixed")
            names = lambda frame: ", ".join(f"{m} ({v:.2f})" for m, v in zip(frame["model"], frame["value"]))  # noqa: E731
            sentence = f"{len(agree)} of {len(testable)} testable agree"
            sentence += f": {names(agree)}" if len(agree) else ""
            if len(agree) < len(testable):
                sentence += f"; against: {names(testable[testable['verdict'] != 'agrees'])}"
            sentence += "."
        rows.append({"claim": f"({claim}) {statement}", "paper": figure, "test number": part["number"].iloc[0]
                     if len(part) else "", "verdict": verdict, "evidence": sentence})
    return pd.DataFrame(rows)


def depth_efficiency(folders, params: VerdictParameters | None = None) -> pd.DataFrame:
    """Per model, the relative depth d* from which every layer is refinement: the smallest l / L
    with lens KL(l) < kappa and output change (M3 prob_l2_mean) < tau for every skipped block s >= l
    (blocks whose effect is zero by construction excluded). 1 - d* is the share of depth spent refining."""
    params = params or VerdictParameters()
    rows = []
    for run in read_runs(folders):
        lens, output = run.tables.get("logit_lens"), output_profile(run)
        if lens is None or output is None:
            continue
        kl = lens.set_index("layer")["kl"]
        start = next(layer for layer in sorted(kl.index)
                     if kl[layer] < params.kappa and (output[output.index >= layer] < params.tau).all())
        rows.append({"model": run.name, "family": run.family, "blocks": run.blocks,
                     "refining from l / L": start / run.blocks, "refining share of depth": 1 - start / run.blocks,
                     "tau": params.tau, "kappa": params.kappa})
    return pd.DataFrame(rows)


def key_results_markdown(table: pd.DataFrame) -> str:
    """The front page's key-results table: one row per claim, verdict and count, from `claims`."""
    verdicts = dict(zip(CLAIMS, summary(table)["verdict"]))
    lines = ["| claim of the paper | paper | verdict | agree |", "|---|---|---|---|"]
    for claim, (statement, figure) in CLAIMS.items():
        testable = table[(table["claim"] == claim) & (table["verdict"] != NOT_TESTABLE)]
        agree = int((testable["verdict"] == "agrees").sum())
        count = f"{agree} of {len(testable)}" if len(testable) else "none testable"
        lines.append(f"| ({claim}) {statement} | {figure} | **{verdicts[claim]}** | {count} |")
    return "\n".join(lines) + "\n"


def verdict_markdown(table: pd.DataFrame, claim_ids: str) -> str:
    """For a chapter's "Does this build agree?": per claim, the verdict and every model's number."""
    rows = dict(zip(CLAIMS, summary(table).to_dict("records")))
    out = []
    for claim in claim_ids:
        statement, figure = CLAIMS[claim]
        part, row = table[table["claim"] == claim], rows[claim]
        out.append(f"- **({claim}) {statement}** (cf. paper {figure}): **{row['verdict']}**. {row['evidence']}")
        if len(part):
            out.append(f"  Test number: {part['number'].iloc[0]} (paper: {part['paper direction'].iloc[0]}).")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------- is it the lens or the layers?

def cut_layer(blocks: int, depth: float) -> int:
    """The blocks a model of `blocks` blocks keeps when cut at relative depth `depth`: round(depth * L),
    halves rounded up (3 of 4, 6 of 8, 2 of 3; a model of 1 or 2 blocks keeps them all at 3/4)."""
    return int(np.floor(depth * blocks + 0.5))


def _measured(folders, measurement: str):
    """(run.json, table) of every results folder whose run.json records `measurement` and holds its CSV,
    in the order of `folders` (a chapter's model order)."""
    for folder in dict.fromkeys(Path(f) for f in folders):
        run, path = read_run(folder), Path(folder) / f"{measurement}.csv"
        if run is not None and measurement in run.get("measurements", {}) and path.is_file():
            yield run, pd.read_csv(path)


def _percent(value: float, digits: int = 0) -> str:
    return "—" if pd.isna(value) else f"{value:.{digits}%}"


def truncation_accuracy(folders, params: VerdictParameters | None = None) -> pd.DataFrame:
    """One row per model with a `tuned_lens` measurement: the layers at 1/2 and 3/4 of its L blocks,
    the KL to the output there through both lenses, the share of the logit lens's KL at 3/4 that the
    tuned lens removes, and the top-1 accuracy of the model cut there as a share of the full model's
    (through either lens). `verdict`: "keeps" when the cut at 3/4 keeps at least `kept_threshold` of
    the accuracy through the tuned lens, "loses" when not, NOT_TESTABLE when the cut keeps every block."""
    params = params or VerdictParameters()
    rows = []
    for run, frame in _measured(folders, "tuned_lens"):
        for model, part in frame.groupby("model", sort=False):
            blocks = int(part["layer"].max())
            half, three = cut_layer(blocks, 0.5), cut_layer(blocks, 0.75)
            at = part.set_index(["lens", "layer"])

            def value(lens, layer, column, at=at):
                return float(at.loc[(lens, layer), column]) if (lens, layer) in at.index else np.nan

            full = value("logit", blocks, "top1_accuracy")
            kept = lambda lens, layer: value(lens, layer, "top1_accuracy") / full if full > 0 else np.nan  # noqa: E731
            logit_kl, tuned_kl = value("logit", three, "kl"), value("tuned", three, "kl")
            kept_tuned = kept("tuned", three)
            if three >= blocks:
                verdict, why = NOT_TESTABLE, f"{blocks} block{'s' * (blocks != 1)}: the cut at 3/4 keeps every block"
            elif pd.isna(kept_tuned):
                verdict, why = NOT_TESTABLE, f"layer {three} was not read through both lenses"
            else:
                verdict, why = ("keeps" if kept_tuned >= params.kept_threshold else "loses"), ""
            rows.append({"model": model, "blocks": blocks, "half": half, "three_quarters": three,
                         "kl_logit_half": value("logit", half, "kl"), "kl_tuned_half": value("tuned", half, "kl"),
                         "kl_logit_3q": logit_kl, "kl_tuned_3q": tuned_kl,
                         "kl_removed_3q": 1 - tuned_kl / logit_kl if logit_kl > 0 else np.nan,
                         "accuracy_full": full, "kept_logit_half": kept("logit", half),
                         "kept_tuned_half": kept("tuned", half), "kept_logit_3q": kept("logit", three),
                         "kept_tuned_3q": kept_tuned, "verdict": verdict, "why": why,
                         "seconds": run["measurements"]["tuned_lens"].get("wall_time_s", np.nan)})
    columns = ["model", "blocks", "half", "three_quarters", "kl_logit_half", "kl_tuned_half", "kl_logit_3q",
               "kl_tuned_3q", "kl_removed_3q", "accuracy_full", "kept_logit_half", "kept_tuned_half",
               "kept_logit_3q", "kept_tuned_3q", "verdict", "why", "seconds"]
    return pd.DataFrame(rows, columns=columns)


def truncation_spearman(folders, params: VerdictParameters | None = None) -> pd.DataFrame:
    """One row per (model, assay) with a `variant_effects` measurement ("mean" left out): Spearman rho of
    the full model (with its bootstrap interval) and of the model cut after round(L/2) and round(3L/4) of
    its L layers (NaN where that cut keeps every layer), and `kept_3q` = rho(3/4) / rho(full).

    The rule: a pair is tested when the cut at 3/4 drops at least one layer and the full model ranks
    the variants better than chance (the lower end of its bootstrap 95% interval above 0; rho > 0 when
    the table has no interval), since a share of a ranking that is not there means nothing. It
    "keeps" its rho when `kept_3q` >= `kept_threshold` (a cut whose rho is negative keeps a negative
    share), "loses" otherwise."""
    params = params or VerdictParameters()
    rows = []
    for _, frame in _measured(folders, "variant_effects"):
        for (model, assay), part in frame[frame["assay"] != "mean"].groupby(["model", "assay"], sort=False):
            blocks = int(part["layer"].max())
            by_layer = part.set_index("layer")
            def rho(k, by_layer=by_layer, blocks=blocks) -> float:
                """rho of the model cut after k layers; NaN where the cut keeps every layer or was not read."""
                return float(by_layer.loc[k, "spearman"]) if k < blocks and k in by_layer.index else np.nan
            last = by_layer.loc[blocks]
            full = float(last["spearman"])
            low = float(last["spearman_low"]) if "spearman_low" in last else full
            high = float(last["spearman_high"]) if "spearman_high" in last else full
            half, three = cut_layer(blocks, 0.5), cut_layer(blocks, 0.75)
            kept = rho(three) / full if full > 0 else np.nan
            if three >= blocks:
                verdict, why = NOT_TESTABLE, f"{blocks} layer{'s' * (blocks != 1)}: the cut at 3/4 keeps every layer"
            elif pd.isna(rho(three)):
                verdict, why = NOT_TESTABLE, f"layer {three} was not read"
            elif not low > 0:
                verdict, why = NOT_TESTABLE, (f"the full model's rho {full:.3f} (95% interval {low:.3f} to "
                                              f"{high:.3f}) is not above 0: no ranking to keep")
            else:
                verdict, why = ("keeps" if kept >= params.kept_threshold else "loses"), ""
            rows.append({"model": model, "assay": assay, "blocks": blocks, "half": half, "three_quarters": three,
                         "rho_full": full, "rho_full_low": low, "rho_full_high": high, "rho_half": rho(half),
                         "rho_3q": rho(three), "kept_3q": kept, "verdict": verdict, "why": why})
    columns = ["model", "assay", "blocks", "half", "three_quarters", "rho_full", "rho_full_low", "rho_full_high",
               "rho_half", "rho_3q", "kept_3q", "verdict", "why"]
    return pd.DataFrame(rows, columns=columns)


def _outcome(table: pd.DataFrame, all_text: str, none_text: str, some_text: str) -> str:
    """all_text when every testable row keeps, none_text when none does, some_text otherwise;
    NOT_TESTABLE when no row is testable, "not run" when there is no row."""
    if table.empty:
        return "not run"
    testable = table[table["verdict"] != NOT_TESTABLE]
    if testable.empty:
        return NOT_TESTABLE
    keeps = int((testable["verdict"] == "keeps").sum())
    return all_text if keeps == len(testable) else none_text if keeps == 0 else some_text


@dataclass
class LensOrLayers:
    """The computed answer of {ref}`chapter-lens-or-layers`: `accuracy` (one row per model with a tuned
    lens, `truncation_accuracy`), `spearman` (one row per variant-effect model and assay,
    `truncation_spearman`) and the parameters they were judged with."""

    accuracy: pd.DataFrame
    spearman: pd.DataFrame
    params: VerdictParameters

    @property
    def verdict(self) -> str:
        """Does "late layers mainly refine" survive a learned readout: "survives", "does not survive",
        "survives for some models", NOT_TESTABLE or "not run"."""
        return _outcome(self.accuracy, "survives", "does not survive", "survives for some models")

    @property
    def spearman_verdict(self) -> str:
        """Does the variant-effect model cut at 3/4 keep its rho: "keeps", "does not keep",
        "keeps for some", NOT_TESTABLE or "not run"."""
        return _outcome(self.spearman, "keeps", "does not keep", "keeps for some")


def lens_or_layers(folders, params: VerdictParameters | None = None) -> LensOrLayers:
    """The lens-or-layers verdict of the results folders `folders` (those without a `tuned_lens` or
    `variant_effects` measurement are ignored)."""
    params = params or VerdictParameters()
    return LensOrLayers(truncation_accuracy(folders, params), truncation_spearman(folders, params), params)


def _listing(frame: pd.DataFrame, column: str, digits: int = 1) -> str:
    """"a (95.1%), b (88.0%)": shares kept carry a decimal, so that none rounds onto the threshold."""
    return ", ".join(f"{m} ({_percent(v, digits)})" for m, v in zip(frame["model"], frame[column]))


def _span(values: pd.Series) -> str:
    low, high = _percent(values.min()), _percent(values.max())
    return low if low == high else f"{low}–{high}"


def _accuracy_paragraph(result: LensOrLayers) -> str:
    table, p = result.accuracy, result.params
    if table.empty:
        return ("**Not run.** No results folder of this build holds a `tuned_lens` measurement, so whether "
                "\"late layers mainly refine\" survives a learned readout is not tested.")
    testable = table[table["verdict"] != NOT_TESTABLE]
    keep, lose = testable[testable["verdict"] == "keeps"], testable[testable["verdict"] != "keeps"]
    threshold = _percent(p.kept_threshold)
    out = [f"**The reading {result.verdict}.**" if result.verdict != NOT_TESTABLE else
           "**The reading cannot be tested in this build.**"]
    if len(keep):
        out.append(f"With a learned readout (the tuned lens), the model cut after three quarters of its blocks keeps "
                   f"at least {threshold} of the full model's top-1 accuracy for {_listing(keep, 'kept_tuned_3q')}"
                   + (f", and less for {_listing(lose, 'kept_tuned_3q')}." if len(lose) else "."))
    elif len(lose):
        out.append(f"With a learned readout (the tuned lens), the model cut after three quarters of its blocks keeps "
                   f"less than {threshold} of the full model's top-1 accuracy for every model: "
                   f"{_listing(lose, 'kept_tuned_3q')}.")
    if len(testable):
        logit_ok = testable["kept_logit_3q"] >= p.kept_threshold
        tuned_ok = testable["verdict"] == "keeps"
        sentence = ("Through the final head alone (the logit lens) the same cut keeps "
                    + _listing(testable, "kept_logit_3q"))
        lifted, already = testable[~logit_ok & tuned_ok], testable[logit_ok]
        if len(lifted):
            sentence += f"; the learned readout is what lifts {', '.join(lifted['model'])} to the threshold"
        if len(already):
            sentence += (f"; {', '.join(already['model'])} already keep{'s' * (len(already) == 1)} {threshold} through "
                         f"the final head, so there the reading never depended on the lens")
        out.append(sentence + ".")
        gaps = testable.dropna(subset=["kl_removed_3q"])
        big, small = gaps[gaps["kl_removed_3q"] >= p.basis_share], gaps[gaps["kl_removed_3q"] < p.basis_share]
        basis = _percent(p.basis_share)
        if len(gaps) and small.empty:
            out.append(f"The tuned lens removes {_span(gaps['kl_removed_3q'])} of the logit lens's KL to the output at "
                       f"three quarters of depth (at least {basis} for every model): most of what the logit lens "
                       f"shows as unfinished there is a change of basis, not missing information.")
        elif len(gaps) and big.empty:
            out.append(f"The tuned lens removes only {_span(gaps['kl_removed_3q'])} of the logit lens's KL to the "
                       f"output at three quarters of depth (less than {basis} for every model): most of the distance "
                       f"to the output there is not a change of basis that one affine translator per layer undoes.")
        elif len(gaps):
            out.append(f"The tuned lens removes at least {basis} of the logit lens's KL to the output at three "
                       f"quarters of depth for {_listing(big, 'kl_removed_3q', 0)} (there most of what the logit lens "
                       f"shows as unfinished is a change of basis), and less for "
                       f"{_listing(small, 'kl_removed_3q', 0)}.")
        if len(keep) and lose.empty:
            out.append("For every model, the last quarter of the blocks refines a prediction the first three "
                       "quarters have already made, as far as the top-1 residue shows.")
        elif len(lose) and keep.empty:
            out.append(f"For every model, the last quarter of the blocks still brings more than "
                       f"{_percent(1 - p.kept_threshold)} of the full model's top-1 accuracy: it does more than "
                       f"refine.")
        else:
            out.append(f"The last quarter of the blocks refines a prediction already made for "
                       f"{', '.join(keep['model'])}, and still brings more than {_percent(1 - p.kept_threshold)} of "
                       f"the top-1 accuracy for {', '.join(lose['model'])}.")
    untested = table[table["verdict"] == NOT_TESTABLE]
    if len(untested):
        out.append("Not testable: " + "; ".join(f"{m} ({w})" for m, w in zip(untested["model"], untested["why"])) + ".")
    out.append(f"The rule: the reading survives for a model when, cut after round(3L/4) of its L blocks and read "
               f"through the tuned lens, it keeps at least `kept_threshold` = {p.kept_threshold:g} of the full "
               f"model's top-1 accuracy on the held-out sequences; the KL removed reads as mostly a change of basis "
               f"from `basis_share` = {p.basis_share:g} (both fields of `VerdictParameters`).")
    return " ".join(out)


def _pair(row) -> str:
    return f"{row.model} on `{row.assay}`"


def _spearman_paragraph(result: LensOrLayers) -> str:
    table, p = result.spearman, result.params
    if table.empty:
        return ("**Variant effects: not run.** No results folder of this build holds a `variant_effects` "
                "measurement, so the truncation frontier of fitness prediction is not tested.")
    testable = table[table["verdict"] != NOT_TESTABLE]
    keep = testable[testable["verdict"] == "keeps"]
    threshold = _percent(p.kept_threshold)
    head = {"keeps": "the cut keeps its Spearman ρ", "does not keep": "the cut does not keep its Spearman ρ",
            "keeps for some": "the cut keeps its Spearman ρ for some models and assays",
            NOT_TESTABLE: "not testable in this build"}[result.spearman_verdict]
    out = [f"**Variant effects: {head}.**"]
    if len(testable):
        pairs = "; ".join(f"{_pair(r)}: ρ {r.rho_full:.3f} full, {r.rho_3q:.3f} at ¾ ({_percent(r.kept_3q, 1)})"
                          for r in testable.itertuples(index=False))
        out.append(f"Read through the final head (no translator is trained for these models), the model cut after "
                   f"three quarters of its layers keeps at least {threshold} of the full model's ρ for {len(keep)} "
                   f"of {len(testable)} testable (model, assay) pairs — {pairs}.")
        if result.spearman_verdict == "keeps":
            out.append("Read through their final head, these models rank the variants as well with the first three "
                       "quarters of their layers as with all of them.")
        elif result.spearman_verdict == "does not keep":
            out.append("Read through their final head, these models need the last quarter of their layers to rank "
                       "the variants; whether a learned readout would spare it is not tested here.")
        else:
            out.append("Whether the last quarter of the layers is needed for the ranking of variants depends on the "
                       "model and the assay.")
    untested = table[table["verdict"] == NOT_TESTABLE]
    if len(untested):
        out.append("Not testable: " + "; ".join(f"{_pair(r)} ({r.why})" for r in untested.itertuples(index=False))
                   + ".")
    out.append(f"The rule: a (model, assay) pair is tested when the cut at round(3L/4) drops at least one layer and "
               f"the full model ranks the variants better than chance (its bootstrap 95% interval above 0: a share "
               f"of a ranking that is not there means nothing); the cut keeps ρ when ρ(cut) / ρ(full) is at least "
               f"`kept_threshold` = {p.kept_threshold:g} (a cut whose ρ is negative keeps a negative share).")
    return " ".join(out)


def lens_or_layers_markdown(result: LensOrLayers) -> str:
    """The chapter's verdict: does "late layers mainly refine" survive a learned readout (top-1
    accuracy of the cut model), and does the variant-effect model cut at 3/4 keep its rho."""
    return _accuracy_paragraph(result) + "\n\n" + _spearman_paragraph(result) + "\n"


def lens_or_layers_key_line(result: LensOrLayers) -> str:
    """The front page's line on {ref}`chapter-lens-or-layers`, from the same numbers as the chapter."""
    head = "**Beyond the paper** ({ref}`chapter-lens-or-layers`):"
    if result.accuracy.empty:
        return (f"{head} Not run in this build: no results folder holds a `tuned_lens` measurement.\n")
    threshold = _percent(result.params.kept_threshold)
    acc = result.accuracy[result.accuracy["verdict"] != NOT_TESTABLE]
    line = (f"{head} does \"late layers mainly refine\" survive a learned readout? For the top-1 residue, "
            f"**{result.verdict}**")
    if len(acc):
        line += (f": cut after three quarters of its blocks, the model keeps at least {threshold} of its top-1 "
                 f"accuracy through the tuned lens for {int((acc['verdict'] == 'keeps').sum())} of {len(acc)} models")
    sp = result.spearman[result.spearman["verdict"] != NOT_TESTABLE]
    if len(sp):
        said = {"keeps": "keeps its Spearman ρ", "does not keep": "does not keep its Spearman ρ",
                "keeps for some": "keeps its Spearman ρ for some"}[result.spearman_verdict]
        line += (f". For variant effects, the same cut **{said}**: at least {threshold} of it for "
                 f"{int((sp['verdict'] == 'keeps').sum())} of {len(sp)} testable (model, assay) pairs")
    elif not result.spearman.empty:
        line += ". For variant effects no (model, assay) pair is testable"
    return line + ".\n"


def write_pages(folders, book: Path, params: VerdictParameters | None = None) -> pd.DataFrame:
    """book/key_results.md (the front page's table) and book/claims.md (every model's numbers,
    for Discussion), from the results folders of this build; returns the claims table."""
    table = claims(folders, params)
    intro = ("Verdicts of this build, from its results folders (tests defined in {ref}`methods-claims`; "
             "every model's numbers in {ref}`discussion`):\n\n")
    key_line = lens_or_layers_key_line(lens_or_layers(folders, params))
    (book / "key_results.md").write_text(intro + key_results_markdown(table) + "\n" + key_line)
    lines = ["| claim | cf. paper | model | test number | value | verdict | detail |", "|---|---|---|---|---|---|---|"]
    for row in table.itertuples(index=False):
        value = "—" if pd.isna(row.value) else f"{row.value:.3f}"
        lines.append(f"| ({row.claim}) | {row.paper} | {row.model} | {row.number} | {value} | {row.verdict} | "
                     f"{row.why or '—'} |")
    (book / "claims.md").write_text("\n".join(lines) + "\n")
    return table
