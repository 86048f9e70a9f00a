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
# (chapter-depth-ladder)=
# # Depth as the only variable
#
# ## Why
#
# The paper's third claim, that the depth effects "are increasingly pronounced in deeper
# models", is read off published checkpoints whose width, heads, data and training length all
# change with depth (ESM-2 8M: 6 blocks of width 320; 15B: 48 of 5120). No published family
# varies depth alone. This chapter trains one: a ladder of masked language models of ESM-2's
# architecture (transformers' `EsmForMaskedLM`: pre-LN, rotary positions, token dropout, a 4×
# MLP) at one width, trained by one recipe on one corpus, one depth per rung. Across its rungs
# only the depth changes, so a trend across them is what depth does.
#
# ## The ladder
#
# - **Corpus**: the VH, VL and VHH chains of the abnativ 2.0.9 wheel's three percentile test
#   sets (CC BY-NC-SA 4.0; `data/make_ladder_corpus.py`), canonical residues only, duplicates
#   removed, without the 600 chains of `data/antibody_vh.fasta` and `data/antibody_vl.fasta`,
#   and split by a hash of each sequence into training chains and held-out chains (1 in 100).
#   This chapter measures the rungs on `data/antibody_vh.fasta`, which no rung has seen.
# - **Recipe** (`lib/plmdepth/models/ladder.py`, `Recipe`): the same residues seen per rung, in the
#   same batches and order, with the same masks (15 % of residues, 80/10/10), AdamW with warm-up
#   and linear decay, one initialisation seed. Equal data exposure is the budget rule because data
#   is what the paper's models differ in besides depth; the compute then grows with depth, as it does
#   for any deeper model trained on the same data. Float32 on a CPU without matrix units for
#   bfloat16, bfloat16 matrix products (autocast) where it has them or on a GPU.
# - **Checkpoints**: float16 `save_pretrained` folders in `data/ladder/`, with
#   `data/ladder/manifest.json` (recipe, command, corpus sha256, the loss at every step, the wall
#   time, the held-out loss and every file's sha256). They load like any ESM-2 folder and are in
#   the registry as `ladder-d<width>-L<depth>`. The book reads the committed rungs; training is
#   `python scripts/train_ladder.py`.
#
# ## Measurement
#
# Every depth measurement of the book, on each rung and on three untrained twins of each (the same
# config freshly initialised): the output change when one block is skipped and the skip effect on
# later blocks ({ref}`chapter-layer-skipping`), the logit lens ({ref}`chapter-logit-lens`), the size
# of each block's update ({ref}`chapter-contributions`), and the tuned lens with the truncation
# frontier ({ref}`chapter-lens-or-layers`). Claim (c) is then tested with depth as the only variable:
# the slope, per doubling of depth, of claim (a)'s late/early ratio of the skip effect and of claim
# (b)'s KL share left at 3/4 depth, each with a bootstrap interval over the sequences (paired: every
# rung ran on the same sequences), for the trained ladder and for each seed's twin ladder
# ({ref}`methods-claims`; `lib/plmdepth/analysis/depth_ladder.py`).
#
# Re-run on another ladder with `python -m plmdepth chapter depth-ladder --models <folders or names>`.

# %% tags=["parameters"]
# This chapter's parameters and their defaults: lib/plmdepth/publish/chapters.py
# (those every chapter shares: notebooks/parameters.yml). Injected values follow.
from plmdepth.publish.chapters import CHAPTERS

globals().update(CHAPTERS["depth-ladder"].defaults())
CHAPTERS["depth-ladder"].own_table()

# %% tags=["hide-input"]
import pandas as pd

from plmdepth.analysis.claims import ClaimParameters
from plmdepth.analysis.depth_ladder import ladder_numbers, ladder_trends
from plmdepth.analysis.truncation import with_accuracy_kept
from plmdepth.models.ladder import load_manifest
from plmdepth.publish.chapter import collect_chapter, glue_markdown, glue_text, publish_figure, trained_only
from plmdepth.publish.chapter_text import ladder_markdown, ladder_sentence, perplexity_sentence, twins_sentence
from plmdepth.publish.figures import depth_curves, ladder_loss_curves, ladder_trend_chart, lens_curves
from plmdepth.publish.provenance import run_caption

manifest = load_manifest()
results = collect_chapter("depth-ladder", globals())
skip, lens = results["layer_skipping"]["skip_output"], results["logit_lens"]["logit_lens"]
block = results["contributions"]["contributions"].query("part == 'block'")
run = run_caption(results["layer_skipping"].folders, fasta, "layer_skipping", seed)
glue_text("ladder_run", run + " " + twins_sentence(skip))
glue_text("ladder_trained_run", run_caption(results["tuned_lens"].folders, fasta, "tuned_lens", seed))
glue_text("ladder_trend_run", run)
glue_markdown("ladder_table", ladder_markdown(manifest))
glue_text("ladder_perplexity", perplexity_sentence(manifest))
publish_figure("fig-ladder-training", ladder_loss_curves(manifest),
               pd.DataFrame([{k: v for k, v in r.items() if k != "files"} for r in manifest["rungs"]]))
