"""ESM-2 and DPLM: `EsmForMaskedLM` checkpoints from a hub id or a local save_pretrained folder.

DPLM checkpoints (their config has a `dplm_type`) are ESM-2 networks trained as diffusion
models: DPLM's `EsmForDPLM` subclasses `EsmForMaskedLM` with the same module names, so their
weights load unchanged, and their objective is `diffusion`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from plmdepth.model import ProteinLM, state_dict_checksum
from plmdepth.models.architectures import ESM_ALPHABET, wrap_esm
from plmdepth.models.device import building_on, check_device, hf_placement
from plmdepth.models.hub import from_pretrained, slug
from plmdepth.tokens import Alphabet

ESM2_SIZES = {"8M": 6, "35M": 12, "150M": 30, "650M": 33, "3B": 36, "15B": 48}  # size -> blocks
ESM2_WIDTHS = {"8M": 320, "35M": 480, "150M": 640, "650M": 1280, "3B": 2560, "15B": 5120}
ESM2_HEADS = {"8M": 20, "35M": 20, "150M": 20, "650M": 20, "3B": 40, "15B": 40}


def objective_of_config(config: dict) -> str:
    """`diffusion` for a DPLM checkpoint (its config has a `dplm_type`), else `masked`."""
    return "diffusion" if config.get("dplm_type") is not None else "masked"


def load_esm2(name_or_path: str, name: str | None = None, objective: str | None = None,
              device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> ProteinLM:
    """ESM-2 (or any `EsmForMaskedLM` checkpoint) from a hub id or a local folder; `objective`
    overrides what the config says (a DPLM folder saved without its `dplm_type`). The weights
    are read in `dtype` and put on `device` (default: as saved, on the CPU)."""
    from transformers import EsmForMaskedLM

    if device is not None:
        check_device(device)
    hf_model = from_pretrained(EsmForMaskedLM, name_or_path, **hf_placement(device, dtype))
    if device is not None:
        hf_model = hf_model.to(device)
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


def esm2_config(size: str, **overrides):
    """The published `EsmConfig` of ESM-2 `size` (the config.json of facebook/esm2_t{L}_{size}_UR50D:
    rotary positions, token dropout, no embedding layer norm, 4x MLP); `overrides` change fields
    (e.g. a tiny model of the same kind for tests)."""
    from transformers import EsmConfig

    width = ESM2_WIDTHS[size]
    fields = dict(vocab_size=33, hidden_size=width, num_hidden_layers=ESM2_SIZES[size],
                  num_attention_heads=ESM2_HEADS[size], intermediate_size=4 * width, max_position_embeddings=1026,
                  position_embedding_type="rotary", token_dropout=True, emb_layer_norm_before=False,
                  layer_norm_eps=1e-5, mask_token_id=32, pad_token_id=1, hidden_dropout_prob=0.0,
                  attention_probs_dropout_prob=0.0)
    return EsmConfig(**{**fields, **overrides})


def random_esm2(config, seed: int = 0, device: str | torch.device | None = None, dtype: torch.dtype | None = None,
                name: str | None = None, checksum: str | None = None) -> ProteinLM:
    """A randomly initialised `EsmForMaskedLM` of `config` (seeded) as a `ProteinLM`, built
    directly on `device` in `dtype`: a 3B model never exists in float32 on the CPU first.
    `checksum` skips hashing the weights (seconds for billions of parameters) when given."""
    from transformers import EsmForMaskedLM

    if device is not None:
        check_device(device)
    torch.manual_seed(seed)
    with building_on(device, dtype):
        hf_model = EsmForMaskedLM(config).eval()
    label = name or f"esm2-random-t{config.num_hidden_layers}-d{config.hidden_size}"
    return wrap_esm(hf_model, label, f"random init (seed {seed})", checksum=checksum)
