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
# (chapter-contributions)=
# # Residual contributions
#
# How much does each block change the residual stream it reads from? For every block l and
# every residue token (no masking) we measure the relative size of its update,
# ‖Δ_l‖ / ‖h_l‖ with Δ_l = h_{l+1} − h_l, and its cosine similarity with the stream. Where
# the block exposes its sublayers we split the update into attention, ‖a_l‖ / ‖h_l‖, and
# MLP, ‖m_l‖ / ‖h_l + a_l‖, each with its cosine to the stream it is added to. Small ratios
# in late blocks mean that the late blocks only nudge a representation that is already
# formed.
#
# AntiBERTy and Sapiens are post-LN (BERT, RoBERTa): a layer norm follows each sublayer's
# residual sum, so their sublayer ratios are computed on the pre-norm sums they enter and
# their block ratio compares consecutive normalised streams. ProteinMPNN's decoder layers
# are post-LN too; their "attention" is the neighbour-message update (sum of messages / 30)
# and their MLP the position-wise feed-forward. IgLM is pre-LN (GPT-2), like ESM-2.
# ProteinMPNN runs on the chains of six structures (`structure_fasta`), the others on the
# antibody heavy chains (`fasta`).
#
# Re-run on other models with `python -m plmdepth chapter contributions --add-model <names>` (or `--models` to replace the list).

# %% tags=["remove-cell"]
# Parameters shared by every chapter (models, data, seed, results folder, ...) come from
# notebooks/parameters.yml; the next cell holds this chapter's own.
from plmdepth.publish.chapter import shared_parameters

globals().update(shared_parameters())

# %% tags=["parameters"]
# (this chapter has no parameters of its own)

# %% tags=["hide-input"]
from plmdepth.publish.chapter import collect, glue_text, publish_figure
from plmdepth.publish.figures import contribution_curves
from plmdepth.publish.provenance import provenance_table, run_caption

# no masking here: a diffusion model is measured once (at the first ratio's folder)
result = collect("contributions", models, fasta, results_dir, seed=seed, n_sequences=n_sequences, device=device,
                 diffusion_ratios=[0.15], structure_models=structure_models, structure_fasta=structure_fasta)
table = result["contributions"]
glue_text("contrib_run", run_caption(result.folders, fasta, "contributions", seed))
publish_figure("fig-contrib-ratio", contribution_curves(table, "ratio_mean"), table)
publish_figure("fig-contrib-cosine", contribution_curves(table, "cosine_mean"), table)

# %% [markdown]
# ```{glue:figure} fig_contrib_ratio
# :name: fig-contrib-ratio
#
# Mean relative size of each block's update (left), its attention sublayer (middle) and its
# MLP sublayer (right), over all residue tokens, against relative depth (l+1) / L.
# {glue:text}`contrib_run`
# ```
#
# ```{glue:md} links_fig_contrib_ratio
# :format: myst
# ```
#
# ```{glue:figure} fig_contrib_cosine
# :name: fig-contrib-cosine
#
# Mean cosine similarity between each update and the residual stream it is added to.
# {glue:text}`contrib_run`
# ```
#
# ```{glue:md} links_fig_contrib_cosine
# :format: myst
# ```

# %% tags=["hide-input"]
table.drop(columns=["n_tokens"]).style.format(precision=3).hide(axis="index")

# %% [markdown]
# ## Provenance

# %% tags=["hide-input"]
provenance_table(result.folders, "contributions")
