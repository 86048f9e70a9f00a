"""ESM-2 through fair-esm agrees with ESM-2 through transformers (same random weights, two loaders)."""

import argparse
import socket
import time

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import SEQUENCES, tiny_esm_hf
from plmdepth.probes.contributions import contributions
from plmdepth.models.fair_esm import (KEY_MAP, MAX_RESIDUES, FairEsmLM, fair_esm_key, hf_to_fair_esm, load_fair_esm,
                               wrap_fair_esm)
from plmdepth.probes.layer_skipping import SkipConfig, layer_skipping
from plmdepth.probes.logit_lens import LogitLensConfig, logit_lens
from plmdepth.plan import make_plan
from plmdepth.models.architectures import ESM_ALPHABET, ESM_TOKENS, wrap_esm
from plmdepth.models import ModelLoadError
from reference import check_skipping_against_reference

MASKED = [[0, 3, 5], [2], [1, 4], [7, 8, 9]]
TOL = dict(rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def pair():
    """(transformers ProteinLM, fair-esm ProteinLM) with the same random weights."""
    hf = tiny_esm_hf(seed=5)
    return wrap_esm(hf, "tiny-esm-hf", "random init"), wrap_fair_esm(hf_to_fair_esm(hf), "tiny-esm-fair", "random init")


def _batch(lm, records=SEQUENCES, masked=MASKED):
    return lm.tokenize([r.id for r in records], [r.sequence for r in records], masked=masked)


def test_fair_esm_alphabet_is_plmdepths_esm_alphabet():
    import esm

    alphabet = esm.data.Alphabet.from_architecture("ESM-1b")
    assert tuple(alphabet.all_toks) == ESM_TOKENS == ESM_ALPHABET.tokens
    assert (alphabet.cls_idx, alphabet.padding_idx, alphabet.eos_idx, alphabet.mask_idx) == (0, 1, 2, 32)
    assert alphabet.prepend_bos and alphabet.append_eos
    # fair-esm's own batch converter frames a sequence exactly as plmdepth does
    _, _, tokens = alphabet.get_batch_converter()([("s3", SEQUENCES[2].sequence)])
    assert tokens[0].tolist() == _batch_ids(SEQUENCES[2].sequence)


def _batch_ids(sequence):
    from plmdepth.tokens import encode

    return encode(ESM_ALPHABET, ["x"], [sequence]).input_ids[0].tolist()


def test_hf_to_fair_esm_copies_every_weight_and_derives_rotary(pair):
    hf_lm, fair_lm = pair
    hf, esm2 = hf_lm.network, fair_lm.network.esm2
    target = esm2.state_dict()
    for key, value in hf.state_dict().items():
        fair = fair_esm_key(key)
        if fair is None:
            assert key in ("esm.rotary_embeddings.inv_freq", "esm.embeddings.position_ids")
            continue
        assert torch.equal(target[fair], value), key
    assert "lm_head.decoder.weight" in KEY_MAP and esm2.lm_head.weight is esm2.embed_tokens.weight
    for layer in esm2.layers:  # derived, not copied: still the same frequencies
        assert torch.equal(layer.self_attn.rot_emb.inv_freq, hf.esm.rotary_embeddings.inv_freq)
        assert layer.fc1.out_features == hf.config.intermediate_size == 64  # not fair-esm's 4 x 32
        assert layer.final_layer_norm.eps == hf.config.layer_norm_eps
    assert esm2.emb_layer_norm_after.eps == esm2.lm_head.layer_norm.eps == hf.config.layer_norm_eps


def test_untied_decoder_is_copied_untied():
    hf = tiny_esm_hf(seed=1, layers=1)
    with torch.no_grad():
        hf.lm_head.decoder.weight = torch.nn.Parameter(torch.randn_like(hf.lm_head.decoder.weight))
    esm2 = hf_to_fair_esm(hf)
    assert esm2.lm_head.weight is not esm2.embed_tokens.weight
    assert torch.equal(esm2.lm_head.weight, hf.lm_head.decoder.weight)
    assert torch.equal(esm2.embed_tokens.weight, hf.esm.embeddings.word_embeddings.weight)
    hf_lm, fair_lm = wrap_esm(hf, "a", "x"), wrap_fair_esm(esm2, "b", "x")
    with torch.no_grad():
        torch.testing.assert_close(fair_lm(_batch(fair_lm)), hf_lm(_batch(hf_lm)), **TOL)


def test_hf_to_fair_esm_refuses_what_esm2_cannot_express():
    from transformers import EsmConfig, EsmForMaskedLM

    config = EsmConfig(vocab_size=33, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=32, position_embedding_type="absolute", emb_layer_norm_before=True,
                       pad_token_id=1, mask_token_id=32, max_position_embeddings=64)
    with pytest.raises(ValueError, match="rotary.*emb_layer_norm_before"):
        hf_to_fair_esm(EsmForMaskedLM(config))


@pytest.mark.parametrize("case", ["padded+masked", "one sequence, no padding", "no mask tokens"])
def test_adapter_is_esm2_forward_exactly(pair, case):
    _, lm = pair
    esm2 = lm.network.esm2
    records, masked = {"padded+masked": (SEQUENCES, MASKED), "one sequence, no padding": (SEQUENCES[:1], [[2, 4]]),
                       "no mask tokens": (SEQUENCES, None)}[case]
    batch = _batch(lm, records, masked)
    L = lm.n_layers
    with torch.no_grad():
        own = esm2(batch.input_ids, repr_layers=list(range(L + 1)))
        ours = lm(batch)
        hs = [h for _, h in lm.hidden_states(batch)]
    assert ours.shape == (len(records), batch.input_ids.shape[1], 33)
    assert torch.equal(ours, own["logits"])
    for layer in range(L):  # fair-esm's representations: h_0 .. h_{L-1}, then norm(h_L)
        assert torch.equal(hs[layer], own["representations"][layer]), layer
    torch.testing.assert_close(lm.final_norm(hs[L]), own["representations"][L], rtol=0, atol=1e-6)
    torch.testing.assert_close(lm.readout(hs[L]), own["logits"], rtol=0, atol=1e-6)


def test_adapter_refuses_an_attention_mask_that_is_not_the_padding(pair):
    _, lm = pair
    batch = _batch(lm)
    with pytest.raises(ValueError, match="attention_mask"):
        lm.network(batch.input_ids, torch.ones_like(batch.attention_mask))


def test_wrapper_metadata(pair):
    hf_lm, lm = pair
    assert isinstance(lm.network, FairEsmLM)
    assert lm.max_residues == MAX_RESIDUES == 1022
    assert lm.sublayers == {"kind": "pre-LN", "mid": "mid", "attention": "layer.self_attn", "mlp": "layer.fc2"}
    assert (lm.info.family, lm.info.objective, lm.info.norm) == ("ESM-2", "masked", "pre-LN")
    assert (lm.info.n_layers, lm.info.d_model, lm.info.n_params) == (3, 32, hf_lm.info.n_params)
    assert lm.final_norm is lm.network.esm2.emb_layer_norm_after and lm.head is lm.network.esm2.lm_head


def test_two_loaders_give_the_same_stream_logits_and_readout(pair):
    hf_lm, fair_lm = pair
    a, b = _batch(hf_lm), _batch(fair_lm)
    assert torch.equal(a.input_ids, b.input_ids) and (a.input_ids == 32).any() and (a.attention_mask == 0).any()
    with torch.no_grad():
        ha = [h for _, h in hf_lm.hidden_states(a)]
        hb = [h for _, h in fair_lm.hidden_states(b)]
        assert len(ha) == len(hb) == hf_lm.n_layers + 1
        for layer, (x, y) in enumerate(zip(ha, hb)):
            assert x.shape == y.shape
            torch.testing.assert_close(y, x, **TOL, msg=f"h_{layer}")
        torch.testing.assert_close(fair_lm(b), hf_lm(a), **TOL)
        torch.testing.assert_close(fair_lm.readout(hb[-1]), hf_lm.readout(ha[-1]), **TOL)
        torch.testing.assert_close(fair_lm.readout(hb[1]), hf_lm.readout(ha[1]), **TOL)


def test_sublayers_are_observed_batch_first_and_match_transformers(pair):
    hf_lm, fair_lm = pair
    a, b = _batch(hf_lm), _batch(fair_lm)
    with torch.no_grad():
        h, g = hf_lm.embed(a), fair_lm.embed(b)
        for layer in range(fair_lm.n_layers):
            pa, pb = hf_lm.block_parts(layer, h, a), fair_lm.block_parts(layer, g, b)
            assert set(pb) == {"out", "attention", "attention_base", "mlp", "mlp_base"}
            torch.testing.assert_close(g + pb["attention"] + pb["mlp"], pb["out"])
            torch.testing.assert_close(pb["mlp_base"], g + pb["attention"])
            for part in pa:
                assert pb[part].shape == pa[part].shape
                torch.testing.assert_close(pb[part], pa[part], **TOL)
            h, g = pa["out"], pb["out"]


def _assert_tables_agree(x, y):
    assert list(x.columns) == list(y.columns) and len(x) == len(y)
    numeric = x.select_dtypes("number").columns
    np.testing.assert_allclose(y[numeric].to_numpy(float), x[numeric].to_numpy(float), **TOL)
    other = [c for c in x.columns if c not in numeric]
    assert (x[other].to_numpy() == y[other].to_numpy()).all()


def test_measurement_tables_agree(pair):
    hf_lm, fair_lm = pair
    records = list(SEQUENCES)
    plan = make_plan(records, "masked", seed=1, mask_fraction=0.3)
    for vocab in ("full", "amino_acids"):
        config = LogitLensConfig(vocab=vocab, batch_size=3, n_bootstrap=20)
        x = logit_lens(hf_lm, records, plan, config, progress=False)
        y = logit_lens(fair_lm, records, plan, config, progress=False)
        _assert_tables_agree(x, y)
        assert x["kl"].iloc[0] > 1e-3  # not a comparison of zeros
    for mode in ("future", "current"):
        config = SkipConfig(mode=mode, batch_size=3, max_rows=8)
        for x, y in zip(layer_skipping(hf_lm, records, plan, config, progress=False),
                        layer_skipping(fair_lm, records, plan, config, progress=False)):
            _assert_tables_agree(x, y)
    x, y = contributions(hf_lm, records, progress=False), contributions(fair_lm, records, progress=False)
    assert sorted(set(y["part"])) == ["attention", "block", "mlp"]
    _assert_tables_agree(x, y)


def test_fast_skipping_on_fair_esm_equals_the_plain_reference(pair):
    from reference import assert_matches_reference, reference_skipping

    _, lm = pair
    records = list(SEQUENCES)
    plan = make_plan(records, "masked", seed=2, mask_fraction=0.3)
    plans = [plan.for_id(r.id) for r in records]
    effect_table, output_table = layer_skipping(lm, records, plan, SkipConfig(batch_size=4), progress=False)
    effect, l2, kl = reference_skipping(lm, _batch(lm, records, [p.masked for p in plans]), plans, "future")
    assert_matches_reference(effect_table, output_table, effect, l2, kl)


# --------------------------------------------------------------------------- loading
def _no_network(monkeypatch, tmp_path):
    def refuse(*args, **kwargs):
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))  # an empty download cache


