"""Per-layer variant effects (M5) against a plain reference: one forward per variant, nothing shared."""

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import tiny_esm
from plmdepth.probes.variant_effects import (Assay, AssayError, VariantEffectsConfig, layer_scores, parse_mutant,
                                             read_assays, spearman, variant_effects)
from plmdepth.probes.variant_scoring import chunks, optimal_window
from reference import proteingym_optimal_window

WT = "MKTAYIAKQRQISFVKSHFSRQLEERLG"


def _assay():
    rng = np.random.default_rng(0)
    letters = "ACDEFGHIKLMNPQRSTVWY"
    mutants = set()
    while len(mutants) < 25:
        k = int(rng.integers(1, 3))
        pos = sorted(rng.choice(len(WT), k, replace=False))
        mutants.add(":".join(f"{WT[p]}{p + 1}{rng.choice([a for a in letters if a != WT[p]])}" for p in pos))
    rows = []
    for m in sorted(mutants):
        seq = list(WT)
        for p, _, mut in parse_mutant(m, WT):
            seq[p] = mut
        rows.append({"mutant": m, "mutated_sequence": "".join(seq), "DMS_score": float(rng.normal())})
    frame = pd.DataFrame(rows)
    return Assay("toy", WT, frame, [parse_mutant(m, WT) for m in frame["mutant"]])


@torch.no_grad()
def _layer_log_probs(lm, sequence, masked=None):
    """Per layer log-probabilities at every token, from transformers' own hidden states."""
    batch = lm.tokenize(["x"], [sequence], masked=[masked] if masked is not None else None)
    out = lm.network(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                      output_hidden_states=True, **lm.forward_kwargs)
    per_layer = [lm.readout(h) for h in out.hidden_states[:-1]] + [out.logits]
    return batch, [torch.log_softmax(z[0].double(), -1) for z in per_layer]


def reference_scores(lm, assay, scoring):
    ids = lm.alphabet.index
    n_pre = len(lm.alphabet.prefix)
    scores = np.zeros((lm.n_layers + 1, len(assay.mutations)))
    if scoring == "log_likelihood_ratio":
        def loglik(seq):
            batch, logps = _layer_log_probs(lm, seq)
            total = np.zeros(lm.n_layers + 1)
            for i, a in enumerate(seq):  # residue i is predicted by the token before it
                for layer, lp in enumerate(logps):
                    total[layer] += float(lp[n_pre + i - 1, ids[a]])
            return total
        wt = loglik(assay.wild_type)
        for v, seq in enumerate(assay.variants["mutated_sequence"]):
            scores[:, v] = loglik(seq) - wt
        return scores
    if scoring == "pseudo_likelihood":  # one forward per residue of every sequence
        def pll(seq):
            total = np.zeros(lm.n_layers + 1)
            for i, a in enumerate(seq):
                _, logps = _layer_log_probs(lm, seq, masked=[i])
                total += [float(lp[n_pre + i, ids[a]]) for lp in logps]
            return total
        wt = pll(assay.wild_type)
        for v, seq in enumerate(assay.variants["mutated_sequence"]):
            scores[:, v] = pll(seq) - wt
        return scores
    for v, muts in enumerate(assay.mutations):  # one forward per mutation of every variant
        for p, w, m in muts:
            _, logps = _layer_log_probs(lm, assay.wild_type, masked=[p] if scoring == "masked_marginal" else None)
            for layer, lp in enumerate(logps):
                scores[layer, v] += float(lp[n_pre + p, ids[m]] - lp[n_pre + p, ids[w]])
    return scores


# masked_marginal and log_likelihood_ratio on every architecture: test_probes.py::test_variant_effects
@pytest.mark.parametrize("scoring", ["wt_marginal", "pseudo_likelihood"])
def test_layer_scores_equal_plain_reference(scoring):
    lm, assay = tiny_esm(), _assay()
    if scoring == "pseudo_likelihood":  # one pass per residue of every variant: a few variants suffice
        assay = Assay("toy", assay.wild_type, assay.variants[:6], assay.mutations[:6])
    fast = layer_scores(lm, assay, VariantEffectsConfig(scoring=scoring, batch_size=7))
    ref = reference_scores(lm, assay, scoring)
    np.testing.assert_allclose(fast, ref, rtol=1e-5, atol=1e-5)
    assert np.abs(ref).max() > 1e-3


