"""The permutation null of M5's Spearman ρ and its replicates table, on injected scores, against a
hand-written loop; and the replicates file as the runner writes it."""

import json

import numpy as np
import pandas as pd
import pytest

from conftest import tiny_esm, tiny_esm_hf
from plmdepth.probes.measurements import MEASUREMENTS
from plmdepth.probes.variant_effects import Assay, VariantEffectsAccumulator, VariantEffectsConfig
from plmdepth.runner import measure

WT = "MKTAYIAKQRQISFVKSHFSRQLEERLG"
COLUMNS = ["assay", "layer", "relative_depth", "kind", "replicate", "spearman"]


def _assay(name, fitness, protein=""):
    n = len(fitness)
    variants = pd.DataFrame({"mutant": [f"M1A"] * n, "mutated_sequence": ["A" + WT[1:]] * n, "DMS_score": fitness})
    return Assay(name, WT, variants, [[(0, "M", "A")]] * n, protein)


def _result(assays, scores, **config):
    """`result()` of the accumulator with `scores` (one (layers, variants) array per assay) injected."""
    lm = tiny_esm()
    acc = VariantEffectsAccumulator(lm, assays, VariantEffectsConfig(**config))
    acc.scores = dict(enumerate(scores))
    return acc.result()


def _ranks(x):
    """Average ranks (1-based) by sorting, independent of pandas."""
    ordered = np.sort(x)
    return (np.searchsorted(ordered, x, "left") + np.searchsorted(ordered, x, "right") + 1) / 2


def _by_layer(table, assay, column="spearman"):
    return table[table["assay"] == assay].sort_values("layer")[column].to_numpy()


def test_a_perfect_ranking_has_the_smallest_p_value():
    """Scores equal to the fitness (ρ = 1) or its negative (ρ = -1): no shuffle of 30 variants reaches
    |ρ| = 1, so p = 1 / (1 + n_permutations), for each assay and for the mean."""
    rng = np.random.default_rng(4)
    fitness = [rng.normal(size=30), rng.normal(size=30)]
    scores = [np.stack([f, -f, 3 * f + 1, f ** 3]) for f in fitness]
    table, _, _ = _result([_assay("a", fitness[0]), _assay("b", fitness[1])], scores, n_permutations=150,
                          n_bootstrap=5)
    np.testing.assert_allclose(np.abs(table["spearman"]), 1)
    assert (table["p_permutation"] == 1 / 151).all()
    assert (table["spearman_null_high"] < 0.6).all() and (table["spearman_null_low"] > -0.6).all()


def test_null_of_unrelated_scores_equals_a_hand_written_loop():
    """Scores independent of the fitness (one assay with tied fitness values): the null's range holds 0,
    p is not small, and every null replicate, range and p-value equal a loop of np.corrcoef on ranks
    over numpy permutations of the fitness drawn from the documented stream (default_rng([seed, 1]),
    one draw per replicate, assays in order)."""
    rng = np.random.default_rng(7)
    fitness = [rng.normal(size=40), np.round(rng.normal(size=25), 1)]
    scores = [rng.normal(size=(4, 40)), rng.normal(size=(4, 25))]
    assays = [_assay("a", fitness[0]), _assay("b", fitness[1])]
    n_perm, seed = 300, 3
    table, _, replicates = _result(assays, scores, n_permutations=n_perm, n_bootstrap=0, seed=seed)

    stream = np.random.default_rng([seed, 1])
    for assay, f, s in zip(assays, fitness, scores):
        shuffled = [stream.permutation(f) for _ in range(n_perm)]
        null = np.array([[np.corrcoef(_ranks(s[r]), _ranks(g))[0, 1] for g in shuffled] for r in range(4)])
        observed = np.array([np.corrcoef(_ranks(s[r]), _ranks(f))[0, 1] for r in range(4)])
        perm = replicates[(replicates["assay"] == assay.id) & (replicates["kind"] == "permutation")]
        ours = perm.pivot(index="layer", columns="replicate", values="spearman").to_numpy()
        np.testing.assert_allclose(ours, null, rtol=0, atol=1e-12)
        np.testing.assert_allclose(_by_layer(table, assay.id), observed, atol=1e-12)
        np.testing.assert_allclose(_by_layer(table, assay.id, "spearman_null_low"),
                                   np.percentile(null, 2.5, axis=1), atol=1e-12)
        np.testing.assert_allclose(_by_layer(table, assay.id, "spearman_null_high"),
                                   np.percentile(null, 97.5, axis=1), atol=1e-12)
        p = (1 + (np.abs(null) >= np.abs(observed)[:, None]).sum(axis=1)) / (1 + n_perm)
        np.testing.assert_array_equal(_by_layer(table, assay.id, "p_permutation"), p)
    assert ((table["spearman_null_low"] < 0) & (table["spearman_null_high"] > 0)).all()
    assert (table["p_permutation"] > 0.05).all()


