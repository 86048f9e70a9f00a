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
# (chapter-layer-skipping)=
# # Layer skipping
#
# ## What the paper reports
#
# In ESM-2, skipping a late block changes what later blocks compute on held-out tokens much
# less than skipping an early one, increasingly so in larger models (its Fig. 1), and the
# output probabilities change less when later blocks are skipped (its Fig. 2): later layers
# mainly refine the prediction. It also sees localized low-effect regions among early
# layers, which it reads as stages of inference. The last section of this page tests each of
# these claims on the models of this build.
#
# ## Measurement
#
# If a block can be removed without changing what later blocks compute, the network is not
# using it. We skip block $s$ — its output is replaced by its input, $h'_{s+1} := h_s$ — at
# the *intervened* positions and let the rest of the network run normally, then measure the
# change at held-out *future* positions F that were never intervened on:
#
# - on later computation (paper Fig. 1): for every later block $j > s$,
#   $r(s, j) = \max_{p \in F} \lVert \Delta_j - \Delta'_j \rVert / \max(\lVert \Delta_j \rVert, \epsilon)$,
#   with $\Delta_j = h_{j+1} - h_j$;
# - on the output (paper Fig. 2): $\max_{p \in F} \lVert \mathrm{softmax}(z_p) - \mathrm{softmax}(z'_p) \rVert_2$,
#   and the mean $\mathrm{KL}(p \,\Vert\, p')$ over $F$.
#
# Masked models: the plan masks 15% of the residues and holds out half of them as F; every
# other residue is intervened on. Autoregressive models: for each of 4 split points t per
# sequence, residues before t are intervened on and residues from t on are F. Each
# intervention is one unit; units are aggregated by their maximum (the paper's choice,
# `effect_max`) and by their mean (`effect_mean`, more robust). The `mode` parameter
# `"current"` instead skips and measures at every residue.
#
# By construction, skipping the *last* block cannot change the future positions in
# `"future"` mode: no later block carries the change to them, so its output change is 0.
# The `"current"` mode measures what the last block does at the positions it is skipped at.
#
# Re-run on other models with `python -m plmdepth chapter layer-skipping --add-model <names>` (or `--models` to replace the list).

# %% tags=["parameters"]
# This chapter's parameters and their defaults: lib/plmdepth/publish/chapters.py
# (those every chapter shares: notebooks/parameters.yml). Injected values follow.
from plmdepth.publish.chapters import CHAPTERS

globals().update(CHAPTERS["layer-skipping"].defaults())
CHAPTERS["layer-skipping"].own_table()

# %% tags=["hide-input"]
from plmdepth.publish.chapter import collect_chapter, glue_markdown, glue_text, publish_figure, trained_only
from plmdepth.publish.chapter_text import noise_floor_sentence, part_skipping_sentence, twins_sentence
from plmdepth.publish.figures import depth_curves, part_skipping_curves, skip_heatmap, skip_output_curves
from plmdepth.analysis.sublayers import late_part_effects
from plmdepth.publish.provenance import run_caption
from plmdepth.analysis.claims import claims
from plmdepth.publish.verdicts import verdict_markdown

collected = collect_chapter("layer-skipping", globals())
result = collected["layer_skipping"]
effect, output = result["skip_effect"], result["skip_output"]
glue_text("skip_run", run_caption(result.folders, fasta, "layer_skipping", seed) + f" Mode: {mode}.")
glue_text("skip_twins", twins_sentence(output))
glue_text("skip_floor", noise_floor_sentence(collected["noise_floor"]["noise_floor"], output))
publish_figure("fig-skip-effect", skip_heatmap(effect, aggregate), effect)
publish_figure("fig-skip-output", skip_output_curves(output), output)
publish_figure("fig-skip-kl", depth_curves(output, "kl_mean"), output)
parts = collected["part_skipping"]
glue_text("parts_run", run_caption(parts.folders, fasta, "part_skipping", seed))
publish_figure("fig-skip-parts", part_skipping_curves(parts["part_skipping"]), parts["part_skipping"])
late_parts = late_part_effects(parts["part_skipping_per_sequence"])
glue_text("parts_late", part_skipping_sentence(late_parts))

