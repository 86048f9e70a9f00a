"""The verdicts as the book writes them: tables and sentences from the numbers of `plmdepth.analysis`.

`summary(table)` condenses the claims table (`analysis.claims.claims`) to one row per claim with a
sentence of evidence; `key_results_markdown` is the front page's table and `verdict_markdown` a
chapter's "Does this build agree?". `lens_or_layers_markdown` is {ref}`chapter-lens-or-layers`'s
verdict and `lens_or_layers_key_line` the front page's line, from the same numbers
(`analysis.truncation.lens_or_layers`). `write_pages` writes book/key_results.md, book/claims.md and
book/sensitivity.md (`sensitivity_markdown`: the threshold sweep of `analysis.sensitivity`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from plmdepth.analysis.depth_ladder import ladder_numbers, ladder_trends
from plmdepth.analysis.claims import (BEYOND, CLAIMS, NO_TWINS, NOT_BEYOND, NOT_TESTABLE, VERDICTS, ClaimParameters,
                                      claims, with_twins)
from plmdepth.analysis.sensitivity import SWEPT, counts, stability, sweep
from plmdepth.publish.chapter_text import noise_floor_markdown
from plmdepth.results import Results
from plmdepth.analysis.truncation import LensOrLayers, TruncationParameters, lens_or_layers


def _percent(value: float, digits: int = 0) -> str:
    return "—" if pd.isna(value) else f"{value:.{digits}%}"


def _figure(value: float, claim: str) -> str:
    return "—" if pd.isna(value) else f"{value:.0f}" if claim == "d" else f"{value:.2f}"


def with_interval(value: float, low: float, high: float, claim: str = "") -> str:
    """"0.86 [0.80, 0.93]": a number and its 95% interval ("—" when missing)."""
    if pd.isna(value):
        return "—"
    text = _figure(value, claim)
    return text if pd.isna(low) else f"{text} [{_figure(low, claim)}, {_figure(high, claim)}]"


def number_text(row) -> str:
    """A claims row's test number(s) with interval: claim (b) shows the KL share and the output ratio."""
    row = row if isinstance(row, dict) else row._asdict() if hasattr(row, "_asdict") else dict(row)
    text = with_interval(row["value"], row["low"], row["high"], row["claim"])
    if row["claim"] == "b" and not pd.isna(row.get("second")):
        text = f"share {text}; ratio {with_interval(row['second'], row['second_low'], row['second_high'])}"
    return text


def twins_text(row, seeds: bool = True) -> str:
    """The untrained twins' number: mean and range over seeds ("0.93 (0.89–0.98), 3 seeds"; without
    `seeds`, the count left to a table's header)."""
    row = row if isinstance(row, dict) else dict(row)
    if not row.get("twins_n"):
        return "—"
    def one(prefix):
        mean, low, high = (row[f"{prefix}_{s}"] for s in ("mean", "low", "high"))
        return f"{_figure(mean, row['claim'])} ({_figure(low, row['claim'])}–{_figure(high, row['claim'])})"
    text = one("twins")
    if row["claim"] == "b" and not pd.isna(row.get("twins_second_mean")):
        text = f"share {text}; ratio {one('twins_second')}"
    return f"{text}, {int(row['twins_n'])} seeds" if seeds else text


def _beyond(row) -> str:
    return {BEYOND: "yes", NOT_BEYOND: "no"}.get(row["architecture"], "—") if row["verdict"] != NOT_TESTABLE else "—"


def _combined(verdicts: list[str]) -> str:
    """One claim's verdict over its testable models: the common verdict, or "mixed"."""
    return verdicts[0] if len(set(verdicts)) == 1 else "mixed"


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per claim over the trained models: the verdict over its testable models (agrees,
    disagrees, inconclusive when every model says so; mixed otherwise), how many lie beyond their
    untrained twins, and a sentence of evidence with every number's interval."""
    trained = with_twins(table)
    rows = []
    for claim, (statement, figure) in CLAIMS.items():
        part = trained[trained["claim"] == claim]
        testable = part[part["verdict"] != NOT_TESTABLE]
        with_twin = testable[testable["architecture"] != NO_TWINS]
        beyond = with_twin[with_twin["architecture"] == BEYOND]
        if testable.empty:
            verdict = NOT_TESTABLE
            sentence = "No model of this build can test it" + (
                f" ({part['why'].iloc[0]})." if len(part) else " (no results for it).")
        else:
            verdict = _combined(list(testable["verdict"]))
            groups = [(v, testable[testable["verdict"] == v]) for v in VERDICTS]
            said = {"agrees": "agree", "disagrees": "disagree", "inconclusive": "inconclusive"}
            sentence = "; ".join(f"{len(g)} of {len(testable)} testable {said[v]}: "
                                 + ", ".join(f"{r['model']} ({number_text(r)})" for _, r in g.iterrows())
                                 for v, g in groups if len(g)) + "."
            if len(with_twin):
                sentence += (f" Beyond the untrained twins' range: {len(beyond)} of {len(with_twin)}"
                             + (f" ({', '.join(beyond['model'])})" if len(beyond) else "") + ".")
        rows.append({"claim": f"({claim}) {statement}", "paper": figure, "test number": part["number"].iloc[0]
                     if len(part) else "", "verdict": verdict,
                     "beyond architecture": f"{len(beyond)} of {len(with_twin)}" if len(with_twin) else "—",
                     "evidence": sentence})
    return pd.DataFrame(rows)


