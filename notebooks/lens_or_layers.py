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
# distribution to the final one. This chapter reads the models of the depth chapters through both
# lenses on the same held-out sequences, and asks what a user loses by running fewer blocks: in
# top-1 accuracy, and, for the variant-effect models of {ref}`chapter-variant-effects`, in the
# ranking of variants.
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
#   $k$'s translator is early exit with a learned readout. Keeping $k$ of $L$ blocks runs the
#   share $k/L$ of the blocks (the share of their multiply-adds is computed below from their
#   weights). For each $k$ the table gives the top-1 accuracy kept, relative to the full model on
#   the same positions. The effect of skipping one block alone, from {ref}`chapter-layer-skipping`,
#   is drawn on the same axes.
# - **Variant effects on the frontier.** The variant-effect models of {ref}`chapter-variant-effects`
#   (the UniRep models; their runs, with that chapter's parameters, are reused) score every variant
#   from every layer's readout through the final head: the layer-$k$ score is the score of the
#   model cut after $k$ layers. No translator is trained for them, so this part reads the
#   frontier through the final head only.
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
basis_share = 0.5  # the tuned lens removing this share of the logit lens's KL at 3/4 reads as "a change of basis"
variant_effects = {}  # the variant-effects chapter's parameters where they differ from its defaults

# %% tags=["hide-input"]
import numpy as np
import pandas as pd

from plmdepth.publish.chapter import collect, glue_markdown, glue_text, publish_figure
from plmdepth.publish.figures import lens_curves
from plmdepth.publish.provenance import run_caption

result = collect("tuned_lens", models, fasta, results_dir, seed=seed, n_sequences=n_sequences,
                 mask_fraction=mask_fraction, vocab=vocab, train_fraction=train_fraction, epochs=epochs,
                 device=device, dtype=dtype, diffusion_ratios=diffusion_ratios, diffusion_models=diffusion_models)
frame = result["tuned_lens"]
final = frame[frame["layer"] == frame.groupby("model")["layer"].transform("max")]
full_accuracy = final[final["lens"] == "logit"].set_index("model")["top1_accuracy"]
frame["accuracy_kept"] = frame["top1_accuracy"] / frame["model"].map(full_accuracy)
caption = run_caption(result.folders, fasta, "tuned_lens", seed)
held_out = result["tuned_lens_split"]
n_held = int((held_out["split"] == "held_out").sum() / held_out["model"].nunique())
glue_text("tl_run", caption + f" Read on the {n_held} held-out sequences of each model's seeded split.")
# the effect of skipping one block alone, from the layer-skipping chapter's runs (same sequences, plan and seed)
skip_result = collect("layer_skipping", models, fasta, results_dir, seed=seed, n_sequences=n_sequences,
                      mask_fraction=mask_fraction, device=device, dtype=dtype, diffusion_ratios=diffusion_ratios,
                      diffusion_models=diffusion_models)
skips, skip_folders = skip_result["skip_output"], skip_result.folders
skip_rows = skips.assign(lens="skip block alone", layer=skips["skipped"], kl=skips["kl_mean"])[
    ["model", "lens", "layer", "relative_depth", "kl"]]
kl_frame = pd.concat([frame[["model", "lens", "layer", "relative_depth", "kl"]], skip_rows], ignore_index=True)
publish_figure("fig-tuned-lens-kl", lens_curves(kl_frame, "kl", y_title=["KL to the full", "output [nats]"]),
               kl_frame)
publish_figure("fig-truncation-frontier",
               lens_curves(frame, "accuracy_kept", x_title="blocks kept, k / L",
                           y_title=["top-1 accuracy kept", "(share of the full model's)"]), frame)

# %% tags=["hide-input"]
# Variant effects on the frontier: the variant-effects chapter's runs, with that chapter's parameters
# (its defaults, changed by `variant_effects`: the same runs, reused from the results folders), and
# its sets chosen as it chooses them.
from plmdepth.publish.book import chapter_defaults
from plmdepth.publish.figures import truncation_spearman_curves

