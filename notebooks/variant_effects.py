# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# (chapter-variant-effects)=
# # Variant effects from every layer
#
# ## What the paper reports
#
# Does predicting the effect of mutations need the last layers? The paper's Fig. 5 scores
# ProteinGym's deep-mutational scans with ESM-2, reading predictions from every layer with
# the logit lens: the average Spearman correlation improves with depth for every model
# size, but the largest models show diminishing returns in the final layers. The last
# section of this page tests this on the models of this build.
#
# ## Measurement
#
# Every variant is scored from the lens at each layer $l$, by the protocol of ProteinGym's own
# zero-shot scoring scripts, so that the final layer's number is the one ProteinGym would report
# for the model ({ref}`methods` M5 names the files followed):
#
# - autoregressive models: $\log P_l(\text{mutant}) - \log P_l(\text{wild type})$, the sum of
#   next-residue log-probabilities read at layer $l$;
# - masked models: the masked-marginal score
#   $\sum \log p_l(\text{mut}) - \log p_l(\text{wt})$ at each mutated position, masked one at
#   a time (the `scoring` parameter selects `wt_marginal` or `pseudo_likelihood` instead).
#
# Every variant is scored inside the **full-length protein** that ProteinGym scores it in, not
# only the mutated fragment; a target longer than a model's context is read in ProteinGym's
# windows. Scores are compared with the measured fitness by Spearman's ρ per assay, and per
# mutation depth where an assay holds singles and doubles; the bands are bootstrap 95%
# intervals over variants. The "mean" panel averages as ProteinGym does: first the assays of
# each protein, then the proteins.
#
# **Models.** The only general-protein language models that can be run offline are the
# UniRep models (multiplicative LSTMs trained on UniRef50; 4, 4 and 1 layers). The antibody
# models of the other chapters were trained only on antibody variable domains; their scores
# on these proteins would measure nothing about depth, so they are not run here. ESM-2 runs
# with `python -m plmdepth chapter variant-effects --add-model esm2_t12_35M` where the model
# hub is reachable. UniRep's first layer maps the 10-wide embeddings to the hidden width, so
# the lens reads layers 1..L (UniRep-1900, with one layer, has a single point).


# %% tags=["remove-cell"]
# Parameters shared by every chapter (models, data, seed, results folder, ...) come from
# notebooks/parameters.yml; the next cell holds this chapter's own.
from plmdepth.publish.chapter import shared_parameters

globals().update(shared_parameters())

# %% tags=["parameters"]
models = "unirep-64,unirep-256,unirep-1900"
reference = "data/dms/DMS_substitutions.csv"  # ProteinGym-style table; assay CSVs beside it
# the sets of the table to score, comma-separated ("all": every set). The default: ProteinGym's own
# TDP-43 set and the Aβ42 set (singles and doubles), which fit the book's ten-minute build
assays = "TADBP_HUMAN_Bolognesi_2019,A4_HUMAN_Seuma_2022_subset"
max_variants = None  # None: every variant; N: a seeded subset of N
scoring = "auto"  # or masked_marginal, wt_marginal, pseudo_likelihood, log_likelihood_ratio
n_bootstrap = 200
batch_size = 64

# %% tags=["hide-input"]
import pandas as pd

from plmdepth.publish.chapter import collect, glue_markdown, glue_text, publish_figure
from plmdepth.publish.figures import variant_effect_curves
from plmdepth.publish.provenance import run_caption
from plmdepth.publish.verdicts import claims, verdict_markdown

assay_table = pd.read_csv(reference)
chosen = None if assays in (None, "", "all") else [a.strip() for a in str(assays).split(",") if a.strip()]
result = collect("variant_effects", models, reference, results_dir, device=device, dtype=dtype, assays=chosen,
                 max_variants=max_variants, seed=seed, scoring=scoring, n_bootstrap=n_bootstrap,
                 batch_size=batch_size)
table = result["variant_effects"]
by_depth = result["variant_effects_by_depth"]
scored = [a for a in table["assay"].unique() if a != "mean"]
glue_text("ve_run", run_caption(result.folders, reference, "variant_effects", seed, unit="variants")
          + (" Every variant of each assay, in the full-length target sequence." if max_variants is None
             else f" At most {max_variants} variants per assay (a seeded random subset)."))
publish_figure("fig-variant-effects", variant_effect_curves(table), table)

best = (table.loc[table.groupby(["model", "assay"], sort=False)["spearman"].idxmax()]
        [["model", "assay", "layer", "relative_depth", "spearman"]]
        .rename(columns={"layer": "best layer", "relative_depth": "best l / L", "spearman": "best ρ"}))
final = (table[table["relative_depth"] == 1][["model", "assay", "spearman"]]
         .rename(columns={"spearman": "final-layer ρ"}))
best = best.merge(final, on=["model", "assay"])

# %% [markdown]
# **Data.** The assays are converted from the mavenn 1.1.4 package to ProteinGym's format
# (`data/dms/README.md`) and placed in the full-length target sequences of ProteinGym's
# reference file, with mutants numbered as ProteinGym numbers them. A set carries ProteinGym's
# id only when it is ProteinGym's own variant set; the others have ids of their own, and the
# reference table says how each relates to ProteinGym's assay. The same code reads real
# ProteinGym files (`-p reference=<DMS_substitutions.csv>`).

