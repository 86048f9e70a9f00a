"""IgLM and IgLM-S: GPT-2 causal language models of antibodies, shipped in the iglm wheel,
prompted with a chain and a species token."""

from __future__ import annotations

from plmdepth import weights
from plmdepth.model import ProteinLM
from plmdepth.models.architectures import wrap_gpt2
from plmdepth.models.hub import quiet_transformers
from plmdepth.models.hub import ModelLoadError
from plmdepth.tokens import Alphabet

IGLM_CHAINS = {"heavy": "[HEAVY]", "light": "[LIGHT]"}
IGLM_SPECIES = ("camel", "human", "mouse", "rabbit", "rat", "rhesus")


def load_iglm(variant: str = "IgLM", chain: str = "heavy", species: str = "human") -> ProteinLM:
    """IgLM or IgLM-S (GPT-2 causal LM) from the iglm 0.1.0 wheel, prompted `[CHAIN] [SPECIES]`."""
    from transformers import GPT2LMHeadModel

    if chain not in IGLM_CHAINS:
        raise ModelLoadError(f"IgLM chain must be one of {sorted(IGLM_CHAINS)}, not {chain!r}.")
    if species not in IGLM_SPECIES:
        raise ModelLoadError(f"IgLM species must be one of {IGLM_SPECIES}, not {species!r}.")
    root = weights.fetch(weights.IGLM) / "iglm" / "trained_models"
    folder = root / variant
    with quiet_transformers():
        hf_model = GPT2LMHeadModel.from_pretrained(folder)
    prompt = (IGLM_CHAINS[chain], f"[{species.upper()}]")
    alphabet = Alphabet.from_vocab_file(root / "vocab.txt", pad="[PAD]", mask="[MASK]", unk="[UNK]",
                                        prefix=prompt, suffix=("[SEP]",))
    checksum = "sha256:" + weights.sha256_of(folder / "pytorch_model.bin")
    return wrap_gpt2(hf_model, variant.lower(), weights.IGLM.requirement, alphabet, family="IgLM",
                     licence=weights.IGLM.licence, checksum=checksum)
