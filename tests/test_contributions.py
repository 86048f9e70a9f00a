"""Residual contributions (M1): post-LN sublayer parts rebuild the block through its norms.

The additive sublayers, h + update = next layer and the table against plain hidden states are
checked on every architecture in test_probes.py::test_contributions."""

import torch

from conftest import tiny_bert


def _batch(lm, records):
    return lm.tokenize([r.id for r in records], [r.sequence for r in records])


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

