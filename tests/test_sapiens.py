"""Sapiens VH/VL (fairseq RoBERTa, sapiens 1.0.5 wheel) mapped onto RobertaForMaskedLM.

The reference is a plain-torch forward of the fairseq checkpoint, written from its tensors
and fairseq 0.10's TransformerSentenceEncoder / RobertaLMHead, independent of transformers.
"""

from __future__ import annotations

import argparse
from functools import lru_cache
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from plmdepth import weights
from plmdepth.fasta import read_fasta
from plmdepth.models.sapiens import (
    SAPIENS_ALPHABET,
    SAPIENS_TOKENS,
    SAPIENS_WHEEL,
    SapiensError,
    load_sapiens,
    map_state_dict,
    max_residues,
)
from plmdepth.tokens import CANONICAL, encode

DATA = Path(__file__).resolve().parents[1] / "data"
CHAINS = {"vh": "antibody_vh.fasta", "vl": "antibody_vl.fasta"}
MIN_ACCURACY = 0.75


@lru_cache(maxsize=None)
def model(chain: str):
    return load_sapiens(chain)


@lru_cache(maxsize=None)
def raw_checkpoint(chain: str):
    path = weights.fetch(SAPIENS_WHEEL) / f"sapiens/models/v1/checkpoint_{chain}.pt"
    with torch.serialization.safe_globals([argparse.Namespace]):
        ck = torch.load(path, map_location="cpu", weights_only=True)
    return {k: v.double() for k, v in ck["model"].items()}, ck["args"]


def fairseq_dictionary() -> list[str]:
    """fairseq Dictionary: <s> <pad> </s> <unk>, dict.txt in order, then <mask> (masked_lm task)."""
    lines = (weights.fetch(SAPIENS_WHEEL) / "sapiens/models/v1/dict.txt").read_text().split("\n")
    return ["<s>", "<pad>", "</s>", "<unk>"] + [ln.split()[0] for ln in lines if ln.strip()] + ["<mask>"]


def fairseq_tokens(sequences: list[str]) -> torch.Tensor:
    """sapiens seq2tokens ('<s> ' + spaced residues with X -> <mask> + ' </s>'), right-padded with <pad>."""
    vocab = {t: i for i, t in enumerate(fairseq_dictionary())}
    rows = [[vocab["<s>"]] + [vocab["<mask>" if a in "X*" else a] for a in s] + [vocab["</s>"]] for s in sequences]
    out = torch.full((len(rows), max(map(len, rows))), vocab["<pad>"], dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row)
    return out


def fairseq_logits(state: dict, args, tokens: torch.Tensor) -> torch.Tensor:
    """fairseq 0.10 RobertaModel(tokens)[0] for a post-LN TransformerSentenceEncoder, in float64."""
    p = "decoder.sentence_encoder."
    pad, d, heads, eps = 1, args.encoder_embed_dim, args.encoder_attention_heads, 1e-5
    hd = d // heads

    def ln(x, name):
        return F.layer_norm(x, (d,), state[f"{name}.weight"], state[f"{name}.bias"], eps)

    def lin(x, name):
        return x @ state[f"{name}.weight"].T + state[f"{name}.bias"]

    keep = tokens.ne(pad)
    positions = torch.cumsum(keep.long(), dim=1) * keep.long() + pad  # fairseq utils.make_positions
    x = state[p + "embed_tokens.weight"][tokens] + state[p + "embed_positions.weight"][positions]
    x = ln(x, p + "emb_layer_norm")
    x = x * keep.unsqueeze(-1)
    B, T = tokens.shape
    for i in range(args.encoder_layers):
        q = p + f"layers.{i}."
        split = lambda t: t.view(B, T, heads, hd).transpose(1, 2)  # noqa: E731
        query = split(lin(x, q + "self_attn.q_proj") * hd**-0.5)
        key, value = split(lin(x, q + "self_attn.k_proj")), split(lin(x, q + "self_attn.v_proj"))
        scores = (query @ key.transpose(-1, -2)).masked_fill(~keep[:, None, None, :], float("-inf"))
        attended = (scores.softmax(-1) @ value).transpose(1, 2).reshape(B, T, d)
        x = ln(x + lin(attended, q + "self_attn.out_proj"), q + "self_attn_layer_norm")
        x = ln(x + lin(F.gelu(lin(x, q + "fc1")), q + "fc2"), q + "final_layer_norm")
    h = ln(F.gelu(lin(x, "decoder.lm_head.dense")), "decoder.lm_head.layer_norm")
    return h @ state["decoder.lm_head.weight"].T + state["decoder.lm_head.bias"]