def key_results_markdown(table: pd.DataFrame) -> str:
    """The front page's claims: per claim its verdict, then per trained model the test number with its
    95% interval, the verdict, the untrained twins' number and whether it lies beyond them."""
    verdicts = dict(zip(CLAIMS, summary(table)["verdict"]))
    trained = with_twins(table)
    out = []
    for claim, (statement, figure) in CLAIMS.items():
        part = trained[trained["claim"] == claim]
        out.append(f"**({claim}) {statement}** ({figure}): **{verdicts[claim]}**")
        if part.empty:
            out += ["", f"No model of this build can test it (no results for it).", ""]
            continue
        testable = part[part["verdict"] != NOT_TESTABLE]
        seeds = int(testable["twins_n"].max()) if len(testable) else 0
        twins = f"untrained twins: mean (range over {seeds} seeds)" if seeds else "untrained twins"
        out += ["", f"| model | {part['number'].iloc[0]} [95% interval] | verdict | {twins} | beyond architecture? |",
                "|---|---|---|---|---|"]
        for _, row in testable.iterrows():
            out.append(f"| {row['model']} | {number_text(row)} | {row['verdict']} | {twins_text(row, seeds=False)} | "
                       f"{_beyond(row)} |")
        untested = part[part["verdict"] == NOT_TESTABLE]
        out.append("")
        if len(untested):
            out += ["Not testable here: " + "; ".join(f"{m} ({w})" for m, w in zip(untested["model"], untested["why"]))
                    + ".", ""]
    return "\n".join(out) + "\n"


def verdict_markdown(table: pd.DataFrame, claim_ids: str) -> str:
    """For a chapter's "Does this build agree?": per claim, the verdict and every model's number with
    its interval (and its untrained twins' beyond-architecture count)."""
    rows = dict(zip(CLAIMS, summary(table).to_dict("records")))
    out = []
    for claim in claim_ids:
        statement, figure = CLAIMS[claim]
        part, row = table[table["claim"] == claim], rows[claim]
        out.append(f"- **({claim}) {statement}** (cf. paper {figure}): **{row['verdict']}**. {row['evidence']}")
        if len(part):
            out.append(f"  Test number: {part['number'].iloc[0]} (paper: {part['paper direction'].iloc[0]}), "
                       f"with its 95% bootstrap interval over sequences.")
    return "\n".join(out) + "\n"


def _listing(frame: pd.DataFrame, column: str, digits: int = 1) -> str:
    """"a (95.1%), b (88.0%)": shares kept carry a decimal, so that none rounds onto the threshold."""
    return ", ".join(f"{m} ({_percent(v, digits)})" for m, v in zip(frame["model"], frame[column]))


def _kept_listing(frame: pd.DataFrame) -> str:
    """"a (95.1% [93.0%, 97.2%]; untrained 60.3% (58.1%–62.0%))": the tuned lens's share kept at 3/4,
    its interval, and the untrained twins' mean and range where they ran."""
    parts = []
    for _, r in frame.iterrows():
        text = f"{r['model']} ({_percent(r['kept_tuned_3q'], 1)}"
        if not pd.isna(r.get("kept_tuned_3q_low")):
            text += f" [{_percent(r['kept_tuned_3q_low'], 1)}, {_percent(r['kept_tuned_3q_high'], 1)}]"
        if not pd.isna(r.get("twins_kept_mean")):
            text += (f"; untrained {_percent(r['twins_kept_mean'], 1)} ({_percent(r['twins_kept_low'], 1)}–"
                     f"{_percent(r['twins_kept_high'], 1)})")
        parts.append(text + ")")
    return ", ".join(parts)


def _span(values: pd.Series) -> str:
    low, high = _percent(values.min()), _percent(values.max())
    return low if low == high else f"{low}–{high}"


