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
# (chapter-logit-lens)=
# # The logit lens
#
# ## What the paper reports
#
# For ESM-2 from 150M parameters on, the KL divergence between each layer's logit-lens
# distribution and the final one falls steadily towards the later layers (its Fig. 3), and
# the top-1 agreement with the final prediction is low early and rises towards the end, most
# sharply in the last layers of the larger models (its Fig. 4): later layers refine an
# increasingly stable prediction. The last section of this page tests this on the models of
# this build.
#
# ## Measurement
#
# Do later layers still change the prediction, or do they only sharpen one that earlier
# layers already made? The logit lens answers by reading every layer's residual stream
# with the model's own output head: $p_l = \mathrm{softmax}(\mathrm{readout}(h_l))$, where the
# readout is the final norm (if the model has one) followed by the full language-model head,
# so that $p_L$ is the model's own output. For every layer $l = 0 \dots L$ we measure, at the
# evaluated positions,
#
# - $\mathrm{KL}(p_l \,\Vert\, p_L)$ in nats: how far layer $l$'s distribution is from the final one;
# - top-1 agreement: whether $\arg\max p_l = \arg\max p_L$;
# - top-1 accuracy: whether $\arg\max p_l$ is the true residue.
#
# Masked models are evaluated at the masked positions of a seeded masking plan (15% of the
# residues by default); autoregressive models at every residue, predicted from the token
# before it. Means are over positions; the bands are bootstrap 95% intervals over sequences.
# Depth is shown as $l / L$ so that models of different depth share one axis.
#
# Re-run this chapter on other models with
# `python -m plmdepth chapter logit-lens --add-model <names>` (or `--models` to replace the list).

# %% tags=["parameters"]
# This chapter's parameters and their defaults: lib/plmdepth/publish/chapters.py
# (those every chapter shares: notebooks/parameters.yml). Injected values follow.
from plmdepth.publish.chapters import CHAPTERS

globals().update(CHAPTERS["logit-lens"].defaults())
CHAPTERS["logit-lens"].own_table()

# %% tags=["hide-input"]
from plmdepth.publish.chapter import collect_chapter, glue_markdown, glue_text, publish_figure, trained_only
from plmdepth.publish.chapter_text import twins_sentence
from plmdepth.publish.figures import depth_curves, lens_curves
from plmdepth.publish.provenance import run_caption
from plmdepth.analysis.claims import ClaimParameters, claims
from plmdepth.publish.verdicts import verdict_markdown

runs = collect_chapter("logit-lens", globals())
result = runs["logit_lens"]
frame = result["logit_lens"]
glue_text("logit_lens_run", run_caption(result.folders, fasta, "logit_lens", seed) + " " + twins_sentence(frame))
for metric, label in ((kl_direction, "fig-logit-lens-kl"), ("top1_agreement", "fig-logit-lens-agreement")):
    publish_figure(label, depth_curves(frame, metric), frame)
# top-1 accuracy per model, against the trivial baselines of its tuned-lens run (its panel's dashed rules)
accuracy = frame.assign(lens="logit")
rules = runs["tuned_lens"]["tuned_lens_baselines"]
publish_figure("fig-logit-lens-accuracy", lens_curves(accuracy, "top1_accuracy", baselines=rules), accuracy)

# %% [markdown]
# ```{glue:figure} fig_logit_lens_kl
# :name: fig-logit-lens-kl
#
# (cf. paper Fig. 3) KL divergence between each layer's logit-lens distribution and the model's final output
# distribution (the chapter's `kl_direction`: by default $\mathrm{KL}(p_l \,\Vert\, p_L)$), against relative
# depth. {glue:text}`logit_lens_run`
# ```
#
# ```{glue:md} links_fig_logit_lens_kl
# :format: myst
# ```
#
# ```{glue:figure} fig_logit_lens_agreement
# :name: fig-logit-lens-agreement
#
# (cf. paper Fig. 4) Top-1 agreement between each layer's logit-lens prediction and the model's own prediction,
# against relative depth. {glue:text}`logit_lens_run`
# ```
#
# ```{glue:md} links_fig_logit_lens_agreement
# :format: myst
# ```
#
# ```{glue:figure} fig_logit_lens_accuracy
# :name: fig-logit-lens-accuracy
#
# Top-1 accuracy of each layer's logit-lens prediction against the true residue, against
# relative depth, one panel per model. Dashed rules: the trivial baselines of
# {ref}`Methods <methods-trivial-baselines>` on the same kind of positions, "unigram" (the most frequent
# residue) and "position" (the most frequent residue at that position), estimated on the tuned
# lens's training split and read on its held-out split ({ref}`chapter-lens-or-layers`; the curves
# here are read on every sequence). {glue:text}`logit_lens_run`
# ```
#
# ```{glue:md} links_fig_logit_lens_accuracy
# :format: myst
# ```
#
# {numref}`fig-logit-lens-kl` and {numref}`fig-logit-lens-agreement` are the paper's
# Figs. 3–4 for the models run in this build; the values at every layer are in the table
# below and in each model's `logit_lens.csv`.

# %% tags=["hide-input"]
summary = trained_only(frame).pivot_table(index=["model", "layer", "relative_depth"],
                                          values=["kl", "kl_reverse", "top1_agreement", "top1_accuracy"]).reset_index()
summary.style.format(precision=3).hide(axis="index")

# %% [markdown]
# ## Does this build agree?
#
# The claim is tested by numbers computed from this build's results (definitions in
# {ref}`methods-claims`); the front page collects the verdicts of every chapter.
#
# ```{glue:md} lens_verdicts
# :format: myst
# ```

# %% tags=["remove-cell"]
glue_markdown("lens_verdicts", verdict_markdown(claims(result.folders, ClaimParameters(kl=kl_direction)), "b"))

# %% [markdown]
# ## Provenance
#
# The runs behind this chapter: model, weights checksum, inputs and package versions, as
# recorded in each results folder's `run.json`.

# %% tags=["hide-input"]
from plmdepth.publish.provenance import provenance

provenance(result.folders, "logit_lens")
