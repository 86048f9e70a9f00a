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
# (chapter-lens-or-layers)=
# # Is it the lens or the layers?
#
# ## The question
#
# The paper's reading that late layers "mainly refine" rests on the logit lens: each layer's
# residual stream is read through the model's final head. A layer that holds its prediction
# in another basis then looks far from the output although the information is there, so the
# logit lens can make middle layers look less finished than they are. The **tuned lens**
# (Belrose et al. 2023) removes that objection: it learns, for every layer $l$, one affine
# translator $h \mapsto h + A_l h + b_l$ in front of the same head, trained to bring layer $l$'s
# distribution to the final one. This chapter reads the models of the depth chapters through both
# lenses on the same held-out sequences, and asks what a user loses by running fewer blocks: in
# top-1 accuracy, and, for the variant-effect models of {ref}`chapter-variant-effects`, in the
# ranking of variants.
#
# ## Measurement
#
# - **Tuned lens** (`lib/plmdepth/probes/tuned_lens.py`). The translators start at the identity
#   (so the untrained tuned lens *is* the logit lens) and are fitted with the model frozen, on a
#   seeded half of the chapter's sequences (`train_fraction`), by minimising
#   $\sum_l \mathrm{KL}(p_L \Vert p_l^{\text{tuned}})$ at the evaluated positions (the masked
#   residues of masked models, every next-residue prediction of autoregressive ones). Both lenses
#   are then read on the other half; the KL shown is the logit lens chapter's
#   $\mathrm{KL}(p_l \Vert p_L)$, so the numbers compare with it. The translators are saved in
#   each results folder (`tuned_lens_translators.pt`).
# - **Truncation frontier.** Dropping the last $L-k$ blocks and reading the stream after block
#   $k$ with the final norm and head *is* the logit lens at layer $k$; reading it through layer
#   $k$'s translator is early exit with a learned readout. Keeping $k$ of $L$ blocks runs the
#   share $k/L$ of the blocks (the share of their multiply-adds is computed below from their
#   weights). For each $k$ the table gives the top-1 accuracy kept, relative to the full model on
#   the same positions. The effect of skipping one block alone, from {ref}`chapter-layer-skipping`,
#   is drawn on the same axes. Against what: two trivial predictors fitted on the training half and
#   scored at the same held-out positions, the most frequent residue ("unigram") and the most frequent
#   residue at each residue index ("position") ({ref}`Methods <methods-trivial-baselines>`).
# - **Variant effects on the frontier.** The variant-effect models of {ref}`chapter-variant-effects`
#   (the UniRep models; their runs, with that chapter's parameters, are reused) score every variant
#   from every layer's readout through the final head: the layer-$k$ score is the score of the
#   model cut after $k$ layers. No translator is trained for them, so this part reads the
#   frontier through the final head only.
#
# Re-run on other models with `python -m plmdepth chapter lens-or-layers --add-model <names>`.

# %% tags=["parameters"]
# This chapter's parameters and their defaults: lib/plmdepth/publish/chapters.py
# (those every chapter shares: notebooks/parameters.yml). Injected values follow.
from plmdepth.publish.chapters import CHAPTERS

globals().update(CHAPTERS["lens-or-layers"].defaults())
CHAPTERS["lens-or-layers"].own_table()

# %% tags=["hide-input"]
from plmdepth.analysis.truncation import baseline_rules, lens_and_skip_kl, with_accuracy_kept
from plmdepth.publish.chapter import collect_chapter, glue_markdown, glue_text, publish_figure
from plmdepth.publish.chapter_text import twins_sentence
from plmdepth.publish.figures import lens_curves
from plmdepth.publish.provenance import run_caption

# the tuned lens, and, from the layer-skipping and variant-effects chapters' runs (reused), skipping one
# block alone and the variant effects (with the variant-effects chapter's parameters, changed by `variant_effects`)
runs = collect_chapter("lens-or-layers", globals())
result, skip_result, ve_result = runs["tuned_lens"], runs["layer_skipping"], runs["variant_effects"]
frame = with_accuracy_kept(result["tuned_lens"])
caption = run_caption(result.folders, fasta, "tuned_lens", seed)
held_out = result["tuned_lens_split"]
n_held = int((held_out["split"] == "held_out").sum() / held_out["model"].nunique())
glue_text("tl_run", caption + f" Read on the {n_held} held-out sequences of each model's seeded split. "
          + twins_sentence(frame))
kl_frame = lens_and_skip_kl(frame, skip_result["skip_output"], kl_direction)
publish_figure("fig-tuned-lens-kl", lens_curves(kl_frame, "kl", y_title=["KL to the full", "output [nats]"]),
               kl_frame)
rules = baseline_rules(result["tuned_lens_baselines"], frame)  # each model's trivial baselines, in its panel
publish_figure("fig-truncation-frontier",
               lens_curves(frame, "accuracy_kept", x_title="blocks kept, k / L",
                           y_title=["top-1 accuracy kept", "(share of the full model's)"], baselines=rules), frame)

# %% tags=["hide-input"]
# Variant effects on the frontier: the variant-effects chapter's runs (collected above)
from plmdepth.publish.chapters import parameters_for
from plmdepth.publish.figures import truncation_spearman_curves

