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
# (chapter-cross-model)=
# # Across models
#
# ## What the paper reports
#
# Across six model families, three training objectives and several sizes, the paper sees
# the same depth-dependent patterns: later layers depend less on earlier computations and
# mainly refine the output distribution, and these effects are more pronounced in deeper
# models. This page puts every model of this build on one relative-depth axis $l / L$, gives
# each a *depth-efficiency* number, and tests the claims across them.
#
# ## Measurement
#
# The logit-lens KL to the final output, the output change when a block is skipped, and the
# size of each block's update, against relative depth. The depth-efficiency number of a
# model is the relative depth $d^*$ from which every layer is refinement: the smallest $l / L$
# such that the logit-lens KL at layer $l$ is below $\kappa$ and skipping any block $s \ge l$
# changes the output probabilities by less than $\tau$ (mean L2 change over the held-out
# positions; the maximum saturates at its ceiling $\sqrt{2}$). In "future" mode the last
# block's effect is zero by construction and is not counted. $1 - d^*$ is the share of the
# model's depth spent refining; $\tau$ and $\kappa$ are parameters of this chapter
# ({ref}`methods-claims`).
#
# This page reads the results folders written by the other chapters (and computes any that
# are missing, with the same parameters).

# %% tags=["parameters"]
# This chapter's parameters and their defaults: lib/plmdepth/publish/chapters.py
# (those every chapter shares: notebooks/parameters.yml). Injected values follow.
from plmdepth.publish.chapters import CHAPTERS

globals().update(CHAPTERS["cross-model"].defaults())
CHAPTERS["cross-model"].own_table()

# %% tags=["hide-input"]
from plmdepth.publish.chapter import collect_chapter, glue_markdown, glue_text, publish_figure, trained_only
from plmdepth.publish.chapter_text import twins_sentence
from plmdepth.publish.figures import depth_curves, depth_efficiency_chart
from plmdepth.publish.provenance import run_caption
from plmdepth.analysis.claims import claims
from plmdepth.analysis.depth_efficiency import EfficiencyParameters, depth_efficiency
from plmdepth.publish.verdicts import verdict_markdown

# each model is loaded once and measured three times
results = collect_chapter("cross-model", globals())
lens = results["logit_lens"]["logit_lens"]
skip = results["layer_skipping"]["skip_output"]
block = results["contributions"]["contributions"].query("part == 'block'")
glue_text("cross_run", run_caption(results["layer_skipping"].folders, fasta, "layer_skipping", seed) + " "
          + twins_sentence(skip))
publish_figure("fig-cross-kl", depth_curves(lens, "kl"), lens)
publish_figure("fig-cross-skip", depth_curves(skip, skippable_metric), skip)
publish_figure("fig-cross-ratio", depth_curves(block, "ratio_mean"), block)

params = EfficiencyParameters(tau=tau, kappa=kappa)
folders = results["layer_skipping"].folders
efficiency = depth_efficiency(folders, params)
publish_figure("fig-cross-efficiency", depth_efficiency_chart(efficiency), efficiency)
glue_markdown("cross_verdicts", verdict_markdown(claims(folders), "abcd"))

# %% [markdown]
# ```{glue:figure} fig_cross_kl
# :name: fig-cross-kl
#
# (cf. paper Fig. 3) Logit-lens $\mathrm{KL}(p_l \,\Vert\, p_L)$ of every model against relative depth. {glue:text}`cross_run`
# ```
#
# ```{glue:md} links_fig_cross_kl
# :format: myst
# ```
#
# ```{glue:figure} fig_cross_skip
# :name: fig-cross-skip
#
# (cf. paper Fig. 2) Output change when block $s$ is skipped (the chapter's `skippable_metric`, default the
# mean L2 change of output probabilities at future positions) against relative depth
# $s / L$; for L2 metrics the dashed line is their ceiling $\sqrt{2}$. Hollow markers: the last
# block, zero by construction in "future" mode. {glue:text}`cross_run`
# ```
#
# ```{glue:md} links_fig_cross_skip
# :format: myst
# ```
#
# ```{glue:figure} fig_cross_ratio
# :name: fig-cross-ratio
#
# Relative size of each block's update $\lVert \Delta_l \rVert / \lVert h_l \rVert$ against relative depth $(l+1) / L$.
# {glue:text}`cross_run`
# ```
#
# ```{glue:md} links_fig_cross_ratio
# :format: myst
# ```
#
# ```{glue:figure} fig_cross_efficiency
# :name: fig-cross-efficiency
#
# Depth efficiency: the share of each model's depth spent refining, $1 - d^*$, against its
# number of blocks (thresholds $\tau$ and $\kappa$ are this chapter's parameters).
# {glue:text}`cross_run`
# ```
#
# ```{glue:md} links_fig_cross_efficiency
# :format: myst
# ```
#
# The depth-efficiency number of every model:

# %% tags=["hide-input"]
trained_only(efficiency).style.format(precision=3).hide(axis="index")

# %% [markdown]
# ## Does this build agree?
#
# Each claim tested across the models of this page (definitions in {ref}`methods-claims`):
#
# ```{glue:md} cross_verdicts
# :format: myst
# ```

# %% [markdown]
# ## Provenance

# %% tags=["hide-input"]
from plmdepth.publish.provenance import provenance

provenance({m: r.folders for m, r in results.items()})
