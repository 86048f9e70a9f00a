"""DPLM-2 on a randomly initialised model of its architecture (shrunk in width and depth).

The real weights are on the hub only. The test model has DPLM-2's full 8229-token vocabulary,
its config (rotary, token dropout on `<mask_aa>`, pre-LN, untied decoder) and its module names;
it is saved with save_pretrained next to a `vocab.txt` and loaded back through `load_model`.
The forward is checked against a plain re-implementation of byprot's DPLM-2 forward written
here from its source (embeddings computed twice, rotary tables built for L/2 and applied to
the structure half and the amino-acid half separately, explicit softmax attention).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from conftest import SEQUENCES, tiny_dplm2_model, write_tiny_dplm2
from plmdepth.models.dplm2 import (DPLM2_CONFIGS, DPLM2_TOKENS, DPLM2ForMaskedLM, modality_position_ids,
                            wrap_dplm2)
from plmdepth.probes.logit_lens import LogitLensConfig, logit_lens
from plmdepth.plan import make_plan
from plmdepth.models import REGISTRY, ModelLoadError, load_model
from plmdepth.probes.variant_effects import VariantEffectsConfig, layer_scores
from test_layer_skipping import _check_against_reference
from test_variant_effects import _assay

@pytest.fixture(scope="module")
def original():
    return tiny_dplm2_model()  # conftest.py


@pytest.fixture(scope="module")
def dplm2_folder(tmp_path_factory, original):
    return write_tiny_dplm2(tmp_path_factory.mktemp("dplm2"), original)


@pytest.fixture(scope="module")
def lm(dplm2_folder):
    return load_model(str(dplm2_folder))


def _batch(lm, records=SEQUENCES, seed=1):
    plan = make_plan(records, "diffusion", seed=seed, mask_fraction=0.3)
    return lm.tokenize([r.id for r in records], [r.sequence for r in records],
                       masked=[plan.for_id(r.id).masked for r in records])


# ------------------------------------------------------------------ plain reference
def _gelu(x):
    return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def _rotate(x, cos, sin):
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


@torch.no_grad()
def reference_forward(model, input_ids, passes=2):
    """byprot's MultimodalDiffusionProteinLanguageModel.forward, by hand: (hidden states, logits)."""
    cfg = model.config
    p = dict(model.named_parameters())
    ln = torch.nn.functional.layer_norm
    real = input_ids.ne(cfg.pad_token_id)
    is_mask = input_ids == cfg.mask_token_id
    x = p["esm.embeddings.word_embeddings.weight"][input_ids]
    for _ in range(passes):  # ESM's token dropout, once in DPLM2.forward and once in ModifiedEsmModel.forward
        x = x.masked_fill(is_mask[..., None], 0.0)
        x = x * (1 - 0.15 * 0.8) / (1 - is_mask.sum(-1) / real.sum(-1))[:, None, None]
        x = x * real[..., None]
    B, L, d = x.shape
    H = cfg.num_attention_heads
    hd = d // H
    types = torch.where(real, (input_ids < 33).long(), torch.full_like(input_ids, 2))
    joint = bool((types == 0).any() and (types == 1).any())
    n = L // 2 if joint else L  # ModifiedRotaryEmbedding: a table for L/2 positions when both modalities
    inv_freq = 1.0 / (10000 ** (torch.arange(0, hd, 2).float() / hd))
    freqs = torch.outer(torch.arange(n).float(), inv_freq)
    emb = torch.cat((freqs, freqs), -1)
    cos, sin = emb.cos(), emb.sin()

    def rotary(t):  # (B, H, L, hd)
        if joint:
            a, b = t.chunk(2, dim=-2)
            return torch.cat((_rotate(a, cos, sin), _rotate(b, cos, sin)), dim=-2)
        return _rotate(t, cos, sin)

    bias = (~real)[:, None, None, :].float() * torch.finfo(torch.float32).min
    hidden = [x]
    for i in range(cfg.num_hidden_layers):
        pre = f"esm.encoder.layer.{i}."

        def lin(name, z):
            return z @ p[pre + name + ".weight"].T + p[pre + name + ".bias"]

        h = ln(x, (d,), p[pre + "attention.LayerNorm.weight"], p[pre + "attention.LayerNorm.bias"], cfg.layer_norm_eps)
        q, k, v = (lin(f"attention.self.{w}", h).view(B, L, H, hd).transpose(1, 2) for w in ("query", "key", "value"))
        q, k = rotary(q * hd ** -0.5), rotary(k)
        att = torch.softmax(q @ k.transpose(-1, -2) + bias, dim=-1)
        x = x + lin("attention.output.dense", (att @ v).transpose(1, 2).reshape(B, L, d))
        h = ln(x, (d,), p[pre + "LayerNorm.weight"], p[pre + "LayerNorm.bias"], cfg.layer_norm_eps)
        x = x + lin("output.dense", _gelu(lin("intermediate.dense", h)))
        hidden.append(x)
    z = ln(x, (d,), p["esm.encoder.emb_layer_norm_after.weight"], p["esm.encoder.emb_layer_norm_after.bias"],
           cfg.layer_norm_eps)
    z = _gelu(z @ p["lm_head.dense.weight"].T + p["lm_head.dense.bias"])
    z = ln(z, (d,), p["lm_head.layer_norm.weight"], p["lm_head.layer_norm.bias"], cfg.layer_norm_eps)
    return hidden, z @ p["lm_head.decoder.weight"].T + p["lm_head.bias"]