ve = parameters_for("variant-effects", globals(), variant_effects)
ve_table = ve_result["variant_effects"]
glue_text("tl_ve_run", run_caption(ve_result.folders, ve["reference"], "variant_effects", ve["seed"], unit="variants")
          + (" Every variant of each assay." if ve["max_variants"] is None
             else f" At most {ve['max_variants']} variants per assay (a seeded random subset)."))
publish_figure("fig-truncation-variant-effects", truncation_spearman_curves(ve_table), ve_table)

# %% [markdown]
# ```{glue:figure} fig_tuned_lens_kl
# :name: fig-tuned-lens-kl
#
# KL divergence from the model's output of each layer's distribution, read through the model's own
# head (logit lens: the model cut after block l) and through the layer's trained affine translator
# (tuned lens), $\mathrm{KL}(p_l \Vert p_L)$ (the chapter's `kl_direction`; `kl_reverse` draws
# $\mathrm{KL}(p_L \Vert p_l)$), against relative depth l / L, one panel per model; and,
# on the same axes, of the output with only block s skipped (at s / L, from
# {ref}`chapter-layer-skipping`; there the KL is $\mathrm{KL}(p_L \Vert p_{\setminus s})$, mean over
# sequences, on all sequences of the plan). {glue:text}`tl_run`
# ```
#
# ```{glue:md} links_fig_tuned_lens_kl
# :format: myst
# ```
#
# ```{glue:figure} fig_truncation_frontier
# :name: fig-truncation-frontier
#
# The truncation frontier: top-1 accuracy (true residue) of the model cut after block k, as a share
# of the full model's, against the share of blocks kept, with the final head alone (logit lens) or
# a learned translator in front of it (tuned lens); keeping k of L blocks runs the share k / L of the
# blocks (of their multiply-adds where the blocks are of one size, as the table below says per model).
# The dashed rules are each model's trivial baselines on the same held-out positions, as a share of its
# full model's accuracy: "unigram", the most frequent residue of the training sequences, and "position",
# the most frequent residue at each residue index ({ref}`Methods <methods-trivial-baselines>`).
# {glue:text}`tl_run`
# ```
#
# ```{glue:md} links_fig_truncation_frontier
# :format: myst
# ```
#
# ```{glue:figure} fig_truncation_variant_effects
# :name: fig-truncation-variant-effects
#
# Variant effects on the truncation frontier: Spearman correlation between the measured fitness and the
# variant-effect scores of the model cut after k of its L layers (its layer-k readout through the final head,
# as in {ref}`chapter-variant-effects`), against the share of layers kept k / L, one panel per assay and
# ProteinGym's average ("mean"); diamonds mark the full model, bands are bootstrap 95% intervals over
# variants, the dashed rule marks the cut at three quarters. UniRep-1900 has one layer, so only its full
# model is drawn. {glue:text}`tl_ve_run`
# ```
#
# ```{glue:md} links_fig_truncation_variant_effects
# :format: myst
# ```

# %% tags=["remove-cell"]
from plmdepth.analysis.truncation import TruncationParameters, lens_or_layers, weight_shares
from plmdepth.publish.chapter_text import truncation_accuracy_markdown, truncation_spearman_markdown
from plmdepth.publish.verdicts import lens_or_layers_markdown

verdict = lens_or_layers(result.folders + ve_result.folders,
                         TruncationParameters(kept_threshold=kept_threshold, basis_share=basis_share))
glue_markdown("tl_table", truncation_accuracy_markdown(verdict.accuracy, weight_shares(result.results)))
glue_markdown("tl_ve_table", truncation_spearman_markdown(verdict.spearman, weight_shares(ve_result.results)))
glue_markdown("tl_verdict", lens_or_layers_markdown(verdict))

# %% [markdown]
# ## What this build found
#
# Per model, on the held-out sequences: KL to the output at half and three quarters of depth through
# both lenses, the share of the logit lens's KL that the translators remove at three quarters, and the
# top-1 accuracy kept when only the first three quarters of the blocks run (the layer at depth d is
# round(d·L), halves rounded up); then the better of the two trivial baselines with its top-1
# accuracy, and the share of the full model's gain over that baseline the cut at three quarters keeps,
# (accuracy at ¾ − baseline) / (full accuracy − baseline).
#
# ```{glue:md} tl_table
# :format: myst
# ```
#
# Per variant-effect model and set: Spearman ρ of the full model, and of the model cut after three
# quarters and half of its layers (read through the final head), and the share of the full model's ρ
# the cut at three quarters keeps (the bootstrap intervals are the bands of
# {numref}`fig-truncation-variant-effects`). Under the table, the share of the layers' weights the cuts
# keep: UniRep's first layer reads the 10-wide embedding, so it is smaller than the others and k of L
# layers hold less than k / L of the multiply-adds.
#
# ```{glue:md} tl_ve_table
# :format: myst
# ```
#
# ## Does "late layers mainly refine" survive a learned readout?
#
# ```{glue:md} tl_verdict
# :format: myst
# ```

# %% [markdown]
# ## Provenance

# %% tags=["hide-input"]
from plmdepth.publish.provenance import provenance

provenance({"tuned_lens": result.folders, "layer_skipping": skip_result.folders, "variant_effects": ve_result.folders})