# %% [markdown]
# ```{glue:figure} fig_skip_effect
# :name: fig-skip-effect
#
# (cf. paper Fig. 1) Propagated effect of skipping block s (rows) on the update of every later block j
# (columns), at held-out future positions, aggregated over units by the chapter's
# `aggregate` parameter (default: maximum); one panel per model, all on one colour scale
# starting at 0 (an architecture run untrained only: the mean over its seeds). {glue:text}`skip_run`
# ```
#
# ```{glue:md} links_fig_skip_effect
# :format: myst
# ```
#
# ```{glue:figure} fig_skip_output
# :name: fig-skip-output
#
# (cf. paper Fig. 2) Change of the output probabilities (L2 distance between probability vectors, at most √2,
# dashed) at future positions when block s is skipped, against relative depth s / L: maximum
# over units (left) and mean over units (right). Hollow markers: the last block, whose effect
# is zero by construction in "future" mode. {glue:text}`skip_twins` {glue:text}`skip_run`
# ```
#
# ```{glue:md} links_fig_skip_output
# :format: myst
# ```
#
# ```{glue:figure} fig_skip_kl
# :name: fig-skip-kl
#
# (cf. paper Fig. 2) Mean KL divergence from the model's output distribution to the skipped model's, at future
# positions, against relative depth s / L; hollow markers as in {numref}`fig-skip-output`.
# {glue:text}`skip_twins` {glue:text}`skip_run`
# ```
#
# ```{glue:md} links_fig_skip_kl
# :format: myst
# ```
#
# {numref}`fig-skip-effect` and {numref}`fig-skip-output` are the paper's Figs. 1–2 for the
# models run in this build. {glue:text}`skip_floor` Numbers per skipped block:

# %% tags=["hide-input"]
trained_only(output)[["model", "skipped", "relative_depth", "prob_l2_max", "prob_l2_mean", "kl_mean", "n_units"]] \
    .style.format(precision=3).hide(axis="index")

# %% [markdown]
# ## Which sublayer: attention or MLP
#
# A block is an attention sublayer and an MLP, each adding its update to the stream. Following
# Csordás et al., each is also skipped alone — its update set to zero, the rest of the block run as
# it is — at every residue, in two ways: the *total* effect (every later block recomputed, as
# above) and the *direct* effect (the update taken out of the last residual stream, nothing
# recomputed: what the update writes straight into the output). Direct effects are defined for
# pre-LN and parallel blocks, whose stream carries each update to the output unnormalised; a
# post-LN model shows its total effects only. Definitions: {ref}`methods-part-skipping`.
#
# ```{glue:figure} fig_skip_parts
# :name: fig-skip-parts
#
# Output change (L2 distance of the output probability vectors, max over residues, mean over
# sequences) when block s (grey), only its attention (blue) or only its MLP (orange) is skipped at
# every residue, against relative depth s / L: total effect (solid, later blocks rerun) and direct
# effect (dashed, nothing rerun; none for post-LN models); one panel per trained model. At the last
# block the two coincide for the block and its MLP: nothing follows them. {glue:text}`parts_run`
# ```
#
# ```{glue:md} links_fig_skip_parts
# :format: myst
# ```
#
# {glue:text}`parts_late`

# %% [markdown]
# ## Does this build agree?
#
# Each claim is tested by a number computed from this build's results (definitions in
# {ref}`methods-claims`); the front page collects the verdicts of every chapter.
#
# ```{glue:md} skip_verdicts
# :format: myst
# ```

# %% tags=["remove-cell"]
glue_markdown("skip_verdicts", verdict_markdown(claims(result.folders), "abcd"))

# %% [markdown]
# ## Provenance

# %% tags=["hide-input"]
from plmdepth.publish.provenance import provenance

provenance(result.folders, "layer_skipping")