def test_spearman_per_layer_and_mean():
    lm, assay = tiny_esm(), _assay()
    table, by_depth, _ = variant_effects(lm, [assay, Assay("toy2", assay.wild_type, assay.variants, assay.mutations)],
                                      VariantEffectsConfig(n_bootstrap=20), progress=False)
    scores = layer_scores(lm, assay, VariantEffectsConfig())
    fitness = assay.variants["DMS_score"].to_numpy()
    toy = table[table["assay"] == "toy"]
    expected = [spearman(scores[layer], fitness) for layer in toy["layer"]]
    np.testing.assert_allclose(toy["spearman"], expected, equal_nan=True)
    finite = toy.dropna(subset=["spearman"])
    assert len(finite) >= lm.n_layers  # at a masked position the embeddings of a random ESM-2 are constant
    assert ((finite.spearman_low <= finite.spearman + 1e-9) & (finite.spearman <= finite.spearman_high + 1e-9)).all()
    mean = table[table["assay"] == "mean"]
    np.testing.assert_allclose(mean["spearman"].to_numpy(), toy["spearman"].to_numpy(), equal_nan=True)
    assert set(table["scoring"]) == {"masked_marginal"}
    # per mutation depth: the toy assay has singles and doubles
    depths = np.array([len(m) for m in assay.mutations])
    assert set(depths) == {1, 2}
    for depth in (1, 2):
        part = by_depth[(by_depth["assay"] == "toy") & (by_depth["mutation_depth"] == depth)]
        keep = depths == depth
        np.testing.assert_allclose(part["spearman"], [spearman(scores[layer][keep], fitness[keep])
                                                      for layer in part["layer"]], equal_nan=True)
        assert (part["n_variants"] == keep.sum()).all()


def test_mean_averages_proteins_first_as_proteingym_does():
    """Two assays of one protein and one of another: weights 1/4, 1/4, 1/2 (not 1/3 each)."""
    lm, assay = tiny_esm(), _assay()
    rng = np.random.default_rng(1)
    assays = []
    for name, protein in (("a", "P"), ("b", "P"), ("c", "Q")):
        variants = assay.variants.assign(DMS_score=rng.normal(size=len(assay.variants)))
        assays.append(Assay(name, assay.wild_type, variants, assay.mutations, protein))
    table, _, _ = variant_effects(lm, assays, VariantEffectsConfig(n_bootstrap=0), progress=False)
    layer = lm.n_layers
    rho = {a: float(table[(table.assay == a) & (table.layer == layer)]["spearman"].iloc[0]) for a in "abc"}
    mean = float(table[(table.assay == "mean") & (table.layer == layer)]["spearman"].iloc[0])
    assert mean == pytest.approx((rho["a"] + rho["b"]) / 4 + rho["c"] / 2)
    assert mean != pytest.approx((rho["a"] + rho["b"] + rho["c"]) / 3)


def test_windows_follow_proteingym_rules():
    for length in (5, 40, 41, 1022, 1023, 1030, 2500):
        for window in (7, 8, 1022, 1024):
            for position in range(length):
                assert optimal_window(position, length, window) == tuple(
                    proteingym_optimal_window(position, length, window))
    assert chunks(10, 10) == [(0, 10)]
    assert chunks(25, 10) == [(0, 10), (10, 20), (20, 25)]
    assert chunks(20, 10) == [(0, 10), (10, 20)]


def test_prefix_cache_gives_the_scores_of_whole_sequences():
    """Autoregressive scores resumed from the wild type's prefix (UniRep's recurrent state,
    GPT-2's key/value cache) equal those of every variant run whole, on a longer target."""
    from conftest import tiny_gpt2, tiny_unirep

    rng = np.random.default_rng(3)
    wt = "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), 90))
    rows = []
    for p in (0, 1, 2, 30, 31, 60, 88, 89):  # the first residues, the middle and the end
        for m in "AW":
            if m != wt[p]:
                rows.append(f"{wt[p]}{p + 1}{m}")
    rows += [f"{wt[5]}6A:{wt[70]}71C", f"{wt[40]}41D:{wt[89]}90E"]
    frame = pd.DataFrame({"mutant": rows})
    mutations = [parse_mutant(m, wt) for m in rows]
    frame["mutated_sequence"] = ["".join({p: m for p, _, m in muts}.get(i, a) for i, a in enumerate(wt))
                                 for muts in mutations]
    frame["DMS_score"] = rng.normal(size=len(rows))
    assay = Assay("long", wt, frame, mutations)
    for lm in (tiny_unirep(), tiny_gpt2()):
        cached = layer_scores(lm, assay, VariantEffectsConfig(batch_size=5))
        whole = layer_scores(lm, assay, VariantEffectsConfig(batch_size=5, prefix_cache=False))
        np.testing.assert_allclose(cached, whole, rtol=1e-5, atol=1e-5)
        assert np.abs(whole).max() > 1e-2


