"""Layer skipping (M2, M3): the fast implementation equals the plain reference."""

import numpy as np
import pytest
import torch

from conftest import tiny_esm
from plmdepth.probes.layer_skipping import SkipConfig, layer_skipping
from plmdepth.plan import make_plan
from reference import check_skipping_against_reference


def _check_against_reference(lm, records, mode, max_rows=64, batch_size=3, vocab="full"):
    plan = make_plan(records, lm.objective, seed=2, mask_fraction=0.3)
    config = SkipConfig(mode=mode, batch_size=batch_size, max_rows=max_rows, vocab=vocab)
    vocab_ids = lm.alphabet.canonical_ids if vocab == "amino_acids" else None
    return check_skipping_against_reference(lm, records, plan, config, vocab_ids)


def test_chunking_and_batching_do_not_change_results(records):
    lm = tiny_esm(layers=5)
    a = _check_against_reference(lm, records, "future", max_rows=2, batch_size=1)
    b = _check_against_reference(lm, records, "future", max_rows=1000, batch_size=4)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x.select_dtypes("number"), y.select_dtypes("number"), rtol=1e-6, atol=1e-7)


def test_max_rows_bounds_every_block_call(records):
    """With more units per batch than max_rows, units are grouped: results unchanged, no call larger."""
    lm = tiny_esm(layers=4)
    sizes = []
    handles = [block.register_forward_pre_hook(lambda m, args: sizes.append(args[0].shape[0])) for block in lm.layers]
    try:
        _check_against_reference(lm, records, "future", max_rows=2, batch_size=4)
    finally:
        for handle in handles:
            handle.remove()
    # the reference and the clean pass run all 4 sequences at once; every skip call has at most 2 rows
    assert sorted(set(sizes)) == [2, 4]


def test_amino_acid_vocabulary(records):
    _check_against_reference(tiny_esm(), records, "future", vocab="amino_acids")


def test_skipping_a_block_whose_update_is_zero_has_zero_effect(records):
    lm = tiny_esm(layers=4)
    block = lm.layers[2]
    with torch.no_grad():  # zero the attention output projection and the MLP output: Δ_2 = 0
        block.attention.output.dense.weight.zero_()
        block.attention.output.dense.bias.zero_()
        block.output.dense.weight.zero_()
        block.output.dense.bias.zero_()
    plan = make_plan(records, "masked", seed=0, mask_fraction=0.3)
    effect_table, output_table = layer_skipping(lm, records, plan, SkipConfig(), progress=False)
    assert (effect_table.query("skipped == 2")[["effect_max", "effect_mean"]] == 0).all().all()
    row = output_table.query("skipped == 2").iloc[0]
    assert row["prob_l2_max"] == 0 and abs(row["kl_mean"]) < 1e-12
    # skipping block 1 still changes block 3 (block 2's update is zero whatever its input)
    assert effect_table.query("skipped == 1 and affected == 3")["effect_max"].item() > 0


@pytest.mark.shipped
@pytest.mark.parametrize("name", ["antiberty", "iglm", "sapiens-vh", "unirep-64"])
def test_fast_skipping_equals_reference_on_shipped_models(name):
    from plmdepth.fasta import read_fasta
    from plmdepth.models import load_model

    records = read_fasta("data/antibody_vh.fasta", limit=4)
    _check_against_reference(load_model(name), records, "future", batch_size=2)