def test_hub_name_without_network_is_a_one_line_load_error(monkeypatch, tmp_path):
    _no_network(monkeypatch, tmp_path)
    start = time.perf_counter()
    with pytest.raises(ModelLoadError) as err:
        load_fair_esm("esm2_t6_8M_UR50D")
    assert time.perf_counter() - start < 5
    message = str(err.value)
    assert "\n" not in message and "esm2_t6_8M_UR50D" in message and "path" in message


def test_failed_download_is_a_one_line_load_error(monkeypatch, tmp_path):
    import plmdepth.models.fair_esm

    _no_network(monkeypatch, tmp_path)
    monkeypatch.setattr(plmdepth.models.fair_esm, "hub_reachable", lambda host: True)  # let fair-esm try
    with pytest.raises(ModelLoadError) as err:
        load_fair_esm("esm2_t6_8M_UR50D")
    assert "\n" not in str(err.value) and "could not load" in str(err.value)


def test_bad_names_and_paths_are_load_errors(tmp_path):
    with pytest.raises(ModelLoadError, match="not a fair-esm ESM-2 model"):
        load_fair_esm("esm1b_t33_650M_UR50S")
    with pytest.raises(ModelLoadError, match="no fair-esm checkpoint file"):
        load_fair_esm(str(tmp_path / "missing.pt"))
    junk = tmp_path / "junk.pt"
    torch.save({"weights": torch.zeros(2)}, junk)
    with pytest.raises(ModelLoadError, match="not a fair-esm ESM-2 checkpoint"):
        load_fair_esm(str(junk))