def test_spearman_matches_a_textbook_case():
    assert spearman(np.array([1, 2, 3, 4]), np.array([10, 20, 30, 40])) == pytest.approx(1.0)
    assert spearman(np.array([1, 2, 3, 4]), np.array([4, 3, 2, 1])) == pytest.approx(-1.0)
    # ties get average ranks: ranks x = [1.5, 1.5, 3, 4], y = [1, 2, 3, 4]
    assert spearman(np.array([1, 1, 2, 3]), np.array([1, 2, 3, 4])) == pytest.approx(np.corrcoef([1.5, 1.5, 3, 4], [1, 2, 3, 4])[0, 1])


def test_mutant_errors_name_assay_and_position():
    with pytest.raises(AssayError, match="assay X: mutant 'A2V' says position 2 is A, but the wild type has K"):
        parse_mutant("A2V", "MKT", "X")
    with pytest.raises(AssayError, match="not of the form"):
        parse_mutant("2V", "MKT", "X")


def test_read_assays_checks_sequences(tmp_path):
    (tmp_path / "ref.csv").write_text("DMS_id,target_seq\nA1,MKT\n")
    (tmp_path / "A1.csv").write_text("mutant,mutated_sequence,DMS_score\nK2A,MAT,0.5\nT3A,MKK,0.1\n")
    with pytest.raises(AssayError, match="row 3: mutated_sequence does not equal mutant 'T3A'"):
        read_assays(tmp_path / "ref.csv")


def test_committed_dms_data_load_and_agree_with_the_reference_table():
    assays = read_assays("data/dms/DMS_substitutions.csv")
    table = pd.read_csv("data/dms/DMS_substitutions.csv")
    assert [a.id for a in assays] == list(table["DMS_id"])
    for assay, row in zip(assays, table.itertuples()):
        assert len(assay.variants) == row.DMS_total_number_mutants
        singles = sum(len(m) == 1 for m in assay.mutations)
        assert singles == row.DMS_number_single_mutants
        assert len(assay.wild_type) == row.seq_len and assay.protein == row.UniProt_ID
    # ProteinGym's id is kept only for the set that is ProteinGym's own: TDP-43's 1,196 singles, full length
    same = table[table["relation_to_proteingym"].str.startswith("same variant set")]
    assert list(same["DMS_id"]) == ["TADBP_HUMAN_Bolognesi_2019"]
    tdp43 = assays[list(table["DMS_id"]).index("TADBP_HUMAN_Bolognesi_2019")]
    assert len(tdp43.wild_type) == 414 and len(tdp43.variants) == 1196 and tdp43.variants["mutant"][0] == "G290A"


@pytest.mark.parametrize("scores,message", [
    ("0.5\nT3A,MKA,high", r"row 3: DMS_score 'high' is not a finite number \(1 rows without a finite score\)"),
    ("0.5\nT3A,MKA,", r"row 3: DMS_score is missing"),
    ("inf\nT3A,MKA,0.1", r"row 2: DMS_score 'inf' is not a finite number"),
])
def test_non_numeric_or_missing_scores_are_refused(tmp_path, scores, message):
    (tmp_path / "ref.csv").write_text("DMS_id,target_seq\nA1,MKT\n")
    (tmp_path / "A1.csv").write_text(f"mutant,mutated_sequence,DMS_score\nK2A,MAT,{scores}\n")
    with pytest.raises(AssayError, match=message):
        read_assays(tmp_path / "ref.csv")


def test_zero_variants_and_too_few_max_variants_are_refused(tmp_path):
    (tmp_path / "ref.csv").write_text("DMS_id,target_seq\nA1,MKT\n")
    (tmp_path / "A1.csv").write_text("mutant,mutated_sequence,DMS_score\n")
    with pytest.raises(AssayError, match=r"A1.csv holds no variants"):
        read_assays(tmp_path / "ref.csv")
    for bad in (-1, 0, 1):
        with pytest.raises(AssayError, match=rf"--max-variants must be at least 2 .*, not {bad}\.$"):
            read_assays(tmp_path / "ref.csv", max_variants=bad)


def test_missing_or_unreadable_files_are_named(tmp_path):
    (tmp_path / "ref.csv").write_text("DMS_id,target_seq\nA1,MKT\n")
    with pytest.raises(AssayError, match=r"A1.csv \(the variants of assay A1\) does not exist"):
        read_assays(tmp_path / "ref.csv")
    (tmp_path / "A1.csv").write_bytes(b"\x1f\x8b\x08\x00binary\xff\xfe")
    with pytest.raises(AssayError, match=r"A1.csv \(the variants of assay A1\) is not a readable CSV file"):
        read_assays(tmp_path / "ref.csv")


def test_a_scoring_that_does_not_fit_the_model_is_refused_in_plain_english():
    from conftest import tiny_gpt2
    from plmdepth.probes.variant_effects import resolve_scoring

    with pytest.raises(ValueError, match="does not apply to an autoregressive model"):
        resolve_scoring(tiny_gpt2(), "masked_marginal")