ve = {**chapter_defaults("variant-effects"), **variant_effects}
ve_chosen = (None if ve["assays"] in (None, "", "all")
             else [a.strip() for a in str(ve["assays"]).split(",") if a.strip()])
ve_result = collect("variant_effects", ve["models"], ve["reference"], results_dir, device=ve["device"],
                    dtype=ve["dtype"], assays=ve_chosen, max_variants=ve["max_variants"], seed=ve["seed"],
                    scoring=ve["scoring"], n_bootstrap=ve["n_bootstrap"], batch_size=ve["batch_size"])
ve_table = ve_result["variant_effects"]
glue_text("tl_ve_run", run_caption(ve_result.folders, ve["reference"], "variant_effects", ve["seed"], unit="variants")
          + (" Every variant of each assay." if ve["max_variants"] is None
             else f" At most {ve['max_variants']} variants per assay (a seeded random subset)."))
publish_figure("fig-truncation-variant-effects", truncation_spearman_curves(ve_table), ve_table)

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
# a learned translator in front of it (tuned lens); keeping k of L blocks runs the share k / L of the
# blocks (of their multiply-adds where the blocks are of one size, as the table below says per model).
# {glue:text}`tl_run`
# ```
#
# ```{glue:md} links_fig_truncation_frontier
# :format: myst
# ```
#
# ```{glue:figure} fig_truncation_variant_effects
# :name: fig-truncation-variant-effects
#
# Variant effects on the truncation frontier: Spearman correlation between the measured fitness and the
# variant-effect scores of the model cut after k of its L layers (its layer-k readout through the final head,
# as in {ref}`chapter-variant-effects`), against the share of layers kept k / L, one panel per assay and
# ProteinGym's average ("mean"); diamonds mark the full model, bands are bootstrap 95% intervals over
# variants, the dashed rule marks the cut at three quarters. UniRep-1900 has one layer, so only its full
# model is drawn. {glue:text}`tl_ve_run`
# ```
#
# ```{glue:md} links_fig_truncation_variant_effects
# :format: myst
# ```

# %% tags=["remove-cell"]
from plmdepth.models import load_model, resolve
from plmdepth.publish.verdicts import VerdictParameters, lens_or_layers, lens_or_layers_markdown
from plmdepth.results import read_run
from plmdepth.runner import cached_only

verdict = lens_or_layers(result.folders + ve_result.folders,
                         VerdictParameters(kept_threshold=kept_threshold, basis_share=basis_share))
numbers, spearman = verdict.accuracy, verdict.spearman


def _weight_shares(folders) -> dict[str, list[float]]:
    """Per model (by the name its tables carry), the share of its blocks' weights (the multiply-adds per
    token of their weight matrices) in blocks 1..k, for k = 1..L, as its run recorded them (run.json's
    `block_weights`; a model whose older run did not record them is loaded to count them)."""
    out = {}
    for folder in folders:
        run = read_run(folder)
        weights = run.get("block_weights")
        if weights is None and not cached_only():
            weights = load_model(resolve(run["model_argument"], objective=run["model"]["objective"]),
                                 device=device, dtype=dtype).block_weights()
        if weights:
            sizes = np.array(weights, float)
            out[run["model"]["name"]] = list(np.cumsum(sizes) / sizes.sum())
    return out


lens_shares, ve_shares = _weight_shares(result.folders), _weight_shares(ve_result.folders)


def _equal_blocks(shares) -> bool:
    return shares is not None and np.allclose(shares, np.arange(1, len(shares) + 1) / len(shares))


def _share_at(shares, k: int) -> str:
    return "—" if shares is None or not 1 <= k <= len(shares) else f"{shares[k - 1]:.0%}"


