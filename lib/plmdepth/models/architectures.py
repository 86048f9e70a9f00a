"""transformers architectures seen as a `ProteinLM`: ESM (pre-LN), BERT and RoBERTa (post-LN), GPT-2.

Each `wrap_*` takes a loaded transformers model and says where its blocks, final norm and
head are; the family modules (`esm2`, `antiberty`, `iglm`, `sapiens`, `protgpt2`) load
weights and call these.
"""

from __future__ import annotations

from contextlib import contextmanager

from plmdepth.model import ModelInfo, ProteinLM, n_params, state_dict_checksum
from plmdepth.tokens import Alphabet

ESM_TOKENS = (
    "<cls>", "<pad>", "<eos>", "<unk>", "L", "A", "G", "V", "S", "E", "R", "T", "I", "D", "P", "K",
    "Q", "N", "F", "Y", "M", "H", "W", "C", "X", "B", "U", "Z", "O", ".", "-", "<null_1>", "<mask>",
)
ESM_ALPHABET = Alphabet(ESM_TOKENS, pad="<pad>", mask="<mask>", unk="<unk>", prefix=("<cls>",), suffix=("<eos>",))


@contextmanager
def quiet_transformers():
    """Silence transformers' load reports while loading shipped checkpoints whose extra
    heads (AntiBERTy's species/chain heads, GPT-2's `masked_bias`) are known and unused."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        hf_logging.enable_progress_bar()


def _info(network, name: str, source: str, family: str, objective: str, n_layers: int, d_model: int,
          licence: str, checksum: str | None, norm: str) -> ModelInfo:
    return ModelInfo(name=name, source=source, family=family, objective=objective, modality="sequence",
                     n_layers=n_layers, d_model=d_model, n_params=n_params(network), licence=licence,
                     checksum=checksum or state_dict_checksum(network), norm=norm)


def wrap_esm(hf_model, name: str, source: str, objective: str = "masked", licence: str = "MIT",
             alphabet: Alphabet = ESM_ALPHABET, checksum: str | None = None, family: str = "ESM-2") -> ProteinLM:
    """An `EsmForMaskedLM` as a `ProteinLM` (pre-LN; final norm `emb_layer_norm_after`)."""
    cfg = hf_model.config
    info = _info(hf_model, name, source, family, objective, cfg.num_hidden_layers, cfg.hidden_size, licence,
                 checksum, "pre-LN")
    return ProteinLM(hf_model, hf_model.esm.encoder.layer, hf_model.esm.encoder.emb_layer_norm_after,
                     hf_model.lm_head, alphabet, info, max_residues=cfg.max_position_embeddings - 2,
                     sublayers={"kind": "pre-LN", "mid": "LayerNorm"})


# BERT-family layers (BertLayer, RobertaLayer): the attention and MLP outputs are added to the
# stream before a layer norm; `output` receives the MLP input and the pre-norm stream it adds to.
POST_LN_SUBLAYERS = {"kind": "post-LN", "attention": "attention.output.dense", "mlp": "output.dense",
                     "mlp_base_of": "output"}


def _wrap_post_ln(hf_model, encoder, head, name: str, source: str, alphabet: Alphabet, max_residues: int,
                  family: str, licence: str, checksum: str | None) -> ProteinLM:
    cfg = hf_model.config
    info = _info(hf_model, name, source, family, "masked", cfg.num_hidden_layers, cfg.hidden_size, licence,
                 checksum, "post-LN")
    return ProteinLM(hf_model, encoder.layer, None, head, alphabet, info, max_residues=max_residues,
                     sublayers=POST_LN_SUBLAYERS)


def wrap_bert(hf_model, name: str, source: str, alphabet: Alphabet, family: str = "BERT",
              licence: str = "unknown", checksum: str | None = None) -> ProteinLM:
    """A `BertForMaskedLM` as a `ProteinLM` (post-LN: no final norm; head `cls`)."""
    n_special = len(alphabet.prefix) + len(alphabet.suffix)
    return _wrap_post_ln(hf_model, hf_model.bert.encoder, hf_model.cls, name, source, alphabet,
                         hf_model.config.max_position_embeddings - n_special, family, licence, checksum)


def wrap_roberta(hf_model, name: str, source: str, alphabet: Alphabet, max_residues: int, family: str = "RoBERTa",
                 licence: str = "unknown", checksum: str | None = None) -> ProteinLM:
    """A `RobertaForMaskedLM` as a `ProteinLM` (post-LN like BERT; head `lm_head`). RoBERTa's
    positions are offset by its padding id, so the context comes from the caller."""
    return _wrap_post_ln(hf_model, hf_model.roberta.encoder, hf_model.lm_head, name, source, alphabet,
                         max_residues, family, licence, checksum)


def wrap_gpt2(hf_model, name: str, source: str, alphabet: Alphabet, family: str = "GPT-2",
              licence: str = "unknown", checksum: str | None = None, max_residues: int | None = None) -> ProteinLM:
    """A `GPT2LMHeadModel` as a `ProteinLM` (pre-LN; final norm `ln_f`). The context is one
    residue a token unless `max_residues` says otherwise (byte-pair vocabularies)."""
    cfg = hf_model.config
    info = _info(hf_model, name, source, family, "autoregressive", cfg.n_layer, cfg.n_embd, licence, checksum,
                 "pre-LN")
    n_special = len(alphabet.prefix) + len(alphabet.suffix)
    return ProteinLM(hf_model, hf_model.transformer.h, hf_model.transformer.ln_f, hf_model.lm_head, alphabet,
                     info, max_residues=max_residues or cfg.n_positions - n_special, forward_kwargs={"use_cache": False},
                     sublayers={"kind": "pre-LN", "mid": "ln_2"})
