"""Per-layer variant effects (M5) against a plain reference: one forward per variant, nothing shared."""

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import tiny_esm
from plmdepth.probes.variant_effects import (Assay, AssayError, VariantEffectsConfig, layer_scores, parse_mutant,
                                      read_assays, spearman, variant_effects)

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
    for v, muts in enumerate(assay.mutations):  # one forward per mutation of every variant
        for p, w, m in muts:
            _, logps = _layer_log_probs(lm, assay.wild_type, masked=[p] if scoring == "masked_marginal" else None)
            for layer, lp in enumerate(logps):
                scores[layer, v] += float(lp[n_pre + p, ids[m]] - lp[n_pre + p, ids[w]])
    return scores


# masked_marginal and log_likelihood_ratio on every architecture: test_probes.py::test_variant_effects
@pytest.mark.parametrize("make,scoring", [(tiny_esm, "wt_marginal")])
def test_layer_scores_equal_plain_reference(make, scoring):
    lm, assay = make(), _assay()
    fast = layer_scores(lm, assay, VariantEffectsConfig(scoring=scoring, batch_size=4))
    ref = reference_scores(lm, assay, scoring)
    np.testing.assert_allclose(fast, ref, rtol=1e-5, atol=1e-5)
    assert np.abs(ref).max() > 1e-3


def test_spearman_per_layer_and_mean():
    lm, assay = tiny_esm(), _assay()
    table = variant_effects(lm, [assay, Assay("toy2", assay.wild_type, assay.variants, assay.mutations)],
                            VariantEffectsConfig(n_bootstrap=20), progress=False)
    scores = layer_scores(lm, assay, VariantEffectsConfig())
    toy = table[table["assay"] == "toy"]
    expected = [spearman(scores[layer], assay.variants["DMS_score"].to_numpy()) for layer in toy["layer"]]
    np.testing.assert_allclose(toy["spearman"], expected, equal_nan=True)
    finite = toy.dropna(subset=["spearman"])
    assert len(finite) >= lm.n_layers  # at a masked position the embeddings of a random ESM-2 are constant
    assert ((finite.spearman_low <= finite.spearman + 1e-9) & (finite.spearman <= finite.spearman_high + 1e-9)).all()
    mean = table[table["assay"] == "mean"]
    np.testing.assert_allclose(mean["spearman"].to_numpy(), toy["spearman"].to_numpy(), equal_nan=True)
    assert set(table["scoring"]) == {"masked_marginal"}


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


def test_sequences_longer_than_the_context_are_refused_with_a_clear_message():
    lm, assay = tiny_esm(), _assay()
    lm.max_residues = len(WT) - 1
    with pytest.raises(AssayError, match=r"assay toy: sequences of 28 residues are longer than .* context of 27"):
        layer_scores(lm, assay, VariantEffectsConfig())