def _accuracy_table() -> str:
    lines = ["| model | L | layers at ½, ¾ | KL logit ½ | KL tuned ½ | KL logit ¾ | KL tuned ¾ | "
             "KL removed at ¾ | accuracy kept at ¾ (logit / tuned) |", "|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for r in numbers.itertuples(index=False):
        lines.append(f"| {r.model} | {r.blocks} | {r.half}, {r.three_quarters} | {r.kl_logit_half:.3f} | "
                     f"{r.kl_tuned_half:.3f} | {r.kl_logit_3q:.3f} | {r.kl_tuned_3q:.3f} | {r.kl_removed_3q:.0%} | "
                     f"{r.kept_logit_3q:.1%} / {r.kept_tuned_3q:.1%} |")
    times = ", ".join(f"{r.model} {r.seconds:.0f} s" for r in numbers.itertuples(index=False))
    shares = {m: lens_shares.get(m.split("@")[0]) for m in numbers["model"]}
    equal = [m for m, share in shares.items() if _equal_blocks(share)]
    unequal = [m for m, share in shares.items() if share is not None and not _equal_blocks(share)]
    flops = (f" The blocks of {', '.join(equal)} each hold the same number of weights, so there keeping k of L "
             f"blocks keeps k / L of the blocks' multiply-adds." if equal else "")
    flops += "".join(f" The blocks of {m} differ in size: the cut at ¾ keeps "
                     f"{_share_at(shares[m], int(r))} of their weights."
                     for m, r in zip(unequal, numbers.set_index("model").loc[unequal, "three_quarters"]))
    return ("\n".join(lines) + f"\n\nTraining and reading both lenses took {times} on this build's machine." + flops)


def _spearman_table() -> str:
    if spearman.empty:
        return "*No variant-effect results in this build.*"
    lines = ["| model | set | layers kept at ¾, ½ | ρ full | ρ at ¾ | ρ at ½ | ρ kept at ¾ |",
             "|---|---|--:|--:|--:|--:|--:|"]
    for r in spearman.itertuples(index=False):
        cut = lambda value, k: "—" if k >= r.blocks else f"{value:.3f}"  # noqa: E731
        kept = "no cut" if r.three_quarters >= r.blocks else f"{r.three_quarters}, {r.half} of {r.blocks}"
        lines.append(f"| {r.model} | `{r.assay}` | {kept} | {r.rho_full:.3f} | {cut(r.rho_3q, r.three_quarters)} | "
                     f"{cut(r.rho_half, r.half)} | {'—' if pd.isna(r.kept_3q) else f'{r.kept_3q:.1%}'} |")
    weights = []
    for model, part in spearman.groupby("model", sort=False):
        r, shares = part.iloc[0], ve_shares.get(model)
        if shares is not None and r.three_quarters < r.blocks:
            weights.append(f"{model} {_share_at(shares, r.three_quarters)} at ¾ and {_share_at(shares, r.half)} at ½")
    return "\n".join(lines) + ("\n\nShare of the layers' weights (multiply-adds per token) the cuts keep: "
                               + "; ".join(weights) + "." if weights else "")


glue_markdown("tl_table", _accuracy_table())
glue_markdown("tl_ve_table", _spearman_table())
glue_markdown("tl_verdict", lens_or_layers_markdown(verdict))

# %% [markdown]
# ## What this build found
#
# Per model, on the held-out sequences: KL to the output at half and three quarters of depth through
# both lenses, the share of the logit lens's KL that the translators remove at three quarters, and the
# top-1 accuracy kept when only the first three quarters of the blocks run (the layer at depth d is
# round(d·L), halves rounded up).
#
# ```{glue:md} tl_table
# :format: myst
# ```
#
# Per variant-effect model and set: Spearman ρ of the full model, and of the model cut after three
# quarters and half of its layers (read through the final head), and the share of the full model's ρ
# the cut at three quarters keeps (the bootstrap intervals are the bands of
# {numref}`fig-truncation-variant-effects`). Under the table, the share of the layers' weights the cuts
# keep: UniRep's first layer reads the 10-wide embedding, so it is smaller than the others and k of L
# layers hold less than k / L of the multiply-adds.
#
# ```{glue:md} tl_ve_table
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

provenance({"tuned_lens": result.folders, "layer_skipping": skip_folders, "variant_effects": ve_result.folders})
