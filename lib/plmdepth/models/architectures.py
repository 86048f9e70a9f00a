"""The transformers architectures of the shipped models, as cases of the generic adapter: ESM
(pre-LN), BERT and RoBERTa (post-LN), GPT-2.

Each `wrap_*` takes a loaded transformers model with a hand-built `Alphabet` (the shipped
vocabularies are read from their files, not through transformers' tokenizers: SPEC §5) and
the context it covers; `adapter.adapt` finds its blocks, final norm and head. The family
modules (`esm2`, `antiberty`, `iglm`, `sapiens`, `protgpt2`) load weights and call these.
"""

from __future__ import annotations

from plmdepth.model import ProteinLM
from plmdepth.models.adapter import adapt
from plmdepth.tokens import Alphabet

ESM_TOKENS = (
    "<cls>", "<pad>", "<eos>", "<unk>", "L", "A", "G", "V", "S", "E", "R", "T", "I", "D", "P", "K",
    "Q", "N", "F", "Y", "M", "H", "W", "C", "X", "B", "U", "Z", "O", ".", "-", "<null_1>", "<mask>",
)
ESM_ALPHABET = Alphabet(ESM_TOKENS, pad="<pad>", mask="<mask>", unk="<unk>", prefix=("<cls>",), suffix=("<eos>",))


def wrap_esm(hf_model, name: str, source: str, objective: str = "masked", licence: str = "MIT",
             alphabet: Alphabet = ESM_ALPHABET, checksum: str | None = None, family: str = "ESM-2") -> ProteinLM:
    """An `EsmForMaskedLM` as a `ProteinLM` (pre-LN; final norm `emb_layer_norm_after`)."""
    return adapt(hf_model, alphabet, name=name, source=source, objective=objective, family=family, licence=licence,
                 checksum=checksum, max_residues=hf_model.config.max_position_embeddings - 2)


def wrap_bert(hf_model, name: str, source: str, alphabet: Alphabet, family: str = "BERT",
              licence: str = "unknown", checksum: str | None = None) -> ProteinLM:
    """A `BertForMaskedLM` as a `ProteinLM` (post-LN: no final norm; head `cls`)."""
    n_special = len(alphabet.prefix) + len(alphabet.suffix)
    return adapt(hf_model, alphabet, name=name, source=source, objective="masked", family=family, licence=licence,
                 checksum=checksum, max_residues=hf_model.config.max_position_embeddings - n_special)


def wrap_roberta(hf_model, name: str, source: str, alphabet: Alphabet, max_residues: int, family: str = "RoBERTa",
                 licence: str = "unknown", checksum: str | None = None) -> ProteinLM:
    """A `RobertaForMaskedLM` as a `ProteinLM` (post-LN like BERT; head `lm_head`). RoBERTa's
    positions are offset by its padding id, so the context comes from the caller."""
    return adapt(hf_model, alphabet, name=name, source=source, objective="masked", family=family, licence=licence,
                 checksum=checksum, max_residues=max_residues)


def wrap_gpt2(hf_model, name: str, source: str, alphabet: Alphabet, family: str = "GPT-2",
              licence: str = "unknown", checksum: str | None = None, max_residues: int | None = None) -> ProteinLM:
    """A `GPT2LMHeadModel` as a `ProteinLM` (pre-LN; final norm `ln_f`). The context is one
    residue a token unless `max_residues` says otherwise (byte-pair vocabularies)."""
    n_special = len(alphabet.prefix) + len(alphabet.suffix)
    return adapt(hf_model, alphabet, name=name, source=source, objective="autoregressive", family=family,
                 licence=licence, checksum=checksum,
                 max_residues=max_residues or hf_model.config.n_positions - n_special)