def _accuracy_paragraph(result: LensOrLayers) -> str:
    table, p = result.accuracy, result.params
    if table.empty:
        return ("**Not run.** No results folder of this build holds a `tuned_lens` measurement, so whether "
                "\"late layers mainly refine\" survives a learned readout is not tested.")
    testable = table[table["verdict"] != NOT_TESTABLE]
    keep, lose = testable[testable["verdict"] == "keeps"], testable[testable["verdict"] == "loses"]
    unsure = testable[testable["verdict"] == "inconclusive"]
    threshold = _percent(p.kept_threshold)
    out = [f"**The reading {result.verdict}.**" if result.verdict != NOT_TESTABLE else
           "**The reading cannot be tested in this build.**"]
    if len(keep):
        out.append(f"With a learned readout (the tuned lens), the model cut after three quarters of its blocks keeps "
                   f"at least {threshold} of the full model's top-1 accuracy (the whole 95% interval) for "
                   f"{_kept_listing(keep)}" + (f", and less for {_kept_listing(lose)}." if len(lose) else "."))
    elif len(lose):
        out.append(f"With a learned readout (the tuned lens), the model cut after three quarters of its blocks keeps "
                   f"less than {threshold} of the full model's top-1 accuracy (the whole 95% interval) for "
                   f"{'every model: ' if unsure.empty else ''}{_kept_listing(lose)}.")
    if len(unsure):
        out.append(f"Whether the cut keeps {threshold} cannot be told from the sequences for {_kept_listing(unsure)} "
                   f"(the interval spans the threshold).")
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
               f"from `basis_share` = {p.basis_share:g} (both fields of `TruncationParameters`).")
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
            "inconclusive": "whether the cut keeps its Spearman ρ cannot be told from the variants",
            NOT_TESTABLE: "not testable in this build"}[result.spearman_verdict]
    out = [f"**Variant effects: {head}.**"]
    if len(testable):
        pairs = "; ".join(f"{_pair(r)}: ρ {r.rho_full:.3f} full, {r.rho_3q:.3f} at ¾ ({_percent(r.kept_3q, 1)}"
                          + (f" [{_percent(r.kept_3q_low, 1)}, {_percent(r.kept_3q_high, 1)}]"
                             if not pd.isna(getattr(r, "kept_3q_low", np.nan)) else "") + f", {r.verdict})"
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
                "keeps for some": "keeps its Spearman ρ for some", "inconclusive": "is inconclusive on its Spearman ρ"
                }[result.spearman_verdict]
        line += (f". For variant effects, the same cut **{said}**: at least {threshold} of it for "
                 f"{int((sp['verdict'] == 'keeps').sum())} of {len(sp)} testable (model, assay) pairs")
    elif not result.spearman.empty:
        line += ". For variant effects no (model, assay) pair is testable"
    return line + ".\n"


def ladder_key_line(folders, params: ClaimParameters | None = None) -> str:
    """The front page's line on {ref}`chapter-depth-ladder`: claim (c) across the ladder's rungs (the
    slope of the late/early ratio per doubling of depth, its interval, the twins' slopes)."""
    head = "**Depth as the only variable** ({ref}`chapter-depth-ladder`):"
    trends = ladder_trends(ladder_numbers(folders, params)[1]) if folders else pd.DataFrame()
    ratio = trends[trends["number"] == "late/early skip effect"] if len(trends) else trends
    trained = ratio[ratio["group"] == "trained"] if len(ratio) else ratio
    if trained.empty:
        return f"{head} Not run in this build: no three rungs of the ladder with layer-skipping results.\n"
    row = trained.iloc[0]
    twins = ratio[ratio["group"] != "trained"]
    spans = (f"; its untrained twins' ladders: {_span_of(twins)}" if len(twins) else "")
    return (f"{head} across rungs of one width and recipe ({row['rungs']} blocks), claim (a)'s late/early ratio "
            f"changes by {row['slope']:+.3f} [{row['low']:+.3f}, {row['high']:+.3f}] per doubling of depth{spans}: "
            f"claim (c) **{row['verdict']}**.\n")


def _span_of(twins: pd.DataFrame) -> str:
    low, high = twins["slope"].min(), twins["slope"].max()
    return f"{low + 0.0:+.3f} to {high + 0.0:+.3f} ({len(twins)} seeds)" if len(twins) > 1 else f"{low + 0.0:+.3f}"


