"""Every probe on every architecture (the `architecture` fixture in conftest.py), each
against a plain reference: the model's own forward pass, one full pass per unit, with the
blocks' inputs and outputs recorded by hooks (tests/reference.py)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from plmdepth.plan import make_plan
from plmdepth.probes.contributions import contributions
from plmdepth.probes.layer_skipping import SkipConfig, layer_skipping
from plmdepth.probes.logit_lens import LogitLensConfig, logit_lens
from plmdepth.probes.variant_effects import AssayError, VariantEffectsConfig, layer_scores, variant_effects
from plmdepth.probes.variant_scoring import prefix_backend
from reference import (_forward_recording, check_skipping_against_reference, own_forward_inputs,
                       proteingym_optimal_window)
from test_variant_effects import _assay


@torch.no_grad()
def own_streams(lm, batch):
    """h_0..h_L and the logits of the model's own forward pass over the whole batch."""
    with own_forward_inputs(lm, batch):
        ins, outs, logits = _forward_recording(lm, batch, slice(None))
    return [ins[0]] + [outs[layer] for layer in range(lm.n_layers)], logits


def _tokenize(lm, records, plan=None):
    masked = [plan.for_id(r.id).masked for r in records] if plan is not None and lm.objective != "autoregressive" \
        else None
    return lm.tokenize([r.id for r in records], [r.sequence for r in records], masked=masked)


# ------------------------------------------------------------------------------ logit lens
@torch.no_grad()
def reference_logit_lens(lm, records, plan):
    """One sequence at a time: readout of every recorded stream (own logits at the last layer),
    at masked residues (masked models) or at every token before a residue (autoregressive)."""
    L, first = lm.n_layers, lm.first_lens_layer
    sums = np.zeros((3, L + 1))
    n = 0
    for record in records:
        batch = _tokenize(lm, [record], plan)
        hs, own = own_streams(lm, batch)
        if lm.objective == "autoregressive":
            at = batch.target_index[0] >= 0
        else:
            at = torch.isin(batch.residue_index[0], torch.tensor(plan.for_id(record.id).masked, dtype=torch.long))
        logits = {layer: lm.readout(hs[layer])[0, at] for layer in range(first, L)}
        logits[L] = own[0, at]
        logp = {layer: torch.log_softmax(z.double(), -1) for layer, z in logits.items()}
        p = {layer: lp.exp() for layer, lp in logp.items()}
        true = batch.target_ids[0, at]
        for layer in range(first, L + 1):
            sums[0, layer] += float((p[layer] * (logp[layer] - logp[L])).sum())
            sums[1, layer] += float((p[layer].argmax(-1) == p[L].argmax(-1)).sum())
            sums[2, layer] += float((p[layer].argmax(-1) == true).sum())
        n += int(at.sum())
    return sums[:, first:] / n, n


