"""The paper's ESM-2 35M and 150M architectures at full published size, randomly initialised:
every measurement runs, and the readout reproduces the model's own logits."""

import pytest
import torch

from plmdepth.probes.contributions import contributions
from plmdepth.fasta import Record
from plmdepth.probes.layer_skipping import layer_skipping
from plmdepth.probes.logit_lens import logit_lens
from plmdepth.plan import make_plan
from plmdepth.models.architectures import wrap_esm

# published configs of facebook/esm2_t12_35M_UR50D and facebook/esm2_t30_150M_UR50D
CONFIGS = {
    "35M": dict(num_hidden_layers=12, hidden_size=480, num_attention_heads=20, intermediate_size=1920),
    "150M": dict(num_hidden_layers=30, hidden_size=640, num_attention_heads=20, intermediate_size=2560),
}


@pytest.mark.parametrize("size", list(CONFIGS))
def test_full_size_esm2_runs_every_measurement(size):
    from transformers import EsmConfig, EsmForMaskedLM

    torch.manual_seed(0)
    config = EsmConfig(vocab_size=33, max_position_embeddings=1026, position_embedding_type="rotary",
                       token_dropout=True, mask_token_id=32, pad_token_id=1, emb_layer_norm_before=False,
                       layer_norm_eps=1e-5, **CONFIGS[size])
    lm = wrap_esm(EsmForMaskedLM(config).eval(), f"esm2-{size}-random", "random init")
    assert lm.n_layers == CONFIGS[size]["num_hidden_layers"] and lm.max_residues == 1024
    from plmdepth.models import REGISTRY

    for entry in (REGISTRY[f"esm2_t{lm.n_layers}_{size}"], REGISTRY[f"esm2_t{lm.n_layers}_{size}-fair"]):
        assert (entry.blocks, entry.width) == (lm.n_layers, lm.info.d_model)
    records = [Record("a", "", "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ"), Record("b", "", "EVQLVESGGGLVQPGGSLRLSCAAS")]
    plan = make_plan(records, "masked", seed=0, mask_fraction=0.3)
    batch = lm.tokenize([r.id for r in records], [r.sequence for r in records], masked=[p.masked for p in plan.sequences])
    with torch.no_grad():
        for _, h in lm.hidden_states(batch):
            pass
        keep = batch.attention_mask.bool()
        torch.testing.assert_close(lm.readout(h)[keep], lm(batch)[keep], rtol=1e-5, atol=1e-4)
    lens = logit_lens(lm, records, plan, progress=False)
    assert len(lens) == lm.n_layers + 1 and abs(lens["kl"].iloc[-1]) < 1e-6
    effect, output = layer_skipping(lm, records, plan, progress=False)
    assert len(effect) == lm.n_layers * (lm.n_layers - 1) // 2 and len(output) == lm.n_layers
    table = contributions(lm, records, progress=False)
    assert len(table) == 3 * lm.n_layers and (table["ratio_mean"] > 0).all()