# ```{glue:md} ve_sets
# :format: myst
# ```

# %% tags=["remove-cell"]
def _sets_markdown() -> str:
    """One line per set of the reference table: size, region, how it relates to ProteinGym, orientation."""
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
        text += "" if row.DMS_id in scored else " *Not scored in this build* (`-p assays=all`)."
        lines.append(text)
    return "\n".join(lines)


glue_markdown("ve_sets", _sets_markdown())

# %% [markdown]
# ```{glue:figure} fig_variant_effects
# :name: fig-variant-effects
#
# (cf. paper Fig. 5) Spearman correlation between each layer's variant-effect scores and the measured fitness,
# against relative depth l / L, per assay and averaged as ProteinGym averages ("mean": the assays of each
# protein first, then the proteins); diamonds mark the final layer, bands are bootstrap 95% intervals over
# variants. {glue:text}`ve_run`
# ```
#
# ```{glue:md} links_fig_variant_effects
# :format: myst
# ```
#
# ```{glue:md} ve_proteingym
# :format: myst
# ```

# %% tags=["remove-cell"]
def _proteingym_sentence() -> str:
    """What the build measured on the sets that are ProteinGym's own, in one paragraph."""
    if "relation_to_proteingym" not in assay_table:
        return ""
    same = assay_table["relation_to_proteingym"].astype(str).str.startswith("same variant set")
    parts = []
    for assay in [a for a in scored if a in set(assay_table.loc[same, "DMS_id"])]:
        rows = final[final["assay"] == assay]
        length = int(assay_table.loc[assay_table["DMS_id"] == assay, "seq_len"].iloc[0])
        n = int(table.loc[table["assay"] == assay, "n_variants"].iloc[0])
        values = ", ".join(f"{m} {rho:.3f}" for m, rho in zip(rows["model"], rows["final-layer ρ"]))
        parts.append(f"on `{assay}` ({n:,} variants in the {length}-residue target) the final layers give ρ = {values}")
    if not parts:
        return ""
    return ("**On ProteinGym's own variant sets**, scored by ProteinGym's protocol, " + "; ".join(parts)
            + ". These are the numbers to set beside ProteinGym's published zero-shot scores for the same models.")


glue_markdown("ve_proteingym", _proteingym_sentence())

# %% [markdown]
# **Orientation.** Every `DMS_score` is oriented as ProteinGym orients it: higher means more of
# the activity the assay selects for, so that loss-of-function variants score lowest (for
# TDP-43 the selected activity is its toxicity to yeast: truncating nonsense variants are the
# least toxic). The "mean" panel averages assays oriented this way; the list of sets above
# says, per set, what a higher score means (the reference table's `selection_assay`).

# %% [markdown]
# **Singles and doubles.** Where an assay holds variants of several mutation depths, ρ is also
# computed for each depth alone: a model can rank double mutants worse (or better) than singles,
# and a mixed set hides that. Final layer and best layer per model:

# ```{glue:md} ve_depths
# :format: myst
# ```

# %% tags=["remove-cell"]
def _depths_markdown() -> str:
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


glue_markdown("ve_depths", _depths_markdown())

# %% [markdown]
# Reading the figure: UniRep's layers are stacked LSTMs, not blocks adding to a residual
# stream, so the output head was trained on the last layer only and the lens at earlier
# layers reads a representation in another basis; the curves say how much of the
# fitness-relevant signal is *linearly readable by the final head* at each depth, which is
# what the paper's Fig. 5 asks of ESM-2.
#
# ```{glue:md} ve_final_range
# :format: myst
# ```
#
# The best layer of each model on each assay, and the final layer's value:

# ```{glue:md} ve_best
# :format: myst
# ```

# %% tags=["remove-cell"]
def _final_range_sentence() -> str:
    """The final layers' ρ over every (model, scored set): its range and its sign, from this build."""
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


glue_markdown("ve_final_range", _final_range_sentence())

glue_markdown("ve_best", "\n".join(
    ["| model | set | best layer | best l / L | best ρ | final-layer ρ |", "|---|---|--:|--:|--:|--:|"]
    + [f"| {r['model']} | {r['assay'] if r['assay'] == 'mean' else '`' + r['assay'] + '`'} | {int(r['best layer'])} | "
       f"{r['best l / L']:.2f} | {r['best ρ']:.3f} | "
       f"{r['final-layer ρ']:.3f} |" for _, r in best.iterrows()]))

# %% [markdown]
# ## Does this build agree?
#
# The claim is tested on the "mean" curve, ProteinGym's average of Spearman ρ (the assays of each protein
# first, then the proteins; definition in {ref}`methods-claims`).
#
# ```{glue:md} ve_verdicts
# :format: myst
# ```

# %% tags=["remove-cell"]
glue_markdown("ve_verdicts", verdict_markdown(claims(result.folders), "e"))

# %% [markdown]
# ## Provenance

# %% tags=["hide-input"]
from plmdepth.publish.provenance import provenance

provenance(result.folders, "variant_effects")
