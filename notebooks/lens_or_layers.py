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
# distribution to the final one. This chapter reads every model of the book through both lenses
# on the same held-out sequences, and asks what a user loses by running fewer blocks.
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
#   $k$'s translator is early exit with a learned readout. Blocks of one model have the same size,
#   so keeping $k$ of $L$ blocks keeps the share $k/L$ of the block FLOPs. For each $k$ the table
#   gives the top-1 accuracy kept, relative to the full model on the same positions. (The effect
#   of skipping one block alone is in {ref}`chapter-layer-skipping`; the variant-effect curves of
#   {ref}`chapter-variant-effects` are the same frontier for fitness prediction.)
#
# Re-run on other models with `python -m plmdepth chapter lens-or-layers --add-model <names>`.

# %% tags=["remove-cell"]
# Parameters shared by every chapter (models, data, seed, results folder, ...) come from
# notebooks/parameters.yml; the next cell holds this chapter's own.
from plmdepth.publish.chapter import shared_parameters

globals().update(shared_parameters())

# %% tags=["parameters"]
vocab = "full"  # "full" vocabulary or "amino_acids" (20 canonical, renormalised)
train_fraction = 0.5  # share of the sequences the translators are trained on (the rest is held out)
epochs = 50
kept_threshold = 0.9  # late layers "mainly refine" when 3/4 of the blocks keep this share of the accuracy

# %% tags=["hide-input"]
import numpy as np
import pandas as pd

from plmdepth.publish.chapter import collect, glue_markdown, glue_text, publish_figure
from plmdepth.publish.figures import lens_curves
from plmdepth.publish.provenance import run_caption
from plmdepth.results import read_run

result = collect("tuned_lens", models, fasta, results_dir, seed=seed, n_sequences=n_sequences,
                 mask_fraction=mask_fraction, vocab=vocab, train_fraction=train_fraction, epochs=epochs,
                 device=device, diffusion_ratios=diffusion_ratios, diffusion_models=diffusion_models)
frame = result["tuned_lens"]
final = frame[frame["layer"] == frame.groupby("model")["layer"].transform("max")]
full_accuracy = final[final["lens"] == "logit"].set_index("model")["top1_accuracy"]
frame["accuracy_kept"] = frame["top1_accuracy"] / frame["model"].map(full_accuracy)
caption = run_caption(result.folders, fasta, "tuned_lens", seed)
held_out = result["tuned_lens_split"]
n_held = int((held_out["split"] == "held_out").sum() / held_out["model"].nunique())
glue_text("tl_run", caption + f" Read on the {n_held} held-out sequences of each model's seeded split.")
# the effect of skipping one block alone, from the layer-skipping chapter's runs (same sequences, plan and seed)
skips = collect("layer_skipping", models, fasta, results_dir, seed=seed, n_sequences=n_sequences,
                mask_fraction=mask_fraction, device=device, diffusion_ratios=diffusion_ratios,
                diffusion_models=diffusion_models)["skip_output"]
skip_rows = skips.assign(lens="skip block alone", layer=skips["skipped"], kl=skips["kl_mean"])[
    ["model", "lens", "layer", "relative_depth", "kl"]]
kl_frame = pd.concat([frame[["model", "lens", "layer", "relative_depth", "kl"]], skip_rows], ignore_index=True)
publish_figure("fig-tuned-lens-kl", lens_curves(kl_frame, "kl", y_title=["KL to the full", "output [nats]"]),
               kl_frame)
publish_figure("fig-truncation-frontier",
               lens_curves(frame, "accuracy_kept", x_title="blocks kept, k / L",
                           y_title=["top-1 accuracy kept", "(share of the full model's)"]), frame)

# %% [markdown]
# ```{glue:figure} fig_tuned_lens_kl
# :name: fig-tuned-lens-kl
#
# KL divergence from the model's output of each layer's distribution, read through the model's own
# head (logit lens: the model cut after block l) and through the layer's trained affine translator
# (tuned lens), $\mathrm{KL}(p_l \Vert p_L)$, against relative depth l / L, one panel per model; and,
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
# a learned translator in front of it (tuned lens); keeping k of L blocks keeps the share k / L of
# the block FLOPs. {glue:text}`tl_run`
# ```
#
# ```{glue:md} links_fig_truncation_frontier
# :format: myst
# ```

