"""Logit lens (SPEC M4) against a hand-written reference and its invariants."""

import numpy as np
import pytest
import torch

from conftest import tiny_esm, tiny_gpt2
from plmdepth.probes.logit_lens import LogitLens, LogitLensConfig, logit_lens
from plmdepth.plan import make_plan


@torch.no_grad()
def reference_logit_lens(hf_model, records, plan, vocab_ids=None, with_reverse=False):
    """Plain torch, one sequence at a time: output_hidden_states, the ESM head by hand."""
    tokens = ["<cls>", "<pad>", "<eos>", "<unk>", *"LAGVSERTIDPKQNFYMHWCXBUZO", ".", "-", "<null_1>", "<mask>"]
    index = {t: i for i, t in enumerate(tokens)}
    L = hf_model.config.num_hidden_layers
    kl = np.zeros(L + 1)
    kl_reverse = np.zeros(L + 1)
    agree = np.zeros(L + 1)
    acc = np.zeros(L + 1)
    n = 0
    for rec in records:
        masked = plan.for_id(rec.id).masked
        true = [index["<cls>"]] + [index[a] for a in rec.sequence] + [index["<eos>"]]
        inp = list(true)
        for p in masked:
            inp[p + 1] = index["<mask>"]
        with torch.no_grad():
            out = hf_model(input_ids=torch.tensor([inp]), output_hidden_states=True)
        for p in masked:
            t = p + 1
            per_layer = []
            for layer in range(L + 1):
                if layer == L:
                    logits = out.logits[0, t]
                else:
                    h = hf_model.esm.encoder.emb_layer_norm_after(out.hidden_states[layer][0, t])
                    x = hf_model.lm_head.dense(h)
                    x = 0.5 * x * (1.0 + torch.erf(x / 2.0**0.5))
                    x = hf_model.lm_head.layer_norm(x)
                    logits = x @ hf_model.lm_head.decoder.weight.T + hf_model.lm_head.bias
                if vocab_ids is not None:
                    logits = logits[vocab_ids]
                per_layer.append(torch.softmax(logits.double(), -1))
            target = true[t] if vocab_ids is None else vocab_ids.index(true[t])
            for layer, p_l in enumerate(per_layer):
                p_L = per_layer[-1]
                kl[layer] += float((p_l * (p_l.log() - p_L.log())).sum())
                kl_reverse[layer] += float((p_L * (p_L.log() - p_l.log())).sum())
                agree[layer] += float(p_l.argmax() == p_L.argmax())
                acc[layer] += float(p_l.argmax() == target)
            n += 1
    if with_reverse:
        return kl / n, kl_reverse / n, agree / n, acc / n, n
    return kl / n, agree / n, acc / n, n


@pytest.mark.parametrize("vocab", ["full", "amino_acids"])
def test_logit_lens_equals_hand_written_reference(records, vocab):
    lm = tiny_esm(seed=3)
    plan = make_plan(records, "masked", seed=1, mask_fraction=0.3)
    table, per_sequence = logit_lens(lm, records, plan, LogitLensConfig(vocab=vocab, batch_size=3, n_bootstrap=50),
                                     progress=False, per_sequence=True)
    vocab_ids = lm.alphabet.canonical_ids if vocab == "amino_acids" else None
    kl, kl_reverse, agree, acc, n = reference_logit_lens(lm.network, records, plan, vocab_ids, with_reverse=True)
    np.testing.assert_allclose(table["kl"], kl, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(table["kl_reverse"], kl_reverse, rtol=1e-5, atol=1e-6)
    assert not np.allclose(kl[:-1], kl_reverse[:-1])  # the two directions differ on this model
    # the per-sequence sums are the table's means, sequence by sequence
    assert set(per_sequence["sequence"]) == {r.id for r in records if plan.for_id(r.id).masked}
    pooled = per_sequence.groupby("layer")[["kl_sum", "kl_reverse_sum", "top1_accuracy_sum", "n_positions"]].sum()
    np.testing.assert_allclose(pooled["kl_sum"] / pooled["n_positions"], kl, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pooled["kl_reverse_sum"] / pooled["n_positions"], kl_reverse, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pooled["top1_accuracy_sum"] / pooled["n_positions"], acc, atol=1e-12)
    for rec in records:
        rows = per_sequence[per_sequence["sequence"] == rec.id]
        assert (rows["n_positions"] == len(plan.for_id(rec.id).masked)).all()
    np.testing.assert_allclose(table["top1_agreement"], agree, atol=1e-12)
    np.testing.assert_allclose(table["top1_accuracy"], acc, atol=1e-12)
    assert (table["n_positions"] == n).all()
    assert table["layer"].tolist() == list(range(lm.n_layers + 1))
    np.testing.assert_allclose(table["relative_depth"], np.arange(lm.n_layers + 1) / lm.n_layers)
    # a random model is far from its own output at early layers: the reference is not trivial
    assert kl[0] > 1e-3


def test_amino_acid_lens_at_last_layer_is_renormalised_model_output(records):
    lm = tiny_esm()
    lens = LogitLens(lm, "amino_acids")
    batch = lm.tokenize([r.id for r in records], [r.sequence for r in records])
    with torch.no_grad():
        for _, h in lm.hidden_states(batch):
            pass
        ours = torch.softmax(lens(h, lm.n_layers), -1)
        own = torch.softmax(lm(batch)[..., lm.alphabet.canonical_ids], -1)
    keep = batch.attention_mask.bool()
    torch.testing.assert_close(ours[keep], own[keep], rtol=1e-5, atol=1e-6)


def test_autoregressive_lens_counts_every_residue(records):
    lm = tiny_gpt2()
    plan = make_plan(records, "autoregressive", seed=0)
    table = logit_lens(lm, records, plan, LogitLensConfig(n_bootstrap=0), progress=False)
    assert (table["n_positions"] == sum(len(r.sequence) for r in records)).all()
