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
# Every model on one relative-depth axis l / L, so that models of different depth and
# training objective can be compared: the logit-lens KL to the final output, the
# output change when a block is skipped, and the size of each block's update. The last
# table gives, per model, the fraction of blocks whose skipping changes the output
# probabilities by less than a threshold (maximum L2 change over future positions): the
# *skippable fraction*.
#
# This page reads the results folders written by the other chapters (and computes any that
# are missing, with the same parameters).

# %% tags=["remove-cell"]
# Parameters shared by every chapter (models, data, seed, results folder, ...) come from
# notebooks/parameters.yml; the next cell holds this chapter's own.
from plmdepth.publish.chapter import shared_parameters

globals().update(shared_parameters())

# %% tags=["parameters"]
threshold = 0.1  # a block is "skippable" if skipping it changes output probabilities by less (L2)
skippable_metric = "prob_l2_max"  # or "prob_l2_mean"

# %% tags=["hide-input"]
import pandas as pd

from plmdepth.publish.chapter import collect, glue_text, load_models, publish_figure
from plmdepth.publish.figures import depth_curves
from plmdepth.publish.provenance import provenance_table, run_caption

# each model is loaded once and measured three times
common = dict(seed=seed, n_sequences=n_sequences, device=device, structure_fasta=structure_fasta,
              structure_models=load_models(structure_models, device))
models = load_models(models, device, diffusion_models)
results = {
    "logit_lens": collect("logit_lens", models, fasta, results_dir, diffusion_ratios=diffusion_ratios, **common),
    "layer_skipping": collect("layer_skipping", models, fasta, results_dir, diffusion_ratios=diffusion_ratios,
                              **common),
    "contributions": collect("contributions", models, fasta, results_dir, diffusion_ratios=[0.15], **common),
}
lens = results["logit_lens"]["logit_lens"]
skip = results["layer_skipping"]["skip_output"]
block = results["contributions"]["contributions"].query("part == 'block'")
glue_text("cross_run", run_caption(results["layer_skipping"].folders, fasta, "layer_skipping", seed))
publish_figure("fig-cross-kl", depth_curves(lens, "kl"), lens)
publish_figure("fig-cross-skip", depth_curves(skip, skippable_metric), skip)
publish_figure("fig-cross-ratio", depth_curves(block, "ratio_mean"), block)

skippable = (skip.assign(skippable=skip[skippable_metric] < threshold)
             .groupby("model", sort=False)
             .agg(blocks=("skipped", "size"), skippable_blocks=("skippable", "sum"))
             .assign(skippable_fraction=lambda t: t.skippable_blocks / t.blocks)
             .reset_index())

# %% [markdown]
# ```{glue:figure} fig_cross_kl
# :name: fig-cross-kl
#
# Logit-lens KL(p_l ‖ p_L) of every model against relative depth. {glue:text}`cross_run`
# ```
#
# ```{glue:md} links_fig_cross_kl
# :format: myst
# ```
#
# ```{glue:figure} fig_cross_skip
# :name: fig-cross-skip
#
# Output change when block s is skipped (the chapter's `skippable_metric`, default the
# maximum L2 change of output probabilities at future positions) against relative depth
# s / L. {glue:text}`cross_run`
# ```
#
# ```{glue:md} links_fig_cross_skip
# :format: myst
# ```
#
# ```{glue:figure} fig_cross_ratio
# :name: fig-cross-ratio
#
# Relative size of each block's update ‖Δ_l‖ / ‖h_l‖ against relative depth (l+1) / L.
# {glue:text}`cross_run`
# ```
#
# ```{glue:md} links_fig_cross_ratio
# :format: myst
# ```
#
# Skippable fraction per model (threshold and metric are the chapter's parameters):

# %% tags=["hide-input"]
skippable.style.format({"skippable_fraction": "{:.2f}"}).hide(axis="index")

# %% [markdown]
# ## Provenance

# %% tags=["hide-input"]
pd.concat([provenance_table(r.folders, m).assign(measurement=m) for m, r in results.items()], ignore_index=True)
