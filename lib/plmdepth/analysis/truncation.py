"""Is it the lens or the layers? The truncation frontier as numbers (Methods M7).

`lens_or_layers(folders)` answers {ref}`chapter-lens-or-layers`: does "late layers mainly refine"
survive a learned readout, i.e. does the model cut after round(3L/4) of its blocks keep at least
`kept_threshold` of its top-1 accuracy through the tuned lens; and does the variant-effect model
cut there keep that share of its Spearman rho. `publish.verdicts` writes the sentences.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from plmdepth.analysis.bootstrap import N_RESAMPLES, interval, resampled_means, side
from plmdepth.analysis.claims import NOT_TESTABLE
from plmdepth.results import Results

KEEPS = {"agrees": "keeps", "disagrees": "loses", "inconclusive": "inconclusive"}


@dataclass(frozen=True)
class TruncationParameters:
    kept_threshold: float = 0.9  # a model cut at 3/4 of its blocks keeps at least this share of the full model's
    #                              top-1 accuracy (tuned lens) and of its Spearman rho
    basis_share: float = 0.5  # the tuned lens removing at least this share of the logit lens's KL at 3/4 depth
    #                           reads as "mostly a change of basis"
    n_resamples: int = N_RESAMPLES  # bootstrap resamples of the sequences for the intervals


def cut_layer(blocks: int, depth: float) -> int:
    """The blocks a model of `blocks` blocks keeps when cut at relative depth `depth`: round(depth * L),
    halves rounded up (3 of 4, 6 of 8, 2 of 3; a model of 1 or 2 blocks keeps them all at 3/4)."""
    return int(np.floor(depth * blocks + 0.5))


def _measured(folders, measurement: str):
    """(record, table) of every results folder of a trained model that holds `measurement`, in the order
    of `folders` (a chapter's model order); untrained twins are read by `_twin_kept`."""
    for record in Results(folders).of(measurement):
        if not record.model.twin_of:
            yield record, record.table(measurement)


def _kept_replicates(run, blocks: int, three: int, n_resamples: int) -> np.ndarray:
    """The share of top-1 accuracy the cut at `three` keeps through the tuned lens, for every resample of
    the held-out sequences (none for a run without per-sequence sums)."""
    if "tuned_lens_per_sequence" not in run.outputs("tuned_lens"):
        return np.array([])
    table = run.table("tuned_lens_per_sequence")
    means = resampled_means(table, ["lens", "layer"], "top1_accuracy_sum", "n_positions", n_resamples)
    if ("tuned", three) not in means.keys or ("logit", blocks) not in means.keys:
        return np.array([])
    with np.errstate(invalid="ignore", divide="ignore"):
        return (means.column(("tuned", three)) / means.column(("logit", blocks)))[1:]


def _twin_kept(folders) -> pd.DataFrame:
    """Per trained model (`twin_of`), its untrained twins' `kept_tuned_3q` (the share of top-1 accuracy the
    cut at 3/4 keeps through the tuned lens): mean and range over seeds."""
    twins = [r.folder for r in Results(folders).of("tuned_lens") if r.model.twin_of]
    if not twins:
        return pd.DataFrame(columns=["twin_of", "mean", "low", "high", "n"])
    rows = []
    for record in Results(twins):
        table = record.table("tuned_lens")
        blocks = int(table["layer"].max())
        at = table.set_index(["lens", "layer"])["top1_accuracy"]
        three = cut_layer(blocks, 0.75)
        if ("tuned", three) in at.index and at[("logit", blocks)] > 0:
            rows.append({"twin_of": record.model.twin_of, "value": at[("tuned", three)] / at[("logit", blocks)]})
    frame = pd.DataFrame(rows, columns=["twin_of", "value"])
    return frame.groupby("twin_of")["value"].agg(mean="mean", low="min", high="max", n="count").reset_index()


def truncation_accuracy(folders, params: TruncationParameters | None = None) -> pd.DataFrame:
    """One row per model with a `tuned_lens` measurement: the layers at 1/2 and 3/4 of its L blocks,
    the KL to the output there through both lenses, the share of the logit lens's KL at 3/4 that the
    tuned lens removes, and the top-1 accuracy of the model cut there as a share of the full model's
    (through either lens), with the 95% interval of the tuned lens's share (`kept_tuned_3q_low/high`, a
    bootstrap of the held-out sequences). `verdict`: "keeps" when the whole interval lies at or above
    `kept_threshold`, "loses" when it lies below, "inconclusive" when it spans it, NOT_TESTABLE when
    the cut keeps every block. The untrained twins' share (`twins_kept_*`: mean and range over seeds)
    is beside it.

    Against the better of the trivial baselines on the same positions (`baseline`, its accuracy
    `baseline_accuracy`: `tuned_lens_baselines.csv`, `probes/baselines.py`), `gap_kept_logit_3q` and
    `gap_kept_tuned_3q` = (accuracy of the cut at 3/4 - baseline) / (full accuracy - baseline): the share
    of what the full model adds over the baseline that the cut keeps. NaN without a baseline table (a run
    made before it was written, or a model no residue baseline applies to) and where the full model
    does not beat the baseline."""
    params = params or TruncationParameters()
    rows = []
    for run, frame in _measured(folders, "tuned_lens"):
        trivial = _baselines(run)
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
            baseline, base = _best_baseline(trivial, model)
            gain = full - base  # what the full model adds over the baseline (NaN without one)
            gap_logit, gap_tuned = ((value(lens, three, "top1_accuracy") - base) / gain if gain > 0 else np.nan
                                    for lens in ("logit", "tuned"))
            low, high = interval(_kept_replicates(run, blocks, three, params.n_resamples))
            if three >= blocks:
                verdict, why = NOT_TESTABLE, f"{blocks} block{'s' * (blocks != 1)}: the cut at 3/4 keeps every block"
            elif pd.isna(kept_tuned):
                verdict, why = NOT_TESTABLE, f"layer {three} was not read through both lenses"
            else:
                verdict = KEEPS[side(low, high, params.kept_threshold, below=False, inclusive=True)]
                why = "" if np.isfinite(low) else "no interval (a run without per-sequence sums)"
            rows.append({"model": model, "blocks": blocks, "half": half, "three_quarters": three,
                         "kl_logit_half": value("logit", half, "kl"), "kl_tuned_half": value("tuned", half, "kl"),
                         "kl_logit_3q": logit_kl, "kl_tuned_3q": tuned_kl,
                         "kl_removed_3q": 1 - tuned_kl / logit_kl if logit_kl > 0 else np.nan,
                         "accuracy_full": full, "kept_logit_half": kept("logit", half),
                         "kept_tuned_half": kept("tuned", half), "kept_logit_3q": kept("logit", three),
                         "kept_tuned_3q": kept_tuned, "kept_tuned_3q_low": low, "kept_tuned_3q_high": high,
                         "baseline": baseline, "baseline_accuracy": base,
                         "gap_kept_logit_3q": gap_logit, "gap_kept_tuned_3q": gap_tuned,
                         "verdict": verdict, "why": why,
                         "seconds": run.entry("tuned_lens").get("wall_time_s", np.nan)})
    columns = ["model", "blocks", "half", "three_quarters", "kl_logit_half", "kl_tuned_half", "kl_logit_3q",
               "kl_tuned_3q", "kl_removed_3q", "accuracy_full", "kept_logit_half", "kept_tuned_half",
               "kept_logit_3q", "kept_tuned_3q", "kept_tuned_3q_low", "kept_tuned_3q_high", "baseline",
               "baseline_accuracy", "gap_kept_logit_3q", "gap_kept_tuned_3q", "verdict", "why", "seconds"]
    table = pd.DataFrame(rows, columns=columns)
    twins = _twin_kept(folders).set_index("twin_of")
    for stat in ("mean", "low", "high", "n"):
        table[f"twins_kept_{stat}"] = table["model"].map(twins[stat]) if len(twins) else np.nan
    return table


def _baselines(run) -> pd.DataFrame | None:
    """The run's trivial baselines (`tuned_lens_baselines`), or None for a run made before they were written."""
    return run.table("tuned_lens_baselines") if "tuned_lens_baselines" in run.outputs("tuned_lens") else None


def _best_baseline(baselines: pd.DataFrame | None, model: str) -> tuple[str | None, float]:
    """The name and accuracy of `model`'s better trivial baseline (the first listed of equal ones);
    (None, NaN) without one."""
    rows = baselines[baselines["model"] == model] if baselines is not None else None
    if rows is None or rows.empty:
        return None, np.nan
    best = rows.loc[rows["top1_accuracy"].idxmax()]
    return str(best["predictor"]), float(best["top1_accuracy"])


def truncation_spearman(folders, params: TruncationParameters | None = None) -> pd.DataFrame:
    """One row per (model, assay) with a `variant_effects` measurement ("mean" left out): Spearman rho of
    the full model (with its bootstrap interval) and of the model cut after round(L/2) and round(3L/4) of
    its L layers (NaN where that cut keeps every layer), and `kept_3q` = rho(3/4) / rho(full).

    The rule: a pair is tested when the cut at 3/4 drops at least one layer and the full model ranks
    the variants better than chance (the lower end of its bootstrap 95% interval above 0; rho > 0 when
    the table has no interval), since a share of a ranking that is not there means nothing. It
    "keeps" its rho when the 95% interval of `kept_3q` (`kept_3q_low/high`, from the measurement's
    bootstrap of the variants, the same resample at every layer) lies at or above `kept_threshold`,
    "loses" when it lies below, "inconclusive" when it spans it (a cut whose rho is negative keeps a
    negative share; a resample whose full rho is not above 0 keeps nothing)."""
    params = params or TruncationParameters()
    rows = []
    for run, frame in _measured(folders, "variant_effects"):
        replicates = (run.table("variant_effects_replicates")
                      if "variant_effects_replicates" in run.outputs("variant_effects") else None)
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
            kept_low, kept_high = _kept_rho_interval(replicates, assay, three, blocks)
            if three >= blocks:
                verdict, why = NOT_TESTABLE, f"{blocks} layer{'s' * (blocks != 1)}: the cut at 3/4 keeps every layer"
            elif pd.isna(rho(three)):
                verdict, why = NOT_TESTABLE, f"layer {three} was not read"
            elif not low > 0:
                verdict, why = NOT_TESTABLE, (f"the full model's rho {full:.3f} (95% interval {low:.3f} to "
                                              f"{high:.3f}) is not above 0: no ranking to keep")
            else:
                verdict = KEEPS[side(kept_low, kept_high, params.kept_threshold, below=False, inclusive=True)]
                why = "" if np.isfinite(kept_low) else "no interval (a run without bootstrap replicates)"
            rows.append({"model": model, "assay": assay, "blocks": blocks, "half": half, "three_quarters": three,
                         "rho_full": full, "rho_full_low": low, "rho_full_high": high, "rho_half": rho(half),
                         "rho_3q": rho(three), "kept_3q": kept, "kept_3q_low": kept_low, "kept_3q_high": kept_high,
                         "verdict": verdict, "why": why})
    columns = ["model", "assay", "blocks", "half", "three_quarters", "rho_full", "rho_full_low", "rho_full_high",
               "rho_half", "rho_3q", "kept_3q", "kept_3q_low", "kept_3q_high", "verdict", "why"]
    return pd.DataFrame(rows, columns=columns)


def _kept_rho_interval(replicates: pd.DataFrame | None, assay: str, three: int, blocks: int) -> tuple[float, float]:
    """The 95% interval of rho(3/4) / rho(full) over the measurement's bootstrap of the variants (the
    same resample at every layer); NaN without replicates."""
    if replicates is None or three >= blocks:
        return np.nan, np.nan
    boot = replicates[(replicates["assay"] == assay) & (replicates["kind"] == "bootstrap")]
    wide = boot.pivot(index="replicate", columns="layer", values="spearman")
    if three not in wide or blocks not in wide:
        return np.nan, np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        return interval(np.where(wide[blocks] > 0, wide[three] / wide[blocks], -np.inf))


def _outcome(table: pd.DataFrame, all_text: str, none_text: str, some_text: str) -> str:
    """all_text when every testable row keeps, none_text when every one loses, "inconclusive" when every
    one is; some_text otherwise; NOT_TESTABLE when no row is testable, "not run" when there is no row."""
    if table.empty:
        return "not run"
    testable = table[table["verdict"] != NOT_TESTABLE]
    if testable.empty:
        return NOT_TESTABLE
    counts = testable["verdict"].value_counts()
    if counts.get("keeps", 0) == len(testable):
        return all_text
    if counts.get("loses", 0) == len(testable):
        return none_text
    return "inconclusive" if counts.get("inconclusive", 0) == len(testable) else some_text


@dataclass
class LensOrLayers:
    """The computed answer of {ref}`chapter-lens-or-layers`: `accuracy` (one row per model with a tuned
    lens, `truncation_accuracy`), `spearman` (one row per variant-effect model and assay,
    `truncation_spearman`) and the parameters they were judged with."""

    accuracy: pd.DataFrame
    spearman: pd.DataFrame
    params: TruncationParameters

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


def lens_or_layers(folders, params: TruncationParameters | None = None) -> LensOrLayers:
    """The lens-or-layers verdict of the results folders `folders` (those without a `tuned_lens` or
    `variant_effects` measurement are ignored)."""
    params = params or TruncationParameters()
    return LensOrLayers(truncation_accuracy(folders, params), truncation_spearman(folders, params), params)


def with_accuracy_kept(frame: pd.DataFrame) -> pd.DataFrame:
    """A `tuned_lens` table with `accuracy_kept`: each row's top-1 accuracy as a share of the full
    model's (its last layer through the logit lens, on the same positions)."""
    return frame.assign(accuracy_kept=frame["top1_accuracy"] / frame["model"].map(_full_accuracy(frame)))


def _full_accuracy(frame: pd.DataFrame) -> pd.Series:
    """Per model of a `tuned_lens` table, the full model's top-1 accuracy (last layer, logit lens)."""
    final = frame[frame["layer"] == frame.groupby("model")["layer"].transform("max")]
    return final[final["lens"] == "logit"].set_index("model")["top1_accuracy"]


def baseline_rules(baselines: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    """The trivial baselines (`tuned_lens_baselines` tables) of the models of the `tuned_lens` table
    `frame`, in its units: `top1_accuracy`, and as `accuracy_kept` a share of the full model's (as
    `with_accuracy_kept`). One row per model and predictor (model, predictor, top1_accuracy,
    accuracy_kept), for the figures' dashed rules."""
    rows = baselines[baselines["model"].isin(frame["model"])]
    rows = rows.assign(accuracy_kept=rows["top1_accuracy"] / rows["model"].map(_full_accuracy(frame)))
    return rows[["model", "predictor", "top1_accuracy", "accuracy_kept"]].reset_index(drop=True)


def lens_and_skip_kl(lens: pd.DataFrame, skips: pd.DataFrame, direction: str = "kl") -> pd.DataFrame:
    """Both lenses' KL per layer (a `tuned_lens` table; `direction` "kl" = KL(p_l || p_L) or "kl_reverse"
    = KL(p_L || p_l), as column `kl`) and, as the lens "skip block alone" at layer s, the output's KL
    when only block s is skipped (M3's `kl_mean`, KL(p || p'), a `skip_output` table): one frame for
    one figure (untrained twins keep their `twin_of`)."""
    extra = [c for c in ("twin_of", "init_seed") if c in lens and c in skips]
    columns = ["model", "lens", "layer", "relative_depth", "kl", *extra]
    skip_rows = skips.assign(lens="skip block alone", layer=skips["skipped"], kl=skips["kl_mean"])[columns]
    return pd.concat([lens.assign(kl=lens[direction])[columns], skip_rows], ignore_index=True)


def weight_shares(results: Results) -> dict[str, list[float]]:
    """Per model (by its display name), the share of its blocks' weights (the multiply-adds per token of
    their weight matrices) in blocks 1..k, for k = 1..L, as its run recorded them (run.json's
    `block_weights`; a folder without them is left out)."""
    out = {}
    for record in results:
        if record.block_weights:
            sizes = np.array(record.block_weights, float)
            out[record.model.display] = list(np.cumsum(sizes) / sizes.sum())
    return out


def equal_blocks(shares: list[float] | None) -> bool:
    """Whether the blocks hold the same number of weights each (k of L blocks keep k / L of them)."""
    return shares is not None and bool(np.allclose(shares, np.arange(1, len(shares) + 1) / len(shares)))
