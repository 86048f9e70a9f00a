"""Tuned lens: identity at initialisation, recovers a known rotation, deterministic, never
changes the model, seeded split, translators round-trip, logit rows equal the logit lens."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from conftest import GPT_TOKENS, SEQUENCES, tiny_esm, tiny_gpt2, tiny_unirep
from plmdepth.fasta import Record
from plmdepth.model import ModelInfo, ProteinLM, state_dict_checksum
from plmdepth.plan import make_plan
from plmdepth.probes.logit_lens import LogitLens, LogitLensConfig, logit_lens
from plmdepth.probes import streaming, tuned_lens as tuned_lens_module
from plmdepth.probes.tuned_lens import (TRANSLATORS_FILE, TunedLens, TunedLensConfig, load_translators,
                                        save_translators, split_records, train_tuned_lens, tuned_lens)
from plmdepth.tokens import CANONICAL, Alphabet

FAST = dict(epochs=5, lr=1e-2, batch_size=2, n_bootstrap=50)


def _records(n: int, seed: int = 0) -> list[Record]:
    rng = np.random.default_rng(seed)
    return [Record(f"r{i}", "", "".join(rng.choice(list(CANONICAL), size=int(rng.integers(20, 40)))))
            for i in range(n)]


# ----------------------------------------------------------------- a model with a known rotation
class _Rotate(nn.Module):
    def __init__(self, q: torch.Tensor):
        super().__init__()
        self.register_buffer("q", q)

    def forward(self, h, *args, **kwargs):
        return h @ self.q.T  # h_{l+1} = Q h_l for every position's vector


class _RotatedNet(nn.Module):
    """h_0 = token + position embedding; blocks Q, I, Q^T (so h_1 = h_2 = Q h_3, h_3 = h_0); linear head."""

    def __init__(self, vocab: int, d: int, seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(d, d, generator=g))
        self.tokens = nn.Parameter(torch.randn(vocab, d, generator=g))
        self.positions = nn.Parameter(0.5 * torch.randn(64, d, generator=g))
        self.layers = nn.ModuleList([_Rotate(q), _Rotate(torch.eye(d)), _Rotate(q.T.contiguous())])
        self.head = nn.Linear(d, vocab)
        with torch.no_grad():
            self.head.weight.copy_(torch.randn(vocab, d, generator=g) / d**0.5 * 3)
            self.head.bias.zero_()

    def forward(self, input_ids, attention_mask=None):
        h = self.tokens[input_ids] + self.positions[: input_ids.shape[1]]
        for layer in self.layers:
            h = layer(h)
        return SimpleNamespace(logits=self.head(h))


def rotated_lm(d: int = 16, seed: int = 0) -> ProteinLM:
    alphabet = Alphabet(GPT_TOKENS, pad="[PAD]", mask="[MASK]", unk="[UNK]", prefix=("[HEAVY]",), suffix=("[SEP]",))
    net = _RotatedNet(len(GPT_TOKENS), d, seed).eval()
    info = ModelInfo(name="rotated", source="by construction", family="test", objective="autoregressive",
                     modality="sequence", n_layers=3, d_model=d, n_params=0, licence="none",
                     checksum=state_dict_checksum(net), norm="none")
    return ProteinLM(net, net.layers, None, net.head, alphabet, info, max_residues=60)


def test_rotated_model_is_what_it_claims():
    lm = rotated_lm()
    batch = lm.tokenize(["a"], ["MKTAYIAKQR"])
    with torch.no_grad():
        hs = dict(lm.hidden_states(batch))
        torch.testing.assert_close(lm.readout(hs[3]), lm(batch))
        torch.testing.assert_close(hs[3], hs[0])
        q = lm.layers[0].q
        torch.testing.assert_close(hs[1], hs[3] @ q.T)
        torch.testing.assert_close(hs[2], hs[1])


def test_tuned_lens_recovers_a_known_rotation():
    """At the rotated layers the logit lens is far off; the tuned lens learns Q^T and is not."""
    lm = rotated_lm()
    records = _records(24)
    plan = make_plan(records, lm.objective, seed=0)
    config = TunedLensConfig(epochs=100, lr=0.1, batch_size=16, n_bootstrap=20)
    table, split, log, _ = tuned_lens(lm, records, plan, config, progress=False)
    kl = table.pivot(index="layer", columns="lens", values="kl")
    for layer in (1, 2):
        assert kl.loc[layer, "logit"] > 0.5, kl  # the rotation really hides the prediction from the logit lens
        assert kl.loc[layer, "tuned"] < 0.1 * kl.loc[layer, "logit"], kl
        assert kl.loc[layer, "tuned"] < 0.02, kl
    assert kl.loc[0, "logit"] < 1e-6 and kl.loc[0, "tuned"] < 0.02, kl  # h_0 = h_3: nothing to translate
    agree = table.pivot(index="layer", columns="lens", values="top1_agreement")
    assert (agree.loc[[1, 2], "logit"] < 0.1).all() and (agree.loc[[1, 2], "tuned"] > 0.9).all(), agree
    assert log["kl"].iloc[-1] < 0.05 * log["kl"].iloc[0]
    assert (split["split"] == "held_out").sum() == table["n_sequences"].iloc[0] == 12


# ----------------------------------------------------------------- identity at initialisation
@pytest.mark.parametrize("make", [tiny_esm, tiny_gpt2, tiny_unirep], ids=["esm", "gpt2", "unirep"])
@pytest.mark.parametrize("vocab", ["full", "amino_acids"])
def test_untrained_tuned_lens_is_the_logit_lens(make, vocab):
    lm = make()
    rng_state = torch.get_rng_state()
    tuned, logit = TunedLens(lm, vocab), LogitLens(lm, vocab)
    assert torch.equal(torch.get_rng_state(), rng_state)  # zero init draws nothing from the global generator
    assert set(tuned.translators) == {str(l) for l in range(lm.first_lens_layer, lm.n_layers)}
    plan = make_plan(SEQUENCES, lm.objective, seed=0)
    masked = [plan.for_id(r.id).masked for r in SEQUENCES] if lm.objective != "autoregressive" else None
    batch = lm.tokenize([r.id for r in SEQUENCES], [r.sequence for r in SEQUENCES], masked=masked)
    with torch.no_grad():
        for layer, h in lm.hidden_states(batch):
            if layer >= lm.first_lens_layer:
                torch.testing.assert_close(tuned(h, layer), logit(h, layer), rtol=0, atol=1e-6)


# ----------------------------------------------------------------- training
def test_training_is_deterministic_and_leaves_the_model_alone():
    lm = tiny_esm()
    records = _records(8)
    plan = make_plan(records, lm.objective, seed=0, mask_fraction=0.3)
    before = state_dict_checksum(lm)
    flags = [p.requires_grad for p in lm.parameters()]
    config = TunedLensConfig(**FAST)
    first, log1 = train_tuned_lens(lm, records, plan, config)
    second, log2 = train_tuned_lens(lm, records, plan, config)
    assert state_dict_checksum(lm) == before
    assert [p.requires_grad for p in lm.parameters()] == flags
    assert all(p.grad is None for p in lm.parameters())
    a, b = first.translators.state_dict(), second.translators.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(v.abs().max() > 0 for v in a.values())  # it did train
    assert log1["epochs"].equals(log2["epochs"]) and len(log1["epochs"]) == config.epochs
    other, _ = train_tuned_lens(lm, records, plan, TunedLensConfig(**{**FAST, "seed": 1}))
    assert not all(torch.equal(a[k], other.translators.state_dict()[k]) for k in a)


def test_split_is_seeded_disjoint_complete_and_reported():
    records = _records(10)
    splits = [split_records(records, 0.5, seed) for seed in range(5)]
    for train, held in splits:
        assert not set(train) & set(held) and sorted(train + held) == list(range(10)) and len(train) == 5
    assert split_records(records, 0.5, 3) == splits[3]
    assert len({tuple(t) for t, _ in splits}) > 1
    assert split_records(records, 0.3, 0)[0].__len__() == 3
    assert len(split_records(records[:2], 0.9, 0)[1]) == 1  # always something held out
    with pytest.raises(ValueError):
        split_records(records[:1], 0.5, 0)
    with pytest.raises(ValueError):
        split_records(records, 1.0, 0)

    lm = tiny_gpt2()
    plan = make_plan(records, lm.objective, seed=0)
    table, split, _, _ = tuned_lens(lm, records, plan, TunedLensConfig(**{**FAST, "epochs": 1, "seed": 3}),
                                    progress=False)
    train, held = splits[3]
    assert split["id"].tolist() == [r.id for r in records]
    assert split.index[split["split"] == "train"].tolist() == train
    assert split.index[split["split"] == "held_out"].tolist() == held
    assert (table["n_sequences"] == len(held)).all()


def test_translators_round_trip(tmp_path):
    lm = tiny_esm()
    records = _records(6)
    plan = make_plan(records, lm.objective, seed=0, mask_fraction=0.3)
    lens, _ = train_tuned_lens(lm, records, plan, TunedLensConfig(**FAST))
    save_translators(lens, tmp_path / "t.pt")
    raw = torch.load(tmp_path / "t.pt", weights_only=True)
    assert raw["vocab"] == "full" and all(isinstance(v, torch.Tensor) for v in raw["translators"].values())
    loaded = load_translators(lm, tmp_path / "t.pt")
    for k, v in lens.translators.state_dict().items():
        assert torch.equal(loaded.translators.state_dict()[k], v)
    h = torch.randn(5, lm.info.d_model)
    with torch.no_grad():
        torch.testing.assert_close(loaded(h, 1), lens(h, 1), rtol=0, atol=0)
    with pytest.raises(ValueError, match="another model"):
        load_translators(tiny_esm(seed=1), tmp_path / "t.pt")

    # the measurement writes them next to its checkpoint (in the results folder) and removes the checkpoint
    checkpoint = tmp_path / ".tuned_lens.partial.pt"
    tuned_lens(lm, records, plan, TunedLensConfig(**FAST), progress=False, checkpoint=checkpoint, key={"k": 1})
    assert not checkpoint.exists()
    again = load_translators(lm, tmp_path / TRANSLATORS_FILE)
    assert all(torch.equal(again.translators.state_dict()[k], v) for k, v in lens.translators.state_dict().items())


# ----------------------------------------------------------------- the table
@pytest.mark.parametrize("make,vocab", [(tiny_esm, "amino_acids"), (tiny_gpt2, "full"), (tiny_unirep, "full")],
                         ids=["esm-amino_acids", "gpt2-full", "unirep-full"])
def test_table_has_both_lenses_and_logit_rows_equal_the_logit_lens(make, vocab):
    lm = make()
    records = list(SEQUENCES)
    plan = make_plan(records, lm.objective, seed=0, mask_fraction=0.3)
    config = TunedLensConfig(**{**FAST, "vocab": vocab})
    table, split, _, _ = tuned_lens(lm, records, plan, config, progress=False)
    held = [r for r, s in zip(records, split["split"]) if s == "held_out"]
    reference = logit_lens(lm, held, plan, LogitLensConfig(vocab, config.batch_size, config.n_bootstrap, config.seed),
                           progress=False)
    assert table.columns.tolist() == ["lens", *reference.columns]
    layers = list(range(lm.first_lens_layer, lm.n_layers + 1))
    assert table["lens"].tolist() == ["logit"] * len(layers) + ["tuned"] * len(layers)
    logit = table[table["lens"] == "logit"].drop(columns="lens").reset_index(drop=True)
    np.testing.assert_allclose(logit.to_numpy(float), reference.to_numpy(float), rtol=0, atol=1e-6)
    tuned = table[table["lens"] == "tuned"].reset_index(drop=True)
    assert tuned["layer"].tolist() == layers
    assert abs(tuned["kl"].iloc[-1]) < 1e-6 and tuned["top1_agreement"].iloc[-1] == 1.0  # layer L: the model's output
    assert (tuned["kl"] >= -1e-7).all() and np.isfinite(tuned.select_dtypes("number").to_numpy()).all()
    assert (tuned["n_positions"] == logit["n_positions"]).all()


def test_evaluation_resumes_after_an_interruption(tmp_path, monkeypatch):
    """Training is redone (deterministic on CPU), the evaluation resumes from its checkpoint."""
    lm = tiny_gpt2()
    records = _records(8)
    plan = make_plan(records, lm.objective, seed=0)
    config = TunedLensConfig(**FAST)
    fresh = tuned_lens(lm, records, plan, config, progress=False)[0]
    checkpoint, calls, add = tmp_path / ".tuned_lens.partial.pt", [], tuned_lens_module._BothLenses.add

    def interrupted(self, rows):
        calls.append(rows)
        if len(calls) == 2:
            raise KeyboardInterrupt
        add(self, rows)

    monkeypatch.setattr(streaming, "CHECKPOINT_EVERY_S", 0.0)
    monkeypatch.setattr(tuned_lens_module._BothLenses, "add", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tuned_lens(lm, records, plan, config, progress=False, checkpoint=checkpoint, key={"k": 1})
    assert checkpoint.exists()
    resumed = tuned_lens(lm, records, plan, config, progress=False, checkpoint=checkpoint, key={"k": 1})[0]
    assert len(calls) == 3  # 2 evaluation batches: one before the interruption, one after it
    assert not checkpoint.exists()
    np.testing.assert_allclose(resumed.drop(columns="lens").to_numpy(float),
                               fresh.drop(columns="lens").to_numpy(float), rtol=0, atol=1e-12)