# ---------------------------------------------------------------------------- tests
def test_folder_loads_as_dplm2_with_its_own_weights(lm, dplm2_folder, original):
    assert isinstance(lm.network, DPLM2ForMaskedLM)
    assert (lm.info.family, lm.objective, lm.modality, lm.n_layers, lm.info.d_model) == (
        "DPLM-2", "diffusion", "sequence+structure", 3, 64)
    saved, own = original.state_dict(), lm.network.state_dict()
    assert set(saved) == set(own) and all(torch.equal(own[k], v) for k, v in saved.items())
    # untied: the decoder is its own matrix, as in EsmForDPLM2
    assert not torch.equal(own["lm_head.decoder.weight"], own["esm.embeddings.word_embeddings.weight"])
    assert len(lm.alphabet.tokens) == lm.network.config.vocab_size == 8229
    assert json.loads((dplm2_folder / "config.json").read_text())["dplm_type"] == "dplm2_esm"


def test_layout_structure_half_then_amino_acid_half(lm):
    batch = lm.tokenize(["a", "b"], ["MKT", "GSHML"], masked=[[1], []])
    W = 5 + 2
    ids = batch.input_ids
    assert ids.shape == (2, 2 * W)
    assert ids[0].tolist() == [33, 8228, 8228, 8228, 34, 1, 1, 0, 20, 32, 11, 2, 1, 1]
    assert ids[1].tolist() == [33, *[8228] * 5, 34, 0, 6, 8, 21, 20, 4, 2]  # G S H M L
    assert batch.true_ids[0, W + 2] == lm.alphabet.index["K"]
    # only the amino-acid half is mapped to residues; the output at a residue is scored against it
    assert batch.residue_index[1].tolist() == [-1] * (W + 1) + [0, 1, 2, 3, 4, -1]
    assert torch.equal(batch.target_index, batch.residue_index)
    assert torch.equal(batch.attention_mask, batch.true_ids.ne(1).long())
    # each modality has its own rotary positions 0..W-1
    assert modality_position_ids(ids, 1).tolist() == [list(range(W)) * 2]
    assert modality_position_ids(ids[:, W:], 1).tolist() == [list(range(W))]  # one modality: plain positions