def test_replicates_table_matches_the_intervals_and_the_mean():
    """The replicates table: its columns; bootstrap percentiles = spearman_low/high; replicate k is
    one resample at every layer; the mean's replicates are the protein-weighted mean of the assays'
    (two assays of protein P, one of Q: weights 1/4, 1/4, 1/2)."""
    rng = np.random.default_rng(11)
    fitness = [rng.normal(size=n) for n in (20, 30, 25)]
    base = [f + rng.normal(size=len(f)) for f in fitness]
    # layers 1..3 are increasing functions of layer 0 (the same ranks): equal ρ in every replicate
    # exactly when replicate k is one resample or one permutation at every layer
    scores = [np.stack([b, 2 * b + 1, b ** 3, rng.normal(size=len(b))]) for b in base]
    assays = [_assay("a", fitness[0], "P"), _assay("b", fitness[1], "P"), _assay("c", fitness[2], "Q")]
    table, _, replicates = _result(assays, scores, n_bootstrap=40, n_permutations=30)
    assert list(replicates.columns) == COLUMNS
    assert set(replicates["assay"]) == {"a", "b", "c", "mean"}
    counts = replicates.groupby(["assay", "layer", "kind"])["replicate"].agg(list)
    assert all(list(v) == list(range(40 if k == "bootstrap" else 30)) for (_, _, k), v in counts.items())
    assert len(counts) == 4 * 4 * 2

    for (assay, layer), part in replicates[replicates["kind"] == "bootstrap"].groupby(["assay", "layer"]):
        row = table[(table["assay"] == assay) & (table["layer"] == layer)].iloc[0]
        assert np.percentile(part["spearman"], [2.5, 97.5]) == pytest.approx([row.spearman_low, row.spearman_high],
                                                                            abs=1e-12)
    wide = replicates.pivot_table(index=["kind", "replicate"], columns=["assay", "layer"], values="spearman")
    for assay in "abc":
        same = wide.xs(assay, axis=1, level="assay")[[0, 1, 2]].to_numpy()
        np.testing.assert_allclose(same, same[:, [0, 0, 0]], atol=1e-12)
        assert not np.allclose(wide[(assay, 3)], wide[(assay, 0)])
    mixed = wide[("a",)] / 4 + wide[("b",)] / 4 + wide[("c",)] / 2
    np.testing.assert_allclose(wide[("mean",)], mixed, atol=1e-12)
    mean = table[table["assay"] == "mean"].set_index("layer")
    perm = wide.loc["permutation"]
    for layer in range(4):
        p = (1 + (np.abs(perm[("mean", layer)]) >= abs(mean.loc[layer, "spearman"])).sum()) / 31
        assert mean.loc[layer, "p_permutation"] == pytest.approx(p)
        assert mean.loc[layer, "spearman_null_low"] == pytest.approx(np.percentile(perm[("mean", layer)], 2.5))


