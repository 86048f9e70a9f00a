"""The model interface reproduces each model's own forward pass (SPEC §1)."""

import pytest
import torch

from conftest import tiny_esm


def _batch(lm, records):
    ids = [r.id for r in records]
    seqs = [r.sequence for r in records]
    masked = None if lm.objective == "autoregressive" else [[0, 3, 5], [2], [1, 4], [7, 8, 9]][: len(seqs)]
    return lm.tokenize(ids, seqs, masked=masked)


def _stream_logits(lm, batch):
    with torch.no_grad():
        h = None
        for _, h in lm.hidden_states(batch):
            pass
        return lm.readout(h), lm(batch)


def test_unirep_readout_at_last_layer_is_its_own_token_logits(records):
    from conftest import tiny_unirep

    lm = tiny_unirep()
    batch = _batch(lm, records)
    ours, own = _stream_logits(lm, batch)
    keep = batch.attention_mask.bool()
    torch.testing.assert_close(ours[keep], own[keep], rtol=1e-5, atol=1e-5)
    assert own.shape[-1] == len(lm.alphabet.tokens) and (own[..., 0] == -1e4).all()


def test_readout_at_last_layer_is_the_models_own_logits(tiny_model, records):
    batch = _batch(tiny_model, records)
    ours, own = _stream_logits(tiny_model, batch)
    keep = batch.attention_mask.bool()
    torch.testing.assert_close(ours[keep], own[keep], rtol=1e-5, atol=1e-5)


def test_esm_embed_includes_token_dropout_and_blocks_match_hidden_states(records):
    lm = tiny_esm()
    batch = _batch(lm, records)
    assert (batch.input_ids == lm.alphabet.id("<mask>")).any(), "the test needs mask tokens in the input"
    with torch.no_grad():
        own = lm.network(input_ids=batch.input_ids, attention_mask=batch.attention_mask, output_hidden_states=True)
        ours = [h for _, h in lm.hidden_states(batch)]
    keep = batch.attention_mask.bool()
    # transformers normalises only the last hidden state (emb_layer_norm_after); compare before it.
    for layer in range(lm.n_layers):
        torch.testing.assert_close(ours[layer][keep], own.hidden_states[layer][keep], rtol=1e-5, atol=1e-5)
    final = lm.network.esm.encoder.emb_layer_norm_after(ours[-1])
    torch.testing.assert_close(final[keep], own.hidden_states[-1][keep], rtol=1e-5, atol=1e-5)
    # token dropout really is in h_0: without mask tokens the embeddings of unmasked tokens differ
    unmasked = lm.tokenize(batch.ids, [r.sequence for r in records])
    with torch.no_grad():
        h0_plain = lm.embed(unmasked)
    same_token = (batch.input_ids == unmasked.input_ids) & keep
    assert not torch.allclose(ours[0][same_token], h0_plain[same_token])


def test_block_needs_embed_first(records):
    lm = tiny_esm()
    batch = lm.tokenize(["a"], ["MKT"])
    with pytest.raises(RuntimeError, match="embed"):
        lm.block(0, torch.zeros(1, 5, 32), batch)


def test_autoregressive_targets_are_the_next_residue(records):
    from conftest import tiny_gpt2

    lm = tiny_gpt2()
    batch = lm.tokenize(["a"], ["MKTA"])
    # tokens: [HEAVY] [HUMAN] M K T A [SEP]; output at [HUMAN] predicts residue 0 ... at T predicts A
    assert batch.target_index[0].tolist() == [-1, 0, 1, 2, 3, -1, -1]
    assert batch.residue_index[0].tolist() == [-1, -1, 0, 1, 2, 3, -1]
    assert batch.target_ids[0, 1].item() == lm.alphabet.id("M")


@pytest.mark.shipped
@pytest.mark.parametrize("name", ["antiberty", "iglm", "iglm-s", "sapiens-vh", "sapiens-vl", "unirep-64"])
def test_shipped_models_readout_matches_own_logits(name, records):
    from plmdepth.models import load_model

    from plmdepth.models import REGISTRY

    lm = load_model(name)
    assert (lm.n_layers, lm.info.d_model) == (REGISTRY[name].blocks, REGISTRY[name].width)  # the model table's
    batch = _batch(lm, records)
    ours, own = _stream_logits(lm, batch)
    keep = batch.attention_mask.bool()
    torch.testing.assert_close(ours[keep], own[keep], rtol=1e-5, atol=1e-4)
