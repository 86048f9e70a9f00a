"""ProtGPT2: a GPT-2 whose tokens are byte-pair encodings of several residues.

ProtGPT2 (Ferruz et al. 2022, `nferruz/ProtGPT2`) is `transformers.GPT2LMHeadModel` with a
50,257-token byte-level BPE vocabulary learnt on UniRef50: one token holds one to about ten
residues. It was trained on sequences written as FASTA bodies, 60 residues a line, between
`<|endoftext|>` separators, so a sequence is presented as

    <|endoftext|> MKTAYIAKQR...(60)\\n ...(60)\\n ... <|endoftext|>

The interface measures tokens, so every token is mapped back to the residues it holds
(`tokens.TokenizedAlphabet.encode`): `residue_index[t]` is the first residue of token t (-1 for the
separators and line breaks, which hold none), and the output at token t predicts token t+1,
so `target_index[t]` is the first residue of token t+1 and `target_ids[t]` its id. Thus

- the logit lens compares next-token distributions over the full BPE vocabulary at every
  token that predicts residues (a 20-letter vocabulary does not apply and is refused);
- layer skipping's split point t ("residues >= t") falls on token boundaries: a token is on
  the measured side when its first residue is >= t;
- a sequence's log-likelihood (variant effects) is the sum over its residue-holding tokens.
  A substitution can change how the sequence is cut into tokens; the log-likelihood ratio
  compares the two tokenisations as the model reads them.
"""

from __future__ import annotations

from pathlib import Path

import torch

from plmdepth.model import ProteinLM
from plmdepth.models.architectures import wrap_gpt2
from plmdepth.models.hub import quiet_transformers
from plmdepth.models.device import check_device, hf_placement
from plmdepth.models.hub import ModelLoadError, local_or_snapshot, slug
from plmdepth.tokens import TokenizedAlphabet

SEPARATOR = "<|endoftext|>"
LINE_WIDTH = 60
# ProtGPT2 as published (nferruz/ProtGPT2 config.json)
PROTGPT2_CONFIG = {"n_layer": 36, "n_embd": 1280, "n_head": 20, "n_positions": 1024, "vocab_size": 50257}


def fasta_body(sequence: str, line_width: int = LINE_WIDTH) -> str:
    """The sequence as ProtGPT2 saw it in training: lines of `line_width` residues."""
    return "\n".join(sequence[i:i + line_width] for i in range(0, len(sequence), line_width))


def has_gpt2_vocabulary(name_or_path: str) -> bool:
    """Whether a GPT-2 folder or hub repository (the local cache first) carries a byte-pair
    vocabulary with GPT-2's `<|endoftext|>` separator, as ProtGPT2 does (then it is read as
    ProtGPT2 was trained: FASTA lines between separators)."""
    folder = local_or_snapshot(name_or_path)
    return any(SEPARATOR in (folder / f).read_text(errors="replace") for f in ("tokenizer.json", "vocab.json")
               if (folder / f).is_file())


def bpe_alphabet(tokenizer_folder: str | Path, max_tokens: int | None = None) -> TokenizedAlphabet:
    """The byte-pair `TokenizedAlphabet` of a folder holding a fast GPT-2 tokenizer (tokenizer.json, or
    vocab.json + merges.txt), framed `<|endoftext|> sequence <|endoftext|>`."""
    from transformers import AutoTokenizer

    fast = AutoTokenizer.from_pretrained(str(tokenizer_folder), use_fast=True)
    backend = fast.backend_tokenizer
    vocab = backend.get_vocab(with_added_tokens=True)
    tokens = [None] * len(vocab)
    for token, i in vocab.items():
        tokens[i] = token
    if any(t is None for t in tokens) or SEPARATOR not in vocab:
        raise ValueError(f"{tokenizer_folder}: not a GPT-2 byte-pair tokenizer with contiguous ids and {SEPARATOR}")
    letters = "".join(t for t in tokens if len(t) == 1 and t.isalpha() and t.isupper())
    return TokenizedAlphabet(tuple(tokens), pad=SEPARATOR, prefix=(SEPARATOR,), suffix=(SEPARATOR,), tokenizer=backend,
                             line_width=LINE_WIDTH, max_tokens=max_tokens, letters=letters)


def load_protgpt2(folder: str | Path, name: str, source: str | None = None, device: str | torch.device | None = None,
                  dtype: torch.dtype | None = None) -> ProteinLM:
    """ProtGPT2 (or any GPT-2 protein model with a byte-pair tokenizer) from a local folder, its
    weights read in `dtype` onto `device` (default: as saved, on the CPU)."""
    from transformers import GPT2LMHeadModel

    if device is not None:
        check_device(device)
    folder = Path(folder)
    if not any((folder / f).is_file() for f in ("tokenizer.json", "vocab.json")):
        raise ModelLoadError(f"folder {folder} has no tokenizer.json or vocab.json; a GPT-2 protein model needs "
                             "the byte-pair tokenizer it was trained with, saved next to its weights.")
    with quiet_transformers():
        hf_model = GPT2LMHeadModel.from_pretrained(folder, **hf_placement(device, dtype))
    if device is not None:
        hf_model = hf_model.to(device)
    n_positions = hf_model.config.n_positions
    alphabet = bpe_alphabet(folder, max_tokens=n_positions)
    if len(alphabet.tokens) != hf_model.config.vocab_size:
        raise ModelLoadError(f"folder {folder}: the tokenizer has {len(alphabet.tokens)} tokens but the model "
                             f"{hf_model.config.vocab_size}; save the model with the tokenizer it was trained with.")
    # every token holds at least one character, so the context in residues is bounded by the one in tokens;
    # the exact check is made in tokens when a sequence is encoded.
    return wrap_gpt2(hf_model, name, source or str(folder), alphabet, family="ProtGPT2", licence="Apache-2.0",
                     max_residues=LINE_WIDTH * n_positions)


def load_protgpt2_model(name_or_path: str, name: str | None = None, device: str | torch.device | None = None,
                        dtype: torch.dtype | None = None) -> ProteinLM:
    """ProtGPT2 from a local folder or a hub repository (`nferruz/ProtGPT2`)."""
    return load_protgpt2(local_or_snapshot(name_or_path), name=name or slug(name_or_path), source=str(name_or_path),
                         device=device, dtype=dtype)
