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
# ## What the paper reports
#
# Among its probing measurements the paper quantifies how much each layer contributes to the
# residual stream; of its figures we hold only those of the other chapters (layer skipping,
# logit lens, variant effects), whose common reading is that later layers mainly refine the
# prediction. In large language models, later layers were found to change the residual
# stream relatively less than earlier ones {cite}`csordas2025depth`. The last section of this
# page says whether the models of this build do.
#
# ## Measurement
#
# How much does each block change the residual stream it reads from? For every block l and
# every residue token (no masking) we measure the relative size of its update,
# $\lVert \Delta_l \rVert / \lVert h_l \rVert$ with $\Delta_l = h_{l+1} - h_l$, and its cosine
# similarity with the stream. Where the block exposes its sublayers we split the update into
# attention, $\lVert a_l \rVert / \lVert h_l \rVert$, and MLP,
# $\lVert m_l \rVert / \lVert h_l + a_l \rVert$, each with its cosine to the stream it is
# added to. Small ratios
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

# %% tags=["parameters"]
# This chapter's parameters and their defaults: lib/plmdepth/publish/chapters.py
# (those every chapter shares: notebooks/parameters.yml). Injected values follow.
from plmdepth.publish.chapters import CHAPTERS

globals().update(CHAPTERS["contributions"].defaults())
CHAPTERS["contributions"].own_table()

# %% tags=["hide-input"]
from plmdepth.publish.chapter import collect_chapter, glue_markdown, glue_text, publish_figure, trained_only
from plmdepth.publish.chapter_text import twins_sentence
from plmdepth.publish.figures import contribution_curves
from plmdepth.publish.provenance import run_caption
from plmdepth.analysis.claims import update_ratios
from plmdepth.publish.verdicts import updates_markdown

# no masking here: a diffusion model is measured once (chapters.CONTRIBUTIONS_RATIO names its folder)
result = collect_chapter("contributions", globals())["contributions"]
table = result["contributions"]
glue_text("contrib_run", run_caption(result.folders, fasta, "contributions", seed) + " " + twins_sentence(table))
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
trained_only(table).drop(columns=["n_tokens"]).style.format(precision=3).hide(axis="index")

# %% [markdown]
# ## Does this build agree?
#
# For each model, the mean relative update $\lVert \Delta_l \rVert / \lVert h_l \rVert$ of the
# later half of its blocks divided by that of the earlier half (the middle block left out when
# their number is odd); below 1, later blocks change the stream less than earlier ones. The
# interval resamples the sequences; the untrained twins' number is their mean and range over
# seeds, and "beyond architecture" means the trained model's whole interval lies below that range.
#
# ```{glue:md} contrib_verdicts
# :format: myst
# ```

# %% tags=["remove-cell"]
glue_markdown("contrib_verdicts", updates_markdown(update_ratios(result.folders)))

# %% [markdown]
# ## Provenance

# %% tags=["hide-input"]
from plmdepth.publish.provenance import provenance

provenance(result.folders, "contributions")
