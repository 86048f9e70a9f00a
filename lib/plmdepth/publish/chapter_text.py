"""The tables and sentences the chapters glue, written from their results tables (MyST markdown).

Variant effects ({ref}`chapter-variant-effects`): `assay_sets_markdown`, `proteingym_sentence`,
`null_band_sentence`, `mutation_depths_markdown`, `final_range_sentence`, `best_layers_markdown`. The truncation
frontier ({ref}`chapter-lens-or-layers`): `truncation_accuracy_markdown`,
`truncation_spearman_markdown`. Each takes tables (those of `plmdepth.analysis` or a measurement's)
and returns text; none computes a number that a table does not hold, beyond picking and rounding.
"""

from __future__ import annotations

import pandas as pd

from plmdepth.analysis.truncation import equal_blocks
from plmdepth.analysis.variant_effects import final_layers


# ---- variant effects --------------------------------------------------------------------------

def assay_sets_markdown(assay_table: pd.DataFrame, scored) -> str:
    """One line per set of the reference table: size, region, how it relates to ProteinGym,
    orientation, and whether this build scored it."""
    lines = []
    for row in assay_table.itertuples():
        get = lambda column: getattr(row, column, None)  # noqa: E731
        facts = [f"{int(row.seq_len)} residues" if get("seq_len") else None,
                 f"mutated {row.region_mutated}" if get("region_mutated") else None,
                 f"{int(row.DMS_number_single_mutants):,} singles" if get("DMS_number_single_mutants") else None,
                 f"{int(row.DMS_number_multiple_mutants):,} multiples" if get("DMS_number_multiple_mutants") else None]
        text = f"- `{row.DMS_id}` ({', '.join(f for f in facts if f)})"
        if get("relation_to_proteingym"):
            text += f": {row.relation_to_proteingym}."
        if get("selection_assay"):
            text += f" Higher `DMS_score` means more {row.selection_assay}."
        text += "" if row.DMS_id in set(scored) else " *Not scored in this build* (`-p assays=all`)."
        lines.append(text)
    return "\n".join(lines)


def proteingym_sentence(assay_table: pd.DataFrame, table: pd.DataFrame) -> str:
    """What the build measured on the sets that are ProteinGym's own, in one paragraph ("" when none)."""
    if "relation_to_proteingym" not in assay_table:
        return ""
    final = final_layers(table)
    same = assay_table["relation_to_proteingym"].astype(str).str.startswith("same variant set")
    scored = [a for a in table["assay"].unique() if a != "mean"]
    parts = []
    for assay in [a for a in scored if a in set(assay_table.loc[same, "DMS_id"])]:
        rows = final[final["assay"] == assay]
        length = int(assay_table.loc[assay_table["DMS_id"] == assay, "seq_len"].iloc[0])
        n = int(table.loc[table["assay"] == assay, "n_variants"].iloc[0])
        values = ", ".join(f"{m} {rho:.3f}" for m, rho in zip(rows["model"], rows["final-layer ρ"]))
        parts.append(f"on `{assay}` ({n:,} variants in the {length}-residue target) the final layers give "
                     f"ρ = {values}")
    if not parts:
        return ""
    return ("**On ProteinGym's own variant sets**, scored by ProteinGym's protocol, " + "; ".join(parts)
            + ". These are the numbers to set beside ProteinGym's published zero-shot scores for the same models.")


def null_band_sentence(replicates: pd.DataFrame | None) -> str:
    """The figure caption's sentence on the grey band, with the number of permutations the
    replicates table holds per curve point ("" for results without permutation replicates)."""
    if replicates is None or "kind" not in replicates:
        return ""
    permutations = replicates[replicates["kind"] == "permutation"]
    if permutations.empty:
        return ""
    keys = [c for c in ("model", "assay", "layer") if c in permutations]
    counts = " / ".join(f"{n:,}" for n in sorted(set(permutations.groupby(keys).size())))
    return (f"The grey band is the 95% range of ρ under permutation of the measured fitness among an assay's "
            f"variants ({counts} permutations, the same at every layer; one faint band per model).")


