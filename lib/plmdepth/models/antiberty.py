"""AntiBERTy: a BERT masked language model of antibody sequences (8 blocks), shipped in its PyPI wheel."""

from __future__ import annotations

from plmdepth import weights
from plmdepth.model import ProteinLM
from plmdepth.models.architectures import wrap_bert
from plmdepth.models.hub import quiet_transformers
from plmdepth.tokens import Alphabet


def load_antiberty() -> ProteinLM:
    """AntiBERTy (BERT masked LM, 8 blocks) from the antiberty 0.1.3 wheel."""
    from transformers import BertForMaskedLM

    root = weights.fetch(weights.ANTIBERTY) / "antiberty" / "trained_models"
    folder = root / "AntiBERTy_md_smooth"
    with quiet_transformers():
        hf_model = BertForMaskedLM.from_pretrained(folder)
    alphabet = Alphabet.from_vocab_file(root / "vocab.txt", pad="[PAD]", mask="[MASK]", unk="[UNK]",
                                        prefix=("[CLS]",), suffix=("[SEP]",))
    checksum = "sha256:" + weights.sha256_of(folder / "pytorch_model.bin")
    return wrap_bert(hf_model, "antiberty", weights.ANTIBERTY.requirement, alphabet, family="AntiBERTy",
                     licence=weights.ANTIBERTY.licence, checksum=checksum)
