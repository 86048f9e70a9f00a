"""ESM-2 and DPLM: `EsmForMaskedLM` checkpoints from a hub id or a local save_pretrained folder.

DPLM checkpoints (their config has a `dplm_type`) are ESM-2 networks trained as diffusion
models: DPLM's `EsmForDPLM` subclasses `EsmForMaskedLM` with the same module names, so their
weights load unchanged, and their objective is `diffusion`.
"""

from __future__ import annotations

from pathlib import Path

from plmdepth.model import ProteinLM, state_dict_checksum
from plmdepth.models.architectures import ESM_ALPHABET, wrap_esm
from plmdepth.models.hub import from_pretrained, slug
from plmdepth.tokens import Alphabet

ESM2_SIZES = {"8M": 6, "35M": 12, "150M": 30, "650M": 33, "3B": 36, "15B": 48}  # size -> blocks
ESM2_WIDTHS = {"8M": 320, "35M": 480, "150M": 640, "650M": 1280, "3B": 2560, "15B": 5120}


def objective_of_config(config: dict) -> str:
    """`diffusion` for a DPLM checkpoint (its config has a `dplm_type`), else `masked`."""
    return "diffusion" if config.get("dplm_type") is not None else "masked"


def load_esm2(name_or_path: str, name: str | None = None, objective: str | None = None) -> ProteinLM:
    """ESM-2 (or any `EsmForMaskedLM` checkpoint) from a hub id or a local folder; `objective`
    overrides what the config says (a DPLM folder saved without its `dplm_type`)."""
    from transformers import EsmForMaskedLM

    hf_model = from_pretrained(EsmForMaskedLM, name_or_path)
    is_dplm = objective_of_config(hf_model.config.to_dict()) == "diffusion"
    objective = objective or ("diffusion" if is_dplm else "masked")
    alphabet = ESM_ALPHABET
    vocab = Path(name_or_path, "vocab.txt")
    if vocab.is_file():
        alphabet = Alphabet.from_vocab_file(vocab, pad="<pad>", mask="<mask>", unk="<unk>",
                                            prefix=("<cls>",), suffix=("<eos>",))
    revision = getattr(hf_model.config, "_commit_hash", None)
    checksum = state_dict_checksum(hf_model)
    source = f"{name_or_path}@{revision}" if revision and not Path(name_or_path).exists() else str(name_or_path)
    return wrap_esm(hf_model, name or slug(name_or_path), source, objective=objective, checksum=checksum,
                    alphabet=alphabet, family="DPLM" if is_dplm else "ESM-2",
                    licence="Apache-2.0" if is_dplm else "MIT")