def test_forward_equals_plain_dplm2_reference(lm):
    batch = _batch(lm)
    assert (batch.input_ids == 32).any()  # token dropout is exercised
    hidden, logits = reference_forward(lm.network, batch.input_ids)
    with torch.no_grad():
        own = lm.forward(batch)
        for layer, h in lm.hidden_states(batch):
            np.testing.assert_allclose(h.numpy(), hidden[layer].numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(own.numpy(), logits.numpy(), rtol=1e-4, atol=1e-5)
    # the comparison is not vacuous: ESM-2's positions (0..L-1) or a single embedding pass differ
    _, plain_positions = reference_forward(lm.network, batch.input_ids[:, batch.input_ids.shape[1] // 2:])
    assert not torch.allclose(own[:, batch.input_ids.shape[1] // 2:], plain_positions, atol=1e-3)
    _, one_pass = reference_forward(lm.network, batch.input_ids, passes=1)
    assert not torch.allclose(own, one_pass, atol=1e-3)


def test_one_embedding_pass_is_a_config_switch(dplm2_folder):
    model = DPLM2ForMaskedLM.from_pretrained(dplm2_folder).eval()
    model.config.dplm2_embedding_passes = 1
    lm = wrap_dplm2(model, "one-pass", "test")
    batch = _batch(lm)
    _, logits = reference_forward(model, batch.input_ids, passes=1)
    with torch.no_grad():
        np.testing.assert_allclose(lm.forward(batch).numpy(), logits.numpy(), rtol=1e-4, atol=1e-5)


def test_readout_at_last_layer_is_the_models_own_output(lm):
    batch = _batch(lm)
    aa = batch.residue_index >= 0
    with torch.no_grad():
        h = list(lm.hidden_states(batch))[-1][1]
        np.testing.assert_allclose(lm.readout(h)[aa].numpy(), lm.forward(batch)[aa].numpy(), rtol=1e-5, atol=1e-5)


def test_layer_skipping_amino_acid_vocabulary(lm):
    _check_against_reference(lm, list(SEQUENCES), "future", vocab="amino_acids")


@pytest.mark.parametrize("vocab", ["amino_acids"])  # "full": test_probes.py::test_logit_lens
def test_logit_lens_runs_and_agrees_with_itself_at_the_last_layer(lm, vocab):
    records = list(SEQUENCES)
    plan = make_plan(records, lm.objective, seed=0)
    table = logit_lens(lm, records, plan, LogitLensConfig(vocab=vocab, n_bootstrap=20), progress=False)
    assert list(table["layer"]) == list(range(lm.n_layers + 1))
    last = table.iloc[-1]
    assert last["kl"] == pytest.approx(0.0, abs=1e-6) and last["top1_agreement"] == 1.0
    assert np.isfinite(table["kl"]).all()


def test_variant_effect_masked_marginals_run(lm):
    scores = layer_scores(lm, _assay(), VariantEffectsConfig(scoring="masked_marginal", vocab="amino_acids"))
    assert scores.shape == (lm.n_layers + 1, 25) and np.isfinite(scores).all() and np.abs(scores).max() > 0


def test_registry_rows():
    for size, blocks, width in (("150m", 30, 640), ("650m", 33, 1280), ("3b", 36, 2560)):
        entry = REGISTRY[f"dplm2_{size}"]
        assert (entry.family, entry.objective, entry.modality, entry.licence, entry.source) == (
            "DPLM-2", "diffusion", "sequence+structure", "Apache-2.0", f"airkingbd/dplm2_{size}")
        assert (entry.blocks, entry.width) == (blocks, width)
        assert (DPLM2_CONFIGS[f"dplm2_{size}"]["num_hidden_layers"], DPLM2_CONFIGS[f"dplm2_{size}"]["hidden_size"]) \
            == (blocks, width)


@pytest.mark.parametrize("name", ["dplm2_150m", "dplm2_650m", "dplm2_3b"])
def test_registry_names_fail_offline_with_one_sentence(monkeypatch, tmp_path, name):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # empty cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as err:
        load_model(name)
    message = str(err.value)
    assert f"'airkingbd/{name}' is not in the Hugging Face cache" in message
    assert f"hf download airkingbd/{name} --local-dir" in message and "\n" not in message


def test_folders_that_are_not_token_level_dplm2_are_refused(dplm2_folder, tmp_path):
    from plmdepth.models.dplm2 import load_dplm2

    bit = tmp_path / "bit"
    bit.mkdir()
    config = json.loads((dplm2_folder / "config.json").read_text())
    (bit / "config.json").write_text(json.dumps({**config, "dplm_type": "dplm2_bit_esm"}))
    with pytest.raises(ModelLoadError, match="DPLM-2 Bit"):
        load_model(str(bit))
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "dplm_type"}))
    with pytest.raises(ModelLoadError, match="not a DPLM-2 checkpoint"):
        load_dplm2(plain)
    wrong = tmp_path / "wrong_vocab"
    DPLM2ForMaskedLM.from_pretrained(dplm2_folder).save_pretrained(wrong)
    (wrong / "vocab.txt").write_text("\n".join(DPLM2_TOKENS[:33]) + "\n")
    with pytest.raises(ModelLoadError, match="structure token <cls_struct> is missing"):
        load_model(str(wrong))
    (wrong / "vocab.txt").write_text("\n".join(DPLM2_TOKENS + ("<extra>",)) + "\n")
    with pytest.raises(ModelLoadError, match="lists 8230 tokens but the model has only 8229 embedding rows"):
        load_model(str(wrong))