def test_logit_lens(architecture):
    """Last layer: KL 0 and agreement 1; every layer equals the plain reference."""
    lm, records = architecture
    plan = make_plan(records, lm.objective, seed=0)
    table = logit_lens(lm, records, plan, LogitLensConfig(batch_size=3, n_bootstrap=100), progress=False)
    assert table["layer"].tolist() == list(range(lm.first_lens_layer, lm.n_layers + 1))
    assert np.isfinite(table.select_dtypes("number").to_numpy()).all()
    last = table.iloc[-1]
    assert abs(last["kl"]) < 1e-6
    assert last["top1_agreement"] == 1.0
    assert (table["kl"] >= -1e-7).all()
    assert (table["kl_low"] <= table["kl"] + 1e-12).all() and (table["kl"] <= table["kl_high"] + 1e-12).all()
    (kl, agree, acc), n = reference_logit_lens(lm, records, plan)
    np.testing.assert_allclose(table["kl"], kl, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(table["top1_agreement"], agree, atol=1e-12)
    np.testing.assert_allclose(table["top1_accuracy"], acc, atol=1e-12)
    assert (table["n_positions"] == n).all()
    # the reference is not trivial (a random post-LN BERT/RoBERTa is nearly uniform at every layer: small KL)
    assert kl[:-1].max() > 1e-7


# ------------------------------------------------------------------------------ layer skipping
@pytest.mark.parametrize("mode", ["future", "current"])
def test_layer_skipping(architecture, mode):
    """The fast tables equal the plain reference (one full forward per skipped block)."""
    lm, records = architecture
    plan = make_plan(records, lm.objective, seed=2, mask_fraction=0.3)
    config = SkipConfig(mode=mode, batch_size=3, max_rows=64)
    check_skipping_against_reference(lm, records, plan, config)


@pytest.mark.parametrize("part", ["attention", "mlp"])
@pytest.mark.parametrize("mode", ["future", "current"])
def test_part_skipping(architecture, mode, part):
    """Skipping only the attention or only the MLP of a block equals a plain forward pass whose
    sublayer's output projection is zeroed at the intervened positions (every later block rerun);
    a model whose sublayers are not known is refused in one sentence."""
    lm, records = architecture
    plan = make_plan(records, lm.objective, seed=2, mask_fraction=0.3)
    config = SkipConfig(mode=mode, batch_size=3, max_rows=64, part=part)
    if "attention" not in lm.sublayers:
        with pytest.raises(ValueError, match=r"sublayers are not known, so its attention or MLP alone cannot be"):
            layer_skipping(lm, records, plan, config, progress=False)
        return
    effect, output = check_skipping_against_reference(lm, records, plan, config)
    assert (output["part"] == part).all() and (effect["part"] == part).all()


@pytest.mark.parametrize("part", ["block", "attention", "mlp"])
def test_local_effects(architecture, part):
    """Mode "local" (the direct effect: the update taken out of h_L, nothing recomputed) equals the
    plain reference read from one own forward pass; M2 has no rows; post-LN models are refused."""
    from reference import reference_local

    lm, records = architecture
    plan = make_plan(records, lm.objective, seed=2, mask_fraction=0.3)
    config = SkipConfig(mode="local", batch_size=3, part=part)
    if lm.sublayers.get("kind", lm.info.norm) not in ("pre-LN", "parallel") or (
            part != "block" and "attention" not in lm.sublayers):
        with pytest.raises(ValueError, match=r"(needs blocks that add their updates|sublayers are not known)"):
            layer_skipping(lm, records, plan, config, progress=False)
        return
    effect, output = layer_skipping(lm, records, plan, config, progress=False)
    assert effect.empty and (output["mode"] == "local").all()
    plans = [plan.for_id(r.id) for r in records]
    masked = [p.masked for p in plans] if lm.objective != "autoregressive" else None
    batch = lm.tokenize([r.id for r in records], [r.sequence for r in records], masked=masked)
    with own_forward_inputs(lm, batch), torch.no_grad():
        l2, kl = reference_local(lm, batch, plans, part)
    first = lm.first_lens_layer
    np.testing.assert_allclose(output["prob_l2_max"], l2.max(0)[first:], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(output["prob_l2_mean"], l2.mean(0)[first:], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(output["kl_mean"], kl.mean(0)[first:], rtol=1e-5, atol=1e-6)
    assert output["prob_l2_max"].max() > 1e-4  # not a comparison between zeros


# ------------------------------------------------------------------------------ contributions
def test_contributions(architecture):
    """h + block update is the next layer of the model's own forward; where the model declares
    additive sublayers (pre-LN, parallel) attention + mlp is the block update; the block rows
    of the table equal ratios and cosines of the own forward's streams."""
    lm, records = architecture
    batch = _tokenize(lm, records)
    L, first = lm.n_layers, lm.first_lens_layer
    kind = lm.sublayers.get("kind")
    hs, _ = own_streams(lm, batch)
    with torch.no_grad():
        h = lm.embed(batch)
        torch.testing.assert_close(h, hs[0])
        for layer in range(L):
            if layer < first:  # the block changes the stream's width
                h = lm.block(layer, h, batch)
                continue
            parts = lm.block_parts(layer, h, batch)
            torch.testing.assert_close(parts["out"], hs[layer + 1])
            if kind in ("pre-LN", "parallel"):
                torch.testing.assert_close(h + parts["attention"] + parts["mlp"], parts["out"])
                torch.testing.assert_close(parts["mlp_base"], h if kind == "parallel" else h + parts["attention"])
            if kind is not None:
                assert parts["attention_base"] is h
            h = parts["out"]

    table, per_sequence = contributions(lm, records, progress=False, per_sequence=True)
    assert sorted(set(table["part"])) == (["attention", "block", "mlp"] if kind else ["block"])
    assert len(table) == (3 if kind else 1) * (L - first)
    assert (table["ratio_mean"] > 0).all() and (table["ratio_max"] >= table["ratio_mean"]).all()
    assert (table["norm"] == lm.info.norm).all()
    keep = batch.residue_index >= 0
    assert (table["n_tokens"] == int(keep.sum())).all()
    block = table.query("part == 'block'")
    ratios, cosines = [], []
    for layer in range(first, L):
        h_in, h_out = hs[layer][keep].double(), hs[layer + 1][keep].double()
        delta = h_out - h_in
        ratios.append((delta.norm(dim=-1) / h_in.norm(dim=-1)).numpy())
        cosines.append(((delta * h_in).sum(-1) / (delta.norm(dim=-1) * h_in.norm(dim=-1))).numpy())
    np.testing.assert_allclose(block["ratio_mean"], [r.mean() for r in ratios], rtol=1e-6)
    np.testing.assert_allclose(block["ratio_max"], [r.max() for r in ratios], rtol=1e-6)
    np.testing.assert_allclose(block["cosine_mean"], [c.mean() for c in cosines], rtol=1e-6, atol=1e-9)
    # per sequence: the sums over its own residue tokens of the own forward's ratios
    rows = per_sequence[per_sequence["part"] == "block"]
    for b, rec in enumerate(records):
        mine = rows[rows["sequence"] == rec.id].sort_values("layer")
        assert (mine["n_tokens"] == int(keep[b].sum())).all()
        expected = [(hs[layer + 1][b][keep[b]].double() - hs[layer][b][keep[b]].double()).norm(dim=-1)
                    / hs[layer][b][keep[b]].double().norm(dim=-1) for layer in range(first, L)]
        np.testing.assert_allclose(mine["ratio_sum"], [float(e.sum()) for e in expected], rtol=1e-6)


# ------------------------------------------------------------------------------ variant effects
@torch.no_grad()
def _layer_log_probs(lm, sequence, masked=None):
    """One own forward of one sequence: the tokens and log p_l at every token, for every readable layer."""
    batch = lm.tokenize(["x"], [sequence], masked=[masked] if masked is not None else None)
    hs, own = own_streams(lm, batch)
    logits = [lm.readout(hs[layer]) for layer in range(lm.first_lens_layer, lm.n_layers)] + [own]
    return batch, [torch.log_softmax(z[0].double(), -1) for z in logits]


def reference_variant_scores(lm, assay, scoring, window=None):
    """One forward per sequence (log-likelihood ratio) or per mutation (marginals), nothing shared.

    With `window` (a context shorter than the wild type): a log-likelihood is the sum over the
    consecutive `window`-long chunks (ProGen2's rule), and a masked position is read in the
    window ProteinGym's `get_optimal_window` gives it."""
    ids = lm.alphabet.index
    scores = np.zeros((lm.n_layers + 1 - lm.first_lens_layer, len(assay.mutations)))
    width = window or len(assay.wild_type)
    if scoring == "log_likelihood_ratio":
        def loglik_piece(sequence):  # a residue-holding token t is predicted by the output at t - 1
            batch, logps = _layer_log_probs(lm, sequence)
            tokens, first = batch.input_ids[0].tolist(), batch.residue_index[0].tolist()
            return np.array([sum(float(lp[t - 1, tokens[t]]) for t in range(1, len(tokens)) if first[t] >= 0)
                             for lp in logps])

        def loglik(sequence):
            return sum(loglik_piece(sequence[a:a + width]) for a in range(0, len(sequence), width))
        wt = loglik(assay.wild_type)
        for v, sequence in enumerate(assay.variants["mutated_sequence"]):
            scores[:, v] = loglik(sequence) - wt
        return scores
    for v, muts in enumerate(assay.mutations):
        for p, w, m in muts:
            start, end = proteingym_optimal_window(p, len(assay.wild_type), width)
            piece = assay.wild_type[start:end]
            batch, logps = _layer_log_probs(lm, piece, [p - start] if scoring == "masked_marginal" else None)
            t = int((batch.residue_index[0] == p - start).nonzero().item())
            for r, lp in enumerate(logps):
                scores[r, v] += float(lp[t, ids[m]] - lp[t, ids[w]])
    return scores


def test_variant_effects(architecture):
    """Per-layer scores equal one plain forward per variant; a structure model is refused in one sentence."""
    lm, _ = architecture
    assay = _assay()
    config = VariantEffectsConfig(batch_size=4)
    if lm.inputs_for is not None:
        with pytest.raises(AssayError) as err:
            variant_effects(lm, [assay], config, progress=False)
        message = str(err.value)
        assert re.match(rf"^{lm.info.name} needs an input besides the sequence \(a structure\)", message)
        assert "\n" not in message and message.endswith(".") and re.search(r"[.;:]\s+[A-Z]", message) is None
        return
    scoring = "log_likelihood_ratio" if lm.objective == "autoregressive" else "masked_marginal"
    fast = layer_scores(lm, assay, config)
    ref = reference_variant_scores(lm, assay, scoring)
    np.testing.assert_allclose(fast, ref, rtol=1e-5, atol=1e-5)
    assert np.abs(ref).max() > 1e-3
    # the autoregressive models that can resume from the wild type's prefix do so
    expected = {"tiny-gpt2": "kv_cache", "tiny-unirep": "recurrent"}.get(
        lm.info.name, "kv_cache" if lm.info.family == "GPT2LMHeadModel" else None)  # hf-gpt2: one residue a token
    assert prefix_backend(lm) == expected


@pytest.mark.parametrize("window", [9, 12])
def test_variant_effects_in_context_windows(architecture, window):
    """A wild type longer than the context: every score read in ProteinGym's windows, equal to
    a plain reference that cuts them itself (odd and even widths: the centred window differs)."""
    lm, _ = architecture
    if lm.inputs_for is not None:
        pytest.skip("a structure model is refused (test_variant_effects)")
    assay = _assay()
    scoring = "log_likelihood_ratio" if lm.objective == "autoregressive" else "masked_marginal"
    saved = lm.max_residues
    lm.max_residues = window
    try:
        fast = layer_scores(lm, assay, VariantEffectsConfig(batch_size=4))
        ref = reference_variant_scores(lm, assay, scoring, window=window)
    finally:
        lm.max_residues = saved
    np.testing.assert_allclose(fast, ref, rtol=1e-5, atol=1e-5)
    assert not np.allclose(ref, reference_variant_scores(lm, assay, scoring), atol=1e-3)  # the windows matter