def first_sequences(chain: str, n: int = 30) -> list[str]:
    return [r.sequence for r in read_fasta(DATA / CHAINS[chain], limit=n)]


@pytest.mark.shipped
def test_vocabulary_is_the_fairseq_dictionary():
    assert list(SAPIENS_TOKENS) == fairseq_dictionary()
    assert SAPIENS_ALPHABET.residues == CANONICAL


@pytest.mark.shipped
@pytest.mark.parametrize("chain", sorted(CHAINS))
def test_roberta_logits_equal_a_plain_torch_fairseq_forward(chain):
    hf = model(chain)
    state, args = raw_checkpoint(chain)
    seqs = first_sequences(chain, 3)
    n_max = max_residues(hf)
    assert n_max == args.max_positions - 2
    seqs = [
        seqs[0][:5] + "X" + seqs[0][6:20] + "XX" + seqs[0][22:],
        seqs[1],
        seqs[2][:40].replace("S", "X"),  # short: padding in the batch
        (seqs[0] * 2)[:n_max - 1] + "X",  # the longest sequence the context holds
    ]
    tokens = fairseq_tokens(seqs)
    assert (tokens == SAPIENS_TOKENS.index("<mask>")).sum() > 5
    # the same ids through plmdepth's encoder with the exported framing
    masked = [[i for i, a in enumerate(s) if a == "X"] for s in seqs]
    batch = encode(SAPIENS_ALPHABET, [str(i) for i in range(len(seqs))], [s.replace("X", "A") for s in seqs], masked)
    assert torch.equal(batch.input_ids, tokens)
    with torch.no_grad():
        ours = hf(input_ids=tokens, attention_mask=batch.attention_mask).logits
    expected = fairseq_logits(state, args, tokens).float()
    keep = batch.attention_mask.bool()
    torch.testing.assert_close(ours[keep], expected[keep], rtol=1e-4, atol=1e-4)


def masked_accuracy(chain: str, n: int = 30, fraction: float = 0.15, seed: int = 0) -> float:
    hf = model(chain)
    seqs = first_sequences(chain, n)
    generator = torch.Generator().manual_seed(seed)
    masked = [torch.randperm(len(s), generator=generator)[: max(1, round(fraction * len(s)))].tolist() for s in seqs]
    batch = encode(SAPIENS_ALPHABET, [str(i) for i in range(len(seqs))], seqs, masked)
    with torch.no_grad():
        logits = hf(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    at = batch.input_ids == SAPIENS_ALPHABET.id("<mask>")
    amino = torch.tensor(SAPIENS_ALPHABET.canonical_ids)
    predicted = amino[logits[at][:, amino].argmax(-1)]
    return (predicted == batch.true_ids[at]).double().mean().item()


@pytest.mark.shipped
@pytest.mark.parametrize("chain", sorted(CHAINS))
def test_masked_token_accuracy_is_high(chain):
    accuracy = masked_accuracy(chain)
    print(f"Sapiens {chain}: top-1 masked accuracy {accuracy:.3f} (30 sequences, 15% masked, seed 0)")
    assert accuracy > MIN_ACCURACY


def test_unmapped_checkpoint_keys_are_listed():
    state = {"decoder.sentence_encoder.embed_tokens.weight": torch.zeros(25, 4),
             "decoder.lm_head.bias": torch.zeros(25),
             "decoder.sentence_encoder.layers.0.self_attn.bias_k": torch.zeros(4),
             "decoder.classification_heads.x.dense.weight": torch.zeros(4, 4)}
    with pytest.raises(SapiensError, match="bias_k.*classification_heads"):
        map_state_dict(state, 4)
