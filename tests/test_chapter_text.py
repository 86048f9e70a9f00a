"""The chapters' sentences and tables (publish.chapter_text), the analysis functions they read
(analysis.truncation, analysis.variant_effects) and the one results reader (results.Results), on
small hand-made tables whose right answers are worked out here."""

import json

import pandas as pd
import pytest

from plmdepth.analysis.truncation import equal_blocks, lens_and_skip_kl, weight_shares, with_accuracy_kept
from plmdepth.analysis.variant_effects import best_layers
from plmdepth.publish.chapter_text import (best_layers_markdown, final_range_sentence, mutation_depths_markdown,
                                           proteingym_sentence, truncation_accuracy_markdown,
                                           truncation_spearman_markdown)
from plmdepth.results import Results, ResultsError, read_record


def _effects(rows):
    return pd.DataFrame(rows, columns=["model", "assay", "layer", "relative_depth", "spearman", "spearman_low",
                                       "spearman_high", "n_variants"])


EFFECTS = _effects([
    ("m1", "A", 1, 0.5, 0.30, 0.20, 0.40, 10), ("m1", "A", 2, 1.0, 0.25, 0.15, 0.35, 10),
    ("m1", "B", 1, 0.5, -0.1, -0.2, 0.0, 12), ("m1", "B", 2, 1.0, -0.20, -0.30, -0.10, 12),
    ("m2", "A", 1, 1.0, 0.05, -0.05, 0.15, 10),
    ("m1", "mean", 1, 0.5, 0.1, 0.0, 0.2, 22), ("m1", "mean", 2, 1.0, 0.9, 0.8, 1.0, 22),
])


def test_final_range_sentence_names_the_extremes_and_the_signs():
    assert final_range_sentence(EFFECTS) == (
        "At the final layer, ρ ranges from -0.200 (m1, `B`) to 0.250 (m1, `A`); its 95% interval lies above 0 "
        "for 1 of 3 (model, set) pairs and below 0 for m1 on `B`.")  # "mean" is not a set
    assert final_range_sentence(EFFECTS[EFFECTS["assay"] == "mean"]) == "*No set was scored.*"


def test_best_layers_and_their_table():
    best = best_layers(EFFECTS).set_index(["model", "assay"])
    assert best.loc[("m1", "A"), "best layer"] == 1 and best.loc[("m1", "A"), "final-layer ρ"] == 0.25
    assert best.loc[("m1", "B"), "best ρ"] == -0.1 and best.loc[("m1", "mean"), "best layer"] == 2
    text = best_layers_markdown(best_layers(EFFECTS))
    assert "| m1 | `A` | 1 | 0.50 | 0.300 | 0.250 |" in text and "| m1 | mean | 2 | 1.00 | 0.900 | 0.900 |" in text


def test_proteingym_sentence_only_for_proteingyms_own_sets():
    assays = pd.DataFrame({"DMS_id": ["A", "B"], "seq_len": [42, 99],
                           "relation_to_proteingym": ["same variant set as ProteinGym's", "a subset"]})
    assert proteingym_sentence(assays, EFFECTS).startswith(
        "**On ProteinGym's own variant sets**, scored by ProteinGym's protocol, on `A` (10 variants in the "
        "42-residue target) the final layers give ρ = m1 0.250, m2 0.050.")
    assert proteingym_sentence(assays.drop(columns="relation_to_proteingym"), EFFECTS) == ""


def test_mutation_depths_table():
    by_depth = pd.DataFrame({"model": ["m"] * 4, "assay": ["A"] * 4, "mutation_depth": [1, 1, 2, 2],
                             "layer": [1, 2, 1, 2], "spearman": [0.1, 0.3, 0.5, 0.2], "n_variants": [5, 5, 3, 3]})
    text = mutation_depths_markdown(by_depth)
    assert "| m | 1 | 5 | 0.300 | 0.300 (2) |" in text and "| m | 2 | 3 | 0.200 | 0.500 (1) |" in text
    assert mutation_depths_markdown(by_depth.iloc[:0]).startswith("*No scored set")


def _lens(model, blocks, accuracy, kl):
    return [{"model": model, "lens": lens, "layer": k, "relative_depth": k / blocks, "top1_accuracy": accuracy[k],
             "kl": kl[k]} for lens in ("logit", "tuned") for k in range(blocks + 1)]


def test_accuracy_kept_is_a_share_of_the_full_models_and_skips_join_the_lens_frame():
    frame = with_accuracy_kept(pd.DataFrame(_lens("x", 2, [0.2, 0.4, 0.8], [3.0, 1.0, 0.0])))
    assert frame[frame["lens"] == "logit"]["accuracy_kept"].tolist() == [0.25, 0.5, 1.0]
    skips = pd.DataFrame({"model": ["x"], "skipped": [1], "relative_depth": [0.5], "kl_mean": [0.7]})
    joined = lens_and_skip_kl(frame, skips)
    assert len(joined) == 7 and joined.iloc[-1].to_dict() == {"model": "x", "lens": "skip block alone", "layer": 1,
                                                              "relative_depth": 0.5, "kl": 0.7}