publish_figure("fig-ladder-skip", depth_curves(skip, "prob_l2_mean"), skip)
publish_figure("fig-ladder-kl", depth_curves(lens, "kl"), lens)
publish_figure("fig-ladder-ratio", depth_curves(block, "ratio_mean"), block)
# trained rungs only: an untrained rung's full accuracy is near chance, so a share of it says nothing
frontier = trained_only(with_accuracy_kept(results["tuned_lens"]["tuned_lens"]))
publish_figure("fig-ladder-frontier",
               lens_curves(frontier, "accuracy_kept", x_title="blocks kept, k / L",
                           y_title=["top-1 accuracy kept", "(share of the full model's)"]), frontier)

folders = sorted({*results["layer_skipping"].folders, *results["logit_lens"].folders})
numbers, replicates = ladder_numbers(folders, ClaimParameters(seed=seed))
trends = ladder_trends(replicates)
publish_figure("fig-ladder-trends", ladder_trend_chart(numbers), numbers)
glue_markdown("ladder_verdict", ladder_sentence(trends, numbers))

# %% [markdown]
# ```{glue:md} ladder_table
# :format: myst
# ```
#
# {glue:text}`ladder_perplexity`
#
# ```{glue:figure} fig_ladder_training
# :name: fig-ladder-training
#
# Training of the ladder: each rung's masked-LM loss on its training batches against the residues
# seen (running mean over 20 steps), and its held-out loss (diamond) on the first held-out chains
# with fixed masks. Every rung saw the same batches with the same masks; only the depth differs.
# ```
#
# ```{glue:md} links_fig_ladder_training
# :format: myst
# ```
#
# ```{glue:figure} fig_ladder_skip
# :name: fig-ladder-skip
#
# (cf. paper Fig. 2) Output change when block $s$ of a rung is skipped (mean L2 change of output
# probabilities at future positions) against relative depth $s / L$, one colour per rung. Hollow
# markers: the last block, zero by construction. {glue:text}`ladder_run`
# ```
#
# ```{glue:md} links_fig_ladder_skip
# :format: myst
# ```
#
# ```{glue:figure} fig_ladder_kl
# :name: fig-ladder-kl
#
# (cf. paper Fig. 3) Logit-lens $\mathrm{KL}(p_l \,\Vert\, p_L)$ of every rung against relative depth.
# {glue:text}`ladder_run`
# ```
#
# ```{glue:md} links_fig_ladder_kl
# :format: myst
# ```
#
# ```{glue:figure} fig_ladder_ratio
# :name: fig-ladder-ratio
#
# Relative size of each block's update $\lVert \Delta_l \rVert / \lVert h_l \rVert$ against relative
# depth $(l+1) / L$, one colour per rung. {glue:text}`ladder_run`
# ```
#
# ```{glue:md} links_fig_ladder_ratio
# :format: myst
# ```
#
# ```{glue:figure} fig_ladder_frontier
# :name: fig-ladder-frontier
#
# The truncation frontier of every rung: top-1 accuracy of the rung cut after block k, as a share of the
# full rung's, against the share of blocks kept, read through the final head (logit lens) or through
# layer k's trained translator (tuned lens), on the held-out half of the sequences
# ({ref}`chapter-lens-or-layers`). The rungs' untrained twins are left out: their full accuracy is near
# chance, so a share of it is no measure. {glue:text}`ladder_trained_run`
# ```
#
# ```{glue:md} links_fig_ladder_frontier
# :format: myst
# ```
#
# ## Does depth alone make the effects more pronounced?
#
# ```{glue:figure} fig_ladder_trends
# :name: fig-ladder-trends
#
# Claim (c) with depth as the only variable. Top: claim (a)'s late/early ratio of the skip effect
# (below 1: later blocks depend less on earlier computations; a rung of 2 blocks has none). Bottom:
# claim (b)'s share of the first readable layer's logit-lens KL left at 3/4 depth. Blue: the trained
# rungs with 95% bootstrap intervals over sequences (most are narrower than the points); grey, dashed:
# each seed's ladder of untrained twins. {glue:text}`ladder_trend_run`
# ```
#
# ```{glue:md} links_fig_ladder_trends
# :format: myst
# ```
#
# ```{glue:md} ladder_verdict
# :format: myst
# ```

# %% [markdown]
# ## Provenance

# %% tags=["hide-input"]
from plmdepth.publish.provenance import provenance

provenance({m: r.folders for m, r in results.items()})
