"""Tiny randomly initialised models of the exact architectures, built from configs."""

from __future__ import annotations

import pytest
import torch

from plmdepth.fasta import Record
from plmdepth.models.architectures import ESM_TOKENS, wrap_bert, wrap_esm, wrap_gpt2
from plmdepth.tokens import Alphabet

SEQUENCES = [
    Record("s1", "", "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ"),
    Record("s2", "", "EVQLVESGGGLVQPGGSLRLSCAASGFTFSSYAMS"),
    Record("s3", "", "GSHMLEDPVDAFQLGLKHL"),
    Record("s4", "", "QVQLQESGPGLVKPSETLSLTCTVSGGSISSYYWSWIRQPPGKGLEWIG"),
]

BERT_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]") + tuple("ACDEFGHIKLMNPQRSTVWY")
GPT_TOKENS = BERT_TOKENS + ("[HEAVY]", "[HUMAN]")


def _seeded(seed: int):
    torch.manual_seed(seed)


def tiny_esm_hf(seed: int = 0, layers: int = 3, max_positions: int = 128):
    from transformers import EsmConfig, EsmForMaskedLM

    _seeded(seed)
    config = EsmConfig(vocab_size=len(ESM_TOKENS), hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
                       intermediate_size=64, max_position_embeddings=max_positions, position_embedding_type="rotary",
                       token_dropout=True, mask_token_id=32, pad_token_id=1, emb_layer_norm_before=False,
                       hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return EsmForMaskedLM(config).eval()


def tiny_esm(seed: int = 0, layers: int = 3):
    return wrap_esm(tiny_esm_hf(seed, layers), "tiny-esm", "random init")


def tiny_bert(seed: int = 0):
    from transformers import BertConfig, BertForMaskedLM

    _seeded(seed)
    config = BertConfig(vocab_size=len(BERT_TOKENS), hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=128, pad_token_id=0)
    alphabet = Alphabet(BERT_TOKENS, pad="[PAD]", mask="[MASK]", unk="[UNK]", prefix=("[CLS]",), suffix=("[SEP]",))
    return wrap_bert(BertForMaskedLM(config).eval(), "tiny-bert", "random init", alphabet)


def tiny_gpt2(seed: int = 0):
    from transformers import GPT2Config, GPT2LMHeadModel

    _seeded(seed)
    config = GPT2Config(vocab_size=len(GPT_TOKENS), n_embd=32, n_layer=3, n_head=4, n_positions=128)
    alphabet = Alphabet(GPT_TOKENS, pad="[PAD]", mask="[MASK]", unk="[UNK]", prefix=("[HEAVY]", "[HUMAN]"),
                        suffix=("[SEP]",))
    return wrap_gpt2(GPT2LMHeadModel(config).eval(), "tiny-gpt2", "random init", alphabet)


@pytest.fixture
def records():
    return list(SEQUENCES)


@pytest.fixture(params=["esm", "bert", "gpt2"])
def tiny_model(request):
    return {"esm": tiny_esm, "bert": tiny_bert, "gpt2": tiny_gpt2}[request.param]()


@pytest.fixture
def fasta_file(tmp_path):
    path = tmp_path / "seqs.fasta"
    path.write_text("".join(f">{r.id}\n{r.sequence}\n" for r in SEQUENCES))
    return path


def tiny_unirep(seed: int = 0, layers: int = 3):
    """A randomly initialised UniRep (mLSTM) of 3 layers, through the same wrapper as the real one."""
    from torch import nn

    from plmdepth.models import unirep
    from plmdepth.model import ModelInfo, ProteinLM

    _seeded(seed)
    model = unirep.UniRepLM(d_hidden=16, n_layers=layers)
    for p in model.parameters():
        nn.init.normal_(p, std=0.5)
    wrapped = unirep.UniRepTokenLM(model.eval())
    alphabet = Alphabet(unirep.UNIREP_TOKENS, pad="-", unk="X", prefix=("start",), suffix=("stop",))
    info = ModelInfo(name="tiny-unirep", source="random init", family="UniRep", objective="autoregressive",
                     modality="sequence", n_layers=layers, d_model=16, n_params=0, licence="none", checksum="none",
                     norm="none (mLSTM)")
    return ProteinLM(wrapped, wrapped.layers, None, nn.Sequential(model.head, wrapped.to_tokens), alphabet, info,
                     max_residues=1000, first_lens_layer=1)