def _folder(root, name, model_name, objective, blocks, block_weights=None, tables=()):
    folder = root / name
    folder.mkdir(parents=True)
    run = {"model": {"name": model_name, "family": "F", "objective": objective, "n_layers": blocks},
           "model_argument": f"/models/{model_name}", "measurements": {
               t: {"outputs": [f"{t}.csv"]} for t in tables}}
    if block_weights is not None:
        run["block_weights"] = block_weights
    (folder / "run.json").write_text(json.dumps(run))
    for t in tables:
        pd.DataFrame({"model": [model_name], "x": [1]}).to_csv(folder / f"{t}.csv", index=False)
    return folder


def test_results_give_every_model_one_name_and_refuse_what_is_not_a_results_folder(tmp_path):
    a = _folder(tmp_path, "dplm@mask0.5", "dplm", "diffusion", 2, [10, 10], tables=["logit_lens"])
    b = _folder(tmp_path, "esm", "esm", "masked", 3, [1, 2, 1], tables=["logit_lens", "contributions"])
    results = Results([a, b, a])  # each folder once, in the order given
    assert [r.model.display for r in results] == ["dplm (mask 0.5)", "esm"]
    identity = results.records[0].model
    assert (identity.slug, identity.mask_fraction, identity.argument, identity.blocks) == (
        "dplm", 0.5, "/models/dplm", 2)
    assert [r.folder for r in results.of("contributions")] == [b]
    assert len(results.tables("logit_lens")["logit_lens"]) == 2
    (b / "contributions.csv").unlink()  # a recorded table that is gone: never left out silently
    assert [r.folder for r in results.of("contributions")] == [b] and not read_record(b).has("contributions")
    with pytest.raises(ResultsError, match="contributions.csv is missing .*recompute it"):
        read_record(b).tables("contributions")
    with pytest.raises(ResultsError, match="holds no tuned_lens"):
        read_record(b).tables("tuned_lens")
    with pytest.raises(ResultsError, match="no run.json in"):
        Results([tmp_path / "nothing"])
    assert Results.under(tmp_path).folders == sorted([a, b])


def test_weight_shares_are_keyed_by_the_display_name_and_sentences_use_them(tmp_path):
    a = _folder(tmp_path, "dplm@mask0.5", "dplm", "diffusion", 4, [5, 5, 5, 5])
    b = _folder(tmp_path, "unirep", "unirep", "autoregressive", 4, [1, 3, 3, 3])
    shares = weight_shares(Results([a, b]))
    assert shares == {"dplm (mask 0.5)": [0.25, 0.5, 0.75, 1.0], "unirep": [0.1, 0.4, 0.7, 1.0]}
    assert equal_blocks(shares["dplm (mask 0.5)"]) and not equal_blocks(shares["unirep"])
    numbers = pd.DataFrame([{"model": m, "blocks": 4, "half": 2, "three_quarters": 3, "kl_logit_half": 1.0,
                             "kl_tuned_half": 0.5, "kl_logit_3q": 0.4, "kl_tuned_3q": 0.1, "kl_removed_3q": 0.75,
                             "kept_logit_3q": 0.8, "kept_tuned_3q": 0.95, "baseline": "unigram",
                             "baseline_accuracy": 0.5, "gap_kept_logit_3q": 0.6, "gap_kept_tuned_3q": 0.9,
                             "seconds": 3.0} for m in shares])
    text = truncation_accuracy_markdown(numbers, shares)
    assert "| unirep | 4 | 2, 3 | 1.000 | 0.500 | 0.400 | 0.100 | 75% | 80.0% / 95.0% | unigram 50.0% | " \
           "60.0% / 90.0% |" in text
    assert "The blocks of dplm (mask 0.5) each hold the same number of weights" in text
    assert "The blocks of unirep differ in size: the cut at ¾ keeps 70% of their weights." in text
    spearman = pd.DataFrame([{"model": "unirep", "assay": "A", "blocks": 4, "half": 2, "three_quarters": 3,
                              "rho_full": 0.4, "rho_half": 0.2, "rho_3q": 0.38, "kept_3q": 0.95}])
    text = truncation_spearman_markdown(spearman, shares)
    assert "| unirep | `A` | 3, 2 of 4 | 0.400 | 0.380 | 0.200 | 95.0% |" in text
    assert text.endswith("the cuts keep: unirep 70% at ¾ and 40% at ½.")
