"""ProtGPT2 (GPT-2 with a byte-pair vocabulary) on a randomly initialised model of its architecture.

The real tokenizer and weights are on the hub only, so the test trains a small byte-level BPE
tokenizer the way ProtGPT2's was made (GPT-2 byte-level pre-tokenizer, `<|endoftext|>`,
sequences as 60-residue lines) on the committed proteome sample, and saves it beside a
random `GPT2LMHeadModel` of ProtGPT2's width and heads (shrunk in depth and vocabulary).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import SEQUENCES, write_tiny_protgpt2
from plmdepth.fasta import Record
from plmdepth.probes.logit_lens import LogitLensConfig, logit_lens
from plmdepth.plan import make_plan
from plmdepth.models.protgpt2 import SEPARATOR
from plmdepth.models import ModelLoadError, load_model

LONG = Record("long", "", "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ" * 4)  # 132 residues: three lines


@pytest.fixture(scope="module")
def protgpt2_folder(tmp_path_factory):
    return write_tiny_protgpt2(tmp_path_factory.mktemp("protgpt2"))  # conftest.py: tokenizer and model


@pytest.fixture(scope="module")
def lm(protgpt2_folder):
    return load_model(str(protgpt2_folder))


def test_loads_as_an_autoregressive_protgpt2(lm):
    assert (lm.info.family, lm.objective, lm.n_layers, lm.info.d_model) == ("ProtGPT2", "autoregressive", 3, 1280)
    assert lm.alphabet.max_tokens == 1024


def test_every_token_maps_to_the_residues_it_holds(lm):
    """Decode every token on its own: its letters are the sequence from its first residue on."""
    records = SEQUENCES + [LONG]
    batch = lm.tokenize([r.id for r in records], [r.sequence for r in records])
    decode = lm.alphabet.tokenizer.decode
    for b, record in enumerate(records):
        n = int(batch.attention_mask[b].sum())
        ids, first = batch.input_ids[b, :n].tolist(), batch.residue_index[b, :n].tolist()
        assert ids[0] == ids[-1] == lm.alphabet.id(SEPARATOR) and first[0] == first[-1] == -1
        rebuilt = ""
        for token_id, r in zip(ids, first):
            letters = decode([token_id], skip_special_tokens=True).replace("\n", "")
            assert (r == -1) == (letters == "")
            if letters:
                assert r == len(rebuilt) and record.sequence[r:r + len(letters)] == letters
            rebuilt += letters
        assert rebuilt == record.sequence
        assert n < len(record.sequence) + 2  # byte pairs: fewer tokens than residues
    # the output at token t predicts token t+1: its first residue and id
    assert torch.equal(batch.target_index[:, :-1], batch.residue_index[:, 1:])
    real = batch.target_index >= 0
    assert torch.equal(batch.target_ids[:, :-1][real[:, :-1]], batch.input_ids[:, 1:][real[:, :-1]])
    assert (batch.target_ids[~real] == -1).all()


def test_line_breaks_are_tokens_that_hold_no_residue(lm):
    batch = lm.tokenize([LONG.id], [LONG.sequence])
    letters = [lm.alphabet.tokenizer.decode([i]) for i in batch.input_ids[0].tolist()]
    breaks = [i for i, text in enumerate(letters) if text == "\n"]
    assert len(breaks) == 2 and all(batch.residue_index[0, i] == -1 for i in breaks)


def test_readout_at_the_last_layer_is_the_models_own_output(lm):
    batch = lm.tokenize([r.id for r in SEQUENCES], [r.sequence for r in SEQUENCES])
    with torch.no_grad():
        *_, (layer, h) = lm.hidden_states(batch)
        own = lm.network(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False).logits
        real = batch.attention_mask.bool()
        assert layer == lm.n_layers
        torch.testing.assert_close(lm.readout(h)[real], own[real], rtol=1e-5, atol=1e-5)


def test_logit_lens_reads_the_full_vocabulary_and_refuses_twenty_letters(lm):
    plan = make_plan(SEQUENCES, lm.objective, seed=0)
    table = logit_lens(lm, SEQUENCES, plan, LogitLensConfig(n_bootstrap=10), progress=False)
    last = table[table.layer == lm.n_layers].iloc[0]
    assert last.kl == pytest.approx(0.0, abs=1e-6) and last.top1_agreement == 1.0
    with pytest.raises(ValueError, match="use vocab='full', not 'amino_acids'"):
        logit_lens(lm, SEQUENCES, plan, LogitLensConfig(vocab="amino_acids"), progress=False)


def test_too_many_tokens_is_one_sentence(lm):
    long = "".join(np.random.default_rng(0).choice(list("ACDEFGHIKLMNPQRSTVWY"), 6000))
    with pytest.raises(ValueError, match=r"tokens long, longer than this model's context of 1024 tokens; crop it"):
        lm.tokenize(["huge"], [long])


def test_masked_positions_are_refused(lm):
    with pytest.raises(ValueError, match="no mask token"):
        lm.tokenize(["s1"], [SEQUENCES[0].sequence], masked=[[3]])


def test_folder_without_tokenizer_is_one_sentence(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(n_embd=16, n_layer=1, n_head=2, vocab_size=30)).save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match="has no tokenizer .* saved next to its weights"):
        load_model(str(tmp_path))


def test_contributions_run_and_the_sublayer_updates_add_up_to_the_block(lm):
    from plmdepth.probes.contributions import contributions

    frame = contributions(lm, SEQUENCES, progress=False)
    assert set(frame["part"]) == {"block", "attention", "mlp"} and len(frame) == 3 * lm.n_layers
    assert (frame["ratio_mean"] > 0).all() and (frame["norm"] == "pre-LN").all()
    batch = lm.tokenize([r.id for r in SEQUENCES], [r.sequence for r in SEQUENCES])
    with torch.no_grad():
        h = lm.embed(batch)
        parts = lm.block_parts(0, h, batch)
    torch.testing.assert_close(parts["attention"] + parts["mlp"], parts["out"] - h, rtol=1e-5, atol=1e-5)
