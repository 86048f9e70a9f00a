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
# Every variant is scored from the lens at each layer $l$:
#
# - autoregressive models: $\log P_l(\text{mutant}) - \log P_l(\text{wild type})$, the sum of
#   next-residue log-probabilities read at layer $l$;
# - masked models: the masked-marginal score
#   $\sum \log p_l(\text{mut}) - \log p_l(\text{wt})$ at each mutated position, masked one at
#   a time (the `scoring` parameter selects `wt_marginal`, one unmasked pass, instead).
#
# Scores are compared with the measured fitness by Spearman's ρ per assay; the bands are
# bootstrap 95% intervals over variants, and the "mean" panel averages the assays.
#
# **Models.** The only general-protein language models that can be run offline are the
# UniRep models (multiplicative LSTMs trained on UniRef50; 4, 4 and 1 layers). The antibody
# models of the other chapters were trained only on antibody variable domains; their scores
# on these proteins would measure nothing about depth, so they are not run here. ESM-2 runs
# with `python -m plmdepth chapter variant-effects --add-model esm2_t12_35M` where the model
# hub is reachable. UniRep's first layer maps the 10-wide embeddings to the hidden width, so
# the lens reads layers 1..L (UniRep-1900, with one layer, has a single point).
#
# **Data.** Four assays converted from the mavenn 1.1.4 package to ProteinGym's format
# (`data/dms/README.md`): TDP-43 toxicity (Bolognesi 2019), Aβ42 nucleation (Seuma 2022),
# GB1 binding double mutants (Olson 2014) and GB1 stability (Nisthal 2019). The same code
# reads real ProteinGym files (`-p reference=<DMS_substitutions.csv>`).


# %% tags=["remove-cell"]
# Parameters shared by every chapter (models, data, seed, results folder, ...) come from
# notebooks/parameters.yml; the next cell holds this chapter's own.
from plmdepth.publish.chapter import shared_parameters

globals().update(shared_parameters())

# %% tags=["parameters"]
models = "unirep-64,unirep-256,unirep-1900"
reference = "data/dms/DMS_substitutions.csv"  # ProteinGym-style reference table; assay CSVs beside it
max_variants = 1000  # seeded random subset of each larger assay (None: all variants)
scoring = "auto"  # auto, masked_marginal, wt_marginal or log_likelihood_ratio
n_bootstrap = 200

# %% tags=["hide-input"]
from plmdepth.publish.chapter import collect, glue_markdown, glue_text, publish_figure
from plmdepth.publish.figures import variant_effect_curves
from plmdepth.publish.provenance import provenance_table, run_caption
from plmdepth.publish.verdicts import claims, verdict_markdown

result = collect("variant_effects", models, reference, results_dir, device=device, max_variants=max_variants,
                 seed=seed, scoring=scoring, n_bootstrap=n_bootstrap)
table = result["variant_effects"]
glue_text("ve_run", run_caption(result.folders, reference, "variant_effects", seed, unit="variants")
          + f" At most {max_variants} variants per assay.")
publish_figure("fig-variant-effects", variant_effect_curves(table), table)

best = (table.loc[table.groupby(["model", "assay"], sort=False)["spearman"].idxmax()]
        [["model", "assay", "layer", "relative_depth", "spearman"]]
        .rename(columns={"layer": "best layer", "relative_depth": "best l / L", "spearman": "best ρ"}))
final = table[table["relative_depth"] == 1][["model", "assay", "spearman"]].rename(columns={"spearman": "final-layer ρ"})
best = best.merge(final, on=["model", "assay"])

# %% [markdown]
# ```{glue:figure} fig_variant_effects
# :name: fig-variant-effects
#
# (cf. paper Fig. 5) Spearman correlation between each layer's variant-effect scores and the measured fitness,
# against relative depth l / L, per assay and averaged over assays ("mean"); diamonds mark
# the final layer, bands are bootstrap 95% intervals over variants. {glue:text}`ve_run`
# ```
#
# ```{glue:md} links_fig_variant_effects
# :format: myst
# ```
#
# **Orientation.** Every `DMS_score` is oriented as ProteinGym orients it: higher means more of
# the activity the assay selects for, so that loss-of-function variants score lowest (for
# TDP-43 the selected activity is its toxicity to yeast: truncating nonsense variants are the
# least toxic). The "mean" panel averages assays oriented this way. Per assay, as the
# reference table records it (where it has the columns `selection_assay`, `raw_score` and
# `DMS_score_sign`, as this project's conversion writes them):

# %% tags=["hide-input"]
import pandas as pd  # noqa: E402

assays_table = pd.read_csv(reference)
columns = {"DMS_id": "assay", "selection_assay": "higher DMS_score means more", "raw_score": "source score",
           "DMS_score_sign": "sign applied"}
(assays_table[[c for c in columns if c in assays_table]].rename(columns=columns).style.hide(axis="index")
 .set_properties(**{"text-align": "left"}))

# %% [markdown]
# Reading the figure: UniRep's layers are stacked LSTMs, not blocks adding to a residual
# stream, so the output head was trained on the last layer only and the lens at earlier
# layers reads a representation in another basis; the curves say how much of the
# fitness-relevant signal is *linearly readable by the final head* at each depth, which is
# what the paper's Fig. 5 asks of ESM-2. Zero-shot correlations of these small models are
# modest, and they differ in sign between assays whose scores measure different activities.
#
# The best layer of each model on each assay, and the final layer's value:

# %% tags=["hide-input"]
best.style.format({"best l / L": "{:.2f}", "best ρ": "{:.3f}", "final-layer ρ": "{:.3f}"}).hide(axis="index")

# %% [markdown]
# ## Does this build agree?
#
# The claim is tested on the mean Spearman ρ over assays (definition in {ref}`methods-claims`).
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