def write_pages(folders, book: Path, params: ClaimParameters | None = None,
                truncation: TruncationParameters | None = None, ladder=()) -> pd.DataFrame:
    """book/key_results.md (the front page's table) and book/claims.md (every model's numbers,
    for Discussion), from the results folders of this build; returns the claims table. The depth
    ladder's folders (`ladder`) are tested apart, by their slope across depth (`ladder_key_line`)."""
    table = claims(folders, params)
    intro = ("Verdicts of this build, from its results folders (tests defined in {ref}`methods-claims`; "
             "every model's numbers in {ref}`discussion`). Each test number carries its 95% bootstrap interval "
             "over sequences; a model *agrees* or *disagrees* only when the whole interval lies on one side of "
             "the threshold, and is *inconclusive* otherwise. *Untrained twins*: the same measurement on the "
             "model's architecture freshly initialised (mean and range over seeds, {ref}`Methods <methods-twins>`); "
             "*beyond architecture* when the trained model's interval lies beyond that whole range on the "
             "paper's side.\n\n")
    key_line = lens_or_layers_key_line(lens_or_layers(folders, truncation))
    (book / "key_results.md").write_text(intro + key_results_markdown(table) + "\n" + key_line + "\n"
                                         + ladder_key_line(list(ladder), params))
    lines = ["| claim | cf. paper | model | test number | value [95% interval] | verdict | detail |",
             "|---|---|---|---|---|---|---|"]
    for _, row in table.iterrows():
        lines.append(f"| ({row['claim']}) | {row['paper']} | {row['model']} | {row['number']} | {number_text(row)} | "
                     f"{row['verdict']} | {row['why'] or '—'} |")
    (book / "claims.md").write_text("\n".join(lines) + "\n")
    (book / "sensitivity.md").write_text(sensitivity_markdown(sweep(folders, params=params, truncation=truncation)))
    found = Results(folders)
    floor = found.tables("noise_floor")["noise_floor"] if found.of("noise_floor") else pd.DataFrame()
    (book / "noise_floor.md").write_text(noise_floor_markdown(floor))
    return table


def sensitivity_markdown(table: pd.DataFrame) -> str:
    """Discussion's threshold sweep (`analysis.sensitivity.sweep`): per threshold and factor the verdict
    counts, then the verdicts that hold across the sweep and those that flip."""
    if table.empty:
        return "*No verdict of this build uses a swept threshold.*\n"
    counted = counts(table)
    factors = sorted(counted["factor"].unique())
    lines = ["| threshold (default) | " + " | ".join(f"×{f:g}" for f in factors) + " |",
             "|---|" + "---|" * len(factors)]
    for name, part in counted.groupby("threshold", sort=False):
        cells = part.set_index("factor")
        default = cells.loc[1.0, "value"] if 1.0 in cells.index else float("nan")
        lines.append(f"| {SWEPT[name][0]}: `{name}` ({default:g}) | "
                     + " | ".join(f"{cells.loc[f, 'value']:.3g}: {cells.loc[f, 'verdicts']}" if f in cells.index
                                  else "—" for f in factors) + " |")
    stable = stability(table)
    holds, flips = stable[stable["holds"]], stable[~stable["holds"]]
    label = lambda r: f"({r['claim']}) {r['model']} ({r['default']})" if len(r["claim"]) == 1 else \
        f"lens or layers: {r['model']} ({r['default']})"  # noqa: E731
    text = ["", f"Each threshold multiplied by {', '.join(f'{f:g}' for f in factors)} (`kept_threshold` through the "
            "share it allows to be lost, 1 − `kept_threshold`), the others at their defaults; cells: the threshold's "
            "value and the testable trained models' verdicts."]
    text.append("**Verdicts that hold across the sweep:** " + (", ".join(label(r) for _, r in holds.iterrows())
                                                              if len(holds) else "none") + ".")
    text.append("**Verdicts that flip:** " + ("; ".join(f"{label(r)}: {r['flips']}" for _, r in flips.iterrows())
                                             if len(flips) else "none") + ".")
    return "\n".join(lines) + "\n" + "\n\n".join(text) + "\n"


def updates_markdown(table: pd.DataFrame) -> str:
    """The contributions chapter's verdict (`analysis.claims.update_ratios`): per trained model the
    late / early ratio of relative block updates with its interval and verdict, then its untrained
    twins' mean and range and whether it lies beyond them."""
    trained = with_twins(table)
    testable = trained[trained["verdict"] != NOT_TESTABLE]
    if testable.empty:
        return "No model of this build has contributions with per-sequence sums to test.\n"
    counts = ", ".join(f"{int((testable['verdict'] == v).sum())} {v}" for v in VERDICTS
                       if (testable["verdict"] == v).any())
    seeds = int(testable["twins_n"].max())
    twins = f"untrained twins: mean (range over {seeds} seeds)" if seeds else "untrained twins"
    lines = [f"Later blocks change the stream less than earlier ones (the whole 95% interval of the ratio below 1) "
             f"for **{int((testable['verdict'] == 'agrees').sum())} of {len(testable)}** models ({counts}):", "",
             f"| model | late/early relative update [95% interval] | verdict | {twins} | beyond architecture? |",
             "|---|---|---|---|---|"]
    for _, row in testable.iterrows():
        lines.append(f"| {row['model']} | {number_text(row)} | {row['verdict']} | {twins_text(row, seeds=False)} | "
                     f"{_beyond(row)} |")
    return "\n".join(lines) + "\n"