def test_local_checkpoint_in_fair_esm_format_loads(tmp_path):
    """A .pt laid out as fair-esm's ESM-2 releases (cfg Namespace + encoder.* keys), no regression file."""
    from esm.model.esm2 import ESM2

    torch.manual_seed(0)
    esm2 = ESM2(num_layers=2, embed_dim=32, attention_heads=4, token_dropout=True).eval()
    state = {f"encoder.sentence_encoder.{k}": v for k, v in esm2.state_dict().items()
             if not k.startswith("contact_head")}
    cfg = argparse.Namespace(encoder_layers=2, encoder_embed_dim=32, encoder_attention_heads=4, token_dropout=True)
    path = tmp_path / "esm2_t2_tiny.pt"
    torch.save({"cfg": {"model": cfg}, "model": state}, path)
    lm = load_fair_esm(str(path))
    assert lm.info.name == "esm2_t2_tiny" and lm.info.checksum.startswith("sha256:") and lm.n_layers == 2
    batch = _batch(lm)
    with torch.no_grad():
        torch.testing.assert_close(lm(batch), esm2(batch.input_ids)["logits"], rtol=0, atol=0)


@pytest.mark.parametrize("mode", ["future", "local"])
@pytest.mark.parametrize("part", ["attention", "mlp"])
def test_part_skipping_agrees_between_the_two_loaders_and_the_reference(pair, part, mode):
    """One sublayer skipped (total, "future" positions; and direct, "local"): fair-esm's modules and
    transformers' on the same weights give the same tables, and fair-esm's equals the plain reference
    (its sublayer output projection zeroed at the intervened positions, time-first)."""
    hf_lm, fair_lm = pair
    records = list(SEQUENCES)
    plan = make_plan(records, "masked", seed=2, mask_fraction=0.3)
    config = SkipConfig(mode=mode, batch_size=3, part=part)
    for x, y in zip(layer_skipping(hf_lm, records, plan, config, progress=False),
                    layer_skipping(fair_lm, records, plan, config, progress=False)):
        pd.testing.assert_frame_equal(x, y, **TOL)
    if mode == "future":
        check_skipping_against_reference(fair_lm, records, plan, config)