def test_permutations_leave_the_bootstrap_as_it_was_and_zero_disables_them():
    """Two assays: the second one's bootstrap draws would follow the first one's permutations if
    they shared a generator."""
    rng = np.random.default_rng(2)
    fitness = [rng.normal(size=20), rng.normal(size=15)]
    assays = [_assay("a", fitness[0]), _assay("b", fitness[1])]
    scores = [np.stack([f + rng.normal(size=len(f)) for _ in range(4)]) for f in fitness]
    with_null, _, reps = _result(assays, scores, n_bootstrap=30, n_permutations=50)
    without, _, none = _result(assays, scores, n_bootstrap=30, n_permutations=0)
    pd.testing.assert_frame_equal(with_null[["spearman", "spearman_low", "spearman_high"]],
                                  without[["spearman", "spearman_low", "spearman_high"]])
    assert without[["spearman_null_low", "spearman_null_high", "p_permutation"]].isna().all().all()
    assert with_null[["spearman_null_low", "spearman_null_high", "p_permutation"]].notna().all().all()
    assert set(none["kind"]) == {"bootstrap"} and set(reps["kind"]) == {"bootstrap", "permutation"}
    _, _, empty = _result(assays, scores, n_bootstrap=0, n_permutations=0)
    assert empty.empty and list(empty.columns) == COLUMNS


def test_runner_writes_and_records_the_replicates(tmp_path):
    assert MEASUREMENTS["variant_effects"].outputs == ("variant_effects", "variant_effects_by_depth",
                                                       "variant_effects_replicates")
    folder = tmp_path / "tiny_esm"
    tiny_esm_hf(seed=5).save_pretrained(folder)
    out = measure("variant_effects", str(folder), "data/dms/DMS_substitutions.csv", out=tmp_path / "results",
                  assays=["A4_HUMAN_Seuma_2022_subset"], max_variants=8, n_bootstrap=5, n_permutations=7,
                  progress=False)
    entry = json.loads((out / "run.json").read_text())["measurements"]["variant_effects"]
    assert entry["outputs"] == ["variant_effects.csv", "variant_effects_by_depth.csv",
                                "variant_effects_replicates.csv"]
    assert entry["config"]["n_permutations"] == 7
    replicates = pd.read_csv(out / "variant_effects_replicates.csv")
    assert list(replicates.columns) == ["model"] + COLUMNS
    assert len(replicates) == 2 * 4 * (5 + 7)  # (assay, mean) x layers 0..3 x replicates
    table = pd.read_csv(out / "variant_effects.csv")
    assert {"spearman_null_low", "spearman_null_high", "p_permutation"} <= set(table.columns)


def test_figure_draws_the_null_band_only_where_the_table_has_it():
    from plmdepth.publish.figures import to_svg, variant_effect_curves

    rng = np.random.default_rng(5)
    fitness = [rng.normal(size=20), rng.normal(size=20)]
    table, _, _ = _result([_assay("a", fitness[0]), _assay("b", fitness[1])],
                          [np.stack([f + rng.normal(size=20) for _ in range(4)]) for f in fitness], n_bootstrap=10,
                          n_permutations=10)
    table.insert(0, "model", "m")
    old = table.drop(columns=["spearman_null_low", "spearman_null_high", "p_permutation"])
    for frame, grey in ((table, 1), (old, 0)):
        spec = variant_effect_curves(frame).to_dict()["spec"]["layer"]
        assert sum(layer["mark"].get("color") == "grey" for layer in spec) == grey
        assert sum(layer["encoding"].get("y2", {}).get("field") == "spearman_null_high" for layer in spec) == grey
        assert to_svg(variant_effect_curves(frame)).lstrip().startswith("<svg")


def test_caption_names_the_number_of_permutations():
    from plmdepth.publish.chapter_text import null_band_sentence

    rng = np.random.default_rng(6)
    fitness = rng.normal(size=15)
    _, _, replicates = _result([_assay("a", fitness)], [rng.normal(size=(4, 15))], n_bootstrap=3, n_permutations=12)
    assert "(12 permutations, the same at every layer" in null_band_sentence(replicates.assign(model="m"))
    assert null_band_sentence(replicates[replicates["kind"] == "bootstrap"]) == ""
    assert null_band_sentence(None) == ""