def mutation_depths_markdown(by_depth: pd.DataFrame) -> str:
    """Per set with several mutation depths, a table of final-layer and best-layer ρ per model and depth."""
    if by_depth.empty:
        return "*No scored set holds more than one mutation depth.*"
    parts = []
    for assay, of_assay in by_depth.groupby("assay", sort=False):
        rows = [f"`{assay}`:", "", "| model | substitutions | variants | final-layer ρ | best ρ (layer) |",
                "|---|--:|--:|--:|--:|"]
        for (model, depth), part in of_assay.groupby(["model", "mutation_depth"], sort=False):
            last, top = part.loc[part["layer"].idxmax()], part.loc[part["spearman"].idxmax()]
            rows.append(f"| {model} | {depth} | {int(last.n_variants):,} | {last.spearman:.3f} | "
                        f"{top.spearman:.3f} ({int(top.layer)}) |")
        parts.append("\n".join(rows))
    return "\n\n".join(parts)


def final_range_sentence(table: pd.DataFrame) -> str:
    """The final layers' ρ over every (model, scored set): its range and its sign."""
    rows = table[(table["relative_depth"] == 1) & (table["assay"] != "mean")]
    if rows.empty:
        return "*No set was scored.*"
    low, high = rows.loc[rows["spearman"].idxmin()], rows.loc[rows["spearman"].idxmax()]
    above = int((rows["spearman_low"] > 0).sum())
    below = rows[rows["spearman_high"] < 0]
    sign = (f"its 95% interval lies above 0 for {above} of {len(rows)} (model, set) pairs"
            + (f" and below 0 for {', '.join(f'{r.model} on `{r.assay}`' for r in below.itertuples())}"
               if len(below) else ""))
    return (f"At the final layer, ρ ranges from {low.spearman:.3f} ({low.model}, `{low.assay}`) to "
            f"{high.spearman:.3f} ({high.model}, `{high.assay}`); {sign}.")


def best_layers_markdown(best: pd.DataFrame) -> str:
    """The table of `analysis.variant_effects.best_layers`."""
    return "\n".join(
        ["| model | set | best layer | best l / L | best ρ | final-layer ρ |", "|---|---|--:|--:|--:|--:|"]
        + [f"| {r['model']} | {r['assay'] if r['assay'] == 'mean' else '`' + r['assay'] + '`'} | "
           f"{int(r['best layer'])} | {r['best l / L']:.2f} | {r['best ρ']:.3f} | {r['final-layer ρ']:.3f} |"
           for _, r in best.iterrows()])


# ---- the truncation frontier ------------------------------------------------------------------

def _share_at(shares, k: int) -> str:
    return "—" if shares is None or not 1 <= k <= len(shares) else f"{shares[k - 1]:.0%}"


def _percent_or_dash(value: float) -> str:
    return "—" if pd.isna(value) else f"{value:.1%}"


