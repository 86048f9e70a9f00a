"""Residual contributions (M1): sublayer parts are right and the table matches a plain reference."""

import numpy as np
import pytest
import torch

from conftest import tiny_bert, tiny_esm, tiny_gpt2
from plmdepth.probes.contributions import contributions


def _batch(lm, records):
    return lm.tokenize([r.id for r in records], [r.sequence for r in records])


@pytest.mark.parametrize("make", [tiny_esm, tiny_gpt2], ids=["esm", "gpt2"])
def test_pre_ln_parts_sum_to_the_block_update(make, records):
    lm = make()
    batch = _batch(lm, records)
    with torch.no_grad():
        h = lm.embed(batch)
        for layer in range(lm.n_layers):
            parts = lm.block_parts(layer, h, batch)
            torch.testing.assert_close(h + parts["attention"] + parts["mlp"], parts["out"])
            torch.testing.assert_close(parts["mlp_base"], h + parts["attention"])
            h = parts["out"]


def test_post_ln_parts_rebuild_the_block_through_its_norms(records):
    lm = tiny_bert()
    batch = _batch(lm, records)
    with torch.no_grad():
        h = lm.embed(batch)
        for layer in range(lm.n_layers):
            block = lm.layers[layer]
            parts = lm.block_parts(layer, h, batch)
            mid = block.attention.output.LayerNorm(h + parts["attention"])
            torch.testing.assert_close(parts["mlp_base"], mid)
            torch.testing.assert_close(block.output.LayerNorm(parts["mlp"] + mid), parts["out"])
            h = parts["out"]


def test_block_ratios_match_plain_hidden_states(records):
    lm = tiny_esm()
    table = contributions(lm, records, progress=False).query("part == 'block'")
    L = lm.n_layers
    batch = _batch(lm, records)
    ratios = {l: [] for l in range(L)}
    cosines = {l: [] for l in range(L)}
    with torch.no_grad():
        hs = [h for _, h in lm.hidden_states(batch)]
    keep = batch.residue_index >= 0
    for l in range(L):
        for vec_in, vec_out in zip(hs[l][keep].double(), hs[l + 1][keep].double()):
            delta = vec_out - vec_in
            ratios[l].append(float(delta.norm() / vec_in.norm()))
            cosines[l].append(float(delta @ vec_in / (delta.norm() * vec_in.norm())))
    np.testing.assert_allclose(table["ratio_mean"], [np.mean(ratios[l]) for l in range(L)], rtol=1e-6)
    np.testing.assert_allclose(table["ratio_max"], [np.max(ratios[l]) for l in range(L)], rtol=1e-6)
    np.testing.assert_allclose(table["cosine_mean"], [np.mean(cosines[l]) for l in range(L)], rtol=1e-6, atol=1e-9)
    assert (table["n_tokens"] == sum(len(r.sequence) for r in records)).all()


def test_table_has_every_part_and_layer(records):
    for lm in (tiny_esm(), tiny_bert(), tiny_gpt2()):
        table = contributions(lm, records, progress=False)
        assert sorted(set(table["part"])) == ["attention", "block", "mlp"]
        assert len(table) == 3 * lm.n_layers
        assert (table["ratio_mean"] > 0).all() and (table["ratio_max"] >= table["ratio_mean"]).all()
        assert table["norm"].iloc[0] == lm.info.norm