# %% tags=["remove-cell"]
def _layer(model: str, depth: float) -> int:
    """The layer at relative depth `depth` of `model`: round(depth * L), halves rounded up."""
    blocks = int(frame.loc[frame["model"] == model, "layer"].max())
    return int(np.floor(depth * blocks + 0.5))


def _at(model: str, lens: str, layer: int, column: str) -> float:
    part = frame[(frame["model"] == model) & (frame["lens"] == lens) & (frame["layer"] == layer)]
    return float(part[column].iloc[0])


rows = []
for model in frame["model"].unique():
    run = read_run(next(f for f in result.folders if read_run(f)["model"]["name"] == model.split("@")[0]))
    half, three_quarters = _layer(model, 0.5), _layer(model, 0.75)
    logit_3q, tuned_3q = _at(model, "logit", three_quarters, "kl"), _at(model, "tuned", three_quarters, "kl")
    rows.append({"model": model, "blocks": int(frame[frame.model == model]["layer"].max()),
                 "layers": f"{half}, {three_quarters}",
                 "logit_half": _at(model, "logit", half, "kl"), "tuned_half": _at(model, "tuned", half, "kl"),
                 "logit_3q": logit_3q, "tuned_3q": tuned_3q,
                 "gap_3q": 1 - tuned_3q / logit_3q if logit_3q > 0 else np.nan,
                 "kept_logit": _at(model, "logit", three_quarters, "accuracy_kept"),
                 "kept_tuned": _at(model, "tuned", three_quarters, "accuracy_kept"),
                 "seconds": run["measurements"]["tuned_lens"]["wall_time_s"]})
numbers = pd.DataFrame(rows)


def _table() -> str:
    lines = ["| model | L | layers at ½, ¾ | KL logit ½ | KL tuned ½ | KL logit ¾ | KL tuned ¾ | KL gap closed at ¾ | "
             "accuracy kept at ¾ (logit / tuned) |", "|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for r in numbers.itertuples(index=False):
        lines.append(f"| {r.model} | {r.blocks} | {r.layers} | {r.logit_half:.3f} | {r.tuned_half:.3f} | "
                     f"{r.logit_3q:.3f} | {r.tuned_3q:.3f} | {r.gap_3q:.0%} | "
                     f"{r.kept_logit:.0%} / {r.kept_tuned:.0%} |")
    times = ", ".join(f"{r.model} {r.seconds:.0f} s" for r in numbers.itertuples(index=False))
    return "\n".join(lines) + f"\n\nTraining and reading both lenses took {times} on this build's machine."


survives = numbers["kept_tuned"] >= kept_threshold
verdict = ("survives" if survives.all() else "does not survive" if not survives.any() else "survives for some models")
names = lambda mask: ", ".join(numbers.loc[mask, "model"]) or "none"  # noqa: E731
glue_markdown("tl_table", _table())
glue_markdown("tl_verdict", (
    f"**The reading {verdict}.** With a learned readout, the model cut after three quarters of its blocks keeps "
    f"at least {kept_threshold:.0%} of the full model's top-1 accuracy for {names(survives)}"
    + (f", and less for {names(~survives)}" if (~survives).any() else "")
    + f"; read through the final head alone, the same cut keeps {numbers['kept_logit'].min():.0%}–"
    f"{numbers['kept_logit'].max():.0%}. The tuned lens removes {numbers['gap_3q'].min():.0%}–"
    f"{numbers['gap_3q'].max():.0%} of the logit lens's KL at three quarters of depth: much of what the logit lens "
    f"shows as unfinished there is a change of basis, not missing information, so the last quarter of the blocks "
    f"refines a prediction that is already made. The rule and its threshold (`kept_threshold` = {kept_threshold:g}) "
    f"are this chapter's parameters; the layer at depth d is round(d·L)."))

# %% [markdown]
# ## What this build found
#
# Per model, on the held-out sequences: KL to the output at half and three quarters of depth through
# both lenses, the share of the logit lens's KL that the translators remove at three quarters, and the
# top-1 accuracy kept when only the first three quarters of the blocks run.
#
# ```{glue:md} tl_table
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

provenance(result.folders, "tuned_lens")
