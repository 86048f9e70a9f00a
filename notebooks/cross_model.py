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
# training objective can be compared (SPEC M6): the logit-lens KL to the final output, the
# output change when a block is skipped, and the size of each block's update. The last
# table gives, per model, the fraction of blocks whose skipping changes the output
# probabilities by less than a threshold (maximum L2 change over future positions): the
# *skippable fraction*.
#
# This page reads the results folders written by the other chapters (and computes any that
# are missing, with the same parameters).

# %% tags=["parameters"]
models = "antiberty,sapiens-vh,iglm,iglm-s"
fasta = "data/antibody_vh.fasta"
structure_models = "proteinmpnn"  # structure-conditioned models, run on the chains of their structures
structure_fasta = "data/structures/structures.fasta"  # chains of data/structures/*.pdb
n_sequences = 200
seed = 0
threshold = 0.1  # a block is "skippable" if skipping it changes output probabilities by less (L2)
skippable_metric = "prob_l2_max"  # or "prob_l2_mean"
diffusion_ratios = [0.15, 0.5, 0.9]
diffusion_models = ""
results_dir = "results"

# %% tags=["hide-input"]
import pandas as pd

from plmdepth.chapter import collect, glue_text, publish_figure
from plmdepth.figures import depth_curves
from plmdepth.provenance import provenance_table, run_caption

common = dict(seed=seed, n_sequences=n_sequences, diffusion_models=diffusion_models,
              structure_models=structure_models, structure_fasta=structure_fasta)
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
# {download}`SVG <../figures/fig-cross-kl.svg>` · {download}`PNG <../figures/fig-cross-kl.png>` · {download}`data (CSV) <../figures/fig-cross-kl.csv>` ·
# {download}`interactive (HTML) <../figures/fig-cross-kl.html>`. {glue:text}`cite_fig_cross_kl`
#
# ```{glue:figure} fig_cross_skip
# :name: fig-cross-skip
#
# Output change when block s is skipped (the chapter's `skippable_metric`, default the
# maximum L2 change of output probabilities at future positions) against relative depth
# s / L. {glue:text}`cross_run`
# ```
#
# {download}`SVG <../figures/fig-cross-skip.svg>` · {download}`PNG <../figures/fig-cross-skip.png>` · {download}`data (CSV) <../figures/fig-cross-skip.csv>` ·
# {download}`interactive (HTML) <../figures/fig-cross-skip.html>`. {glue:text}`cite_fig_cross_skip`
#
# ```{glue:figure} fig_cross_ratio
# :name: fig-cross-ratio
#
# Relative size of each block's update ‖Δ_l‖ / ‖h_l‖ against relative depth (l+1) / L.
# {glue:text}`cross_run`
# ```
#
# {download}`SVG <../figures/fig-cross-ratio.svg>` · {download}`PNG <../figures/fig-cross-ratio.png>` · {download}`data (CSV) <../figures/fig-cross-ratio.csv>` ·
# {download}`interactive (HTML) <../figures/fig-cross-ratio.html>`. {glue:text}`cite_fig_cross_ratio`
#
# Skippable fraction per model (threshold and metric are the chapter's parameters):

# %% tags=["hide-input"]
skippable.style.format({"skippable_fraction": "{:.2f}"}).hide(axis="index")

# %% [markdown]
# ## Provenance

# %% tags=["hide-input"]
pd.concat([provenance_table(r.folders, m).assign(measurement=m) for m, r in results.items()], ignore_index=True)
