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
# If a block can be removed without changing what later blocks compute, the network is not
# using it. We skip block s — its output is replaced by its input, h'_{s+1} := h_s — at
# the *intervened* positions and let the rest of the network run normally, then measure the
# change at held-out *future* positions F that were never intervened on:
#
# - on later computation (paper Fig. 1): for every later block j > s,
#   r(s, j) = max over p in F of ‖Δ_j − Δ'_j‖ / max(‖Δ_j‖, ε), with Δ_j = h_{j+1} − h_j;
# - on the output (paper Fig. 2): max over p in F of ‖softmax(z_p) − softmax(z'_p)‖₂, and the
#   mean KL(p ‖ p') over F.
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

# %% tags=["remove-cell"]
# Parameters shared by every chapter (models, data, seed, results folder, ...) come from
# notebooks/parameters.yml; the next cell holds this chapter's own.
from plmdepth.publish.chapter import shared_parameters

globals().update(shared_parameters())

# %% tags=["parameters"]
mode = "future"  # "future" (skip outside F, measure at F) or "current" (skip and measure everywhere)
aggregate = "effect_max"  # "effect_max" (paper) or "effect_mean"

# %% tags=["hide-input"]
from plmdepth.publish.chapter import collect, glue_text, publish_figure
from plmdepth.publish.figures import depth_curves, skip_heatmap
from plmdepth.publish.provenance import provenance_table, run_caption

result = collect("layer_skipping", models, fasta, results_dir, seed=seed, n_sequences=n_sequences,
                 mask_fraction=mask_fraction, mode=mode, device=device, diffusion_ratios=diffusion_ratios,
                 diffusion_models=diffusion_models, structure_models=structure_models,
                 structure_fasta=structure_fasta)
effect, output = result["skip_effect"], result["skip_output"]
glue_text("skip_run", run_caption(result.folders, fasta, "layer_skipping", seed) + f" Mode: {mode}.")
publish_figure("fig-skip-effect", skip_heatmap(effect, aggregate), effect)
publish_figure("fig-skip-output", depth_curves(output, "prob_l2_max"), output)
publish_figure("fig-skip-kl", depth_curves(output, "kl_mean"), output)

# %% [markdown]
# ```{glue:figure} fig_skip_effect
# :name: fig-skip-effect
#
# Propagated effect of skipping block s (rows) on the update of every later block j
# (columns), at held-out future positions, aggregated over units by the chapter's
# `aggregate` parameter (default: maximum). {glue:text}`skip_run`
# ```
#
# ```{glue:md} links_fig_skip_effect
# :format: myst
# ```
#
# ```{glue:figure} fig_skip_output
# :name: fig-skip-output
#
# Maximum change of the output probabilities (L2 distance between probability vectors) at
# future positions when block s is skipped, against relative depth s / L. {glue:text}`skip_run`
# ```
#
# ```{glue:md} links_fig_skip_output
# :format: myst
# ```
#
# ```{glue:figure} fig_skip_kl
# :name: fig-skip-kl
#
# Mean KL divergence from the model's output distribution to the skipped model's, at future
# positions, against relative depth s / L. {glue:text}`skip_run`
# ```
#
# ```{glue:md} links_fig_skip_kl
# :format: myst
# ```
#
# {numref}`fig-skip-effect` and {numref}`fig-skip-output` are the paper's Figs. 1–2 for the
# models run in this build. Numbers per skipped block:

# %% tags=["hide-input"]
output[["model", "skipped", "relative_depth", "prob_l2_max", "prob_l2_mean", "kl_mean", "n_units"]] \
    .style.format(precision=3).hide(axis="index")

# %% [markdown]
# ## Provenance

# %% tags=["hide-input"]
provenance_table(result.folders, "layer_skipping")