def truncation_accuracy_markdown(numbers: pd.DataFrame, shares: dict) -> str:
    """Per model (`analysis.truncation.truncation_accuracy`): KL through both lenses at 1/2 and 3/4,
    the KL removed and the accuracy kept at 3/4, the better trivial baseline and the share of the full
    model's gain over it that the cut at 3/4 keeps ("—" without a baseline), the time the lenses took,
    and how much of the blocks' weights the cut at 3/4 keeps (`shares`:
    `analysis.truncation.weight_shares`)."""
    lines = ["| model | L | layers at ½, ¾ | KL logit ½ | KL tuned ½ | KL logit ¾ | KL tuned ¾ | "
             "KL removed at ¾ | accuracy kept at ¾ (logit / tuned) | best trivial baseline | "
             "gain over it kept at ¾ (logit / tuned) |", "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for r in numbers.itertuples(index=False):
        baseline = "—" if pd.isna(r.baseline_accuracy) else f"{r.baseline} {r.baseline_accuracy:.1%}"
        lines.append(f"| {r.model} | {r.blocks} | {r.half}, {r.three_quarters} | {r.kl_logit_half:.3f} | "
                     f"{r.kl_tuned_half:.3f} | {r.kl_logit_3q:.3f} | {r.kl_tuned_3q:.3f} | {r.kl_removed_3q:.0%} | "
                     f"{r.kept_logit_3q:.1%} / {r.kept_tuned_3q:.1%} | {baseline} | "
                     f"{_percent_or_dash(r.gap_kept_logit_3q)} / {_percent_or_dash(r.gap_kept_tuned_3q)} |")
    times = ", ".join(f"{r.model} {r.seconds:.0f} s" for r in numbers.itertuples(index=False))
    of = {m: shares.get(m) for m in numbers["model"]}
    equal = [m for m, share in of.items() if equal_blocks(share)]
    unequal = [m for m, share in of.items() if share is not None and not equal_blocks(share)]
    flops = (f" The blocks of {', '.join(equal)} each hold the same number of weights, so there keeping k of L "
             f"blocks keeps k / L of the blocks' multiply-adds." if equal else "")
    flops += "".join(f" The blocks of {m} differ in size: the cut at ¾ keeps {_share_at(of[m], int(r))} of their "
                     f"weights." for m, r in zip(unequal, numbers.set_index("model").loc[unequal, "three_quarters"]))
    return "\n".join(lines) + f"\n\nTraining and reading both lenses took {times} on this build's machine." + flops


def truncation_spearman_markdown(spearman: pd.DataFrame, shares: dict) -> str:
    """Per variant-effect model and set (`analysis.truncation.truncation_spearman`): ρ of the full model and
    of the model cut at 3/4 and 1/2, the share the cut at 3/4 keeps, and the share of the layers' weights
    the cuts keep."""
    if spearman.empty:
        return "*No variant-effect results in this build.*"
    lines = ["| model | set | layers kept at ¾, ½ | ρ full | ρ at ¾ | ρ at ½ | ρ kept at ¾ |",
             "|---|---|--:|--:|--:|--:|--:|"]
    for r in spearman.itertuples(index=False):
        cut = lambda value, k: "—" if k >= r.blocks else f"{value:.3f}"  # noqa: E731
        kept = "no cut" if r.three_quarters >= r.blocks else f"{r.three_quarters}, {r.half} of {r.blocks}"
        lines.append(f"| {r.model} | `{r.assay}` | {kept} | {r.rho_full:.3f} | {cut(r.rho_3q, r.three_quarters)} | "
                     f"{cut(r.rho_half, r.half)} | {'—' if pd.isna(r.kept_3q) else f'{r.kept_3q:.1%}'} |")
    weights = []
    for model, part in spearman.groupby("model", sort=False):
        r, share = part.iloc[0], shares.get(model)
        if share is not None and r.three_quarters < r.blocks:
            weights.append(f"{model} {_share_at(share, r.three_quarters)} at ¾ and {_share_at(share, r.half)} at ½")
    return "\n".join(lines) + ("\n\nShare of the layers' weights (multiply-adds per token) the cuts keep: "
                               + "; ".join(weights) + "." if weights else "")


# ---- untrained twins --------------------------------------------------------------------------

def twins_sentence(table: pd.DataFrame) -> str:
    """The caption's sentence on the untrained twins drawn in a depth figure (empty when there are
    none): how many seeds, and which architectures run untrained only."""
    if "twin_of" not in table or table["twin_of"].isna().all():
        return ""
    twins = table[table["twin_of"].notna()]
    seeds = twins.groupby("twin_of")["init_seed"].nunique()
    trained = set(table.loc[table["twin_of"].isna(), "model"])
    alone = [m for m in seeds.index if m not in trained]
    n = f"{seeds.min()}" if seeds.min() == seeds.max() else f"{seeds.min()}–{seeds.max()}"
    over = "one seed" if n == "1" else f"{n} seeds: mean and range"
    text = (f"Dashed, with a pale band of the same colour: each model's untrained twins (the same architecture and "
            f"config, freshly initialised by its own initialiser; {over}).")
    if alone:
        text += f" {', '.join(alone)}: architecture only, no training (\"(untrained)\")."
    return text


FLOOR_TABLES = {"contributions": "M1 contributions", "skip_effect": "M2 skip effect", "skip_output": "M3 output change",
                "logit_lens": "M4 logit lens"}


def noise_floor_sentence(floor: pd.DataFrame, output: pd.DataFrame) -> str:
    """The layer-skipping chapter's sentence on its noise floor (`probes.noise_floor`): how far float64
    and the null skip move M2 and M3, against the smallest mean output change the chapter shows (not
    counting the last block's, zero by construction)."""
    from plmdepth.probes.layer_skipping import zero_by_construction

    if floor.empty:
        return ""
    skip = floor[floor["table"].isin(["skip_effect", "skip_output"])]
    wide = skip.loc[skip["comparison"] == "float64", "max_abs_diff"].max()
    null = skip.loc[skip["comparison"] == "null skip", "max_abs_diff"].max()
    trained = output["twin_of"].isna() if "twin_of" in output else pd.Series(True, index=output.index)
    shown = output.loc[trained & ~zero_by_construction(output), "prob_l2_mean"]
    n = floor.loc[floor["comparison"] == "float64", "n_sequences"]
    count = f"{n.max()}" if n.min() == n.max() else f"{n.min()}–{n.max()}"
    nothing = "exactly zero" if null == 0 else f"at most {null:.1e}"
    return (f"Noise floor (Methods; the trained models, their first {count} sequences): computing in float64 instead "
            f"of float32 moves any number of M2 and M3 by at most {wide:.1e}, and skipping nothing gives effects "
            f"{nothing}; the smallest mean output change in the table below (the last block's, zero by "
            f"construction, aside) is {shown.min():.1e}.")


def noise_floor_markdown(floor: pd.DataFrame) -> str:
    """Methods' table of the noise floor: per measurement and comparison, the largest difference over
    the models relative to the column's scale; then the models it covers and the book's precision."""
    if floor.empty:
        return "*No noise-floor run in this build (the layer-skipping chapter makes them).*\n"
    comparisons = [c for c in ("float64", "null skip", "bfloat16 (mixed)") if c in set(floor["comparison"])]
    rel = floor.pivot_table(index="table", columns="comparison", values="relative", aggfunc="max")
    lines = ["| measurement | " + " | ".join(comparisons) + " |", "|---|" + "---|" * len(comparisons)]
    for table in (t for t in FLOOR_TABLES if t in rel.index):
        cells = " | ".join("—" if pd.isna(rel.loc[table, c]) else f"{rel.loc[table, c]:.1e}" for c in comparisons)
        lines.append(f"| {FLOOR_TABLES[table]} | {cells} |")
    counts = floor.groupby("comparison")["n_sequences"].agg(["min", "max"])

    def seqs(c):
        low, high = counts.loc[c, "min"], counts.loc[c, "max"]
        return f"{low}" if low == high else f"{low}–{high}"

    models = ", ".join(dict.fromkeys(floor["model"]))
    text = "\n".join(lines) + "\n\n" + (f"Largest over the models {models}; on their first {seqs('float64')} sequences"
                                        + (f" ({seqs('bfloat16 (mixed)')} for bfloat16)" if "bfloat16 (mixed)" in counts.index
                                           else "") + ". Every number per model is in each model's `noise_floor.csv`.\n")
    wide = floor.loc[floor["comparison"] == "float64", "relative"].max()
    mixed = floor.loc[floor["comparison"] == "bfloat16 (mixed)", "relative"]
    if len(mixed):
        text += (f"\nIn this build, bfloat16 matrix products move a number by up to {mixed.max():.1e} of its "
                 f"column's largest value, {mixed.max() / max(wide, 1e-300):.0e} times what float32 rounding moves "
                 f"it by ({wide:.1e}); the book computes in float32 (the `dtype` parameter).\n")
    return text


# ---- part skipping (layer-skipping chapter) ----------------------------------------------------

def part_skipping_sentence(late: pd.DataFrame) -> str:
    """The layer-skipping chapter's sentence on which sublayer the late blocks' output change comes
    from (`analysis.sublayers.late_part_effects`): per model, the total effect of skipping only the
    MLP and only the attention and their paired difference, each with its interval, and which is
    larger where the difference's interval says."""
    from plmdepth.analysis.sublayers import larger_part

    if late.empty:
        return ""

    def value(row) -> str:
        return f"{row['mean']:.3f} [{row['low']:.3f}, {row['high']:.3f}]"

    parts = []
    for model, rows in late[late["effect"] == "total"].groupby("model", sort=False):
        by_part = {r["part"]: r for _, r in rows.iterrows()}
        if "mlp" not in by_part or "attention" not in by_part:
            continue
        diff = by_part["mlp − attention"]
        first, last = diff["blocks"].split("-")
        blocks = f"block {first}" if first == last else f"blocks {first}-{last}"
        parts.append(f"{model} ({blocks} of {diff['n_layers']}): the MLP alone {value(by_part['mlp'])}, "
                     f"the attention alone {value(by_part['attention'])}, MLP − attention {value(diff)}; "
                     f"larger: {larger_part(diff)}")
    if not parts:
        return ""
    return ("In the last half of the blocks, skipping one sublayer at every residue changes the output (mean L2 of "
            "the probabilities, 95% intervals over sequences) by: " + "; ".join(parts) + ".")


# ---- the depth ladder ---------------------------------------------------------------------------

def ladder_markdown(manifest: dict) -> str:
    """The depth ladder's rungs as its manifest records them: size, training compute and held-out loss."""
    lines = ["| rung | blocks | parameters | steps | residues seen | wall time | TFLOP/s (6 N D) | precision "
             "| held-out loss [nats] | perplexity |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in manifest["rungs"]:
        lines.append(f"| {r['name']} | {r['depth']} | {r['block_parameters'] / 1e6:.2f}M in blocks | {r['steps']} "
                     f"| {r['tokens'] / 1e6:.2f}M | {r['wall_s'] / 60:.1f} min | {r['tflops']:.3f} | {r['precision']} "
                     f"| {r['heldout_loss']:.4f} | {r['heldout_perplexity']:.3f} |")
    return "\n".join(lines) + "\n"


def perplexity_sentence(manifest: dict) -> str:
    """Whether deeper rungs reach lower held-out perplexity at the same residues seen."""
    rungs = sorted(manifest["rungs"], key=lambda r: r["depth"])
    ppl = [r["heldout_perplexity"] for r in rungs]
    text = ", ".join(f"{p:.2f} ({r['depth']} blocks)" for p, r in zip(ppl, rungs))
    if all(a > b for a, b in zip(ppl, ppl[1:])):
        return f"At the same residues seen, every deeper rung reaches a lower held-out perplexity: {text}."
    worse = [f"{b['depth']}" for a, b in zip(rungs, rungs[1:]) if b["heldout_perplexity"] >= a["heldout_perplexity"]]
    return (f"Held-out perplexity does not fall with every added depth: {text}; the rung(s) of "
            f"{', '.join(worse)} blocks are no better than the next shallower one at this budget.")


def ladder_sentence(trends: pd.DataFrame, numbers: pd.DataFrame) -> str:
    """Claim (c) on the ladder: the trained rungs' slope per doubling of depth of the late/early ratio
    and of the KL share, each with its interval, beside the untrained twins' slopes."""
    def with_interval(value: float, low: float, high: float) -> str:
        return f"{value:.2f} [{low:.2f}, {high:.2f}]"

    def signed(x: float) -> str:
        return f"{round(x, 3) + 0.0:+.3f}"  # no "-0.000"

    def slope_text(row) -> str:
        return f"{signed(row.slope)} [{signed(row.low)}, {signed(row.high)}]"

    parts = []
    for number in trends["number"].unique():
        rows = trends[trends["number"] == number]
        trained = rows[rows["group"] == "trained"]
        if trained.empty:
            continue
        row = next(trained.itertuples())
        twins = "; ".join(f"{r.group.removeprefix('untrained, ')}: {slope_text(r)}"
                          for r in rows[rows["group"] != "trained"].itertuples())
        rungs = numbers[(numbers["number"] == number) & (numbers["group"] == "trained")]
        values = "; ".join(f"{v.blocks} blocks: {with_interval(v.value, v.low, v.high)}" for v in rungs.itertuples())
        text = f"The {number} changes by {slope_text(row)} per doubling of depth across the trained rungs ({values})"
        text += f"; the untrained twins' ladders: {twins}." if twins else "."
        others = rows[rows["group"] != "trained"]
        if len(others):
            low, high = others["slope"].min(), others["slope"].max()
            beyond = row.low > high or row.high < low
            text += (f" The trained slope's interval lies {'outside' if beyond else 'within'} the range of the twins' "
                     f"slopes ({signed(low)} to {signed(high)}): "
                     + ("training, not the architecture alone, sets this trend." if beyond else
                        "the architecture alone can give this trend."))
        parts.append(text)
    ratio = trends[(trends["group"] == "trained") & (trends["verdict"] != "")]
    if len(ratio):
        verdict = ratio["verdict"].iloc[0]
        meaning = {"agrees": "deeper rungs depend less on earlier computations in their later blocks, as the paper "
                             "reports for deeper models",
                   "disagrees": "deeper rungs' later blocks depend more on earlier computations, against the paper",
                   "inconclusive": "the interval spans zero, so depth alone does not resolve a trend here"}[verdict]
        parts.append(f"With depth as the only variable, claim (c) **{verdict}**: {meaning}.")
    return " ".join(parts)
