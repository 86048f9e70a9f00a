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
# mutation depth where an assay holds singles and doubles; the coloured bands are bootstrap 95%
# intervals over variants. The grey band is the permutation null: the 95% range of ρ when the
# measured fitness is shuffled among an assay's variants (`n_permutations` shuffles, the same at
# every layer): where ρ falls 95% of the time if the scores do not rank the variants by fitness
# at all (`p_permutation` in the downloadable table is the two-sided p-value). The "mean" panel
# averages as ProteinGym does: first the assays of each protein, then the proteins (its null and
# intervals average the assays' replicates with the same weights).
#
# **Models.** The only general-protein language models that can be run offline are the
# UniRep models (multiplicative LSTMs trained on UniRef50; 4, 4 and 1 layers). The antibody
# models of the other chapters were trained only on antibody variable domains; their scores
# on these proteins would measure nothing about depth, so they are not run here. ESM-2 runs
# with `python -m plmdepth chapter variant-effects --add-model esm2_t12_35M` where the model
# hub is reachable. UniRep's first layer maps the 10-wide embeddings to the hidden width, so
# the lens reads layers 1..L (UniRep-1900, with one layer, has a single point).


# %% tags=["parameters"]
# This chapter's parameters and their defaults: lib/plmdepth/publish/chapters.py
# (those every chapter shares: notebooks/parameters.yml). Injected values follow.
from plmdepth.publish.chapters import CHAPTERS

globals().update(CHAPTERS["variant-effects"].defaults())
CHAPTERS["variant-effects"].own_table()

# %% tags=["hide-input"]
import pandas as pd

from plmdepth.analysis.variant_effects import best_layers
from plmdepth.publish.chapter import collect_chapter, glue_markdown, glue_text, publish_figure
from plmdepth.publish.chapter_text import (assay_sets_markdown, best_layers_markdown, final_range_sentence,
                                           mutation_depths_markdown, null_band_sentence, proteingym_sentence)
from plmdepth.publish.figures import variant_effect_curves
from plmdepth.publish.provenance import run_caption
from plmdepth.analysis.claims import claims
from plmdepth.publish.verdicts import verdict_markdown

assay_table = pd.read_csv(reference)
result = collect_chapter("variant-effects", globals())["variant_effects"]
table = result["variant_effects"]
by_depth = result["variant_effects_by_depth"]
scored = [a for a in table["assay"].unique() if a != "mean"]
glue_text("ve_run", (null_band_sentence(result.tables.get("variant_effects_replicates")) + " "
                    + run_caption(result.folders, reference, "variant_effects", seed, unit="variants")
                    + (" Every variant of each assay, in the full-length target sequence." if max_variants is None
                       else f" At most {max_variants} variants per assay (a seeded random subset).")).lstrip())
publish_figure("fig-variant-effects", variant_effect_curves(table), table)

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
glue_markdown("ve_sets", assay_sets_markdown(assay_table, scored))

# %% [markdown]
# ```{glue:figure} fig_variant_effects
# :name: fig-variant-effects
#
# (cf. paper Fig. 5) Spearman correlation between each layer's variant-effect scores and the measured fitness,
# against relative depth l / L, per assay and averaged as ProteinGym averages ("mean": the assays of each
# protein first, then the proteins); diamonds mark the final layer, coloured bands are bootstrap 95% intervals
# over variants. {glue:text}`ve_run`
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
glue_markdown("ve_proteingym", proteingym_sentence(assay_table, table))

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
glue_markdown("ve_depths", mutation_depths_markdown(by_depth))

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
glue_markdown("ve_final_range", final_range_sentence(table))
glue_markdown("ve_best", best_layers_markdown(best_layers(table)))

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
